/**
 * What a handler's run asked for, and what follows a failed run: the retry schedule and when to
 * dead-letter or drop.
 */
import type { ResolvedRetryPolicy, ResolvedSubscribeOptions } from './subscribe-options.ts'

/**
 * Delay before attempt `attempt + 1`, after `attempt` failed runs (attempt >= 1):
 * `initialDelayMs * multiplier^(attempt-1)`, capped at `maxDelayMs`, then reduced by up to
 * `jitter` of itself at random.
 */
export function backoffDelay(
  policy: ResolvedRetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(
    policy.maxDelayMs,
    policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1),
  )
  return Math.max(0, Math.round(base * (1 - policy.jitter * random())))
}

/** What the handler's run asked for. */
export type HandlerOutcome =
  | { readonly kind: 'ack' }
  | { readonly kind: 'retry'; readonly delayMs: number | undefined; readonly error: unknown }
  | { readonly kind: 'dead-letter'; readonly reason: string; readonly error: unknown }

/** What the backend should do after a failed run. */
export type FailureDecision =
  | { readonly action: 'retry'; readonly delayMs: number }
  | { readonly action: 'dead-letter'; readonly reason: string }
  | { readonly action: 'drop'; readonly reason: string }

/**
 * Decides what follows a failed run (`outcome` not `ack`) of attempt number `attempt`:
 * retry after the backoff (or the handler's requested delay), or dead-letter once
 * `maxAttempts` runs have failed (or at once when the handler asked), or drop when the
 * subscription has `deadLetter: false`, or for at-most-once.
 */
export function decideFailure(
  opts: Pick<ResolvedSubscribeOptions, 'retry' | 'deadLetter' | 'guarantee'>,
  attempt: number,
  outcome: Exclude<HandlerOutcome, { kind: 'ack' }>,
  random?: () => number,
): FailureDecision {
  if (opts.guarantee === 'at-most-once') return { action: 'drop', reason: 'at-most-once: not redelivered' }
  if (outcome.kind === 'retry' && attempt < opts.retry.maxAttempts) {
    return { action: 'retry', delayMs: outcome.delayMs ?? backoffDelay(opts.retry, attempt, random) }
  }
  const reason =
    outcome.kind === 'dead-letter'
      ? outcome.reason
      : `failed ${attempt} of ${opts.retry.maxAttempts} attempts: ${describeError(outcome.error)}`
  if (opts.deadLetter === false) return { action: 'drop', reason }
  return { action: 'dead-letter', reason }
}

/** `Name: message` of an error, or the value as a string; never throws. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`
  try {
    return String(error)
  } catch {
    return Object.prototype.toString.call(error)
  }
}
