import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  AgentMessageBus,
  createBackend,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  silentLogger,
} from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { costOf, type Snapshot } from '@omnibus/serve'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runOmnibus, startOmnibus } from './process.ts'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'omnibus-serve-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

let seq = 0
function dbUrl(): string {
  return `sqlite://${path.join(dir, `serve-${++seq}.db`)}`
}

async function json<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** Polls `/api/snapshot` until `check` holds, and returns that snapshot. */
async function snapshotWhere(base: string, check: (s: Snapshot) => boolean, what: string): Promise<Snapshot> {
  let last: Snapshot | undefined
  try {
    return await waitUntil(
      async () => {
        last = await json<Snapshot>(`${base}/api/snapshot`)
        return check(last) ? last : undefined
      },
      { timeoutMs: 15_000, intervalMs: 100, description: what },
    )
  } catch (error) {
    throw new Error(`${(error as Error).message}; last snapshot: ${JSON.stringify(last)}`)
  }
}

/** Another process's traffic: tool calls, a model call and a request answered by an agent. */
async function publishTraffic(backend: EventBackend, tag: string): Promise<void> {
  const obs = new ObservabilityBus(backend, {
    source: `tester-${tag}`,
    flushIntervalMs: 10,
    logger: silentLogger,
  })
  await obs.start()
  for (let i = 0; i < 3; i++) obs.startTool(`search_${tag}`, { i }).end({ hits: i })
  obs.startTool(`search_${tag}`, { i: 3 }).fail(new Error('index offline'))
  obs.emitModelCall({
    model: 'gpt-4o-mini',
    provider: 'openai',
    inputTokens: 1000,
    outputTokens: 200,
    durationMs: 420,
    agent: `planner-${tag}`,
  })
  await obs.close()
  const planner = new AgentMessageBus(backend, { agentId: `planner-${tag}` })
  const client = new AgentMessageBus(backend, { agentId: `client-${tag}` })
  await planner.subscribeAgent(`planner-${tag}`, async (msg, ctx) => {
    await ctx.reply({ plan: msg.data })
  })
  await client.request(`planner-${tag}`, 'plan', { goal: 'ship' }, { timeoutMs: 10_000 })
  await client.close()
  await planner.close()
}

describe('omnibus serve', () => {
  it('prints its URL, answers probes and /metrics, shows what another process publishes, and exits 0 on SIGTERM', async () => {
    const url = dbUrl()
    const producer = await createBackend(url)
    await producer.connect()
    const serve = startOmnibus(['serve', '--backend', url, '--port', '0'])
    try {
      const [, base] = await serve.line(/^omnibus serve: (http:\/\/127\.0\.0\.1:\d+)\/ \(sqlite /)
      expect((await fetch(`${base}/health/live`)).status).toBe(200)
      const ready = await fetch(`${base}/health/ready`)
      expect(ready.status).toBe(200)
      expect(await ready.json()).toMatchObject({ status: 'ready', backend: 'sqlite' })

      await publishTraffic(producer, 'a')
      const snap = await snapshotWhere(
        `${base}`,
        (s) =>
          s.tools.some((t) => t.tool === 'search_a' && t.calls === 4) &&
          s.agents.some((a) => a.agentId === 'planner-a' && a.requests === 1 && a.p50Ms !== undefined) &&
          s.models.some((m) => m.model === 'gpt-4o-mini'),
        'the published traffic in the snapshot',
      )
      expect(snap.tools.find((t) => t.tool === 'search_a')).toMatchObject({ calls: 4, errors: 1 })
      expect(snap.models.find((m) => m.model === 'gpt-4o-mini')?.costUsd).toBeCloseTo(
        costOf('gpt-4o-mini', 1000, 200) as number,
        10,
      )
      expect(snap.agents.find((a) => a.agentId === 'planner-a')?.costUsd).toBeGreaterThan(0)
      expect(snap.backend).toMatchObject({ name: 'sqlite', healthy: true })

      const metrics = await fetch(`${base}/metrics`)
      expect(metrics.status).toBe(200)
      expect(await metrics.text()).toMatch(/search_a/)

      const started = Date.now()
      serve.child.kill('SIGTERM')
      expect(await serve.exited(10_000)).toBe(0)
      expect(Date.now() - started).toBeLessThan(10_000)
    } finally {
      serve.child.kill('SIGKILL')
      await producer.disconnect()
    }
  }, 60_000)

  it('--alerts: a rule from a YAML file fires on the dashboard and as an alert.<name> event on the bus', async () => {
    const url = dbUrl()
    const rules = path.join(dir, 'rules.yaml')
    writeFileSync(
      rules,
      [
        'rules:',
        '  - name: tool-failures',
        '    kind: error-rate',
        '    measure: per-second',
        '    threshold: 0',
        '    window: 30s',
        '    topics: tool.end',
        '    severity: critical',
        'channels:',
        '  - type: bus',
        '',
      ].join('\n'),
    )
    const producer = await createBackend(url)
    await producer.connect()
    const alerts: OmnibusEvent[] = []
    await producer.subscribe('alert.tool-failures', (e) => {
      alerts.push(e)
    })
    const serve = startOmnibus(['serve', '--backend', url, '--port', '0', '--alerts', rules])
    try {
      const [, base] = await serve.line(/^omnibus serve: (http:\/\/[^/]+)\//)
      const quiet = await json<Snapshot>(`${base}/api/snapshot`)
      expect(quiet.alerts.filter((a) => a.state === 'firing')).toEqual([])
      await publishTraffic(producer, 'b')
      const snap = await snapshotWhere(
        `${base}`,
        (s) => s.alerts.some((a) => a.name === 'tool-failures' && a.state === 'firing'),
        'the tool-failures alert firing',
      )
      expect(snap.alerts.find((a) => a.name === 'tool-failures')?.severity).toBe('critical')
      await waitUntil(() => alerts.length > 0, {
        timeoutMs: 10_000,
        description: 'the alert event on the bus',
      })
      serve.child.kill('SIGINT')
      expect(await serve.exited(10_000)).toBe(0)
    } finally {
      serve.child.kill('SIGKILL')
      await producer.disconnect()
    }
  }, 60_000)

  it('refuses what it cannot do with exit 2, before connecting; an unreachable backend is exit 3', async () => {
    const memory = await runOmnibus(['serve', '--backend', 'memory://'])
    expect(memory.code).toBe(2)
    expect(memory.stderr).toMatch(/serve shows what other processes publish.*memory/)

    const port = await runOmnibus(['serve', '--backend', dbUrl(), '--port', '70000'])
    expect(port.code).toBe(2)
    expect(port.stderr).toContain('--port must be an integer from 0 to 65535, got "70000"')

    const missing = await runOmnibus(['serve', '--backend', dbUrl(), '--alerts', path.join(dir, 'nope.yaml')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('nope.yaml')

    const badRules = path.join(dir, 'bad-rules.yaml')
    writeFileSync(badRules, 'rules:\n  - name: x\n    kind: error-rat\n    threshold: 1\n')
    const bad = await runOmnibus(['serve', '--backend', dbUrl(), '--alerts', badRules])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/error-rat/)

    // No broker listens on port 1: refused before any connection attempt.
    const replay = await runOmnibus(['serve', '--backend', 'amqp://127.0.0.1:1', '--from', 'earliest'])
    expect(replay.code).toBe(2)
    expect(replay.stderr).toMatch(/--from earliest needs a backend that keeps and replays events/)

    const down = await runOmnibus(['serve', '--backend', 'redis://127.0.0.1:1', '--timeout', '1500'])
    expect(down.code).toBe(3)
    expect(down.stderr).toMatch(/cannot reach redis:\/\/127\.0\.0\.1:1/)
  }, 60_000)

  it('a port already in use ends with exit 1 and says which', async () => {
    const taken: Server = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    const port = (taken.address() as { port: number }).port
    try {
      const r = await runOmnibus(['serve', '--backend', dbUrl(), '--port', String(port)])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port}`)
    } finally {
      taken.close()
    }
  }, 30_000)
})

describe('pnpm demo --keep, then omnibus serve on the kept file', () => {
  it('keeps ./omnibus-demo.db, prints how to see it, and serve --from earliest shows the run', async () => {
    const cwd = mkdtempSync(path.join(dir, 'demo-'))
    const demo = await runOmnibus(['demo', '--keep', '--workers', '2', '--tasks', '12'], { cwd })
    expect(demo.code, demo.stderr).toBe(0)
    const file = path.join(cwd, 'omnibus-demo.db')
    expect(existsSync(file)).toBe(true)
    expect(demo.stdout).toContain(`kept the run in ${file}`)
    expect(demo.stdout).toContain(`omnibus serve --backend sqlite://${file} --from earliest`)

    const serve = startOmnibus([
      'serve',
      '--backend',
      `sqlite://${file}`,
      '--from',
      'earliest',
      '--port',
      '0',
    ])
    try {
      const [, base] = await serve.line(/^omnibus serve: (http:\/\/[^/]+)\//)
      const snap = await snapshotWhere(
        `${base}`,
        (s) =>
          ['worker-1', 'worker-2'].every((w) =>
            s.agents.some((a) => a.agentId === w && a.p50Ms !== undefined),
          ) &&
          s.totals.replies >= 12 &&
          s.totals.modelCalls >= 12,
        "the demo's agents, replies and model calls",
      )
      expect(snap.tools.reduce((n, t) => n + t.calls, 0)).toBe(12)
      expect(snap.totals.costUsd).toBeGreaterThan(0)
      expect(snap.totals.errors).toBeGreaterThan(0)
      serve.child.kill('SIGTERM')
      expect(await serve.exited(10_000)).toBe(0)
    } finally {
      serve.child.kill('SIGKILL')
    }
  }, 90_000)

  it('--keep with --backend is a usage error', async () => {
    const r = await runOmnibus(['demo', '--keep', '--backend', dbUrl()])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--keep keeps the demo's own SQLite file/)
  })
})
