/**
 * Everything the backend writes to the broker: events (persistent, confirmed; a delayed one into
 * the schedule, see `Link.ensureSchedule`), dead letters (to a queue that keeps them even with no
 * subscriber yet) and retry copies (straight back into their queue, or through the delay queue of
 * their bucket).
 */
import {
  createEvent,
  DEAD_LETTER_GROUP,
  type DelayCapability,
  type EventInput,
  NotConnectedError,
  type OmnibusEvent,
  type PublishReceipt,
} from '@omnibus/core'
import { checkDelay, encodeEventChecked } from '@omnibus/core/backend'
import type { ChannelModel, Options } from 'amqplib'
import { DELAY_HEADER, type Link } from './link.ts'
import { type RabbitMessage, RETRY_HEADERS } from './message.ts'
import type { ResolvedRabbitMQOptions } from './options.ts'
import {
  bindingKey,
  delayBucket,
  groupQueueArguments,
  groupQueueName,
  SCHEDULE_MAX_DELAY_MS,
  scheduleLevelName,
  scheduleRoute,
  supportsQuorumQueues,
} from './topology.ts'

const CONTENT_TYPE = 'application/cloudevents+json'

/**
 * Delayed delivery: held by the broker in the schedule (see {@link Link.ensureSchedule}), whose
 * 32 levels add up to 2^32 - 1 ms (about 49.7 days). The consumer kernel still holds a delivery
 * that arrives before its time (a publisher's clock ahead of the consumer's).
 */
export const RABBITMQ_DELAY: DelayCapability = Object.freeze({ maxDelayMs: SCHEDULE_MAX_DELAY_MS })

/** Writes of one backend instance. */
export class Publisher {
  readonly #o: ResolvedRabbitMQOptions
  readonly #link: Link
  /** When the queue keeping each dead-letter topic's letters was last declared. */
  readonly #deadLetterQueues = new Map<string, number>()
  /** When each group queue declared by `ensureGroup` was last declared (`group NUL pattern`). */
  readonly #declaredGroups = new Map<string, number>()
  #warnedNoQuorum = false

  constructor(o: ResolvedRabbitMQOptions, link: Link) {
    this.#o = o
    this.#link = link
  }

  deadline(): number {
    return Date.now() + this.#o.publishTimeoutMs
  }

  /** Arguments of a group queue on this connection: quorum where the broker has it (RabbitMQ ≥ 3.8). */
  groupQueueArguments(model: ChannelModel): Record<string, unknown> {
    let type = this.#o.queueType
    if (type === 'quorum' && !supportsQuorumQueues(model.connection.serverProperties)) {
      type = 'classic'
      if (!this.#warnedNoQuorum) {
        this.#warnedNoQuorum = true
        this.#o.logger.warn(
          'rabbitmq: the broker has no quorum queues (RabbitMQ < 3.8); group queues are classic',
          {
            version: model.connection.serverProperties.version,
          },
        )
      }
    }
    return groupQueueArguments(type, this.#o.groupQueueExpiresMs)
  }

  /**
   * Publishes an event; resolves on the broker's confirm. A delayed event goes into the schedule
   * instead, and from there to the topic exchange (and the queues bound then) when it is due.
   */
  publish(input: EventInput): Promise<PublishReceipt> {
    const event = createEvent(input, this.#o.source === undefined ? {} : { source: this.#o.source })
    checkDelay(event, RABBITMQ_DELAY, 'rabbitmq')
    const { json } = encodeEventChecked(event, this.#o.maxPayloadBytes, 'rabbitmq')
    if (event.deliverAt !== undefined) return this.#schedule(event, event.deliverAt, json)
    return this.#link
      .publish(this.#o.exchange, event.topic, Buffer.from(json), props(event), this.deadline())
      .then(() => ({ id: event.id, topic: event.topic }))
  }

  async #schedule(event: OmnibusEvent, deliverAt: number, json: string): Promise<PublishReceipt> {
    const deadline = this.deadline()
    await this.#link.ensureSchedule(deadline)
    const p = props(event)
    // Measured once the schedule exists, so declaring it is not added to the wait.
    const route = scheduleRoute(deliverAt - Date.now())
    let exchange = this.#o.exchange
    if (route !== undefined) {
      exchange = scheduleLevelName(this.#o.prefix, route.level)
      p.headers = route.headers
    }
    await this.#link.publish(exchange, event.topic, Buffer.from(json), p, deadline)
    return { id: event.id, topic: event.topic }
  }

  /** Publishes a dead letter, first making sure a queue keeps it (see {@link keepDeadLetters}). */
  async deadLetter(input: EventInput): Promise<void> {
    const event = createEvent(input)
    // Dead letters keep the original payload even when it is just over the publish limit.
    const { json } = encodeEventChecked(event, undefined, 'rabbitmq')
    await this.keepDeadLetters(event.topic)
    await this.#link.publish(this.#o.exchange, event.topic, Buffer.from(json), props(event), this.deadline())
  }

  /**
   * Declares the durable queue of `group` on `pattern` and binds it, named, typed and bound as a
   * member's subscription does it (`consumer.ts`), so events published from now on wait in it for
   * the group's first member. Declared again at most once a minute (a queue with `x-expires`
   * that expired comes back on the next use).
   */
  async ensureGroup(pattern: string, group: string): Promise<void> {
    const key = `${group}\u0000${pattern}`
    const at = this.#declaredGroups.get(key)
    if (at !== undefined && Date.now() - at < 60_000) return
    const ch = await this.#link.admin(this.deadline())
    const model = this.#link.model
    if (model === undefined) throw new NotConnectedError('rabbitmq', 'ensureGroup')
    const queue = groupQueueName(this.#o.prefix, group, pattern)
    await ch.assertQueue(queue, { durable: true, arguments: this.groupQueueArguments(model) })
    await ch.bindQueue(queue, this.#o.exchange, bindingKey(pattern))
    this.#declaredGroups.set(key, Date.now())
  }

  /**
   * Declares the queue of {@link DEAD_LETTER_GROUP} on a dead-letter topic, bound as that group's
   * subscription would bind it: the broker drops a message no queue is bound to, so without it a
   * letter nobody subscribes to yet would be lost. Declared again at most once a minute.
   */
  async keepDeadLetters(topic: string): Promise<void> {
    const at = this.#deadLetterQueues.get(topic)
    if (at !== undefined && Date.now() - at < 60_000) return
    const ch = await this.#link.admin(this.deadline())
    const model = this.#link.model
    if (model === undefined) throw new NotConnectedError('rabbitmq', 'dead-letter')
    const queue = groupQueueName(this.#o.prefix, DEAD_LETTER_GROUP, topic)
    await ch.assertQueue(queue, { durable: true, arguments: this.groupQueueArguments(model) })
    await ch.bindQueue(queue, this.#o.exchange, bindingKey(topic))
    this.#deadLetterQueues.set(topic, Date.now())
  }

  /**
   * Puts a copy of `msg` back into `queue` after `delayMs`, counted as delivery `deliveryCount`
   * and carrying the message's native id: at once through the default exchange, or through the
   * delay exchange into the delay queue of its bucket, whose TTL dead-letters it back into `queue`.
   */
  async copy(queue: string, msg: RabbitMessage, delayMs: number, deliveryCount: number): Promise<void> {
    const headers: Record<string, unknown> = {
      [RETRY_HEADERS.attempt]: deliveryCount,
      [RETRY_HEADERS.nativeId]: msg.nativeId,
    }
    const original = msg.raw.properties
    const p: Options.Publish = {
      persistent: true,
      contentType: original.contentType ?? CONTENT_TYPE,
      headers,
    }
    if (typeof original.messageId === 'string') p.messageId = original.messageId
    const deadline = this.deadline()
    if (delayMs < 1) {
      await this.#link.publish('', queue, msg.raw.content, p, deadline)
      return
    }
    const bucket = delayBucket(delayMs)
    await this.#link.ensureDelayQueue(bucket, deadline)
    headers[DELAY_HEADER] = String(bucket)
    await this.#link.publish(`${this.#o.prefix}.delay`, queue, msg.raw.content, p, deadline)
  }
}

function props(event: OmnibusEvent): Options.Publish {
  return { persistent: true, contentType: CONTENT_TYPE, messageId: event.id }
}
