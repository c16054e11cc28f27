/**
 * Polling for the integration tests: the conformance package's `waitFor` with the argument order
 * the tests read best in (what is awaited, the condition, the deadline).
 */
import { waitFor } from '@omnibus/conformance'

/** Resolves once `predicate` holds; fails naming `what` after `timeoutMs`. Polls every 20 ms. */
export function eventually(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  return waitFor(predicate, { timeoutMs, message: what, intervalMs: 20 })
}
