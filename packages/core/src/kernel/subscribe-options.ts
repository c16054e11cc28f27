/**
 * Subscribe options: validation against the backend's capabilities, defaults, and the retry
 * policy. Every backend's `subscribe` resolves its options here first, so the rules are the same.
 */
import { CapabilityError, ConfigurationError } from '../errors.ts'
import { optionNames, rejectUnknownOptions } from '../options.ts'
import {
  type BackendCapabilities,
  DEFAULT_DEAD_LETTER_TOPIC,
  type Guarantee,
  type OmnibusEvent,
  type RetryPolicy,
  type SubscribeOptions,
} from '../protocol.ts'
import { validatePattern, validateTopic } from '../topic.ts'

/** A retry policy with every field filled. */
export interface ResolvedRetryPolicy {
  readonly maxAttempts: number
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly multiplier: number
  readonly jitter: number
}

/** The default retry policy. */
export const DEFAULT_RETRY: ResolvedRetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 100,
  maxDelayMs: 30_000,
  multiplier: 2,
  jitter: 0.2,
}

/** Subscribe options after validation, with defaults applied. */
export interface ResolvedSubscribeOptions {
  readonly pattern: string
  readonly group: string | undefined
  readonly guarantee: Guarantee
  readonly concurrency: number
  readonly from: 'latest' | 'earliest'
  readonly retry: ResolvedRetryPolicy
  readonly deadLetter: string | false
  readonly signal: AbortSignal | undefined
  readonly visibilityTimeoutMs: number | undefined
  /** What an expired event becomes: a dead letter (reason `expired`) or nothing. */
  readonly expired: 'dead-letter' | 'drop'
  readonly onExpired: ((event: OmnibusEvent) => void) | undefined
}

const GROUP_NAME = /^[A-Za-z0-9_.-]{1,200}$/

/** The keys of {@link SubscribeOptions}; any other key is a `ConfigurationError` at `subscribe`. */
export const SUBSCRIBE_OPTION_NAMES: readonly string[] = optionNames<SubscribeOptions>({
  group: true,
  guarantee: true,
  concurrency: true,
  from: true,
  retry: true,
  deadLetter: true,
  signal: true,
  visibilityTimeoutMs: true,
  expired: true,
  onExpired: true,
})

/** The keys of {@link RetryPolicy}; any other key is a `ConfigurationError`. */
export const RETRY_OPTION_NAMES: readonly string[] = optionNames<RetryPolicy>({
  maxAttempts: true,
  initialDelayMs: true,
  maxDelayMs: true,
  multiplier: true,
  jitter: true,
})

/** `value` when it is an integer >= `min`, else a `ConfigurationError` naming `name`. */
export function positiveInt(name: string, value: unknown, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new ConfigurationError(`${name} must be an integer >= ${min}, got ${String(value)}`)
  }
  return value
}

function nonNegative(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ConfigurationError(`${name} must be a number >= 0, got ${String(value)}`)
  }
  return value
}

/** Fills and validates a retry policy. */
export function resolveRetryPolicy(policy: RetryPolicy | undefined): ResolvedRetryPolicy {
  if (policy === undefined) return DEFAULT_RETRY
  rejectUnknownOptions('retry option', policy, RETRY_OPTION_NAMES)
  const r = { ...DEFAULT_RETRY, ...policy }
  positiveInt('retry.maxAttempts', r.maxAttempts)
  nonNegative('retry.initialDelayMs', r.initialDelayMs)
  nonNegative('retry.maxDelayMs', r.maxDelayMs)
  if (typeof r.multiplier !== 'number' || !(r.multiplier >= 1)) {
    throw new ConfigurationError(`retry.multiplier must be >= 1, got ${String(r.multiplier)}`)
  }
  if (typeof r.jitter !== 'number' || !(r.jitter >= 0 && r.jitter <= 1)) {
    throw new ConfigurationError(`retry.jitter must be between 0 and 1, got ${String(r.jitter)}`)
  }
  return r
}

/**
 * Validates the arguments of `ensureGroup(pattern, group)` as `subscribe` would validate them with
 * that group: `InvalidTopicError` for a bad pattern, `ConfigurationError` for a bad group name,
 * `CapabilityError` on a backend without groups. Every backend's `ensureGroup` calls it first.
 */
export function checkEnsureGroup(
  backend: { readonly name: string; readonly capabilities: BackendCapabilities },
  pattern: string,
  group: string,
): void {
  validatePattern(pattern)
  if (typeof group !== 'string' || !GROUP_NAME.test(group)) {
    throw new ConfigurationError(
      `ensureGroup: group "${String(group)}" is invalid: use 1-200 letters, digits, '_', '-' or '.'`,
      { backend: backend.name },
    )
  }
  if (!backend.capabilities.groups) {
    throw new CapabilityError(`the ${backend.name} backend does not support consumer groups (ensureGroup)`, {
      backend: backend.name,
    })
  }
}

/**
 * Validates `subscribe` arguments against the backend's capabilities and fills defaults.
 * Throws `InvalidTopicError` for a bad pattern, `ConfigurationError` for bad options (an unknown
 * key included) and `CapabilityError` for a guarantee, group or replay the backend does not offer.
 * Every backend's `subscribe` calls it first, so the rules are the same everywhere.
 */
export function resolveSubscribeOptions(
  backend: { readonly name: string; readonly capabilities: BackendCapabilities },
  pattern: string,
  handler: unknown,
  opts: SubscribeOptions = {},
): ResolvedSubscribeOptions {
  validatePattern(pattern)
  if (typeof handler !== 'function') {
    throw new ConfigurationError(`subscribe("${pattern}") needs a handler function, got ${typeof handler}`)
  }
  rejectUnknownOptions('subscribe option', opts, SUBSCRIBE_OPTION_NAMES, { backend: backend.name })
  const caps = backend.capabilities
  const guarantee = opts.guarantee ?? 'at-least-once'
  if (!caps.guarantees.includes(guarantee)) {
    throw new CapabilityError(
      `the ${backend.name} backend does not offer ${guarantee} delivery (it offers ${caps.guarantees.join(', ')}); ` +
        'choose one of those or another backend',
      { backend: backend.name },
    )
  }
  if (opts.group !== undefined) {
    if (typeof opts.group !== 'string' || !GROUP_NAME.test(opts.group)) {
      throw new ConfigurationError(
        `group "${String(opts.group)}" is invalid: use 1-200 letters, digits, '_', '-' or '.'`,
        { backend: backend.name },
      )
    }
    if (!caps.groups) {
      throw new CapabilityError(`the ${backend.name} backend does not support consumer groups`, {
        backend: backend.name,
      })
    }
  }
  const from = opts.from ?? 'latest'
  if (from !== 'latest' && from !== 'earliest') {
    throw new ConfigurationError(`from must be 'latest' or 'earliest', got ${String(from)}`)
  }
  if (from === 'earliest' && !caps.replay) {
    throw new CapabilityError(`the ${backend.name} backend cannot replay history (from: 'earliest')`, {
      backend: backend.name,
    })
  }
  const deadLetter = opts.deadLetter ?? DEFAULT_DEAD_LETTER_TOPIC
  if (deadLetter !== false) validateTopic(deadLetter)
  const expired = opts.expired ?? 'dead-letter'
  if (expired !== 'dead-letter' && expired !== 'drop') {
    throw new ConfigurationError(`expired must be 'dead-letter' or 'drop', got ${String(expired)}`)
  }
  if (opts.onExpired !== undefined && typeof opts.onExpired !== 'function') {
    throw new ConfigurationError(`onExpired must be a function, got ${typeof opts.onExpired}`)
  }
  return {
    pattern,
    group: opts.group,
    guarantee,
    concurrency: opts.concurrency === undefined ? 1 : positiveInt('concurrency', opts.concurrency),
    from,
    retry: resolveRetryPolicy(opts.retry),
    deadLetter,
    signal: opts.signal,
    visibilityTimeoutMs:
      opts.visibilityTimeoutMs === undefined
        ? undefined
        : positiveInt('visibilityTimeoutMs', opts.visibilityTimeoutMs),
    expired,
    onExpired: opts.onExpired,
  }
}
