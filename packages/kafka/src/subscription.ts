/**
 * One subscription = one Kafka consumer-group member. It consumes the Kafka topics whose names
 * match its pattern, runs the handler per event (retries in place, dead letters, dedupe), and
 * commits a partition's offset only up to the last event whose handling finished.
 */
import {
  compilePattern,
  DEFAULT_DEAD_LETTER_TOPIC,
  type EventHandler,
  type EventInput,
  type Logger,
  type OmnibusEvent,
  type Subscription,
  SubscriptionError,
} from '@omnibus/core'
import {
  type ProcessedIdStore as DedupeStore,
  deadLetterInput,
  decideFailure,
  decodeEvent,
  type HandlerOutcome,
  HandlerRunner,
  InvalidEnvelopeError,
  KeyedLimiter,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'
import type { BatchControl, ConsumerHandle, InboundBatch, InboundMessage, KafkaClient } from './client.ts'
import { classifyError } from './errors.ts'
import { isInternalTopic } from './publisher.ts'

/** What a subscription needs from its backend. */
export interface SubscriptionHost {
  readonly client: KafkaClient
  readonly logger: Logger
  readonly dedupe: DedupeStore
  readonly heartbeatIntervalMs: number
  readonly groupJoinTimeoutMs: number
  readonly endpoint: string
  /** Publishes (dead letters) through the backend's batching producer. */
  publish(input: EventInput): Promise<unknown>
  /** Makes sure a topic exists (literal subscriptions create theirs up front). */
  ensureTopic(topic: string): Promise<void>
  /** Removes the subscription from the backend's books. */
  forget(sub: KafkaSubscription): void
}

/** Settings of one subscription. */
export interface KafkaSubscriptionSpec {
  readonly id: string
  readonly groupId: string
  /** True for a broadcast subscription: its group is private and deleted on unsubscribe. */
  readonly privateGroup: boolean
  readonly options: ResolvedSubscribeOptions
  readonly handler: EventHandler
  readonly literal: boolean
}

const DONE = Promise.resolve(true)
const NOT_DONE = Promise.resolve(false)

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString()
}

function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false)
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    timer.unref()
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

type Prepared =
  | { readonly kind: 'event'; readonly event: OmnibusEvent }
  | { readonly kind: 'invalid'; readonly error: InvalidEnvelopeError; readonly raw: Uint8Array }

const EMPTY = Buffer.alloc(0)

/** A message that failed to decode, with the decode error and its raw bytes. */
function invalid(error: unknown, raw: Buffer): Extract<Prepared, { kind: 'invalid' }> {
  const e =
    error instanceof InvalidEnvelopeError
      ? error
      : new InvalidEnvelopeError(String((error as Error)?.message ?? error), '')
  return { kind: 'invalid', error: e, raw: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) }
}

/** A live subscription on the Kafka backend. */
export class KafkaSubscription implements Subscription {
  readonly id: string
  readonly pattern: string
  readonly group: string | undefined
  readonly groupId: string
  readonly #spec: KafkaSubscriptionSpec
  readonly #host: SubscriptionHost
  readonly #matches: (topic: string) => boolean
  readonly #limiter: KeyedLimiter
  readonly #runner: HandlerRunner
  /** Aborted when handlers must give up (drain timeout passed, or unsubscribe). */
  readonly #abort = new AbortController()
  readonly #topics = new Set<string>()
  readonly #inflightIds = new Map<string, Promise<void>>()
  /** Start offsets of `from: 'latest'` partitions that had no committed offset at subscribe. */
  readonly #pins = new Map<string, string>()
  #consumer: ConsumerHandle | undefined
  #active = true
  #chain: Promise<void> = Promise.resolve()
  #joined = false
  #joinWaiters: Array<() => void> = []
  #closing: Promise<void> | undefined
  #pinning: Promise<void> = Promise.resolve()
  #crashRestart: NodeJS.Timeout | undefined

  constructor(spec: KafkaSubscriptionSpec, host: SubscriptionHost) {
    this.id = spec.id
    this.pattern = spec.options.pattern
    this.group = spec.options.group
    this.groupId = spec.groupId
    this.#spec = spec
    this.#host = host
    this.#matches = compilePattern(spec.options.pattern)
    this.#limiter = new KeyedLimiter(spec.options.concurrency)
    this.#runner = new HandlerRunner(spec.handler, this, host.logger, this.#abort.signal)
    spec.options.signal?.addEventListener('abort', () => void this.unsubscribe(), { once: true })
  }

  get active(): boolean {
    return this.#active
  }

  /** Kafka topics this subscription consumes. */
  get topics(): ReadonlySet<string> {
    return this.#topics
  }

  /** Whether a Kafka topic name can carry events this subscription wants. */
  wants(topic: string): boolean {
    return !isInternalTopic(topic) && this.#matches(topic)
  }

  /**
   * Starts consuming the matching topics that exist now, with the group's start position set
   * for `from: 'latest'`, and waits until the member joined its group.
   */
  async start(existing: readonly string[]): Promise<void> {
    const initial = existing.filter((t) => this.wants(t))
    // Claimed before any await: a topic listing offered meanwhile must not add these again as
    // "new" topics (read from their beginning), nor restart the member for them.
    for (const t of initial) this.#topics.add(t)
    if (this.#spec.literal && !initial.includes(this.pattern)) {
      this.#topics.add(this.pattern)
      await this.#host.ensureTopic(this.pattern)
      initial.push(this.pattern)
    }
    if (initial.length === 0) return
    const fromBeginning = this.#spec.options.from === 'earliest'
    if (!fromBeginning) await this.#pinLatest(initial)
    this.#host.logger.debug('kafka subscription starting', {
      group: this.groupId,
      topics: initial,
      pins: [...this.#pins],
    })
    await this.#addTopics(initial, fromBeginning)
    await this.#waitJoined()
  }

  /** Offers the current topic listing; new matching topics are added (the member rejoins). */
  offer(topics: Iterable<string>): void {
    if (!this.#active) return
    const fresh: string[] = []
    for (const t of topics) if (!this.#topics.has(t) && this.wants(t)) fresh.push(t)
    if (fresh.length === 0) return
    // These topics appeared after the subscription started: everything on them is new to it.
    void this.#addTopics(fresh, true).catch((error) => {
      this.#host.logger.warn('kafka subscription could not add new topics', {
        subscription: this.id,
        topics: fresh,
        error: classifyError(error, 'subscribe', this.#host.endpoint).message,
      })
    })
  }

  /**
   * A new group has no committed offsets, and "latest" must mean "after subscribe resolved", not
   * "whenever the first fetch happens": remember the end offsets of partitions without a committed
   * offset now, and move to (and commit) them when this member is assigned such a partition.
   */
  async #pinLatest(topics: readonly string[]): Promise<void> {
    await Promise.all(
      topics.map(async (topic) => {
        const [committed, ends] = await Promise.all([
          this.#host.client.groupOffsets(this.groupId, topic),
          this.#host.client.endOffsets(topic),
        ])
        const unset = new Set(committed.filter((p) => p.offset === '-1').map((p) => p.partition))
        for (const p of ends) {
          if (committed.length === 0 || unset.has(p.partition)) {
            this.#pins.set(`${topic}\u0000${p.partition}`, p.offset)
          }
        }
      }),
    )
  }

  async #applyPins(assignment: Readonly<Record<string, readonly number[]>>): Promise<void> {
    this.#host.logger.debug('kafka member joined', { group: this.groupId, assignment, pins: [...this.#pins] })
    const consumer = this.#consumer
    if (consumer === undefined) return
    for (const [topic, partitions] of Object.entries(assignment)) {
      const pinned = partitions.filter((p) => this.#pins.has(`${topic}\u0000${p}`))
      if (pinned.length === 0) continue
      // Another member may have started (and committed) meanwhile: its position wins.
      const committed = await this.#host.client.groupOffsets(this.groupId, topic)
      for (const partition of pinned) {
        const key = `${topic}\u0000${partition}`
        const offset = this.#pins.get(key) as string
        if (committed.find((c) => c.partition === partition)?.offset === '-1') {
          try {
            await consumer.seekAndCommit(topic, partition, offset)
          } catch (error) {
            // Revoked by a rebalance meanwhile: the pin stays for whichever join gets it next.
            this.#host.logger.debug('kafka start offset not committed yet', {
              group: this.groupId,
              topic,
              partition,
              error: classifyError(error, 'subscribe', this.#host.endpoint).message,
            })
            continue
          }
        }
        this.#pins.delete(key)
      }
    }
  }

  #addTopics(topics: readonly string[], fromBeginning: boolean): Promise<void> {
    for (const t of topics) this.#topics.add(t)
    const run = async (): Promise<void> => {
      if (!this.#active) return
      if (this.#consumer === undefined) this.#consumer = this.#createConsumer()
      this.#joined = false
      await this.#consumer.start(topics.map((topic) => ({ topic, fromBeginning })))
    }
    const next = this.#chain.then(run, run)
    this.#chain = next.catch(() => {})
    return next
  }

  #createConsumer(): ConsumerHandle {
    return this.#host.client.createConsumer({
      groupId: this.groupId,
      partitionsConsumedConcurrently: Math.min(this.#spec.options.concurrency, 16),
      onBatch: (batch, control) => this.#onBatch(batch, control),
      onJoin: (assignment) => {
        this.#host.logger.debug('kafka group joined', { group: this.groupId, assignment })
        if (this.#pins.size > 0) {
          const apply = (): Promise<void> => this.#applyPins(assignment)
          this.#pinning = this.#pinning.then(apply, apply).catch((error) => {
            this.#host.logger.warn('kafka subscription could not set its start position', {
              subscription: this.id,
              error: classifyError(error, 'subscribe', this.#host.endpoint).message,
            })
          })
        }
        this.#joined = true
        const waiters = this.#joinWaiters
        this.#joinWaiters = []
        for (const w of waiters) w()
      },
      onCrash: (error, restarting) => {
        const e = classifyError(error, 'subscribe', this.#host.endpoint)
        this.#host.logger.warn('kafka consumer crashed', {
          subscription: this.id,
          group: this.groupId,
          restarting: restarting ? 'by the client' : 'by the subscription',
          error: e.message,
        })
        if (!restarting && this.#active) this.#scheduleRestart()
      },
    })
  }

  #scheduleRestart(): void {
    if (this.#crashRestart !== undefined) return
    this.#crashRestart = setTimeout(() => {
      this.#crashRestart = undefined
      if (!this.#active) return
      const run = async (): Promise<void> => {
        if (!this.#active || this.#consumer === undefined) return
        await this.#consumer.start([])
      }
      const next = this.#chain.then(run, run)
      this.#chain = next.catch((error) => {
        this.#host.logger.warn('kafka consumer restart failed; trying again', {
          subscription: this.id,
          error: classifyError(error, 'subscribe', this.#host.endpoint).message,
        })
        this.#scheduleRestart()
      })
    }, 1000)
    this.#crashRestart.unref()
  }

  async #waitJoined(): Promise<void> {
    await this.#chain
    if (this.#joined || !this.#active) {
      await this.#pinning
      return
    }
    let timer: NodeJS.Timeout | undefined
    const joined = new Promise<boolean>((resolve) => {
      this.#joinWaiters.push(() => resolve(true))
      timer = setTimeout(() => resolve(false), this.#host.groupJoinTimeoutMs)
    })
    const ok = await joined
    clearTimeout(timer)
    await this.#pinning
    if (!ok && this.#active) {
      throw new SubscriptionError(
        `subscribe("${this.pattern}"): the consumer did not join group "${this.groupId}" within ` +
          `${this.#host.groupJoinTimeoutMs} ms; check the broker, or raise groupJoinTimeoutMs`,
        { backend: 'kafka', retryable: true },
      )
    }
  }

  #prepare(m: InboundMessage): Prepared {
    const raw = m.value ?? EMPTY
    try {
      return { kind: 'event', event: decodeEvent(raw.toString()) }
    } catch (error) {
      return invalid(error, raw)
    }
  }

  async #onBatch(batch: InboundBatch, control: BatchControl): Promise<void> {
    const messages = batch.messages
    if (messages.length === 0) return
    let revoked = false
    // Asking the client whether the partition is still ours costs a lookup per call; every 16th
    // event is enough (a few extra events after a rebalance are redelivered, never lost).
    let checks = 0
    let stillOurs = true
    const proceed = (): boolean => {
      if (!this.#active || revoked || this.#abort.signal.aborted) return false
      if ((checks++ & 15) === 0) stillOurs = control.isActive()
      return stillOurs
    }
    const beat = setInterval(() => {
      control.heartbeat().catch(() => {
        // A rebalance started: finish what runs, start nothing new, let the member rejoin.
        revoked = true
      })
    }, this.#host.heartbeatIntervalMs)
    // The backend's hold keeps the process alive while connected, not the timers of a batch.
    beat.unref()
    const atMostOnce = this.#spec.options.guarantee === 'at-most-once'
    const concurrency = this.#spec.options.concurrency
    let done: string | undefined
    let lastCommit = Date.now()
    // Reading the clock costs more than the rest of an event's bookkeeping: it is read when this
    // timer says a second may have passed (between asynchronous handlers), or every 32 events
    // (a long run of synchronous ones, during which no timer fires).
    let commitDue = false
    const commitTimer = setInterval(() => {
      commitDue = true
    }, 1000)
    commitTimer.unref()

    /** Called after each finished event, in offset order: an intermediate commit once a second. */
    const finished = async (offset: string, index: number): Promise<void> => {
      done = offset
      if (atMostOnce || (!commitDue && (index & 31) !== 31) || Date.now() - lastCommit <= 1000) return
      commitDue = false
      lastCommit = Date.now()
      control.markDone(offset)
      await control.commit(nextOffset(offset)).catch(() => {})
    }

    // One event at a time, in offset order: no task bookkeeping, and a handler that returned
    // synchronously is not awaited, so a batch of synchronous handlers runs without a microtask
    // per event. The partition's position moves over finished events only.
    const serial = async (): Promise<void> => {
      const direct = this.#spec.options.guarantee !== 'exactly-once'
      // The batch's Kafka topic matches the pattern (only matching topics are consumed), so an
      // envelope naming it needs no matcher call; a foreign producer's other topic still does.
      const own = batch.topic
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i] as InboundMessage
        if (!proceed()) return
        const raw = m.value ?? EMPTY
        let event: OmnibusEvent
        try {
          // Kafka values are Buffers: decoding their text directly spares the codec a Buffer
          // view per message.
          event = decodeEvent(raw.toString())
        } catch (error) {
          if (!(await this.#deadLetterForeign(batch, m, invalid(error, raw), proceed))) return
          await finished(m.offset, i)
          continue
        }
        if (event.topic === own || this.#matches(event.topic)) {
          if (direct) {
            const first = this.#runner.run(event, 1)
            const outcome = first instanceof Promise ? await first : first
            if (outcome.kind !== 'ack' && !(await this.#run(event, proceed, outcome))) return
          } else if (!(await this.#processOnce(event, proceed))) return
        }
        done = m.offset
        if (commitDue || (i & 31) === 31) await finished(m.offset, i)
      }
    }

    // Handlers run in offset order, at most `concurrency` at once (per-key order kept by the
    // limiter), and only a few ahead of the oldest unfinished one so a huge batch does not queue
    // thousands of tasks. The partition's position moves over a prefix of finished events only.
    const windowed = async (): Promise<void> => {
      const window = concurrency * 4
      const runs: Array<Promise<boolean>> = []
      const submit = (upTo: number): void => {
        while (runs.length < messages.length && runs.length < upTo) {
          const m = messages[runs.length] as InboundMessage
          const prepared = this.#prepare(m)
          const key = prepared.kind === 'event' ? prepared.event.partitionKey : undefined
          runs.push(this.#limiter.run(key, () => this.#process(batch, m, prepared, proceed)))
        }
      }
      for (let i = 0; i < messages.length; i++) {
        submit(i + window)
        if (!(await runs[i])) return
        await finished((messages[i] as InboundMessage).offset, i)
      }
    }

    try {
      const last = messages[messages.length - 1] as InboundMessage
      if (atMostOnce) {
        // Acknowledged before any handler runs: a crash now loses these events, never repeats them.
        control.markDone(last.offset)
        await control.commit(nextOffset(last.offset))
      }
      const work = concurrency === 1 ? serial() : windowed()
      // Past the drain timeout, stop waiting for a handler that does not return; its event is
      // not acknowledged and comes back to the group.
      if (this.#abort.signal.aborted) {
        // It starts nothing (proceed() is false), but must not leave a rejection unobserved.
        work.catch(() => {})
      } else {
        let onAbort: (() => void) | undefined
        const aborted = new Promise<void>((resolve) => {
          onAbort = resolve
          this.#abort.signal.addEventListener('abort', onAbort, { once: true })
        })
        try {
          await Promise.race([work, aborted])
        } finally {
          this.#abort.signal.removeEventListener('abort', onAbort as () => void)
        }
      }
      if (done !== undefined && !atMostOnce) {
        control.markDone(done)
        await control.commit(nextOffset(done)).catch((error) => {
          this.#host.logger.warn('kafka offset commit failed; the events will be delivered again', {
            subscription: this.id,
            topic: batch.topic,
            partition: batch.partition,
            error: classifyError(error, 'subscribe', this.#host.endpoint).message,
          })
        })
      }
    } catch (error) {
      this.#host.logger.warn('kafka batch processing stopped', {
        subscription: this.id,
        error: classifyError(error, 'subscribe', this.#host.endpoint).message,
      })
    } finally {
      clearInterval(beat)
      clearInterval(commitTimer)
    }
  }

  /**
   * Handles one message; resolves true when it is finished with (acked, dead-lettered or
   * dropped), false when it must come again. Never rejects. Not `async`: the common path hands
   * back the handler run's own promise, one promise fewer per event.
   */
  #process(
    batch: InboundBatch,
    m: InboundMessage,
    prepared: Prepared,
    proceed: () => boolean,
  ): Promise<boolean> {
    if (!proceed()) return NOT_DONE
    if (prepared.kind === 'invalid') return this.#deadLetterForeign(batch, m, prepared, proceed)
    const event = prepared.event
    // A foreign producer may write an envelope of another type onto a topic we read.
    if (!this.#matches(event.topic)) return DONE
    if (this.#spec.options.guarantee !== 'exactly-once') return this.#run(event, proceed)
    return this.#processOnce(event, proceed)
  }

  async #processOnce(event: OmnibusEvent, proceed: () => boolean): Promise<boolean> {
    const dedupeGroup = this.groupId
    for (;;) {
      const running = this.#inflightIds.get(event.id)
      if (running === undefined) break
      await running
    }
    let release: () => void = () => {}
    try {
      if (await this.#host.dedupe.has(dedupeGroup, event.id)) return true
      this.#inflightIds.set(event.id, new Promise<void>((r) => (release = r)))
      const ok = await this.#run(event, proceed)
      if (ok) await this.#host.dedupe.add(dedupeGroup, event.id)
      return ok
    } catch (error) {
      this.#host.logger.warn('kafka dedupe store failed; the event will be delivered again', {
        subscription: this.id,
        id: event.id,
        error: error instanceof Error ? error.message : String(error),
      })
      return false
    } finally {
      this.#inflightIds.delete(event.id)
      release()
    }
  }

  /** Runs the handler until it acks or the policy gives up; `first` is attempt 1's outcome when already known. */
  async #run(event: OmnibusEvent, proceed: () => boolean, first?: HandlerOutcome): Promise<boolean> {
    const o = this.#spec.options
    let firstFailureAt: number | undefined
    for (let attempt = 1; ; attempt++) {
      const outcome = attempt === 1 && first !== undefined ? first : await this.#runner.run(event, attempt)
      if (outcome.kind === 'ack') return true
      const now = Date.now()
      firstFailureAt ??= now
      const decision = decideFailure(o, attempt, outcome)
      if (decision.action === 'retry') {
        const slept = await sleep(decision.delayMs, this.#abort.signal)
        // Stopped while waiting: not acknowledged, so the event comes back after the restart.
        if (!slept || !proceed()) return false
        continue
      }
      if (decision.action === 'drop') {
        if (o.guarantee !== 'at-most-once') {
          this.#host.logger.warn('kafka event dropped after its last attempt (deadLetter: false)', {
            subscription: this.id,
            id: event.id,
            topic: event.topic,
            reason: decision.reason,
          })
        }
        return true
      }
      const input = deadLetterInput(
        event,
        o.deadLetter === false ? DEFAULT_DEAD_LETTER_TOPIC : o.deadLetter,
        {
          reason: decision.reason,
          group: o.group,
          attempts: attempt,
          firstFailureAt,
          lastFailureAt: now,
          error: outcome.error,
          backend: 'kafka',
        },
      )
      return this.#publishDeadLetter(input, proceed)
    }
  }

  async #deadLetterForeign(
    batch: InboundBatch,
    m: InboundMessage,
    prepared: Extract<Prepared, { kind: 'invalid' }>,
    proceed: () => boolean,
  ): Promise<boolean> {
    const o = this.#spec.options
    const reason = `invalid envelope on Kafka topic ${batch.topic} partition ${batch.partition} offset ${m.offset}: ${prepared.error.message}`
    if (o.deadLetter === false) {
      this.#host.logger.warn('kafka message is not an Omnibus envelope; dropped (deadLetter: false)', {
        subscription: this.id,
        reason,
      })
      return true
    }
    const now = Date.now()
    const stub: OmnibusEvent = {
      id: `kafka.${batch.topic}.${batch.partition}.${m.offset}`,
      topic: batch.topic,
      data: prepared.raw,
      time: now,
      source: `kafka://${batch.topic}`,
      headers: {},
      guarantee: 'at-least-once',
    }
    const input = deadLetterInput(stub, o.deadLetter, {
      reason,
      group: o.group,
      attempts: 0,
      firstFailureAt: now,
      lastFailureAt: now,
      error: prepared.error,
      backend: 'kafka',
    })
    return this.#publishDeadLetter(input, proceed)
  }

  /** Dead letters are acknowledged by the brokers before the original's offset moves on. */
  async #publishDeadLetter(input: EventInput, proceed: () => boolean): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#host.publish(input)
        return true
      } catch (error) {
        this.#host.logger.warn('kafka dead letter could not be published; retrying', {
          subscription: this.id,
          topic: input.topic,
          error: classifyError(error, 'publish', this.#host.endpoint).message,
        })
        const slept = await sleep(Math.min(5000, 200 * 2 ** attempt), this.#abort.signal)
        if (!slept || !proceed()) return false
      }
    }
  }

  /** Stops delivery; in-flight handlers finish. Idempotent and safe to call concurrently. */
  unsubscribe(): Promise<void> {
    return this.close(undefined)
  }

  /**
   * Stops the member. With `drainTimeoutMs`, handlers still running after it are abandoned (their
   * events are not acknowledged and come back to the group); without it, they are waited for.
   */
  close(drainTimeoutMs: number | undefined): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    this.#active = false
    this.#host.forget(this)
    if (this.#crashRestart !== undefined) clearTimeout(this.#crashRestart)
    for (const w of this.#joinWaiters) w()
    this.#joinWaiters = []
    this.#closing = (async () => {
      const timer =
        drainTimeoutMs === undefined ? undefined : setTimeout(() => this.#abort.abort(), drainTimeoutMs)
      try {
        await this.#chain
        const consumer = this.#consumer
        if (consumer !== undefined) {
          await consumer.stop().catch(() => {})
          await consumer.disconnect().catch(() => {})
        }
      } finally {
        if (timer !== undefined) clearTimeout(timer)
        this.#abort.abort()
      }
      if (this.#spec.privateGroup && this.#consumer !== undefined) {
        // Broadcast groups are single-use: remove them so the cluster does not keep them around.
        await this.#host.client.deleteGroup(this.groupId).catch(() => {})
      }
    })()
    return this.#closing
  }
}
