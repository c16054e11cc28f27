/**
 * `omnibus demo`: a coordinator (this process) and worker agents in separate processes. The
 * coordinator sends tasks with `request`, alternately to a named worker and to the `worker` group
 * (balanced by the backend), and shows the workers' telemetry live: tasks done, events/s, errors
 * and a progress bar, then a summary. Exit 0 when every task was answered and every worker ended
 * cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  AgentMessageBus,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  redactUrl,
  silentLogger,
} from '@omnibus/core'
import { CliError, connectBackend, describe, EXIT } from '../backend.ts'
import { paint } from '../format.ts'
import { type CommandIo, outputClosed } from '../io.ts'
import {
  agentPrefix,
  type DemoResult,
  type DemoTask,
  RUN_HEADER,
  TELEMETRY_PATTERNS,
  TOOLS,
  type WorkerReport,
} from './shared.ts'

/**
 * Checks `done` every 20 ms until it holds or `timeoutMs` passes; says which. The demo decides
 * what a timeout means at each call, so nothing is thrown.
 */
async function pollUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!done()) {
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return true
}

/** Options of `omnibus demo`. */
export interface DemoOptions {
  /** Backend URL; a fresh embedded SQLite file when absent. */
  readonly backend: string | undefined
  readonly workers: number
  readonly tasks: number
  readonly timeoutMs: number
  /**
   * Keep the run: on {@link KEPT_DEMO_FILE} in the current directory instead of a temporary file,
   * left in place at the end (each run adds to it), so `omnibus serve` and `omnibus top` can show
   * it afterwards, or while it runs from a second terminal.
   */
  readonly keep?: boolean
}

/** The SQLite file `omnibus demo --keep` runs on, in the current directory. */
export const KEPT_DEMO_FILE = 'omnibus-demo.db'

interface Live {
  done: number
  ok: number
  failed: number
  lost: number
  events: number
  errors: number
  tokens: number
  readonly byCategory: Map<string, number>
  readonly byWorker: Map<string, { targeted: number; group: number }>
  readonly latencies: number[]
  readonly recent: number[]
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

function bar(fraction: number, width: number): string {
  const full = Math.round(Math.max(0, Math.min(1, fraction)) * width)
  return `${'█'.repeat(full)}${'░'.repeat(width - full)}`
}

function binPath(): string {
  const self = fileURLToPath(import.meta.url)
  return path.join(path.dirname(self), '..', `bin${path.extname(self)}`)
}

/** Runs the demo and returns the exit code. */
export async function runDemo(opts: DemoOptions, io: CommandIo): Promise<number> {
  const run = Math.random().toString(36).slice(2, 8)
  let tmp: string | undefined
  let url = opts.backend
  if (opts.keep === true && url !== undefined && url !== '') {
    throw new CliError(
      `--keep keeps the demo's own SQLite file (${KEPT_DEMO_FILE}); with --backend (or OMNIBUS_BACKEND) the run ` +
        'stays wherever that backend keeps it: drop one of the two',
      EXIT.usage,
    )
  }
  if (opts.keep === true) {
    url = `sqlite://${path.resolve(KEPT_DEMO_FILE)}`
  } else if (url === undefined || url === '') {
    tmp = mkdtempSync(path.join(tmpdir(), 'omnibus-demo-'))
    url = `sqlite://${path.join(tmp, 'demo.db')}`
  }
  const started = performance.now()
  const backend = await connectBackend(url, opts.timeoutMs)
  const children: ChildProcess[] = []
  if (!backend.capabilities.crossProcess) {
    await backend.disconnect().catch(() => undefined)
    throw new CliError(
      `the demo runs its agents in separate processes, and the ${backend.name} backend (${redactUrl(url)}) only reaches ` +
        'its own process: use sqlite://, redis://, kafka://, amqp:// or sqs://',
      EXIT.usage,
    )
  }
  // Ctrl-C (or SIGTERM) ends the demo at once: pending requests and waits are abandoned, the
  // workers are killed and the backend closed, whatever the run was waiting for.
  const interrupted = new Promise<number>((resolve) => {
    const stop = (): void => {
      // A reader that closed the pipe (omnibus demo | head) asked for nothing more: end quietly.
      if (outputClosed(io.signal)) {
        resolve(EXIT.ok)
        return
      }
      io.err('omnibus demo: interrupted')
      resolve(EXIT.interrupted)
    }
    if (io.signal.aborted) stop()
    else io.signal.addEventListener('abort', stop, { once: true })
  })
  try {
    const code = await Promise.race([coordinate(backend, url, run, opts, io, children, started), interrupted])
    if (opts.keep === true && !outputClosed(io.signal)) {
      // The way to look at the run again, with the command as it was typed (pnpm in the repository).
      const omnibus = process.env.npm_lifecycle_event === undefined ? 'omnibus' : 'pnpm omnibus'
      io.out('')
      io.out(`kept the run in ${path.resolve(KEPT_DEMO_FILE)} (each --keep run adds to it); see it with`)
      io.out(`  ${omnibus} serve --backend ${url} --from earliest    # dashboard on http://127.0.0.1:8080`)
      io.out(`  ${omnibus} top --backend ${url} --from earliest`)
    }
    return code
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await Promise.race([
      backend.disconnect({ drainTimeoutMs: 2000 }).catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 5000).unref()),
    ])
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true })
  }
}

async function coordinate(
  backend: EventBackend,
  url: string,
  run: string,
  opts: DemoOptions,
  io: CommandIo,
  children: ChildProcess[],
  started: number,
): Promise<number> {
  const out = io.stdout as NodeJS.WriteStream
  const tty = out.isTTY === true
  const c = (style: Parameters<typeof paint>[0], text: string): string => paint(style, text, out)
  io.out(
    `${c('bold', 'omnibus demo')}: 1 coordinator + ${opts.workers} worker processes, ${opts.tasks} tasks on ${backend.name} (${redactUrl(url)})`,
  )

  const live: Live = {
    done: 0,
    ok: 0,
    failed: 0,
    lost: 0,
    events: 0,
    errors: 0,
    tokens: 0,
    byCategory: new Map(),
    byWorker: new Map(),
    latencies: [],
    recent: [],
  }
  const telemetry = new ObservabilityBus(backend, { logger: silentLogger })
  const onTelemetry = (event: OmnibusEvent): void => {
    if (event.headers[RUN_HEADER] !== run) return
    live.events++
    live.recent.push(Date.now())
    const category = event.topic.split('.')[0] as string
    live.byCategory.set(category, (live.byCategory.get(category) ?? 0) + 1)
    if (category === 'error') live.errors++
  }
  const subs = await Promise.all(TELEMETRY_PATTERNS.map((p) => telemetry.subscribe(p, onTelemetry)))

  const agents = new AgentMessageBus(backend, {
    agentId: 'coordinator',
    prefix: agentPrefix(run),
    requestTimeoutMs: 15_000,
  })
  const ready = new Set<string>()
  await agents.subscribeAgent(
    'coordinator',
    (msg) => {
      if (msg.topic === 'ready') ready.add((msg.data as { worker: string }).worker)
    },
    { group: `demo-${run}-coordinator` },
  )

  const stderr: string[] = []
  const exits: Array<Promise<number | null>> = []
  for (let i = 1; i <= opts.workers; i++) {
    const child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        binPath(),
        '__demo-worker',
        '--backend',
        url,
        '--id',
        `worker-${i}`,
        '--run',
        run,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: process.env },
    )
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(`worker-${i}: ${chunk.toString().trimEnd()}`))
    exits.push(new Promise((resolve) => child.once('exit', (code) => resolve(code))))
    children.push(child)
  }
  // A timeout is reported below, from what `ready` holds.
  await pollUntil(() => ready.size === opts.workers || children.some((ch) => ch.exitCode !== null), 30_000)
  if (ready.size !== opts.workers) {
    io.err(`omnibus demo: only ${ready.size} of ${opts.workers} workers started`)
    for (const line of stderr.slice(-10)) io.err(line)
    return EXIT.failure
  }
  io.out(`${c('green', '✓')} ${opts.workers} workers ready (${[...ready].sort().join(', ')})`)

  let rendered = 0
  const render = (final = false): void => {
    const now = Date.now()
    while (live.recent.length > 0 && (live.recent[0] as number) < now - 1000) live.recent.shift()
    const width = 30
    const line1 = `${c('cyan', bar(live.done / opts.tasks, width))} ${String(live.done).padStart(String(opts.tasks).length)}/${opts.tasks} tasks`
    const line2 =
      `  events/s ${String(live.recent.length).padStart(5)}  events ${String(live.events).padStart(6)}  ` +
      `errors ${c(live.errors > 0 ? 'red' : 'green', String(live.errors).padStart(3))}  tokens ${live.tokens}`
    const workers = [...live.byWorker.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([w, n]) => `${w} ${n.targeted + n.group} (${n.targeted} named, ${n.group} group)`)
      .join('  ')
    const line3 = `  ${workers}`
    if (tty) {
      if (rendered > 0) out.write(`\x1b[${rendered}A`)
      out.write(`\x1b[2K${line1}\n\x1b[2K${line2}\n\x1b[2K${line3}\n`)
      rendered = 3
    } else if (final) {
      io.out(line1)
      io.out(line2)
      io.out(line3)
    }
  }
  const ticker = setInterval(() => render(), tty ? 100 : 1000)
  let lastPrinted = -1
  const progress = setInterval(() => {
    if (tty) return
    const quarter = Math.floor((live.done / opts.tasks) * 4)
    if (quarter !== lastPrinted) {
      lastPrinted = quarter
      io.out(`  ${live.done}/${opts.tasks} tasks, ${live.events} events, ${live.errors} errors`)
    }
  }, 250)

  let next = 0
  const inFlight = Math.max(2, opts.workers * 2)
  const runOne = async (n: number): Promise<void> => {
    const routed: DemoTask['routed'] = n % 2 === 0 ? 'targeted' : 'group'
    const to = routed === 'targeted' ? `worker-${((n >> 1) % opts.workers) + 1}` : 'worker'
    const task: DemoTask = { n, tool: TOOLS[n % TOOLS.length] as string, routed }
    const t0 = performance.now()
    try {
      const result = await agents.request<DemoResult>(to, 'task.run', task)
      live.latencies.push(performance.now() - t0)
      live.done++
      live.tokens += result.tokens
      if (result.ok) live.ok++
      else live.failed++
      const w = live.byWorker.get(result.worker) ?? { targeted: 0, group: 0 }
      w[routed === 'targeted' ? 'targeted' : 'group']++
      live.byWorker.set(result.worker, w)
    } catch (error) {
      live.lost++
      io.err(`task ${n} to ${to}: ${describe(error)}`)
    }
  }
  await Promise.all(
    Array.from({ length: Math.min(inFlight, opts.tasks) }, async () => {
      while (next < opts.tasks && !io.signal.aborted) await runOne(next++)
    }),
  )

  // Ask each worker to flush its telemetry and stop; its report says how much it sent.
  const reports: WorkerReport[] = []
  await Promise.all(
    [...ready].map(async (w) => {
      try {
        reports.push(await agents.request<WorkerReport>(w, 'shutdown', {}, { timeoutMs: 10_000 }))
      } catch (error) {
        io.err(`${w} did not confirm shutdown: ${describe(error)}`)
      }
    }),
  )
  const expected = reports.reduce((n, r) => n + r.flushed, 0)
  await pollUntil(() => live.events >= expected, 5000)
  const codes = await Promise.race([
    Promise.all(exits),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000).unref()),
  ])
  clearInterval(ticker)
  clearInterval(progress)
  render(true)
  await Promise.allSettled(subs.map((s) => s.unsubscribe()))
  await agents.close()

  const sorted = [...live.latencies].sort((a, b) => a - b)
  const seconds = (performance.now() - started) / 1000
  const categories = [...live.byCategory.entries()].map(([k, v]) => `${k} ${v}`).join(', ')
  const workersClean = codes?.every((code) => code === 0) === true
  io.out('')
  io.out(c('bold', 'Summary'))
  io.out(
    `  tasks       ${live.done}/${opts.tasks} answered (${live.ok} ok, ${live.failed} failed by design, ${live.lost} lost)`,
  )
  io.out(
    `  request     p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`,
  )
  io.out(`  telemetry   ${live.events} events received of ${expected} flushed by workers (${categories})`)
  io.out(`  errors      ${live.errors} error events`)
  io.out(`  tokens      ${live.tokens}`)
  io.out(`  workers     ${workersClean ? 'all exited cleanly' : `exit codes ${JSON.stringify(codes)}`}`)
  io.out(`  duration    ${seconds.toFixed(1)} s`)
  const ok = live.done === opts.tasks && workersClean && !io.signal.aborted
  if (!ok) for (const line of stderr.slice(-10)) io.err(line)
  io.out(ok ? c('green', '✓ demo complete') : c('red', '✗ demo incomplete'))
  return ok ? EXIT.ok : EXIT.failure
}
