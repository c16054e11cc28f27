/**
 * Maps better-sqlite3 errors onto the Omnibus error taxonomy, so callers can tell a busy file
 * (retry later) from a file that is not a database (fix the path) without parsing messages.
 */
import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'

const BACKEND = 'sqlite'

/** What the backend was doing when the native error happened; it picks the error class. */
export type SqliteOperation = 'connect' | 'publish' | 'subscribe' | 'consume' | 'cleanup'

/** Native SQLite result codes (extended codes start with the primary one, e.g. `SQLITE_BUSY_SNAPSHOT`). */
function primaryCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return undefined
  const m = /^SQLITE_[A-Z]+/.exec(code)
  return m === null ? code : m[0]
}

/**
 * Turns a native error into an {@link OmnibusError}. `file` is the database path, named in the
 * message so the reader knows which file to look at. Omnibus errors pass through unchanged.
 *
 * - `SQLITE_BUSY` / `SQLITE_LOCKED`: another connection held the lock past `busyTimeoutMs`;
 *   `ConnectionError` with code `DATABASE_LOCKED`, retryable.
 * - `SQLITE_NOTADB` / `SQLITE_CORRUPT`: the file is not an SQLite database (or is damaged);
 *   `ConfigurationError` with code `NOT_A_DATABASE` / `DATABASE_CORRUPT`, not retryable.
 * - `SQLITE_CANTOPEN` / `SQLITE_PERM` / `SQLITE_READONLY`: `ConfigurationError`, not retryable.
 * - `SQLITE_FULL` / `SQLITE_IOERR`: disk trouble; retryable once space or the device recovers.
 * - anything else: `PublishError` / `SubscriptionError` / `ConnectionError` by operation.
 */
export function classifyError(
  error: unknown,
  operation: SqliteOperation,
  file = 'the database',
): OmnibusError {
  if (error instanceof OmnibusError) return error
  const code = primaryCode(error)
  const native = error instanceof Error ? error.message : String(error)
  const base = { backend: BACKEND, cause: error }
  switch (code) {
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return new ConnectionError(
        `${operation} failed: ${file} is locked by another connection and stayed locked past the busy timeout; ` +
          'retry later, raise busyTimeoutMs, or find the process holding a long write transaction',
        { ...base, code: 'DATABASE_LOCKED', retryable: true },
      )
    case 'SQLITE_NOTADB':
      return new ConfigurationError(
        `${file} is not an SQLite database (${native}): point the sqlite backend at an Omnibus database ` +
          'file or at a path that does not exist yet',
        { ...base, code: 'NOT_A_DATABASE' },
      )
    case 'SQLITE_CORRUPT':
      return new ConfigurationError(
        `${file} is damaged (${native}): restore it from a backup or run "sqlite3 <file> .recover"`,
        { ...base, code: 'DATABASE_CORRUPT' },
      )
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_PERM':
    case 'SQLITE_READONLY':
    case 'SQLITE_AUTH':
      return new ConfigurationError(
        `cannot ${operation === 'connect' ? 'open' : 'write'} ${file} (${native}): check that the directory ` +
          'exists and that this process may read and write the file and its -wal/-shm companions',
        { ...base, code: 'DATABASE_UNAVAILABLE' },
      )
    case 'SQLITE_FULL':
    case 'SQLITE_IOERR':
      return new ConnectionError(
        `${operation} failed: disk error on ${file} (${native}): free space or check the device`,
        {
          ...base,
          code: 'DATABASE_IO',
          retryable: true,
        },
      )
    default:
      break
  }
  const message = `${operation} failed on ${file}: ${native}`
  if (operation === 'publish') return new PublishError(message, { ...base, retryable: false })
  if (operation === 'subscribe' || operation === 'consume') return new SubscriptionError(message, base)
  if (error instanceof TypeError && /database connection is not open/.test(native)) {
    return new ConnectionError(`${operation} failed: ${file} was closed`, { ...base, retryable: false })
  }
  return new ConnectionError(message, { ...base, retryable: false })
}
