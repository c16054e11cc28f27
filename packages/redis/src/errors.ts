/**
 * `classifyError`: the one place that turns ioredis and socket errors into the core taxonomy,
 * with a `retryable` flag callers can trust.
 */
import {
  CapabilityError,
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'

/** What the backend was doing when the error happened; picks the class of unknown errors. */
export type RedisOperation = 'connect' | 'publish' | 'subscribe' | 'other'

const RETRYABLE_SOCKET = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNABORTED',
])

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
])

function text(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

/**
 * Maps a native error to an `OmnibusError` subclass: socket and connection-state errors →
 * `ConnectionError` (retryable), authentication → `ConnectionError` (not retryable), transient
 * server states (`LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `READONLY`, `OOM`) → retryable,
 * Cluster redirections and a database index the server does not have → `ConfigurationError`,
 * unknown commands → `CapabilityError`, anything else → the class of `operation`. Omnibus errors
 * pass through unchanged. `endpoint` (host, port and database, never credentials) is named in
 * messages about the configuration.
 */
export function classifyError(
  error: unknown,
  operation: RedisOperation = 'other',
  endpoint?: string,
): OmnibusError {
  if (error instanceof OmnibusError) return error
  const msg = text(error)
  const e = error as { code?: unknown; name?: unknown } | null
  const code = typeof e?.code === 'string' ? e.code : undefined
  const name = typeof e?.name === 'string' ? e.name : ''
  const base = { backend: 'redis', cause: error }

  if (code !== undefined && RETRYABLE_SOCKET.has(code)) {
    return new ConnectionError(`Redis connection failed (${code}): ${msg}`, {
      ...base,
      code: 'CONNECTION_FAILED',
    })
  }
  if (
    code !== undefined &&
    (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_'))
  ) {
    return new ConnectionError(
      `TLS handshake with Redis failed (${code}): ${msg}; check the tls options (ca, servername) and the server certificate`,
      { ...base, code: 'TLS_FAILED', retryable: false },
    )
  }
  if (code === 'ENOTFOUND') {
    return new ConnectionError(`Redis host not found: ${msg}; check the host name in the URL`, {
      ...base,
      code: 'HOST_NOT_FOUND',
      retryable: false,
    })
  }
  if (
    name === 'MaxRetriesPerRequestError' ||
    name === 'AbortError' ||
    /max retries per request|Connection is closed|Stream isn't writeable|connection (lost|closed|close)|aborted/i.test(
      msg,
    )
  ) {
    return new ConnectionError(
      `Redis connection lost: ${msg}; the command may be retried once it reconnects`,
      {
        ...base,
        code: 'CONNECTION_LOST',
      },
    )
  }
  const reply = /^([A-Z]+)\b/.exec(msg)?.[1]
  switch (reply) {
    case 'NOAUTH':
    case 'WRONGPASS':
      return new ConnectionError(`Redis refused the credentials (${reply}): check username and password`, {
        ...base,
        code: 'AUTH_FAILED',
        retryable: false,
      })
    case 'NOPERM':
      return new ConfigurationError(
        `the Redis user lacks a permission the backend needs (${msg}); grant stream, set, string and pub/sub commands on the key prefix`,
        { ...base, code: 'PERMISSION_DENIED' },
      )
    case 'LOADING':
    case 'BUSY':
    case 'TRYAGAIN':
    case 'MASTERDOWN':
    case 'READONLY':
    case 'CLUSTERDOWN':
      return new ConnectionError(`Redis is temporarily unavailable (${reply}): ${msg}`, {
        ...base,
        code: 'SERVER_UNAVAILABLE',
      })
    case 'OOM':
      return new PublishError(
        `Redis is out of memory (maxmemory reached): set maxLen to trim streams, or raise maxmemory`,
        { ...base, code: 'SERVER_OUT_OF_MEMORY', retryable: true },
      )
    case 'MOVED':
    case 'ASK':
    case 'CROSSSLOT':
      return new ConfigurationError(
        `the server is a Redis Cluster (${reply}), which this backend does not support; use a standalone or Sentinel-managed Redis`,
        { ...base, code: 'CLUSTER_UNSUPPORTED' },
      )
    case 'NOGROUP':
      return new SubscriptionError(`consumer group missing (${msg}); it is recreated on the next read`, {
        ...base,
        code: 'GROUP_MISSING',
        retryable: true,
      })
    case 'WRONGTYPE':
      return new ConfigurationError(
        `a key under the backend's prefix holds another type (${msg}); use a keyPrefix no other application writes to`,
        { ...base, code: 'KEY_TYPE_CONFLICT' },
      )
  }
  if (/^ERR DB index is out of range/i.test(msg)) {
    // Retrying cannot help: the server has fewer databases than the URL's path asks for.
    return new ConfigurationError(
      `Redis${endpoint === undefined ? '' : ` at ${endpoint}`} has no such database (${msg}): use a database ` +
        'from /0 to /15 on a server with the default "databases 16", or raise "databases" in its redis.conf',
      { ...base, code: 'INVALID_DATABASE' },
    )
  }
  if (/^ERR unknown command/i.test(msg) || /^ERR unknown subcommand/i.test(msg)) {
    return new CapabilityError(
      `the Redis server lacks a command the backend needs (${msg}); use Redis >= 6.2`,
      {
        ...base,
        code: 'SERVER_TOO_OLD',
      },
    )
  }
  switch (operation) {
    case 'connect':
      return new ConnectionError(`cannot connect to Redis: ${msg}`, { ...base, code: 'CONNECTION_FAILED' })
    case 'publish':
      return new PublishError(`Redis rejected the publish: ${msg}`, { ...base, code: 'PUBLISH_FAILED' })
    case 'subscribe':
      return new SubscriptionError(`Redis subscription failed: ${msg}`, {
        ...base,
        code: 'SUBSCRIPTION_FAILED',
      })
    default:
      return new OmnibusError(`Redis error: ${msg}`, { ...base, code: 'REDIS_ERROR' })
  }
}
