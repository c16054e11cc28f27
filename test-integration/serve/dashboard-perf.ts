/**
 * How the dashboard holds up under a fast snapshot stream: serves the real page with a stand-in
 * `/api/live` that pushes a synthetic snapshot of a busy system (100 agents, 40 tools, 8 models, 20
 * topic families, a full error feed, dead letters and a firing alert) RATE times a second, plus an
 * event tail at the same rate, opens it in Chromium and prints the JS heap, DOM size and the main
 * thread's busy time every 10 s.
 *
 *   node --conditions=@omnibus/source test-integration/serve/dashboard-perf.ts [seconds=60] [rate=10] [shot.png]
 *
 * With a third argument it also saves a screenshot of the page at the end.
 *
 * The server is a stand-in because the real one pushes a snapshot every ~500 ms: this drives the
 * page at a chosen rate with snapshots as large as the server's bounds allow.
 */
import { readFileSync } from 'node:fs'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Snapshot } from '@omnibus/serve'
import { chromium } from 'playwright-core'
import { CHROMIUM_ARGS, chromiumPath, uplotFile } from './browser.ts'

const seconds = Number(process.argv[2] ?? 60)
const rate = Number(process.argv[3] ?? 10)
const shot = process.argv[4]
const dashboard = fileURLToPath(new URL('../../packages/serve/src/dashboard/', import.meta.url))

const families = Array.from(
  { length: 20 },
  (_, i) => ['tool', 'agent', 'model', 'error', 'metric'][i] ?? `fam${i}`,
)
const startedAt = Date.now()
let tick = 0

function snapshot(): Snapshot {
  tick++
  const now = Date.now()
  const agents = Array.from({ length: 100 }, (_, i) => ({
    agentId: `agent-${i}`,
    lastSeen: now - ((i * 997 + tick * 13) % 90_000),
    inFlight: (i + tick) % 4,
    requests: tick * (i + 1),
    errors: Math.floor((tick * i) / 500),
    p50Ms: 20 + (i % 7) * 3 + (tick % 5),
    p99Ms: 200 + (i % 11) * 20 + (tick % 17),
    inputTokens: tick * 100 * (1 + (i % 5)),
    outputTokens: tick * 30 * (1 + (i % 3)),
    costUsd: tick * 0.0004 * (1 + (i % 4)),
  }))
  const models = Array.from({ length: 8 }, (_, i) => ({
    model: `model-${i}`,
    provider: 'synthetic',
    calls: tick * (i + 1),
    inputTokens: tick * 1000 * (i + 1),
    outputTokens: tick * 300 * (i + 1),
    costUsd: tick * 0.003 * (i + 1),
    priced: i !== 7,
  }))
  const bucket = 10_000
  const cost = Array.from({ length: 30 }, (_, j) => {
    const t = Math.floor(now / bucket) * bucket - (29 - j) * bucket
    const byModel: Record<string, number> = {}
    const byAgent: Record<string, number> = {}
    for (let m = 0; m < 8; m++) byModel[`model-${m}`] = 0.01 * (m + 1) * (1 + Math.sin(t / 60_000 + m))
    for (let a = 0; a < 12; a++) byAgent[`agent-${a}`] = 0.004 * (a + 1) * (1 + Math.cos(t / 45_000 + a))
    return { t, totalUsd: Object.values(byModel).reduce((x, y) => x + y, 0), byModel, byAgent }
  })
  return {
    at: now,
    startedAt,
    backend: { name: 'sqlite', healthy: true, latencyMs: 0.4, detail: undefined, checkedAt: now },
    totals: {
      events: tick * 5000,
      errors: tick,
      deadLetters: 25,
      toolCalls: tick * 400,
      toolErrors: tick * 3,
      requests: tick * 100,
      replies: tick * 99,
      modelCalls: tick * 36,
      inputTokens: tick * 36_000,
      outputTokens: tick * 10_800,
      costUsd: tick * 0.108,
    },
    families: families.map((family, i) => ({
      family,
      perSecond: 1000 / (i + 1) + 100 * Math.sin(tick / 10 + i),
      total: tick * 1000,
    })),
    topics: [],
    agents,
    tools: Array.from({ length: 40 }, (_, i) => ({
      tool: `tool_${i}`,
      calls: tick * (40 - i),
      errors: Math.floor(tick / (i + 2)),
      errorRate: 1 / (i + 2),
      p50Ms: 5 + i,
      p95Ms: 50 + i * 4 + (tick % 9),
    })),
    models,
    cost,
    errors: Array.from({ length: 50 }, (_, i) => ({
      id: `err-${tick - i}`,
      topic: 'error.raised',
      time: now - i * 100,
      source: `agent-${i % 10}`,
      name: 'TimeoutError',
      message: `call ${tick - i} timed out after 30 s`,
    })),
    deadLetters: Array.from({ length: 25 }, (_, i) => ({
      id: `dlq-${i}`,
      time: startedAt + i * 1000,
      originalTopic: `agent.worker-${i}.task`,
      originalId: `orig-${i}`,
      group: 'workers',
      reason: 'failed 5 of 5 attempts: Error: boom',
      attempts: 5,
      state: i % 3 === 0 ? 'redriven' : 'pending',
    })),
    alerts: [
      {
        name: 'tool-error-rate',
        severity: 'critical',
        state: 'firing',
        since: startedAt,
        value: 0.5,
        message: 'tool error rate 50% over 5 min (threshold 5%)',
      },
    ],
  } as Snapshot
}

function sse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
  res.write(': open\n\n')
}

const streams = new Set<ServerResponse>()
const tails = new Set<ServerResponse>()
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x')
  const file = (p: string, type: string) => {
    res.writeHead(200, { 'content-type': type })
    res.end(readFileSync(p))
  }
  if (url.pathname === '/') return file(path.join(dashboard, 'index.html'), 'text/html')
  if (url.pathname === '/assets/app.js') return file(path.join(dashboard, 'app.js'), 'text/javascript')
  if (url.pathname === '/assets/style.css') return file(path.join(dashboard, 'style.css'), 'text/css')
  if (url.pathname === '/assets/uplot.iife.min.js')
    return file(uplotFile('uPlot.iife.min.js'), 'text/javascript')
  if (url.pathname === '/assets/uPlot.min.css') return file(uplotFile('uPlot.min.css'), 'text/css')
  if (url.pathname === '/api/snapshot') {
    res.writeHead(200, { 'content-type': 'application/json' })
    return res.end(JSON.stringify(snapshot()))
  }
  if (url.pathname === '/api/live') {
    sse(res)
    streams.add(res)
    req.on('close', () => streams.delete(res))
    return
  }
  if (url.pathname === '/events/stream') {
    sse(res)
    tails.add(res)
    req.on('close', () => tails.delete(res))
    return
  }
  res.writeHead(404).end()
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
console.log(`stand-in server: ${base}`)

let sent = 0
const pump = setInterval(() => {
  const data = `data: ${JSON.stringify(snapshot())}\n\n`
  for (const r of streams) r.write(data)
  for (let i = 0; i < 5; i++) {
    const event = {
      id: `e-${sent}-${i}`,
      topic: `tool.${i % 2 ? 'start' : 'end'}`,
      time: Date.now(),
      source: `agent-${i}`,
      data: { tool: `tool_${i}`, callId: `${sent}-${i}`, success: true, durationMs: 12.5 },
      headers: {},
    }
    for (const r of tails) r.write(`id: ${event.id}\ndata: ${JSON.stringify(event)}\n\n`)
  }
  sent++
}, 1000 / rate)

const browser = await chromium.launch({
  executablePath: chromiumPath() ?? '/usr/bin/chromium',
  args: [...CHROMIUM_ARGS, '--enable-precise-memory-info', '--js-flags=--expose-gc'],
})
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } })
const problems: string[] = []
page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
page.on('console', (m) => {
  if (m.type() === 'error') problems.push(`console: ${m.text()}`)
})
const cdp = await page.context().newCDPSession(page)
await cdp.send('Performance.enable')
await page.goto(base)

async function measure(label: string): Promise<void> {
  // Page code is given as text: it runs in the browser, not in this program's (DOM-less) types.
  await page.evaluate('globalThis.gc?.()')
  const t0 = performance.now()
  await page.evaluate('new Promise((r) => requestAnimationFrame(() => r(null)))')
  const frameMs = performance.now() - t0
  const m = (await page.evaluate(`({
    heap: performance.memory.usedJSHeapSize,
    nodes: document.getElementsByTagName('*').length,
    tail: document.querySelectorAll('#tail li').length,
  })`)) as { heap: number; nodes: number; tail: number }
  const { metrics } = (await cdp.send('Performance.getMetrics')) as {
    metrics: Array<{ name: string; value: number }>
  }
  const metric = (n: string) => metrics.find((x) => x.name === n)?.value ?? Number.NaN
  console.log(
    `${label.padStart(5)}  heap ${(m.heap / 1048576).toFixed(2)} MB  DOM nodes ${m.nodes}  tail lines ${m.tail}  ` +
      `main-thread busy ${(metric('TaskDuration') * 1000).toFixed(0)} ms total (script ${(metric('ScriptDuration') * 1000).toFixed(0)} ms, ` +
      `layout ${(metric('LayoutDuration') * 1000).toFixed(0)} ms)  next frame in ${frameMs.toFixed(0)} ms`,
  )
}

console.log(`dashboard perf: ${rate} snapshots/s and ${rate * 5} tail events/s for ${seconds} s`)
const begin = Date.now()
let last = { t: begin, busy: 0 }
for (let s = 0; s <= seconds; s += 10) {
  const wait = begin + s * 1000 - Date.now()
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  await measure(`${s}s`)
  const { metrics } = (await cdp.send('Performance.getMetrics')) as {
    metrics: Array<{ name: string; value: number }>
  }
  const busy = (metrics.find((x) => x.name === 'TaskDuration')?.value ?? 0) * 1000
  if (s > 0) {
    const share = (busy - last.busy) / (Date.now() - last.t)
    console.log(`       main thread busy ${(share * 100).toFixed(1)}% of the last interval`)
  }
  last = { t: Date.now(), busy }
}
if (shot !== undefined) await page.screenshot({ path: shot, fullPage: true })
console.log(`snapshots sent: ${sent}; console errors: ${problems.length ? problems.join(' | ') : 'none'}`)
clearInterval(pump)
await browser.close()
for (const r of [...streams, ...tails]) r.end()
server.close()
