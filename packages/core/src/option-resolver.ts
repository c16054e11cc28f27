/**
 * One option resolver for every backend: explicit option → environment variable → default,
 * validated once at construction, with one spelling of booleans and one error format:
 *
 *   redis backend option blockMs must be an integer >= 1, got "soon" (from the environment variable OMNIBUS_REDIS_BLOCK_MS)
 *
 * Strings are accepted for numbers and booleans wherever they come from, because URL query
 * parameters and environment variables can only carry strings.
 */
import { ConfigurationError } from './errors.ts'

/** The spellings of `true` (compared case-insensitively, trimmed). */
export const TRUE_WORDS: readonly string[] = ['true', '1', 'yes', 'on']
/** The spellings of `false` (compared case-insensitively, trimmed). */
export const FALSE_WORDS: readonly string[] = ['false', '0', 'no', 'off']

/** Where a value came from. */
interface Picked {
  readonly value: unknown
  readonly fromEnv: boolean
}

/** What a string option must look like. */
export interface StringCheck {
  /** Whether the value is allowed (a `RegExp` fits). */
  test(value: string): boolean
  /** What is allowed, for the error: `1-200 letters, digits, '_', '-' or '.'`. */
  readonly expected: string
}

/** Integer and number bounds. */
export interface NumberBounds {
  /** Smallest value allowed. */
  readonly min?: number
  /** Largest value allowed. */
  readonly max?: number
}

/**
 * Resolves the options of one backend. Each getter names the field and its environment variable
 * (or `undefined` when there is none) and returns the explicit option, else the environment
 * variable (empty counts as unset), else the default; a bad value throws a `ConfigurationError`
 * naming the field, the bad value and, when it came from there, the environment variable.
 *
 * ```ts
 * const r = new OptionResolver('redis', options)
 * const blockMs = r.integer('blockMs', 'OMNIBUS_REDIS_BLOCK_MS', 1_000, { min: 1 })
 * ```
 */
export class OptionResolver {
  readonly #backend: string
  readonly #options: Readonly<Record<string, unknown>>
  readonly #env: Readonly<Record<string, string | undefined>>

  /**
   * @param backend the backend's name, as in `<backend> backend option <field> ...`
   * @param options the options object the user passed (after unknown names were rejected)
   * @param env the environment. @default process.env
   */
  constructor(
    backend: string,
    options: Readonly<Record<string, unknown>>,
    env: Readonly<Record<string, string | undefined>> = process.env,
  ) {
    this.#backend = backend
    this.#options = options
    this.#env = env
  }

  /** The raw value (explicit, then environment), or `undefined` when neither sets it. */
  raw(field: string, envVar: string | undefined): unknown {
    return this.#pick(field, envVar)?.value
  }

  /**
   * A non-empty string; `check` (a pattern, or anything with `test`) narrows what is allowed and
   * `check.expected` describes it in the error.
   */
  string(field: string, envVar: string | undefined, fallback: string, check?: StringCheck): string
  string(
    field: string,
    envVar: string | undefined,
    fallback: undefined,
    check?: StringCheck,
  ): string | undefined
  string(field: string, envVar: string | undefined, fallback: string | undefined, check?: StringCheck) {
    const p = this.#pick(field, envVar)
    if (p === undefined) return fallback
    if (typeof p.value !== 'string' || p.value === '')
      this.fail(field, envVar, p, check?.expected ?? 'a non-empty string')
    if (check !== undefined && !check.test(p.value)) this.fail(field, envVar, p, check.expected)
    return p.value
  }

  /** A safe integer within `bounds` (`min` defaults to 0). */
  integer(field: string, envVar: string | undefined, fallback: number, bounds?: NumberBounds): number
  integer(
    field: string,
    envVar: string | undefined,
    fallback: undefined,
    bounds?: NumberBounds,
  ): number | undefined
  integer(
    field: string,
    envVar: string | undefined,
    fallback: number | undefined,
    bounds: NumberBounds = {},
  ) {
    const p = this.#pick(field, envVar)
    if (p === undefined) return fallback
    const n = typeof p.value === 'string' && /^\s*-?\d+\s*$/.test(p.value) ? Number(p.value) : p.value
    const min = bounds.min ?? 0
    if (
      typeof n !== 'number' ||
      !Number.isSafeInteger(n) ||
      n < min ||
      (bounds.max !== undefined && n > bounds.max)
    ) {
      this.fail(field, envVar, p, `an integer ${rangeText(min, bounds.max)}`)
    }
    return n
  }

  /** A finite number within `bounds` (`min` defaults to 0). */
  number(field: string, envVar: string | undefined, fallback: number, bounds?: NumberBounds): number
  number(
    field: string,
    envVar: string | undefined,
    fallback: undefined,
    bounds?: NumberBounds,
  ): number | undefined
  number(field: string, envVar: string | undefined, fallback: number | undefined, bounds: NumberBounds = {}) {
    const p = this.#pick(field, envVar)
    if (p === undefined) return fallback
    const n = typeof p.value === 'string' && p.value.trim() !== '' ? Number(p.value) : p.value
    const min = bounds.min ?? 0
    if (
      typeof n !== 'number' ||
      !Number.isFinite(n) ||
      n < min ||
      (bounds.max !== undefined && n > bounds.max)
    ) {
      this.fail(field, envVar, p, `a number ${rangeText(min, bounds.max)}`)
    }
    return n
  }

  /** A boolean: `true`/`false`, or one of {@link TRUE_WORDS} / {@link FALSE_WORDS} as a string. */
  boolean(field: string, envVar: string | undefined, fallback: boolean): boolean
  boolean(field: string, envVar: string | undefined, fallback: undefined): boolean | undefined
  boolean(field: string, envVar: string | undefined, fallback: boolean | undefined) {
    const p = this.#pick(field, envVar)
    if (p === undefined) return fallback
    const b = parseBoolean(p.value)
    if (b === undefined)
      this.fail(field, envVar, p, `true or false (${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')})`)
    return b
  }

  /** One of `choices`. */
  oneOf<C extends string>(field: string, envVar: string | undefined, choices: readonly C[], fallback: C): C
  oneOf<C extends string>(
    field: string,
    envVar: string | undefined,
    choices: readonly C[],
    fallback: undefined,
  ): C | undefined
  oneOf<C extends string>(
    field: string,
    envVar: string | undefined,
    choices: readonly C[],
    fallback: C | undefined,
  ) {
    const p = this.#pick(field, envVar)
    if (p === undefined) return fallback
    if (typeof p.value !== 'string' || !choices.includes(p.value as C)) {
      this.fail(field, envVar, p, `one of ${choices.map((c) => `'${c}'`).join(', ')}`)
    }
    return p.value
  }

  /** Throws the one `ConfigurationError` format for a bad `field`. */
  fail(field: string, envVar: string | undefined, picked: Picked, expected: string): never {
    throw optionError(this.#backend, field, picked.value, expected, picked.fromEnv ? envVar : undefined)
  }

  #pick(field: string, envVar: string | undefined): Picked | undefined {
    const explicit = this.#options[field]
    if (explicit !== undefined) return { value: explicit, fromEnv: false }
    if (envVar === undefined) return undefined
    const raw = this.#env[envVar]
    if (raw !== undefined && raw !== '') return { value: raw, fromEnv: true }
    return undefined
  }
}

function rangeText(min: number, max: number | undefined): string {
  return max === undefined ? `>= ${min}` : `between ${min} and ${max}`
}

/** `true`, `false`, one of the words of {@link TRUE_WORDS} / {@link FALSE_WORDS}, else `undefined`. */
export function parseBoolean(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value
  if (typeof value !== 'string') return undefined
  const v = value.trim().toLowerCase()
  if (TRUE_WORDS.includes(v)) return true
  if (FALSE_WORDS.includes(v)) return false
  return undefined
}

/**
 * The one error of a bad option value:
 * `<backend> backend option <field> must be <expected>, got <value>[ (from the environment variable <ENV>)]`.
 * Secrets are the caller's to keep out: pass a redacted value for them.
 */
export function optionError(
  backend: string,
  field: string,
  value: unknown,
  expected: string,
  envVar?: string,
): ConfigurationError {
  const shown = typeof value === 'string' ? `"${value}"` : describeValue(value)
  return new ConfigurationError(
    `${backend} backend option ${field} must be ${expected}, got ${shown}` +
      (envVar === undefined ? '' : ` (from the environment variable ${envVar})`),
    { backend, code: 'INVALID_OPTION' },
  )
}

function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'function') return 'a function'
  return String(value)
}
