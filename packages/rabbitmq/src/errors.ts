/**
 * Maps what amqplib and the socket raise onto the Omnibus error taxonomy. AMQP reply codes come
 * either as `code` on channel/connection close errors or inside the message of a refused handshake
 * ("Handshake terminated by server: 403 (ACCESS-REFUSED) ..."), so both are read.
 */
import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'

const BACKEND = 'rabbitmq'

/** What the failed operation was doing; picks the error class for broker-side refusals. */
export type RabbitOperation = 'connect' | 'publish' | 'subscribe' | 'other'

/** AMQP 0-9-1 reply codes RabbitMQ uses, with their spec names. */
export const AMQP_REPLY_CODES: Readonly<Record<number, string>> = {
  311: 'CONTENT-TOO-LARGE',
  312: 'NO-ROUTE',
  313: 'NO-CONSUMERS',
  320: 'CONNECTION-FORCED',
  402: 'INVALID-PATH',
  403: 'ACCESS-REFUSED',
  404: 'NOT-FOUND',
  405: 'RESOURCE-LOCKED',
  406: 'PRECONDITION-FAILED',
  501: 'FRAME-ERROR',
  502: 'SYNTAX-ERROR',
  503: 'COMMAND-INVALID',
  504: 'CHANNEL-ERROR',
  505: 'UNEXPECTED-FRAME',
  506: 'RESOURCE-ERROR',
  530: 'NOT-ALLOWED',
  540: 'NOT-IMPLEMENTED',
  541: 'INTERNAL-ERROR',
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
])

const TLS_CODE = /^(ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_SSL_)/

/** The AMQP reply code of an amqplib error, from its `code` or its handshake message. */
export function replyCodeOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; message?: unknown } | null
  if (e === null || typeof e !== 'object') return undefined
  if (typeof e.code === 'number') return e.code
  if (typeof e.message === 'string') {
    const m = /\b([2-5]\d\d) \(([A-Z-]+)\)/.exec(e.message)
    if (m !== null) return Number(m[1])
  }
  return undefined
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

/**
 * Maps a native error (amqplib, socket, TLS) onto an Omnibus error. `endpoint` (already redacted)
 * is named in connection errors. Omnibus errors pass through unchanged.
 *
 * - refused/reset/timed-out sockets, heartbeat timeouts, 320 CONNECTION-FORCED (broker shutdown),
 *   405 RESOURCE-LOCKED and 506 RESOURCE-ERROR → retryable `ConnectionError`;
 * - 403 ACCESS-REFUSED and 530 NOT-ALLOWED (bad credentials, vhost, permissions) → `ConfigurationError`;
 * - 406 PRECONDITION-FAILED (a queue or exchange declared with other arguments), 404 NOT-FOUND,
 *   540 NOT-IMPLEMENTED (an operation the queue type refuses) → `SubscriptionError`/`PublishError`,
 *   not retryable;
 * - 311 CONTENT-TOO-LARGE → non-retryable `PublishError`;
 * - channel or connection closed under an operation (`IllegalOperationError`) → retryable.
 */
export function classifyError(
  error: unknown,
  operation: RabbitOperation = 'other',
  endpoint = 'the broker',
): OmnibusError {
  if (error instanceof OmnibusError) return error
  const message = describe(error)
  const sysCode = (error as { code?: unknown } | null)?.code
  if (typeof sysCode === 'string' && NETWORK_CODES.has(sysCode)) {
    return new ConnectionError(
      `cannot reach RabbitMQ at ${endpoint} (${sysCode}): check that the broker runs and the URL is right`,
      { code: `CONNECTION_${sysCode}`, backend: BACKEND, retryable: true, cause: error },
    )
  }
  if (typeof sysCode === 'string' && TLS_CODE.test(sysCode)) {
    return new ConfigurationError(
      `TLS handshake with ${endpoint} failed (${sysCode}): check the CA, certificate and server name options`,
      { code: 'TLS_FAILED', backend: BACKEND, cause: error },
    )
  }
  const reply = replyCodeOf(error)
  if (reply !== undefined) {
    const name = AMQP_REPLY_CODES[reply] ?? 'UNKNOWN'
    const what = `RabbitMQ replied ${reply} ${name}: ${message}`
    const opts = { code: `AMQP_${name.replace(/-/g, '_')}`, backend: BACKEND, cause: error }
    switch (reply) {
      case 320:
      case 405:
      case 506:
      case 541:
        return new ConnectionError(`${what} (the connection will be re-established)`, {
          ...opts,
          retryable: true,
        })
      case 403:
      case 530:
      case 402:
        return new ConfigurationError(
          `${what}: check the user, password, vhost and its permissions at ${endpoint}`,
          opts,
        )
      case 311:
        return new PublishError(`${what}: the message is over the broker's max_message_size; send less`, {
          ...opts,
          retryable: false,
        })
      case 406:
      case 404:
      case 540:
        if (operation === 'publish') return new PublishError(what, { ...opts, retryable: false })
        return new SubscriptionError(
          `${what}: a queue or exchange exists with other arguments or is missing; delete it or use another name/prefix`,
          { ...opts, retryable: false },
        )
      default:
        if (operation === 'publish') return new PublishError(what, { ...opts, retryable: true })
        if (operation === 'subscribe') return new SubscriptionError(what, { ...opts, retryable: true })
        return new ConnectionError(what, { ...opts, retryable: true })
    }
  }
  if (/Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) {
    // amqplib drops the reply code here; RabbitMQ closes at connection.open for a vhost that
    // does not exist or that the user may not access (530 NOT-ALLOWED).
    return new ConfigurationError(
      `RabbitMQ at ${endpoint} refused to open the virtual host: check that the vhost in the URL exists ` +
        '(URL-encode it, "/" is %2F) and that the user has permissions on it',
      { code: 'AMQP_NOT_ALLOWED', backend: BACKEND, cause: error },
    )
  }
  const name = (error as { name?: unknown } | null)?.name
  if (
    name === 'IllegalOperationError' ||
    /Channel closed|Channel ended|Connection closed|Socket closed|Heartbeat timeout|write after end/i.test(
      message,
    )
  ) {
    return new ConnectionError(
      `the RabbitMQ connection or channel closed during ${operation} (${message}); it is re-established automatically, try again`,
      { code: 'CONNECTION_LOST', backend: BACKEND, retryable: true, cause: error },
    )
  }
  if (error instanceof RangeError && operation === 'publish') {
    return new PublishError(`RabbitMQ publish refused locally: ${message}`, {
      code: 'PUBLISH_REFUSED',
      backend: BACKEND,
      retryable: false,
      cause: error,
    })
  }
  if (operation === 'connect') {
    return new ConnectionError(`cannot connect to RabbitMQ at ${endpoint}: ${message}`, {
      backend: BACKEND,
      retryable: true,
      cause: error,
    })
  }
  if (operation === 'publish') {
    return new PublishError(`RabbitMQ publish failed: ${message}`, {
      backend: BACKEND,
      retryable: true,
      cause: error,
    })
  }
  if (operation === 'subscribe') {
    return new SubscriptionError(`RabbitMQ subscription failed: ${message}`, {
      backend: BACKEND,
      retryable: true,
      cause: error,
    })
  }
  return new OmnibusError(`RabbitMQ error: ${message}`, { backend: BACKEND, retryable: false, cause: error })
}
