/**
 * Options of the SQLite backend, resolved by core's `OptionResolver`: explicit option →
 * environment variable → default, validated once at construction, in core's one error format.
 */
import { ConfigurationError, type Logger } from '@omnibus/core'
import { OptionResolver, rejectUnknownOptions } from '@omnibus/core/backend'
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
   * @default true (env `OMNIBUS_SQLITE_IO_THREAD`: `false`, `0`, `no` or `off` to disable)
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

/** Resolves and validates options; throws `ConfigurationError` naming the field and the value. */
export function resolveOptions(
  options: SqliteBackendOptions = {},
  env: Env = process.env,
): ResolvedSqliteOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError(
      'createSqliteBackend expects an options object, e.g. { path: "./events.db" }',
      { backend: 'sqlite' },
    )
  }
  rejectUnknownOptions('sqlite backend option', options, OPTION_NAMES, { backend: 'sqlite' })
  const r = new OptionResolver('sqlite', options as Readonly<Record<string, unknown>>, env)
  const database = options.database
  if (
    database !== undefined &&
    (database === null || typeof (database as { prepare?: unknown }).prepare !== 'function')
  ) {
    r.fail('database', undefined, { value: database, fromEnv: false }, 'a better-sqlite3 Database instance')
  }
  const ioThread = r.boolean('ioThread', 'OMNIBUS_SQLITE_IO_THREAD', true)
  const publishOnIoThread = r.boolean('publishOnIoThread', 'OMNIBUS_SQLITE_PUBLISH_ON_IO_THREAD', false)
  if (publishOnIoThread && !ioThread) {
    throw new ConfigurationError('sqlite option publishOnIoThread needs ioThread: true (or leave it false)', {
      backend: 'sqlite',
    })
  }
  return {
    path: r.string('path', 'OMNIBUS_SQLITE_PATH', './omnibus.db', FILE_PATH),
    database,
    busyTimeoutMs: r.integer('busyTimeoutMs', 'OMNIBUS_SQLITE_BUSY_TIMEOUT_MS', 5000, { max: 3_600_000 }),
    pollIntervalMs: r.integer('pollIntervalMs', 'OMNIBUS_SQLITE_POLL_INTERVAL_MS', 2, {
      min: 1,
      max: 60_000,
    }),
    visibilityTimeoutMs: r.integer('visibilityTimeoutMs', 'OMNIBUS_SQLITE_VISIBILITY_TIMEOUT_MS', 30_000, {
      min: 30,
      max: 86_400_000,
    }),
    maxPayloadBytes: r.integer('maxPayloadBytes', 'OMNIBUS_SQLITE_MAX_PAYLOAD_BYTES', 1_048_576, {
      min: 1024,
      max: MAX_PAYLOAD_CEILING,
    }),
    synchronous: r.oneOf('synchronous', 'OMNIBUS_SQLITE_SYNCHRONOUS', ['normal', 'full'] as const, 'normal'),
    drainTimeoutMs: r.integer('drainTimeoutMs', 'OMNIBUS_SQLITE_DRAIN_TIMEOUT_MS', 5000, { max: 3_600_000 }),
    source: r.string('source', 'OMNIBUS_SOURCE', undefined),
    ioThread,
    publishOnIoThread,
    logger: options.logger,
  }
}

/** A database path: any non-empty string (`:memory:` included). */
const FILE_PATH = { test: (v: string) => v.length > 0, expected: 'a non-empty file path' }
