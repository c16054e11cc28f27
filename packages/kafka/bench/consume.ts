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

/** Wall-clock time, and this process's CPU time, from the first to the last message. */
interface Timing {
  readonly wallMs: number
  readonly cpuMs: number
}
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

async function rawRun(round: number, withCodec = false): Promise<Timing> {
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
  let cpu0: NodeJS.CpuUsage | undefined
  let cpu1: NodeJS.CpuUsage = { user: 0, system: 0 }
  let checksum = 0
  await consumer.run({
    eachBatch: async ({ batch }) => {
      if (first === 0) {
        first = performance.now()
        cpu0 = process.cpuUsage()
      }
      for (const m of batch.messages) {
        const value = m.value ?? Buffer.alloc(0)
        checksum += withCodec
          ? decodeEvent(value).id.length
          : (JSON.parse(value.toString()) as { id: string }).id.length
        count++
      }
      last = performance.now()
      cpu1 = process.cpuUsage(cpu0)
    },
  })
  await until('the raw consumer to read everything', () => count >= total, 300_000)
  await consumer.disconnect()
  if (checksum === 0) throw new Error('nothing parsed')
  return { wallMs: last - first, cpuMs: (cpu1.user + cpu1.system) / 1000 }
}

async function backendRun(round: number): Promise<Timing> {
  const backend = createKafkaBackend(benchOptions)
  await backend.connect()
  let count = 0
  let first = 0
  let last = 0
  let cpu0: NodeJS.CpuUsage | undefined
  let cpu1: NodeJS.CpuUsage = { user: 0, system: 0 }
  await backend.subscribe(
    topic,
    () => {
      if (first === 0) {
        first = performance.now()
        cpu0 = process.cpuUsage()
      }
      count++
      last = performance.now()
      cpu1 = process.cpuUsage(cpu0)
    },
    { group: `omnibus-${runId}-${round}`, from: 'earliest' },
  )
  await until('the backend to handle everything', () => count >= total, 300_000)
  await backend.disconnect()
  return { wallMs: last - first, cpuMs: (cpu1.user + cpu1.system) / 1000 }
}

await fill()
const raw: Timing[] = []
const codec: Timing[] = []
const own: Timing[] = []
for (let round = 0; round < 3; round++) {
  raw.push(await rawRun(round))
  codec.push(await rawRun(round, true))
  own.push(await backendRun(round))
}
const best = (list: Timing[], key: keyof Timing): number => Math.min(...list.map((t) => t[key]))
console.log(`consume ${total} events from 3 partitions (best of ${raw.length}, first→last message)`)
console.log('                                       wall clock           CPU time (this process)')
const row = (label: string, list: Timing[]): void =>
  console.log(
    `  ${label.padEnd(36)} ${rate(total, best(list, 'wallMs')).padEnd(20)} ${rate(total, best(list, 'cpuMs'))}`,
  )
row('raw kafkajs eachBatch + JSON.parse', raw)
row('raw kafkajs eachBatch + decodeEvent', codec)
row('omnibus subscribe (at-least-once)', own)
const ratio = (base: Timing[], key: keyof Timing): string =>
  `${((best(base, key) / best(own, key)) * 100).toFixed(1)}%`
console.log(
  `  ratio to raw (target >= 80%)         ${ratio(raw, 'wallMs').padEnd(20)} ${ratio(raw, 'cpuMs')}`,
)
console.log(
  `  ratio to raw + decodeEvent           ${ratio(codec, 'wallMs').padEnd(20)} ${ratio(codec, 'cpuMs')}`,
)
console.log('  (CPU time is the steadier figure on a shared machine: it ignores time other processes took.)')
