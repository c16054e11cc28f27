import { describe, expect, it } from 'vitest'
import { createKafkaBackend } from '../src/index.ts'

/** A stand-in for a kafkajs `Kafka` instance: records what the backend asks of it. */
function fakeKafka() {
  const calls: string[] = []
  const sent: Array<{ topic: string; messages: Array<{ key: string | null; value: string }> }> = []
  const topics = new Set<string>(['orders.created'])
  const kafka = {
    admin: () => ({
      connect: async () => {
        calls.push('admin.connect')
      },
      disconnect: async () => {
        calls.push('admin.disconnect')
      },
      listTopics: async () => [...topics],
      describeCluster: async () => ({ brokers: [], controller: 1, clusterId: 'x' }),
    }),
    producer: (config: { idempotent?: boolean }) => {
      calls.push(`producer(idempotent=${String(config.idempotent)})`)
      return {
        connect: async () => {
          calls.push('producer.connect')
        },
        disconnect: async () => {
          calls.push('producer.disconnect')
        },
        sendBatch: async (req: { topicMessages: typeof sent }) => {
          calls.push('producer.sendBatch')
          sent.push(...req.topicMessages)
          return []
        },
      }
    },
    consumer: () => {
      throw new Error('not used here')
    },
  }
  return { kafka, calls, sent }
}

describe('a ready kafkajs instance', () => {
  it('is used for the admin and the idempotent producer, and concurrent publishes share one sendBatch', async () => {
    const fake = fakeKafka()
    const b = createKafkaBackend({ kafka: fake.kafka as never, brokers: ['ignored:1'] })
    expect(b.describe().brokers).toBe('provided Kafka instance')
    await b.connect()
    expect(fake.calls).toEqual(['producer(idempotent=true)', 'admin.connect', 'producer.connect'])
    const receipts = await Promise.all(
      [1, 2, 3].map((n) => b.publish({ topic: 'orders.created', data: { n }, partitionKey: `c${n}` })),
    )
    expect(receipts.map((r) => r.topic)).toEqual(['orders.created', 'orders.created', 'orders.created'])
    expect(fake.calls.filter((c) => c === 'producer.sendBatch')).toHaveLength(1)
    expect(fake.sent[0]?.messages.map((m) => m.key)).toEqual(['c1', 'c2', 'c3'])
    expect(JSON.parse(fake.sent[0]?.messages[0]?.value ?? '{}')).toMatchObject({
      specversion: '1.0',
      type: 'orders.created',
      data: { n: 1 },
      partitionkey: 'c1',
    })
    expect((await b.healthCheck()).healthy).toBe(true)
    await b.disconnect()
    expect(fake.calls.slice(-2).sort()).toEqual(['admin.disconnect', 'producer.disconnect'])
  })
})
