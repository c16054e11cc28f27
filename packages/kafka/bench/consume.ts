/**
 * Consume throughput of the Kafka backend against a raw kafkajs consumer on the same topic.
 *   node --conditions=@omnibus/source packages/kafka/bench/consume.ts [events]
 * The topic (3 partitions) is filled with `events` Omnibus envelopes first. Each side then reads it
 * from the beginning with a fresh consumer group and one partition at a time; the raw consumer
 * parses each value with JSON.parse (its minimal useful work; a second raw run decodes the
 * Omnibus envelope with core's decodeEvent instead, to separate the codec's cost), the backend
 * decodes the envelope, runs the handler and commits after it resolved (at-least-once). Timing
 * runs from the first to the last message, so the group join is not counted.
 */
import { createEvent, decodeEvent, encodeEvent } from '@omnibus/core'
import kafkajs from 'kafkajs'
import { createKafkaBackend } from '../src/index.ts'
import { benchOptions, createTopic, rate, rawKafka, runId, until } from './common.ts'

const total = Number(process.argv[2] ?? 100_000)
const topic = `bench.${runId}.consume`

async function fill(): Promise<void> {
  await createTopic(topic)
  const producer = rawKafka().producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  for (let sent = 0; sent < total; sent += 2000) {
    const messages = Array.from({ length: Math.min(2000, total - sent) }, (_, i) => ({
      key: `k${(sent + i) % 64}`,
      value: encodeEvent(createEvent({ topic, data: { runId, n: sent + i, text: 'x'.repeat(120) } })),
    }))
    await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] })
  }
  await producer.disconnect()
}

async function rawRun(round: number, withCodec = false): Promise<number> {
  const consumer = rawKafka().consumer({
    groupId: `omnibus-bench.raw-${runId}-${round}-${withCodec}`,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 100,
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let count = 0
  let first = 0
  let last = 0
  let checksum = 0
  await consumer.run({
    eachBatch: async ({ batch }) => {
      if (first === 0) first = performance.now()
      for (const m of batch.messages) {
        const value = m.value ?? Buffer.alloc(0)
        checksum += withCodec
          ? decodeEvent(value).id.length
          : (JSON.parse(value.toString()) as { id: string }).id.length
        count++
      }
      last = performance.now()
    },
  })
  await until('the raw consumer to read everything', () => count >= total, 300_000)
  await consumer.disconnect()
  if (checksum === 0) throw new Error('nothing parsed')
  return last - first
}

async function backendRun(round: number): Promise<number> {
  const backend = createKafkaBackend(benchOptions)
  await backend.connect()
  let count = 0
  let first = 0
  let last = 0
  await backend.subscribe(
    topic,
    () => {
      if (first === 0) first = performance.now()
      count++
      last = performance.now()
    },
    { group: `omnibus-${runId}-${round}`, from: 'earliest' },
  )
  await until('the backend to handle everything', () => count >= total, 300_000)
  await backend.disconnect()
  return last - first
}

await fill()
const raw: number[] = []
const codec: number[] = []
const own: number[] = []
for (let round = 0; round < 3; round++) {
  raw.push(await rawRun(round))
  codec.push(await rawRun(round, true))
  own.push(await backendRun(round))
}
const rawBest = Math.min(...raw)
const codecBest = Math.min(...codec)
const ownBest = Math.min(...own)
console.log(`consume ${total} events from 3 partitions (best of ${raw.length}, first→last message)`)
console.log(`  raw kafkajs eachBatch + JSON.parse : ${rate(total, rawBest)}`)
console.log(
  `  raw kafkajs eachBatch + decodeEvent: ${rate(total, codecBest)} (the envelope codec every consumer pays)`,
)
console.log(`  omnibus subscribe (at-least-once)  : ${rate(total, ownBest)}`)
console.log(
  `  ratio                              : ${((rawBest / ownBest) * 100).toFixed(1)}% of raw (target >= 80%)`,
)
console.log(`  ratio to raw + decodeEvent         : ${((codecBest / ownBest) * 100).toFixed(1)}%`)
