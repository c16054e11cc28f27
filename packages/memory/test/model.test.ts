import { randomUUID } from 'node:crypto'
import { type OmnibusEvent, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { createMemoryBackend, type MemoryBackend } from '../src/index.ts'

function rng(seed: number): () => number {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
}

const open: MemoryBackend[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 0 })))
})

describe('randomised group delivery', () => {
  for (const seed of [1, 7, 42]) {
    it(`seed ${seed}: nothing lost, per-key order kept across members and retries, limits held`, async () => {
      const r = rng(seed)
      const name = `model-${randomUUID()}`
      const members = 3
      const limits = Array.from({ length: members }, () => 1 + Math.floor(r() * 3))
      const running = new Array<number>(members).fill(0)
      const busyKeys = new Set<string>()
      const violations: string[] = []
      const done = new Map<string, number[]>()
      const failedOnce = new Set<number>()
      for (let m = 0; m < members; m++) {
        const b = createMemoryBackend({ name, logger: silentLogger, queueCapacity: 8 })
        await b.connect()
        open.push(b)
        await b.subscribe(
          'model.*',
          async (e: OmnibusEvent<number>, ctx) => {
            const key = e.partitionKey as string
            running[m] = (running[m] as number) + 1
            if ((running[m] as number) > (limits[m] as number)) violations.push(`member ${m} over its limit`)
            if (busyKeys.has(key)) violations.push(`key ${key} ran twice at once`)
            busyKeys.add(key)
            await new Promise((resolve) => setTimeout(resolve, Math.floor(r() * 3)))
            busyKeys.delete(key)
            running[m] = (running[m] as number) - 1
            if (!failedOnce.has(e.data) && r() < 0.2) {
              failedOnce.add(e.data)
              ctx.retry(1)
              return
            }
            done.set(key, [...(done.get(key) ?? []), e.data])
          },
          { group: 'workers', concurrency: limits[m] as number, retry: { maxAttempts: 3 } },
        )
      }
      const publisher = createMemoryBackend({ name, logger: silentLogger, queueCapacity: 8 })
      await publisher.connect()
      open.push(publisher)
      const total = 300
      const sent = new Map<string, number[]>()
      const publishes: Promise<unknown>[] = []
      for (let i = 0; i < total; i++) {
        const key = `k${Math.floor(r() * 6)}`
        sent.set(key, [...(sent.get(key) ?? []), i])
        // Not awaited one by one: the small queues fill up and publishers wait for room.
        publishes.push(publisher.publish({ topic: `model.t${i % 4}`, data: i, partitionKey: key }))
      }
      await Promise.all(publishes)
      await waitUntil(() => [...done.values()].reduce((s, l) => s + l.length, 0) === total, {
        timeoutMs: 20_000,
      })
      expect(violations).toEqual([])
      expect(done).toEqual(sent)
    })
  }
})
