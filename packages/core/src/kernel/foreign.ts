/**
 * Messages on the wire that are not Omnibus envelopes (a foreign producer, a truncated or corrupt
 * body) are never dropped in silence and never crash a consumer: the kernel wraps each one in a
 * stand-in event and dead-letters it with the reason. One stand-in scheme for every backend, so a
 * dead-letter reader (`omnibus dlq`, a redrive tool) sees the same shape whichever broker it was.
 */
import { InvalidEnvelopeError } from '../codec.ts'
import type { OmnibusEvent } from '../protocol.ts'
import { isValidTopic } from '../topic.ts'
import { describeError } from './outcome.ts'

/** Topic of the stand-in event when the wire message's own topic is not a valid Omnibus topic. */
export const FOREIGN_TOPIC = 'omnibus.foreign'

/** Headers of a stand-in event: where the undecodable message came from. */
export const FOREIGN_HEADERS = {
  /** The backend that read it (`redis`, `kafka`, ...). */
  backend: 'omnibus-foreign-backend',
  /** The broker's id of the message (stream entry, `topic:partition:offset`, SQS message id, ...). */
  nativeId: 'omnibus-foreign-native-id',
  /** The topic, routing key, stream or queue the message was read from, as the broker names it. */
  wireTopic: 'omnibus-foreign-topic',
} as const

/** What the adapter knows of an undecodable message. */
export interface ForeignMessage {
  /** The backend's name. */
  readonly backend: string
  /** The broker's id of the message, unique within the subscription. */
  readonly nativeId: string
  /** The topic (routing key, stream, queue) it was read from, valid or not. */
  readonly topic: string
  /** The body as read: bytes are kept byte-exact, a string as is. */
  readonly body: string | Uint8Array | null
  /** When the broker stored it (epoch ms), when it says; otherwise now. */
  readonly time?: number
}

/**
 * The stand-in event of an undecodable message: id `foreign:<backend>:<native id>` (the same for
 * every redelivery, so its dead letter dedupes), the wire topic when it is a valid topic and
 * {@link FOREIGN_TOPIC} otherwise, source `omnibus:<backend>`, the body as data, and
 * {@link FOREIGN_HEADERS} naming the backend, the native id and the wire topic.
 */
export function foreignEvent(m: ForeignMessage): OmnibusEvent {
  return {
    id: `foreign:${m.backend}:${m.nativeId}`,
    topic: isValidTopic(m.topic) ? m.topic : FOREIGN_TOPIC,
    data: m.body ?? null,
    time: m.time !== undefined && Number.isFinite(m.time) && m.time > 0 ? m.time : Date.now(),
    source: `omnibus:${m.backend}`,
    headers: {
      [FOREIGN_HEADERS.backend]: m.backend,
      [FOREIGN_HEADERS.nativeId]: m.nativeId,
      [FOREIGN_HEADERS.wireTopic]: m.topic,
    },
    guarantee: 'at-least-once',
  }
}

/**
 * The dead-letter reason of an undecodable message, one format everywhere (the codec's own):
 * `not a valid Omnibus/CloudEvents envelope: <what is wrong>`.
 */
export function foreignReason(error: unknown): string {
  if (error instanceof InvalidEnvelopeError) return error.message
  return `not a valid Omnibus/CloudEvents envelope: ${describeError(error)}`
}
