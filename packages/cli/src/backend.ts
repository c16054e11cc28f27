/**
 * Choosing and connecting the backend: `--backend URL`, else `OMNIBUS_BACKEND`, else an embedded
 * SQLite file. Backend packages are imported from the CLI's own dependencies, so the command works
 * from any directory. Failures become {@link CliError}s with the exit code scripts can rely on.
 */
import {
  ConfigurationError,
  createBackend,
  type EventBackend,
  OmnibusError,
  parseBackendUrl,
  redactUrl,
  registerBackend,
} from '@omnibus/core'

/** Backend used when neither `--backend` nor `OMNIBUS_BACKEND` is given. */
export const DEFAULT_BACKEND_URL = 'sqlite://./omnibus.db'

/** Exit codes of the `omnibus` command. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** The command ran and failed (unhealthy backend, failed publish, demo tasks lost). */
  failure: 1,
  /** Bad usage: unknown option, bad URL, bad JSON. Nothing was sent. */
  usage: 2,
  /** The backend could not be reached. */
  unreachable: 3,
  /** Stopped by SIGINT/SIGTERM. */
  interrupted: 130,
} as const

/** An error that ends the command with `exitCode` and a one-line message. */
export class CliError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode: number, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

const PACKAGES: Readonly<Record<string, string>> = {
  memory: '@omnibus/memory',
  sqlite: '@omnibus/sqlite',
  redis: '@omnibus/redis',
  rediss: '@omnibus/redis',
  kafka: '@omnibus/kafka',
  amqp: '@omnibus/rabbitmq',
  amqps: '@omnibus/rabbitmq',
  sqs: '@omnibus/sqs',
}

let registered = false

function registerCliBackends(): void {
  if (registered) return
  registered = true
  for (const [scheme, pkg] of Object.entries(PACKAGES)) {
    registerBackend(scheme, async (url, options) => {
      let mod: { backendFromUrl?: (url: URL, options?: Readonly<Record<string, unknown>>) => EventBackend }
      try {
        // A variable specifier: resolved at run time against the CLI's own dependencies.
        const specifier: string = pkg
        mod = await import(specifier)
      } catch (cause) {
        throw new ConfigurationError(`the ${pkg} package cannot be loaded: ${(cause as Error).message}`, {
          cause,
        })
      }
      if (typeof mod.backendFromUrl !== 'function') {
        throw new ConfigurationError(`${pkg} does not export backendFromUrl(url)`)
      }
      return mod.backendFromUrl(url, options)
    })
  }
}

/** The backend URL in effect: the flag, else `OMNIBUS_BACKEND`, else the embedded default. */
export function backendUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag
  const fromEnv = env.OMNIBUS_BACKEND
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  return DEFAULT_BACKEND_URL
}

/** Creates the backend for `url`; a bad URL or unknown scheme is a usage error. */
export async function makeBackend(url: string): Promise<EventBackend> {
  registerCliBackends()
  try {
    parseBackendUrl(url)
    return await createBackend(url)
  } catch (error) {
    throw new CliError(`bad backend URL: ${describe(error)}`, EXIT.usage, { cause: error })
  }
}

/** Connects within `timeoutMs`; failure is "unreachable" (exit 3) with the redacted URL. */
export async function connectBackend(url: string, timeoutMs = 10_000): Promise<EventBackend> {
  const backend = await makeBackend(url)
  await connectWithin(backend, url, timeoutMs)
  return backend
}

/**
 * Error codes of a backend that was reached but whose store is broken (a damaged SQLite file):
 * the command is right and failed (exit 1), unlike a configuration mistake (exit 2).
 */
const BROKEN_STORE_CODES: ReadonlySet<string> = new Set(['DATABASE_CORRUPT'])

/**
 * Connects a backend made by {@link makeBackend} within `timeoutMs`. Throws a {@link CliError}:
 * exit 3 when the broker does not answer, 2 for a configuration mistake, 1 for a broken store.
 */
export async function connectWithin(backend: EventBackend, url: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      backend.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${timeoutMs} ms (is the broker running?)`)),
          timeoutMs,
        )
      }),
    ])
  } catch (error) {
    void backend.disconnect({ drainTimeoutMs: 0 }).catch(() => undefined)
    if (error instanceof OmnibusError && BROKEN_STORE_CODES.has(error.code)) {
      throw new CliError(describe(error), EXIT.failure, { cause: error })
    }
    if (error instanceof ConfigurationError) {
      throw new CliError(`bad backend configuration: ${describe(error)}`, EXIT.usage, { cause: error })
    }
    throw new CliError(`cannot reach ${redactUrl(url)}: ${describe(error)}`, EXIT.unreachable, {
      cause: error,
    })
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Refuses (exit 2) a backend that only reaches its own process for a command that can only see
 * what other processes did: this process is the only one on that bus, and it is empty.
 */
export function requireCrossProcess(backend: EventBackend, url: string, why: string): void {
  if (backend.capabilities.crossProcess) return
  throw new CliError(
    `${why}, and the ${backend.name} backend (${redactUrl(url)}) only reaches its own process, where ` +
      'nothing else runs: use sqlite://, redis://, kafka://, amqp:// or sqs://',
    EXIT.usage,
  )
}

/** A one-line description of an error for the terminal. */
export function describe(error: unknown): string {
  if (error instanceof OmnibusError || error instanceof Error) return error.message
  return String(error)
}
