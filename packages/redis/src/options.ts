/**
 * Options of the Redis backend, resolved once at construction by core's `OptionResolver`:
 * explicit option, then the URL parameter (`keyPrefix`, `maxLen`), then the environment variable,
 * then the default. Every bad value is the one `ConfigurationError` format naming the field and
 * the value (passwords are never echoed).
 */
import type { ConnectionOptions } from 'node:tls'
import { ConfigurationError, type Logger, redactUrl } from '@omnibus/core'
import {
  OptionResolver,
  optionError,
  optionNames,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
} from '@omnibus/core/backend'
import type { Redis, RedisOptions } from 'ioredis'

/** Options of {@link createRedisBackend}. */
export interface RedisBackendOptions {
  /**
   * `redis://[user:password@]host:port[/db][?keyPrefix=…&maxLen=…]` or `rediss://…` for TLS. The
   * path is a database number (`/0` … `/15` on a default server); the query may set `keyPrefix` and
   * `maxLen` (explicit options win); anything else is a `ConfigurationError`. Ignored when
   * `client` is given.
   * @default 'redis://127.0.0.1:6379'
   * Env: `OMNIBUS_REDIS_URL`
   */
  readonly url?: string
  /**
   * A ready ioredis instance to use for commands. The backend duplicates it for its blocking
   * reads and its pub/sub connection, and never closes the instance itself.
   * @default undefined (the backend creates and owns its clients)
   */
  readonly client?: Redis
  /**
   * ACL user name; overrides the one in `url`.
   * @default undefined
   * Env: `OMNIBUS_REDIS_USERNAME`
   */
  readonly username?: string
  /**
   * Password (ACL or `requirepass`); overrides the one in `url`. Never logged.
   * @default undefined
   * Env: `OMNIBUS_REDIS_PASSWORD`
   */
  readonly password?: string
  /**
   * TLS options passed to `tls.connect`; `true` = TLS with the system CAs. `rediss://` implies `true`.
   * @default undefined
   */
  readonly tls?: ConnectionOptions | boolean
  /**
   * Prefix of every key and channel the backend uses, so several applications can share a server.
   * @default 'omnibus:'
   * Env: `OMNIBUS_REDIS_KEY_PREFIX`
   */
  readonly keyPrefix?: string
  /**
   * Approximate cap on each topic stream (`XADD … MAXLEN ~ n`). Unset = streams grow until
   * trimmed by someone else. Trimming can drop entries a slow group has not read yet.
   * @default undefined (unbounded)
   * Env: `OMNIBUS_REDIS_MAX_LEN`
   */
  readonly maxLen?: number
  /**
   * How long an entry delivered to a group member stays leased to it before another member may
   * reclaim it (`XAUTOCLAIM` min-idle). Held entries are kept alive by a heartbeat while their
   * handler runs. A subscription's `visibilityTimeoutMs` overrides it.
   * @default 30000
   * Env: `OMNIBUS_REDIS_VISIBILITY_TIMEOUT_MS`
   */
  readonly visibilityTimeoutMs?: number
  /**
   * Entries read per `XREADGROUP`/`XREAD` call (`COUNT`), and the read-ahead per subscription.
   * @default 100
   * Env: `OMNIBUS_REDIS_BATCH_SIZE`
   */
  readonly batchSize?: number
  /**
   * Longest wait of one blocking read (`BLOCK`). Reads are woken early when a subscription
   * changes, so this only bounds idle round trips.
   * @default 5000
   * Env: `OMNIBUS_REDIS_BLOCK_MS`
   */
  readonly blockMs?: number
  /**
   * How long exactly-once processed-id records live (`SET … PX`).
   * @default 86400000 (24 h)
   * Env: `OMNIBUS_REDIS_DEDUPE_TTL_MS`
   */
  readonly dedupeTtlMs?: number
  /**
   * Largest encoded event accepted by `publish`, in bytes.
   * @default 1048576 (1 MiB)
   * Env: `OMNIBUS_REDIS_MAX_PAYLOAD_BYTES`
   */
  readonly maxPayloadBytes?: number
  /**
   * Deadline of the first connection in `connect()`.
   * @default 5000
   * Env: `OMNIBUS_REDIS_CONNECT_TIMEOUT_MS`
   */
  readonly connectTimeoutMs?: number
  /**
   * Interval of the topic-registry rescan that backs up the pub/sub notifications of new topics
   * (notifications are lost while a connection is down).
   * @default 2000
   * Env: `OMNIBUS_REDIS_DISCOVERY_INTERVAL_MS`
   */
  readonly discoveryIntervalMs?: number
  /**
   * Default drain timeout of `disconnect()`.
   * @default 10000
   */
  readonly drainTimeoutMs?: number
  /**
   * `source` of published events that do not set one.
   * @default 'omnibus:<pid>'
   * Env: `OMNIBUS_SOURCE`
   */
  readonly source?: string
  /**
   * Logger for warnings (reconnects, trimmed entries, dead letters).
   * @default warnings and errors to the console
   */
  readonly logger?: Logger
  /**
   * Extra ioredis options merged into the clients the backend creates (for example
   * `sentinels` + `name` for Sentinel). Not used with `client`.
   * @default {}
   */
  readonly redisOptions?: RedisOptions
}

/** Options after resolution. */
export interface ResolvedRedisOptions {
  readonly url: string
  readonly client: Redis | undefined
  readonly username: string | undefined
  readonly password: string | undefined
  readonly tls: ConnectionOptions | undefined
  readonly keyPrefix: string
  readonly maxLen: number | undefined
  readonly visibilityTimeoutMs: number
  readonly batchSize: number
  readonly blockMs: number
  readonly dedupeTtlMs: number
  readonly maxPayloadBytes: number
  readonly connectTimeoutMs: number
  readonly discoveryIntervalMs: number
  readonly drainTimeoutMs: number
  readonly source: string | undefined
  readonly logger: Logger | undefined
  readonly redisOptions: RedisOptions
}

type Env = Readonly<Record<string, string | undefined>>

/** The keys of {@link RedisBackendOptions}; any other key is a `ConfigurationError`. */
export const REDIS_OPTION_NAMES: readonly string[] = optionNames<RedisBackendOptions>({
  url: true,
  client: true,
  username: true,
  password: true,
  tls: true,
  keyPrefix: true,
  maxLen: true,
  visibilityTimeoutMs: true,
  batchSize: true,
  blockMs: true,
  dedupeTtlMs: true,
  maxPayloadBytes: true,
  connectTimeoutMs: true,
  discoveryIntervalMs: true,
  drainTimeoutMs: true,
  source: true,
  logger: true,
  redisOptions: true,
})

/** Query parameters of a `redis://` URL; any other is a `ConfigurationError`. */
export const REDIS_URL_PARAMS: readonly string[] = ['keyPrefix', 'maxLen']

const DB_HINT =
  'use a database number from /0 to /15 (a server with the default "databases 16"; more if its ' +
  'redis.conf raises it), or no path for database 0'

/**
 * Checks the database path of a parsed Redis URL. ioredis would send `SELECT NaN` for `/abc`,
 * and the server's refusal would surface as an uncaught error instead of a configuration error.
 */
function checkDatabasePath(parsed: URL, url: string): void {
  const path = parsed.pathname
  if (path === '' || path === '/') return
  const digits = /^\/(\d{1,9})$/.exec(path)?.[1]
  if (digits === undefined) {
    throw new ConfigurationError(
      `url "${redactUrl(url)}" names database "${path.slice(1)}", which is not a database number: ${DB_HINT}`,
      { backend: 'redis', code: 'INVALID_DATABASE' },
    )
  }
}

// The URL without its query: the parameters are the backend's, and ioredis would otherwise read
// them as its own options.
function withoutQuery(parsed: URL): string {
  const u = new URL(parsed.href)
  u.search = ''
  return u.toString()
}

const KEY_PREFIX = {
  test: (v: string) => /^[^\s*?[\]{}]{0,100}$/.test(v),
  expected: 'up to 100 characters without spaces, glob characters or braces',
}

/** Resolves and validates options: option → URL parameter (keyPrefix, maxLen) → env var → default. */
export function resolveRedisOptions(
  options: RedisBackendOptions = {},
  env: Env = process.env,
): ResolvedRedisOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError('createRedisBackend expects an options object', { backend: 'redis' })
  }
  rejectUnknownOptions('redis backend option', options, REDIS_OPTION_NAMES, { backend: 'redis' })
  const client = options.client
  if (client !== undefined) {
    const c = client as unknown as { isCluster?: boolean; options?: { keyPrefix?: string } }
    if (c === null || typeof c !== 'object' || typeof (client as { call?: unknown }).call !== 'function') {
      throw optionError('redis', 'client', client, 'an ioredis Redis instance')
    }
    if (c.isCluster === true) throw clusterRefused()
    if (c.options?.keyPrefix) {
      throw new ConfigurationError(
        `client has the ioredis keyPrefix "${c.options.keyPrefix}": ioredis does not prefix every stream ` +
          'command consistently, so pass a client without keyPrefix and set the backend option keyPrefix instead',
        { backend: 'redis' },
      )
    }
  }
  const first = new OptionResolver('redis', options as Readonly<Record<string, unknown>>, env)
  const url = first.string('url', 'OMNIBUS_REDIS_URL', 'redis://127.0.0.1:6379')
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigurationError(
      `url "${redactUrl(url)}" is not a URL: use redis://host:port or rediss://host:port`,
      { backend: 'redis' },
    )
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    if (parsed.protocol === 'redis+sentinel:' || parsed.protocol === 'redis-sentinel:') {
      throw new ConfigurationError(
        'Sentinel URLs are not parsed: pass redisOptions: { sentinels: [...], name } or a ready ioredis client',
        { backend: 'redis' },
      )
    }
    throw new ConfigurationError(
      `url "${redactUrl(url)}" has scheme ${parsed.protocol}; use redis:// or rediss://`,
      { backend: 'redis' },
    )
  }
  rejectUnknownUrlParams(parsed, REDIS_URL_PARAMS, { backend: 'redis' })
  checkDatabasePath(parsed, url)
  const db = options.redisOptions?.db
  if (db !== undefined && (typeof db !== 'number' || !Number.isInteger(db) || db < 0)) {
    throw new ConfigurationError(`redisOptions.db must be an integer >= 0, got ${String(db)}: ${DB_HINT}`, {
      backend: 'redis',
      code: 'INVALID_DATABASE',
    })
  }
  const query = parsed.searchParams
  const maxLenParam = query.get('maxLen')
  if (options.maxLen === undefined && maxLenParam !== null && !/^\d+$/.test(maxLenParam)) {
    const e = optionError('redis', 'maxLen', maxLenParam, 'an integer >= 1')
    throw new ConfigurationError(`${e.message} (from the URL parameter maxLen of ${redactUrl(url)})`, {
      backend: 'redis',
      code: e.code,
    })
  }
  // URL parameters stand where explicit options are absent, before the environment.
  const r = new OptionResolver(
    'redis',
    {
      ...options,
      keyPrefix: options.keyPrefix ?? query.get('keyPrefix') ?? undefined,
      maxLen: options.maxLen ?? maxLenParam ?? undefined,
    },
    env,
  )
  let tls: ConnectionOptions | undefined
  if (options.tls !== undefined && options.tls !== false) {
    if (options.tls === true) tls = {}
    else if (typeof options.tls === 'object' && options.tls !== null) tls = options.tls
    else throw optionError('redis', 'tls', options.tls, 'true, false or tls.connect options')
  } else if (parsed.protocol === 'rediss:' && options.tls !== false) {
    tls = {}
  }
  // An explicit empty prefix is allowed (keys without one); an empty variable means unset.
  const keyPrefix =
    options.keyPrefix === '' ? '' : r.string('keyPrefix', 'OMNIBUS_REDIS_KEY_PREFIX', 'omnibus:', KEY_PREFIX)
  if (options.logger !== undefined) {
    const l = options.logger as unknown as Record<string, unknown>
    if (typeof l.warn !== 'function' || typeof l.error !== 'function') {
      throw optionError(
        'redis',
        'logger',
        options.logger,
        'an object with debug, info, warn and error methods',
      )
    }
  }
  if (
    options.redisOptions !== undefined &&
    (typeof options.redisOptions !== 'object' || options.redisOptions === null)
  ) {
    throw optionError('redis', 'redisOptions', options.redisOptions, 'an object of ioredis options')
  }
  return {
    url: parsed.search === '' ? url : withoutQuery(parsed),
    client,
    username: r.string('username', 'OMNIBUS_REDIS_USERNAME', undefined),
    password: secret(r, 'password', 'OMNIBUS_REDIS_PASSWORD'),
    tls,
    keyPrefix,
    maxLen: r.integer('maxLen', 'OMNIBUS_REDIS_MAX_LEN', undefined, { min: 1 }),
    visibilityTimeoutMs: r.integer('visibilityTimeoutMs', 'OMNIBUS_REDIS_VISIBILITY_TIMEOUT_MS', 30_000, {
      min: 100,
    }),
    batchSize: r.integer('batchSize', 'OMNIBUS_REDIS_BATCH_SIZE', 100, { min: 1 }),
    blockMs: r.integer('blockMs', 'OMNIBUS_REDIS_BLOCK_MS', 5_000, { min: 10 }),
    dedupeTtlMs: r.integer('dedupeTtlMs', 'OMNIBUS_REDIS_DEDUPE_TTL_MS', 86_400_000, { min: 1 }),
    maxPayloadBytes: r.integer('maxPayloadBytes', 'OMNIBUS_REDIS_MAX_PAYLOAD_BYTES', 1_048_576, {
      min: 1024,
    }),
    connectTimeoutMs: r.integer('connectTimeoutMs', 'OMNIBUS_REDIS_CONNECT_TIMEOUT_MS', 5_000, { min: 1 }),
    discoveryIntervalMs: r.integer('discoveryIntervalMs', 'OMNIBUS_REDIS_DISCOVERY_INTERVAL_MS', 2_000, {
      min: 10,
    }),
    drainTimeoutMs: r.integer('drainTimeoutMs', undefined, 10_000, { min: 0 }),
    source: r.string('source', 'OMNIBUS_SOURCE', undefined),
    logger: options.logger,
    redisOptions: options.redisOptions ?? {},
  }
}

/** A string option whose value is never shown in an error. */
function secret(r: OptionResolver, field: string, envVar: string): string | undefined {
  const v = r.raw(field, envVar)
  if (v === undefined || typeof v === 'string') return v
  throw optionError('redis', field, '***', 'a string')
}

/** The error for an ioredis Cluster instance. */
export function clusterRefused(): ConfigurationError {
  return new ConfigurationError(
    'Redis Cluster is not supported: one subscription reads many topic streams in one XREADGROUP, which ' +
      'Cluster refuses across hash slots (CROSSSLOT). Use a standalone or Sentinel-managed Redis',
    { backend: 'redis', code: 'CLUSTER_UNSUPPORTED' },
  )
}

/** Where the backend connects, for messages: host:port, never credentials. */
export function describeEndpoint(opts: ResolvedRedisOptions): string {
  if (opts.client !== undefined) {
    const o = (opts.client as unknown as { options?: { host?: string; port?: number } }).options
    return `${o?.host ?? '?'}:${o?.port ?? '?'}`
  }
  if (opts.redisOptions.sentinels !== undefined) return `sentinel master "${opts.redisOptions.name ?? '?'}"`
  const u = new URL(opts.url)
  return `${u.protocol}//${u.hostname}:${u.port || '6379'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`
}
