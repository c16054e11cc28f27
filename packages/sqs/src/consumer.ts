/**
 * One subscription reading one queue: long polls of up to ten messages, handlers run through the
 * core `KeyedLimiter` (per-key order on FIFO queues), deletes batched and sent only after the
 * handler resolved, visibility extended while a message is held, retries by local wait (short
 * delays) or `ChangeMessageVisibility` (long ones), dead letters through the publish path.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import {
  compilePattern,
  DEFAULT_DEAD_LETTER_TOPIC,
  type EventHandler,
  type EventInput,
  type Logger,
  type OmnibusEvent,
  type Subscription,
} from '@omnibus/core'
import {
  type ProcessedIdStore as DedupeStore,
  deadLetterInput,
  decideFailure,
  decodeEvent,
  HandlerRunner,
  InvalidEnvelopeError,
  isLiteralPattern,
  KeyedLimiter,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'
import { classifyError, isQueueMissing } from './errors.ts'

/** Topic recorded as the original topic of an undecodable message read by a wildcard subscription. */
export const INVALID_MESSAGE_TOPIC = 'omnibus.invalid'

/** What a consumer needs from its backend. */
export interface ConsumerDeps {
  /** Client for deletes and visibility changes. */
  readonly client: SQSClient
  /** Client for long polls (its own HTTP agent). */
  readonly receiveClient: SQSClient
  readonly where: string
  readonly logger: Logger
  readonly dedupe: DedupeStore
  readonly waitTimeSeconds: number
  readonly prefetch: number
  readonly localRetryMaxMs: number
  /** Publishes a dead letter. */
  readonly publish: (input: EventInput) => Promise<unknown>
  /** Creates the queue again when it vanished (broker restarted without persistence). */
  readonly recreateQueue: () => Promise<string>
  /** Drain timeout when `close()` is not given one. */
  readonly drainTimeoutMs: number
  /** Called once the subscription is closed (drops it, deletes a broadcast queue). */
  readonly onClosed: (consumer: Consumer) => Promise<void>
}

/** What one consumer reads and how. */
export interface ConsumerConfig {
  readonly id: string
  readonly queueUrl: string
  readonly queueName: string
  readonly kind: 'group' | 'broadcast'
  readonly fifo: boolean
  readonly options: ResolvedSubscribeOptions
  readonly handler: EventHandler
  /** Default visibility timeout when the subscription sets none. */
  readonly visibilityTimeoutMs: number
}

interface Held {
  readonly receipt: string
  readonly messageId: string
  state: 'held' | 'running' | 'done' | 'released'
}

interface FailureRecord {
  first: number
  last: number
  /** Runs made in this process beyond what `ApproximateReceiveCount` counts (local retries). */
  extra: number
}

interface ReceiveBatch {
  /** FIFO keys whose earlier message went back to the queue: later ones of the key follow it. */
  readonly blocked: Set<string>
}

const MAX_FAILURE_RECORDS = 10_000
/** Deadline of one delete or visibility change, retries included: none may hold a message for long. */
const CONTROL_DEADLINE_MS = 10_000
const RELEASE_DEADLINE_MS = 2_000
/** How long a queue must stay missing before its consumer creates it again. */
const QUEUE_MISSING_GRACE_MS = 10_000

function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const onAbort = () => {
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

/** A running subscription on one queue. */
export class Consumer {
  readonly #deps: ConsumerDeps
  readonly #config: ConsumerConfig
  readonly #matches: (topic: string) => boolean
  readonly #limiter: KeyedLimiter
  readonly #visibilitySeconds: number
  readonly #capacity: number
  readonly #dedupeGroup: string
  readonly #pollDeadlineMs: number
  readonly #deletes = new Set<Promise<void>>()
  #queueUrl: string
  readonly #held = new Set<Held>()
  readonly #failures = new Map<string, FailureRecord>()
  readonly #tracked = new Set<Promise<unknown>>()
  /** Aborts the long poll and back-off waits when the subscription closes. */
  readonly #stop = new AbortController()
  /** Aborts handlers (their `ctx.signal`) when the drain timeout passes. */
  readonly #handlerAbort = new AbortController()
  #running = true
  #roomWaiter: (() => void) | undefined
  #poll: Promise<void> | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #closing: Promise<void> | undefined
  #pendingDeletes: Array<{ held: Held; done: () => void }> = []
  #deleteScheduled = false
  readonly subscription: Subscription
  readonly #runner: HandlerRunner

  constructor(deps: ConsumerDeps, config: ConsumerConfig) {
    this.#deps = deps
    this.#config = config
    this.#queueUrl = config.queueUrl
    this.#matches = compilePattern(config.options.pattern)
    this.#limiter = new KeyedLimiter(config.options.concurrency)
    const visMs = config.options.visibilityTimeoutMs ?? config.visibilityTimeoutMs
    this.#visibilitySeconds = Math.min(43_200, Math.max(1, Math.ceil(visMs / 1000)))
    this.#capacity = config.options.concurrency + deps.prefetch
    this.#dedupeGroup = config.options.group ?? `broadcast:${config.id}`
    this.#pollDeadlineMs = (deps.waitTimeSeconds + 15) * 1000
    const self = this
    this.subscription = {
      id: config.id,
      pattern: config.options.pattern,
      group: config.options.group,
      get active() {
        return self.#running
      },
      unsubscribe: () => self.close(undefined),
    }
    this.#runner = new HandlerRunner(
      config.handler,
      this.subscription,
      deps.logger,
      this.#handlerAbort.signal,
    )
  }

  /** Queue this consumer reads. */
  get queueUrl(): string {
    return this.#queueUrl
  }

  /** Whether the subscription is deleted with its queue when it closes. */
  get kind(): 'group' | 'broadcast' {
    return this.#config.kind
  }

  /** Starts polling and the visibility heartbeat. */
  start(): void {
    this.#poll = this.#pollLoop()
    const every = Math.max(250, Math.floor((this.#visibilitySeconds * 1000) / 3))
    // The backend's hold keeps the process alive while it is connected, not this timer.
    this.#heartbeat = setInterval(() => this.#extend(), every)
    this.#heartbeat.unref()
    const signal = this.#config.options.signal
    if (signal !== undefined) {
      if (signal.aborted) void this.close(undefined)
      else signal.addEventListener('abort', () => void this.close(undefined), { once: true })
    }
  }

  /**
   * Stops polling, waits for running handlers up to `drainTimeoutMs` (default: the backend's),
   * then gives every message not acknowledged back to the queue. Idempotent.
   */
  close(drainTimeoutMs: number | undefined): Promise<void> {
    if (this.#closing === undefined) this.#closing = this.#close(drainTimeoutMs)
    return this.#closing
  }

  async #close(drainTimeoutMs: number | undefined): Promise<void> {
    this.#running = false
    this.#stop.abort()
    this.#roomWaiter?.()
    await this.#poll
    // Messages received but not started go back at once, so other members get them now.
    await this.#release([...this.#held].filter((h) => h.state === 'held'))
    const drain = drainTimeoutMs ?? this.#deps.drainTimeoutMs
    const idle = Promise.all([this.#limiter.onIdle(), Promise.allSettled([...this.#tracked])])
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), drain)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      this.#handlerAbort.abort(new Error('subscription closed before the handler finished'))
    }
    await this.#release([...this.#held].filter((h) => h.state === 'held' || h.state === 'running'))
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat)
    await this.#flushDeletes()
    await this.#deps.onClosed(this)
  }

  async #pollLoop(): Promise<void> {
    let failures = 0
    let missingSince: number | undefined
    while (this.#running) {
      const room = this.#capacity - this.#held.size
      if (room <= 0) {
        await new Promise<void>((resolve) => {
          this.#roomWaiter = resolve
        })
        this.#roomWaiter = undefined
        continue
      }
      let messages: Message[]
      try {
        const res = await this.#deps.receiveClient.send(
          new ReceiveMessageCommand({
            QueueUrl: this.#queueUrl,
            MaxNumberOfMessages: Math.min(10, room),
            WaitTimeSeconds: this.#deps.waitTimeSeconds,
            VisibilityTimeout: this.#visibilitySeconds,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp'],
          }),
          // A poll that outlives its wait (a server that accepted the connection but does not
          // answer, e.g. while starting) is cut so the loop can try again.
          { abortSignal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#pollDeadlineMs)]) },
        )
        messages = res.Messages ?? []
        failures = 0
        missingSince = undefined
      } catch (receiveError) {
        if (!this.#running) break
        let error: unknown = receiveError
        failures++
        // Missing for a while, not just once: a restarting broker answers before it has
        // restored its persisted queues, and creating one then would race the restore.
        if (isQueueMissing(receiveError)) missingSince ??= Date.now()
        else missingSince = undefined
        if (missingSince !== undefined && Date.now() - missingSince >= QUEUE_MISSING_GRACE_MS) {
          missingSince = undefined
          try {
            this.#queueUrl = await this.#deps.recreateQueue()
            this.#deps.logger.warn('sqs: queue vanished (broker reset?) and was created again', {
              queue: this.#config.queueName,
            })
            continue
          } catch (again) {
            error = again
          }
        }
        const e = classifyError(error, 'receive', this.#deps.where)
        this.#deps.logger.warn('sqs: receive failed; retrying', {
          queue: this.#config.queueName,
          error: e.message,
          attempt: failures,
        })
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)), this.#stop.signal)
        continue
      }
      if (messages.length > 0) this.#accept(messages)
    }
  }

  #accept(messages: Message[]): void {
    const batch: ReceiveBatch = { blocked: new Set() }
    const atMostOnce = this.#config.options.guarantee === 'at-most-once'
    for (const m of messages) {
      if (m.ReceiptHandle === undefined) continue
      const held: Held = {
        receipt: m.ReceiptHandle,
        messageId: m.MessageId ?? m.ReceiptHandle,
        state: 'held',
      }
      this.#held.add(held)
      const receiveCount = Math.max(1, Number(m.Attributes?.ApproximateReceiveCount ?? '1') || 1)
      let event: OmnibusEvent
      try {
        event = decodeEvent(m.Body ?? '')
      } catch (error) {
        this.#track(this.#invalid(held, m, receiveCount, error))
        continue
      }
      if (!this.#matches(event.topic)) {
        // Routed here by a publisher with a wrong pattern cache, or written by hand: not ours.
        void this.#ack(held)
        continue
      }
      if (atMostOnce) {
        // Acknowledged before the handler runs: never redelivered, even if the process dies.
        const acked = this.#ack(held)
        void this.#limiter
          .run(undefined, async () => {
            await acked
            await this.#runner.run(event, 1)
          })
          .catch(() => {})
        continue
      }
      const key = this.#config.fifo ? event.partitionKey : undefined
      void this.#limiter
        .run(key, () => this.#process(held, event, receiveCount, key, batch))
        .catch((error: unknown) => {
          this.#deps.logger.error('sqs: message processing failed unexpectedly', {
            error: (error as Error).message,
          })
        })
    }
  }

  async #process(
    held: Held,
    event: OmnibusEvent,
    receiveCount: number,
    key: string | undefined,
    batch: ReceiveBatch,
  ): Promise<void> {
    if (held.state !== 'held') return
    if (!this.#running || (key !== undefined && batch.blocked.has(key))) {
      await this.#release([held])
      return
    }
    held.state = 'running'
    const opts = this.#config.options
    const exactlyOnce = opts.guarantee === 'exactly-once'
    if (exactlyOnce && (await this.#deps.dedupe.has(this.#dedupeGroup, event.id))) {
      void this.#ack(held)
      return
    }
    const record = this.#failures.get(held.messageId)
    let attempt = receiveCount + (record?.extra ?? 0)
    for (;;) {
      const outcome = await this.#runner.run(event, attempt)
      // Given back to the queue after the drain timeout: another consumer owns it now.
      if (held.state !== 'running') return
      if (outcome.kind === 'ack') {
        if (exactlyOnce) await this.#deps.dedupe.add(this.#dedupeGroup, event.id)
        this.#failures.delete(held.messageId)
        void this.#ack(held)
        return
      }
      const now = Date.now()
      const failure = this.#recordFailure(held.messageId, now)
      const decision = decideFailure(opts, attempt, outcome)
      if (decision.action === 'retry') {
        if (decision.delayMs <= this.#deps.localRetryMaxMs && this.#running) {
          const waited = await sleep(decision.delayMs, this.#stop.signal)
          if (waited && held.state === 'running') {
            failure.extra++
            attempt++
            continue
          }
          if (held.state === 'running') await this.#release([held])
          return
        }
        if (key !== undefined) batch.blocked.add(key)
        await this.#changeVisibility([held], Math.min(43_200, Math.ceil(decision.delayMs / 1000)))
        return
      }
      if (decision.action === 'dead-letter') {
        const topic = opts.deadLetter === false ? DEFAULT_DEAD_LETTER_TOPIC : opts.deadLetter
        try {
          await this.#deps.publish(
            deadLetterInput(event, topic, {
              reason: decision.reason,
              group: opts.group,
              attempts: attempt,
              firstFailureAt: failure.first,
              lastFailureAt: failure.last,
              error: outcome.error,
              backend: 'sqs',
            }),
          )
        } catch (error) {
          this.#deps.logger.error('sqs: dead letter could not be published; the message stays queued', {
            error: (error as Error).message,
            id: event.id,
          })
          await this.#changeVisibility([held], this.#visibilitySeconds)
          return
        }
        this.#deps.logger.warn('sqs: event dead-lettered', {
          id: event.id,
          topic: event.topic,
          reason: decision.reason,
        })
      }
      this.#failures.delete(held.messageId)
      void this.#ack(held)
      return
    }
  }

  async #invalid(held: Held, m: Message, receiveCount: number, error: unknown): Promise<void> {
    held.state = 'running'
    const opts = this.#config.options
    const reason =
      error instanceof InvalidEnvelopeError ? error.message : `undecodable message: ${String(error)}`
    if (opts.deadLetter === false) {
      this.#deps.logger.warn('sqs: invalid message dropped (deadLetter: false)', { reason })
      void this.#ack(held)
      return
    }
    const now = Date.now()
    const sent = Number(m.Attributes?.SentTimestamp)
    const original: OmnibusEvent = {
      id: `sqs-${held.messageId}`,
      topic: isLiteralPattern(opts.pattern) ? opts.pattern : INVALID_MESSAGE_TOPIC,
      data: m.Body ?? '',
      time: Number.isFinite(sent) && sent > 0 ? sent : now,
      source: `sqs:${this.#config.queueName}`,
      headers: {},
      guarantee: 'at-least-once',
    }
    try {
      await this.#deps.publish(
        deadLetterInput(original, opts.deadLetter, {
          reason,
          group: opts.group,
          attempts: receiveCount,
          firstFailureAt: now,
          lastFailureAt: now,
          error,
          backend: 'sqs',
        }),
      )
    } catch (e) {
      this.#deps.logger.error('sqs: invalid message could not be dead-lettered; it stays queued', {
        error: (e as Error).message,
      })
      await this.#changeVisibility([held], this.#visibilitySeconds)
      return
    }
    this.#deps.logger.warn('sqs: invalid message dead-lettered', { queue: this.#config.queueName, reason })
    void this.#ack(held)
  }

  #recordFailure(messageId: string, now: number): FailureRecord {
    let r = this.#failures.get(messageId)
    if (r === undefined) {
      r = { first: now, last: now, extra: 0 }
      this.#failures.set(messageId, r)
      if (this.#failures.size > MAX_FAILURE_RECORDS) {
        const oldest = this.#failures.keys().next().value as string
        this.#failures.delete(oldest)
      }
    }
    r.last = now
    return r
  }

  #track(p: Promise<unknown>): void {
    const t = p
      .catch((error: unknown) => {
        this.#deps.logger.error('sqs: background task failed', { error: (error as Error).message })
      })
      .finally(() => this.#tracked.delete(t))
    this.#tracked.add(t)
  }

  #settle(held: Held, state: 'done' | 'released'): void {
    held.state = state
    this.#held.delete(held)
    this.#roomWaiter?.()
  }

  /** Deletes the message (batched with others of this turn); resolves when the delete was sent. */
  #ack(held: Held): Promise<void> {
    this.#settle(held, 'done')
    return new Promise((resolve) => {
      this.#pendingDeletes.push({ held, done: resolve })
      if (this.#pendingDeletes.length >= 10) {
        void this.#flushDeletes()
      } else if (!this.#deleteScheduled) {
        this.#deleteScheduled = true
        setImmediate(() => {
          this.#deleteScheduled = false
          void this.#flushDeletes()
        })
      }
    })
  }

  async #flushDeletes(): Promise<void> {
    while (this.#pendingDeletes.length > 0) {
      const chunk = this.#pendingDeletes.splice(0, 10)
      const p = this.#deleteChunk(chunk).finally(() => this.#deletes.delete(p))
      this.#deletes.add(p)
    }
    await Promise.all([...this.#deletes])
  }

  async #deleteChunk(chunk: Array<{ held: Held; done: () => void }>): Promise<void> {
    try {
      const res = await this.#deps.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.#queueUrl,
          Entries: chunk.map((c, i) => ({ Id: String(i), ReceiptHandle: c.held.receipt })),
        }),
        { abortSignal: AbortSignal.timeout(CONTROL_DEADLINE_MS) },
      )
      for (const f of res.Failed ?? []) {
        this.#deps.logger.warn('sqs: delete failed; the message may be delivered again', {
          code: f.Code,
          message: f.Message,
        })
      }
    } catch (error) {
      this.#deps.logger.warn('sqs: delete failed; the messages may be delivered again', {
        error: classifyError(error, 'receive', this.#deps.where).message,
        count: chunk.length,
      })
    } finally {
      for (const c of chunk) c.done()
    }
  }

  /**
   * Gives messages back to the queue at once, for another consumer. Bounded tightly: the
   * visibility timeout returns them anyway, so a slow broker must not hold up a close.
   */
  #release(helds: Held[]): Promise<void> {
    return this.#changeVisibility(helds, 0, RELEASE_DEADLINE_MS)
  }

  async #changeVisibility(helds: Held[], seconds: number, deadlineMs = CONTROL_DEADLINE_MS): Promise<void> {
    for (const h of helds) this.#settle(h, 'released')
    for (let i = 0; i < helds.length; i += 10) {
      const chunk = helds.slice(i, i + 10)
      try {
        await this.#deps.client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.#queueUrl,
            Entries: chunk.map((h, k) => ({
              Id: String(k),
              ReceiptHandle: h.receipt,
              VisibilityTimeout: seconds,
            })),
          }),
          { abortSignal: AbortSignal.timeout(deadlineMs) },
        )
      } catch (error) {
        // The visibility timeout returns them anyway; only the timing changes.
        this.#deps.logger.debug('sqs: visibility change failed', { error: (error as Error).message })
      }
    }
  }

  /** Keeps held messages invisible while they wait or run. */
  #extend(): void {
    const helds = [...this.#held].filter((h) => h.state === 'held' || h.state === 'running')
    for (let i = 0; i < helds.length; i += 10) {
      const chunk = helds.slice(i, i + 10)
      this.#deps.client
        .send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.#queueUrl,
            Entries: chunk.map((h, k) => ({
              Id: String(k),
              ReceiptHandle: h.receipt,
              VisibilityTimeout: this.#visibilitySeconds,
            })),
          }),
          { abortSignal: AbortSignal.timeout(CONTROL_DEADLINE_MS) },
        )
        .catch((error: unknown) => {
          this.#deps.logger.debug('sqs: visibility extension failed', { error: (error as Error).message })
        })
    }
  }
}
