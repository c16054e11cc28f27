/**
 * AgentMessageBus benchmarks. Run from the repository root:
 *
 *   node --conditions=@omnibus/source packages/core/bench/agents.ts rtt [--base <checkout>] [--rounds 3]
 *   node --conditions=@omnibus/source packages/core/bench/agents.ts heartbeat [--seconds 60] [--agents 100] [--buses 100]
 *
 * `rtt`: request round trip p50/p99, sequential, on memory and on SQLite (two backend instances on
 * one file), in child processes that alternate between this checkout and `--base` (another checkout
 * of the repository, e.g. a `git worktree` of an earlier commit, with its own node_modules), so
 * both are measured in the same run on the same machine load. This checkout is also measured with
 * presence on.
 *
 * `heartbeat`: CPU time of a process serving `--agents` agents spread over `--buses` buses (100 and
 * 100 by default, the worst case: every bus beats and every bus hears every beat; with one bus, one
 * beat per interval carries all its agents), for `--seconds`, with presence on at the default
 * interval against the same process with presence off, both running at once; as a share of one
 * core.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = fileURLToPath(import.meta.url)
const repo = path.resolve(path.dirname(here), '../../..')
const args = process.argv.slice(2)
const mode = args[0]

function flag(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback
}

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

type Core = typeof import('../src/index.ts')
type Bus = InstanceType<Core['AgentMessageBus']>

async function load(root: string): Promise<{
  core: Core
  memory: (name: string) => unknown
  sqlite: (file: string) => unknown
}> {
  const core = (await import(pathToFileURL(path.join(root, 'packages/core/src/index.ts')).href)) as Core
  const mem = (await import(pathToFileURL(path.join(root, 'packages/memory/src/index.ts')).href)) as {
    createMemoryBackend(o: object): unknown
  }
  const sql = (await import(pathToFileURL(path.join(root, 'packages/sqlite/src/index.ts')).href)) as {
    createSqliteBackend(o: object): unknown
  }
  return {
    core,
    memory: (name) => mem.createMemoryBackend({ name }),
    sqlite: (file) => sql.createSqliteBackend({ path: file }),
  }
}

/** One measurement, in a child process: prints one JSON line. */
async function rttChild(
  root: string,
  backend: 'memory' | 'sqlite',
  presence: boolean,
  n: number,
): Promise<void> {
  const { core, memory, sqlite } = await load(root)
  const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-agent-bench-'))
  const make = (): Parameters<Core['AgentMessageBus']['connect']>[0] =>
    (backend === 'memory' ? memory('bench-rtt') : sqlite(path.join(dir, 'bench.db'))) as never
  const options = presence ? { presence: { heartbeatMs: 5000 } } : {}
  const requester = await core.AgentMessageBus.connect(make(), {
    agentId: 'bench-requester',
    ...options,
  } as never)
  const responder = await core.AgentMessageBus.connect(make(), {
    agentId: 'bench-responder',
    ...options,
  } as never)
  await responder.subscribeAgent('echo', async (msg, ctx) => {
    await ctx.reply(msg.data)
  })
  for (let i = 0; i < 200; i++) await requester.request('echo', 'ping', i, { timeoutMs: 10_000 })
  const lat: number[] = []
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await requester.request('echo', 'ping', i, { timeoutMs: 10_000 })
    lat.push(performance.now() - t)
  }
  lat.sort((x, y) => x - y)
  await requester.close()
  await responder.close()
  await (requester.backend as { disconnect(): Promise<void> }).disconnect()
  await (responder.backend as { disconnect(): Promise<void> }).disconnect()
  rmSync(dir, { recursive: true, force: true })
  process.stdout.write(`${JSON.stringify({ p50: pct(lat, 50), p99: pct(lat, 99) })}\n`)
}

function runChild(childArgs: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@omnibus/source', here, ...childArgs], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
    })
    child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`child exited ${code}`))))
  })
}

async function rtt(): Promise<void> {
  const base = flag('base', '')
  const rounds = Number(flag('rounds', '3'))
  const variants: Array<{ label: string; root: string; presence: boolean }> = [
    ...(base === '' ? [] : [{ label: `base (${base})`, root: path.resolve(base), presence: false }]),
    { label: 'this checkout', root: repo, presence: false },
    { label: 'this checkout, presence on', root: repo, presence: true },
  ]
  for (const backend of ['memory', 'sqlite'] as const) {
    const n = backend === 'memory' ? 5000 : 1000
    const results = new Map<string, Array<{ p50: number; p99: number }>>()
    for (let r = 0; r < rounds; r++) {
      for (const v of variants) {
        const line = await runChild(['rtt-child', v.root, backend, String(v.presence), String(n)])
        const list = results.get(v.label) ?? []
        list.push(JSON.parse(line) as { p50: number; p99: number })
        results.set(v.label, list)
      }
    }
    console.log(`request round trip on ${backend} (${n} sequential requests, ${rounds} rounds, alternating):`)
    for (const [label, list] of results) {
      const p50 = list.map((x) => x.p50).sort((a, b) => a - b)
      const p99 = list.map((x) => x.p99).sort((a, b) => a - b)
      const med = (xs: number[]) => xs[Math.floor(xs.length / 2)] as number
      console.log(
        `  ${label.padEnd(40)} p50 ${med(p50).toFixed(3)} ms (${p50[0]?.toFixed(3)}-${p50.at(-1)?.toFixed(3)}), ` +
          `p99 ${med(p99).toFixed(3)} ms (${p99[0]?.toFixed(3)}-${p99.at(-1)?.toFixed(3)})`,
      )
    }
  }
}

/** Child: `agents` agents on `busCount` buses of one in-process memory bus, idle for `seconds`. */
async function heartbeatChild(
  presence: boolean,
  agents: number,
  seconds: number,
  busCount: number,
): Promise<void> {
  const { core, memory } = await load(repo)
  const buses: Bus[] = []
  for (let i = 0; i < busCount; i++) {
    const bus = await core.AgentMessageBus.connect(memory('bench-heartbeat') as never, {
      agentId: `host-${i}`,
      ...(presence ? { presence: true } : {}),
    })
    buses.push(bus)
  }
  for (let i = 0; i < agents; i++) await buses[i % busCount]?.subscribeAgent(`agent-${i}`, async () => {})
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  const cpu = process.cpuUsage(cpu0)
  const wall = performance.now() - t0
  const seen = presence ? buses[0]?.presence().filter((p) => p.status === 'online').length : undefined
  for (const bus of buses) await bus.close()
  process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, wallMs: wall, seen })}\n`)
  process.exit(0)
}

async function heartbeat(): Promise<void> {
  const seconds = Number(flag('seconds', '60'))
  const agents = Number(flag('agents', '100'))
  const buses = Number(flag('buses', '100'))
  const [idle, on] = await Promise.all([
    runChild(['heartbeat-child', 'false', String(agents), String(seconds), String(buses)]),
    runChild(['heartbeat-child', 'true', String(agents), String(seconds), String(buses)]),
  ])
  const a = JSON.parse(idle) as { cpuMs: number; wallMs: number }
  const b = JSON.parse(on) as { cpuMs: number; wallMs: number; seen: number }
  const share = (x: { cpuMs: number; wallMs: number }) => (100 * x.cpuMs) / x.wallMs
  console.log(`${agents} agents on ${buses} buses (memory), ${seconds} s, heartbeat every 5000 ms:`)
  console.log(`  presence off: ${a.cpuMs.toFixed(0)} ms CPU = ${share(a).toFixed(3)}% of a core`)
  console.log(
    `  presence on:  ${b.cpuMs.toFixed(0)} ms CPU = ${share(b).toFixed(3)}% of a core (each bus saw ${b.seen} agents online)`,
  )
  console.log(`  heartbeat cost: ${(share(b) - share(a)).toFixed(3)}% of a core`)
}

if (mode === 'rtt-child') {
  await rttChild(args[1] as string, args[2] as 'memory' | 'sqlite', args[3] === 'true', Number(args[4]))
} else if (mode === 'heartbeat-child') {
  await heartbeatChild(args[1] === 'true', Number(args[2]), Number(args[3]), Number(args[4]))
} else if (mode === 'rtt') {
  await rtt()
} else if (mode === 'heartbeat') {
  await heartbeat()
} else {
  console.error(
    'usage: agents.ts rtt [--base <checkout>] [--rounds 3] | heartbeat [--seconds 60] [--agents 100] [--buses 100]',
  )
  process.exitCode = 2
}
