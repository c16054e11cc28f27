/**
 * One subscription's consumer. A group subscription reads its topic streams with `XREADGROUP`
 * as one consumer of a Redis consumer group named after the group, acknowledges with `XACK`
 * once the handler resolved, keeps the entries it holds alive with a heartbeat (`XCLAIM … JUSTID`)
 * and reclaims entries of dead members with `XAUTOCLAIM` once they sat idle for the visibility
 * window. A broadcast subscription reads with `XREAD` from where it subscribed. Each consumer
 * has its own connection for the blocking reads, woken with `CLIENT UNBLOCK` when its set of
 * streams changes or it closes.
 */
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { EventHandler, EventInput, Logger, OmnibusEvent, Subscription } from '@omnibus/core'
import {
  deadLetterInput,
  decideFailure,
  decodeEvent,
  type HandlerOutcome,
  HandlerRunner,
  InvalidEnvelopeError,
  KeyedLimiter,
  MemoryDedupeStore,
  type ResolvedSubscribeOptions,
  setHeader,
} from '@omnibus/core/backend'
import type { Redis } from 'ioredis'
import { classifyError } from './errors.ts'
import { EVENT_FIELD, type KeyMap } from './keys.ts'
import type { ResolvedRedisOptions } from './options.ts'

/** What a consumer needs from its backend. */
export interface ConsumerHost {
  readonly cfg: ResolvedRedisOptions
  readonly keys: KeyMap
  readonly logger: Logger
  /** The shared non-blocking command connection. */
  command(): Redis
  /** A new dedicated connection for blocking reads. */
  newReader(): Promise<Redis>
  releaseReader(r: Redis): void
  publishDeadLetter(input: EventInput): Promise<void>
  removeConsumer(c: Consumer): void
}

/** Arguments of {@link startConsumer}. */
export interface ConsumerSpec {
  readonly resolved: ResolvedSubscribeOptions
  readonly handler: EventHandler
  readonly wildcard: boolean
  readonly matches: (topic: string) => boolean
  /**
   * Stream id the subscription reads after in streams it finds after subscribing (`0-0` for
   * earliest).
   */
  readonly startId: string
  /**
   * `from: 'latest'`: streams that exist when it subscribes are read after their last entry, taken
   * by the server when the group is created (`$`), not from a clock.
   */
  readonly startAtEnd: boolean
}

/** A running subscription consumer. */
export interface Consumer {
  readonly subscription: Subscription
  readonly wildcard: boolean
  matches(topic: string): boolean
  /** Starts reading `topics` (streams that exist or are named literally). */
  start(topics: readonly string[]): Promise<void>
  /** Adds a topic discovered after subscribing. */
  addTopic(topic: string): void
  /** Stops reading, waits for in-flight handlers up to `drainTimeoutMs`, releases the rest. */
  close(drainTimeoutMs?: number): Promise<void>
}

/** An entry this consumer holds (read and not yet acknowledged). */
interface Held {
  readonly key: string
  readonly id: string
  readonly topic: string
  /** The decoded event, or the decode failure. */
  readonly event: OmnibusEvent | undefined
  readonly invalid: InvalidEnvelopeError | undefined
  /** The entry's fields, kept only when it could not be decoded. */
  readonly raw: Record<string, string> | undefined
  attempt: number
  firstFailureAt: number | undefined
  timer: NodeJS.Timeout | undefined
  /** Exactly-once record held while the handler runs. */
  eoKey: string | undefined
}

const ACQUIRE_SCRIPT = `local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 'acquired' end
if v == 'd' then return 'done' end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 'acquired' end
return 'busy'`

/** Releases a processed-id lock only when `ARGV[1]` still owns it. */
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

const DELETE_IDLE_CONSUMER = `local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return -1`

/** Idle time that makes a released entry claimable by any member at once. */
const RELEASED_IDLE_MS = 2 ** 31

function fieldsOf(list: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (!Array.isArray(list)) return out
  for (let i = 0; i + 1 < list.length; i += 2) setHeader(out, String(list[i]), String(list[i + 1]))
  return out
}

function entryTime(id: string): number {
  const ms = Number(id.split('-')[0])
  return Number.isFinite(ms) ? ms : Date.now()
}

let consumerSeq = 0

/** Held entries by stream key, then entry id (ids are unique within a stream only). */
class HeldEntries {
  readonly #byStream = new Map<string, Map<string, Held>>()
  #size = 0

  get size(): number {
    return this.#size
  }

  has(key: string, id: string): boolean {
    return this.#byStream.get(key)?.has(id) === true
  }

  add(h: Held): void {
    let m = this.#byStream.get(h.key)
    if (m === undefined) {
      m = new Map()
      this.#byStream.set(h.key, m)
    }
    if (!m.has(h.id)) this.#size++
    m.set(h.id, h)
  }

  delete(h: Held): void {
    if (this.#byStream.get(h.key)?.delete(h.id) === true) this.#size--
  }

  *values(): IterableIterator<Held> {
    for (const m of this.#byStream.values()) yield* m.values()
  }

  clear(): void {
    this.#byStream.clear()
    this.#size = 0
  }
}
const DONE: Promise<void> = Promise.resolve()

/** Creates the consumer of one subscription (call `start`). */
export function startConsumer(host: ConsumerHost, spec: ConsumerSpec): Consumer {
  const { cfg, keys, logger } = host
  const opts = spec.resolved
  const group = opts.group
  const grouped = group !== undefined
  const guarantee = opts.guarantee
  const acked = grouped && guarantee !== 'at-most-once'
  const vis = opts.visibilityTimeoutMs ?? cfg.visibilityTimeoutMs
  const batch = cfg.batchSize
  const prefetch = Math.max(batch * 2, opts.concurrency)
  const subId = `${++consumerSeq}-${randomUUID().slice(0, 8)}`
  const consumerName = `${hostname()}-${process.pid}-${subId}`
  const limiter = new KeyedLimiter(opts.concurrency)
  const lane: Held[] | undefined = opts.concurrency === 1 ? [] : undefined
  let laneRunning = false
  let idleWaiters: Array<() => void> = []
  const handlerAbort = new AbortController()
  const localDedupe =
    !grouped && guarantee === 'exactly-once' ? new MemoryDedupeStore({ ttlMs: cfg.dedupeTtlMs }) : undefined

  /** Streams being read → topic. */
  const streams = new Map<string, string>()
  const pendingTopics = new Set<string>()
  /** Last id read per stream (broadcast). */
  const lastIds = new Map<string, string>()
  /** Entries held, by stream and entry id. */
  const held = new HeldEntries()
  const claimCursors = new Map<string, string>()
  let active = 0
  let closed = false
  let closing: Promise<void> | undefined
  let reader: Redis | undefined
  let readerId: number | undefined
  let blocked = false
  /** Number of the current (or last) blocking read. */
  let readSeq = 0
  let interrupting = -1
  let loopDone: Promise<void> | undefined
  let wake: (() => void) | undefined
  let heartbeatTimer: NodeJS.Timeout | undefined
  let sweepTimer: NodeJS.Timeout | undefined
  let sweeping = false
  let ackQueue = new Map<string, string[]>()
  let doneQueue: string[] = []
  let ackScheduled = false
  const ackFlushes = new Set<Promise<unknown>>()
  let abortListener: (() => void) | undefined

  const subscription: Subscription = {
    id: subId,
    pattern: opts.pattern,
    group,
    get active() {
      return !closed
    },
    unsubscribe: () => close(),
  }
  const runner = new HandlerRunner(spec.handler, subscription, logger, handlerAbort.signal)

  function nudge(): void {
    const w = wake
    wake = undefined
    w?.()
    if (blocked) void interruptRead(readSeq)
  }

  /**
   * Interrupts the blocking read number `seq` so it restarts with the new stream set (or stops).
   * The read may not have reached the server yet (CLIENT UNBLOCK then answers 0), so this repeats
   * until the server unblocked it or it returned on its own.
   */
  async function interruptRead(seq: number): Promise<void> {
    if (interrupting === seq) return
    interrupting = seq
    try {
      for (let tries = 0; blocked && readSeq === seq && tries < 200; tries++) {
        const id = readerId
        if (id !== undefined) {
          const n = await host
            .command()
            .call('CLIENT', 'UNBLOCK', id)
            .catch(() => 0)
          if (Number(n) === 1) return
        }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    } finally {
      if (interrupting === seq) interrupting = -1
    }
  }

  function sleepUntilNudged(maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined
        resolve()
      }, maxMs)
      // Waiting between reads is not what keeps the process alive: the backend's hold is.
      timer.unref()
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  async function ensureGroup(key: string, startId: string): Promise<void> {
    try {
      await host.command().call('XGROUP', 'CREATE', key, group as string, startId, 'MKSTREAM')
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err
    }
  }

  async function addStream(topic: string, atSubscribe = false): Promise<void> {
    const key = keys.stream(topic)
    if (streams.has(key) || pendingTopics.has(topic) || closed) return
    pendingTopics.add(topic)
    try {
      const atEnd = atSubscribe && spec.startAtEnd
      if (grouped) await ensureGroup(key, atEnd ? '$' : spec.startId)
      else lastIds.set(key, atEnd ? await lastEntryId(key) : spec.startId)
      streams.set(key, topic)
      nudge()
    } finally {
      pendingTopics.delete(topic)
    }
  }

  /** Id of the newest entry of a stream, or `0-0` when it has none (every later entry is new). */
  async function lastEntryId(key: string): Promise<string> {
    const last = (await host.command().call('XREVRANGE', key, '+', '-', 'COUNT', 1)) as [string, unknown][]
    return last[0]?.[0] ?? '0-0'
  }

  // ---- acknowledgements, coalesced per tick into one XACK per stream ----

  function flushAcks(): void {
    ackScheduled = false
    const acks = ackQueue
    const done = doneQueue
    ackQueue = new Map()
    doneQueue = []
    if (acks.size === 0 && done.length === 0) return
    let c: Redis
    try {
      c = host.command()
    } catch {
      return
    }
    let sent: Promise<unknown>
    if (done.length === 0 && acks.size === 1) {
      // The common case, one stream and no processed-id records: one XACK, without the cost of
      // building a pipeline.
      const [key, ids] = acks.entries().next().value as [string, string[]]
      sent = c.call('XACK', key, group as string, ...ids)
    } else {
      const p = c.pipeline()
      // Processed-id records first: once the entry is acknowledged the record is what prevents a
      // second effect of the same id.
      for (const k of done) p.call('SET', k, 'd', 'PX', cfg.dedupeTtlMs)
      for (const [key, ids] of acks) p.call('XACK', key, group as string, ...ids)
      sent = p.exec().then((results) => {
        for (const r of results ?? []) if (r[0] !== null) throw r[0]
      })
    }
    const run = sent.catch((err: unknown) =>
      logger.warn('redis acknowledgement failed; the entries will be redelivered', {
        error: (err as Error).message,
      }),
    )
    ackFlushes.add(run)
    void run.finally(() => ackFlushes.delete(run))
  }

  function ack(h: Held): void {
    held.delete(h)
    if (!acked) return
    if (h.eoKey !== undefined) doneQueue.push(h.eoKey)
    const list = ackQueue.get(h.key)
    if (list === undefined) ackQueue.set(h.key, [h.id])
    else list.push(h.id)
    if (!ackScheduled) {
      ackScheduled = true
      setImmediate(flushAcks)
    }
  }

  // ---- delivery ----

  function receive(key: string, id: string, fields: unknown, deliveryCount: number): void {
    if (held.has(key, id)) return
    const topic = streams.get(key) ?? keys.topicOf(key) ?? key
    let event: OmnibusEvent | undefined
    let invalid: InvalidEnvelopeError | undefined
    let raw: Record<string, string> | undefined
    // The common entry is exactly [event, <json>]; anything else is looked at field by field.
    let text: string | undefined
    if (Array.isArray(fields) && fields.length === 2 && fields[0] === EVENT_FIELD) text = String(fields[1])
    else {
      raw = fieldsOf(fields)
      text = raw[EVENT_FIELD]
    }
    if (text === undefined) {
      raw ??= fieldsOf(fields)
      invalid = new InvalidEnvelopeError(
        `stream entry ${id} of "${topic}" has no "${EVENT_FIELD}" field (fields: ${Object.keys(raw).join(', ') || 'none'})`,
        JSON.stringify(raw),
      )
    } else {
      try {
        event = decodeEvent(text)
      } catch (err) {
        invalid =
          err instanceof InvalidEnvelopeError
            ? err
            : new InvalidEnvelopeError((err as Error).message, text, err)
        raw ??= fieldsOf(fields)
      }
    }
    const h: Held = {
      key,
      id,
      topic,
      event,
      invalid,
      raw,
      attempt: deliveryCount,
      firstFailureAt: undefined,
      timer: undefined,
      eoKey: undefined,
    }
    held.add(h)
    schedule(h)
  }

  function settled(): void {
    active--
    if (active <= prefetch - batch || active === 0) {
      const w = wake
      wake = undefined
      w?.()
    }
    if (active === 0) {
      const waiters = idleWaiters
      idleWaiters = []
      for (const w of waiters) w()
    }
  }

  function failed(err: unknown): void {
    logger.error('redis consumer failed to process an entry', { error: String(err) })
  }

  function schedule(h: Held): void {
    active++
    if (lane === undefined) {
      limiter
        .run(h.event?.partitionKey, () => processEntry(h) ?? DONE)
        .catch(failed)
        .finally(settled)
      return
    }
    if (!laneRunning) {
      // The lane is idle: run the entry here, and only fall back to the lane's loop when the
      // handler is still running when this returns.
      let running: Promise<void> | undefined
      try {
        running = processEntry(h)
      } catch (err) {
        failed(err)
      }
      if (running === undefined) {
        settled()
        return
      }
      laneRunning = true
      void running
        .catch(failed)
        .finally(settled)
        .then(() => drainLane(lane))
      return
    }
    lane.push(h)
  }

  // With concurrency 1 entries run strictly one after another in arrival order, which a plain
  // queue gives without a limiter's bookkeeping per entry (the hot path of the default setting).
  async function drainLane(queue: Held[]): Promise<void> {
    laneRunning = true
    try {
      for (let h = queue.shift(); h !== undefined; h = queue.shift()) {
        try {
          const running = processEntry(h)
          if (running !== undefined) await running
        } catch (err) {
          failed(err)
        }
        settled()
      }
    } finally {
      laneRunning = false
    }
  }

  function whenIdle(): Promise<void> {
    if (active === 0) return Promise.resolve()
    return new Promise((resolve) => idleWaiters.push(resolve))
  }

  async function deadLetter(h: Held, event: OmnibusEvent, reason: string, error: unknown, attempts: number) {
    if (opts.deadLetter === false) {
      logger.warn('redis event dropped after its last attempt (deadLetter: false)', {
        topic: h.topic,
        id: event.id,
        reason,
      })
      return
    }
    const now = Date.now()
    await host.publishDeadLetter(
      deadLetterInput(event, opts.deadLetter, {
        reason,
        group,
        attempts,
        firstFailureAt: h.firstFailureAt ?? now,
        lastFailureAt: now,
        error,
        backend: 'redis',
      }),
    )
  }

  /**
   * Runs one entry. The common case (a decoded event, no exactly-once record to take) runs the
   * handler at once and, when it returned synchronously, acknowledges without a promise.
   */
  function processEntry(h: Held): Promise<void> | undefined {
    if (closed) return undefined
    const event = h.event
    if (
      event === undefined ||
      h.invalid !== undefined ||
      (acked && h.attempt > opts.retry.maxAttempts) ||
      (grouped && guarantee === 'exactly-once')
    ) {
      return processSpecial(h)
    }
    if (localDedupe?.has(subId, event.id)) {
      ack(h)
      return undefined
    }
    return runHandler(h, event)
  }

  /**
   * Owner of an exactly-once lock: this member *and* this stream entry. A retry of the same entry
   * takes its lock again; a duplicate of the id in another entry (published twice) finds it busy
   * until the first is done, even on this member, so the handler runs once per id.
   */
  function lockOwner(h: Held): string {
    return `p:${consumerName}:${h.key}:${h.id}`
  }

  /** Foreign entries, entries out of attempts, and exactly-once entries. */
  async function processSpecial(h: Held): Promise<void> {
    if (h.invalid !== undefined || h.event === undefined) {
      // Foreign or corrupt entry: dead-letter what was on the wire, with the reason.
      const synthetic: OmnibusEvent = {
        id: `redis-${h.topic}-${h.id}`,
        topic: h.topic,
        data: h.raw?.[EVENT_FIELD] ?? h.raw ?? null,
        time: entryTime(h.id),
        source: 'redis:unknown-producer',
        headers: { 'omnibus-redis-stream': h.key, 'omnibus-redis-entry': h.id },
        guarantee: 'at-least-once',
      }
      try {
        await deadLetter(h, synthetic, h.invalid?.message ?? 'undecodable entry', h.invalid, h.attempt)
        ack(h)
      } catch (err) {
        retryLater(h, 1_000, false, err)
      }
      return
    }
    const event = h.event
    if (acked && h.attempt > opts.retry.maxAttempts) {
      // Delivered maxAttempts times already without an acknowledgement (members died while
      // handling it): do not run it again.
      try {
        await deadLetter(
          h,
          event,
          `delivered ${h.attempt - 1} times without an acknowledgement (consumers lost while handling it)`,
          undefined,
          h.attempt - 1,
        )
        ack(h)
      } catch (err) {
        retryLater(h, 1_000, false, err)
      }
      return
    }
    if (localDedupe?.has(subId, event.id)) {
      ack(h)
      return
    }
    if (grouped && guarantee === 'exactly-once') {
      const eoKey = keys.processed(group as string, event.id)
      let state: string
      try {
        state = String(await host.command().call('EVAL', ACQUIRE_SCRIPT, 1, eoKey, lockOwner(h), vis))
      } catch (err) {
        retryLater(h, 500, false, err)
        return
      }
      if (state === 'done') {
        ack(h)
        return
      }
      if (state === 'busy') {
        // Another member is handling the same event id right now: look again later.
        retryLater(h, Math.min(vis, 1_000), false, undefined)
        return
      }
      h.eoKey = eoKey
    }
    await runHandler(h, event)
  }

  function runHandler(h: Held, event: OmnibusEvent): Promise<void> | undefined {
    const outcome = runner.run(event, h.attempt)
    if (outcome instanceof Promise) return outcome.then((o) => afterHandler(h, event, o))
    return afterHandler(h, event, outcome)
  }

  /** Acknowledges a handled entry, or applies the retry policy to a failed one. */
  function afterHandler(h: Held, event: OmnibusEvent, outcome: HandlerOutcome): Promise<void> | undefined {
    if (outcome.kind === 'ack') {
      localDedupe?.add(subId, event.id)
      ack(h)
      return undefined
    }
    return afterFailure(h, event, outcome)
  }

  async function afterFailure(
    h: Held,
    event: OmnibusEvent,
    outcome: Exclude<HandlerOutcome, { kind: 'ack' }>,
  ): Promise<void> {
    const now = Date.now()
    h.firstFailureAt ??= now
    if (h.eoKey !== undefined) {
      const k = h.eoKey
      h.eoKey = undefined
      await host
        .command()
        .call('EVAL', RELEASE_SCRIPT, 1, k, lockOwner(h))
        .catch(() => {})
    }
    const decision = decideFailure(opts, h.attempt, outcome)
    switch (decision.action) {
      case 'retry':
        retryLater(h, decision.delayMs, true, outcome.error)
        return
      case 'dead-letter':
        try {
          await deadLetter(h, event, decision.reason, outcome.error, h.attempt)
          ack(h)
        } catch (err) {
          logger.warn('redis dead-letter publish failed; retrying it', { error: (err as Error).message })
          retryLater(h, 1_000, false, err)
        }
        return
      case 'drop':
        logger.debug('redis event not redelivered', { topic: h.topic, id: event.id, reason: decision.reason })
        ack(h)
        return
    }
  }

  /** Runs the entry again after `delayMs` without holding a concurrency slot meanwhile. */
  function retryLater(h: Held, delayMs: number, countsAsAttempt: boolean, _error: unknown): void {
    if (closed) return
    h.timer = setTimeout(() => {
      h.timer = undefined
      if (closed) return
      if (countsAsAttempt) h.attempt++
      if (!acked || !countsAsAttempt) {
        schedule(h)
        return
      }
      // Record the attempt in the pending entry's delivery count, so a member that reclaims it
      // after a crash continues the count instead of restarting it.
      host
        .command()
        .call('XCLAIM', h.key, group as string, consumerName, 0, h.id, 'RETRYCOUNT', h.attempt, 'JUSTID')
        .then((ids) => {
          if (Array.isArray(ids) && ids.length === 0) {
            held.delete(h)
            return
          }
          schedule(h)
        })
        .catch(() => schedule(h))
    }, delayMs)
    h.timer.unref()
  }

  // ---- reading ----

  /** One XREADGROUP (or XREAD) of up to `count` entries over every stream of the subscription. */
  async function fetch(r: Redis, count: number): Promise<unknown> {
    const keysList = [...streams.keys()]
    readSeq++
    blocked = true
    try {
      if (grouped) {
        const args: (string | number)[] = [
          'GROUP',
          group as string,
          consumerName,
          'COUNT',
          count,
          'BLOCK',
          cfg.blockMs,
        ]
        if (!acked) args.push('NOACK')
        args.push('STREAMS', ...keysList)
        for (let i = 0; i < keysList.length; i++) args.push('>')
        return await r.call('XREADGROUP', ...args)
      }
      const args: (string | number)[] = ['COUNT', count, 'BLOCK', cfg.blockMs, 'STREAMS', ...keysList]
      for (const k of keysList) args.push(lastIds.get(k) ?? spec.startId)
      return await r.call('XREAD', ...args)
    } finally {
      blocked = false
    }
  }

  type Reply = [string, [string, unknown][] | null][]

  /** Entries in a reply; for broadcast reads, also moves each stream's read position past them. */
  function taken(reply: unknown): number {
    if (!Array.isArray(reply)) return 0
    let n = 0
    for (const s of reply as Reply) {
      const entries = s[1]
      if (!Array.isArray(entries) || entries.length === 0) continue
      n += entries.length
      if (!grouped) lastIds.set(String(s[0]), (entries[entries.length - 1] as [string, unknown])[0])
    }
    return n
  }

  function deliver(reply: unknown): void {
    if (!Array.isArray(reply)) return
    for (const s of reply as Reply) {
      const key = String(s[0])
      const entries = s[1]
      if (!Array.isArray(entries)) continue
      for (const [id, fields] of entries) {
        if (fields === null) {
          // Entry deleted (trimmed) while pending: nothing left to deliver.
          continue
        }
        if (closed) {
          // Read while closing: hand it back with the rest instead of leaving it to the lease.
          if (acked) held.add(idleEntry(key, id))
          continue
        }
        receive(key, id, fields, 1)
      }
    }
  }

  function idleEntry(key: string, id: string): Held {
    return {
      key,
      id,
      topic: streams.get(key) ?? key,
      event: undefined,
      invalid: undefined,
      raw: undefined,
      attempt: 1,
      firstFailureAt: undefined,
      timer: undefined,
      eoKey: undefined,
    }
  }

  async function loop(): Promise<void> {
    let failures = 0
    // The next reply, requested before the current one is handled: the server reads and sends
    // it while this process runs the handlers, instead of one waiting for the other.
    let ahead: Promise<unknown> | undefined
    while (!closed) {
      const r = reader
      if (r === undefined) break
      if (ahead === undefined && streams.size === 0) {
        await sleepUntilNudged(cfg.blockMs)
        continue
      }
      if (ahead === undefined && active >= prefetch) {
        await sleepUntilNudged(cfg.blockMs)
        continue
      }
      try {
        if (readerId === undefined) readerId = Number(await r.client('ID'))
        const next = ahead ?? fetch(r, Math.max(1, Math.min(batch, prefetch - active)))
        ahead = undefined
        const reply = await next
        const n = taken(reply)
        const room = prefetch - active - n
        if (n > 0 && room > 0 && !closed) {
          ahead = fetch(r, Math.min(batch, room))
          ahead.catch(() => {})
        }
        deliver(reply)
        failures = 0
      } catch (err) {
        if (closed) break
        const msg = (err as Error).message
        if (/NOGROUP/.test(msg) && grouped) {
          // The server lost the group (restarted without persistence, or the key was deleted).
          await Promise.all([...streams.keys()].map((k) => ensureGroup(k, spec.startId).catch(() => {})))
          continue
        }
        failures++
        if (failures === 1 || failures % 50 === 0) {
          logger.warn('redis read failed; retrying', { error: classifyError(err, 'subscribe').message })
        }
        await sleepUntilNudged(Math.min(100 * failures, 1_000))
      }
    }
    // A read still outstanding at close: its entries are handed back with the held ones.
    if (ahead !== undefined) deliver(await ahead.catch(() => null))
  }

  // ---- leases: heartbeat for held entries, reclaim of idle entries of dead members ----

  async function heartbeat(): Promise<void> {
    const byKey = new Map<string, string[]>()
    const eoKeys: string[] = []
    for (const h of held.values()) {
      const list = byKey.get(h.key)
      if (list === undefined) byKey.set(h.key, [h.id])
      else list.push(h.id)
      if (h.eoKey !== undefined) eoKeys.push(h.eoKey)
    }
    if (byKey.size === 0) return
    try {
      const p = host.command().pipeline()
      for (const [key, ids] of byKey)
        p.call('XCLAIM', key, group as string, consumerName, 0, ...ids, 'JUSTID')
      for (const k of eoKeys) p.call('PEXPIRE', k, vis)
      await p.exec()
    } catch (err) {
      logger.debug('redis lease heartbeat failed', { error: (err as Error).message })
    }
  }

  async function sweep(): Promise<void> {
    if (sweeping || closed) return
    sweeping = true
    try {
      const c = host.command()
      if (c.status !== 'ready') return
      for (const key of streams.keys()) {
        const room = prefetch - active
        if (room <= 0 || closed) break
        const cursor = claimCursors.get(key) ?? '0-0'
        const reply = (await c.call(
          'XAUTOCLAIM',
          key,
          group as string,
          consumerName,
          vis,
          cursor,
          'COUNT',
          Math.min(room, batch),
        )) as [string, [string, unknown][] | null, string[] | undefined]
        claimCursors.set(key, String(reply[0]))
        const entries = (reply[1] ?? []).filter((e) => Array.isArray(e) && e[1] !== null)
        const deleted = reply[2] ?? []
        if (deleted.length > 0) {
          logger.warn('redis entries were trimmed from the stream before they were acknowledged', {
            stream: key,
            count: deleted.length,
          })
        }
        if (entries.length === 0 || closed) continue
        // XAUTOCLAIM does not return delivery counts: read them from the pending list.
        const first = entries[0]?.[0] as string
        const last = entries[entries.length - 1]?.[0] as string
        const pending = (await c.call(
          'XPENDING',
          key,
          group as string,
          first,
          last,
          entries.length,
          consumerName,
        )) as [string, string, number, number][]
        const counts = new Map(pending.map((p) => [String(p[0]), Number(p[3])]))
        for (const [id, fields] of entries) receive(key, id, fields, counts.get(id) ?? 2)
      }
    } catch (err) {
      logger.debug('redis reclaim sweep failed', { error: (err as Error).message })
    } finally {
      sweeping = false
    }
  }

  // ---- lifecycle ----

  async function start(topics: readonly string[]): Promise<void> {
    reader = await host.newReader()
    reader.on('ready', () => {
      readerId = undefined
    })
    reader.on('close', () => {
      readerId = undefined
    })
    for (const t of topics) await addStream(t, true)
    if (acked) {
      heartbeatTimer = setInterval(() => void heartbeat(), Math.max(50, Math.floor(vis / 3)))
      sweepTimer = setInterval(() => void sweep(), Math.max(50, Math.min(Math.floor(vis / 2), 5_000)))
      heartbeatTimer.unref()
      sweepTimer.unref()
    }
    loopDone = loop()
    const signal = opts.signal
    if (signal !== undefined) {
      if (signal.aborted) void close()
      else {
        abortListener = () => void close()
        signal.addEventListener('abort', abortListener, { once: true })
      }
    }
  }

  function close(drainTimeoutMs: number = cfg.drainTimeoutMs): Promise<void> {
    if (closing !== undefined) return closing
    closed = true
    closing = (async () => {
      if (abortListener !== undefined) opts.signal?.removeEventListener('abort', abortListener)
      nudge()
      for (const h of held.values()) {
        if (h.timer !== undefined) {
          clearTimeout(h.timer)
          h.timer = undefined
        }
      }
      let timer: NodeJS.Timeout | undefined
      const drained = await Promise.race([
        whenIdle().then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), drainTimeoutMs)
        }),
      ])
      clearTimeout(timer)
      if (!drained) handlerAbort.abort(new Error('subscription closed before the handler finished'))
      if (ackScheduled) flushAcks()
      await Promise.allSettled([...ackFlushes])
      if (heartbeatTimer !== undefined) clearInterval(heartbeatTimer)
      if (sweepTimer !== undefined) clearInterval(sweepTimer)
      const r = reader
      reader = undefined
      if (r !== undefined) host.releaseReader(r)
      await loopDone?.catch(() => {})
      if (acked && held.size > 0) {
        // Hand back what was read but not acknowledged: an idle time past any visibility window
        // lets the next sweep of any member claim it at once.
        try {
          const p = host.command().pipeline()
          const byKey = new Map<string, string[]>()
          for (const h of held.values()) {
            const list = byKey.get(h.key)
            if (list === undefined) byKey.set(h.key, [h.id])
            else list.push(h.id)
          }
          for (const [key, ids] of byKey) {
            p.call(
              'XCLAIM',
              key,
              group as string,
              consumerName,
              0,
              ...ids,
              'IDLE',
              RELEASED_IDLE_MS,
              'JUSTID',
            )
          }
          await p.exec()
        } catch {
          // Not fatal: the entries become claimable once the visibility window passes.
        }
      } else if (grouped) {
        try {
          const p = host.command().pipeline()
          for (const key of streams.keys())
            p.call('EVAL', DELETE_IDLE_CONSUMER, 1, key, group as string, consumerName)
          await p.exec()
        } catch {
          // Best effort: an idle consumer name left in the group costs nothing but a line in XINFO.
        }
      }
      held.clear()
      host.removeConsumer(consumer)
    })()
    return closing
  }

  const consumer: Consumer = {
    subscription,
    wildcard: spec.wildcard,
    matches: spec.matches,
    start,
    addTopic(topic) {
      if (closed || streams.has(keys.stream(topic))) return
      addStream(topic).catch((err: unknown) => {
        logger.warn('redis could not start reading a new topic; trying again', {
          topic,
          error: (err as Error).message,
        })
        // The registry rescan only reacts to new topics, so a failed start retries on its own.
        setTimeout(() => consumer.addTopic(topic), 1_000).unref()
      })
    },
    close,
  }
  return consumer
}
