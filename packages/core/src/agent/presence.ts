/**
 * Presence of agents: each AgentMessageBus with presence on announces the agents it serves with a
 * heartbeat on one broadcast topic (`<prefix>._presence`, at-most-once where the backend offers it)
 * and listens to everyone else's. The topic is outside every agent's mailbox pattern
 * (`<prefix>.<agentId>.**`) and outside broadcasts (`<prefix>._all.**`), so heartbeats never touch
 * an agent's queues.
 *
 * One heartbeat per bus instance lists all its agents, so a process serving 100 agents on one bus
 * sends one message per interval. Each beat carries a sequence number: a beat older than one
 * already applied (reordered, or an echo of our own from before a local change) is ignored.
 * An instance is gone when it says so (`bye` on close, or a beat without the agent after an
 * unsubscribe) or when nothing was heard from it for two of its own intervals (a killed process).
 */
import { ConfigurationError } from '../errors.ts'
import type { EventBackend, Guarantee, Logger, OmnibusEvent, Subscription } from '../protocol.ts'

/** Presence settings of an AgentMessageBus (`presence: true` takes the defaults). */
export interface PresenceOptions {
  /**
   * How often each bus announces its agents. An instance not heard from for two intervals is
   * reported gone; a bus that has just started waits up to one interval for an agent it has not
   * heard of before calling it unavailable. @default 5000
   */
  readonly heartbeatMs?: number
}

/** Whether an agent has at least one live instance. */
export type AgentStatus = 'online' | 'offline'

/** What presence knows of one agent. */
export interface AgentPresence {
  readonly agentId: string
  /** Live bus instances serving the agent (instances of one agent share its mailbox). */
  readonly instances: number
  /** Epoch ms of the last heartbeat heard that listed the agent. */
  readonly lastSeen: number
  readonly status: AgentStatus
}

/**
 * Why an instance of an agent joined or left: `heartbeat` (first heard), `unsubscribed`
 * (its bus stopped serving the agent), `closed` (its bus closed), `missed-heartbeats` (nothing
 * heard for two intervals: the process died or lost its connection).
 */
export type PresenceReason = 'heartbeat' | 'unsubscribed' | 'closed' | 'missed-heartbeats'

/** A join or leave of one instance of an agent. */
export interface PresenceEvent {
  readonly type: 'join' | 'leave'
  readonly agentId: string
  /** The bus instance (`<agentId of its bus>-<random>`) that joined or left. */
  readonly instance: string
  /** Live instances of the agent after this event. */
  readonly instances: number
  readonly reason: PresenceReason
  /** Epoch ms when this bus learned it. */
  readonly at: number
}

/** What travels on the presence topic. */
interface Beat {
  readonly kind: 'beat' | 'query' | 'bye'
  readonly instance: string
  readonly seq: number
  readonly intervalMs: number
  readonly agents: readonly string[]
}

interface Instance {
  agents: Set<string>
  seq: number
  intervalMs: number
  lastSeen: number
  /** Said bye: kept only so that a late beat does not bring it back. */
  closed: boolean
}

interface AgentRecord {
  readonly instances: Set<string>
  lastSeen: number
}

/** Default heartbeat interval. */
export const DEFAULT_HEARTBEAT_MS = 5000
const REMEMBERED_AGENTS = 10_000

/** Validates the `presence` option; `undefined` when presence is off. */
export function resolvePresence(option: unknown): { readonly heartbeatMs: number } | undefined {
  if (option === undefined || option === false) return undefined
  if (option === true) return { heartbeatMs: DEFAULT_HEARTBEAT_MS }
  if (typeof option !== 'object' || option === null) {
    throw new ConfigurationError(
      `AgentMessageBus presence must be true, false or { heartbeatMs }, got ${String(option)}`,
    )
  }
  for (const key of Object.keys(option)) {
    if (key !== 'heartbeatMs') {
      throw new ConfigurationError(
        `unknown AgentMessageBus presence option "${key}": the only one is heartbeatMs`,
      )
    }
  }
  const ms = (option as PresenceOptions).heartbeatMs ?? DEFAULT_HEARTBEAT_MS
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 10) {
    throw new ConfigurationError(`presence.heartbeatMs must be an integer >= 10, got ${String(ms)}`)
  }
  return { heartbeatMs: ms }
}

function sameAgents(known: ReadonlySet<string>, heard: readonly string[]): boolean {
  if (known.size !== heard.length) return false
  for (const agentId of heard) if (!known.has(agentId)) return false
  return true
}

function parseBeat(data: unknown): Beat | undefined {
  if (data === null || typeof data !== 'object') return undefined
  const b = data as Partial<Beat>
  if (b.kind !== 'beat' && b.kind !== 'query' && b.kind !== 'bye') return undefined
  if (typeof b.instance !== 'string' || typeof b.seq !== 'number') return undefined
  if (typeof b.intervalMs !== 'number' || !(b.intervalMs > 0)) return undefined
  if (!Array.isArray(b.agents) || !b.agents.every((a) => typeof a === 'string')) return undefined
  return b as Beat
}

/** Arguments of {@link PresenceTracker}. */
export interface PresenceTrackerArgs {
  readonly backend: EventBackend
  readonly topic: string
  readonly instance: string
  readonly heartbeatMs: number
  readonly logger: Logger | undefined
  /** The bus's guarantee, used when the backend has no at-most-once. */
  readonly fallbackGuarantee: Guarantee
  /** Time source (tests). */
  readonly now?: () => number
}

/** One bus's view of presence, and its own heartbeats. */
export class PresenceTracker {
  readonly heartbeatMs: number
  readonly #backend: EventBackend
  readonly #topic: string
  readonly #instance: string
  readonly #logger: Logger | undefined
  readonly #guarantee: Guarantee
  readonly #now: () => number
  readonly #instances = new Map<string, Instance>()
  readonly #agents = new Map<string, AgentRecord>()
  /** Local agent id → subscribeAgent calls serving it on this bus. */
  readonly #local = new Map<string, number>()
  readonly #listeners = new Set<(event: PresenceEvent) => void>()
  readonly #waiters = new Set<() => void>()
  #seq = 0
  #subscription: Promise<Subscription> | undefined
  #beatTimer: NodeJS.Timeout | undefined
  #expiryTimer: NodeJS.Timeout | undefined
  #expiryAt = Number.POSITIVE_INFINITY
  #startedAt: number | undefined
  #liveAt: number | undefined
  #replyQueued = false
  #publishFailures = 0
  #stopped = false

  constructor(args: PresenceTrackerArgs) {
    this.#backend = args.backend
    this.#topic = args.topic
    this.#instance = args.instance
    this.heartbeatMs = args.heartbeatMs
    this.#logger = args.logger
    this.#guarantee = args.backend.capabilities.guarantees.includes('at-most-once')
      ? 'at-most-once'
      : args.fallbackGuarantee
    this.#now = args.now ?? Date.now
  }

  /** Subscribes to the presence topic, asks everyone to announce themselves, starts the beat. */
  start(): Promise<Subscription> {
    if (this.#subscription !== undefined) return this.#subscription
    this.#startedAt = this.#now()
    const sub = this.#backend.subscribe(this.#topic, (event) => this.#onEvent(event), {
      guarantee: this.#guarantee,
      deadLetter: false,
      concurrency: 16,
    })
    this.#subscription = sub
    sub.then(
      () => {
        if (this.#stopped) return
        void this.#publish('query')
        this.#beatTimer = setInterval(() => this.#tick(), this.heartbeatMs)
        this.#beatTimer.unref()
      },
      () => {
        if (this.#subscription === sub) this.#subscription = undefined
      },
    )
    return sub
  }

  /**
   * {@link start}, then waits until the subscription is seen to receive (our own query comes
   * back), at most one interval: on a backend whose subscriptions take a while to join, the bus
   * then hears live agents before its first request.
   */
  async ready(): Promise<void> {
    await this.start()
    if (this.#liveAt !== undefined || this.#stopped) return
    const waiting = new AbortController()
    const deadline = this.#now() + this.heartbeatMs
    while (this.#liveAt === undefined && !this.#stopped && this.#now() < deadline) {
      await this.#waitForChange(deadline - this.#now(), waiting.signal)
    }
  }

  /** Whether the presence subscription has been seen to receive (our own query came back). */
  get live(): boolean {
    return this.#liveAt !== undefined
  }

  /** This bus now serves `agentId` (once more). Announced at once. */
  addLocal(agentId: string): void {
    const n = this.#local.get(agentId) ?? 0
    this.#local.set(agentId, n + 1)
    if (n > 0) return
    this.#applyOwn('heartbeat')
    void this.#publish('beat')
  }

  /** One subscribeAgent serving `agentId` on this bus ended. Announced at once. */
  removeLocal(agentId: string): void {
    const n = this.#local.get(agentId) ?? 0
    if (n > 1) {
      this.#local.set(agentId, n - 1)
      return
    }
    if (n === 0) return
    this.#local.delete(agentId)
    this.#applyOwn('unsubscribed')
    if (!this.#stopped) void this.#publish('beat')
  }

  /** Adds a listener of joins and leaves; returns the function that removes it. */
  onPresence(listener: (event: PresenceEvent) => void): () => void {
    if (typeof listener !== 'function') {
      throw new ConfigurationError(`onPresence needs a callback function, got ${typeof listener}`)
    }
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** Every agent heard of (live or gone), sorted by id. */
  list(): AgentPresence[] {
    const out: AgentPresence[] = []
    for (const [agentId, rec] of this.#agents) {
      out.push({
        agentId,
        instances: rec.instances.size,
        lastSeen: rec.lastSeen,
        status: rec.instances.size > 0 ? 'online' : 'offline',
      })
    }
    return out.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0))
  }

  /** Whether an instance of `agentId` is live now (no waiting). */
  isOnline(agentId: string): boolean {
    return (this.#agents.get(agentId)?.instances.size ?? 0) > 0
  }

  /** What presence knows of one agent, if anything. */
  get(agentId: string): AgentPresence | undefined {
    const rec = this.#agents.get(agentId)
    if (rec === undefined) return undefined
    return {
      agentId,
      instances: rec.instances.size,
      lastSeen: rec.lastSeen,
      status: rec.instances.size > 0 ? 'online' : 'offline',
    }
  }

  /**
   * Whether a request to `agentId` may go out: `online` when an instance is live; `offline` when
   * presence has been listening long enough to have heard it (one interval since it was seen to
   * work); `unknown` when it cannot tell (the presence subscription never proved itself live), in
   * which case the caller sends anyway. Waits, at most until `signal` aborts, while it cannot tell
   * yet: a bus that has just started never calls a live agent unavailable.
   */
  async check(agentId: string, signal: AbortSignal): Promise<'online' | 'offline' | 'unknown'> {
    for (;;) {
      if ((this.#agents.get(agentId)?.instances.size ?? 0) > 0) return 'online'
      if (this.#stopped || signal.aborted) return 'unknown'
      const now = this.#now()
      const base = this.#liveAt ?? this.#startedAt
      if (base === undefined) return 'unknown'
      const until = base + this.heartbeatMs
      if (now >= until) return this.#liveAt === undefined ? 'unknown' : 'offline'
      await this.#waitForChange(until - now, signal)
    }
  }

  /** Says bye (so others report the leave at once), then stops listening and beating. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearInterval(this.#beatTimer)
    clearTimeout(this.#expiryTimer)
    const sub = this.#subscription
    this.#subscription = undefined
    if (this.#local.size > 0 && this.#backend.isConnected) await this.#publish('bye')
    this.#local.clear()
    this.#applyOwn('closed')
    for (const wake of this.#waiters) wake()
    if (sub !== undefined) await sub.then((s) => s.unsubscribe()).catch(() => undefined)
  }

  #waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        this.#waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      timer.unref()
      signal.addEventListener('abort', done, { once: true })
      this.#waiters.add(done)
    })
  }

  #tick(): void {
    if (this.#local.size > 0) void this.#publish('beat')
    // A subscription that never echoed our query may have joined late: ask again.
    if (this.#liveAt === undefined) void this.#publish('query')
  }

  async #publish(kind: Beat['kind']): Promise<void> {
    const beat: Beat = {
      kind,
      instance: this.#instance,
      seq: kind === 'query' ? this.#seq : ++this.#seq,
      intervalMs: this.heartbeatMs,
      agents: kind === 'bye' ? [] : [...this.#local.keys()],
    }
    try {
      await this.#backend.publish({
        topic: this.#topic,
        data: beat as unknown as Record<string, unknown>,
        source: this.#instance,
        guarantee: this.#guarantee,
      })
      this.#publishFailures = 0
    } catch (error) {
      // Logged on the first failure of a run only: a broker outage must not flood the log.
      if (this.#publishFailures++ === 0) {
        this.#logger?.warn('agent presence: a heartbeat could not be published', {
          topic: this.#topic,
          error: error instanceof Error ? error.message : String(error),
        })
      }
    }
  }

  // Own agents are known locally at once, so a request to an agent of this same bus never waits.
  #applyOwn(reason: PresenceReason): void {
    this.#apply(this.#instance, ++this.#seq, this.heartbeatMs, [...this.#local.keys()], reason, false)
  }

  #onEvent(event: OmnibusEvent): void {
    const beat = parseBeat(event.data)
    if (beat === undefined) return
    if (beat.kind === 'query') {
      if (beat.instance === this.#instance) {
        if (this.#liveAt === undefined) {
          this.#liveAt = this.#now()
          for (const wake of this.#waiters) wake()
        }
        return
      }
      // A bus that just started asks: answer once per tick however many ask.
      if (this.#local.size > 0 && !this.#replyQueued && !this.#stopped) {
        this.#replyQueued = true
        setImmediate(() => {
          this.#replyQueued = false
          if (!this.#stopped) void this.#publish('beat')
        })
      }
      return
    }
    if (beat.instance === this.#instance) {
      // Our own echo proves the subscription works as well as a query does.
      if (this.#liveAt === undefined) {
        this.#liveAt = this.#now()
        for (const wake of this.#waiters) wake()
      }
      const now = this.#now()
      for (const agentId of this.#local.keys()) {
        const rec = this.#agents.get(agentId)
        if (rec !== undefined) rec.lastSeen = now
      }
      return
    }
    if (beat.kind === 'bye') {
      this.#apply(beat.instance, beat.seq, beat.intervalMs, [], 'closed', true)
    } else {
      this.#apply(beat.instance, beat.seq, beat.intervalMs, beat.agents, 'unsubscribed', false)
    }
  }

  #apply(
    id: string,
    seq: number,
    intervalMs: number,
    agents: readonly string[],
    leaveReason: PresenceReason,
    closed: boolean,
  ): void {
    const now = this.#now()
    let inst = this.#instances.get(id)
    if (inst !== undefined && (seq <= inst.seq || inst.closed)) {
      if (seq === inst.seq && !inst.closed) inst.lastSeen = now
      return
    }
    if (inst !== undefined && !closed && sameAgents(inst.agents, agents)) {
      // The steady state, every interval from every bus: nothing joins or leaves.
      inst.seq = seq
      inst.intervalMs = intervalMs
      inst.lastSeen = now
      for (const agentId of agents) {
        const rec = this.#agents.get(agentId)
        if (rec !== undefined) rec.lastSeen = now
      }
      if (id !== this.#instance) this.#scheduleExpiry(now + 2 * intervalMs)
      return
    }
    const before = inst?.agents ?? new Set<string>()
    const after = new Set(agents)
    if (inst === undefined) {
      inst = { agents: after, seq, intervalMs, lastSeen: now, closed }
      this.#instances.set(id, inst)
    } else {
      inst.agents = after
      inst.seq = seq
      inst.intervalMs = intervalMs
      inst.lastSeen = now
      inst.closed = closed
    }
    const events: PresenceEvent[] = []
    for (const agentId of before) {
      if (!after.has(agentId)) events.push(this.#leave(agentId, id, leaveReason, now))
    }
    for (const agentId of after) {
      const rec = this.#record(agentId)
      rec.lastSeen = now
      if (!before.has(agentId)) {
        rec.instances.add(id)
        events.push({
          type: 'join',
          agentId,
          instance: id,
          instances: rec.instances.size,
          reason: 'heartbeat',
          at: now,
        })
      }
    }
    if (id !== this.#instance) this.#scheduleExpiry(inst.lastSeen + 2 * inst.intervalMs)
    this.#emit(events)
  }

  #leave(agentId: string, instance: string, reason: PresenceReason, now: number): PresenceEvent {
    const rec = this.#record(agentId)
    rec.instances.delete(instance)
    return { type: 'leave', agentId, instance, instances: rec.instances.size, reason, at: now }
  }

  #record(agentId: string): AgentRecord {
    let rec = this.#agents.get(agentId)
    if (rec === undefined) {
      rec = { instances: new Set(), lastSeen: this.#now() }
      this.#agents.set(agentId, rec)
      if (this.#agents.size > REMEMBERED_AGENTS) this.#forgetOneOffline()
    }
    return rec
  }

  #forgetOneOffline(): void {
    for (const [agentId, rec] of this.#agents) {
      if (rec.instances.size === 0) {
        this.#agents.delete(agentId)
        return
      }
    }
  }

  #scheduleExpiry(at: number): void {
    if (this.#stopped || at >= this.#expiryAt) return
    clearTimeout(this.#expiryTimer)
    this.#expiryAt = at
    this.#expiryTimer = setTimeout(() => this.#expire(), Math.max(0, at - this.#now()))
    this.#expiryTimer.unref()
  }

  #expire(): void {
    this.#expiryTimer = undefined
    this.#expiryAt = Number.POSITIVE_INFINITY
    if (this.#stopped) return
    const now = this.#now()
    const events: PresenceEvent[] = []
    let next = Number.POSITIVE_INFINITY
    for (const [id, inst] of this.#instances) {
      if (id === this.#instance) continue
      const due = inst.lastSeen + 2 * inst.intervalMs
      if (due > now) {
        next = Math.min(next, due)
        continue
      }
      this.#instances.delete(id)
      if (inst.closed) continue
      for (const agentId of inst.agents) events.push(this.#leave(agentId, id, 'missed-heartbeats', now))
    }
    if (next !== Number.POSITIVE_INFINITY) this.#scheduleExpiry(next)
    this.#emit(events)
  }

  #emit(events: readonly PresenceEvent[]): void {
    if (events.length === 0) return
    for (const wake of this.#waiters) wake()
    for (const event of events) {
      for (const listener of this.#listeners) {
        try {
          listener(event)
        } catch (error) {
          this.#logger?.warn('agent presence: an onPresence callback threw', {
            error: error instanceof Error ? error.message : String(error),
          })
        }
      }
    }
  }
}
