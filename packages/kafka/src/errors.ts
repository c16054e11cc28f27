/**
 * Maps kafkajs errors onto the Omnibus error taxonomy. Reads only plain properties (`name`,
 * `type`, `retriable`, `code`, `cause`), so it works on any error object and needs no kafkajs
 * import: the client layer can change without touching this mapping.
 */
import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  type OmnibusErrorOptions,
  PublishError,
  SubscriptionError,
  TimeoutError,
} from '@omnibus/core'

const BACKEND = 'kafka'

/** What the failed call was doing; picks the error class for failures that are not connection-level. */
export type KafkaOperation = 'connect' | 'publish' | 'subscribe' | 'admin'

const CONNECTION_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSGroupCoordinatorNotFound',
])

const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
])

/** Protocol error types that are the caller's configuration to fix, never worth a retry. */
const CONFIG_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'ILLEGAL_SASL_STATE',
  'POLICY_VIOLATION',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_PARTITIONS',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_CONFIG',
])

/** Idempotent producer-session errors: the next publish runs on a new session. */
const SESSION_TYPES = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'DUPLICATE_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
])

interface ErrorLike {
  readonly name?: unknown
  readonly message?: unknown
  readonly type?: unknown
  readonly retriable?: unknown
  readonly code?: unknown
  readonly cause?: unknown
  readonly originalError?: unknown
}

/** Walks `cause`/`originalError` (kafkajs wraps the last failure in `KafkaJSNumberOfRetriesExceeded`). */
function chain(error: unknown): ErrorLike[] {
  const out: ErrorLike[] = []
  let current: unknown = error
  while (current !== null && typeof current === 'object' && out.length < 6) {
    const e = current as ErrorLike
    out.push(e)
    current = e.originalError ?? e.cause
  }
  return out
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

/**
 * Turns a native kafkajs (or socket) error into an {@link OmnibusError}:
 * connection-level failures (`KafkaJSConnectionError`, `ECONNREFUSED`, request timeouts, no broker)
 * become a retryable `ConnectionError` naming `endpoint`; authorization, SASL and topic-policy
 * errors a non-retryable `ConfigurationError`; `MESSAGE_TOO_LARGE` a non-retryable
 * `PublishError` (code `PAYLOAD_TOO_LARGE`); anything else a `PublishError`/`SubscriptionError` whose `retryable` follows
 * kafkajs' own `retriable` flag. Omnibus errors pass through unchanged.
 */
export function classifyError(
  error: unknown,
  operation: KafkaOperation = 'admin',
  endpoint?: string,
): OmnibusError {
  if (error instanceof OmnibusError) return error
  const links = chain(error)
  const where = endpoint === undefined ? 'the Kafka brokers' : `Kafka at ${endpoint}`
  const base: OmnibusErrorOptions = { backend: BACKEND, cause: error }
  const message = messageOf(error)

  for (const e of links) {
    const type = typeof e.type === 'string' ? e.type : undefined
    if (type !== undefined && CONFIG_TYPES.has(type)) {
      return new ConfigurationError(
        `${where} refused the request (${type}): ${messageOf(e)}. Check credentials, ACLs and topic settings`,
        { ...base, code: type, retryable: false },
      )
    }
    if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') {
      return new PublishError(
        `${where} rejected the message as too large (${type}): lower maxPayloadBytes or raise the broker's message.max.bytes`,
        { ...base, code: 'PAYLOAD_TOO_LARGE', retryable: false },
      )
    }
    if (e.name === 'KafkaJSSASLAuthenticationError') {
      return new ConfigurationError(`SASL authentication with ${where} failed: check the sasl options`, {
        ...base,
        code: 'SASL_AUTHENTICATION_FAILED',
        retryable: false,
      })
    }
  }
  for (const e of links) {
    const code = typeof e.code === 'string' ? e.code : undefined
    if (
      (typeof e.name === 'string' && CONNECTION_NAMES.has(e.name)) ||
      (code !== undefined && SOCKET_CODES.has(code))
    ) {
      return new ConnectionError(
        `cannot reach ${where}: ${messageOf(e)}. Check that the broker runs and the brokers option is right`,
        { ...base, code: code ?? 'CONNECTION_FAILED', retryable: true },
      )
    }
    if (e.name === 'KafkaJSTimeout' || e.name === 'KafkaJSLockTimeout') {
      return new TimeoutError(`${where} did not answer in time: ${messageOf(e)}`, {
        ...base,
        retryable: true,
      })
    }
  }
  // The innermost verdict wins: kafkajs wraps a retriable failure in a non-retriable
  // "retries exceeded" error, and trying again later may well succeed. Idempotent-session errors
  // are final for kafkajs but not for the caller: the backend renews the producer session.
  const verdicts = links.filter((e) => typeof e.retriable === 'boolean')
  const retryable =
    links.some((e) => typeof e.type === 'string' && SESSION_TYPES.has(e.type)) ||
    (verdicts.length > 0 && verdicts[verdicts.length - 1]?.retriable === true)
  const typed = links.find((e) => typeof e.type === 'string')
  const code = typed === undefined ? 'KAFKA_ERROR' : String(typed.type)
  if (operation === 'publish') {
    return new PublishError(`publishing to ${where} failed: ${message}`, { ...base, code, retryable })
  }
  if (operation === 'subscribe') {
    return new SubscriptionError(`consuming from ${where} failed: ${message}`, { ...base, code, retryable })
  }
  if (operation === 'connect') {
    return new ConnectionError(`connecting to ${where} failed: ${message}`, { ...base, code, retryable })
  }
  return new OmnibusError(`${where}: ${message}`, { ...base, code, retryable })
}
