/**
 * Publish throughput of the Kafka backend against raw kafkajs sending the same batches.
 *   node --conditions=@omnibus/source packages/kafka/bench/publish.ts [events] [batch]
 * Both sides send `events` events of ~200 bytes in rounds of `batch` concurrent publishes to a
 * 3-partition topic with an idempotent producer and acks=all. The raw side gets the very messages
 * the backend produces (same JSON envelope, same keys) already encoded, in one `sendBatch` per
 * round; the backend side calls `publish()` once per event and batches internally.
 */
import { createEvent, encodeEvent } from '@omnibus/core'
import kafkajs from 'kafkajs'
import { createKafkaBackend } from '../src/index.ts'
import { benchOptions, createTopic, rate, rawKafka, runId } from './common.ts'

const total = Number(process.argv[2] ?? 100_000)
const batch = Number(process.argv[3] ?? 1000)
const payload = { runId, text: 'x'.repeat(120), n: 0 }

async function rawRun(topic: string): Promise<number> {
  const producer = rawKafka().producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const rounds: Array<Array<{ key: string; value: string }>> = []
  for (let sent = 0; sent < total; sent += batch) {
    rounds.push(
      Array.from({ length: Math.min(batch, total - sent) }, (_, i) => {
        const e = createEvent({
          topic,
          data: { ...payload, n: sent + i },
          partitionKey: `k${(sent + i) % 64}`,
        })
        return { key: `k${(sent + i) % 64}`, value: encodeEvent(e) }
      }),
    )
  }
  const t0 = performance.now()
  for (const messages of rounds) {
    await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] })
  }
  const elapsed = performance.now() - t0
  await producer.disconnect()
  return elapsed
}

async function backendRun(topic: string): Promise<number> {
  const backend = createKafkaBackend(benchOptions)
  await backend.connect()
  await backend.publish({ topic, data: { warmup: true } })
  const t0 = performance.now()
  for (let sent = 0; sent < total; sent += batch) {
    const round: Promise<unknown>[] = []
    for (let i = 0; i < Math.min(batch, total - sent); i++) {
      round.push(
        backend.publish({ topic, data: { ...payload, n: sent + i }, partitionKey: `k${(sent + i) % 64}` }),
      )
    }
    await Promise.all(round)
  }
  const elapsed = performance.now() - t0
  await backend.disconnect()
  return elapsed
}

const rawTopic = `bench.${runId}.publish.raw`
const ownTopic = `bench.${runId}.publish.omnibus`
await createTopic(rawTopic)
await createTopic(ownTopic)
// Warm both paths once (JIT, connections), then measure raw → backend → raw → backend.
await rawRun(rawTopic)
const raw: number[] = []
const own: number[] = []
for (let i = 0; i < 3; i++) {
  raw.push(await rawRun(rawTopic))
  own.push(await backendRun(ownTopic))
}
const rawBest = Math.min(...raw)
const ownBest = Math.min(...own)
console.log(`publish ${total} events, ${batch} concurrent per round (best of ${raw.length})`)
console.log(`  raw kafkajs sendBatch : ${rate(total, rawBest)}`)
console.log(`  omnibus publish()     : ${rate(total, ownBest)}`)
console.log(`  ratio                 : ${((rawBest / ownBest) * 100).toFixed(1)}% of raw (target >= 80%)`)
