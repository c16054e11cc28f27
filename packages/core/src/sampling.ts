/**
 * Telemetry sampling: a default rate and per-pattern rates, decided once per distinct topic and
 * cached, so the per-event cost is one map lookup and, below rate 1, one random draw. Error topics
 * (`*.error`, `**.error`, `error.**`) are always kept, whatever the rates say.
 */
import { ConfigurationError } from './errors.ts'
import { compilePattern } from './matcher.ts'
import { optionNames, rejectUnknownOptions } from './options.ts'
import { isValidTopic } from './topic.ts'

/** Sampling configuration of an {@link ObservabilityBus}. */
export interface SamplingOptions {
  /** Fraction of events kept when no pattern rate applies, 0–1. @default 1 */
  readonly defaultRate?: number
  /**
   * Rate per topic pattern, e.g. `{ 'metric.**': 0.1 }`. The first listed pattern that matches a
   * topic decides its rate.
   */
  readonly rates?: Readonly<Record<string, number>>
  /** Keep error topics (`*.error`, `**.error`, `error.**`) at rate 1. @default true */
  readonly keepErrors?: boolean
}

/** Rate returned by {@link Sampler.rateFor} for a topic that is not a valid concrete topic. */
export const INVALID_TOPIC_RATE = -1

const CACHE_LIMIT = 50_000

const SAMPLING_OPTION_NAMES = optionNames<SamplingOptions>({
  defaultRate: true,
  rates: true,
  keepErrors: true,
})

function checkRate(name: string, rate: unknown): number {
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) {
    throw new ConfigurationError(`${name} must be a number between 0 and 1, got ${String(rate)}`)
  }
  return rate
}

/** Whether a topic is an error topic that sampling never drops. */
export function isErrorTopic(topic: string): boolean {
  return topic === 'error' || topic.startsWith('error.') || topic.endsWith('.error')
}

/** Decides, per topic, the fraction of events kept. */
export class Sampler {
  readonly #defaultRate: number
  readonly #rules: ReadonlyArray<{
    readonly pattern: string
    readonly test: (t: string) => boolean
    readonly rate: number
  }>
  readonly #keepErrors: boolean
  readonly #cache = new Map<string, number>()

  /** Validates the options; throws `ConfigurationError` for a rate outside 0–1 or a bad pattern. */
  constructor(options: SamplingOptions = {}) {
    rejectUnknownOptions('sampling option', options, SAMPLING_OPTION_NAMES)
    this.#defaultRate = checkRate('sampling.defaultRate', options.defaultRate ?? 1)
    this.#keepErrors = options.keepErrors ?? true
    const rules: Array<{ pattern: string; test: (t: string) => boolean; rate: number }> = []
    for (const [pattern, rate] of Object.entries(options.rates ?? {})) {
      rules.push({
        pattern,
        test: compilePattern(pattern),
        rate: checkRate(`sampling.rates["${pattern}"]`, rate),
      })
    }
    this.#rules = rules
  }

  /** The configuration in effect, as plain data. */
  get config(): { defaultRate: number; rates: Record<string, number>; keepErrors: boolean } {
    const rates: Record<string, number> = {}
    for (const r of this.#rules) rates[r.pattern] = r.rate
    return { defaultRate: this.#defaultRate, rates, keepErrors: this.#keepErrors }
  }

  /** Whether error topics (and failures reported on other topics) are always kept. */
  get keepsErrors(): boolean {
    return this.#keepErrors
  }

  /** Fraction kept for `topic` (1 for error topics), or {@link INVALID_TOPIC_RATE} for an invalid topic. */
  rateFor(topic: string): number {
    const cached = this.#cache.get(topic)
    if (cached !== undefined) return cached
    return this.#learn(topic)
  }

  #learn(topic: string): number {
    let rate: number
    if (!isValidTopic(topic)) rate = INVALID_TOPIC_RATE
    else if (this.#keepErrors && isErrorTopic(topic)) rate = 1
    else {
      rate = this.#defaultRate
      for (const rule of this.#rules) {
        if (rule.test(topic)) {
          rate = rule.rate
          break
        }
      }
    }
    // Topics are usually a small set; a flood of distinct ones must not grow memory without bound.
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear()
    if (typeof topic === 'string') this.#cache.set(topic, rate)
    return rate
  }
}
