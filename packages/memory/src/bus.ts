/**
 * The broker side of the memory backend. A {@link Bus} routes each event to queues: one per
 * broadcast subscription and one per consumer group. A queue holds events in publish order and
 * hands them to its members (one for a broadcast subscription, the group's subscriptions for a
 * group) round-robin, each member while its consumer kernel has a free slot, never two events of
 * one partition key at once (a key stays with its event through retries). Each member is a
 * `ConsumerKernel` from core, which decides what delivery means; the queue is its adapter: ack
 * frees the event's key, redeliver is a timer, release puts the event back for another member.
 * Handlers that return a non-promise are run and acknowledged synchronously inside the queue's
 * drain loop, so the hot path allocates no promise per event.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import {
  ConfigurationError,
  compilePattern,
  createEvent,
  currentEvent,
  DLQ_HEADERS,
  type EventInput,
  type Logger,
  MatcherIndex,
  type OmnibusEvent,
  PublishError,
} from '@omnibus/core'
import {
  type ConsumerKernel,
  type KernelMessage,
  MemoryDedupeStore,
  type ResolvedSubscribeOptions,
  safeLog,
} from '@omnibus/core/backend'
import { DelayedEvents } from './hold.ts'

let nextMessage = 0

/**
 * A delivery the kernel keeps: a first delivery that waits, runs an `async` handler or failed
 * (made by the adapter's `firstDelivery`), a redelivery with its count, or an event handed back.
 * A first delivery that settles at once has none: queues hold the published event itself and
 * hand it over with the kernel's `deliverEvent`, so the usual event costs no object of its own.
 * Never one reused across events: a reused message outlives young-generation collections, and
 * every event stored into it would then pay the old-to-young write barrier, which costs more than
 * allocating a short-lived object.
 */
export class MemoryMessage implements KernelMessage {
  event: OmnibusEvent
  deliveryCount: number
  /** Identity of this message across its redeliveries (the native id), distinct per delivery kept. */
  seq: number

  constructor(event: OmnibusEvent, deliveryCount: number, seq: number) {
    this.event = event
    this.deliveryCount = deliveryCount
    this.seq = seq
  }

  get nativeId(): string {
    return String(this.seq)
  }

  get topic(): string {
    return this.event.topic
  }
}

/** The message of `event`'s first delivery, made when the kernel keeps that delivery. */
export function firstMessage(event: OmnibusEvent): MemoryMessage {
  return new MemoryMessage(event, 1, ++nextMessage)
}

/** What a queue holds: a published event not delivered yet, or a delivery the kernel made a message of. */
type Item = OmnibusEvent | MemoryMessage

function eventOf(item: Item): OmnibusEvent {
  return item instanceof MemoryMessage ? item.event : item
}

// A drain scheduled from inside a handler runs in the context the module was loaded in, not in
// the handler's: otherwise that handler's event would leak as the "current" one into unrelated
// deliveries and dead letters. Drains scheduled from outside any handler keep their context (the
// publisher's, as an EventEmitter listener would), which costs nothing extra.
const inRootContext = AsyncLocalStorage.snapshot()

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
  readonly item: Item
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
  readonly opts: ResolvedSubscribeOptions
  readonly queue: DeliveryQueue
  readonly matches: (topic: string) => boolean
  /** Runs the handler and settles each event (set right after construction). */
  kernel!: ConsumerKernel<MemoryMessage>
  /** Routed to by the bus (false for a subscription closed before it started). */
  added = false
  /** Closing with its backend (disconnect): the last member of a group delivers what the group holds first. */
  leaving = false
  removeFromIndex: (() => void) | undefined
  /** Called once the subscription is closed. */
  onClose: (() => void) | undefined = undefined

  constructor(id: string, opts: ResolvedSubscribeOptions, queue: DeliveryQueue) {
    this.id = id
    this.pattern = opts.pattern
    this.group = opts.group
    this.opts = opts
    this.queue = queue
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
  #items: Item[] = []
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
  #timers = new Set<ReturnType<typeof setTimeout>>()
  #idleWaiters: IdleWaiter[] = []
  #scheduled = false
  #draining = false
  /** Events held: queued, blocked by their key, or waiting for a retry. Not in-flight ones. */
  queued = 0
  retrying = 0
  /** Events handed to a member's kernel and not settled yet. */
  inFlight = 0
  routeStamp = 0
  /** Processed ids of exactly-once members; created when the first one joins. */
  dedupe: MemoryDedupeStore | undefined
  /**
   * The pattern of a group declared with `ensureGroup`: the queue stays routed with it whether or
   * not the group has members, so it is the group's mailbox while nobody consumes it.
   */
  declaredPattern: string | undefined
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
  enqueue(item: Item, internal: boolean): boolean {
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
  hold(item: Item, pending: PendingPublish): void {
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
    // A member narrower than the declared pattern must not be handed what only the mailbox matches.
    if (this.declaredPattern !== undefined && this.declaredPattern !== member.pattern)
      this.mixedPatterns = true
    this.members.push(member)
    if (this.#orphans.length > 0) {
      for (const item of this.#orphans) this.#ready.push(item)
      this.#orphans = []
    }
    this.schedule()
  }

  /** Stops giving work to `member`. */
  removeMember(member: Member): void {
    this.members = this.members.filter((m) => m !== member)
    const first = this.members[0]
    this.mixedPatterns =
      first !== undefined &&
      this.members.some(
        (m) => m.pattern !== first.pattern || (this.declaredPattern ?? m.pattern) !== m.pattern,
      )
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

  /**
   * A declared group without members holds at most `capacity` events: a publish beyond that is
   * refused, where a group with members would make the publisher wait for room.
   */
  get mailboxFull(): boolean {
    return this.members.length === 0 && this.queued + this.overflowLength >= this.capacity
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
        this.#handOver(target, item)
        if (this.#overflowHead < this.#overflow.length) this.#admit()
      }
      if (this.#overflowHead < this.#overflow.length) this.#admit()
    } finally {
      this.#draining = false
    }
    if (this.#idleWaiters.length > 0) this.notify()
  }

  // Out of drain's loop, so V8 inlines the kernel's entry check here; the kernel's run of a
  // synchronous handler (with its ack) is then one call, itself compiled with everything inlined.
  #handOver(target: Member, item: Item): void {
    this.inFlight++
    if (item instanceof MemoryMessage) target.kernel.deliver(item)
    else target.kernel.deliverEvent(item)
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
      return m.kernel.free > 0 ? m : undefined
    }
    for (let i = 0; i < n; i++) {
      const at = (this.#rr + i) % n
      const m = members[at] as Member
      if (m.kernel.free > 0) {
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
      if (m.kernel.free > 0) {
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
  // whose key is busy are parked behind that key. The returned item owns its key. The usual case
  // (nothing ready, the next event keyless) is kept small, so drain's loop inlines it.
  #take(): Item | undefined {
    const items = this.#items
    const head = this.#head
    // Not the last item: taking that one also resets the array (in #takeOther).
    if (this.#readyHead === this.#ready.length && head + 1 < items.length) {
      const item = items[head] as Item
      if (eventOf(item).partitionKey === undefined) {
        items[head] = undefined as unknown as Item
        this.#head = head + 1
        this.queued--
        if (head >= 4095 && (head + 1) * 2 >= items.length) this.#compact()
        return item
      }
    }
    return this.#takeOther()
  }

  /** Drops the taken part of the queue's array; returns the new array. */
  #compact(): Item[] {
    const items = this.#items.slice(this.#head)
    this.#items = items
    this.#head = 0
    return items
  }

  #takeOther(): Item | undefined {
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
      const item = items[this.#head] as Item
      items[this.#head++] = undefined as unknown as Item
      if (this.#head === items.length) {
        items.length = 0
        this.#head = 0
      } else if (this.#head >= 4096 && this.#head * 2 >= items.length) items = this.#compact()
      this.queued--
      const key = eventOf(item).partitionKey
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

  // ---- the kernel adapter's primitives ----

  /** The event is settled for good: its key passes to the next event of that key. */
  acked(msg: MemoryMessage): void {
    const key = msg.event.partitionKey
    if (key !== undefined) this.#release(key)
  }

  /** A first delivery handed as the event itself was settled at once: as {@link acked}. */
  ackedFirst(event: OmnibusEvent): void {
    const key = event.partitionKey
    if (key !== undefined) this.#release(key)
  }

  /** Delivers `msg` again after `delayMs`; its key stays owned by it meanwhile. */
  redeliver(msg: MemoryMessage, delayMs: number, deliveryCount: number): void {
    const next = new MemoryMessage(msg.event, deliveryCount, msg.seq)
    this.retrying++
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.retrying--
      this.#ready.push(next)
      this.queued++
      this.schedule()
    }, delayMs)
    // The connected backend keeps the process alive (see holdProcess in core), not a pending retry.
    timer.unref()
    this.#timers.add(timer)
  }

  /**
   * Takes back an event its member gave up (closing): a group offers it to its other members
   * first (keeping its key; a run that started counts as a delivery), a broadcast subscription
   * drops it.
   */
  handBack(msg: MemoryMessage, started: boolean): void {
    if (this.group === undefined) {
      this.acked(msg)
      return
    }
    this.#ready.push(started ? new MemoryMessage(msg.event, msg.deliveryCount + 1, msg.seq) : msg)
    this.queued++
    this.schedule()
  }

  /** A member's kernel is done with an event: its slot is free. */
  settled(): void {
    this.inFlight--
    // Inside drain's loop, with nobody waiting for idle, there is nothing more to do: kept that
    // short so the kernel's synchronous delivery, which calls this, fits V8's inlining budget.
    if (this.#idleWaiters.length > 0 || (this.queued > 0 && !this.#draining)) this.#afterSettled()
  }

  #afterSettled(): void {
    if (this.queued > 0 && !this.#draining) this.schedule()
    if (this.#idleWaiters.length > 0) this.notify()
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
  readonly #index = new MatcherIndex<{ readonly queue: DeliveryQueue }>()
  readonly groups = new Map<string, DeliveryQueue>()
  readonly #routes = new Map<string, Route>()
  // Bursts often go to one topic: the last route is kept beside the map.
  #lastTopic: string | undefined
  #lastRoute: Route = []
  #stamp = 0
  /** Groups declared with `ensureGroup` (their queues are never undeclared): none, no mailbox to check. */
  #declared = 0
  /** Backends attached (connected) to this bus. */
  attached = 0
  subscriptions = 0

  /** Delayed events, routed when due (while a backend is attached). */
  readonly delayed: DelayedEvents

  constructor(name: string | undefined) {
    this.name = name
    this.delayed = new DelayedEvents((event) => void this.dispatch(event))
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
    if (queue.declaredPattern !== undefined) return
    if (!queue.isEmpty()) return
    if (this.groups.get(queue.group) === queue) this.groups.delete(queue.group)
  }

  /**
   * Declares `group` on `pattern` (`ensureGroup`): its queue is created if need be and routed
   * with the pattern from now on, members or not. Another pattern for a group already declared
   * is refused: one group has one mailbox.
   */
  declare(pattern: string, group: string, settings: QueueSettings): void {
    let q = this.groups.get(group)
    if (q?.declaredPattern === pattern) return
    if (q === undefined) {
      q = new DeliveryQueue(this, group, settings.queueCapacity)
      this.groups.set(group, q)
    } else if (q.declaredPattern !== undefined) {
      throw new ConfigurationError(
        `ensureGroup("${pattern}", "${group}"): the group is declared already with the pattern "${q.declaredPattern}" on this memory bus; a group has one pattern here`,
        { backend: 'memory' },
      )
    }
    q.declaredPattern = pattern
    this.#declared++
    if (q.members.some((m) => m.pattern !== pattern)) q.mixedPatterns = true
    this.#index.add(pattern, { queue: q })
    this.#forgetRoutes()
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
   * Throws `PublishError` (`MAILBOX_FULL`) when `event` would go to the mailbox of a declared
   * group that has no member and is full; publish checks this before dispatch, so a refused
   * event is delivered nowhere.
   */
  refuseIfMailboxFull(event: OmnibusEvent): void {
    if (this.#declared === 0) return
    const queues = this.#route(event.topic)
    for (let i = 0; i < queues.length; i++) {
      const q = queues[i] as DeliveryQueue
      if (q.declaredPattern !== undefined && q.mailboxFull) throw mailboxFull(q, event)
    }
  }

  /**
   * Puts `event` into every queue it matches. Returns undefined when all took it at once, or a
   * pending publish that resolves when full queues have admitted it.
   */
  dispatch(event: OmnibusEvent): PendingPublish | undefined {
    const queues = this.#route(event.topic)
    if (queues.length === 0) return undefined
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

function mailboxFull(q: DeliveryQueue, event: OmnibusEvent): PublishError {
  return new PublishError(
    `memory backend: the mailbox of group "${q.group}" holds ${q.capacity} events (queueCapacity) and the group has no member yet; ` +
      `event ${event.id} on "${event.topic}" was not published anywhere. Start a member of the group, or raise queueCapacity`,
    { backend: 'memory', code: 'MAILBOX_FULL', retryable: true },
  )
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
  if (bus.name === undefined || bus.attached > 0 || bus.subscriptions > 0 || bus.delayed.size > 0) return
  for (const q of bus.groups.values()) if (!q.isEmpty()) return
  if (named.get(bus.name) === bus) named.delete(bus.name)
}
