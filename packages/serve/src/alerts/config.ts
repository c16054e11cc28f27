/**
 * Reading and checking alert rules and channels, whether they come from code or from a JSON/YAML
 * file: one validation, so a typo in a file and a typo in code get the same message, naming the
 * rule and the field.
 */
import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { ConfigurationError, DEFAULT_DEAD_LETTER_TOPIC, validatePattern, validateTopic } from '@omnibus/core'
import { closestName } from '@omnibus/core/backend'
import { parse as parseYaml } from 'yaml'
import type { AlertChannelSpec, AlertConfig, AlertRule, AlertRuleKind, AlertSeverity } from './types.ts'

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g

/**
 * Milliseconds of a {@link Duration}: a non-negative number is taken as milliseconds; a string is
 * one or more `<number><unit>` parts (`ms`, `s`, `m`, `h`, `d`), e.g. `"90s"` or `"1h30m"`.
 * Returns undefined for anything else.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  if (typeof value !== 'string') return undefined
  const text = value.trim()
  if (!DURATION.test(text)) return undefined
  let total = 0
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) {
    total += Number(amount) * (UNITS[unit as string] as number)
  }
  return total
}

/** Writes a duration back the way a user would: `90s`, `5m`, `1h30m`, `250ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  let rest = Math.round(ms / 1000)
  const parts: string[] = []
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  return parts.join('')
}

/** Fields every rule shares, resolved. */
interface ResolvedBase {
  readonly name: string
  readonly severity: AlertSeverity
  readonly forMs: number
  readonly cooldownMs: number
  readonly message: string | undefined
  readonly channels: readonly string[] | undefined
}

/** A rule with defaults applied and durations in milliseconds. */
export type ResolvedRule = ResolvedBase &
  (
    | {
        readonly kind: 'error-rate'
        readonly measure: 'ratio' | 'per-second'
        readonly threshold: number
        readonly windowMs: number
        readonly topics: string
        readonly minEvents: number
      }
    | {
        readonly kind: 'latency'
        readonly source: 'tool' | 'agent'
        readonly percentile: 'p50' | 'p95' | 'p99'
        readonly threshold: number
        readonly names: readonly string[] | undefined
      }
    | {
        readonly kind: 'cost'
        readonly budget: number
        readonly period: 'hour' | 'day'
        readonly by: 'model' | 'agent' | undefined
        readonly model: string | undefined
        readonly agent: string | undefined
      }
    | {
        readonly kind: 'dead-letters'
        readonly threshold: number
        readonly windowMs: number
        readonly topic: string
      }
    | {
        readonly kind: 'agent-silent'
        readonly afterMs: number
        readonly agents: readonly string[] | undefined
      }
    | {
        readonly kind: 'consumer-lag'
        readonly threshold: number
        readonly group: string | undefined
        readonly topic: string | undefined
        readonly staleMs: number
      }
  )

const KINDS: readonly AlertRuleKind[] = [
  'error-rate',
  'latency',
  'cost',
  'dead-letters',
  'agent-silent',
  'consumer-lag',
]
const BASE_FIELDS = ['name', 'kind', 'severity', 'for', 'cooldown', 'message', 'channels']
const KIND_FIELDS: Readonly<Record<AlertRuleKind, readonly string[]>> = {
  'error-rate': ['measure', 'threshold', 'window', 'topics', 'minEvents'],
  latency: ['source', 'percentile', 'threshold', 'names'],
  cost: ['budget', 'period', 'by', 'model', 'agent'],
  'dead-letters': ['threshold', 'window', 'topic'],
  'agent-silent': ['after', 'agents'],
  'consumer-lag': ['threshold', 'group', 'topic', 'stale'],
}
const DEFAULT_COOLDOWN_MS = 5 * 60_000
const DEFAULT_WINDOW_MS = 5 * 60_000

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') {
    return String(value)
  }
  if (Array.isArray(value)) return 'a list'
  return `a ${typeof value}`
}

function unknownField(where: string, key: string, known: readonly string[]): ConfigurationError {
  const near = closestName(key, known)
  const hint = near === undefined ? '' : ` (did you mean "${near}"?)`
  return new ConfigurationError(
    `${where}: unknown field "${key}"${hint}; the fields are ${known.join(', ')}`,
    {
      code: 'INVALID_ALERT_CONFIG',
    },
  )
}

/** Reads the fields of one object, failing with a message that says where and what to write. */
class FieldReader {
  readonly #raw: Readonly<Record<string, unknown>>
  readonly #where: string

  constructor(raw: Readonly<Record<string, unknown>>, where: string) {
    this.#raw = raw
    this.#where = where
  }

  fail(field: string, expected: string): never {
    throw new ConfigurationError(
      `${this.#where}: "${field}" must be ${expected}, got ${show(this.#raw[field])}`,
      { code: 'INVALID_ALERT_CONFIG' },
    )
  }

  has(field: string): boolean {
    return this.#raw[field] !== undefined
  }

  number(
    field: string,
    options: { readonly min?: number; readonly integer?: boolean; readonly fallback?: number } = {},
  ): number {
    const value = this.#raw[field]
    const min = options.min ?? 0
    const expected = `${options.integer === true ? 'an integer' : 'a number'} ≥ ${min}`
    if (value === undefined) {
      if (options.fallback !== undefined) return options.fallback
      this.fail(field, expected)
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min) this.fail(field, expected)
    if (options.integer === true && !Number.isInteger(value)) this.fail(field, expected)
    return value
  }

  duration(field: string, fallback?: number): number {
    const value = this.#raw[field]
    if (value === undefined && fallback !== undefined) return fallback
    const ms = parseDuration(value)
    if (ms === undefined) this.fail(field, 'a duration such as "30s", "5m", "1h" or a number of milliseconds')
    return ms
  }

  string(field: string): string | undefined {
    const value = this.#raw[field]
    if (value === undefined) return undefined
    if (typeof value !== 'string' || value.length === 0) this.fail(field, 'a non-empty string')
    return value
  }

  oneOf<T extends string>(field: string, values: readonly T[], fallback?: T): T {
    const value = this.#raw[field]
    if (value === undefined && fallback !== undefined) return fallback
    if (typeof value !== 'string' || !values.includes(value as T)) {
      this.fail(field, `one of ${values.map((v) => `"${v}"`).join(', ')}`)
    }
    return value as T
  }

  strings(field: string): readonly string[] | undefined {
    const value = this.#raw[field]
    if (value === undefined) return undefined
    if (
      !Array.isArray(value) ||
      value.length === 0 ||
      !value.every((v) => typeof v === 'string' && v.length > 0)
    ) {
      this.fail(field, 'a non-empty list of non-empty strings')
    }
    return Object.freeze([...(value as string[])])
  }

  /** The field as a topic or pattern, failing with the grammar's own explanation. */
  topic(field: string, kind: 'topic' | 'pattern'): string | undefined {
    const value = this.string(field)
    if (value === undefined) return undefined
    try {
      return kind === 'topic' ? validateTopic(value) : validatePattern(value)
    } catch (err) {
      throw new ConfigurationError(
        `${this.#where}: "${field}" is not a valid ${kind}: ${(err as Error).message}`,
        {
          code: 'INVALID_ALERT_CONFIG',
          cause: err,
        },
      )
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function resolveRule(raw: unknown, index: number, origin: string | undefined): ResolvedRule {
  const at = origin === undefined ? `rules[${index}]` : `rules[${index}] in ${origin}`
  if (!isRecord(raw)) {
    throw new ConfigurationError(`alert rule ${at} must be an object with name and kind, got ${show(raw)}`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  const name = raw.name
  if (typeof name !== 'string' || name.trim().length === 0) {
    throw new ConfigurationError(`alert rule ${at}: "name" must be a non-empty string, got ${show(name)}`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  const where = `alert rule "${name}" (${at})`
  const r: FieldReader = new FieldReader(raw, where)
  const kind = r.oneOf('kind', KINDS)
  const known = [...BASE_FIELDS, ...KIND_FIELDS[kind]]
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw unknownField(where, key, known)
  }
  const base: ResolvedBase = {
    name,
    severity: r.oneOf('severity', ['info', 'warning', 'critical'] as const, 'warning'),
    forMs: r.duration('for', 0),
    cooldownMs: r.duration('cooldown', DEFAULT_COOLDOWN_MS),
    message: r.string('message'),
    channels: r.strings('channels'),
  }
  switch (kind) {
    case 'error-rate': {
      const measure = r.oneOf('measure', ['ratio', 'per-second'] as const, 'ratio')
      const threshold = r.number('threshold')
      if (measure === 'ratio' && threshold >= 1) {
        r.fail('threshold', 'below 1 with measure "ratio" (a fraction of events: 0.05 is 5 %)')
      }
      const windowMs = r.duration('window', DEFAULT_WINDOW_MS)
      if (windowMs < 1000) r.fail('window', 'at least 1s')
      return {
        ...base,
        kind,
        measure,
        threshold,
        windowMs,
        topics: r.topic('topics', 'pattern') ?? '**',
        minEvents: r.number('minEvents', { min: 1, integer: true, fallback: 10 }),
      }
    }
    case 'latency': {
      const source = r.oneOf('source', ['tool', 'agent'] as const)
      // The snapshot holds p50/p95 per tool and p50/p99 per agent; a rule on another is never true.
      const percentile = r.oneOf(
        'percentile',
        source === 'tool' ? (['p50', 'p95'] as const) : (['p50', 'p99'] as const),
      )
      return {
        ...base,
        kind,
        source,
        percentile,
        threshold: r.number('threshold'),
        names: r.strings('names'),
      }
    }
    case 'cost':
      return {
        ...base,
        kind,
        budget: r.number('budget'),
        period: r.oneOf('period', ['hour', 'day'] as const),
        by: r.has('by') ? r.oneOf('by', ['model', 'agent'] as const) : undefined,
        model: r.string('model'),
        agent: r.string('agent'),
      }
    case 'dead-letters': {
      const windowMs = r.duration('window', DEFAULT_WINDOW_MS)
      if (windowMs < 1000) r.fail('window', 'at least 1s')
      return {
        ...base,
        kind,
        threshold: r.number('threshold', { integer: true, fallback: 0 }),
        windowMs,
        topic: r.topic('topic', 'topic') ?? DEFAULT_DEAD_LETTER_TOPIC,
      }
    }
    case 'agent-silent':
      return { ...base, kind, afterMs: r.duration('after'), agents: r.strings('agents') }
    case 'consumer-lag':
      return {
        ...base,
        kind,
        threshold: r.number('threshold'),
        group: r.string('group'),
        topic: r.string('topic'),
        staleMs: r.duration('stale', DEFAULT_WINDOW_MS),
      }
  }
}

/**
 * Checks rules and applies their defaults. Throws a {@link ConfigurationError} naming the rule and
 * the field for the first problem: a missing or mistyped field, an unknown field (with the closest
 * known name), a bad duration, pattern or topic, or a name used twice.
 */
export function resolveRules(rules: unknown, origin?: string): ResolvedRule[] {
  const where = origin === undefined ? 'alert rules' : `alert rules in ${origin}`
  if (!Array.isArray(rules)) {
    throw new ConfigurationError(`${where} must be a list of rules, got ${show(rules)}`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  const out: ResolvedRule[] = []
  const seen = new Set<string>()
  rules.forEach((raw, index) => {
    const rule = resolveRule(raw, index, origin)
    if (seen.has(rule.name)) {
      throw new ConfigurationError(
        `${where}: two rules are named "${rule.name}"; names must be unique (they are the de-duplication key and the alert's topic)`,
        { code: 'INVALID_ALERT_CONFIG' },
      )
    }
    seen.add(rule.name)
    out.push(rule)
  })
  return out
}

const CHANNEL_FIELDS: Readonly<Record<AlertChannelSpec['type'], readonly string[]>> = {
  webhook: ['type', 'name', 'url', 'format', 'timeout', 'retries', 'headers'],
  log: ['type', 'name'],
  bus: ['type', 'name', 'source'],
}

/** A channel spec checked, with `${VAR}` in webhook URLs and headers replaced from `env`. */
export function resolveChannelSpec(
  raw: unknown,
  index: number,
  origin?: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): AlertChannelSpec {
  const at = origin === undefined ? `channels[${index}]` : `channels[${index}] in ${origin}`
  if (!isRecord(raw)) {
    throw new ConfigurationError(`alert channel ${at} must be an object with a type, got ${show(raw)}`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  const where = `alert channel ${typeof raw.name === 'string' ? `"${raw.name}" ` : ''}(${at})`
  const r: FieldReader = new FieldReader(raw, where)
  const type = r.oneOf('type', ['webhook', 'log', 'bus'] as const)
  const known = CHANNEL_FIELDS[type]
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw unknownField(where, key, known)
  }
  const name = r.string('name')
  const expand = (field: string, text: string): string =>
    text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
      const value = env[variable]
      if (value === undefined || value === '') {
        throw new ConfigurationError(
          `${where}: "${field}" uses \${${variable}}, but that environment variable is not set`,
          {
            code: 'INVALID_ALERT_CONFIG',
          },
        )
      }
      return value
    })
  if (type === 'log') return name === undefined ? { type } : { type, name }
  if (type === 'bus') {
    const source = r.string('source')
    return { type, ...(name === undefined ? {} : { name }), ...(source === undefined ? {} : { source }) }
  }
  const url = expand('url', r.string('url') ?? r.fail('url', 'an http:// or https:// URL'))
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    // The URL itself is not printed: a webhook URL is usually a secret.
    throw new ConfigurationError(`${where}: "url" must be an http:// or https:// URL`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  let headers: Record<string, string> | undefined
  if (r.has('headers')) {
    const h = raw.headers
    if (!isRecord(h) || !Object.values(h).every((v) => typeof v === 'string')) {
      r.fail('headers', 'an object of header names to string values')
    }
    headers = {}
    for (const [key, value] of Object.entries(h)) headers[key] = expand(`headers.${key}`, value as string)
  }
  return {
    type,
    url,
    format: r.oneOf('format', ['json', 'slack'] as const, 'json'),
    timeout: r.duration('timeout', 5000),
    retries: r.number('retries', { integer: true, fallback: 2 }),
    ...(name === undefined ? {} : { name }),
    ...(headers === undefined ? {} : { headers }),
  }
}

/**
 * Checks a rules document: either a list of rules, or `{ rules, channels? }`. `origin` (a file
 * name) goes into every message.
 */
export function parseAlertConfig(document: unknown, origin?: string): AlertConfig {
  if (Array.isArray(document)) {
    resolveRules(document, origin)
    return { rules: document as AlertRule[] }
  }
  const where = origin === undefined ? 'alert config' : `alert config in ${origin}`
  if (!isRecord(document)) {
    throw new ConfigurationError(
      `${where} must be a list of rules or an object with "rules" and "channels", got ${show(document)}`,
      {
        code: 'INVALID_ALERT_CONFIG',
      },
    )
  }
  for (const key of Object.keys(document)) {
    if (key !== 'rules' && key !== 'channels') throw unknownField(where, key, ['rules', 'channels'])
  }
  resolveRules(document.rules, origin)
  const channels = document.channels
  if (channels === undefined) return { rules: document.rules as AlertRule[] }
  if (!Array.isArray(channels)) {
    throw new ConfigurationError(`${where}: "channels" must be a list, got ${show(channels)}`, {
      code: 'INVALID_ALERT_CONFIG',
    })
  }
  return {
    rules: document.rules as AlertRule[],
    channels: channels.map((c, i) => resolveChannelSpec(c, i, origin)),
  }
}

/**
 * Reads alert rules (and channels) from a JSON or YAML file (`.json` is read as JSON, anything
 * else as YAML, which also reads JSON). Throws a {@link ConfigurationError} when the file cannot
 * be read or parsed (with the line), or a rule or channel is wrong (naming it and the field).
 */
export async function loadAlertConfig(path: string): Promise<AlertConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigurationError(`cannot read the alert rules file ${path}: ${(err as Error).message}`, {
      code: 'INVALID_ALERT_CONFIG',
      cause: err,
    })
  }
  let document: unknown
  try {
    document = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new ConfigurationError(
      `the alert rules file ${path} is not valid ${extname(path).toLowerCase() === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
      {
        code: 'INVALID_ALERT_CONFIG',
        cause: err,
      },
    )
  }
  return parseAlertConfig(document, path)
}
