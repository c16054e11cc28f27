/**
 * Publish→handler throughput of the memory backend, against a bare EventEmitter delivering the same
 * data to the same handlers in the same run.
 *
 *   node --conditions=@omnibus/source packages/memory/bench/throughput.ts [events]
 *
 * Scenarios: one exact subscription; 1,000 wildcard subscriptions of mixed shapes of which a few
 * match each topic. Events go through `publishBatch` (batches of 1,000) unless the row says
 * otherwise; handlers are synchronous and count. Payload checks (encodability and the 1 MiB
 * limit) are on, as by default, unless the row says otherwise.
 */
import { EventEmitter } from 'node:events'
import { compilePattern, createEvent, type EventBackend, type EventInput } from '@omnibus/core'
import { createMemoryBackend, type MemoryBackendOptions } from '../src/index.ts'

const TOTAL = Number(process.argv[2] ?? 1_000_000)
const BATCH = 1000
const RUNS = 3

// The run with the median wall time (the CPU time reported is that run's).
function median(runs: readonly Timing[]): Timing {
  return [...runs].sort((a, b) => a.wallMs - b.wallMs)[Math.floor(runs.length / 2)] as Timing
}
const silent = { debug() {}, info() {}, warn() {}, error() {} }

interface Row {
  readonly name: string
  readonly eventsPerSec: number
  readonly deliveriesPerSec: number
  /** Events per second of CPU time used by the process: what one core does when not shared. */
  readonly eventsPerCpuSec: number
}

interface Timing {
  readonly wallMs: number
  readonly cpuMs: number
}

function startTimer(): () => Timing {
  const wall = performance.now()
  const cpu = process.cpuUsage()
  return () => {
    const used = process.cpuUsage(cpu)
    return { wallMs: performance.now() - wall, cpuMs: (used.user + used.system) / 1000 }
  }
}

async function settle(done: () => boolean): Promise<void> {
  // Bounded wait for the last deliveries (they run in microtasks right after publishBatch).
  const deadline = Date.now() + 30_000
  while (!done()) {
    if (Date.now() > deadline) throw new Error('deliveries did not complete within 30 s')
    await new Promise((r) => setImmediate(r))
  }
}

function topicsFor(distinct: number): string[] {
  const topics: string[] = []
  for (let i = 0; i < distinct; i++)
    topics.push(i % 2 === 0 ? `bench.orders${i}.done` : `bench.orders${i}.start`)
  return topics
}

/** 1,000 patterns of mixed shapes; 4 of them match every `bench.ordersN.done`, 3 every `.start`. */
function wildcardPatterns(): string[] {
  const patterns = ['bench.*.done', 'bench.**', '*.*.done', 'bench.orders*.{done,start}', 'bench.*.start']
  for (let i = 0; patterns.length < 1000; i++) {
    switch (i % 5) {
      case 0:
        patterns.push(`svc${i}.orders.created`)
        break
      case 1:
        patterns.push(`svc${i}.*.created`)
        break
      case 2:
        patterns.push(`*.svc${i}`)
        break
      case 3:
        patterns.push(`svc${i}.**`)
        break
      default:
        patterns.push(`svc${i}.read_*.x`)
    }
  }
  return patterns
}

async function runMemory(
  name: string,
  patterns: readonly string[],
  topics: readonly string[],
  options: MemoryBackendOptions,
  mode: 'batch' | 'await',
): Promise<Row> {
  const backend: EventBackend = createMemoryBackend({ queueCapacity: 100_000, logger: silent, ...options })
  await backend.connect()
  let delivered = 0
  for (const p of patterns) {
    await backend.subscribe(p, () => {
      delivered++
    })
  }
  const perTopic = topics.map((t) => patterns.filter((p) => compilePattern(p)(t)).length)
  const expected = (count: number) => {
    let sum = 0
    for (let n = 0; n < count; n++) sum += perTopic[n % topics.length] as number
    return sum
  }
  const inputs: EventInput[][] = []
  for (let b = 0; b < TOTAL / BATCH; b++) {
    const batch: EventInput[] = []
    for (let i = 0; i < BATCH; i++) {
      const n = b * BATCH + i
      batch.push({ topic: topics[n % topics.length] as string, data: { n, kind: 'bench' } })
    }
    inputs.push(batch)
  }
  const once = async (count: number): Promise<Timing> => {
    delivered = 0
    const stop = startTimer()
    for (let b = 0; b < count / BATCH; b++) {
      const batch = inputs[b] as EventInput[]
      if (mode === 'batch') await backend.publishBatch(batch)
      else for (const e of batch) await backend.publish(e)
    }
    const want = expected(count)
    await settle(() => delivered >= want)
    const timing = stop()
    if (delivered !== want) throw new Error(`${name}: ${delivered} deliveries, expected ${want}`)
    return timing
  }
  await once(TOTAL) // warm-up: lets the JIT settle
  const runs: Timing[] = []
  for (let i = 0; i < RUNS; i++) runs.push(await once(TOTAL))
  const t = median(runs)
  await backend.disconnect()
  return row(name, t, expected(TOTAL))
}

function runEmitter(
  name: string,
  patterns: readonly string[],
  topics: readonly string[],
  envelopes = false,
): Row {
  // The EventEmitter has no wildcards: the handlers that the memory backend's patterns select for
  // each topic are registered on that topic directly, and every other pattern gets a listener of
  // its own that is never emitted to, so both sides hold as many handlers.
  const ee = new EventEmitter()
  ee.setMaxListeners(0)
  let delivered = 0
  for (const p of patterns) {
    const matches = compilePattern(p)
    const hits = topics.filter((t) => matches(t))
    for (const t of hits) {
      ee.on(t, () => {
        delivered++
      })
    }
    if (hits.length === 0) ee.on(`never.${p}`, () => {})
  }
  const perTopic = topics.map((t) => ee.listenerCount(t))
  const expected = (count: number) => {
    let sum = 0
    for (let n = 0; n < count; n++) sum += perTopic[n % topics.length] as number
    return sum
  }
  const data: unknown[] = []
  for (let n = 0; n < TOTAL; n++) data.push({ n, kind: 'bench' })
  const once = (count: number): Timing => {
    delivered = 0
    const stop = startTimer()
    if (envelopes) {
      // The same envelope the backend builds (id, time, topic check), then a plain emit: what is
      // left between this row and the backend's is the queueing and the handler context.
      const defaults = { time: Date.now() }
      for (let n = 0; n < count; n++) {
        const topic = topics[n % topics.length] as string
        ee.emit(topic, createEvent({ topic, data: data[n] }, defaults))
      }
    } else {
      for (let n = 0; n < count; n++) ee.emit(topics[n % topics.length] as string, data[n])
    }
    const timing = stop()
    if (delivered !== expected(count)) throw new Error('EventEmitter baseline lost deliveries')
    return timing
  }
  once(TOTAL)
  const runs: Timing[] = []
  for (let i = 0; i < RUNS; i++) runs.push(once(TOTAL))
  return row(name, median(runs), expected(TOTAL))
}

function row(name: string, t: Timing, deliveries: number): Row {
  return {
    name,
    eventsPerSec: (TOTAL / t.wallMs) * 1000,
    deliveriesPerSec: (deliveries / t.wallMs) * 1000,
    eventsPerCpuSec: (TOTAL / t.cpuMs) * 1000,
  }
}

const exactTopics = ['bench.exact']
const wildTopics = topicsFor(64)
const patterns = wildcardPatterns()

const rows: Array<Row & { baseline?: Row; target?: number }> = []
const eeExact = runEmitter('EventEmitter, 1 listener', ['bench.exact'], exactTopics)
rows.push({ ...eeExact })
rows.push({
  ...runEmitter('EventEmitter + createEvent envelope', ['bench.exact'], exactTopics, true),
  baseline: eeExact,
})
rows.push({
  ...(await runMemory('memory, 1 exact subscription', ['bench.exact'], exactTopics, {}, 'batch')),
  baseline: eeExact,
  target: 2_000_000,
})
rows.push({
  ...(await runMemory(
    'memory, 1 exact, validatePayloads off',
    ['bench.exact'],
    exactTopics,
    { validatePayloads: false },
    'batch',
  )),
  baseline: eeExact,
})
rows.push({
  ...(await runMemory('memory, 1 exact, awaited publish()', ['bench.exact'], exactTopics, {}, 'await')),
  baseline: eeExact,
})
const eeWild = runEmitter('EventEmitter, 1,000 listeners', patterns, wildTopics)
rows.push({ ...eeWild })
rows.push({
  ...(await runMemory('memory, 1,000 wildcard subscriptions', patterns, wildTopics, {}, 'batch')),
  baseline: eeWild,
  target: 1_000_000,
})

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
const [load1] = (await import('node:os')).loadavg()
console.log(
  `events per run: ${fmt(TOTAL)}, batch ${BATCH}, median of ${RUNS} runs after a warm-up run, node ${process.version}, load average ${load1?.toFixed(1)} on ${(await import('node:os')).availableParallelism()} cores`,
)
const header = ['scenario'.padEnd(40), 'events/s'.padStart(12), 'deliveries/s'.padStart(14)]
header.push('events/CPU-s'.padStart(14), 'vs EventEmitter'.padStart(16), 'target: wall / CPU'.padStart(30))
console.log(header.join(' '))
const verdict = (value: number, target: number) => (value >= target ? 'met' : 'missed')
for (const r of rows) {
  // The ratio compares CPU-time throughputs: it does not move with the machine's other load.
  const ratio =
    r.baseline === undefined ? '' : `${(r.eventsPerCpuSec / r.baseline.eventsPerCpuSec).toFixed(3)}x`
  const target =
    r.target === undefined
      ? ''
      : `${fmt(r.target)}: ${verdict(r.eventsPerSec, r.target)} / ${verdict(r.eventsPerCpuSec, r.target)}`
  console.log(
    [
      r.name.padEnd(40),
      fmt(r.eventsPerSec).padStart(12),
      fmt(r.deliveriesPerSec).padStart(14),
      fmt(r.eventsPerCpuSec).padStart(14),
      ratio.padStart(16),
      target.padStart(30),
    ].join(' '),
  )
}
console.log(
  'events/s is wall-clock; events/CPU-s divides by the CPU time the process used, which is what one\n' +
    'core delivers when the machine is not shared (the two agree on an idle machine).',
)
