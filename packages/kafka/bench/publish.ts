/**
 * Publish throughput of the Kafka backend against raw kafkajs sending the same batches.
 *   node --conditions=@omnibus/source packages/kafka/bench/publish.ts [events] [batch]
 * Both sides send `events` events of ~200 bytes in rounds of `batch` concurrent publishes to a
 * 3-partition topic with an idempotent producer and acks=all. The raw side sends the very messages
 * the backend produces (same JSON envelope, same keys) in one `sendBatch` per round, encoded inside
 * the timed loop (the fair baseline: a publisher has to build its messages) and, for reference,
 * encoded before the clock starts; the backend side calls `publish()` once per event and batches
 * internally.
 */
import { createEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import kafkajs from 'kafkajs'
import { createKafkaBackend } from '../src/index.ts'
import { benchOptions, createTopic, rate, rawKafka, runId } from './common.ts'

const total = Number(process.argv[2] ?? 100_000)
const batch = Number(process.argv[3] ?? 1000)
const payload = { runId, text: 'x'.repeat(120), n: 0 }

/** Wall-clock time, and this process's CPU time, of the measured part. */
interface Timing {
  readonly wallMs: number
  readonly cpuMs: number
}

function measureFrom(t0: number, cpu0: NodeJS.CpuUsage): Timing {
  const cpu = process.cpuUsage(cpu0)
  return { wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 }
}

function envelope(topic: string, n: number): { key: string; value: string } {
  const e = createEvent({ topic, data: { ...payload, n }, partitionKey: `k${n % 64}` })
  return { key: `k${n % 64}`, value: encodeEvent(e) }
}

/**
 * Raw kafkajs: one `sendBatch` per round with the round's envelopes, either encoded before the
 * clock starts (`preEncoded`) or built and encoded inside the timed loop, as a publisher must.
 */
async function rawRun(topic: string, preEncoded: boolean): Promise<Timing> {
  const producer = rawKafka().producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const rounds: Array<Array<{ key: string; value: string }>> = []
  if (preEncoded) {
    for (let sent = 0; sent < total; sent += batch) {
      rounds.push(Array.from({ length: Math.min(batch, total - sent) }, (_, i) => envelope(topic, sent + i)))
    }
  }
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  for (let sent = 0; sent < total; sent += batch) {
    const messages =
      rounds[sent / batch] ??
      Array.from({ length: Math.min(batch, total - sent) }, (_, i) => envelope(topic, sent + i))
    await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] })
  }
  const elapsed = measureFrom(t0, cpu0)
  await producer.disconnect()
  return elapsed
}

async function backendRun(topic: string): Promise<Timing> {
  const backend = createKafkaBackend(benchOptions)
  await backend.connect()
  await backend.publish({ topic, data: { warmup: true } })
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  for (let sent = 0; sent < total; sent += batch) {
    const round: Promise<unknown>[] = []
    for (let i = 0; i < Math.min(batch, total - sent); i++) {
      round.push(
        backend.publish({ topic, data: { ...payload, n: sent + i }, partitionKey: `k${(sent + i) % 64}` }),
      )
    }
    await Promise.all(round)
  }
  const elapsed = measureFrom(t0, cpu0)
  await backend.disconnect()
  return elapsed
}

const rawTopic = `bench.${runId}.publish.raw`
const ownTopic = `bench.${runId}.publish.omnibus`
await createTopic(rawTopic)
await createTopic(ownTopic)
// Warm both paths once (JIT, connections), then alternate the measured runs.
await rawRun(rawTopic, true)
const pre: Timing[] = []
const raw: Timing[] = []
const own: Timing[] = []
for (let i = 0; i < 3; i++) {
  pre.push(await rawRun(rawTopic, true))
  raw.push(await rawRun(rawTopic, false))
  own.push(await backendRun(ownTopic))
}
const best = (list: Timing[], key: keyof Timing): number => Math.min(...list.map((t) => t[key]))
const row = (label: string, list: Timing[]): void =>
  console.log(
    `  ${label.padEnd(40)} ${rate(total, best(list, 'wallMs')).padEnd(20)} ${rate(total, best(list, 'cpuMs'))}`,
  )
const ratio = (base: Timing[], key: keyof Timing): string =>
  `${((best(base, key) / best(own, key)) * 100).toFixed(1)}%`
console.log(`publish ${total} events, ${batch} concurrent per round (best of ${raw.length})`)
console.log(`  ${''.padEnd(40)} wall clock           CPU time (this process)`)
row('raw sendBatch, envelopes pre-encoded', pre)
row('raw sendBatch, envelopes encoded in loop', raw)
row('omnibus publish() per event', own)
console.log(
  `  ${'ratio to raw, encoded in loop (>= 80%)'.padEnd(40)} ${ratio(raw, 'wallMs').padEnd(20)} ${ratio(raw, 'cpuMs')}`,
)
console.log(
  `  ${'ratio to raw, pre-encoded'.padEnd(40)} ${ratio(pre, 'wallMs').padEnd(20)} ${ratio(pre, 'cpuMs')}`,
)
