import { silentLogger } from '@omnibus/core'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { KafkaClient } from '../src/client.ts'
import { createForwarder, DELAY_TIERS, FORWARDER_CHECK_MS, FORWARDER_GROUP } from '../src/delay.ts'
import type { Publisher, TopicRegistry } from '../src/publisher.ts'

type Group = { state: string; members: string[] }

/**
 * A cluster whose first delay topic holds five records the forwarder group has not committed;
 * `overdue(n)` says whether some of them are past their time by more than the allowance after n
 * looks at the group. The group's description comes from `group(n)` for the n-th look (from 1).
 * Joins are counted.
 */
function cluster(group: (n: number) => Group, overdue: (n: number) => boolean) {
  const seen = { describes: 0, joins: 0 }
  const first = (DELAY_TIERS[0] as (typeof DELAY_TIERS)[number]).topic
  const client = {
    async createTopics() {},
    async groupOffsetsOf(_group: string, topics: readonly string[]) {
      return new Map(topics.map((t) => [t, [{ partition: 0, offset: '0' }]]))
    },
    async offsetRange(topic: string) {
      return [{ partition: 0, low: '0', high: topic === first ? '5' : '0' }]
    },
    async offsetsAt() {
      return [{ partition: 0, offset: overdue(seen.describes) ? '3' : '0' }]
    },
    async describeGroup(groupId: string) {
      expect(groupId).toBe(FORWARDER_GROUP)
      return group(++seen.describes)
    },
    createConsumer() {
      seen.joins++
      return { async start() {}, async stop() {}, async disconnect() {} }
    },
  } as unknown as KafkaClient
  const forwarder = createForwarder({
    client,
    topics: { async ensure() {} } as unknown as TopicRegistry,
    publisher: {} as Publisher,
    logger: silentLogger,
    numPartitions: 1,
    replicationFactor: 1,
    endpoint: 'test',
  })
  return { forwarder, seen }
}

/**
 * A watching forwarder that has just seen a record overdue in a stable group of one member, and
 * waits `random` of a check period before it looks again (fake timers from here on).
 */
async function overdueInStableGroup(random: number) {
  vi.useFakeTimers()
  vi.spyOn(Math, 'random').mockReturnValue(random)
  const c = cluster(
    () => ({ state: 'Stable', members: ['m-1'] }),
    () => true,
  )
  c.forwarder.watch()
  await vi.advanceTimersByTimeAsync(0)
  expect(c.seen.describes).toBe(1)
  expect(c.seen.joins, 'before the wait').toBe(0)
  return c
}

describe('delay forwarder: who joins the forwarder group', () => {
  afterEach(() => {
    vi.useRealTimers()
    vi.restoreAllMocks()
  })

  it('joins at once when the delay topics hold a backlog and the group has no member', async () => {
    vi.useFakeTimers()
    const { forwarder, seen } = cluster(
      () => ({ state: 'Empty', members: [] }),
      () => false,
    )
    forwarder.watch()
    await vi.advanceTimersByTimeAsync(0)
    expect(seen.joins).toBe(1)
    await forwarder.stop(0)
  })

  it('does not join for an overdue record while the group is in a rebalance', async () => {
    vi.useFakeTimers()
    const { forwarder, seen } = cluster(
      () => ({ state: 'PreparingRebalance', members: ['m-1'] }),
      () => true,
    )
    forwarder.watch()
    await vi.advanceTimersByTimeAsync(6 * FORWARDER_CHECK_MS)
    expect(seen.describes, 'looks taken').toBeGreaterThanOrEqual(5)
    expect(seen.joins).toBe(0)
    await forwarder.stop(0)
  })

  it('joins for an overdue record in a stable group after a random wait, if the group is unchanged then', async () => {
    const { forwarder, seen } = await overdueInStableGroup(0.5)
    await vi.advanceTimersByTimeAsync(FORWARDER_CHECK_MS / 2)
    expect(seen.describes, 'the group looked at again').toBe(2)
    expect(seen.joins).toBe(1)
    await forwarder.stop(0)
  })

  it('does not join for an overdue record when another member joined during the wait', async () => {
    vi.useFakeTimers()
    const { forwarder, seen } = cluster(
      (n) => (n === 1 ? { state: 'Stable', members: ['m-1'] } : { state: 'Stable', members: ['m-1', 'm-2'] }),
      // The new member forwards: nothing is overdue at the looks after its arrival.
      (n) => n < 2,
    )
    forwarder.watch()
    await vi.advanceTimersByTimeAsync(2 * FORWARDER_CHECK_MS)
    expect(seen.describes).toBeGreaterThanOrEqual(2)
    expect(seen.joins, 'after the first look saw m-1 only').toBe(0)
    await forwarder.stop(0)
  })

  it('stop() ends the wait before an overdue join at once, and nothing joins', async () => {
    const { forwarder, seen } = await overdueInStableGroup(0.99)
    let stopped = false
    const stopping = forwarder.stop(0).then(() => {
      stopped = true
    })
    await vi.advanceTimersByTimeAsync(1)
    expect(stopped, 'stop() still waiting for the join wait').toBe(true)
    await stopping
    expect(seen.joins).toBe(0)
    expect(seen.describes).toBe(1)
  })
})
