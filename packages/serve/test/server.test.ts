import { writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import {
  AgentMessageBus,
  CapabilityError,
  ConfigurationError,
  createEvent,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  silentLogger,
} from '@omnibus/core'
import { deadLetterInput } from '@omnibus/core/backend'
import { waitUntil } from '@omnibus/core/testing'
import { createMemoryBackend } from '@omnibus/memory'
import { createSqliteBackend } from '@omnibus/sqlite'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { afterEach, describe, expect, it } from 'vitest'
import type { AlertsHook } from '../src/alerts-hook.ts'
import { type RunningServer, type StartServerOptions, startServer } from '../src/server.ts'
import type { Snapshot } from '../src/snapshot.ts'
import {
  checkExposition,
  closedPort,
  type ExpositionSample,
  openSse,
  type SseReader,
  tempDir,
  unique,
} from './helpers.ts'

const running: RunningServer[] = []
const readers: SseReader[] = []
const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const r of readers.splice(0)) r.close()
  for (const s of running.splice(0)) await s.close()
  for (const c of cleanups.splice(0)) await c()
})

const dir = tempDir()

async function serve(
  options: (Partial<StartServerOptions> & Pick<StartServerOptions, 'backend'>) | StartServerOptions,
): Promise<RunningServer> {
  const s = await startServer({
    port: 0,
    logger: silentLogger,
    metrics: { defaultMetrics: false },
    ...options,
  })
  running.push(s)
  return s
}

async function memory(): Promise<EventBackend> {
  const backend = createMemoryBackend({ name: unique('serve') })
  await backend.connect()
  cleanups.push(() => backend.disconnect())
  return backend
}

async function json<T = unknown>(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: T; type: string }> {
  const res = await fetch(url, init)
  return { status: res.status, body: (await res.json()) as T, type: res.headers.get('content-type') ?? '' }
}

async function sse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const r = await openSse(url, headers)
  readers.push(r)
  return r
}

type Family = ReturnType<typeof parsePrometheusTextFormat>[number]

interface Scrape {
  readonly families: Family[]
  readonly samples: ExpositionSample[]
}

/** A counter or gauge sample by the parser; a histogram's `_count`/`_bucket` by the strict check. */
function sample(scraped: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = (l: Readonly<Record<string, string>> | undefined): boolean =>
    Object.entries(labels).every(([k, v]) => l?.[k] === v)
  const family = scraped.families.find((f) => f.name === name)
  if (family !== undefined && family.type !== 'HISTOGRAM') {
    const s = family.metrics.find((m) => matches(m.labels))
    return s === undefined ? undefined : Number(s.value)
  }
  return scraped.samples.find((s) => s.name === name && matches(s.labels))?.value
}

async function scrape(base: string): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  const text = await res.text()
  return { families: parsePrometheusTextFormat(text), samples: checkExposition(text) }
}

describe('serve: probes', () => {
  it('answers live and ready with a connected memory backend', async () => {
    const s = await serve({ backend: await memory() })
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(await json(`${s.url}/health/live`)).toMatchObject({ status: 200, body: { status: 'live' } })
    const ready = await json<Record<string, unknown>>(`${s.url}/health/ready`)
    expect(ready.status).toBe(200)
    expect(ready.body).toMatchObject({ status: 'ready', backend: 'memory' })
  })

  it('is live but not ready (503, with the reason) when Redis cannot be reached, and does not throw', async () => {
    const port = await closedPort()
    const s = await serve({ url: `redis://127.0.0.1:${port}` })
    expect((await fetch(`${s.url}/health/live`)).status).toBe(200)
    const ready = await json<Record<string, string>>(`${s.url}/health/ready`)
    expect(ready.status).toBe(503)
    expect(ready.body.status).toBe('unavailable')
    expect(ready.body.backend).toBe('redis')
    expect(ready.body.detail).toMatch(
      new RegExp(`cannot connect or subscribe to redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED`),
    )
    const families = await scrape(s.url)
    expect(sample(families, 'omnibus_serve_backend_up')).toBe(0)
    expect((await json<Snapshot>(`${s.url}/api/snapshot`)).body.backend).toMatchObject({
      name: 'redis',
      healthy: false,
    })
  })

  it('is not ready on an SQLite file that is not a database, and ready on a good one', async () => {
    const bad = join(dir, `${unique('bad')}.db`)
    writeFileSync(bad, Buffer.alloc(8192, 0x5a))
    const down = await serve({ url: `sqlite://${bad}` })
    const r1 = await json<Record<string, string>>(`${down.url}/health/ready`)
    expect(r1.status).toBe(503)
    expect(r1.body.detail).toMatch(/not a database|NOT_A_DATABASE|file is not a database/i)

    const up = await serve({ url: `sqlite://${join(dir, `${unique('good')}.db`)}` })
    const r2 = await json<Record<string, string>>(`${up.url}/health/ready`)
    expect(r2.status).toBe(200)
    expect(r2.body.backend).toBe('sqlite')
  })

  it('turns unready when the backend disconnects, and caches the check for readyCacheMs', async () => {
    const backend = await memory()
    let checks = 0
    const counted: EventBackend = Object.create(backend, {
      healthCheck: {
        value: async () => {
          checks++
          return backend.healthCheck()
        },
      },
    })
    const s = await serve({ backend: counted, readyCacheMs: 200 })
    const before = checks
    await Promise.all(Array.from({ length: 20 }, () => fetch(`${s.url}/health/ready`)))
    expect(checks - before).toBeLessThanOrEqual(1)
    await backend.disconnect()
    const status = await waitUntil(
      async () => {
        const r = await fetch(`${s.url}/health/ready`)
        return r.status === 503 ? r.status : undefined
      },
      { timeoutMs: 3000, intervalMs: 50 },
    )
    expect(status).toBe(503)
  })
})

describe('serve: /metrics', () => {
  it('parses with a Prometheus parser, and its numbers move with the traffic', async () => {
    const backend = await memory()
    const extra = new ObservabilityBus(backend, { source: 'metrics-test' })
    cleanups.push(() => extra.close())
    const s = await serve({
      backend,
      metrics: { defaultMetrics: true, extraText: () => extra.prometheus() },
      pricing: { 'gpt-x': { inputPerMTok: 1, outputPerMTok: 2 } },
    })
    const before = await scrape(s.url)
    expect(sample(before, 'omnibus_tool_calls_total', { tool: 'search' })).toBeUndefined()
    expect(before.families.find((f) => f.name === 'process_cpu_user_seconds_total')?.type).toBe('COUNTER')
    expect(before.families.find((f) => f.name === 'omnibus_telemetry_emitted_total')).toBeDefined()

    const bus = new ObservabilityBus(backend, { source: 'agent-a', flushIntervalMs: 5 })
    cleanups.push(() => bus.close())
    bus.emitToolEnd('search', { durationMs: 12, success: true })
    bus.emitToolEnd('search', { durationMs: 30, error: new Error('timeout') })
    bus.emit('model.call', {
      model: 'gpt-x',
      inputTokens: 1_000_000,
      outputTokens: 500_000,
      success: true,
      durationMs: 800,
    })
    bus.emitError(new TypeError('bad'))
    await backend.publish(
      deadLetterInput(createEvent({ topic: 'orders.placed', data: {} }), 'omnibus.deadletter', {
        reason: 'r',
        group: 'g',
        attempts: 3,
        firstFailureAt: 1,
        lastFailureAt: 2,
        backend: 'memory',
      }),
    )
    await bus.flush()
    const after = await waitUntil(
      async () => {
        const f = await scrape(s.url)
        return sample(f, 'omnibus_dead_letters_total') === 1 ? f : undefined
      },
      { timeoutMs: 3000 },
    )
    expect(sample(after, 'omnibus_tool_calls_total', { tool: 'search', outcome: 'success' })).toBe(1)
    expect(sample(after, 'omnibus_tool_calls_total', { tool: 'search', outcome: 'error' })).toBe(1)
    expect(sample(after, 'omnibus_tool_duration_seconds_count', { tool: 'search', outcome: 'error' })).toBe(1)
    const ok = { tool: 'search', outcome: 'success' }
    expect(sample(after, 'omnibus_tool_duration_seconds_bucket', { ...ok, le: '0.025' })).toBe(1)
    expect(sample(after, 'omnibus_tool_duration_seconds_bucket', { ...ok, le: '0.01' })).toBe(0)
    expect(sample(after, 'omnibus_tool_duration_seconds_sum', ok)).toBeCloseTo(0.012, 6)
    expect(sample(after, 'omnibus_model_tokens_total', { model: 'gpt-x', direction: 'input' })).toBe(
      1_000_000,
    )
    expect(sample(after, 'omnibus_model_cost_usd_total', { model: 'gpt-x' })).toBe(2)
    expect(sample(after, 'omnibus_agent_cost_usd_total', { agent: 'agent-a' })).toBe(2)
    expect(sample(after, 'omnibus_events_total', { family: 'tool' })).toBe(2)
    expect(sample(after, 'omnibus_errors_total', { kind: 'event' })).toBe(1)
    expect(sample(after, 'omnibus_errors_total', { kind: 'tool' })).toBe(1)
    expect(sample(after, 'omnibus_dead_letters_pending')).toBe(1)
    expect(
      sample(after, 'omnibus_serve_http_request_duration_seconds_count', { route: 'metrics' }),
    ).toBeGreaterThan(0)
  })

  it('bounds label values: past labelValues, new tools share the (other) value', async () => {
    const backend = await memory()
    const s = await serve({ backend, metrics: { defaultMetrics: false, labelValues: 3 } })
    for (let i = 0; i < 10; i++)
      await backend.publish({ topic: 'tool.end', data: { tool: `t${i}`, success: true, durationMs: 1 } })
    const families = await waitUntil(async () => {
      const f = await scrape(s.url)
      return sample(f, 'omnibus_events_total', { family: 'tool' }) === 10 ? f : undefined
    })
    const tools = new Set(
      families.families
        .find((f) => f.name === 'omnibus_tool_calls_total')
        ?.metrics.map((m) => m.labels?.tool),
    )
    expect(tools.size).toBe(4)
    expect(tools.has('(other)')).toBe(true)
    expect(sample(families, 'omnibus_tool_calls_total', { tool: '(other)', outcome: 'success' })).toBe(7)
  })
})

describe('serve: /events/stream', () => {
  it('streams matching events with their ids, filtered by the pattern', async () => {
    const backend = await memory()
    const s = await serve({ backend })
    const tools = await sse(`${s.url}/events/stream?pattern=tool.*`)
    const all = await sse(`${s.url}/events/stream`)
    expect(tools.status).toBe(200)
    expect(tools.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const published: string[] = []
    for (const topic of ['tool.start', 'orders.placed', 'tool.end', 'tool.x.y']) {
      published.push((await backend.publish({ topic, data: { topic } })).id)
    }
    await waitUntil(() => all.messages.length >= 4, { timeoutMs: 3000 })
    await waitUntil(() => tools.messages.length >= 2, { timeoutMs: 3000 })
    expect(tools.messages.map((m) => m.id)).toEqual([published[0], published[2]])
    const first = JSON.parse(tools.messages[0]?.data ?? '{}') as Record<string, unknown>
    expect(first).toMatchObject({ id: published[0], topic: 'tool.start', data: { topic: 'tool.start' } })
    expect(all.messages.map((m) => m.id)).toEqual(published)
  })

  it('refuses a bad pattern with 400 naming the problem', async () => {
    const s = await serve({ backend: await memory() })
    const r = await json<{ error: string }>(`${s.url}/events/stream?pattern=${encodeURIComponent('a..b')}`)
    expect(r.status).toBe(400)
    expect(r.body.error).toMatch(/InvalidTopicError/)
  })

  it('resumes after Last-Event-ID from the in-memory ring', async () => {
    const backend = await memory()
    const s = await serve({ backend })
    const ids: string[] = []
    for (let i = 0; i < 5; i++)
      ids.push((await backend.publish({ topic: i % 2 === 0 ? 'a.x' : 'b.x', data: i })).id)
    await waitUntil(() => s.serve.aggregator.totals().events === 5)
    const resumed = await sse(`${s.url}/events/stream?pattern=a.*`, { 'last-event-id': ids[0] as string })
    await waitUntil(() => resumed.messages.length >= 2, { timeoutMs: 3000 })
    expect(resumed.messages.map((m) => m.id)).toEqual([ids[2], ids[4]])
    const live = (await backend.publish({ topic: 'a.y', data: 'live' })).id
    await waitUntil(() => resumed.messages.length >= 3, { timeoutMs: 3000 })
    expect(resumed.messages[2]?.id).toBe(live)
  })

  it('says reset when the id is gone and the backend cannot replay', async () => {
    const backend = await memory()
    const s = await serve({ backend, stream: { ringSize: 2 } })
    const ids: string[] = []
    for (let i = 0; i < 4; i++) ids.push((await backend.publish({ topic: 'a.x', data: i })).id)
    await waitUntil(() => s.serve.aggregator.totals().events === 4)
    const resumed = await sse(`${s.url}/events/stream?pattern=a.*`, { 'last-event-id': ids[0] as string })
    await waitUntil(() => resumed.messages.length >= 1, { timeoutMs: 3000 })
    expect(resumed.messages[0]?.event).toBe('reset')
    expect(resumed.messages[0]?.data).toMatch(/cannot replay/)
  })

  it('resumes by replaying SQLite when the id fell out of the ring, then hands over to live without duplicates', async () => {
    const backend = createSqliteBackend({ path: join(dir, `${unique('replay')}.db`), pollIntervalMs: 10 })
    await backend.connect()
    cleanups.push(() => backend.disconnect())
    const s = await serve({ backend, stream: { ringSize: 2, resumeIdleMs: 200 } })
    const ids: string[] = []
    for (let i = 0; i < 6; i++)
      ids.push((await backend.publish({ topic: i % 3 === 0 ? 'other.x' : 'a.x', data: i })).id)
    await waitUntil(() => s.serve.aggregator.totals().events === 6, { timeoutMs: 5000 })
    // ids[1] is out of the ring of 2; the matching events after it are ids[2], ids[4], ids[5].
    const resumed = await sse(`${s.url}/events/stream?pattern=a.*`, { 'last-event-id': ids[1] as string })
    const live: string[] = []
    for (let i = 0; i < 3; i++) live.push((await backend.publish({ topic: 'a.live', data: i })).id)
    await waitUntil(() => resumed.messages.length >= 6, { timeoutMs: 8000 })
    // Let any duplicate arrive before checking there is none.
    const expected = [ids[2], ids[4], ids[5], ...live]
    await waitUntil(async () => {
      await new Promise((r) => setTimeout(r, 50))
      return resumed.messages.length >= expected.length
    })
    expect(resumed.messages.map((m) => m.id)).toEqual(expected)
  })
})

describe('serve: JSON API and /api/live', () => {
  it('streams snapshots on /api/live, and /api/agents, /api/topics, /api/errors answer', async () => {
    const backend = await memory()
    const s = await serve({ backend, live: { intervalMs: 100 } })
    const live = await sse(`${s.url}/api/live`)
    await waitUntil(() => live.messages.length >= 1)
    const first = JSON.parse(live.messages[0]?.data ?? '{}') as Snapshot
    expect(first.totals.events).toBe(0)
    const agents = new AgentMessageBus(backend, { agentId: 'planner' })
    const worker = new AgentMessageBus(backend, { agentId: 'worker' })
    await worker.subscribeAgent('worker', async (_m, ctx) => {
      await ctx.reply({ ok: true })
    })
    await agents.request('worker', 'task', { n: 1 }, { timeoutMs: 3000 })
    await backend.publish({
      topic: 'error.raised',
      source: 'planner',
      data: { error: { name: 'E', message: 'broken' } },
    })
    const last = await waitUntil(
      () => {
        const m = live.messages.at(-1)
        const snap = m === undefined ? undefined : (JSON.parse(m.data) as Snapshot)
        return snap !== undefined && snap.totals.errors === 1 && snap.totals.replies === 1 ? snap : undefined
      },
      { timeoutMs: 3000 },
    )
    expect(last.agents.find((a) => a.agentId === 'worker')).toMatchObject({ requests: 1, inFlight: 0 })
    expect(last.agents.find((a) => a.agentId === 'worker')?.p50Ms).toBeGreaterThanOrEqual(0)
    const apiAgents = await json<Array<{ agentId: string }>>(`${s.url}/api/agents`)
    expect(apiAgents.body.map((a) => a.agentId).sort()).toEqual(['planner', 'worker'])
    const topics = await json<{ families: Array<{ family: string }>; topics: Array<{ topic: string }> }>(
      `${s.url}/api/topics`,
    )
    expect(topics.body.families.map((f) => f.family)).toContain('agent')
    const errors = await json<Array<{ message: string }>>(`${s.url}/api/errors`)
    expect(errors.body[0]?.message).toBe('broken')
    await agents.close()
    await worker.close()
  })

  it('lists dead letters and redrives one to its topic (404 for an unknown id)', async () => {
    const backend = await memory()
    const s = await serve({ backend })
    const received: OmnibusEvent[] = []
    await backend.subscribe('orders.placed', (e) => {
      received.push(e)
    })
    const original = createEvent({ topic: 'orders.placed', data: { order: 7 } })
    const letter = deadLetterInput(original, 'omnibus.deadletter', {
      reason: 'handler threw',
      group: 'billing',
      attempts: 5,
      firstFailureAt: 1,
      lastFailureAt: 2,
      backend: 'memory',
    })
    await backend.publish(letter)
    const listed = await waitUntil(async () => {
      const r = await json<Array<{ id: string; state: string }>>(`${s.url}/api/deadletters`)
      return r.body.length === 1 ? r.body : undefined
    })
    expect(listed[0]).toMatchObject({
      id: letter.id,
      state: 'pending',
      originalTopic: 'orders.placed',
      group: 'billing',
    })
    const unknown = await fetch(`${s.url}/api/deadletters/nope/redrive`, { method: 'POST' })
    expect(unknown.status).toBe(404)
    const wrong = await fetch(`${s.url}/api/deadletters/${encodeURIComponent(letter.id as string)}/redrive`)
    expect(wrong.status).toBe(405)
    const r = await json<Record<string, string>>(
      `${s.url}/api/deadletters/${encodeURIComponent(letter.id as string)}/redrive`,
      {
        method: 'POST',
      },
    )
    expect(r).toMatchObject({
      status: 200,
      body: { state: 'redriven', topic: 'orders.placed', originalId: original.id },
    })
    await waitUntil(() => received.length === 1)
    expect(received[0]).toMatchObject({ id: original.id, data: { order: 7 } })
    const after = await json<Array<{ state: string }>>(`${s.url}/api/deadletters`)
    expect(after.body[0]?.state).toBe('redriven')
  })

  it('drives the alerts hook: observe sees events, evaluate results show in the snapshot', async () => {
    const backend = await memory()
    const seen: string[] = []
    let started = 0
    let closed = 0
    const alerts: AlertsHook = {
      start: () => {
        started++
      },
      observe: (e) => {
        seen.push(e.topic)
      },
      evaluate: (snap) => [
        {
          name: 'errors',
          severity: 'warning',
          state: snap.totals.errors > 0 ? 'firing' : 'inactive',
          since: snap.at,
          value: snap.totals.errors,
          message: `${snap.totals.errors} errors`,
        },
      ],
      close: () => {
        closed++
      },
    }
    const s = await serve({ backend, alerts, alertIntervalMs: 20 })
    expect(started).toBe(1)
    await backend.publish({ topic: 'error.raised', data: { error: { message: 'x' } } })
    const firing = await waitUntil(async () => {
      const snap = (await json<Snapshot>(`${s.url}/api/snapshot`)).body
      return snap.alerts[0]?.state === 'firing' ? snap.alerts : undefined
    })
    expect(firing[0]).toMatchObject({ name: 'errors', value: 1 })
    expect(seen).toContain('error.raised')
    await s.close()
    expect(closed).toBe(1)
  })
})

describe('serve: dashboard files', () => {
  it('serves index.html, assets with their content types and uPlot, and nothing outside the folder', async () => {
    const dash = join(dir, unique('dash'))
    const { mkdirSync } = await import('node:fs')
    mkdirSync(dash)
    writeFileSync(join(dash, 'index.html'), '<!doctype html><title>t</title>')
    writeFileSync(join(dash, 'app.js'), 'console.log(1)')
    writeFileSync(join(dash, 'style.css'), 'body{}')
    writeFileSync(join(dir, 'secret.txt'), 'secret')
    const s = await serve({ backend: await memory(), dashboardDir: dash })
    const index = await fetch(`${s.url}/`)
    expect(index.status).toBe(200)
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(await index.text()).toContain('<title>t</title>')
    expect((await fetch(`${s.url}/assets/app.js`)).headers.get('content-type')).toBe(
      'text/javascript; charset=utf-8',
    )
    expect((await fetch(`${s.url}/assets/style.css`)).headers.get('content-type')).toBe(
      'text/css; charset=utf-8',
    )
    const uplot = await fetch(`${s.url}/assets/uplot.iife.min.js`)
    expect(uplot.status).toBe(200)
    expect(await uplot.text()).toContain('uPlot')
    expect((await fetch(`${s.url}/assets/uPlot.min.css`)).headers.get('content-type')).toBe(
      'text/css; charset=utf-8',
    )
    // Raw paths, as a hostile client sends them (fetch would normalise `..`).
    for (const path of [
      '/assets/../secret.txt',
      '/assets/%2e%2e/secret.txt',
      '/assets/..%2fsecret.txt',
      '/assets/%2E%2E%2Fsecret.txt',
      '/assets/',
      '/assets/.',
    ]) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: s.port, path }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', reject)
        req.end()
      })
      expect([path, status]).toEqual([path, 404])
    }
    expect((await fetch(`${s.url}/nope`)).status).toBe(404)
    expect((await fetch(`${s.url}/metrics`, { method: 'POST' })).status).toBe(405)
  })
})

describe('serve: from earliest', () => {
  it("replays what SQLite retains with from: 'earliest', and refuses a backend that cannot replay", async () => {
    const file = join(dir, `${unique('earliest')}.db`)
    const writer = createSqliteBackend({ path: file })
    await writer.connect()
    for (let i = 0; i < 3; i++)
      await writer.publish({ topic: 'tool.end', data: { tool: 'kept', success: true, durationMs: 5 } })
    await writer.disconnect()
    const s = await serve({ url: `sqlite://${file}`, from: 'earliest' })
    await waitUntil(() => s.serve.aggregator.totals().toolCalls === 3, { timeoutMs: 5000 })
    expect(s.serve.snapshot().tools[0]).toMatchObject({ tool: 'kept', calls: 3 })
    await expect(serve({ backend: await memory(), from: 'earliest' })).rejects.toThrow(CapabilityError)
  })
})

describe('serve: options', () => {
  it('refuses both or neither of backend and url, unknown options and a bad port', async () => {
    const backend = await memory()
    await expect(startServer({ port: 0 })).rejects.toThrow(ConfigurationError)
    await expect(startServer({ port: 0, backend, url: 'memory://' })).rejects.toThrow(
      /exactly one of backend/,
    )
    await expect(startServer({ port: 0, backend, patern: ['**'] } as never)).rejects.toThrow(/patern/)
    await expect(startServer({ port: 70_000, backend })).rejects.toThrow(
      /port must be an integer from 0 to 65535, got 70000/,
    )
  })
})

describe('the exposition check the metrics tests rely on', () => {
  it('rejects what a Prometheus scrape rejects', () => {
    const ok = '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n'
    expect(checkExposition(ok)).toHaveLength(4)
    expect(() => checkExposition(ok.replace('h_count 2', 'h_count 3'))).toThrow(/\+Inf bucket/)
    expect(() => checkExposition(ok.replace('le="1"} 1', 'le="1"} 5'))).toThrow(/not cumulative/)
    expect(() => checkExposition('c_total 1\n')).toThrow(/before its TYPE/)
    expect(() => checkExposition('# TYPE c counter\nc{a="x} 1\n')).toThrow(/not a sample/)
    expect(() => checkExposition('# TYPE c counter\n# TYPE c counter\n')).toThrow(/second TYPE/)
  })
})
