/**
 * The process-lifetime rule, checked from outside: a connected backend keeps its process alive
 * until `disconnect()`, and a script that closes what it opened exits by itself with every
 * telemetry event flushed. {@link runLifetimeChild} runs lifetime-child.ts in a separate Node
 * process (no IPC channel, which would keep it alive) and reports whether it exited.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ObservabilityStats } from '@omnibus/core'

/** What the child does; see lifetime-child.ts. */
export type LifetimeMode = 'close' | 'open' | 'idle'

/** The child's single argument. */
export interface LifetimeChildConfig {
  readonly url: string
  readonly mode: LifetimeMode
  readonly run: string
  readonly events: number
  readonly observe: boolean
  readonly requestTimeoutMs: number
}

/** The line the child prints once its work is done. */
export interface LifetimeReport {
  readonly mode: LifetimeMode
  /** Topic of the telemetry events (`lifetime.<run>`). */
  readonly topic: string
  readonly reply: unknown
  readonly telemetry: ObservabilityStats | undefined
  /** Telemetry events received by the child's own subscriber (`observe`). */
  readonly observed: number
}

/** Options of {@link runLifetimeChild}. */
export interface LifetimeRunOptions {
  readonly url: string
  readonly mode: LifetimeMode
  /** Unique per run: names the telemetry topic and the agents' prefix. */
  readonly run: string
  /** Telemetry events emitted. @default 50 */
  readonly events?: number
  /** Subscribe to the telemetry in the child itself (for memory://). @default false */
  readonly observe?: boolean
  /** `close`: longest wait for the process to exit after its report. @default 10000 */
  readonly exitWithinMs?: number
  /** `open`/`idle`: how long the process must stay alive after its report. @default 2000 */
  readonly aliveForMs?: number
  /** Longest wait for the child's report (connect, request/reply). @default 60000 */
  readonly readyWithinMs?: number
}

/** What happened to the child. */
export interface LifetimeResult {
  readonly report: LifetimeReport | undefined
  /** Whether the process ended by itself (it is killed otherwise). */
  readonly exitedByItself: boolean
  readonly code: number | null
  /** Milliseconds from the report to the exit, when it exited by itself after reporting. */
  readonly exitAfterReportMs: number | undefined
  readonly stderr: string
}

function childPath(): { path: string; fromSource: boolean } {
  const here = fileURLToPath(import.meta.url)
  const fromSource = here.endsWith('.ts')
  return {
    path: here.replace(/lifetime\.(ts|js)$/, `lifetime-child.${fromSource ? 'ts' : 'js'}`),
    fromSource,
  }
}

/** Runs the lifetime child once and reports whether it exited by itself; never leaves it running. */
export async function runLifetimeChild(options: LifetimeRunOptions): Promise<LifetimeResult> {
  const config: LifetimeChildConfig = {
    url: options.url,
    mode: options.mode,
    run: options.run,
    events: options.events ?? 50,
    observe: options.observe ?? false,
    requestTimeoutMs: 30_000,
  }
  const { path, fromSource } = childPath()
  const child = spawn(
    process.execPath,
    [...(fromSource ? ['--conditions=@omnibus/source'] : []), path, JSON.stringify(config)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let stdout = ''
  let stderr = ''
  let reportedAt: number | undefined
  let report: LifetimeReport | undefined
  let exitedAt: number | undefined
  let code: number | null = null
  let killed = false
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (c) => {
      exitedAt = Date.now()
      code = c
      resolve()
    })
  })
  const reported = new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      const end = stdout.indexOf('\n')
      if (report === undefined && end >= 0) {
        report = JSON.parse(stdout.slice(0, end)) as LifetimeReport
        reportedAt = Date.now()
        resolve()
      }
    })
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const wait = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      setTimeout(resolve, ms).unref()
    })
  try {
    await Promise.race([reported, exited, wait(options.readyWithinMs ?? 60_000)])
    if (report !== undefined && exitedAt === undefined) {
      const bound =
        options.mode === 'close' ? (options.exitWithinMs ?? 10_000) : (options.aliveForMs ?? 2_000)
      await Promise.race([exited, wait(bound)])
    }
  } finally {
    if (exitedAt === undefined) {
      killed = true
      child.kill('SIGKILL')
      await exited
    }
  }
  const byItself = !killed
  return {
    report,
    exitedByItself: byItself,
    code,
    exitAfterReportMs: byItself && reportedAt !== undefined ? (exitedAt as number) - reportedAt : undefined,
    stderr,
  }
}
