/**
 * Options of the SQLite backend: explicit option → environment variable → default, validated
 * once at construction with messages that name the field and the bad value.
 */
import { ConfigurationError, type Logger } from '@omnibus/core'
import { rejectUnknownOptions } from '@omnibus/core/backend'
import type BetterSqlite3 from 'better-sqlite3'

/** Options of {@link createSqliteBackend}. */
export interface SqliteBackendOptions {
  /**
   * Database file. `':memory:'` is a private in-memory database of this backend instance only
   * (not shared with other instances or processes; not persistent).
   * @default './omnibus.db' (env `OMNIBUS_SQLITE_PATH`)
   */
  readonly path?: string
  /**
   * A ready better-sqlite3 connection to use instead of opening `path`. The backend sets its
   * pragmas and creates its tables on it, and does not close it on `disconnect`.
   */
  readonly database?: BetterSqlite3.Database
  /**
   * How long a statement waits for another connection's lock before failing with a retryable
   * `ConnectionError` (code `DATABASE_LOCKED`).
   * @default 5000 (env `OMNIBUS_SQLITE_BUSY_TIMEOUT_MS`)
   */
  readonly busyTimeoutMs?: number
  /**
   * Interval of the `PRAGMA data_version` check that detects commits by other connections
   * (other processes). Commits by this instance wake its subscribers at once.
   * @default 2 (env `OMNIBUS_SQLITE_POLL_INTERVAL_MS`)
   */
  readonly pollIntervalMs?: number
  /**
   * Lease of a delivered event when the subscription does not set `visibilityTimeoutMs`. A live
   * consumer extends its leases every third of it; a dead one's events go to another member when it ends.
   * @default 30000 (env `OMNIBUS_SQLITE_VISIBILITY_TIMEOUT_MS`)
   */
  readonly visibilityTimeoutMs?: number
  /**
   * Largest encoded event accepted by `publish`, in bytes.
   * @default 1048576 (env `OMNIBUS_SQLITE_MAX_PAYLOAD_BYTES`)
   */
  readonly maxPayloadBytes?: number
  /**
   * SQLite `synchronous` level. `'normal'` (WAL): a resolved publish survives a crash of the
   * process; `'full'`: it also survives a power loss, at the cost of one fsync per commit.
   * @default 'normal' (env `OMNIBUS_SQLITE_SYNCHRONOUS`)
   */
  readonly synchronous?: 'normal' | 'full'
  /**
   * How long `disconnect()` waits for in-flight handlers when the call does not say.
   * @default 5000 (env `OMNIBUS_SQLITE_DRAIN_TIMEOUT_MS`)
   */
  readonly drainTimeoutMs?: number
  /**
   * Producer identity for events published without `source`.
   * @default `omnibus:<pid>` (env `OMNIBUS_SOURCE`)
   */
  readonly source?: string
  /**
   * Run WAL checkpoints on a worker thread with its own connection, which keeps their fsync off
   * the commit paths of publishes and deliveries. `false`: SQLite's automatic checkpoints.
   * @default true (env `OMNIBUS_SQLITE_IO_THREAD`, `0`/`false` to disable)
   */
  readonly ioThread?: boolean
  /**
   * Also commit large publish batches (64+ events) on the I/O thread, so encoding the next
   * events overlaps with inserting the previous ones. Faster with a spare CPU core, slower on a
   * saturated machine (see the benchmarks in the README). Needs `ioThread`.
   * @default false (env `OMNIBUS_SQLITE_PUBLISH_ON_IO_THREAD`)
   */
  readonly publishOnIoThread?: boolean
  /** Logger for consumer-side problems (dead letters of corrupt rows, lock retries). @default silent */
  readonly logger?: Logger
}

/** Options with every field resolved. */
export interface ResolvedSqliteOptions {
  readonly path: string
  readonly database: BetterSqlite3.Database | undefined
  readonly busyTimeoutMs: number
  readonly pollIntervalMs: number
  readonly visibilityTimeoutMs: number
  readonly maxPayloadBytes: number
  readonly synchronous: 'normal' | 'full'
  readonly drainTimeoutMs: number
  readonly source: string | undefined
  readonly ioThread: boolean
  readonly publishOnIoThread: boolean
  readonly logger: Logger | undefined
}

/** Every option name, to reject misspelt ones instead of ignoring them. */
export const OPTION_NAMES: readonly (keyof SqliteBackendOptions)[] = [
  'path',
  'database',
  'busyTimeoutMs',
  'pollIntervalMs',
  'visibilityTimeoutMs',
  'maxPayloadBytes',
  'synchronous',
  'drainTimeoutMs',
  'source',
  'ioThread',
  'publishOnIoThread',
  'logger',
]

/** The hard ceiling of `maxPayloadBytes`: SQLite's default maximum string length is 1 GB. */
export const MAX_PAYLOAD_CEILING = 256 * 1024 * 1024

type Env = Readonly<Record<string, string | undefined>>

function intOption(
  field: string,
  envName: string,
  value: unknown,
  env: Env,
  fallback: number,
  min: number,
  max: number,
): number {
  let raw: unknown = value
  let from = field
  if (raw === undefined && env[envName] !== undefined && env[envName] !== '') {
    raw = Number(env[envName])
    from = `${envName} (${field})`
  }
  if (raw === undefined) return fallback
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < min || raw > max) {
    const shown = from === field ? String(value) : JSON.stringify(env[envName])
    throw new ConfigurationError(
      `sqlite option ${from} must be an integer from ${min} to ${max}, got ${shown}`,
      {
        backend: 'sqlite',
      },
    )
  }
  return raw
}

function boolOption(field: string, envName: string, value: unknown, env: Env, fallback: boolean): boolean {
  if (value !== undefined) {
    if (typeof value !== 'boolean') {
      throw new ConfigurationError(`sqlite option ${field} must be a boolean, got ${String(value)}`, {
        backend: 'sqlite',
      })
    }
    return value
  }
  const raw = env[envName]
  if (raw === undefined || raw === '') return fallback
  const v = raw.toLowerCase()
  if (v === '1' || v === 'true') return true
  if (v === '0' || v === 'false') return false
  throw new ConfigurationError(
    `sqlite option ${envName} (${field}) must be true/false or 1/0, got ${JSON.stringify(raw)}`,
    { backend: 'sqlite' },
  )
}

/** Resolves and validates options; throws `ConfigurationError` naming the field and the value. */
export function resolveOptions(
  options: SqliteBackendOptions = {},
  env: Env = process.env,
): ResolvedSqliteOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError(
      'createSqliteBackend expects an options object, e.g. { path: "./events.db" }',
      {
        backend: 'sqlite',
      },
    )
  }
  rejectUnknownOptions('sqlite backend option', options, OPTION_NAMES, { backend: 'sqlite' })
  const path = options.path ?? env.OMNIBUS_SQLITE_PATH ?? './omnibus.db'
  if (typeof path !== 'string' || path.length === 0) {
    throw new ConfigurationError(`sqlite option path must be a non-empty file path, got ${String(path)}`, {
      backend: 'sqlite',
    })
  }
  const database = options.database
  if (
    database !== undefined &&
    (database === null || typeof (database as { prepare?: unknown }).prepare !== 'function')
  ) {
    throw new ConfigurationError('sqlite option database must be a better-sqlite3 Database instance', {
      backend: 'sqlite',
    })
  }
  const synchronous = options.synchronous ?? env.OMNIBUS_SQLITE_SYNCHRONOUS ?? 'normal'
  if (synchronous !== 'normal' && synchronous !== 'full') {
    throw new ConfigurationError(
      `sqlite option synchronous must be 'normal' or 'full', got ${String(synchronous)}`,
      {
        backend: 'sqlite',
      },
    )
  }
  const source = options.source ?? env.OMNIBUS_SOURCE
  const ioThread = boolOption('ioThread', 'OMNIBUS_SQLITE_IO_THREAD', options.ioThread, env, true)
  const publishOnIoThread = boolOption(
    'publishOnIoThread',
    'OMNIBUS_SQLITE_PUBLISH_ON_IO_THREAD',
    options.publishOnIoThread,
    env,
    false,
  )
  if (publishOnIoThread && !ioThread) {
    throw new ConfigurationError('sqlite option publishOnIoThread needs ioThread: true (or leave it false)', {
      backend: 'sqlite',
    })
  }
  return {
    path,
    database,
    busyTimeoutMs: intOption(
      'busyTimeoutMs',
      'OMNIBUS_SQLITE_BUSY_TIMEOUT_MS',
      options.busyTimeoutMs,
      env,
      5000,
      0,
      3_600_000,
    ),
    pollIntervalMs: intOption(
      'pollIntervalMs',
      'OMNIBUS_SQLITE_POLL_INTERVAL_MS',
      options.pollIntervalMs,
      env,
      2,
      1,
      60_000,
    ),
    visibilityTimeoutMs: intOption(
      'visibilityTimeoutMs',
      'OMNIBUS_SQLITE_VISIBILITY_TIMEOUT_MS',
      options.visibilityTimeoutMs,
      env,
      30_000,
      30,
      86_400_000,
    ),
    maxPayloadBytes: intOption(
      'maxPayloadBytes',
      'OMNIBUS_SQLITE_MAX_PAYLOAD_BYTES',
      options.maxPayloadBytes,
      env,
      1_048_576,
      1024,
      MAX_PAYLOAD_CEILING,
    ),
    synchronous,
    drainTimeoutMs: intOption(
      'drainTimeoutMs',
      'OMNIBUS_SQLITE_DRAIN_TIMEOUT_MS',
      options.drainTimeoutMs,
      env,
      5000,
      0,
      3_600_000,
    ),
    source,
    ioThread,
    publishOnIoThread,
    logger: options.logger,
  }
}
