/**
 * Consume throughput of the Kafka backend against a raw kafkajs consumer on the same topic.
 *   node --conditions=@omnibus/source packages/kafka/bench/consume.ts [events] [rounds] [sync|async]
 * The topic (3 partitions) is filled with `events` Omnibus envelopes first. Each side then reads it
 * from the beginning with a fresh consumer group and one partition at a time, with the backend's
 * own kafkajs consumer settings (`consumerConfig`: fetch sizes, wait, session). The raw consumer
 * parses each value with JSON.parse and calls the same handler (its minimal useful work; a second
 * raw run decodes the Omnibus envelope with core's decodeEvent instead, to separate the codec's
 * cost) and commits after each batch (kafkajs' autoCommit); the backend decodes the envelope, runs the handler and
 * commits after each batch once its handlers resolved (at-least-once). Timing runs from the first
 * to the last message, so the group join is not counted; both sides read the clocks per batch or
 * once, never per message. The handlers are plain functions (`sync`, the default) or `async`
 * functions, which always run in a full async context for causation (see core's HandlerRunner).
 */
import { createEvent, type Subscription, silentLogger } from '@omnibus/core'
import { decodeEvent, encodeEvent, HandlerRunner } from '@omnibus/core/backend'
import kafkajs from 'kafkajs'
import { consumerConfig, createKafkaBackend, resolveKafkaOptions } from '../src/index.ts'
import { benchOptions, createTopic, rate, rawKafka, runId, until } from './common.ts'

const total = Number(process.argv[2] ?? 100_000)
const rounds = Number(process.argv[3] ?? 5)
const asyncHandlers = process.argv[4] === 'async'
if (process.argv[4] !== undefined && !asyncHandlers && process.argv[4] !== 'sync') {
  throw new Error(`handler kind must be sync or async, got ${process.argv[4]}`)
}

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

/**
 * What the raw consumer does per message: `json` = JSON.parse, `codec` = core's decodeEvent,
 * `core` = decodeEvent then a core HandlerRunner's run (the two core calls every backend makes per
 * event),
 * which leaves only the backend's own per-event cost between that line and the backend's.
 */
type RawWork = 'json' | 'codec' | 'core'

const signal = new AbortController().signal
const subscription: Subscription = {
  id: 'raw',
  pattern: topic,
  group: undefined,
  active: true,
  unsubscribe: async () => {},
}
let handled = 0
const handler = asyncHandlers
  ? async (): Promise<void> => {
      handled++
    }
  : (): void => {
      handled++
    }

async function rawRun(round: number, work: RawWork): Promise<Timing> {
  const consumer = rawKafka().consumer(
    consumerConfig(resolveKafkaOptions(benchOptions), `omnibus-bench.raw-${runId}-${round}-${work}`),
  )
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  let count = 0
  let first = 0
  let last = 0
  let cpu0: NodeJS.CpuUsage | undefined
  let cpu1: NodeJS.CpuUsage = { user: 0, system: 0 }
  let checksum = 0
  handled = 0
  const runner = new HandlerRunner(handler, subscription, silentLogger, signal)
  await consumer.run({
    partitionsConsumedConcurrently: 1,
    eachBatch: async ({ batch }) => {
      if (first === 0) {
        first = performance.now()
        cpu0 = process.cpuUsage()
      }
      for (const m of batch.messages) {
        const value = m.value ?? Buffer.alloc(0)
        if (work !== 'core') {
          // The same handler the backend runs, called directly (awaited when it is async).
          const id =
            work === 'json' ? (JSON.parse(value.toString()) as { id: string }).id : decodeEvent(value).id
          const result: unknown = handler()
          if (result instanceof Promise) await result
          checksum += id.length
        } else {
          const event = decodeEvent(value)
          const outcome = runner.run(event, 1)
          if ((outcome instanceof Promise ? await outcome : outcome).kind === 'ack')
            checksum += event.id.length
        }
        count++
      }
      last = performance.now()
      cpu1 = process.cpuUsage(cpu0)
    },
  })
  await until('the raw consumer to read everything', () => count >= total, 300_000)
  await consumer.disconnect()
  if (checksum === 0) throw new Error('nothing parsed')
  if (handled < total) throw new Error('handlers did not run')
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
  const onEvent = (): void => {
    count++
    if (count === 1) {
      first = performance.now()
      cpu0 = process.cpuUsage()
    } else if (count === total) {
      last = performance.now()
      cpu1 = process.cpuUsage(cpu0)
    }
  }
  await backend.subscribe(
    topic,
    asyncHandlers
      ? async () => {
          onEvent()
        }
      : onEvent,
    { group: `omnibus-${runId}-${round}`, from: 'earliest' },
  )
  await until('the backend to handle everything', () => count >= total, 300_000)
  await backend.disconnect()
  return { wallMs: last - first, cpuMs: (cpu1.user + cpu1.system) / 1000 }
}

await fill()
const raw: Timing[] = []
const codec: Timing[] = []
const core: Timing[] = []
const own: Timing[] = []
// The order rotates every round, so no side always runs first (cold) or right after another.
const sides: Array<(round: number) => Promise<void>> = [
  async (round) => void raw.push(await rawRun(round, 'json')),
  async (round) => void codec.push(await rawRun(round, 'codec')),
  async (round) => void core.push(await rawRun(round, 'core')),
  async (round) => void own.push(await backendRun(round)),
]
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < sides.length; i++)
    await (sides[(round + i) % sides.length] as (r: number) => Promise<void>)(round)
}
const best = (list: Timing[], key: keyof Timing): number => Math.min(...list.map((t) => t[key]))
console.log(
  `consume ${total} events from 3 partitions (best of ${raw.length}, first→last message, ${asyncHandlers ? 'async' : 'sync'} handlers)`,
)
console.log(
  '                                       wall clock           CPU time (this process)   CPU per event',
)
const perEvent = (list: Timing[]): string => `${((best(list, 'cpuMs') * 1000) / total).toFixed(2)} µs`
const row = (label: string, list: Timing[]): void =>
  console.log(
    `  ${label.padEnd(36)} ${rate(total, best(list, 'wallMs')).padEnd(20)} ${rate(total, best(list, 'cpuMs')).padEnd(25)} ${perEvent(list)}`,
  )
row('raw kafkajs eachBatch + JSON.parse', raw)
row('raw kafkajs eachBatch + decodeEvent', codec)
row('  + HandlerRunner.run (core)', core)
row('omnibus subscribe (at-least-once)', own)
const ratio = (base: Timing[], key: keyof Timing): string =>
  `${((best(base, key) / best(own, key)) * 100).toFixed(1)}%`
console.log(
  `  ratio to raw (target >= 80%)         ${ratio(raw, 'wallMs').padEnd(20)} ${ratio(raw, 'cpuMs')}`,
)
console.log(
  `  ratio to raw + decodeEvent           ${ratio(codec, 'wallMs').padEnd(20)} ${ratio(codec, 'cpuMs')}`,
)
console.log(
  `  ratio to raw + core's per-event calls ${ratio(core, 'wallMs').padEnd(19)} ${ratio(core, 'cpuMs')}`,
)
// Each round measured every side once, close together in time: the ratio within a round cancels
// what the machine's load did to both, so the median over rounds is the figure to judge by.
const paired = (base: Timing[]): string => {
  const ratios = own.map((o, i) => (base[i] as Timing).cpuMs / o.cpuMs).sort((a, b) => a - b)
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
  const median = ratios[Math.floor(ratios.length / 2)] as number
  return `${pct(median)} (${pct(ratios[0] as number)}–${pct(ratios[ratios.length - 1] as number)})`
}
console.log(`  per-round ratio by CPU, median (range) over ${own.length} rounds:`)
console.log(`    to raw (target >= 80%)             ${paired(raw)}`)
console.log(`    to raw + decodeEvent               ${paired(codec)}`)
console.log(`    to raw + core's per-event calls    ${paired(core)}`)
console.log('  (CPU time is the steadier figure on a shared machine: it ignores time other processes took.)')
