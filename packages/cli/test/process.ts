/**
 * The `omnibus` command as a real process, for tests of the long-running commands: start it, wait
 * for a line of its output, signal it, wait for its exit, each with a deadline.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { waitUntil } from '@omnibus/core/testing'

/** The command's entry, run from its TypeScript sources. */
export const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url))

/** The plain-JS launcher, as `pnpm omnibus` runs it. */
export const LAUNCHER = fileURLToPath(new URL('../bin/omnibus.js', import.meta.url))

/** A running `omnibus` process and what it printed so far. */
export interface OmnibusProcess {
  readonly child: ChildProcessWithoutNullStreams
  stdout(): string
  stderr(): string
  /** Resolves with the first stdout line matching `re`; rejects after `timeoutMs` with the output so far. */
  line(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Resolves with the exit code (null when killed by a signal) within `timeoutMs`, else rejects. */
  exited(timeoutMs?: number): Promise<number | null>
}

/** Starts `omnibus args…` with colours off. It is killed after `killAfterMs` if still running. */
export function startOmnibus(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; killAfterMs?: number } = {},
): OmnibusProcess {
  const child = spawn(process.execPath, ['--conditions=@omnibus/source', BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  let code: number | null | undefined
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 60_000)
  child.on('exit', (c) => {
    code = c
    clearTimeout(killer)
  })
  const describe = (): string => `stdout:\n${out}\nstderr:\n${err}`
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    async line(re, timeoutMs = 20_000) {
      let match: RegExpMatchArray | null = null
      await waitUntil(
        () => {
          match = out.split('\n').reduce<RegExpMatchArray | null>((m, l) => m ?? l.match(re), null)
          return match !== null || code !== undefined
        },
        { timeoutMs, intervalMs: 20, description: `a line matching ${re}` },
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${describe()}`)
      })
      if (match === null) throw new Error(`omnibus exited (${code}) before printing ${re}\n${describe()}`)
      return match
    },
    async exited(timeoutMs = 10_000) {
      await waitUntil(() => code !== undefined, {
        timeoutMs,
        intervalMs: 20,
        description: 'omnibus to exit',
      }).catch((error: Error) => {
        throw new Error(`${error.message}\n${describe()}`)
      })
      return code ?? null
    },
  }
}

/** Runs `omnibus args…` to its end and returns its exit code and output. */
export async function runOmnibus(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startOmnibus(args, { ...options, killAfterMs: options.timeoutMs ?? 55_000 })
  p.child.stdin.end()
  const code = await p.exited((options.timeoutMs ?? 55_000) + 1000)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}
