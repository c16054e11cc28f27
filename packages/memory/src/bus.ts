/**
 * The delivery engine of the memory backend. A {@link Bus} routes each event to queues: one per
 * broadcast subscription and one per consumer group. A queue holds events in publish order and
 * hands them to its members (one for a broadcast subscription, the group's subscriptions for a
 * group) round-robin, each member up to its `concurrency`, never two events of one partition key
 * at once. Handlers that return a non-promise are run and acknowledged synchronously inside the
 * queue's drain loop, so the hot path allocates no promise per event.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import {
  compilePattern,
  createEvent,
  currentEvent,
  DLQ_HEADERS,
  type EventHandler,
  type EventInput,
  type Logger,
  MatcherIndex,
  type OmnibusEvent,
  type Subscription,
} from '@omnibus/core'
import {
  deadLetterInput,
  decideFailure,
  type HandlerOutcome,
  type HandlerRunner,
  MemoryDedupeStore,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'

/** An event waiting for another attempt. Fresh events sit in queues as bare envelopes. */
class Redelivery {
  readonly event: OmnibusEvent
  readonly attempt: number
  readonly firstFailureAt: number

  constructor(event: OmnibusEvent, attempt: number, firstFailureAt: number) {
    this.event = event
    this.attempt = attempt
    this.firstFailureAt = firstFailureAt
  }
}

type Item = OmnibusEvent | Redelivery

function eventOf(item: Item): OmnibusEvent {
  return item instanceof Redelivery ? item.event : item
}

/** Logs without ever throwing: a broken logger must not stop a queue. */
export function safeLog(
  logger: Logger,
  level: 'warn' | 'error',
  message: string,
  fields: Record<string, unknown>,
): void {
  try {
    logger[level](message, fields)
  } catch {
    // Nothing sensible is left to report to.
  }
}

// What a handler threw, made safe to describe: some values cannot even be turned into a string.
function describable(error: unknown): unknown {
  if (error instanceof Error) return error
  try {
    return String(error)
  } catch {
    return Object.prototype.toString.call(error)
  }
}

// A drain scheduled from inside a handler runs in the context the module was loaded in, not in
// the handler's: otherwise that handler's event would leak as the "current" one into unrelated
// deliveries and dead letters. Drains scheduled from outside any handler keep their context (the
// publisher's, as an EventEmitter listener would), which costs nothing extra.
const inRootContext = AsyncLocalStorage.snapshot()

/** One in-flight async handler run; abandoned when its member is stopped past the drain timeout. */
interface AsyncRun {
  readonly item: Item
  abandoned: boolean
}

/** A publish waiting for room in one or more full queues. */
export class PendingPublish {
  remaining = 0
  readonly promise: Promise<void>
  resolve!: () => void

  constructor() {
    this.promise = new Promise<void>((resolve) => {
      this.resolve = resolve
    })
  }

  done(): void {
    if (--this.remaining === 0) this.resolve()
  }
}

interface Overflow {
  readonly item: OmnibusEvent
  readonly pending: PendingPublish
}

interface IdleWaiter {
  readonly check: () => boolean
  readonly resolve: () => void
}

/** A subscription's or a group's share of the bus. */
export class Member {
  readonly id: string
  readonly pattern: string
  readonly group: string | undefined
  readonly handler: EventHandler
  readonly opts: ResolvedSubscribeOptions
  readonly logger: Logger
  readonly queue: DeliveryQueue
  readonly controller = new AbortController()
  readonly signal: AbortSignal = this.controller.signal
  readonly matches: (topic: string) => boolean
  subscription!: Subscription
  inFlight = 0
  /** Taking new work. */
  active = true
  /** Runs the handler (set with the subscription). */
  runner!: HandlerRunner
  readonly asyncRuns = new Set<AsyncRun>()
  removeFromIndex: (() => void) | undefined
  /** Called once the subscription is closed (removes its abort listener). */
  onClose: (() => void) | undefined = undefined
  /** The event whose handler is being called right now (its synchronous part). */
  calling: OmnibusEvent | undefined = undefined

  /** Whether `event` is being handled by one of this member's async runs right now. */
  isHandling(event: OmnibusEvent): boolean {
    if (this.calling === event) return true
    for (const run of this.asyncRuns) if (eventOf(run.item) === event) return true
    return false
  }

  constructor(
    id: string,
    handler: EventHandler,
    opts: ResolvedSubscribeOptions,
    queue: DeliveryQueue,
    logger: Logger,
  ) {
    this.id = id
    this.pattern = opts.pattern
    this.group = opts.group
    this.handler = handler
    this.opts = opts
    this.queue = queue
    this.logger = logger
    this.matches = compilePattern(opts.pattern)
  }
}

/** Events of one broadcast subscription or one consumer group, in publish order. */
export class DeliveryQueue {
  readonly bus: Bus
  readonly group: string | undefined
  readonly capacity: number
  members: Member[] = []
  /** Members whose patterns differ: each event must go to a member whose pattern matches it. */
  mixedPatterns = false
  #rr = 0
  /** Fresh events in publish order (redeliveries only ever go to the ready list). */
  #items: OmnibusEvent[] = []
  #head = 0
  /** Events whose turn came (retries due, or the next event of a key that was busy). */
  #ready: Item[] = []
  #readyHead = 0
  /** Events waiting for their partition key to be free, per key, in order. */
  #blocked = new Map<string, { items: Item[]; head: number }>()
  #busyKeys = new Set<string>()
  #overflow: Overflow[] = []
  #overflowHead = 0
  /** Events for which no current member's pattern matches (mixed-pattern groups only). */
  #orphans: Item[] = []
  /**
   * Exactly-once: the delivery that currently owns each id being handled (including while it
   * waits for a retry), and duplicates of that id parked until it settles.
   */
  #handling = new Map<string, { owner: Item; parked: Item[] }>()
  #timers = new Set<ReturnType<typeof setTimeout>>()
  #idleWaiters: IdleWaiter[] = []
  #scheduled = false
  #draining = false
  /** Events held: queued, blocked by their key, or waiting for a retry. Not in-flight ones. */
  queued = 0
  retrying = 0
  inFlight = 0
  routeStamp = 0
  /** Processed ids of exactly-once members; created when the first one joins. */
  dedupe: MemoryDedupeStore | undefined
  readonly #drainNow = () => {
    this.#scheduled = false
    this.drain()
  }
  readonly #drainNowInRoot = () => {
    this.#scheduled = false
    inRootContext(this.#drainBound)
  }
  readonly #drainBound = () => this.drain()

  constructor(bus: Bus, group: string | undefined, capacity: number) {
    this.bus = bus
    this.group = group
    this.capacity = capacity
  }

  /** Events waiting or in flight, for health details. */
  get depth(): number {
    return this.queued + this.overflowLength + this.inFlight
  }

  get overflowLength(): number {
    return this.#overflow.length - this.#overflowHead
  }

  /**
   * Appends an event. Returns false when the queue is full and the caller must wait (the event
   * is then held in arrival order and admitted as room frees up, resolving `pending`).
   */
  enqueue(item: OmnibusEvent, internal: boolean): boolean {
    if (this.#overflowHead === this.#overflow.length) {
      if (this.queued < this.capacity || internal || currentEvent() !== undefined) {
        this.#items.push(item)
        this.queued++
        if (!this.#scheduled && !this.#draining) {
          this.#scheduled = true
          queueMicrotask(currentEvent() === undefined ? this.#drainNow : this.#drainNowInRoot)
        }
        return true
      }
    } else if (internal || currentEvent() !== undefined) {
      // Handlers and the backend itself never wait for room: a handler waiting for its own
      // queue to drain would wait forever.
      this.#items.push(item)
      this.queued++
      this.schedule()
      return true
    }
    return false
  }

  /** Holds an event that did not fit until there is room. */
  hold(item: OmnibusEvent, pending: PendingPublish): void {
    this.#overflow.push({ item, pending })
  }

  schedule(): void {
    if (!this.#scheduled && !this.#draining) {
      this.#scheduled = true
      queueMicrotask(currentEvent() === undefined ? this.#drainNow : this.#drainNowInRoot)
    }
  }

  addMember(member: Member): void {
    if (this.members.some((m) => m.pattern !== member.pattern)) this.mixedPatterns = true
    this.members.push(member)
    if (this.#orphans.length > 0) {
      for (const item of this.#orphans) this.#ready.push(item)
      this.#orphans = []
    }
    this.schedule()
  }

  /** Stops giving work to `member`. */
  removeMember(member: Member): void {
    member.active = false
    this.members = this.members.filter((m) => m !== member)
    const first = this.members[0]
    this.mixedPatterns = first !== undefined && this.members.some((m) => m.pattern !== first.pattern)
    if (this.members.length > 0) this.schedule()
    else this.#admitAll()
    this.notify()
  }

  // A queue without members takes everything held for it at once (over capacity if need be):
  // those publishes are accepted and stay for the group's next member instead of waiting forever.
  #admitAll(): void {
    for (let i = this.#overflowHead; i < this.#overflow.length; i++) {
      const o = this.#overflow[i] as Overflow
      this.#items.push(o.item)
      this.queued++
      o.pending.done()
    }
    this.#overflow = []
    this.#overflowHead = 0
  }

  /** Resolves when `check()` holds, re-evaluated whenever work completes. */
  whenIdle(check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push({ check, resolve }))
  }

  /** Nothing held or running for this queue. */
  isEmpty(): boolean {
    return this.queued === 0 && this.retrying === 0 && this.inFlight === 0 && this.overflowLength === 0
  }

  notify(): void {
    if (this.#idleWaiters.length === 0) return
    const still: IdleWaiter[] = []
    for (const w of this.#idleWaiters) {
      if (w.check()) w.resolve()
      else still.push(w)
    }
    this.#idleWaiters = still
  }

  /**
   * Drops everything held (a broadcast subscription that closed) and releases waiting publishers.
   * Returns how many events were dropped.
   */
  discard(): number {
    const dropped = this.queued + this.retrying + this.overflowLength
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    this.retrying = 0
    this.#items = []
    this.#head = 0
    this.#ready = []
    this.#readyHead = 0
    this.#blocked.clear()
    this.#orphans = []
    this.queued = 0
    const overflow = this.#overflow.slice(this.#overflowHead)
    this.#overflow = []
    this.#overflowHead = 0
    for (const o of overflow) o.pending.done()
    this.notify()
    return dropped
  }

  /** Delivers what members can take now. Re-entrant calls (a sync handler publishing) are no-ops. */
  drain(): void {
    if (this.#draining) return
    this.#draining = true
    try {
      for (;;) {
        if (this.queued === 0) break
        const member = this.#pickMember()
        if (member === undefined) break
        const item = this.#take()
        if (item === undefined) break
        let target = member
        if (this.mixedPatterns) {
          const found = this.#memberFor(eventOf(item).topic)
          if (found === undefined) {
            this.#putBack(item)
            break
          }
          if (found === null) {
            this.#orphan(item)
            continue
          }
          target = found
        }
        this.#deliver(target, item)
        if (this.#overflowHead < this.#overflow.length) this.#admit()
      }
      if (this.#overflowHead < this.#overflow.length) this.#admit()
    } finally {
      this.#draining = false
    }
    this.notify()
  }

  #admit(): void {
    while (this.#overflowHead < this.#overflow.length && this.queued < this.capacity) {
      const o = this.#overflow[this.#overflowHead] as Overflow
      this.#overflow[this.#overflowHead++] = undefined as unknown as Overflow
      this.#items.push(o.item)
      this.queued++
      o.pending.done()
    }
    if (this.#overflowHead === this.#overflow.length) {
      this.#overflow = []
      this.#overflowHead = 0
    }
  }

  #pickMember(): Member | undefined {
    const members = this.members
    const n = members.length
    if (n === 1) {
      const m = members[0] as Member
      return m.inFlight < m.opts.concurrency ? m : undefined
    }
    for (let i = 0; i < n; i++) {
      const at = (this.#rr + i) % n
      const m = members[at] as Member
      if (m.inFlight < m.opts.concurrency) {
        this.#rr = at + 1
        return m
      }
    }
    return undefined
  }

  // For mixed-pattern groups: a free member matching `topic`, undefined if matching members are
  // all busy, null if no member matches any more.
  #memberFor(topic: string): Member | null | undefined {
    let anyMatch = false
    const n = this.members.length
    for (let i = 0; i < n; i++) {
      const at = (this.#rr + i) % n
      const m = this.members[at] as Member
      if (!m.matches(topic)) continue
      anyMatch = true
      if (m.inFlight < m.opts.concurrency) {
        this.#rr = at + 1
        return m
      }
    }
    return anyMatch ? undefined : null
  }

  // Keeps its key: later events of that key wait until a member that can take it arrives.
  #orphan(item: Item): void {
    this.#orphans.push(item)
    this.queued++
  }

  // Returns a taken item to the front (its key stays owned by it).
  #putBack(item: Item): void {
    this.#ready.splice(this.#readyHead, 0, item)
    this.queued++
  }

  // Next deliverable item: due retries and unblocked keys first, then the queue in order; items
  // whose key is busy are parked behind that key. The returned item owns its key.
  #take(): Item | undefined {
    if (this.#readyHead < this.#ready.length) {
      const item = this.#ready[this.#readyHead] as Item
      this.#ready[this.#readyHead++] = undefined as unknown as Item
      if (this.#readyHead === this.#ready.length) {
        this.#ready = []
        this.#readyHead = 0
      }
      this.queued--
      return item
    }
    let items = this.#items
    while (this.#head < items.length) {
      const item = items[this.#head] as OmnibusEvent
      items[this.#head++] = undefined as unknown as OmnibusEvent
      if (this.#head === items.length) {
        items.length = 0
        this.#head = 0
      } else if (this.#head >= 4096 && this.#head * 2 >= items.length) {
        items = items.slice(this.#head)
        this.#items = items
        this.#head = 0
      }
      this.queued--
      const key = item.partitionKey
      if (key !== undefined) {
        if (this.#busyKeys.has(key)) {
          const waiting = this.#blocked.get(key)
          if (waiting === undefined) this.#blocked.set(key, { items: [item], head: 0 })
          else waiting.items.push(item)
          this.queued++
          continue
        }
        this.#busyKeys.add(key)
      }
      return item
    }
    return undefined
  }

  // The item owning `key` is done: the next event of that key (if any) becomes ready.
  #release(key: string | undefined): void {
    if (key === undefined) return
    const waiting = this.#blocked.get(key)
    if (waiting === undefined) {
      this.#busyKeys.delete(key)
      return
    }
    const next = waiting.items[waiting.head] as Item
    waiting.items[waiting.head++] = undefined as unknown as Item
    if (waiting.head === waiting.items.length) this.#blocked.delete(key)
    this.#ready.push(next)
  }

  #deliver(member: Member, item: Item): void {
    let event: OmnibusEvent
    let attempt = 1
    if (item instanceof Redelivery) {
      event = item.event
      attempt = item.attempt
    } else {
      event = item
    }
    if (member.opts.guarantee === 'exactly-once' && this.dedupe !== undefined) {
      if (this.dedupe.has(this.group ?? member.id, event.id)) {
        this.#release(event.partitionKey)
        return
      }
      const handling = this.#handling.get(event.id)
      if (handling === undefined) {
        this.#handling.set(event.id, { owner: item, parked: [] })
      } else if (handling.owner !== item) {
        // A duplicate of an id in flight: it waits (keeping its own key) until the first settles,
        // then meets the dedupe record if that one was acknowledged.
        handling.parked.push(item)
        this.queued++
        return
      }
    }
    member.inFlight++
    this.inFlight++
    const outer = member.calling
    member.calling = event
    const outcome = member.runner.run(event, attempt)
    member.calling = outer
    if (outcome instanceof Promise) {
      const run: AsyncRun = { item, abandoned: false }
      member.asyncRuns.add(run)
      outcome.then((o) => this.#settleAsync(member, run, o))
      return
    }
    this.#settle(member, item, event, outcome)
  }

  #settleAsync(member: Member, run: AsyncRun, outcome: HandlerOutcome): void {
    if (run.abandoned) return
    member.asyncRuns.delete(run)
    this.#settle(member, run.item, eventOf(run.item), outcome)
    this.schedule()
    this.notify()
  }

  #settle(member: Member, item: Item, event: OmnibusEvent, outcome: HandlerOutcome): void {
    member.inFlight--
    this.inFlight--
    const exactlyOnce = member.opts.guarantee === 'exactly-once' && this.dedupe !== undefined
    if (outcome.kind === 'ack') {
      if (exactlyOnce) {
        this.dedupe?.add(this.group ?? member.id, event.id)
        this.#releaseDuplicates(event.id)
      }
      if (event.partitionKey !== undefined) this.#release(event.partitionKey)
      return
    }
    const attempt = item instanceof Redelivery ? item.attempt : 1
    const failure: Exclude<HandlerOutcome, { kind: 'ack' }> =
      outcome.error === undefined ? outcome : { ...outcome, error: describable(outcome.error) }
    const decision = decideFailure(member.opts, attempt, failure)
    if (decision.action === 'retry') {
      const firstFailureAt = item instanceof Redelivery ? item.firstFailureAt : Date.now()
      // The key stays owned by the retried event: later events of that key wait for it.
      const next = new Redelivery(event, attempt + 1, firstFailureAt)
      if (exactlyOnce) this.#transfer(event.id, next)
      this.#scheduleRetry(next, decision.delayMs)
      return
    }
    if (exactlyOnce) this.#releaseDuplicates(event.id)
    this.#release(event.partitionKey)
    if (decision.action === 'drop') {
      if (member.opts.guarantee !== 'at-most-once') {
        safeLog(member.logger, 'warn', 'event dropped after its last attempt (deadLetter: false)', {
          id: event.id,
          topic: event.topic,
          subscription: member.id,
          reason: decision.reason,
        })
      } else if (failure.kind === 'retry') {
        safeLog(member.logger, 'warn', 'at-most-once handler failed; the event is not redelivered', {
          id: event.id,
          topic: event.topic,
          subscription: member.id,
          error: failure.error instanceof Error ? failure.error.message : failure.error,
        })
      }
      return
    }
    if (event.topic === member.opts.deadLetter) {
      // A failing handler of the dead-letter topic itself: dead-lettering again would feed the
      // same handler forever.
      safeLog(member.logger, 'error', 'a dead letter failed in its own handler and is dropped', {
        id: event.id,
        topic: event.topic,
        subscription: member.id,
        reason: decision.reason,
      })
      return
    }
    const now = Date.now()
    const dlq = deadLetterInput(event, member.opts.deadLetter as string, {
      reason: decision.reason,
      group: this.group,
      attempts: attempt,
      firstFailureAt: item instanceof Redelivery ? item.firstFailureAt : now,
      lastFailureAt: now,
      error: failure.error,
      backend: 'memory',
    })
    this.bus.publishInternal(dlq, member.logger)
  }

  #releaseDuplicates(id: string): void {
    const handling = this.#handling.get(id)
    if (handling === undefined) return
    this.#handling.delete(id)
    // Parked items still own their keys, so they may go straight to the ready list.
    for (const item of handling.parked) this.#ready.push(item)
    if (handling.parked.length > 0) this.schedule()
  }

  #transfer(id: string, owner: Item): void {
    const handling = this.#handling.get(id)
    if (handling !== undefined) handling.owner = owner
  }

  #scheduleRetry(item: Redelivery, delayMs: number): void {
    this.retrying++
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.retrying--
      this.#ready.push(item)
      this.queued++
      this.schedule()
    }, delayMs)
    // The connected backend keeps the process alive (see holdProcess in core), not a pending retry.
    timer.unref()
    this.#timers.add(timer)
  }

  /**
   * Stops `member`'s in-flight async runs without waiting for them (drain timeout passed): their
   * events go back to the front of the queue for another member, or are dropped when the queue
   * is a broadcast subscription's. Returns how many runs were abandoned.
   */
  abandon(member: Member, requeue: boolean, except?: OmnibusEvent): number {
    let n = 0
    // At-most-once events were acknowledged before their handler ran: never run them again.
    const redeliver = requeue && member.opts.guarantee !== 'at-most-once'
    for (const run of member.asyncRuns) {
      if (except !== undefined && eventOf(run.item) === except) continue
      member.asyncRuns.delete(run)
      run.abandoned = true
      n++
      member.inFlight--
      this.inFlight--
      const event = eventOf(run.item)
      if (redeliver) {
        const attempt = run.item instanceof Redelivery ? run.item.attempt : 1
        const first = run.item instanceof Redelivery ? run.item.firstFailureAt : Date.now()
        // Keeps its key: the redelivery comes before later events of that key.
        const next = new Redelivery(event, attempt + 1, first)
        this.#transfer(event.id, next)
        this.#ready.push(next)
        this.queued++
      } else {
        this.#release(event.partitionKey)
        this.#releaseDuplicates(event.id)
      }
    }
    if (redeliver) this.schedule()
    this.notify()
    return n
  }
}

/** What one bus remembers of a topic: the queues its events go to. */
type Route = readonly DeliveryQueue[]

const ROUTE_CACHE_LIMIT = 10_000

/** Settings of the queues a backend's subscriptions create. */
export interface QueueSettings {
  readonly queueCapacity: number
  readonly dedupeTtlMs: number
  readonly dedupeMaxEntries: number
}

/** An in-process broker: subscriptions, groups and the routing index. */
export class Bus {
  readonly name: string | undefined
  readonly #index = new MatcherIndex<Member>()
  readonly groups = new Map<string, DeliveryQueue>()
  readonly #routes = new Map<string, Route>()
  // Bursts often go to one topic: the last route is kept beside the map.
  #lastTopic: string | undefined
  #lastRoute: Route = []
  #stamp = 0
  /** Backends attached (connected) to this bus. */
  attached = 0
  subscriptions = 0

  constructor(name: string | undefined) {
    this.name = name
  }

  /**
   * The queue a new subscription joins: its own, or its group's (created on first use, with the
   * settings of the backend whose subscription created it).
   */
  queueFor(opts: ResolvedSubscribeOptions, settings: QueueSettings): DeliveryQueue {
    let q = opts.group === undefined ? undefined : this.groups.get(opts.group)
    if (q === undefined) {
      q = new DeliveryQueue(this, opts.group, settings.queueCapacity)
      if (opts.group !== undefined) this.groups.set(opts.group, q)
    }
    if (opts.guarantee === 'exactly-once' && q.dedupe === undefined) {
      q.dedupe = new MemoryDedupeStore({ ttlMs: settings.dedupeTtlMs, maxEntries: settings.dedupeMaxEntries })
    }
    return q
  }

  /**
   * Drops a group that has no members and holds nothing, so a long-lived bus does not keep every
   * group name it ever saw. A group with exactly-once records is kept: they must outlive a restart
   * of all its members.
   */
  forgetGroupIfIdle(queue: DeliveryQueue): void {
    if (queue.group === undefined || queue.members.length > 0 || queue.dedupe !== undefined) return
    if (!queue.isEmpty()) return
    if (this.groups.get(queue.group) === queue) this.groups.delete(queue.group)
  }

  /** Starts routing events matching the member's pattern to its queue. */
  add(member: Member): void {
    member.removeFromIndex = this.#index.add(member.pattern, member)
    member.queue.addMember(member)
    this.#forgetRoutes()
    this.subscriptions++
  }

  /** Stops routing to `member` (its queue keeps what it holds). */
  remove(member: Member): void {
    if (member.removeFromIndex === undefined) return
    member.removeFromIndex()
    member.removeFromIndex = undefined
    this.#forgetRoutes()
    this.subscriptions--
  }

  #route(topic: string): Route {
    if (topic === this.#lastTopic) return this.#lastRoute
    const route = this.#lookup(topic)
    this.#lastTopic = topic
    this.#lastRoute = route
    return route
  }

  #forgetRoutes(): void {
    this.#routes.clear()
    this.#lastTopic = undefined
    this.#lastRoute = []
  }

  #lookup(topic: string): Route {
    const cached = this.#routes.get(topic)
    if (cached !== undefined) return cached
    const members = this.#index.match(topic)
    const stamp = ++this.#stamp
    const queues: DeliveryQueue[] = []
    for (const m of members) {
      if (m.queue.routeStamp !== stamp) {
        m.queue.routeStamp = stamp
        queues.push(m.queue)
      }
    }
    if (this.#routes.size >= ROUTE_CACHE_LIMIT) this.#routes.clear()
    this.#routes.set(topic, queues)
    return queues
  }

  /**
   * Puts `event` into every queue it matches. Returns undefined when all took it at once, or a
   * pending publish that resolves when full queues have admitted it.
   */
  dispatch(event: OmnibusEvent): PendingPublish | undefined {
    const queues = this.#route(event.topic)
    let pending: PendingPublish | undefined
    for (let i = 0; i < queues.length; i++) {
      const q = queues[i] as DeliveryQueue
      if (!q.enqueue(event, false)) {
        if (pending === undefined) pending = new PendingPublish()
        pending.remaining++
        q.hold(event, pending)
      }
    }
    return pending
  }

  /** Publishes an event produced by the backend itself (a dead letter): never waits for room. */
  publishInternal(input: EventInput, logger: Logger): void {
    let event: OmnibusEvent
    try {
      event = createEvent(input)
    } catch (error) {
      safeLog(logger, 'error', 'could not build the dead-letter event', {
        topic: input.topic,
        error: String(error),
      })
      return
    }
    const queues = this.#route(event.topic)
    if (queues.length === 0) {
      safeLog(
        logger,
        'warn',
        `dead letter on "${event.topic}" has no subscriber and is discarded (the memory backend keeps nothing)`,
        {
          originalTopic: event.headers[DLQ_HEADERS.originalTopic],
          originalId: event.headers[DLQ_HEADERS.originalId],
          reason: event.headers[DLQ_HEADERS.reason],
        },
      )
      return
    }
    for (const q of queues) q.enqueue(event, true)
  }
}

const named = new Map<string, Bus>()

/** The shared bus called `name`, created on first use. */
export function namedBus(name: string): Bus {
  let bus = named.get(name)
  if (bus === undefined) {
    bus = new Bus(name)
    named.set(name, bus)
  }
  return bus
}

/** Forgets a named bus once nothing is attached to it and it holds no events. */
export function releaseNamedBus(bus: Bus): void {
  if (bus.name === undefined || bus.attached > 0 || bus.subscriptions > 0) return
  for (const q of bus.groups.values()) if (!q.isEmpty()) return
  if (named.get(bus.name) === bus) named.delete(bus.name)
}
