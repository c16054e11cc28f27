/**
 * Waiting with a deadline, the one drain rule: `unsubscribe()` and `disconnect()` wait for
 * in-flight handlers up to the drain timeout, then stop waiting (the handlers' signals are
 * aborted and their messages handed back to the broker).
 */
import { ConfigurationError } from '../errors.ts'

/** Default drain timeout of `unsubscribe()` and `disconnect()`. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000

/**
 * Resolves `true` when `work` settles within `timeoutMs`, `false` when the time ran out first.
 * Never rejects (a rejection of `work` counts as settled). The timer does not hold the process.
 */
export function settlesWithin(work: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    timer.unref?.()
    const done = () => {
      clearTimeout(timer)
      resolve(true)
    }
    work.then(done, done)
  })
}

/**
 * Validates a drain timeout given to `disconnect()` or `unsubscribe()`: a finite number >= 0,
 * else a `ConfigurationError` naming the value.
 */
export function checkDrainTimeout(value: unknown, backend: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ConfigurationError(`drainTimeoutMs must be a number >= 0, got ${String(value)}`, { backend })
  }
  return value
}
