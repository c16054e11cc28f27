/**
 * The deadline of a running handler of an expiring event (one with `expiresAt`): its context's
 * signal aborts at that time, or when the subscription closes, while the handler runs.
 *
 * Most handlers never read `ctx.signal`, so a deadline costs one small object per run: the
 * AbortController is made on the first read, and only then does the deadline join the one
 * process-wide timer, which is armed for the soonest deadline whose signal was read.
 */
import { TimeoutError } from '../errors.ts'
import { isoTime, MAX_TIMER_DELAY_MS } from '../schedule.ts'
import type { SignalSource } from './runner.ts'

/** One handler run's deadline; {@link Deadline.end} once the handler has settled. */
export class Deadline implements SignalSource {
  /** Epoch milliseconds at which the signal aborts. */
  readonly at: number
  readonly #closing: AbortSignal
  #controller: AbortController | undefined = undefined
  #onClose: (() => void) | undefined = undefined
  #ended = false
  /** Position in the timer's heap; -1 when not in it. */
  index = -1

  /** `closing` is the subscription's signal: when it aborts, so does this one. */
  constructor(at: number, closing: AbortSignal) {
    this.at = at
    this.#closing = closing
  }

  /** The handler's signal: aborts at {@link at} or when the subscription closes, while the run lasts. */
  get signal(): AbortSignal {
    const made = this.#controller
    if (made !== undefined) return made.signal
    const controller = new AbortController()
    this.#controller = controller
    const closing = this.#closing
    if (closing.aborted) controller.abort(closing.reason)
    else if (!this.#ended) {
      if (this.at <= Date.now()) this.expire()
      else {
        const onClose = () => controller.abort(closing.reason)
        this.#onClose = onClose
        closing.addEventListener('abort', onClose, { once: true })
        timer.add(this)
      }
    }
    return controller.signal
  }

  /** The deadline passed while the handler ran. */
  expire(): void {
    const controller = this.#controller
    if (controller === undefined || controller.signal.aborted) return
    controller.abort(
      new TimeoutError(`the event expired at ${isoTime(this.at)} (expiresAt) while its handler ran`, {
        code: 'EXPIRED',
      }),
    )
  }

  /** The handler settled: its signal no longer aborts. */
  end(): void {
    this.#ended = true
    if (this.#controller === undefined) return
    if (this.index >= 0) timer.remove(this)
    const onClose = this.#onClose
    if (onClose !== undefined) {
      this.#onClose = undefined
      this.#closing.removeEventListener('abort', onClose)
    }
  }
}

/** A min-heap of deadlines by time under one unref'd timer armed for the soonest. */
class DeadlineTimer {
  readonly #heap: Deadline[] = []
  #timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** When the armed timer fires (Infinity when none is armed). */
  #armedAt = Number.POSITIVE_INFINITY

  add(deadline: Deadline): void {
    const heap = this.#heap
    deadline.index = heap.length
    heap.push(deadline)
    this.#up(deadline.index)
    if (deadline.at < this.#armedAt) this.#arm()
  }

  remove(deadline: Deadline): void {
    const heap = this.#heap
    const i = deadline.index
    deadline.index = -1
    const last = heap.pop() as Deadline
    if (last !== deadline) {
      heap[i] = last
      last.index = i
      this.#down(i)
      this.#up(last.index)
    }
    // The timer stays armed for a removed head: it finds nothing due, or re-arms for the next.
    if (heap.length === 0) this.#disarm()
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#armedAt = Number.POSITIVE_INFINITY
    const heap = this.#heap
    const now = Date.now()
    while (heap.length > 0 && (heap[0] as Deadline).at <= now) {
      const due = heap[0] as Deadline
      this.remove(due)
      due.expire()
    }
    if (heap.length > 0) this.#arm()
  }

  #arm(): void {
    const head = this.#heap[0] as Deadline
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#armedAt = head.at
    // A wait beyond one timer's longest is taken in steps.
    this.#timer = setTimeout(this.#fire, Math.min(Math.max(0, head.at - Date.now()), MAX_TIMER_DELAY_MS))
    this.#timer.unref?.()
  }

  #disarm(): void {
    if (this.#timer === undefined) return
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedAt = Number.POSITIVE_INFINITY
  }

  #up(i: number): void {
    const heap = this.#heap
    const item = heap[i] as Deadline
    while (i > 0) {
      const parent = (i - 1) >> 1
      const above = heap[parent] as Deadline
      if (above.at <= item.at) break
      heap[i] = above
      above.index = i
      i = parent
    }
    heap[i] = item
    item.index = i
  }

  #down(i: number): void {
    const heap = this.#heap
    const n = heap.length
    const item = heap[i] as Deadline
    for (;;) {
      let child = 2 * i + 1
      if (child >= n) break
      const right = child + 1
      if (right < n && (heap[right] as Deadline).at < (heap[child] as Deadline).at) child = right
      const below = heap[child] as Deadline
      if (below.at >= item.at) break
      heap[i] = below
      below.index = i
      i = child
    }
    heap[i] = item
    item.index = i
  }
}

const timer = new DeadlineTimer()
