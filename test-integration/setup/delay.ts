/**
 * What the delayed-delivery tests of every broker check the same way: when each event reached its
 * handler and as which attempt, that it came in due order and not early, and how a broker restart
 * was seen from a backend's health checks.
 */
import type { EventBackend, HandlerContext, OmnibusEvent } from '@omnibus/core'
import { expect } from 'vitest'

/** One handler run: the event, when it started and its attempt. */
export interface Arrival {
  readonly event: OmnibusEvent
  readonly at: number
  readonly attempt: number
}

/** A handler that records each run into `into`. */
export function recorder(into: Arrival[]): (event: OmnibusEvent, ctx: HandlerContext) => void {
  return (event, ctx) => {
    into.push({ event, at: Date.now(), attempt: ctx.attempt })
  }
}

/** How long after its `deliverAt` the event reached its handler. */
export function lateness(a: Arrival): number {
  return a.at - (a.event.deliverAt as number)
}

/** The first run of the event, not before its `deliverAt`, and, with `maxLateMs`, less late than that. */
export function expectOnTime(a: Arrival, maxLateMs?: number): void {
  expect(a.at).toBeGreaterThanOrEqual(a.event.deliverAt as number)
  if (maxLateMs !== undefined) {
    expect(lateness(a), `lateness of the ${String(a.event.data)} ms delay`).toBeLessThan(maxLateMs)
  }
  expect(a.attempt).toBe(1)
}

/**
 * Restarts the broker while `probe` checks its health every 20 ms: when the broker was seen down
 * (first failed check, so no earlier than it really went) and when the restart ended.
 */
export async function restartObserved(
  restart: () => Promise<void>,
  probe: EventBackend,
): Promise<{ startedAt: number; downAt: number; backAt: number }> {
  const startedAt = Date.now()
  let downAt: number | undefined
  let done = false
  const restarting = restart().finally(() => {
    done = true
  })
  while (!done) {
    if (downAt === undefined && !(await probe.healthCheck()).healthy) downAt = Date.now()
    await new Promise((r) => setTimeout(r, 20))
  }
  await restarting
  expect(downAt, 'the broker was seen down during the restart').toBeDefined()
  return { startedAt, downAt: downAt as number, backAt: Date.now() }
}

/**
 * The checks of a restart test with a short delay that fell due while the broker was down and a
 * long one due after it was back: both were waiting when it went down, each arrived once as its
 * first attempt and not early, and the long one's wait was not started again on recovery.
 */
export function expectSurvivedRestart(
  short: Arrival,
  long: Arrival,
  restart: { downAt: number; backAt: number },
): void {
  for (const a of [short, long]) {
    expect(
      a.event.deliverAt as number,
      `the ${String(a.event.data)} delay waiting when the broker went down`,
    ).toBeGreaterThan(restart.downAt)
    expectOnTime(a)
  }
  expect(restart.backAt, 'the restart ended before the long delay was due').toBeLessThan(
    long.event.deliverAt as number,
  )
  expect(lateness(long), 'lateness of the long delay').toBeLessThan(1_000)
}
