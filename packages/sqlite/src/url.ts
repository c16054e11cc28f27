/**
 * `sqlite://` URLs for the core registry (`createBackend('sqlite://./events.db')`).
 */
import { ConfigurationError } from '@omnibus/core'
import { rejectUnknownUrlParams } from '@omnibus/core/backend'
import { createSqliteBackend, type SqliteBackend } from './backend.ts'
import type { SqliteBackendOptions } from './options.ts'

/** Query parameters of a `sqlite:` URL; any other is a `ConfigurationError`. */
export const SQLITE_URL_PARAMS: readonly string[] = [
  'busyTimeoutMs',
  'pollIntervalMs',
  'visibilityTimeoutMs',
  'maxPayloadBytes',
  'drainTimeoutMs',
  'synchronous',
  'source',
  'ioThread',
  'publishOnIoThread',
]

/**
 * The database path of a `sqlite:` URL:
 * - `sqlite://./events.db` → `./events.db` (relative to the working directory);
 * - `sqlite:///abs/path.db` → `/abs/path.db`;
 * - `sqlite://:memory:`, `sqlite://memory` or `sqlite:///:memory:` → `:memory:` (private to the instance).
 */
export function sqlitePathFromUrl(url: URL): string {
  if (url.protocol !== 'sqlite:') {
    throw new ConfigurationError(`expected a sqlite:// URL, got ${url.protocol}//`, { backend: 'sqlite' })
  }
  const host = decodeURIComponent(url.host)
  const pathname = decodeURIComponent(url.pathname)
  if (
    host === ':memory:' ||
    (host === 'memory' && (pathname === '' || pathname === '/')) ||
    pathname === '/:memory:'
  ) {
    return ':memory:'
  }
  const path = host === '' ? pathname : `${host}${pathname}`
  if (path === '' || path === '/' || path.endsWith('/')) {
    throw new ConfigurationError(
      `sqlite URL "${url.href}" names no database file: use sqlite://./events.db or sqlite:///abs/path.db`,
      { backend: 'sqlite' },
    )
  }
  return path
}

/**
 * Creates an SQLite backend from a `sqlite:` URL (used by `createBackend`). Query parameters
 * (`?busyTimeoutMs=2000&synchronous=full`) set options; `options` wins over them. Unknown
 * parameters are a `ConfigurationError`.
 */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): SqliteBackend {
  const fromUrl: Record<string, unknown> = { path: sqlitePathFromUrl(url) }
  rejectUnknownUrlParams(url, SQLITE_URL_PARAMS, { backend: 'sqlite' })
  // Values stay strings: the option resolver reads numbers and booleans from strings, with the
  // same rules and errors as for environment variables.
  for (const [key, value] of url.searchParams) fromUrl[key] = value
  return createSqliteBackend({ ...fromUrl, ...options } as SqliteBackendOptions)
}
