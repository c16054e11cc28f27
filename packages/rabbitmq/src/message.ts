/**
 * One AMQP delivery as the consumer kernel sees it: how the broker's message maps onto the
 * kernel's id, topic and delivery count.
 *
 * - Delivery count = the `omnibus-attempt` header of a retry copy (1 on a first publish) plus the
 *   `x-delivery-count` a quorum queue adds each time it hands the same copy out again (a consumer
 *   died, its channel closed, or it was released unacknowledged). Classic queues keep no count:
 *   the consumer turns their redeliveries into counted copies first (see `consumer.ts`).
 * - Native id = the `omnibus-native-id` header of a retry copy, else `<reader>-<delivery tag>`
 *   of the channel that first received it: unique across members (the reader token is random per
 *   subscription and channel), and carried by every retry copy, so all attempts of one message
 *   share it. Two publishes of one event id are two native messages.
 */
import type { OmnibusEvent } from '@omnibus/core'
import type { KernelMessage } from '@omnibus/core/backend'
import type { ConsumeMessage } from 'amqplib'
import type { AckBatcher } from './acks.ts'

/** Message headers the backend sets on retry copies. */
export const RETRY_HEADERS = {
  /** Attempt number of the copy (its delivery count when published; absent on first publishes). */
  attempt: 'omnibus-attempt',
  /** The native id of the first delivery, the same on every copy of one message. */
  nativeId: 'omnibus-native-id',
} as const

/** The header quorum queues count deliveries of one message in (absent on the first). */
export const DELIVERY_COUNT_HEADER = 'x-delivery-count'

function headerInt(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const v = headers?.[name]
  if (v === undefined) return undefined
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number.NaN
  return Number.isInteger(n) && n >= 0 ? n : undefined
}

/** A delivery from one consumer channel, handed to the kernel. */
export class RabbitMessage implements KernelMessage {
  /** Decoded by the kernel, which stores the event here. */
  event: OmnibusEvent | undefined = undefined
  readonly raw: ConsumeMessage
  /** The ack bookkeeping of the channel it came from: acks go back on that channel. */
  readonly acks: AckBatcher
  readonly deliveryCount: number
  readonly #reader: string

  constructor(raw: ConsumeMessage, acks: AckBatcher, reader: string) {
    this.raw = raw
    this.acks = acks
    this.#reader = reader
    const headers = raw.properties.headers
    if (headers === undefined) this.deliveryCount = 1
    else {
      const attempt = headerInt(headers, RETRY_HEADERS.attempt) ?? 1
      this.deliveryCount = Math.max(1, attempt) + (headerInt(headers, DELIVERY_COUNT_HEADER) ?? 0)
    }
  }

  get body(): Buffer {
    return this.raw.content
  }

  /** The routing key: the topic of a first publish, the queue name of a retry copy. */
  get topic(): string {
    return this.raw.fields.routingKey
  }

  get nativeId(): string {
    const carried = this.raw.properties.headers?.[RETRY_HEADERS.nativeId]
    return typeof carried === 'string' ? carried : `${this.#reader}-${this.raw.fields.deliveryTag}`
  }

  /** Whether the broker counts this message's deliveries (a quorum queue does once it redelivers). */
  get counted(): boolean {
    return headerInt(this.raw.properties.headers, DELIVERY_COUNT_HEADER) !== undefined
  }
}
