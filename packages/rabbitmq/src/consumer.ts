/**
 * The consumer of one subscription: a channel with `prefetch` = concurrency reading the
 * subscription's queue (the shared durable queue of its group and pattern, or an exclusive one
 * for a broadcast subscriber) and handing every delivery to the consumer kernel, which decides;
 * this module only carries the decisions out on the broker:
 *
 * | kernel asks        | RabbitMQ                                                                      |
 * | ------------------ | ----------------------------------------------------------------------------- |
 * | ack                | `basic.ack` (coalesced per event-loop turn, see `acks.ts`)                    |
 * | redeliver later    | a confirmed copy with the next delivery count into the queue, via the delay   |
 * |                    | queue of its bucket when it has a delay; then `basic.ack` of the original     |
 * | release            | `basic.nack` with requeue                                                     |
 * | dead letter        | a confirmed publish to the dead-letter topic, kept by a queue (`publisher.ts`) |
 * | stop / dispose     | `basic.cancel` / close the channel (unacknowledged messages return to the queue) |
 *
 * The channel is re-opened, with its queue and binding, after a reconnect, a channel error or a
 * consumer the broker cancelled (queue deleted).
 */
import { randomUUID } from 'node:crypto'
import { compilePattern, type EventHandler } from '@omnibus/core'
import { ConsumerKernel, type KernelAdapter, type ResolvedSubscribeOptions } from '@omnibus/core/backend'
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import { AckBatcher } from './acks.ts'
import { classifyError } from './errors.ts'
import type { Link } from './link.ts'
import { RabbitMessage } from './message.ts'
import type { ResolvedRabbitMQOptions } from './options.ts'
import type { Publisher } from './publisher.ts'
import { bindingKey, groupQueueName } from './topology.ts'

/** Pause before a message whose retry copy could not be published goes back to the queue. */
const NACK_PAUSE_MS = 1000

/** What a consumer shares with its backend. */
export interface ConsumerDeps {
  readonly o: ResolvedRabbitMQOptions
  readonly link: Link
  readonly publisher: Publisher
}

/** One subscription's reader and kernel adapter. */
export class Consumer {
  readonly kernel: ConsumerKernel<RabbitMessage>
  /** Why the last attach failed, for `healthCheck` (undefined while consuming). */
  attachError: string | undefined
  readonly #deps: ConsumerDeps
  readonly #opts: ResolvedSubscribeOptions
  readonly #matches: (topic: string) => boolean
  readonly #onStop: () => void
  /** Random per subscription: with a channel number and delivery tag, a native id unique across members. */
  readonly #token = randomUUID().slice(0, 13)
  #channels = 0
  #channel: Channel | undefined
  #acks: AckBatcher | undefined
  #consumerTag: string | undefined
  #queue: string | undefined
  #attaching: Promise<void> | undefined
  #reattachTimer: NodeJS.Timeout | undefined
  #reattachDelayMs = 500
  #stopped = false

  constructor(
    deps: ConsumerDeps,
    id: string,
    opts: ResolvedSubscribeOptions,
    handler: EventHandler,
    onStop: () => void,
  ) {
    this.#deps = deps
    this.#opts = opts
    this.#matches = compilePattern(opts.pattern)
    this.#onStop = onStop
    this.kernel = new ConsumerKernel<RabbitMessage>({
      adapter: this.#adapter(),
      options: opts,
      handler,
      subscriptionId: id,
      logger: deps.o.logger,
    })
  }

  #adapter(): KernelAdapter<RabbitMessage> {
    const { publisher, o } = this.#deps
    return {
      backend: 'rabbitmq',
      ack: (msg) => msg.acks.ack(msg.raw),
      redeliver: (msg, delayMs, deliveryCount) => this.#requeue(msg, delayMs, deliveryCount),
      release: (msg) => msg.acks.nack(msg.raw),
      publishDeadLetter: (input) => publisher.deadLetter(input),
      ...(this.#opts.guarantee === 'exactly-once' && o.dedupeStore !== undefined
        ? { dedupe: o.dedupeStore }
        : {}),
      stop: () => this.#stop(),
      dispose: () => this.#dispose(),
    }
  }

  /** Whether the subscription still wants a consumer. */
  get active(): boolean {
    return !this.#stopped
  }

  /** Opens the channel and starts consuming on `model`, unless that is done or under way. */
  async attach(model: ChannelModel): Promise<void> {
    if (this.#stopped) return
    // onUp and subscribe may race for the same subscription: one consumer per link is enough.
    if (this.#attaching !== undefined) return this.#attaching
    if (this.#channel !== undefined && this.#deps.link.model === model) return
    const p = this.#open(model).finally(() => {
      if (this.#attaching === p) this.#attaching = undefined
    })
    this.#attaching = p
    await p
  }

  /**
   * Attaches again after a reconnect or a lost channel. A failure (the queue cannot be declared
   * yet, say) is retried with backoff up to 30 s while the link stays up; `attachError` reports it
   * meanwhile. Never throws.
   */
  async reattach(model: ChannelModel): Promise<void> {
    clearTimeout(this.#reattachTimer)
    this.#reattachTimer = undefined
    if (this.#stopped) return
    try {
      await this.attach(model)
      this.attachError = undefined
      this.#reattachDelayMs = 500
    } catch (error) {
      this.attachError = error instanceof Error ? error.message : String(error)
      this.#deps.o.logger.error('rabbitmq: re-attaching a subscription failed; trying again', {
        pattern: this.#opts.pattern,
        group: this.#opts.group,
        error: this.attachError,
        retryInMs: this.#reattachDelayMs,
      })
      this.#reattachTimer = setTimeout(() => {
        this.#reattachTimer = undefined
        const current = this.#deps.link.model
        if (current !== undefined) void this.reattach(current)
      }, this.#reattachDelayMs)
      this.#reattachTimer.unref()
      this.#reattachDelayMs = Math.min(this.#reattachDelayMs * 2, 30_000)
    }
  }

  /** The connection dropped: its channel is gone, and the reconnect re-attaches. */
  linkDown(): void {
    this.#channel = undefined
    this.#acks = undefined
    this.#consumerTag = undefined
    // An error from the old connection says nothing about the next one.
    this.attachError = undefined
    clearTimeout(this.#reattachTimer)
    this.#reattachTimer = undefined
  }

  async #open(model: ChannelModel): Promise<void> {
    const { o, link, publisher } = this.#deps
    const ch = await model.createChannel()
    ch.on('error', (error: Error) =>
      o.logger.warn('rabbitmq consumer channel error', { pattern: this.#opts.pattern, error: error.message }),
    )
    ch.on('close', () => {
      if (this.#channel !== ch) return
      this.#channel = undefined
      this.#acks = undefined
      this.#consumerTag = undefined
      // The connection is alive but this channel died (queue deleted, refused ack): start over.
      // Channels close before their connection reports it: wait a turn, so a dying connection
      // is seen as such and left to the reconnect instead of being used for a re-attach.
      setImmediate(() => {
        const current = link.model
        if (current !== undefined && current === model && this.#channel === undefined)
          void this.reattach(current)
      })
    })
    try {
      await ch.prefetch(this.#opts.concurrency)
      let queue: string
      let counted: boolean
      const group = this.#opts.group
      if (group !== undefined) {
        queue = groupQueueName(o.prefix, group, this.#opts.pattern)
        const args = publisher.groupQueueArguments(model)
        counted = args['x-queue-type'] === 'quorum'
        await ch.assertQueue(queue, { durable: true, arguments: args })
      } else {
        queue = (await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false })).queue
        counted = false
      }
      await ch.bindQueue(queue, o.exchange, bindingKey(this.#opts.pattern))
      if (this.#stopped) {
        await ch.close().catch(() => {})
        return
      }
      const acks = new AckBatcher(ch)
      const reader = `${this.#token}.${++this.#channels}`
      this.#queue = queue
      this.#channel = ch
      this.#acks = acks
      const { consumerTag } = await ch.consume(
        queue,
        (raw) => this.#onMessage(ch, acks, reader, counted, raw),
        {
          noAck: false,
        },
      )
      this.#consumerTag = consumerTag
    } catch (error) {
      if (this.#channel === ch) this.#channel = undefined
      await ch.close().catch(() => {})
      throw classifyError(error, 'subscribe', o.endpoint)
    }
  }

  #onMessage(
    ch: Channel,
    acks: AckBatcher,
    reader: string,
    counted: boolean,
    raw: ConsumeMessage | null,
  ): void {
    if (raw === null) {
      // The broker cancelled the consumer (queue deleted): start over on a new channel, which
      // declares the queue again.
      if (this.#channel === ch) {
        this.#channel = undefined
        this.#acks = undefined
        this.#consumerTag = undefined
        ch.close().catch(() => {})
        const model = this.#deps.link.model
        if (model !== undefined) void this.reattach(model)
      }
      return
    }
    acks.track(raw)
    // A binding key broader than the pattern (an in-segment glob) lets in topics the pattern does
    // not match. Retry copies arrive from the default exchange, addressed to the queue itself.
    if (raw.fields.exchange === this.#deps.o.exchange && !this.#matches(raw.fields.routingKey)) {
      acks.ack(raw)
      return
    }
    const msg = new RabbitMessage(raw, acks, reader)
    if (!counted && raw.fields.redelivered && !msg.counted && this.#opts.guarantee !== 'at-most-once') {
      // A classic queue does not count deliveries: a redelivered message becomes a copy that
      // carries the count, so the poison guard sees it.
      void this.#requeue(msg, 0, msg.deliveryCount + 1).catch((error: unknown) =>
        this.#deps.o.logger.warn('rabbitmq: counting a redelivery failed; the message goes back later', {
          pattern: this.#opts.pattern,
          error: String(error),
        }),
      )
      return
    }
    this.kernel.deliver(msg)
  }

  /** A confirmed copy with `deliveryCount` into the queue after `delayMs`, then the original's ack. */
  async #requeue(msg: RabbitMessage, delayMs: number, deliveryCount: number): Promise<void> {
    const queue = this.#queue
    try {
      if (queue === undefined) throw new Error('the subscription has no queue')
      await this.#deps.publisher.copy(queue, msg, delayMs, deliveryCount)
    } catch (error) {
      // Back to the queue after a pause, so a broken link does not turn into a hot loop.
      setTimeout(() => msg.acks.nack(msg.raw), NACK_PAUSE_MS).unref()
      throw error
    }
    msg.acks.ack(msg.raw)
  }

  async #stop(): Promise<void> {
    this.#stopped = true
    this.#onStop()
    clearTimeout(this.#reattachTimer)
    this.#reattachTimer = undefined
    await this.#attaching?.catch(() => {})
    const ch = this.#channel
    const tag = this.#consumerTag
    if (ch !== undefined && tag !== undefined) await ch.cancel(tag).catch(() => {})
  }

  async #dispose(): Promise<void> {
    const ch = this.#channel
    const acks = this.#acks
    this.#channel = undefined
    this.#acks = undefined
    this.#consumerTag = undefined
    if (ch === undefined) return
    acks?.flush()
    // Closing the channel returns any unacknowledged message to the queue.
    await ch.close().catch(() => {})
  }
}
