/**
 * Precision of delayed delivery on SQS: how late a delayed event reaches its handler (handler
 * start − `deliverAt`), p50/p99/max, for
 * - DelaySeconds: `publish({ delayMs })` on a standard queue (the whole seconds as `DelaySeconds`,
 *   the last fraction waited by the consumer);
 * - re-send: the same envelopes written without `DelaySeconds` (`publishRaw`), so the consumer
 *   receives each at once and sends it again with `DelaySeconds`, as it does for delays over 900 s;
 * - FIFO hold: `publish({ delayMs })` on FIFO queues (no per-message delay), hidden by a
 *   visibility change.
 * Delays are spread uniformly over [`BENCH_MIN_MS`, `BENCH_MAX_MS`] and published in random
 * order; the ways alternate round by round on the same server.
 *
 *   node --conditions=@omnibus/source packages/sqs/bench/delay.ts
 * Env: OMNIBUS_SQS_ENDPOINT (default http://127.0.0.1:9324), BENCH_N (events per round, default
 * 200), BENCH_ROUNDS (default 3), BENCH_MIN_MS (default 1000), BENCH_MAX_MS (default 8000).
 */
import { randomUUID } from 'node:crypto'
import { createEvent, type OmnibusEvent, silentLogger } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { createSqsBackend, type SqsBackend } from '../src/index.ts'

const endpoint = process.env.OMNIBUS_SQS_ENDPOINT ?? 'http://127.0.0.1:9324'
const N = Number(process.env.BENCH_N ?? 200)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const MIN_MS = Number(process.env.BENCH_MIN_MS ?? 1000)
const MAX_MS = Number(process.env.BENCH_MAX_MS ?? 8000)
const prefix = `benchdelay${Math.random().toString(36).slice(2, 7)}`

function make(fifo: boolean): SqsBackend {
  return createSqsBackend({
    endpoint,
    queuePrefix: prefix,
    fifo,
    discoveryIntervalMs: 500,
    waitTimeSeconds: 2,
    logger: silentLogger,
  })
}
const standard = make(false)
const fifo = make(true)
await standard.connect()
await fifo.connect()

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

type Way = 'DelaySeconds' | 're-send' | 'FIFO hold'

async function round(way: Way): Promise<number[]> {
  const b = way === 'FIFO hold' ? fifo : standard
  const run = randomUUID().slice(0, 8)
  const topic = `bench.delay.${run}`
  const lateness: number[] = []
  let early = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  const sub = await b.subscribe(
    topic,
    (event: OmnibusEvent) => {
      const late = Date.now() - (event.deliverAt as number)
      if (late < 0) early++
      lateness.push(late)
      if (lateness.length === N) done()
    },
    { group: `bench-${run}`, concurrency: 32 },
  )
  const delays = Array.from({ length: N }, () => MIN_MS + Math.random() * (MAX_MS - MIN_MS))
  await Promise.all(
    delays.map((delayMs, i) => {
      // FIFO: one key per event, so no event waits behind another's delay.
      if (way !== 're-send') return b.publish({ topic, data: null, delayMs, partitionKey: `k${i}` })
      return b.publishRaw(topic, encodeEvent(createEvent({ topic, data: null, delayMs })))
    }),
  )
  await all
  await sub.unsubscribe()
  if (early > 0) console.log(`  ${early} events reached their handler before deliverAt`)
  return lateness.sort((a, b) => a - b)
}

console.log(
  `delayed delivery on SQS at ${endpoint}: ${N} events per round, delays ${MIN_MS}-${MAX_MS} ms, ${ROUNDS} rounds`,
)
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const way of ['DelaySeconds', 're-send', 'FIFO hold'] as const) {
      const l = await round(way)
      console.log(
        `round ${r} ${way.padEnd(12)} lateness ms: p50 ${percentile(l, 50)}  p99 ${percentile(l, 99)}  max ${l.at(-1)}`,
      )
    }
  }
} finally {
  await standard.deleteAllQueues()
  await standard.disconnect()
  await fifo.disconnect()
}
