import { randomUUID } from 'node:crypto'
import type { EventBackend } from '@omnibus/core'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'

describeWithService('redis', 'redis exactly-once', () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const backends: EventBackend[] = []

  async function backend(): Promise<EventBackend> {
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    return b
  }

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
  })

  // Copies of one id in consecutive stream entries reach the same member back to back: the second
  // asks for the processed-id lock before the first one's "done" record is written.
  it.each([1, 8])(
    'copies of an id published back to back run the handler once on one member (concurrency %i)',
    async (concurrency) => {
      const run = randomUUID().slice(0, 8)
      const topic = `eo.dup.r${run}`
      const publisher = await backend()
      const consumer = await backend()
      const effects = new Map<string, number>()
      let deliveries = 0
      await consumer.subscribe(
        topic,
        (e) => {
          effects.set(e.id, (effects.get(e.id) ?? 0) + 1)
        },
        { group: `g${run}`, guarantee: 'exactly-once', concurrency },
      )
      const ids = Array.from({ length: 50 }, (_, i) => `${run}-${i}`)
      const copies = 4
      for (const id of ids) {
        const batch = await publisher.publishBatch(
          Array.from({ length: copies }, () => ({
            topic,
            id,
            data: { id },
            guarantee: 'exactly-once' as const,
          })),
        )
        expect(batch.failed).toBe(0)
      }
      const fence = await publisher.publish({ topic, data: { fence: true }, guarantee: 'exactly-once' })
      await eventually('the fence event', () => effects.has(fence.id), 20_000)
      // A copy that found the id busy looks again after at most 1 s and then finds it done:
      // give those re-checks time to run (and to show a second effect, were there one).
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      for (const id of ids) {
        deliveries += effects.get(id) ?? 0
        expect(effects.get(id), `handler runs for ${id}`).toBe(1)
      }
      expect(deliveries).toBe(ids.length)
    },
    60_000,
  )
})
