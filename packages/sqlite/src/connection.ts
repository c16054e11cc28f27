/**
 * The connection to the database file: opening it (pragmas, tables), the prepared statements, the
 * I/O thread (io-worker.ts), and retrying writes while another connection holds the write lock.
 * Publisher, consumers and retention share one {@link Connection} per backend instance.
 */
import type { Worker } from 'node:worker_threads'
import { ConfigurationError, type Logger, NotConnectedError } from '@omnibus/core'
import Database from 'better-sqlite3'
import { classifyError, type SqliteOperation } from './errors.ts'
import { type IoWorkerListeners, startIoWorker, stopIoWorker } from './io-worker.ts'
import type { ResolvedSqliteOptions } from './options.ts'
import { MIGRATE_1_TO_2_SQL, SCHEMA_SQL, SCHEMA_VERSION } from './schema.ts'

export const BACKEND = 'sqlite'
/** Pause between tries while another connection holds the write lock. */
export const BUSY_RETRY_MS = 1
/** Lock retries that only yield to the event loop (a writer's transaction lasts ~0.1 ms) before waiting 1 ms. */
export const FAST_BUSY_RETRIES = 8
const CHECKPOINT_INTERVAL_MS = 250

/** Counters of one backend instance (see `SqliteBackendStats`). */
export interface Counters {
  published: number
  publishTransactions: number
  deadLettered: number
  lockRetries: number
  claims: number
}

/** One backend instance's connection and what lives as long as it. */
export class Connection {
  readonly o: ResolvedSqliteOptions
  readonly logger: Logger
  /** The file as error messages name it. */
  readonly fileLabel: string
  readonly inMemory: boolean
  readonly path: string
  readonly counters: Counters = {
    published: 0,
    publishTransactions: 0,
    deadLettered: 0,
    lockRetries: 0,
    claims: 0,
  }
  db: Database.Database | undefined
  st: Statements = undefined as unknown as Statements
  state: 'closed' | 'open' | 'closing' = 'closed'
  ioWorker: Worker | undefined

  constructor(o: ResolvedSqliteOptions, logger: Logger) {
    this.o = o
    this.logger = logger
    // A ready connection decides for itself: its file, or a private in-memory database.
    this.path = o.database === undefined ? o.path : o.database.name
    this.inMemory = o.database === undefined ? o.path === ':memory:' : o.database.memory
    this.fileLabel = this.inMemory ? 'the in-memory database' : `database file "${this.path}"`
  }

  /** Whether publishes and subscribes are accepted (open, or draining for a disconnect). */
  get usable(): boolean {
    return this.db !== undefined && (this.state === 'open' || this.state === 'closing')
  }

  requireDb(action: string): Database.Database {
    if (this.db === undefined || !this.usable) throw new NotConnectedError(BACKEND, action)
    return this.db
  }

  /** Opens the file, creates the tables and prepares the statements. Synchronous (better-sqlite3). */
  open(): Database.Database {
    const o = this.o
    let d: Database.Database
    try {
      d = o.database ?? new Database(o.path, { timeout: o.busyTimeoutMs })
    } catch (error) {
      throw classifyError(error, 'connect', this.fileLabel)
    }
    try {
      d.pragma(`busy_timeout = ${o.busyTimeoutMs}`)
      if (!this.inMemory) {
        const mode = String(d.pragma('journal_mode = WAL', { simple: true })).toLowerCase()
        if (mode !== 'wal' && mode !== 'memory') {
          this.logger.warn('sqlite: WAL mode unavailable, concurrency across processes is reduced', { mode })
        }
      }
      d.pragma(`synchronous = ${o.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
      // Checkpoints (WAL → database file, with an fsync) would stall whichever commit crosses the
      // threshold for tens of ms; the I/O thread runs them instead (see io-worker.ts).
      if (!this.inMemory && o.ioThread) d.pragma('wal_autocheckpoint = 0')
      d.transaction(() => {
        d.exec(SCHEMA_SQL)
        const version = d.prepare("SELECT value FROM omnibus_meta WHERE key = 'schema_version'").pluck().get()
        if (version === undefined) {
          d.prepare("INSERT INTO omnibus_meta (key, value) VALUES ('schema_version', ?)").run(
            String(SCHEMA_VERSION),
          )
        } else if (Number(version) === 1) {
          // Another process may have migrated between this one's reads: the transaction is
          // immediate, so the column check and the change see one state.
          const columns = d.prepare('PRAGMA table_info(omnibus_events)').all() as { name: string }[]
          if (!columns.some((c) => c.name === 'deliver_at')) d.exec(MIGRATE_1_TO_2_SQL)
          d.prepare("UPDATE omnibus_meta SET value = ? WHERE key = 'schema_version'").run(
            String(SCHEMA_VERSION),
          )
        } else if (Number(version) > SCHEMA_VERSION) {
          throw new ConfigurationError(
            `${this.fileLabel} was written by a newer @omnibus/sqlite (schema ${String(version)}, this one knows ${SCHEMA_VERSION}): upgrade @omnibus/sqlite`,
            { backend: BACKEND },
          )
        }
      }).immediate()
      this.st = makeStatements(d)
    } catch (error) {
      if (o.database === undefined) d.close()
      throw classifyError(error, 'connect', this.fileLabel)
    }
    this.db = d
    return d
  }

  /** Starts the I/O thread (checkpoints, large publish batches); without one, SQLite checkpoints itself. */
  startIoThread(listeners: (worker: Worker) => IoWorkerListeners): void {
    const db = this.db
    if (this.inMemory || db === undefined || !this.o.ioThread) return
    try {
      let worker: Worker | undefined
      let heard: IoWorkerListeners | undefined
      // The worker's events arrive after it is created; its listeners are made for it then, once.
      const ear = () => {
        heard ??= listeners(worker as Worker)
        return heard
      }
      worker = startIoWorker(
        {
          file: db.name,
          busyTimeoutMs: this.o.busyTimeoutMs,
          synchronous: this.o.synchronous === 'full' ? 'FULL' : 'NORMAL',
          checkpointIntervalMs: CHECKPOINT_INTERVAL_MS,
        },
        {
          reply: (reply) => ear().reply(reply),
          error: (error) => ear().error(error),
          exit: (code) => ear().exit(code),
        },
      )
      this.ioWorker = worker
    } catch (error) {
      this.logger.warn('sqlite: no I/O thread; publishes and checkpoints run on this thread', {
        error: String(error),
      })
      db.pragma('wal_autocheckpoint = 1000')
    }
  }

  /** Forgets a failed I/O thread: checkpoints go back to SQLite. Returns whether it was the current one. */
  dropIoThread(worker: Worker): boolean {
    if (this.ioWorker !== worker) return false
    this.ioWorker = undefined
    if (this.db?.open) this.db.pragma('wal_autocheckpoint = 1000')
    return true
  }

  /** Stops the I/O thread and closes the file (a connection passed in stays open). */
  async close(): Promise<void> {
    const worker = this.ioWorker
    this.ioWorker = undefined
    if (worker !== undefined) await stopIoWorker(worker)
    const d = this.db
    this.db = undefined
    this.state = 'closed'
    if (d !== undefined && this.o.database === undefined && d.open) d.close()
  }

  /** Runs `fn` in a write transaction, retrying while another connection holds the lock. */
  tx<R>(fn: () => R, operation: SqliteOperation = 'consume'): Promise<R> {
    return this.retryBusy(operation, () => {
      const d = this.db
      if (d === undefined || !d.open) throw new NotConnectedError(BACKEND, operation)
      return d.transaction(fn).immediate()
    })
  }

  /**
   * Runs `fn`; while it fails because another connection holds the write lock, runs it again
   * (at once on the next turns of the event loop, then every millisecond) until `busyTimeoutMs`
   * has passed, then throws `DATABASE_LOCKED`. SQLite's own busy handler (left at 0 on this
   * connection after connect) would block the thread and back off up to 100 ms between tries,
   * which showed as tens of ms of latency with two processes.
   */
  async retryBusy<R>(operation: SqliteOperation, fn: () => R): Promise<R> {
    const deadline = Date.now() + this.o.busyTimeoutMs
    for (let attempt = 0; ; attempt++) {
      try {
        return fn()
      } catch (error) {
        if (!isBusy(error) || Date.now() >= deadline) throw classifyError(error, operation, this.fileLabel)
      }
      this.counters.lockRetries++
      await busyPause(attempt)
    }
  }
}

/** The statements every part of the backend runs, prepared once per connection. */
function makeStatements(d: Database.Database): Record<StatementName, Database.Statement> {
  return {
    insertEvent: d.prepare(
      'INSERT INTO omnibus_events (id, topic, pkey, time, body, deliver_at) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    dataVersion: d.prepare('PRAGMA data_version').pluck(),
    topSeq: d.prepare('SELECT coalesce(max(seq), 0) FROM omnibus_events').pluck(),
    upsertGroup: d.prepare(
      `INSERT INTO omnibus_groups (name, pattern, cursor, ephemeral, heartbeat) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name, pattern) DO UPDATE SET heartbeat = excluded.heartbeat RETURNING gid`,
    ),
    precheck: d.prepare(
      `SELECT (SELECT coalesce(max(seq), 0) FROM omnibus_events) > g.cursor AS fresh,
                EXISTS (SELECT 1 FROM omnibus_leases l WHERE l.gid = g.gid AND l.due <= ?) AS due,
                EXISTS (SELECT 1 FROM omnibus_delayed d WHERE d.gid = g.gid AND d.due <= ?) AS ripe
         FROM omnibus_groups g WHERE g.gid = ?`,
    ),
    countLeases: d.prepare('SELECT count(*) FROM omnibus_leases WHERE gid = ?').pluck(),
    cursor: d.prepare('SELECT cursor FROM omnibus_groups WHERE gid = ?').pluck(),
    setCursor: d.prepare('UPDATE omnibus_groups SET cursor = ?, heartbeat = ? WHERE gid = ?'),
    scan: d.prepare(
      'SELECT seq, id, topic, pkey, deliver_at FROM omnibus_events WHERE seq > ? ORDER BY seq LIMIT ?',
    ),
    insertDelayed: d.prepare(
      'INSERT OR IGNORE INTO omnibus_delayed (gid, due, seq, id, pkey) VALUES (?, ?, ?, ?, ?)',
    ),
    ripe: d.prepare(
      'SELECT due, seq, id, pkey FROM omnibus_delayed WHERE gid = ? AND due <= ? ORDER BY due, seq LIMIT ?',
    ),
    deleteDelayed: d.prepare('DELETE FROM omnibus_delayed WHERE gid = ? AND due = ? AND seq = ?'),
    nextDelayed: d.prepare('SELECT min(due) FROM omnibus_delayed WHERE gid = ?').pluck(),
    insertLease: d.prepare(
      'INSERT OR IGNORE INTO omnibus_leases (gid, seq, id, pkey, due) VALUES (?, ?, ?, ?, 0)',
    ),
    claimable: d.prepare(
      `SELECT l.seq AS seq, e.topic AS topic, l.pkey AS pkey, e.time AS time, e.body AS body,
                l.attempts AS attempts
         FROM omnibus_leases l JOIN omnibus_events e ON e.seq = l.seq
         WHERE l.gid = ? AND l.due <= ?
           AND (l.pkey IS NULL OR NOT EXISTS (
             SELECT 1 FROM omnibus_leases p WHERE p.gid = l.gid AND p.pkey = l.pkey AND p.seq < l.seq))
         ORDER BY l.seq LIMIT ?`,
    ),
    lease: d.prepare(
      'UPDATE omnibus_leases SET owner = ?, due = ?, attempts = attempts + 1 WHERE gid = ? AND seq = ?',
    ),
    deleteLease: d.prepare('DELETE FROM omnibus_leases WHERE gid = ? AND seq = ?'),
    redeliver: d.prepare(
      'UPDATE omnibus_leases SET owner = NULL, due = ?, attempts = ? WHERE gid = ? AND seq = ? AND owner = ?',
    ),
    release: d.prepare(
      'UPDATE omnibus_leases SET owner = NULL, due = 0, attempts = max(0, attempts - ?) WHERE gid = ? AND seq = ? AND owner = ?',
    ),
    releaseOwner: d.prepare('UPDATE omnibus_leases SET owner = NULL, due = 0 WHERE owner = ?'),
    extend: d.prepare('UPDATE omnibus_leases SET due = ? WHERE owner = ?'),
    nextDue: d.prepare('SELECT min(due) FROM omnibus_leases WHERE gid = ? AND due > ?').pluck(),
    processedHas: d.prepare('SELECT 1 FROM omnibus_processed WHERE gid = ? AND id = ?').pluck(),
    markProcessed: d.prepare('INSERT OR IGNORE INTO omnibus_processed (gid, id, at) VALUES (?, ?, ?)'),
    claimHolder: d.prepare('SELECT owner, until FROM omnibus_claims WHERE gid = ? AND id = ?'),
    takeClaim: d.prepare(
      `INSERT INTO omnibus_claims (gid, id, owner, until) VALUES (?, ?, ?, ?)
         ON CONFLICT (gid, id) DO UPDATE SET owner = excluded.owner, until = excluded.until`,
    ),
    dropClaim: d.prepare('DELETE FROM omnibus_claims WHERE gid = ? AND id = ? AND owner = ?'),
    heartbeat: d.prepare('UPDATE omnibus_groups SET heartbeat = ? WHERE gid = ?'),
    dropGroupLeases: d.prepare('DELETE FROM omnibus_leases WHERE gid = ?'),
    dropGroupProcessed: d.prepare('DELETE FROM omnibus_processed WHERE gid = ?'),
    dropGroupClaims: d.prepare('DELETE FROM omnibus_claims WHERE gid = ?'),
    dropGroupDelayed: d.prepare('DELETE FROM omnibus_delayed WHERE gid = ?'),
    dropGroup: d.prepare('DELETE FROM omnibus_groups WHERE gid = ?'),
    staleEphemeral: d.prepare('SELECT gid FROM omnibus_groups WHERE ephemeral = 1 AND heartbeat < ?').pluck(),
    getMeta: d.prepare('SELECT value FROM omnibus_meta WHERE key = ?').pluck(),
    setMeta: d.prepare(
      'INSERT INTO omnibus_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    // New rows take max(seq) + 1 and cursors must never see a seq twice, so an expired newest row
    // is not deleted but emptied into a tombstone whose empty topic matches no pattern.
    // A delayed event's age counts from its delivery time: retention never removes one before then.
    deleteOld: d.prepare(
      `DELETE FROM omnibus_events WHERE time < ? AND coalesce(deliver_at, 0) < ?
         AND seq < (SELECT max(seq) FROM omnibus_events)`,
    ),
    tombstoneNewest: d.prepare(
      `UPDATE omnibus_events SET topic = '', body = '', pkey = NULL, deliver_at = NULL
       WHERE seq = (SELECT max(seq) FROM omnibus_events) AND time < ? AND coalesce(deliver_at, 0) < ?
         AND topic != ''`,
    ),
    deleteOldProcessed: d.prepare('DELETE FROM omnibus_processed WHERE at < ?'),
    deleteExpiredClaims: d.prepare('DELETE FROM omnibus_claims WHERE until < ?'),
    deleteOrphanLeases: d.prepare(
      'DELETE FROM omnibus_leases WHERE NOT EXISTS (SELECT 1 FROM omnibus_events e WHERE e.seq = omnibus_leases.seq)',
    ),
    deleteOrphanDelayed: d.prepare(
      'DELETE FROM omnibus_delayed WHERE NOT EXISTS (SELECT 1 FROM omnibus_events e WHERE e.seq = omnibus_delayed.seq)',
    ),
  }
}

/** Names of the prepared statements. */
type StatementName =
  | 'insertEvent'
  | 'dataVersion'
  | 'topSeq'
  | 'upsertGroup'
  | 'precheck'
  | 'countLeases'
  | 'cursor'
  | 'setCursor'
  | 'scan'
  | 'insertDelayed'
  | 'ripe'
  | 'deleteDelayed'
  | 'nextDelayed'
  | 'insertLease'
  | 'claimable'
  | 'lease'
  | 'deleteLease'
  | 'redeliver'
  | 'release'
  | 'releaseOwner'
  | 'extend'
  | 'nextDue'
  | 'processedHas'
  | 'markProcessed'
  | 'claimHolder'
  | 'takeClaim'
  | 'dropClaim'
  | 'heartbeat'
  | 'dropGroupLeases'
  | 'dropGroupProcessed'
  | 'dropGroupClaims'
  | 'dropGroupDelayed'
  | 'dropGroup'
  | 'staleEphemeral'
  | 'getMeta'
  | 'setMeta'
  | 'deleteOld'
  | 'tombstoneNewest'
  | 'deleteOldProcessed'
  | 'deleteExpiredClaims'
  | 'deleteOrphanLeases'
  | 'deleteOrphanDelayed'

/** The prepared statements of one connection. */
export type Statements = Record<StatementName, Database.Statement>

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The wait before lock retry number `attempt` (0-based): a turn of the event loop, then 1 ms. */
function busyPause(attempt: number): Promise<void> {
  if (attempt < FAST_BUSY_RETRIES) return new Promise((resolve) => setImmediate(resolve))
  return sleep(BUSY_RETRY_MS)
}

/** The write lock is held by another connection (SQLITE_BUSY and its extended codes). */
export function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}
