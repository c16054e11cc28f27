/**
 * The RabbitMQ `EventBackend`: one topic exchange, a durable queue per (group, pattern), an
 * exclusive auto-delete queue per broadcast subscriber, confirms on every publish, manual acks
 * after the handler, retries through shared delay queues, dead letters as events.
 */
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  compilePattern,
  createEvent,
  DEAD_LETTER_GROUP,
  DLQ_HEADERS,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  isValidTopic,
  NotConnectedError,
  newEventId,
  type OmnibusEvent,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
} from '@omnibus/core'
import {
  type DeadLetterDiagnostics,
  deadLetterInput,
  decideFailure,
  decodeEvent,
  encodeEventChecked,
  HandlerRunner,
  holdProcess,
  InvalidEnvelopeError,
  KeyedLimiter,
  type ProcessHold,
  type ResolvedSubscribeOptions,
  resolveSubscribeOptions,
} from '@omnibus/core/backend'
import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib'
import { AckBatcher } from './acks.ts'
import { classifyError } from './errors.ts'
import { DELAY_HEADER, Link } from './link.ts'
import { type RabbitMQBackendOptions, type ResolvedRabbitMQOptions, resolveOptions } from './options.ts'
import { bindingKey, delayBucket, groupQueueName, supportsQuorumQueues } from './topology.ts'

/** Message headers the backend sets on retry copies. */
export const RETRY_HEADERS = {
  /** Attempt number of the copy (1 = first delivery; absent on first publishes). */
  attempt: 'omnibus-attempt',
  /** Epoch ms of the first failed attempt. */
  firstFailure: 'omnibus-first-failure',
} as const

const CONTENT_TYPE = 'application/cloudevents+json'
const DEFAULT_DRAIN_MS = 10_000
const NACK_PAUSE_MS = 1000

interface SubState {
  readonly id: string
  readonly opts: ResolvedSubscribeOptions
  readonly handler: EventHandler
  readonly matches: (topic: string) => boolean
  readonly binding: string
  readonly limiter: KeyedLimiter
  readonly abort: AbortController
  readonly dedupeKey: string
  /** Ids being handled now (exactly-once): a duplicate waits for the first copy's outcome. */
  readonly handling: Map<string, Promise<void>>
  subscription: Subscription
  runner: HandlerRunner
  active: boolean
  queue: string | undefined
  channel: Channel | undefined
  consumerTag: string | undefined
  attaching: Promise<void> | undefined
  closing: Promise<void> | undefined
  /** Pending re-attach after a failed one, and the delay of the next. */
  reattachTimer: NodeJS.Timeout | undefined
  reattachDelayMs: number
  /** Why the last attach failed, for `healthCheck`. */
  attachError: string | undefined
}

function headerNumber(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const v = headers?.[name]
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number.NaN
  return Number.isFinite(n) ? n : undefined
}

/** Creates an unconnected RabbitMQ backend. Options are validated now; nothing touches the network. */
export function createRabbitMQBackend(options: RabbitMQBackendOptions = {}): EventBackend {
  const o: ResolvedRabbitMQOptions = resolveOptions(options)
  const log = o.logger
  const subs = new Set<SubState>()
  let subCounter = 0
  let connecting: Promise<void> | undefined
  let userConnected = false

  const capabilities: BackendCapabilities = {
    guarantees:
      o.dedupeStore === undefined
        ? ['at-most-once', 'at-least-once']
        : ['at-most-once', 'at-least-once', 'exactly-once'],
    persistent: true,
    crossProcess: true,
    groups: true,
    orderedPerKey: false,
    replay: false,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: true,
    wildcardDiscoveryMs: 0,
  }

  const link = new Link(o, {
    async onUp(model) {
      await Promise.all([...subs].map((s) => reattach(s, model)))
    },
    onDown() {
      for (const s of subs) {
        s.channel = undefined
        s.consumerTag = undefined
        // The reconnect re-attaches everything; an error from the old connection says nothing now.
        s.attachError = undefined
        clearTimeout(s.reattachTimer)
        s.reattachTimer = undefined
      }
    },
  })

  function deadline(): number {
    return Date.now() + o.publishTimeoutMs
  }

  function props(event: OmnibusEvent): Options.Publish {
    return { persistent: true, contentType: CONTENT_TYPE, messageId: event.id }
  }

  function requireOpen(action: string): void {
    if (!userConnected) throw new NotConnectedError('rabbitmq', action)
  }

  async function publishInput(input: EventInput): Promise<PublishReceipt> {
    const event = createEvent(input, o.source === undefined ? {} : { source: o.source })
    const { json } = encodeEventChecked(event, o.maxPayloadBytes, 'rabbitmq')
    await link.publish(o.exchange, event.topic, Buffer.from(json), props(event), deadline())
    return { id: event.id, topic: event.topic }
  }

  // --- consuming ---------------------------------------------------------------------------

  let warnedNoQuorum = false

  /** Quorum where the broker has it (RabbitMQ ≥ 3.8), classic otherwise. */
  function groupQueueType(model: ChannelModel): 'quorum' | 'classic' {
    if (o.queueType === 'classic') return 'classic'
    if (supportsQuorumQueues(model.connection.serverProperties)) return 'quorum'
    if (!warnedNoQuorum) {
      warnedNoQuorum = true
      log.warn('rabbitmq: the broker has no quorum queues (RabbitMQ < 3.8); group queues are classic', {
        version: model.connection.serverProperties.version,
      })
    }
    return 'classic'
  }

  /** Arguments of a group queue; the queue that keeps dead letters is declared with the same ones. */
  function groupQueueArguments(model: ChannelModel): Record<string, unknown> {
    const args: Record<string, unknown> = { 'x-queue-type': groupQueueType(model) }
    if (o.groupQueueExpiresMs !== undefined) args['x-expires'] = o.groupQueueExpiresMs
    return args
  }

  async function attach(s: SubState, model: ChannelModel): Promise<void> {
    if (!s.active) return
    // onUp and subscribe may race for the same subscription: one consumer per link is enough.
    if (s.attaching !== undefined) return s.attaching
    if (s.channel !== undefined && link.model === model) return
    const run = async (): Promise<void> => {
      const ch = await model.createChannel()
      ch.on('error', (error: Error) =>
        log.warn('rabbitmq consumer channel error', { pattern: s.opts.pattern, error: error.message }),
      )
      ch.on('close', () => {
        if (s.channel !== ch) return
        s.channel = undefined
        s.consumerTag = undefined
        // The connection is alive but this channel died (queue deleted, refused ack): start over.
        // Channels close before their connection reports it: wait a turn, so a dying connection
        // is seen as such and left to the reconnect instead of being used for a re-attach.
        setImmediate(() => {
          const current = link.model
          if (current !== undefined && current === model && s.channel === undefined) void reattach(s, current)
        })
      })
      try {
        await ch.prefetch(s.opts.concurrency)
        let queue: string
        if (s.opts.group !== undefined) {
          queue = groupQueueName(o.prefix, s.opts.group, s.opts.pattern)
          await ch.assertQueue(queue, { durable: true, arguments: groupQueueArguments(model) })
        } else {
          const reply = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false })
          queue = reply.queue
        }
        await ch.bindQueue(queue, o.exchange, s.binding)
        if (!s.active) {
          await ch.close().catch(() => {})
          return
        }
        s.queue = queue
        s.channel = ch
        // At-most-once acks one by one as each handler starts; the others settle after it, batched.
        if (s.opts.guarantee !== 'at-most-once') ackers.set(ch, new AckBatcher(ch))
        const { consumerTag } = await ch.consume(queue, (msg) => onMessage(s, ch, msg), { noAck: false })
        s.consumerTag = consumerTag
      } catch (error) {
        if (s.channel === ch) s.channel = undefined
        await ch.close().catch(() => {})
        throw classifyError(error, 'subscribe', o.endpoint)
      }
    }
    const p = run().finally(() => {
      if (s.attaching === p) s.attaching = undefined
    })
    s.attaching = p
    await p
  }

  /**
   * Attaches `s` again after a reconnect or a lost channel. A failure (the queue cannot be
   * declared yet, say) is retried with backoff up to 30 s for as long as the link stays up;
   * `healthCheck` reports the subscription meanwhile. Never throws.
   */
  async function reattach(s: SubState, model: ChannelModel): Promise<void> {
    if (s.reattachTimer !== undefined) {
      clearTimeout(s.reattachTimer)
      s.reattachTimer = undefined
    }
    if (!s.active) return
    try {
      await attach(s, model)
      s.attachError = undefined
      s.reattachDelayMs = 500
    } catch (error) {
      s.attachError = error instanceof Error ? error.message : String(error)
      log.error('rabbitmq: re-attaching a subscription failed; trying again', {
        pattern: s.opts.pattern,
        group: s.opts.group,
        error: s.attachError,
        retryInMs: s.reattachDelayMs,
      })
      s.reattachTimer = setTimeout(() => {
        s.reattachTimer = undefined
        const current = link.model
        if (current !== undefined && s.active) void reattach(s, current)
      }, s.reattachDelayMs)
      s.reattachTimer.unref()
      s.reattachDelayMs = Math.min(s.reattachDelayMs * 2, 30_000)
    }
  }

  const ackers = new WeakMap<Channel, AckBatcher>()

  function safeAck(ch: Channel, msg: ConsumeMessage): void {
    const acker = ackers.get(ch)
    if (acker !== undefined) {
      acker.ack(msg)
      return
    }
    try {
      ch.ack(msg)
    } catch {
      // The channel closed: the broker requeues the message and redelivers it.
    }
  }

  function safeNack(ch: Channel, msg: ConsumeMessage): void {
    const acker = ackers.get(ch)
    if (acker !== undefined) {
      acker.nack(msg)
      return
    }
    try {
      ch.nack(msg, false, true)
    } catch {
      // Same as above: the message returns to the queue with the channel.
    }
  }

  function onMessage(s: SubState, ch: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted): start over on a new channel, which
      // declares the queue again.
      if (s.channel === ch) {
        s.channel = undefined
        s.consumerTag = undefined
        ch.close().catch(() => {})
        const model = link.model
        if (model !== undefined) void reattach(s, model)
      }
      return
    }
    ackers.get(ch)?.track(msg)
    s.limiter
      .run(undefined, () => handle(s, ch, msg))
      .catch((error: unknown) => {
        // Not a handler failure (those are retried through the delay queues) but ours: the retry
        // or dead-letter publish timed out, or the dedupe store failed. Hand the message back
        // after a pause, so a broken dependency does not turn into a hot redelivery loop.
        log.error('rabbitmq: handling a message failed; it will be redelivered', { error: String(error) })
        if (s.opts.guarantee !== 'at-most-once') setTimeout(() => safeNack(ch, msg), NACK_PAUSE_MS).unref()
      })
  }

  async function handle(s: SubState, ch: Channel, msg: ConsumeMessage): Promise<void> {
    // Not started before the subscription closed: back to the queue, for another consumer.
    if (!s.active) return safeNack(ch, msg)
    const amo = s.opts.guarantee === 'at-most-once'
    // At-most-once acks when the handler is about to run, not on receipt: prefetch then still
    // bounds how many messages wait in this process.
    if (amo) safeAck(ch, msg)
    const settle = amo ? () => {} : () => safeAck(ch, msg)
    let event: OmnibusEvent
    try {
      event = decodeEvent(msg.content)
    } catch (error) {
      // Only the subscription whose pattern matches the routing key owns a foreign message;
      // broader bindings of other patterns must not dead-letter it a second time.
      if (s.matches(msg.fields.routingKey)) await deadLetterForeign(s, msg, error)
      return settle()
    }
    if (!s.matches(event.topic)) return settle()
    const headers = msg.properties.headers
    const attempt = Math.max(1, Math.floor(headerNumber(headers, RETRY_HEADERS.attempt) ?? 1))
    if (amo) {
      await s.runner.run(event, attempt)
      return
    }
    const redeliveries = headerNumber(headers, 'x-delivery-count') ?? 0
    if (o.maxRedeliveries > 0 && redeliveries >= o.maxRedeliveries) {
      await poisonDeadLetter(s, event, attempt, redeliveries)
      return settle()
    }
    if (s.opts.guarantee === 'exactly-once') {
      await exactlyOnce(s, ch, msg, event, attempt)
      return
    }
    await runAndSettle(s, ch, msg, event, attempt)
  }

  async function exactlyOnce(
    s: SubState,
    ch: Channel,
    msg: ConsumeMessage,
    event: OmnibusEvent,
    attempt: number,
  ): Promise<void> {
    const store = o.dedupeStore
    if (store === undefined) return runAndSettle(s, ch, msg, event, attempt)
    for (;;) {
      const earlier = s.handling.get(event.id)
      if (earlier === undefined) break
      await earlier
    }
    if (await store.has(s.dedupeKey, event.id)) return safeAck(ch, msg)
    const p = runAndSettle(s, ch, msg, event, attempt, async () => {
      await store.add(s.dedupeKey, event.id)
    })
    const tracked = p.then(
      () => {},
      () => {},
    )
    s.handling.set(event.id, tracked)
    try {
      await p
    } finally {
      if (s.handling.get(event.id) === tracked) s.handling.delete(event.id)
    }
  }

  async function runAndSettle(
    s: SubState,
    ch: Channel,
    msg: ConsumeMessage,
    event: OmnibusEvent,
    attempt: number,
    beforeAck?: () => Promise<void>,
  ): Promise<void> {
    const outcome = await s.runner.run(event, attempt)
    if (outcome.kind === 'ack') {
      if (beforeAck !== undefined) await beforeAck()
      return safeAck(ch, msg)
    }
    const now = Date.now()
    const firstFailure = headerNumber(msg.properties.headers, RETRY_HEADERS.firstFailure) ?? now
    const decision = decideFailure(s.opts, attempt, outcome)
    if (decision.action === 'retry') {
      await scheduleRetry(s, msg, attempt + 1, decision.delayMs, firstFailure)
    } else if (decision.action === 'dead-letter' && s.opts.deadLetter !== false) {
      const d: DeadLetterDiagnostics = {
        reason: decision.reason,
        group: s.opts.group,
        attempts: attempt,
        firstFailureAt: firstFailure,
        lastFailureAt: now,
        error: outcome.error,
        backend: 'rabbitmq',
      }
      await publishDeadLetter(deadLetterInput(event, s.opts.deadLetter, d))
    } else {
      log.warn('rabbitmq: event dropped after its last attempt (deadLetter: false)', {
        id: event.id,
        topic: event.topic,
        reason: decision.action === 'drop' ? decision.reason : '',
      })
    }
    safeAck(ch, msg)
  }

  /** When the queue keeping each dead-letter topic's letters was last declared. */
  const deadLetterQueues = new Map<string, number>()

  /**
   * Declares the queue of {@link DEAD_LETTER_GROUP} on a dead-letter topic, bound as that group's
   * subscription would bind it: the broker drops a message no queue is bound to, so without it a
   * letter nobody subscribes to yet would be lost. Declared again at most once a minute.
   */
  async function keepDeadLetters(topic: string): Promise<void> {
    const at = deadLetterQueues.get(topic)
    if (at !== undefined && Date.now() - at < 60_000) return
    const ch = await link.admin(deadline())
    const model = link.model
    if (model === undefined) throw new NotConnectedError('rabbitmq', 'dead-letter')
    const queue = groupQueueName(o.prefix, DEAD_LETTER_GROUP, topic)
    await ch.assertQueue(queue, { durable: true, arguments: groupQueueArguments(model) })
    await ch.bindQueue(queue, o.exchange, bindingKey(topic))
    deadLetterQueues.set(topic, Date.now())
  }

  async function publishDeadLetter(input: EventInput): Promise<void> {
    const event = createEvent(input)
    // Dead letters keep the original payload even when it is just over the publish limit.
    const { json } = encodeEventChecked(event, undefined, 'rabbitmq')
    await keepDeadLetters(event.topic)
    await link.publish(o.exchange, event.topic, Buffer.from(json), props(event), deadline())
    log.warn('rabbitmq: event dead-lettered', {
      id: event.headers[DLQ_HEADERS.originalId],
      topic: event.headers[DLQ_HEADERS.originalTopic],
      group: event.headers[DLQ_HEADERS.group],
      deadLetterTopic: event.topic,
      reason: event.headers[DLQ_HEADERS.reason],
    })
  }

  /**
   * A message the broker handed out `redeliveries` + 1 times without an ack: its consumers died
   * or disconnected while handling it (a crash it may cause itself). Quorum queues count this in
   * `x-delivery-count`; past the limit it goes to the dead-letter topic instead of looping.
   */
  async function poisonDeadLetter(
    s: SubState,
    event: OmnibusEvent,
    attempt: number,
    redeliveries: number,
  ): Promise<void> {
    const reason =
      `delivered ${redeliveries + 1} times without an acknowledgement (consumers crashed or disconnected ` +
      `while handling it; maxRedeliveries is ${o.maxRedeliveries})`
    if (s.opts.deadLetter === false) {
      log.warn('rabbitmq: dropped an event that was never acknowledged (deadLetter: false)', {
        id: event.id,
        reason,
      })
      return
    }
    const now = Date.now()
    await publishDeadLetter(
      deadLetterInput(event, s.opts.deadLetter, {
        reason,
        group: s.opts.group,
        attempts: attempt,
        firstFailureAt: now,
        lastFailureAt: now,
        backend: 'rabbitmq',
      }),
    )
  }

  async function deadLetterForeign(s: SubState, msg: ConsumeMessage, error: unknown): Promise<void> {
    const reason =
      error instanceof InvalidEnvelopeError ? error.message : `undecodable message: ${String(error)}`
    if (s.opts.deadLetter === false) {
      log.warn('rabbitmq: dropped a message that is not a valid envelope (deadLetter: false)', {
        routingKey: msg.fields.routingKey,
        reason,
      })
      return
    }
    const routingKey = msg.fields.routingKey
    const now = Date.now()
    const foreign: OmnibusEvent = {
      id:
        typeof msg.properties.messageId === 'string' && msg.properties.messageId !== ''
          ? msg.properties.messageId
          : newEventId(),
      topic: isValidTopic(routingKey) ? routingKey : s.opts.deadLetter,
      data: new Uint8Array(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength),
      time: now,
      source: `rabbitmq:${o.exchange}`,
      headers: { 'omnibus-dlq-content-type': String(msg.properties.contentType ?? 'unknown') },
      guarantee: 'at-least-once',
    }
    await publishDeadLetter(
      deadLetterInput(foreign, s.opts.deadLetter, {
        reason,
        group: s.opts.group,
        attempts: 1,
        firstFailureAt: now,
        lastFailureAt: now,
        error,
        backend: 'rabbitmq',
      }),
    )
  }

  async function scheduleRetry(
    s: SubState,
    msg: ConsumeMessage,
    nextAttempt: number,
    delayMs: number,
    firstFailure: number,
  ): Promise<void> {
    const queue = s.queue
    if (queue === undefined) throw new Error('subscription has no queue')
    const headers: Record<string, unknown> = {
      [RETRY_HEADERS.attempt]: nextAttempt,
      [RETRY_HEADERS.firstFailure]: firstFailure,
    }
    const p: Options.Publish = {
      persistent: true,
      contentType: msg.properties.contentType ?? CONTENT_TYPE,
      headers,
    }
    if (typeof msg.properties.messageId === 'string') p.messageId = msg.properties.messageId
    const d = deadline()
    if (delayMs < 1) {
      await link.publish('', queue, msg.content, p, d)
      return
    }
    const bucket = delayBucket(delayMs)
    await link.ensureDelayQueue(bucket, d)
    headers[DELAY_HEADER] = String(bucket)
    await link.publish(`${o.prefix}.delay`, queue, msg.content, p, d)
  }

  async function closeSub(s: SubState, drainMs: number | undefined): Promise<void> {
    s.closing ??= (async () => {
      s.active = false
      subs.delete(s)
      clearTimeout(s.reattachTimer)
      await s.attaching?.catch(() => {})
      const ch = s.channel
      const tag = s.consumerTag
      if (ch !== undefined && tag !== undefined) await ch.cancel(tag).catch(() => {})
      if (drainMs === undefined) await s.limiter.onIdle()
      else {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          s.limiter.onIdle(),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, drainMs)
          }),
        ])
        clearTimeout(timer)
      }
      s.abort.abort()
      s.channel = undefined
      // Closing the channel returns any unacknowledged message to the queue.
      if (ch !== undefined) {
        ackers.get(ch)?.flush()
        await ch.close().catch(() => {})
      }
    })()
    await s.closing
  }

  // --- the backend object ------------------------------------------------------------------

  // Keeps the process alive from connect() to disconnect(), also while the link waits to
  // reconnect with no socket open (see holdProcess in core).
  let hold: ProcessHold | undefined

  const backend: EventBackend = {
    name: 'rabbitmq',
    capabilities,
    get isConnected() {
      return userConnected && link.up
    },

    async connect() {
      if (userConnected) return
      connecting ??= link.openFirst().finally(() => {
        connecting = undefined
      })
      await connecting
      userConnected = true
      hold ??= holdProcess()
    },

    async disconnect(opts) {
      if (!userConnected && !link.open) return
      userConnected = false
      const drainMs = opts?.drainTimeoutMs ?? DEFAULT_DRAIN_MS
      try {
        await Promise.all([...subs].map((s) => closeSub(s, drainMs)))
        await link.close(drainMs)
      } finally {
        hold?.release()
        hold = undefined
      }
    },

    async healthCheck(): Promise<HealthStatus> {
      const start = performance.now()
      if (!userConnected) return { healthy: false, latencyMs: 0, detail: 'not connected' }
      if (!link.up) {
        return {
          healthy: false,
          latencyMs: 0,
          detail: `reconnecting to ${o.endpoint}${link.lastError ? `: ${link.lastError.message}` : ''}`,
        }
      }
      try {
        const ch = await link.admin(Date.now() + 2000)
        await ch.checkExchange(o.exchange)
        const latencyMs = performance.now() - start
        const detached = [...subs].filter((s) => s.active && s.attachError !== undefined)
        if (detached.length > 0) {
          const first = detached[0] as SubState
          return {
            healthy: false,
            latencyMs,
            detail: `${detached.length} subscription(s) not consuming, e.g. "${first.opts.pattern}": ${first.attachError}`,
          }
        }
        return { healthy: true, latencyMs, detail: `connected to ${o.endpoint}` }
      } catch (error) {
        return {
          healthy: false,
          latencyMs: performance.now() - start,
          detail: classifyError(error, 'other', o.endpoint).message,
        }
      }
    },

    publish<T>(input: EventInput<T>): Promise<PublishReceipt> {
      // Not async: one promise per publish less on the hot path; every error still rejects.
      if (!userConnected) return Promise.reject(new NotConnectedError('rabbitmq', 'publish'))
      return publishInput(input)
    },

    async publishBatch(events: readonly EventInput[]): Promise<BatchReceipt> {
      requireOpen('publish')
      if (!Array.isArray(events)) {
        throw new TypeError('publishBatch expects an array of events')
      }
      const settled = await Promise.allSettled(events.map((e) => publishInput(e)))
      const results: BatchEntryResult[] = settled.map((r, index) =>
        r.status === 'fulfilled'
          ? { ok: true, index, receipt: r.value }
          : { ok: false, index, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) },
      )
      const succeeded = results.filter((r) => r.ok).length
      return { results, succeeded, failed: results.length - succeeded }
    },

    async subscribe<T>(
      pattern: string,
      handler: EventHandler<T>,
      opts?: SubscribeOptions,
    ): Promise<Subscription> {
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      requireOpen('subscribe')
      const id = `rmq-${process.pid}-${++subCounter}`
      const s: SubState = {
        id,
        opts: resolved,
        handler: handler as EventHandler,
        matches: compilePattern(pattern),
        binding: bindingKey(pattern),
        limiter: new KeyedLimiter(resolved.concurrency),
        abort: new AbortController(),
        dedupeKey: resolved.group ?? `broadcast.${id}`,
        handling: new Map(),
        subscription: undefined as unknown as Subscription,
        runner: undefined as unknown as HandlerRunner,
        active: true,
        queue: undefined,
        channel: undefined,
        consumerTag: undefined,
        attaching: undefined,
        closing: undefined,
        reattachTimer: undefined,
        reattachDelayMs: 500,
        attachError: undefined,
      }
      s.subscription = {
        id,
        pattern,
        group: resolved.group,
        get active() {
          return s.active
        },
        unsubscribe: () => closeSub(s, undefined),
      }
      s.runner = new HandlerRunner(s.handler, s.subscription, log, s.abort.signal)
      if (resolved.signal?.aborted) {
        s.active = false
        return s.subscription
      }
      subs.add(s)
      try {
        const model = await link.waitUp(deadline(), 'subscribe')
        await attach(s, model)
      } catch (error) {
        s.active = false
        subs.delete(s)
        throw classifyError(error, 'subscribe', o.endpoint)
      }
      resolved.signal?.addEventListener('abort', () => void closeSub(s, undefined), { once: true })
      return s.subscription
    },
  }
  return backend
}

/** Creates a backend from an `amqp://` or `amqps://` URL (used by `createBackend` in core). */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): EventBackend {
  return createRabbitMQBackend({ ...(options as RabbitMQBackendOptions), url: url.toString() })
}
