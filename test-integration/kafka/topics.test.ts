import { PublishError } from '@omnibus/core'
import { createKafkaClient, resolveKafkaOptions } from '@omnibus/kafka'
import kafkajs from 'kafkajs'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { itOptions, makeBackend } from './backend.ts'

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('kafka', 'Kafka topic creation and refusals', () => {
  process.env.OMNIBUS_IT_KAFKA_BROKERS = requireEndpoint('kafka')
  const open: Array<{ disconnect(): Promise<void> }> = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((b) => b.disconnect()))
  })

  it('with autoCreateTopics off, a publish to a missing topic fails with a PublishError naming it', async () => {
    const b = makeBackend({ autoCreateTopics: false })
    open.push(b)
    await b.connect()
    const topic = `topics.${runId}.missing`
    const error = await b.publish({ topic, data: 1 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PublishError)
    expect((error as Error).message).toContain(topic)
    expect((error as Error).message).toMatch(/autoCreateTopics/)
    // Nothing was created behind the caller's back.
    const other = makeBackend()
    open.push(other)
    await other.connect()
    const batch = await other.publishBatch([{ topic: `topics.${runId}.present`, data: 1 }])
    expect(batch.succeeded).toBe(1)
  })

  it('a topic the cluster refuses to create (replication factor above the broker count) is a clear, non-retryable error', async () => {
    const b = makeBackend({ replicationFactor: 3 })
    open.push(b)
    await b.connect()
    const topic = `topics.${runId}.replicated`
    const error = await b.publish({ topic, data: 1 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PublishError)
    expect((error as PublishError).retryable).toBe(false)
    expect((error as Error).message).toMatch(/cannot create Kafka topic .*replicated/)
    expect((error as PublishError).cause).toBeDefined()
  })

  it('topics are created with the configured partition count; events of one key arrive in publish order', async () => {
    const b = makeBackend({ numPartitions: 5 })
    open.push(b)
    await b.connect()
    const topic = `topics.${runId}.keyed`
    const order = new Map<string, number[]>()
    await b.subscribe(
      topic,
      (event) => {
        const key = event.partitionKey as string
        order.set(key, [...(order.get(key) ?? []), (event.data as { n: number }).n])
      },
      { group: `topics-${runId}`, concurrency: 4 },
    )
    await Promise.all(
      Array.from({ length: 100 }, (_, n) => b.publish({ topic, data: { n }, partitionKey: `k${n % 5}` })),
    )
    const deadline = Date.now() + 20_000
    while ([...order.values()].reduce((a, l) => a + l.length, 0) < 100) {
      if (Date.now() > deadline) throw new Error('events not delivered')
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    for (const [key, list] of order) expect(list, key).toEqual([...list].sort((x, y) => x - y))
    const client = createKafkaClient(resolveKafkaOptions(itOptions(requireEndpoint('kafka'))))
    await client.connect()
    try {
      expect((await client.endOffsets(topic)).length).toBe(5)
    } finally {
      await client.disconnect()
    }
  })

  it('only a wildcard subscription makes the backend list the cluster topics every topicRefreshMs', async () => {
    // A real kafkajs instance whose admin clients count their topic listings.
    const real = new kafkajs.Kafka({
      brokers: [requireEndpoint('kafka')],
      clientId: 'omnibus-it',
      logLevel: 0,
    })
    let listings = 0
    const kafka = Object.create(real) as typeof real
    kafka.admin = (config) => {
      const admin = real.admin(config)
      const list = admin.listTopics.bind(admin)
      admin.listTopics = () => {
        listings++
        return list()
      }
      return admin
    }
    const b = makeBackend({ kafka, topicRefreshMs: 100 })
    open.push(b)
    await b.connect()
    await b.subscribe(`topics.${runId}.literal`, () => {}, { group: `literal-${runId}` })
    const before = listings
    await wait(1_000)
    // Ten periods passed: a literal subscription has its topic and needs no listing.
    expect(listings - before).toBe(0)
    await b.subscribe(`topics.${runId}.wild.*`, () => {}, { group: `wild-${runId}` })
    const from = listings
    const deadline = Date.now() + 5_000
    while (listings - from < 3 && Date.now() < deadline) await wait(50)
    expect(listings - from).toBeGreaterThanOrEqual(3)
  })
})
