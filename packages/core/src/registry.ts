/**
 * The backend registry: `createBackend('sqlite://./events.db')` picks the backend by URL scheme
 * and imports its package lazily, so the core never depends on a broker client. A missing package
 * is a `ConfigurationError` that says what to install.
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { ConfigurationError } from './errors.ts'
import type { EventBackend } from './protocol.ts'

/** Creates a backend from a parsed URL and free-form options. */
export type BackendLoader = (url: URL, options: Readonly<Record<string, unknown>>) => Promise<EventBackend>

/** What a backend package exports for the registry. */
export interface BackendModule {
  backendFromUrl(url: URL, options?: Readonly<Record<string, unknown>>): EventBackend
}

const loaders = new Map<string, BackendLoader>()

/** Package of each built-in scheme. */
export const BUILTIN_SCHEMES: Readonly<Record<string, string>> = {
  memory: '@omnibus/memory',
  sqlite: '@omnibus/sqlite',
  redis: '@omnibus/redis',
  rediss: '@omnibus/redis',
  kafka: '@omnibus/kafka',
  amqp: '@omnibus/rabbitmq',
  amqps: '@omnibus/rabbitmq',
  sqs: '@omnibus/sqs',
}

function normaliseScheme(scheme: string): string {
  const s = scheme.toLowerCase().replace(/:$/, '')
  if (!/^[a-z][a-z0-9+.-]*$/.test(s)) {
    throw new ConfigurationError(`"${scheme}" is not a URL scheme (expected letters such as "redis")`)
  }
  return s
}

/** Registers (or replaces) the loader of a URL scheme, e.g. for a third-party backend. */
export function registerBackend(scheme: string, loader: BackendLoader): void {
  if (typeof loader !== 'function') throw new ConfigurationError('registerBackend needs a loader function')
  loaders.set(normaliseScheme(scheme), loader)
}

/** Schemes that `createBackend` accepts: the built-ins and every registered one. */
export function registeredSchemes(): string[] {
  return [...new Set([...Object.keys(BUILTIN_SCHEMES), ...loaders.keys()])].sort()
}

function isModuleNotFound(error: unknown, pkg: string): boolean {
  const e = error as { code?: string; message?: string }
  return (
    (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(pkg)
  )
}

/**
 * Imports a backend package the way `createBackend` does for built-in schemes: from the core's
 * location, then from the application's working directory. A package that is not installed is a
 * `ConfigurationError` saying what to install; loaders of third-party schemes use it to give
 * their users the same hint.
 */
export function importBackendPackage(pkg: string): Promise<BackendModule> {
  return importPackage(pkg)
}

// The package was found but the file its `exports` point to was not (typically a workspace or
// git checkout that was never built): "not installed" would send the user the wrong way.
function entryMissing(error: unknown, pkg: string): ConfigurationError | undefined {
  const message = (error as { message?: unknown })?.message
  if (typeof message !== 'string' || !/^Cannot find module '/.test(message)) return undefined
  const file = /^Cannot find module '([^']+)'/.exec(message)?.[1]
  if (file === undefined || !file.replaceAll('\\', '/').includes(`/node_modules/${pkg}/`)) return undefined
  return new ConfigurationError(
    `the backend package ${pkg} is installed but its entry file ${file} is missing: build the package ` +
      `(or reinstall it with "npm install ${pkg}")`,
    { cause: error },
  )
}

async function importPackage(pkg: string): Promise<BackendModule> {
  try {
    return (await import(pkg)) as BackendModule
  } catch (error) {
    if (!isModuleNotFound(error, pkg)) throw error
    const broken = entryMissing(error, pkg)
    if (broken !== undefined) throw broken
  }
  // Under strict installs (pnpm) the core cannot see the application's packages: resolve from
  // the application's working directory instead.
  try {
    const require = createRequire(path.join(process.cwd(), 'package.json'))
    return (await import(pathToFileURL(require.resolve(pkg)).href)) as BackendModule
  } catch (error) {
    if (isModuleNotFound(error, pkg)) {
      const broken = entryMissing(error, pkg)
      if (broken !== undefined) throw broken
      throw new ConfigurationError(`the backend package ${pkg} is not installed: run "npm install ${pkg}"`, {
        cause: error,
      })
    }
    throw error
  }
}

/** Parses a backend URL; a bare path such as `./events.db` is not accepted (say `sqlite://./events.db`). */
export function parseBackendUrl(url: string | URL): URL {
  if (url instanceof URL) return url
  if (typeof url !== 'string' || url.length === 0) {
    throw new ConfigurationError(
      'a backend URL is required, e.g. "sqlite://./omnibus.db" or "redis://localhost:6379"',
    )
  }
  try {
    return new URL(url)
  } catch (cause) {
    // SQLite's in-memory name makes `sqlite://:memory:` an invalid WHATWG URL (empty host with a
    // port ":memory:"); percent-encode it into the host, where the sqlite backend decodes it.
    const memory = /^([a-z][a-z0-9+.-]*:\/\/):memory:([/?#].*)?$/i.exec(url)
    if (memory !== null) return new URL(`${memory[1]}%3Amemory%3A${memory[2] ?? ''}`)
    throw new ConfigurationError(
      `"${redactUrl(url)}" is not a backend URL: use scheme://..., e.g. sqlite://./omnibus.db, redis://localhost:6379`,
      { cause },
    )
  }
}

// Query parameters whose values are secrets (`?password=`, `?sasl_password=`, `?token=`, ...).
const SECRET_PARAM = /pass|secret|token|credential|signature|api.?key|access.?key/i

/** The URL with any password, and the value of any secret-looking query parameter, replaced by `***`, for messages. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(String(url))
    if (u.password) u.password = '***'
    for (const key of new Set(u.searchParams.keys())) {
      if (SECRET_PARAM.test(key)) u.searchParams.set(key, '***')
    }
    return u.toString()
  } catch {
    return String(url).replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
  }
}

/**
 * Creates (but does not connect) a backend from its URL. Registered loaders win over built-ins.
 * Throws `ConfigurationError` for an unknown scheme or a missing backend package.
 */
export async function createBackend(
  url: string | URL,
  options: Readonly<Record<string, unknown>> = {},
): Promise<EventBackend> {
  const parsed = parseBackendUrl(url)
  const scheme = normaliseScheme(parsed.protocol)
  const loader = loaders.get(scheme)
  if (loader !== undefined) return loader(parsed, options)
  const pkg = BUILTIN_SCHEMES[scheme]
  if (pkg === undefined) {
    throw new ConfigurationError(
      `no backend for "${scheme}://": known schemes are ${registeredSchemes().join(', ')}; ` +
        'register others with registerBackend(scheme, loader)',
    )
  }
  const mod = await importPackage(pkg)
  if (typeof mod.backendFromUrl !== 'function') {
    throw new ConfigurationError(`${pkg} does not export backendFromUrl(url, options)`)
  }
  return mod.backendFromUrl(parsed, options)
}
