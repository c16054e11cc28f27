/**
 * Options of the memory backend, resolved once at construction: explicit option, then environment
 * variable, then default. Every bad value is a `ConfigurationError` naming the field and the value.
 */
import { ConfigurationError, consoleLogger, type Logger } from '@omnibus/core'
import { rejectUnknownOptions } from '@omnibus/core/backend'

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions {
  /**
   * Name of a shared in-process bus. Every backend created with the same name in one process
   * shares its subscriptions and consumer groups, so several instances can act as separate
   * consumers. Without a name the backend gets a private bus that nothing else can reach.
   * @default undefined (a private bus) — env `OMNIBUS_MEMORY_NAME`
   */
  readonly name?: string
  /**
   * Events one subscription (or one consumer group) may hold waiting for its handler. When the
   * queue is full, `publish` waits until there is room (backpressure) instead of dropping.
   * Publishes made from inside a handler never wait, so handlers cannot deadlock on each other.
   * @default 10000 — env `OMNIBUS_MEMORY_QUEUE_CAPACITY`
   */
  readonly queueCapacity?: number
  /**
   * Largest encoded event accepted, in bytes, as the CloudEvents codec would write it: the same
   * limit and error (`PayloadTooLargeError`) as the SQLite and Redis backends by default, so code
   * that works here does not fail there. Checked with a cheap upper bound; only events whose bound
   * reaches the limit are encoded to measure them.
   * @default 1048576 (1 MiB) — env `OMNIBUS_MEMORY_MAX_PAYLOAD_BYTES`
   */
  readonly maxPayloadBytes?: number
  /**
   * Check every published payload as a persistent backend would: data JSON cannot carry (BigInt,
   * cycles, functions, Map, NaN, ...) is a `SerializationError` naming the path, and an event over
   * `maxPayloadBytes` a `PayloadTooLargeError`. Cheap (one walk over the data, no encoding). `false`
   * checks nothing (and `capabilities.maxPayloadBytes` is then undefined): for trusted hot paths.
   * @default true — env `OMNIBUS_MEMORY_VALIDATE_PAYLOADS`
   */
  readonly validatePayloads?: boolean
  /**
   * How long `disconnect()` (and `unsubscribe()`) wait for in-flight handlers when the caller
   * does not say; then their signals are aborted.
   * @default 10000 — env `OMNIBUS_MEMORY_DRAIN_TIMEOUT_MS`
   */
  readonly drainTimeoutMs?: number
  /**
   * How long an exactly-once subscription remembers a processed event id.
   * @default 86400000 (24 h) — env `OMNIBUS_MEMORY_DEDUPE_TTL_MS`
   */
  readonly dedupeTtlMs?: number
  /**
   * Most processed ids remembered per exactly-once group; the oldest are forgotten first.
   * @default 100000 — env `OMNIBUS_MEMORY_DEDUPE_MAX_ENTRIES`
   */
  readonly dedupeMaxEntries?: number
  /**
   * `source` of events published without one.
   * @default `omnibus:<pid>` — env `OMNIBUS_MEMORY_SOURCE`
   */
  readonly source?: string
  /**
   * Where handler failures, dropped events and dead letters without a subscriber are reported.
   * @default warnings and errors on the console
   */
  readonly logger?: Logger
}

/** Options after resolution. */
export interface ResolvedMemoryOptions {
  readonly name: string | undefined
  readonly queueCapacity: number
  readonly maxPayloadBytes: number
  readonly validatePayloads: boolean
  readonly drainTimeoutMs: number
  readonly dedupeTtlMs: number
  readonly dedupeMaxEntries: number
  readonly source: string | undefined
  readonly logger: Logger
}

const ENV = {
  name: 'OMNIBUS_MEMORY_NAME',
  queueCapacity: 'OMNIBUS_MEMORY_QUEUE_CAPACITY',
  maxPayloadBytes: 'OMNIBUS_MEMORY_MAX_PAYLOAD_BYTES',
  validatePayloads: 'OMNIBUS_MEMORY_VALIDATE_PAYLOADS',
  drainTimeoutMs: 'OMNIBUS_MEMORY_DRAIN_TIMEOUT_MS',
  dedupeTtlMs: 'OMNIBUS_MEMORY_DEDUPE_TTL_MS',
  dedupeMaxEntries: 'OMNIBUS_MEMORY_DEDUPE_MAX_ENTRIES',
  source: 'OMNIBUS_MEMORY_SOURCE',
} as const

/** Option names of {@link MemoryBackendOptions}; any other key is a `ConfigurationError`. */
export const MEMORY_OPTION_NAMES: readonly string[] = [...Object.keys(ENV), 'logger']

/**
 * Query parameters of a `memory://` URL: the options a string can carry. The bus name is the
 * URL's host, not a parameter.
 */
export const MEMORY_URL_PARAMS: readonly string[] = Object.keys(ENV).filter((k) => k !== 'name')

type Field = keyof typeof ENV

function fail(field: Field, value: unknown, fromEnv: boolean, expected: string): never {
  const shown = typeof value === 'string' ? `"${value}"` : String(value)
  throw new ConfigurationError(
    `memory backend option ${field} must be ${expected}, got ${shown}` +
      (fromEnv ? ` (from the environment variable ${ENV[field]})` : ''),
    { backend: 'memory' },
  )
}

// Explicit option first, then the environment; `undefined` when neither says anything.
function pick(
  options: Readonly<Record<string, unknown>>,
  field: Field,
  env: NodeJS.ProcessEnv,
): { value: unknown; fromEnv: boolean } | undefined {
  if (options[field] !== undefined) return { value: options[field], fromEnv: false }
  const raw = env[ENV[field]]
  if (raw !== undefined && raw !== '') return { value: raw, fromEnv: true }
  return undefined
}

function integer(
  options: Readonly<Record<string, unknown>>,
  field: Field,
  env: NodeJS.ProcessEnv,
  min: number,
): number | undefined {
  const p = pick(options, field, env)
  if (p === undefined) return undefined
  const n = typeof p.value === 'string' && /^\s*\d+\s*$/.test(p.value) ? Number(p.value) : p.value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    fail(field, p.value, p.fromEnv, `an integer >= ${min}`)
  }
  return n
}

function boolean(
  options: Readonly<Record<string, unknown>>,
  field: Field,
  env: NodeJS.ProcessEnv,
): boolean | undefined {
  const p = pick(options, field, env)
  if (p === undefined) return undefined
  if (typeof p.value === 'boolean') return p.value
  if (typeof p.value === 'string') {
    const v = p.value.trim().toLowerCase()
    if (v === 'true' || v === '1' || v === 'yes') return true
    if (v === 'false' || v === '0' || v === 'no') return false
  }
  return fail(field, p.value, p.fromEnv, 'true or false')
}

function text(
  options: Readonly<Record<string, unknown>>,
  field: Field,
  env: NodeJS.ProcessEnv,
  pattern: RegExp,
  expected: string,
): string | undefined {
  const p = pick(options, field, env)
  if (p === undefined) return undefined
  if (typeof p.value !== 'string' || !pattern.test(p.value)) fail(field, p.value, p.fromEnv, expected)
  return p.value
}

function isLogger(value: unknown): value is Logger {
  const l = value as Record<string, unknown> | null
  return (
    typeof l === 'object' &&
    l !== null &&
    typeof l.debug === 'function' &&
    typeof l.info === 'function' &&
    typeof l.warn === 'function' &&
    typeof l.error === 'function'
  )
}

/**
 * Resolves options (option → environment variable → default) and validates them once.
 * Unknown option names are rejected, so a typo does not silently fall back to a default.
 */
export function resolveMemoryOptions(
  options: Readonly<Record<string, unknown>> = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedMemoryOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError(`memory backend options must be an object, got ${String(options)}`)
  }
  rejectUnknownOptions('memory backend option', options, MEMORY_OPTION_NAMES, { backend: 'memory' })
  if (options.logger !== undefined && !isLogger(options.logger)) {
    throw new ConfigurationError(
      'memory backend option logger must have debug, info, warn and error methods',
      { backend: 'memory' },
    )
  }
  return {
    name: text(options, 'name', env, /^[A-Za-z0-9_.-]{1,200}$/, "1-200 letters, digits, '_', '-' or '.'"),
    queueCapacity: integer(options, 'queueCapacity', env, 1) ?? 10_000,
    maxPayloadBytes: integer(options, 'maxPayloadBytes', env, 1) ?? 1_048_576,
    validatePayloads: boolean(options, 'validatePayloads', env) ?? true,
    drainTimeoutMs: integer(options, 'drainTimeoutMs', env, 0) ?? 10_000,
    dedupeTtlMs: integer(options, 'dedupeTtlMs', env, 1) ?? 24 * 3600_000,
    dedupeMaxEntries: integer(options, 'dedupeMaxEntries', env, 1) ?? 100_000,
    source: text(options, 'source', env, /^.{1,1000}$/s, 'a non-empty string'),
    logger: (options.logger as Logger | undefined) ?? consoleLogger,
  }
}
