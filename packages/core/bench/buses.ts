/**
 * Bus benchmarks. Run from the repository root:
 *   node --conditions=@omnibus/source packages/core/bench/buses.ts [--quick]
 *
 * Prints, against a baseline loop measured in the same run:
 * - `emit` cost with no subscribers, and with the topic sampled out (target ≥ 10M calls/s);
 * - emit → subscriber through the in-process memory backend (target ≥ 1M events/s);
 * - `emit` latency p50/p99/max while the only consumer is stalled, and peak memory;
 * - `request` round trip p50/p99 on memory and on SQLite (two backend instances on one file).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { AgentMessageBus, createBackend, ObservabilityBus, silentLogger } from '../src/index.ts'

const quick = process.argv.includes('--quick')
const scale = quick ? 0.2 : 1
const yieldLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function rate(n: number, ms: number): string {
  const perSec = (n / ms) * 1000
  return perSec >= 1e6 ? `${(perSec / 1e6).toFixed(2)}M/s` : `${(perSec / 1e3).toFixed(1)}k/s`
}

function pct(sorted: ArrayLike<number>, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

// Timed in chunks so the background flusher gets the event loop between chunks, as it would in
// an application; only the time spent inside emit calls is counted as emit cost.
async function timeEmits(
  n: number,
  chunk: number,
  body: (i: number) => void,
  behind: () => boolean = () => false,
): Promise<number> {
  let spent = 0
  for (let done = 0; done < n; done += chunk) {
    const end = Math.min(n, done + chunk)
    const t0 = performance.now()
    for (let i = done; i < end; i++) body(i)
    spent += performance.now() - t0
    await yieldLoop()
    while (behind()) await yieldLoop()
  }
  return spent
}

async function baseline(n: number): Promise<number> {
  const sink: Array<{ topic: string; data: number; time: number }> = new Array(10_000)
  return timeEmits(n, 10_000, (i) => {
    sink[i % 10_000] = { topic: 'bench.x', data: i, time: Date.now() }
  })
}

async function emitCost(): Promise<void> {
  const n = Math.round(10_000_000 * scale)
  const base = await baseline(n)
  let loop = 0
  const tl = performance.now()
  for (let i = 0; i < n; i++) loop += i
  console.log(
    `empty loop iteration: ${(((performance.now() - tl) / n) * 1e6).toFixed(1)} ns (${loop > 0 ? 'machine speed reference' : ''})`,
  )
  console.log(`baseline (object + Date.now() into an array): ${rate(n, base)}`)

  for (const [label, sampling] of [
    ['emit, no subscribers', undefined],
    ['emit, sampled out (rate 0)', { rates: { 'bench.**': 0 } }],
  ] as const) {
    const backend = await createBackend('memory://bench-emit')
    const bus = new ObservabilityBus(backend, {
      logger: silentLogger,
      ...(sampling === undefined ? {} : { sampling }),
    })
    await bus.start()
    await timeEmits(
      100_000,
      5000,
      (i) => bus.emit('bench.warm', i),
      () => bus.stats().buffered > 5000,
    )
    await bus.flush()
    const warm = bus.stats()
    const payload = { v: 1 }
    const ms = await timeEmits(
      n,
      5000,
      () => {
        bus.emit('bench.metric', payload)
      },
      () => bus.stats().buffered > 5000,
    )
    const s = bus.stats()
    console.log(
      `${label}: ${rate(n, ms)} (${((ms / n) * 1e6).toFixed(0)} ns/call, ${(base / ms).toFixed(2)}× the baseline's rate; ` +
        `flushed ${s.flushed - warm.flushed}, sampled out ${s.sampledOut - warm.sampledOut}, dropped ${s.droppedTotal - warm.droppedTotal})`,
    )
    await bus.close()
    await backend.disconnect()
  }
}

async function emitToSubscriber(): Promise<void> {
  const n = Math.round(2_000_000 * scale)
  const backend = await createBackend('memory://bench-deliver')
  const bus = new ObservabilityBus(backend, { logger: silentLogger, bufferSize: 50_000, batchSize: 5000 })
  await bus.start()
  let received = 0
  await bus.subscribe('bench.**', () => {
    received++
  })
  const payload = { v: 1 }
  const t0 = performance.now()
  for (let done = 0; done < n; done += 5000) {
    for (let i = 0; i < 5000; i++) bus.emit('bench.flow', payload)
    // Let the flusher and the subscriber keep up rather than measuring drops.
    while (bus.stats().buffered > 40_000) await yieldLoop()
    await yieldLoop()
  }
  while (received + bus.stats().droppedTotal < n && performance.now() - t0 < 60_000) await yieldLoop()
  const ms = performance.now() - t0
  console.log(
    `emit → subscriber (memory backend, at-most-once): ${rate(received, ms)} (${received} of ${n} received, dropped ${bus.stats().droppedTotal})`,
  )
  await bus.close()
  await backend.disconnect()
}

async function stalledConsumer(): Promise<void> {
  const n = Math.round(3_000_000 * scale)
  const backend = await createBackend('memory://bench-stall')
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    bufferSize: 10_000,
    overflow: 'drop-oldest',
  })
  await bus.start()
  const never = new Promise<void>(() => {})
  await bus.subscribe('bench.**', () => never)
  global.gc?.()
  const before = process.memoryUsage()
  let peakHeap = before.heapUsed
  let peakRss = before.rss
  const lat = new Float64Array(n)
  const payload = { v: 1 }
  const now = process.hrtime.bigint
  for (let done = 0; done < n; done += 10_000) {
    const end = Math.min(n, done + 10_000)
    for (let i = done; i < end; i++) {
      const t = now()
      bus.emit('bench.stalled', payload)
      lat[i] = Number(now() - t)
    }
    const m = process.memoryUsage()
    if (m.heapUsed > peakHeap) peakHeap = m.heapUsed
    if (m.rss > peakRss) peakRss = m.rss
    await yieldLoop()
  }
  lat.sort()
  // The clock read itself costs something: measure it to report emit net of it.
  const clock = new Float64Array(100_000)
  for (let i = 0; i < clock.length; i++) {
    const t = now()
    clock[i] = Number(now() - t)
  }
  clock.sort()
  const s = bus.stats()
  console.log(
    `stalled consumer: emit p50 ${pct(lat, 50)} ns, p99 ${pct(lat, 99)} ns, p99.9 ${pct(lat, 99.9)} ns, max ${((lat[lat.length - 1] as number) / 1000).toFixed(0)} µs ` +
      `(clock read p50 ${pct(clock, 50)} ns); ${n} emits, flushed ${s.flushed}, dropped ${s.dropped['drop-oldest']} (drop-oldest), buffered ${s.buffered}/${s.bufferCapacity}`,
  )
  console.log(
    `stalled consumer memory: heap ${mb(before.heapUsed)} → peak ${mb(peakHeap)}, rss ${mb(before.rss)} → peak ${mb(peakRss)}`,
  )
  await bus.close()
  await backend.disconnect({ drainTimeoutMs: 0 })
}

async function requestRoundTrip(label: string, url: string, n: number): Promise<void> {
  const a = await createBackend(url)
  const b = await createBackend(url)
  const requester = new AgentMessageBus(a, { agentId: 'bench-requester' })
  const responder = new AgentMessageBus(b, { agentId: 'bench-responder' })
  await requester.start()
  await responder.start()
  await responder.subscribeAgent('echo', async (msg, ctx) => {
    await ctx.reply(msg.data)
  })
  for (let i = 0; i < 20; i++) await requester.request('echo', 'ping', i, { timeoutMs: 10_000 })
  const lat: number[] = []
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await requester.request('echo', 'ping', i, { timeoutMs: 10_000 })
    lat.push(performance.now() - t)
  }
  const ms = performance.now() - t0
  lat.sort((x, y) => x - y)
  console.log(
    `request round trip (${label}): p50 ${pct(lat, 50).toFixed(3)} ms, p99 ${pct(lat, 99).toFixed(3)} ms, ${rate(n, ms)} sequential`,
  )
  await requester.close()
  await responder.close()
  await a.disconnect()
  await b.disconnect()
}

console.log(`node ${process.version}${quick ? ' (quick)' : ''}`)
await emitCost()
await emitToSubscriber()
await stalledConsumer()
await requestRoundTrip('memory', 'memory://bench-request', Math.round(5000 * scale))
const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-bench-'))
try {
  await requestRoundTrip(
    'sqlite, two backend instances',
    `sqlite://${path.join(dir, 'bench.db')}`,
    Math.round(500 * scale),
  )
} finally {
  rmSync(dir, { recursive: true, force: true })
}
