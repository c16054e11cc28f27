import { afterEach, describe, expect, it } from 'vitest'
import { CATCH_UP_EVENTS } from '../src/wakeup.ts'
import { backends, tempDir, waitFor } from './helpers.ts'

const tmp = tempDir()
const pool = backends()
afterEach(async () => {
  await pool.closeAll()
})
process.on('exit', () => tmp.cleanup())

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

/**
 * Two instances on one file in one process: `a` publishes, `b` only subscribes. `b` polls so
 * rarely that only the direct wake-up between instances can reach it during a test.
 */
async function pair(bPattern: string): Promise<{
  a: Awaited<ReturnType<typeof pool.open>>
  b: Awaited<ReturnType<typeof pool.open>>
  seenByA: string[]
  seenByB: string[]
}> {
  const file = tmp.file()
  const a = await pool.open({ path: file })
  const b = await pool.open({ path: file, pollIntervalMs: 60_000 })
  const seenByA: string[] = []
  const seenByB: string[] = []
  await a.subscribe('wk.a', async (e) => {
    seenByA.push(e.topic)
  })
  await b.subscribe(bPattern, async (e) => {
    seenByB.push(e.topic)
  })
  // The first claim of each new subscription.
  await turn()
  await turn()
  return { a, b, seenByA, seenByB }
}

describe('sqlite wake-up: a commit wakes the subscriptions it can concern', () => {
  it('does not claim for a subscription whose pattern matches none of the committed topics', async () => {
    const { a, b, seenByA, seenByB } = await pair('wk.b.*')
    const before = b.stats().claims
    for (let i = 0; i < 20; i++) {
      await a.publish({ topic: 'wk.a', data: i })
      await waitFor('a to receive its event', () => seenByA.length === i + 1)
    }
    expect(b.stats().claims).toBe(before)
    // A matching commit still reaches the other instance at once, not at its next poll.
    await a.publish({ topic: 'wk.b.1', data: 'x' })
    await waitFor('b to receive wk.b.1', () => seenByB.length === 1, 2000)
    expect(seenByB).toEqual(['wk.b.1'])
  })

  it('moves a passed-over subscription cursor once per CATCH_UP_EVENTS events', async () => {
    const { a, b, seenByA, seenByB } = await pair('wk.b.*')
    const before = b.stats().claims
    // One commit per turn of the event loop, as many as a subscription may be passed over for.
    for (let i = 0; i < CATCH_UP_EVENTS; i++) {
      await a.publish({ topic: 'wk.a', data: i })
      await turn()
    }
    await waitFor('a to receive its events', () => seenByA.length === CATCH_UP_EVENTS)
    await waitFor('b to move its cursor', () => b.stats().claims > before, 2000)
    expect(b.stats().claims - before).toBeLessThanOrEqual(2)
    await a.publish({ topic: 'wk.b.2', data: 'y' })
    await waitFor('b to receive wk.b.2', () => seenByB.length === 1, 2000)
    expect(seenByB).toEqual(['wk.b.2'])
  })

  it('wakes every subscription for a commit larger than it matches topic by topic', async () => {
    const { a, b } = await pair('wk.b.*')
    const before = b.stats().claims
    await Promise.all(Array.from({ length: 100 }, (_, i) => a.publish({ topic: 'wk.a', data: i })))
    await waitFor('b to move its cursor', () => b.stats().claims > before, 2000)
  })
})
