/**
 * One subscription = one Kafka consumer-group member feeding one consumer kernel. This module is
 * the membership: which Kafka topics the member consumes (new ones found by the topic listing),
 * where a new group starts, joining and rejoining, restarting a crashed consumer, and leaving.
 * What a batch becomes in the kernel, and how acks become offsets, is `batch.ts`.
 */
import {
  compilePattern,
  type EventHandler,
  type EventInput,
  type Logger,
  SubscriptionError,
} from '@omnibus/core'
import {
  ConsumerKernel,
  type DedupeStore,
  describeError,
  type KernelAdapter,
  type ResolvedSubscribeOptions,
  safeLog,
} from '@omnibus/core/backend'
import type { AttemptBook, PartitionHistory } from './attempts.ts'
import { type BatchRun, Feeder, type KafkaMessage } from './batch.ts'
import type { ConsumerHandle, KafkaClient } from './client.ts'
import { classifyError } from './errors.ts'
import { isInternalTopic } from './publisher.ts'

/** What a subscription needs from its backend. */
export interface SubscriptionHost {
  readonly client: KafkaClient
  readonly logger: Logger
  readonly heartbeatIntervalMs: number
  readonly groupJoinTimeoutMs: number
  readonly endpoint: string
  /** The exactly-once store (asked for only by exactly-once subscriptions). */
  dedupe(): DedupeStore
  /** The delivery-count records (asked for only by group subscriptions). */
  attempts(): AttemptBook
  /** Publishes a dead letter through the backend's batching producer (the kernel logs it). */
  publishDeadLetter(input: EventInput): Promise<unknown>
  /**
   * The earliest time `groupId` was declared on `pattern` by `ensureGroup` (see `group-starts.ts`),
   * or undefined: a member starting at 'latest' begins partitions without a committed offset there.
   */
  declaredStart(groupId: string, pattern: string): Promise<number | undefined>
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

/** A live subscription on the Kafka backend: a group member whose messages run in a consumer kernel. */
export class KafkaSubscription {
  readonly id: string
  readonly pattern: string
  readonly groupId: string
  /** The kernel that runs the handler; its `subscription` is what `subscribe` returns. */
  readonly kernel: ConsumerKernel<KafkaMessage>
  readonly #spec: KafkaSubscriptionSpec
  readonly #host: SubscriptionHost
  readonly #matches: (topic: string) => boolean
  readonly #feeder: Feeder
  /** Delivery counts survive a dead member only in a shared group (a broadcast group dies with it). */
  readonly #attempts: AttemptBook | undefined
  readonly #topics = new Set<string>()
  /** Start offsets of `from: 'latest'` partitions that had no committed offset at subscribe. */
  readonly #pins = new Map<string, string>()
  /** Record writes under way that must land before the member leaves its group. */
  readonly #writes = new Set<Promise<unknown>>()
  #consumer: ConsumerHandle | undefined
  #active = true
  #chain: Promise<void> = Promise.resolve()
  #joined = false
  #joinWaiters: Array<() => void> = []
  #pinning: Promise<void> = Promise.resolve()
  #crashRestart: NodeJS.Timeout | undefined
  /** This member's id in its group, and the partitions it was given, as of its last join. */
  #memberId = ''
  #assignment: Readonly<Record<string, readonly number[]>> = {}
  /** Members of the group at the last look, by join. */
  #members: Promise<Set<string>> | undefined
  /** The last offset this member committed, per partition (`topic NUL partition`). */
  readonly #committed = new Map<string, string>()

  constructor(spec: KafkaSubscriptionSpec, host: SubscriptionHost) {
    this.id = spec.id
    this.pattern = spec.options.pattern
    this.groupId = spec.groupId
    this.#spec = spec
    this.#host = host
    this.#matches = compilePattern(spec.options.pattern)
    const o = spec.options
    this.#attempts = spec.privateGroup || o.guarantee === 'at-most-once' ? undefined : host.attempts()
    const feeder = (): Feeder => this.#feeder
    const adapter: KernelAdapter<KafkaMessage> = {
      backend: 'kafka',
      ack: (msg) => feeder().ack(msg),
      redeliver: (msg, delayMs, deliveryCount) => feeder().redeliver(msg, delayMs, deliveryCount),
      release: (msg, started) => this.#track(feeder().release(msg, started)),
      publishDeadLetter: async (input) => {
        await host.publishDeadLetter(input)
      },
      ...(o.guarantee === 'exactly-once' ? { dedupe: host.dedupe() } : {}),
      stop: () => this.#stop(),
      dispose: () => this.#dispose(),
      onSettled: () => feeder().settled(),
    }
    this.kernel = new ConsumerKernel<KafkaMessage>({
      adapter,
      options: o,
      handler: spec.handler,
      subscriptionId: spec.id,
      logger: host.logger,
      // Processed-id records are keyed by the Kafka group id, as earlier versions wrote them.
      dedupeGroup: spec.groupId,
    })
    const serial = o.concurrency === 1
    this.#feeder = new Feeder({
      kernel: this.kernel,
      matches: this.#matches,
      atMostOnce: o.guarantee === 'at-most-once',
      serial,
      heartbeatIntervalMs: host.heartbeatIntervalMs,
      active: (run) => this.#active && run.control.isActive(),
      begin: (run) => this.#begin(run),
      count: (run, offset, deliveries) =>
        this.#attempts === undefined
          ? Promise.resolve()
          : this.#track(this.#attempts.delivered(this.groupId, run.topic, run.partition, offset, deliveries)),
      commit: (run, offset) => this.#commit(run, offset),
      warn: (message, error, run) =>
        safeLog(host.logger, 'warn', message, {
          subscription: this.id,
          topic: run.topic,
          partition: run.partition,
          error: describeError(error),
        }),
    })
    if (!this.kernel.subscription.active) this.#active = false
  }

  get active(): boolean {
    return this.#active
  }

  /** Whether it looks for topics created later (a wildcard); a literal one has its topic from the start. */
  get discovers(): boolean {
    return !this.#spec.literal
  }

  /** Kafka topics this subscription consumes. */
  get topics(): ReadonlySet<string> {
    return this.#topics
  }

  /** Whether a Kafka topic name can carry events this subscription wants. */
  wants(topic: string): boolean {
    return !isInternalTopic(topic) && this.#matches(topic)
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#writes.add(p)
    const forget = (): void => void this.#writes.delete(p)
    p.then(forget, forget)
    return p
  }

  /** What the records say of a partition this member starts on (group subscriptions). */
  async #begin(run: BatchRun): Promise<PartitionHistory | undefined> {
    const book = this.#attempts
    if (book === undefined) return undefined
    const first = run.messages[0]?.offset as string
    return this.#track(
      book.begin(this.groupId, run.topic, run.partition, first, this.#memberId, async (member) => {
        this.#members ??= this.#host.client.groupMembers(this.groupId).then((ids) => new Set(ids))
        // Unknown (the admin call failed): assume alive, the count then lags by one death.
        return (await this.#members.catch(() => new Set([member]))).has(member)
      }),
    )
  }

  async #commit(run: BatchRun, offset: string): Promise<void> {
    this.#committed.set(`${run.topic}\u0000${run.partition}`, offset)
    const book = this.#attempts
    if (book === undefined) {
      await run.control.commit(offset)
      return
    }
    await Promise.all([
      run.control.commit(offset),
      this.#track(book.committed(this.groupId, run.topic, run.partition, offset, this.#memberId)),
    ])
  }

  /** First step of closing: the member starts nothing new; redeliveries and queued keys go back. */
  #stop(): Promise<void> {
    this.#active = false
    this.#host.forget(this)
    if (this.#crashRestart !== undefined) clearTimeout(this.#crashRestart)
    for (const w of this.#joinWaiters) w()
    this.#joinWaiters = []
    return this.#track(this.#feeder.stop())
  }

  /** Last step of closing, after the drain: records land, the member leaves its group. */
  async #dispose(): Promise<void> {
    this.#feeder.end()
    await Promise.allSettled([...this.#writes])
    await this.#chain
    const consumer = this.#consumer
    if (consumer !== undefined) {
      // Stopped cleanly (before leaving the group, which hands the partitions on): the next owner
      // has no death to count.
      const book = this.#attempts
      if (book !== undefined) {
        await Promise.allSettled(
          Object.entries(this.#assignment).flatMap(([topic, partitions]) =>
            partitions.map((p) => {
              const offset = this.#committed.get(`${topic}\u0000${p}`)
              return offset === undefined
                ? undefined
                : book.stopped(this.groupId, topic, p, offset, this.#memberId)
            }),
          ),
        )
      }
      await consumer.stop().catch(() => {})
      await consumer.disconnect().catch(() => {})
    }
    if (this.#spec.privateGroup && this.#consumer !== undefined) {
      // Broadcast groups are single-use: remove them so the cluster does not keep them around.
      await this.#host.client.deleteGroup(this.groupId).catch(() => {})
    }
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
    const declared = this.#spec.privateGroup ? undefined : await this.#declaredStart()
    await Promise.all(
      topics.map(async (topic) => {
        const [committed, ends] = await Promise.all([
          this.#host.client.groupOffsets(this.groupId, topic),
          declared === undefined
            ? this.#host.client.endOffsets(topic)
            : this.#host.client.offsetsAt(topic, declared),
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

  /** The group's declared start, or undefined (also when the records cannot be read: then 'latest'). */
  async #declaredStart(): Promise<number | undefined> {
    try {
      return await this.#host.declaredStart(this.groupId, this.pattern)
    } catch (error) {
      this.#host.logger.warn(
        'kafka subscription could not read where its group was declared; it starts at the latest offsets',
        {
          subscription: this.id,
          group: this.groupId,
          error: classifyError(error, 'subscribe', this.#host.endpoint).message,
        },
      )
      return undefined
    }
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
      onBatch: (batch, control) => this.#track(this.#feeder.onBatch(batch, control)),
      onJoin: (assignment, memberId) => {
        this.#host.logger.debug('kafka group joined', { group: this.groupId, assignment })
        this.#memberId = memberId
        this.#assignment = assignment
        this.#members = undefined
        this.#feeder.rejoined()
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
}
