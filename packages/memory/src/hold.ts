/**
 * Delayed events of one bus: held in a min-heap by `deliverAt` (publish order among equal times)
 * under a single timer set for the earliest, and handed to the bus's routing when due. The hold
 * belongs to the bus, the in-process broker, not to a backend or a subscription: an event is
 * routed to the subscriptions that exist at its time, as a broker routes a scheduled message.
 */
import { type Logger, type OmnibusEvent, silentLogger } from '@omnibus/core'
import { MAX_TIMER_DELAY_MS, safeLog } from '@omnibus/core/backend'

interface Held {
  readonly at: number
  readonly seq: number
  readonly event: OmnibusEvent
}

function before(a: Held, b: Held): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

/** The delayed events of one bus and the timer of the earliest. */
export class DelayedEvents {
  readonly #release: (event: OmnibusEvent) => void
  readonly #heap: Held[] = []
  #seq = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #timerAt = Number.POSITIVE_INFINITY
  #running = false
  /** Where a failure to route a due event is reported (the logger of a backend attached to the bus). */
  logger: Logger = silentLogger

  /** `release` routes a due event (the bus's dispatch). */
  constructor(release: (event: OmnibusEvent) => void) {
    this.#release = release
  }

  /** Events held for later. */
  get size(): number {
    return this.#heap.length
  }

  /** Holds `event` until its `deliverAt`. */
  add(event: OmnibusEvent, at: number): void {
    const heap = this.#heap
    const item: Held = { at, seq: this.#seq++, event }
    let i = heap.push(item) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = heap[parent] as Held
      if (!before(item, p)) break
      heap[i] = p
      i = parent
    }
    heap[i] = item
    if (this.#running && at < this.#timerAt) this.#arm()
  }

  /** Runs the timer: due events are routed (those that came due while paused, at once). */
  resume(): void {
    this.#running = true
    this.#arm()
  }

  /** Stops the timer (no backend attached to the bus): events stay held until `resume`. */
  pause(): void {
    this.#running = false
    this.#clear()
  }

  #clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
  }

  #arm(): void {
    this.#clear()
    const first = this.#heap[0]
    if (first === undefined || !this.#running) return
    this.#timerAt = first.at
    // A connected backend keeps the process alive (holdProcess), not a held event.
    this.#timer = setTimeout(this.#fire, Math.min(Math.max(0, first.at - Date.now()), MAX_TIMER_DELAY_MS))
    this.#timer.unref()
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    const now = Date.now()
    while (this.#running) {
      const first = this.#heap[0]
      if (first === undefined || first.at > now) break
      this.#pop()
      try {
        this.#release(first.event)
      } catch (error) {
        safeLog(this.logger, 'error', 'a delayed event could not be routed when due and is lost', {
          topic: first.event.topic,
          id: first.event.id,
          error: String(error),
        })
      }
    }
    this.#arm()
  }

  #pop(): void {
    const heap = this.#heap
    const last = heap.pop() as Held
    if (heap.length === 0) return
    let i = 0
    const n = heap.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && before(heap[r] as Held, heap[l] as Held) ? r : l
      if (!before(heap[c] as Held, last)) break
      heap[i] = heap[c] as Held
      i = c
    }
    heap[i] = last
  }
}
