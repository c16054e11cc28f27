/**
 * Health checks with one timeout rule: a probe that does not answer within the timeout is
 * unhealthy with a detail saying so, a probe that throws is unhealthy with its message, and the
 * latency is measured the same way on every backend.
 */
import type { HealthStatus } from '../protocol.ts'
import { describeError } from './outcome.ts'

/** Default time a health probe may take before it counts as failed. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 5_000

/**
 * Runs `probe` (a round trip to the broker: PING, a metadata request, `SELECT 1`) with a timeout.
 * Resolves `{ healthy: true, latencyMs, detail }` with the probe's detail when it resolves in time,
 * and `{ healthy: false, ... }` naming the backend and the cause when it throws or times out.
 * Never rejects. The probe is not cancelled on timeout; its late result is ignored.
 */
export async function timedHealthCheck(
  backend: string,
  probe: () => Promise<string | undefined>,
  timeoutMs: number = DEFAULT_HEALTH_TIMEOUT_MS,
): Promise<HealthStatus> {
  const started = performance.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs)
    timer.unref?.()
  })
  try {
    const result = await Promise.race([Promise.resolve().then(probe), timeout])
    const latencyMs = performance.now() - started
    if (result === 'timeout') {
      return { healthy: false, latencyMs, detail: `${backend}: no answer within ${timeoutMs} ms` }
    }
    return result === undefined ? { healthy: true, latencyMs } : { healthy: true, latencyMs, detail: result }
  } catch (error) {
    return {
      healthy: false,
      latencyMs: performance.now() - started,
      detail: `${backend}: ${describeError(error)}`,
    }
  } finally {
    clearTimeout(timer)
  }
}
