/**
 * `/metrics` latency with 1,000 topics and 100 agents (and 50 tools, 7 models): an HTTP scrape of
 * a real server, against `/health/live` on the same server as the baseline. Target: < 50 ms.
 *
 *   node --conditions=@omnibus/source packages/serve/bench/metrics.ts [scrapes]
 */
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { startServer } from '../src/server.ts'
import { eventMaker } from './mix.ts'

const SCRAPES = Number(process.argv[2] ?? 200)
const backend = createMemoryBackend()
const running = await startServer({ backend, port: 0, logger: silentLogger })
const make = eventMaker({ topics: 1000, agents: 100, tools: 50, models: 7 })
// Enough events that every topic, agent, tool and model is seen, with histograms filled.
for (let i = 0; i < 200_000; i++) running.serve.aggregator.ingest(make(i, Date.now()))
const snap = running.serve.snapshot()
const topics = running.serve.aggregator.topics(1_000_000).length
console.log(
  `state: ${topics} topics tracked, ${snap.agents.length} agents, ${snap.tools.length} tools, ${snap.models.length} models`,
)

async function time(path: string): Promise<{ p50: number; p99: number; max: number; bytes: number }> {
  const ms: number[] = []
  let bytes = 0
  for (let i = 0; i < SCRAPES; i++) {
    const started = performance.now()
    const res = await fetch(`${running.url}${path}`)
    const body = await res.text()
    ms.push(performance.now() - started)
    bytes = body.length
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}`)
  }
  ms.sort((a, b) => a - b)
  const at = (q: number): number => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] as number
  return { p50: at(0.5), p99: at(0.99), max: ms.at(-1) as number, bytes }
}

const row = (label: string, r: { p50: number; p99: number; max: number; bytes: number }): void => {
  console.log(
    `  ${label.padEnd(16)} p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   max ${r.max.toFixed(2).padStart(6)} ms   ${(r.bytes / 1024).toFixed(0).padStart(5)} KiB`,
  )
}
await time('/metrics') // warm up
console.log(`${SCRAPES} sequential requests each:`)
const base = await time('/health/live')
row('/health/live', base)
const metrics = await time('/metrics')
row('/metrics', metrics)
const snapshot = await time('/api/snapshot')
row('/api/snapshot', snapshot)
console.log(
  `  → /metrics p99 ${metrics.p99.toFixed(1)} ms (target < 50 ms): ${metrics.p99 < 50 ? 'met' : 'NOT met'}`,
)
await running.close()
await backend.disconnect()
