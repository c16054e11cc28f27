/**
 * Delayed delivery precision of any backend: how late a delayed event reaches its handler
 * (handler start − `deliverAt`, in ms), p50/p99/max, for N events at each of a few delays. Events
 * of one delay are published together with `publishBatch` (so the tail includes delivering a burst
 * that comes due at once) by one backend instance and consumed by another, in a group where the
 * backend has groups, at concurrency 16 so the handler is not the queue. A handler run before
 * `deliverAt` is counted as early (it must stay 0).
 *
 * Run from the repository root (backend packages resolve from there):
 *   node --conditions=@omnibus/source packages/conformance/bench/delay-precision.ts <url> [events] [delays]
 * e.g. `… delay-precision.ts redis://127.0.0.1:6379 200 250,1000,3000`. Defaults: 200 events per
 * delay, delays 250, 1000 and 3000 ms. Use a named bus for memory (`memory://bench`), a file for
 * SQLite (`sqlite:///tmp/bench.db`).
 */
import { randomUUID } from 'node:crypto'
import { createBackend, type EventBackend, type EventInput, silentLogger } from '@omnibus/core'

const url = process.argv[2]
if (url === undefined) {
  console.error('usage: delay-precision.ts <backend url> [events per delay] [delays ms, comma-separated]')
  process.exit(2)
}
const N = Number(process.argv[3] ?? 200)
const DELAYS = (process.argv[4] ?? '250,1000,3000').split(',').map(Number)
const BATCH = 100

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function open(): Promise<EventBackend> {
  const b = await createBackend(url as string, { logger: silentLogger })
  await b.connect()
  return b
}

const pub = await open()
const sub = await open()
const run = randomUUID().slice(0, 8)
const topic = `bench.delay.${run}`
const late = new Map<number, number[]>()
let probes = 0
const seen = new Set<string>()
await sub.subscribe(
  topic,
  (event) => {
    const at = Date.now()
    const d = event.data as { delay?: number; probe?: boolean }
    if (d.probe === true) {
      probes++
      return
    }
    if (seen.has(event.id)) return
    seen.add(event.id)
    late.get(d.delay as number)?.push(at - (event.deliverAt ?? Number.NaN))
  },
  { concurrency: 16, ...(sub.capabilities.groups ? { group: `bench-delay-${run}` } : {}) },
)
// Readiness: the subscription receives before anything delayed is published.
for (let i = 0; probes === 0; i++) {
  if (i > 600) throw new Error('the subscription received no probe within a minute')
  await pub.publish({ topic, data: { probe: true } })
  await new Promise((resolve) => setTimeout(resolve, 100))
}

console.log(
  `delayed delivery precision on ${pub.name} (${N} events per delay; lateness = handler start - deliverAt, ms; Node ${process.version})`,
)
console.log('  delay ms      p50      p99      max   early')
for (const delay of DELAYS) {
  const got: number[] = []
  late.set(delay, got)
  for (let i = 0; i < N; i += BATCH) {
    const inputs: EventInput[] = []
    for (let k = i; k < Math.min(N, i + BATCH); k++)
      inputs.push({ topic, data: { delay, k }, delayMs: delay })
    const r = await pub.publishBatch(inputs)
    if (r.failed > 0) {
      const first = r.results.find((e) => !e.ok)
      throw new Error(
        `publishBatch: ${r.failed} failed (${first !== undefined && !first.ok ? first.error.message : ''})`,
      )
    }
  }
  await until(
    () => got.length >= N,
    delay + 60_000,
    `${N} events delayed by ${delay} ms (${got.length} so far)`,
  )
  const sorted = [...got].sort((a, b) => a - b)
  const fmt = (n: number) => n.toFixed(0).padStart(8)
  console.log(
    `  ${String(delay).padStart(8)} ${fmt(percentile(sorted, 50))} ${fmt(percentile(sorted, 99))} ${fmt(sorted.at(-1) ?? Number.NaN)} ${String(sorted.filter((l) => l < 0).length).padStart(7)}`,
  )
}
await Promise.all([pub.disconnect({ drainTimeoutMs: 1000 }), sub.disconnect({ drainTimeoutMs: 1000 })])
