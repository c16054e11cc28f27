/**
 * Options of the Redis backend, resolved once at construction: explicit option, then the
 * environment variable, then the default. Every bad value is a `ConfigurationError` naming the
 * field and the value (passwords are never echoed).
 */
import type { ConnectionOptions } from 'node:tls'
import { ConfigurationError, type Logger, redactUrl } from '@omnibus/core'
import { optionNames, rejectUnknownOptions, rejectUnknownUrlParams } from '@omnibus/core/backend'
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

function intOption(
  field: string,
  envName: string | undefined,
  value: unknown,
  env: Env,
  fallback: number,
  min: number,
): number {
  let v: unknown = value
  let from = field
  if (v === undefined && envName !== undefined && env[envName] !== undefined && env[envName] !== '') {
    from = `${field} (from ${envName})`
    v = Number(env[envName])
    if (!Number.isFinite(v as number)) {
      throw new ConfigurationError(`${from} must be an integer >= ${min}, got "${env[envName]}"`, {
        backend: 'redis',
      })
    }
  }
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigurationError(`${from} must be an integer >= ${min}, got ${String(v)}`, {
      backend: 'redis',
    })
  }
  return v
}

function strOption(field: string, envName: string | undefined, value: unknown, env: Env): string | undefined {
  if (value !== undefined) {
    if (typeof value !== 'string') {
      throw new ConfigurationError(`${field} must be a string, got ${typeof value}`, { backend: 'redis' })
    }
    return value
  }
  if (envName === undefined) return undefined
  const e = env[envName]
  return e === undefined || e === '' ? undefined : e
}

/** Resolves and validates options: option → env var → default. */
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
      throw new ConfigurationError('client must be an ioredis Redis instance', { backend: 'redis' })
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
  const url = strOption('url', 'OMNIBUS_REDIS_URL', options.url, env) ?? 'redis://127.0.0.1:6379'
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
  let tls: ConnectionOptions | undefined
  if (options.tls !== undefined && options.tls !== false) {
    if (options.tls === true) tls = {}
    else if (typeof options.tls === 'object' && options.tls !== null) tls = options.tls
    else
      throw new ConfigurationError(`tls must be a boolean or tls.connect options, got ${typeof options.tls}`)
  } else if (parsed.protocol === 'rediss:' && options.tls !== false) {
    tls = {}
  }
  const keyPrefix =
    strOption(
      'keyPrefix',
      'OMNIBUS_REDIS_KEY_PREFIX',
      options.keyPrefix ?? query.get('keyPrefix') ?? undefined,
      env,
    ) ?? 'omnibus:'
  if (!/^[^\s*?[\]{}]{0,100}$/.test(keyPrefix)) {
    throw new ConfigurationError(
      `keyPrefix "${keyPrefix}" is invalid: use up to 100 characters without spaces, glob characters or braces`,
      { backend: 'redis' },
    )
  }
  const maxLenParam = query.get('maxLen')
  if (options.maxLen === undefined && maxLenParam !== null && !/^\d+$/.test(maxLenParam)) {
    throw new ConfigurationError(
      `URL parameter maxLen must be an integer >= 1, got "${maxLenParam}" in ${redactUrl(url)}`,
      { backend: 'redis' },
    )
  }
  const maxLenOption = options.maxLen ?? (maxLenParam === null ? undefined : Number(maxLenParam))
  const maxLen =
    maxLenOption === undefined && !env.OMNIBUS_REDIS_MAX_LEN
      ? undefined
      : intOption('maxLen', 'OMNIBUS_REDIS_MAX_LEN', maxLenOption, env, 0, 1)
  if (options.logger !== undefined) {
    const l = options.logger as unknown as Record<string, unknown>
    if (typeof l.warn !== 'function' || typeof l.error !== 'function') {
      throw new ConfigurationError('logger must have debug, info, warn and error methods', {
        backend: 'redis',
      })
    }
  }
  if (
    options.redisOptions !== undefined &&
    (typeof options.redisOptions !== 'object' || options.redisOptions === null)
  ) {
    throw new ConfigurationError('redisOptions must be an object of ioredis options', { backend: 'redis' })
  }
  return {
    url: parsed.search === '' ? url : withoutQuery(parsed),
    client,
    username: strOption('username', 'OMNIBUS_REDIS_USERNAME', options.username, env),
    password: strOption('password', 'OMNIBUS_REDIS_PASSWORD', options.password, env),
    tls,
    keyPrefix,
    maxLen,
    visibilityTimeoutMs: intOption(
      'visibilityTimeoutMs',
      'OMNIBUS_REDIS_VISIBILITY_TIMEOUT_MS',
      options.visibilityTimeoutMs,
      env,
      30_000,
      100,
    ),
    batchSize: intOption('batchSize', 'OMNIBUS_REDIS_BATCH_SIZE', options.batchSize, env, 100, 1),
    blockMs: intOption('blockMs', 'OMNIBUS_REDIS_BLOCK_MS', options.blockMs, env, 5_000, 10),
    dedupeTtlMs: intOption(
      'dedupeTtlMs',
      'OMNIBUS_REDIS_DEDUPE_TTL_MS',
      options.dedupeTtlMs,
      env,
      86_400_000,
      1,
    ),
    maxPayloadBytes: intOption(
      'maxPayloadBytes',
      'OMNIBUS_REDIS_MAX_PAYLOAD_BYTES',
      options.maxPayloadBytes,
      env,
      1_048_576,
      1024,
    ),
    connectTimeoutMs: intOption(
      'connectTimeoutMs',
      'OMNIBUS_REDIS_CONNECT_TIMEOUT_MS',
      options.connectTimeoutMs,
      env,
      5_000,
      1,
    ),
    discoveryIntervalMs: intOption(
      'discoveryIntervalMs',
      'OMNIBUS_REDIS_DISCOVERY_INTERVAL_MS',
      options.discoveryIntervalMs,
      env,
      2_000,
      10,
    ),
    drainTimeoutMs: intOption('drainTimeoutMs', undefined, options.drainTimeoutMs, env, 10_000, 0),
    source: strOption('source', 'OMNIBUS_SOURCE', options.source, env),
    logger: options.logger,
    redisOptions: options.redisOptions ?? {},
  }
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
