/**
 * The cross-process bus checks, run against any backend URL: telemetry emitted by child processes
 * reaches a subscriber in this process, and requests from this process are served by agent
 * instances in child processes that share the work through their group.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import {
  AgentMessageBus,
  createBackend,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  silentLogger,
} from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { afterAll, expect, it } from 'vitest'

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url))

function start(args: string[]): {
  child: ChildProcess
  stdout: () => string
  exited: Promise<number | null>
} {
  const child = spawn(process.execPath, ['--conditions=@omnibus/source', CHILD, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[child] ${d.toString()}`))
  return { child, stdout: () => out, exited: new Promise((resolve) => child.once('exit', resolve)) }
}

/** Per-backend allowances of {@link crossProcessBusTests}. */
export interface CrossProcessOptions {
  /**
   * Longest wait for a request after one group member left. @default 20000 — SQS needs more: a
   * long poll the leaving process left on the server can take messages that only come back after
   * the visibility timeout (30 s by default).
   */
  readonly takeoverMs?: number
}

/** Registers the cross-process tests for `url()` (resolved when the tests run). */
export function crossProcessBusTests(url: () => string, options: CrossProcessOptions = {}): void {
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await Promise.allSettled(backends.map((b) => b.disconnect()))
  })
  const backend = async (): Promise<EventBackend> => {
    const b = await createBackend(url())
    backends.push(b)
    await b.connect()
    return b
  }

  it('telemetry emitted in two child processes reaches a subscriber in this process, each event once', async () => {
    const run = Math.random().toString(36).slice(2, 8)
    const observer = new ObservabilityBus(await backend(), { logger: silentLogger })
    const got: OmnibusEvent[] = []
    await observer.subscribe(`metric.it_${run}`, (e) => void got.push(e))
    await observer.subscribe(`error.it_${run}`, (e) => void got.push(e))
    const count = 200
    const emitters = ['a', 'b'].map((id) => start(['emit', url(), run, id, String(count)]))
    for (const e of emitters) children.push(e.child)
    const codes = await Promise.all(emitters.map((e) => e.exited))
    expect(codes).toEqual([0, 0])
    const stats = emitters.map((e) => JSON.parse(e.stdout().trim()))
    for (const s of stats)
      expect(s).toMatchObject({ emitted: count + 1, flushed: count + 1, droppedTotal: 0 })
    await waitUntil(() => got.length >= 2 * (count + 1), {
      timeoutMs: 30_000,
      description: `${2 * (count + 1)} telemetry events from the children (got ${got.length})`,
    })
    const metrics = got.filter((e) => e.topic === `metric.it_${run}`)
    const keys = metrics.map((e) => `${e.source}:${(e.data as { value: number }).value}`)
    expect(new Set(keys).size).toBe(2 * count)
    expect(metrics).toHaveLength(2 * count)
    expect(new Set(metrics.map((e) => e.source))).toEqual(new Set(['emitter-a', 'emitter-b']))
    const errors = got.filter((e) => e.topic === `error.it_${run}`)
    expect(errors.map((e) => (e.data as { error: { message: string } }).error.message).sort()).toEqual([
      'child a failed on purpose',
      'child b failed on purpose',
    ])
    expect(metrics[0]?.guarantee).toBe('at-most-once')
  }, 90_000)

  it('requests from this process are served by agent instances in two child processes sharing a group', async () => {
    const run = Math.random().toString(36).slice(2, 8)
    const agents = new AgentMessageBus(await backend(), {
      agentId: 'it-parent',
      prefix: `it.${run}.agent`,
      logger: silentLogger,
    })
    const ready = new Set<string>()
    await agents.subscribeAgent('it-parent', (m) => void ready.add((m.data as { id: string }).id))
    const responders = ['r1', 'r2'].map((id) => start(['respond', url(), run, id]))
    for (const r of responders) children.push(r.child)
    await waitUntil(() => ready.size === 2, { timeoutMs: 30_000, description: 'both responders to start' })
    const ask = (n: number, offset: number, timeoutMs = 20_000) =>
      Promise.all(
        Array.from({ length: n }, (_, k) =>
          agents.request<{ sum: number; by: string; from: string }>('calc', 'sum', [offset + k, 1], {
            timeoutMs,
          }),
        ),
      )
    const first = await ask(20, 0)
    first.forEach((r, k) => {
      expect(r.sum).toBe(k + 1)
      expect(r.from).toBe('it-parent')
    })
    // Which instance takes a burst depends on the broker's prefetch; what the group guarantees is
    // that each request is served once, and that the other member takes over when one leaves.
    const busy = first[0]?.by as string
    const leaving = responders[busy === 'r1' ? 0 : 1]
    const staying = busy === 'r1' ? 'r2' : 'r1'
    leaving?.child.kill('SIGTERM')
    expect(await leaving?.exited).toBe(0)
    const second = await ask(20, 100, options.takeoverMs ?? 20_000)
    second.forEach((r, k) => {
      expect(r.sum).toBe(100 + k + 1)
      expect(r.by).toBe(staying)
    })
    expect(agents.stats()).toMatchObject({
      requests: 40,
      repliesReceived: 40,
      timeouts: 0,
      duplicateReplies: 0,
    })
    for (const r of responders) if (r.child.exitCode === null) r.child.kill('SIGTERM')
    expect((await Promise.all(responders.map((r) => r.exited))).every((c) => c === 0)).toBe(true)
    await agents.close()
  }, 120_000)
}
