import { PublishError } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import type { KafkaClient, OutgoingTopicBatch } from '../src/client.ts'
import { createPublisher, createTopicRegistry } from '../src/publisher.ts'

/** A client that records produce requests and topic creations; nothing else is used here. */
function fakeClient(existing: string[] = []) {
  const topics = new Set(existing)
  const sends: OutgoingTopicBatch[][] = []
  const created: string[][] = []
  let failNext: Error | undefined
  const client = {
    async listTopics() {
      return [...topics, '__consumer_offsets']
    },
    async createTopics(list: readonly string[]) {
      created.push([...list])
      for (const t of list) topics.add(t)
    },
    async send(batches: readonly OutgoingTopicBatch[]) {
      await new Promise((resolve) => setTimeout(resolve, 5))
      if (failNext !== undefined) {
        const e = failNext
        failNext = undefined
        throw e
      }
      sends.push(batches.map((b) => ({ topic: b.topic, messages: [...b.messages] })))
    },
  } as unknown as KafkaClient
  return {
    client,
    sends,
    created,
    failOnce(e: Error) {
      failNext = e
    },
  }
}

function setup(existing: string[] = [], autoCreateTopics = true, maxBatchBytes = 1_000_000) {
  const fake = fakeClient(existing)
  const onCreated: string[][] = []
  const topics = createTopicRegistry({
    client: fake.client,
    autoCreateTopics,
    numPartitions: 3,
    replicationFactor: 1,
    endpoint: 'test:9092',
    onCreated: (t) => onCreated.push([...t]),
  })
  const publisher = createPublisher({ client: fake.client, topics, maxBatchBytes, endpoint: 'test:9092' })
  return { ...fake, topics, publisher, onCreated }
}

describe('publisher', () => {
  it('sends concurrent publishes in one produce request, grouped per topic, in order', async () => {
    const s = setup(['a.x', 'b.y'])
    await s.topics.refresh()
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        s.publisher.send(i % 2 ? 'a.x' : 'b.y', { key: `k${i}`, value: `v${i}` }, 10),
      ),
    )
    expect(s.sends.length).toBe(1)
    const request = s.sends[0] ?? []
    expect(request.map((b) => b.topic).sort()).toEqual(['a.x', 'b.y'])
    const a = request.find((b) => b.topic === 'a.x')?.messages.map((m) => m.value)
    expect(a?.slice(0, 3)).toEqual(['v1', 'v3', 'v5'])
    expect(a?.length).toBe(150)
  })

  it('gathers what is published while a request is in flight into the next one', async () => {
    const s = setup(['a.x'])
    await s.topics.refresh()
    const first = s.publisher.send('a.x', { key: null, value: 'first' }, 10)
    await new Promise((resolve) => setTimeout(resolve, 1))
    const rest = Array.from({ length: 50 }, (_, i) =>
      s.publisher.send('a.x', { key: null, value: `r${i}` }, 10),
    )
    await Promise.all([first, ...rest])
    expect(s.sends.length).toBe(2)
    expect(s.sends[1]?.[0]?.messages.length).toBe(50)
  })

  it('splits a burst larger than maxBatchBytes per topic, keeping per-topic order', async () => {
    const s = setup(['a.x'], true, 2000)
    await s.topics.refresh()
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => s.publisher.send('a.x', { key: null, value: `m${i}` }, 500)),
    )
    expect(s.sends.length).toBe(3)
    expect(s.sends.flatMap((r) => r.flatMap((b) => b.messages.map((m) => m.value)))).toEqual(
      Array.from({ length: 10 }, (_, i) => `m${i}`),
    )
  })

  it('creates a missing topic once for concurrent publishes and announces it', async () => {
    const s = setup()
    await Promise.all(
      Array.from({ length: 20 }, () => s.publisher.send('new.topic', { key: null, value: 'x' }, 1)),
    )
    expect(s.created).toEqual([['new.topic']])
    expect(s.onCreated).toEqual([['new.topic']])
    expect(s.topics.known.has('__consumer_offsets')).toBe(false)
  })

  it('refuses a missing topic with autoCreateTopics off, without sinking other topics', async () => {
    const s = setup(['ok.topic'], false)
    await s.topics.refresh()
    const bad = s.publisher.send('missing.topic', { key: null, value: 'x' }, 1)
    const good = s.publisher.send('ok.topic', { key: null, value: 'y' }, 1)
    await expect(bad).rejects.toThrow(PublishError)
    await expect(bad).rejects.toThrow(/does not exist and autoCreateTopics is off/)
    await expect(good).resolves.toBeUndefined()
    expect(s.created).toEqual([])
  })

  it('rejects every event of a failed request with a classified, retryable error, then recovers', async () => {
    const s = setup(['a.x'])
    await s.topics.refresh()
    s.failOnce(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
    const failed = await Promise.allSettled(
      [1, 2, 3].map((i) => s.publisher.send('a.x', { key: null, value: `${i}` }, 1)),
    )
    for (const r of failed) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason).toMatchObject({ name: 'ConnectionError', retryable: true })
    }
    await s.publisher.send('a.x', { key: null, value: 'after' }, 1)
    await s.publisher.idle()
    expect(s.publisher.pending).toBe(0)
  })
})
