/**
 * One rule for every options object and backend URL: a name Omnibus does not know is a
 * `ConfigurationError` naming it, listing the known names and suggesting the closest one. A typo
 * (`{ concurency: 4 }`, `?keyPrefx=app:`) never falls back to a default in silence.
 */
import { ConfigurationError } from './errors.ts'
import { redactUrl } from './registry.ts'

/** Where an unknown name was found, for the message; `backend` is copied onto the error. */
export interface UnknownNameContext {
  /** Backend the options or URL belong to, when there is one. */
  readonly backend?: string
}

/**
 * The names of an options type, from a record that must list every key of `T` and nothing else
 * (the compiler checks both), so the list of known names cannot drift from the type.
 */
export function optionNames<T extends object>(
  keys: { readonly [K in keyof Required<T>]: true },
): readonly string[] {
  return Object.freeze(Object.keys(keys))
}

// Levenshtein distance with an early exit: names are short, and only close names matter.
function distance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    let best = i
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      const v = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost)
      row.push(v)
      if (v < best) best = v
    }
    if (best > limit) return limit + 1
    prev = row
  }
  return prev[b.length] as number
}

/**
 * The known name closest to `name` (case-insensitive edit distance of at most a third of its
 * length, and at least 2), or `undefined` when none is close enough to be a likely typo.
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase()
  const limit = Math.max(2, Math.floor(name.length / 3))
  let best: string | undefined
  let bestDistance = limit + 1
  for (const candidate of known) {
    const d = distance(lower, candidate.toLowerCase(), limit)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

function suggestion(name: string, known: readonly string[]): string {
  const near = closestName(name, known)
  return near === undefined ? '' : ` (did you mean "${near}"?)`
}

/**
 * Throws a {@link ConfigurationError} when `options` has an own key that is not in `known`:
 * `unknown <what> "concurency" (did you mean "concurrency"?): the known <what>s are ...`.
 * `what` names the kind of key, e.g. `subscribe option` or `redis backend option`.
 * `undefined` and `null` pass (callers apply their own defaults); anything else that is not an
 * object is rejected.
 */
export function rejectUnknownOptions(
  what: string,
  options: unknown,
  known: readonly string[],
  context: UnknownNameContext = {},
): void {
  if (options === undefined || options === null) return
  const errorOptions = context.backend === undefined ? {} : { backend: context.backend }
  if (typeof options !== 'object') {
    throw new ConfigurationError(`${what}s must be an object, got ${typeof options}`, errorOptions)
  }
  for (const key in options) {
    if (!Object.hasOwn(options, key) || known.includes(key)) continue
    throw new ConfigurationError(
      `unknown ${what} "${key}"${suggestion(key, known)}: the known ${what}s are ${known.join(', ')}`,
      { code: 'UNKNOWN_OPTION', ...errorOptions },
    )
  }
}

/**
 * Throws a {@link ConfigurationError} when `url` has a query parameter that is not in `known`.
 * The message names the parameter, lists the known ones and shows the URL with its secrets
 * redacted: `unknown redis URL parameter "keyPrefx" (did you mean "keyPrefix"?) in
 * "redis://:***@host:6379/0?keyPrefx=a:": the redis backend reads the URL parameters keyPrefix, maxLen`.
 */
export function rejectUnknownUrlParams(
  url: URL,
  known: readonly string[],
  context: UnknownNameContext & { readonly backend: string },
): void {
  for (const key of url.searchParams.keys()) {
    if (known.includes(key)) continue
    const reads =
      known.length === 0 ? 'reads no URL parameters' : `reads the URL parameters ${known.join(', ')}`
    throw new ConfigurationError(
      `unknown ${context.backend} URL parameter "${key}"${suggestion(key, known)} in "${redactUrl(url)}": ` +
        `the ${context.backend} backend ${reads}`,
      { code: 'UNKNOWN_URL_PARAMETER', backend: context.backend },
    )
  }
}
