/**
 * Ingest bench: how many events per second the server's ingest path takes on one core while ten
 * SSE clients are connected, against a same-run baseline; then the heap over an hour of simulated
 * time at a realistic mix, to show the aggregates stay bounded.
 *
 *   node --expose-gc --conditions=@omnibus/source packages/serve/bench/ingest.ts [events]
 *
 * Everything (publisher, server, SSE clients) runs in this one process, so on one core.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type OmnibusEvent, silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { Aggregator } from '../src/aggregator.ts'
import { ServeMetrics } from '../src/metrics.ts'
import { createServeHandler } from '../src/server.ts'
import { EventStream } from '../src/sse.ts'
import { openSse } from '../test/helpers.ts'
import { eventMaker, mib } from './mix.ts'

const N = Number(process.argv[2] ?? 600_000)
const SHAPE = { topics: 1000, agents: 100, tools: 50, models: 7 }
const make = eventMaker(SHAPE)
const now = Date.now()
// Made after the hour's run, so its heap figures do not include them.
let events: OmnibusEvent[] = []
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

async function loop(label: string, take: (e: OmnibusEvent) => void): Promise<number> {
  const batch = 1000
  const started = performance.now()
  for (let i = 0; i < N; i += batch) {
    for (let k = 0; k < batch; k++) take(events[(i + k) % events.length] as OmnibusEvent)
    // Let the SSE flush timer and the sockets run between batches, as a backend delivery would.
    await tick()
  }
  const rate = N / ((performance.now() - started) / 1000)
  console.log(`  ${label.padEnd(44)} ${Math.round(rate).toLocaleString('en-US').padStart(12)} events/s`)
  return rate
}

async function pipeline(pattern: string): Promise<void> {
  const backend = createMemoryBackend()
  await backend.connect()
  const aggregator = new Aggregator()
  const metrics = new ServeMetrics(
    aggregator,
    () => ({ sseClients: {}, sseDropped: 0, backendUp: 1, alertFailures: 0, ingestFailures: 0 }),
    { defaultMetrics: false },
  )
  aggregator.setObserver(metrics.observer)
  const stream = new EventStream(backend, silentLogger)
  const server = createServer((req, res) =>
    stream.open(req, res, new URL(req.url ?? '/', 'http://x').searchParams.get('pattern') ?? '**', undefined),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const clients = await Promise.all(
    Array.from({ length: 10 }, () =>
      openSse(`http://127.0.0.1:${port}/?pattern=${encodeURIComponent(pattern)}`),
    ),
  )
  while (stream.clients < 10) await tick()
  console.log(
    `ingest path (aggregator + metrics + SSE fan-out), 10 SSE clients on "${pattern}", ${N.toLocaleString('en-US')} events:`,
  )
  const base = await loop('baseline: same loop, no-op ingest', () => {})
  const rate = await loop('aggregator + metrics + SSE', (e) => {
    aggregator.ingest(e)
    stream.push(e)
  })
  const received = clients.reduce((n, c) => n + c.messages.length, 0)
  console.log(
    `  → ${(rate / 1000).toFixed(0)}k events/s (${((rate / base) * 100).toFixed(1)}% of the loop's own ceiling); ` +
      `SSE messages received ${received.toLocaleString('en-US')}, dropped for slow clients ${stream.dropped.toLocaleString('en-US')}`,
  )
  for (const c of clients) c.close()
  stream.close()
  server.closeAllConnections()
  server.close()
  await backend.disconnect()
}

async function endToEnd(): Promise<void> {
  console.log(
    `end to end over memory:// (publishBatch → backend → serve handler), 10 SSE clients on "tool.*", ${N.toLocaleString('en-US')} events:`,
  )
  const inputs = events.map((e) => ({
    topic: e.topic,
    data: e.data,
    headers: e.headers,
    source: e.source,
    guarantee: 'at-most-once' as const,
  }))
  const run = async (
    label: string,
    attach: (name: string) => Promise<{ count: () => number; close: () => Promise<void> }>,
  ): Promise<number> => {
    const name = `bench-${label.length}-${Date.now()}`
    const publisher = createMemoryBackend({ name })
    await publisher.connect()
    const sink = await attach(name)
    const started = performance.now()
    for (let i = 0; i < N; i += 1000) {
      const batch = []
      for (let k = 0; k < 1000; k++) batch.push(inputs[(i + k) % inputs.length] as (typeof inputs)[number])
      await publisher.publishBatch(batch)
      if (i % 20_000 === 0) await tick()
    }
    while (sink.count() < N) await tick()
    const rate = N / ((performance.now() - started) / 1000)
    console.log(`  ${label.padEnd(44)} ${Math.round(rate).toLocaleString('en-US').padStart(12)} events/s`)
    await sink.close()
    await publisher.disconnect()
    return rate
  }
  const base = await run('baseline: no-op "**" subscriber', async (name) => {
    const b = createMemoryBackend({ name })
    await b.connect()
    let n = 0
    await b.subscribe(
      '**',
      () => {
        n++
      },
      { guarantee: 'at-most-once' },
    )
    return { count: () => n, close: () => b.disconnect() }
  })
  const rate = await run('createServeHandler (aggregator, metrics, SSE)', async (name) => {
    const b = createMemoryBackend({ name })
    const serve = await createServeHandler({
      backend: b,
      logger: silentLogger,
      metrics: { defaultMetrics: false },
    })
    const server = createServer(serve.handler)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const clients = await Promise.all(
      Array.from({ length: 10 }, () => openSse(`http://127.0.0.1:${port}/events/stream?pattern=tool.*`)),
    )
    return {
      count: () => serve.aggregator.totals().events,
      close: async () => {
        for (const c of clients) c.close()
        await serve.close()
        server.closeAllConnections()
        server.close()
        await b.disconnect()
      },
    }
  })
  console.log(
    `  → ${(rate / 1000).toFixed(0)}k events/s end to end (${((rate / base) * 100).toFixed(1)}% of the backend's own delivery ceiling)`,
  )
}

async function hour(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    console.log('memory: run with node --expose-gc to measure the heap')
    return
  }
  const perSecond = 1000
  let t = Date.UTC(2026, 0, 1)
  const aggregator = new Aggregator({ now: () => t })
  const metrics = new ServeMetrics(
    aggregator,
    () => ({ sseClients: {}, sseDropped: 0, backendUp: 1, alertFailures: 0, ingestFailures: 0 }),
    { defaultMetrics: false },
  )
  aggregator.setObserver(metrics.observer)
  const backend = createMemoryBackend()
  const stream = new EventStream(backend, silentLogger)
  // Name spaces larger than every cap, so eviction is exercised: 5,000 topics, 3,000 agents, 800 tools.
  const wide = eventMaker({ topics: 5000, agents: 3000, tools: 800, models: 7 })
  console.log(
    `heap over one simulated hour: ${perSecond} events per simulated second (${(perSecond * 3600).toLocaleString('en-US')} events), names beyond every cap:`,
  )
  const heap = (): number => {
    gc()
    return process.memoryUsage().heapUsed
  }
  const start = heap()
  const samples: Array<[number, number]> = []
  let i = 0
  for (let minute = 1; minute <= 60; minute++) {
    for (let s = 0; s < 60; s++) {
      for (let k = 0; k < perSecond; k++) {
        const e = wide(i++, t)
        aggregator.ingest(e)
        stream.push(e)
      }
      t += 1000
    }
    if (minute % 5 === 0) {
      aggregator.snapshot()
      await metrics.text()
      const h = heap()
      samples.push([minute, h])
      console.log(
        `  minute ${String(minute).padStart(2)}: heap ${mib(h).padStart(6)} MiB (${h >= start ? '+' : ''}${mib(h - start)} MiB since start)`,
      )
    }
  }
  const [m1, h1] = samples[5] as [number, number]
  const [m2, h2] = samples.at(-1) as [number, number]
  console.log(
    `  → growth from minute ${m1} to ${m2}: ${((h2 - h1) / (m2 - m1) / 1024).toFixed(1)} KiB per simulated minute`,
  )
  stream.close()
}

// The hour first, so the heap it reports holds nothing left over from the throughput runs.
await hour()
events = Array.from({ length: 100_000 }, (_, i) => make(i, now + i))
await pipeline('**')
await pipeline('error.*')
await endToEnd()
