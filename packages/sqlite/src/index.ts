/**
 * @omnibus/sqlite — a durable backend on one SQLite file, shared by every process on the host.
 * Topics are a column of an append-only events table; a consumer group is a row with a cursor
 * over that table plus leases (with a visibility timeout) on the events it holds, so a killed
 * process's events go to another member; broadcast subscribers are private groups starting at
 * `latest`. Delivery decisions are core's consumer kernel's; consumer.ts is its adapter (claim,
 * ack = delete the lease, redeliver = a later `due`, the lease's claim count = the delivery count).
 * Exactly-once claims are rows of the same file; the processed id is written in the ack's transaction.
 * Guarantees: at-most-once, at-least-once, exactly-once (effectively once, per group and id).
 */
export {
  type CleanupOptions,
  type CleanupResult,
  createSqliteBackend,
  type SqliteBackend,
  type SqliteBackendStats,
} from './backend.ts'
export { classifyError, type SqliteOperation } from './errors.ts'
export { resolveOptions, type SqliteBackendOptions } from './options.ts'
export { SCHEMA_SQL, SCHEMA_VERSION } from './schema.ts'
export { backendFromUrl, sqlitePathFromUrl } from './url.ts'
