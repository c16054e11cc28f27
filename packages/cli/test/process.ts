/**
 * The `omnibus` command as a real process, the one way every CLI test (unit and integration) spawns
 * it: start it, wait for a line of its output, signal it, wait for its exit, each with a deadline;
 * or run it to its end, alone or piped into `head`.
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
  let spawnError: Error | undefined
  // Without a listener a failed spawn would throw out of the test file instead of failing its test.
  child.on('error', (error) => {
    spawnError = error
  })
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
          return match !== null || code !== undefined || spawnError !== undefined
        },
        { timeoutMs, intervalMs: 20, description: `a line matching ${re}` },
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${describe()}`)
      })
      if (spawnError) throw spawnError
      if (match === null) throw new Error(`omnibus exited (${code}) before printing ${re}\n${describe()}`)
      return match
    },
    async exited(timeoutMs = 10_000) {
      await waitUntil(() => code !== undefined || spawnError !== undefined, {
        timeoutMs,
        intervalMs: 20,
        description: 'omnibus to exit',
      }).catch((error: Error) => {
        throw new Error(`${error.message}\n${describe()}`)
      })
      if (spawnError) throw spawnError
      return code ?? null
    },
  }
}

/** What a finished `omnibus` run printed and its exit code (null when it was killed). */
export interface OmnibusResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs `omnibus args…` to its end with colours off and returns its exit code and output. `input`
 * is written to its stdin, which is then closed; a run still going after `timeoutMs` is killed, so
 * a hanging command fails its test (code null) instead of outliving it.
 */
export async function runOmnibus(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<OmnibusResult> {
  const timeoutMs = options.timeoutMs ?? 55_000
  const p = startOmnibus(args, {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    killAfterMs: timeoutMs,
  })
  p.child.stdin.end(options.input ?? '')
  const code = await p.exited(timeoutMs + 1000)
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

/**
 * Runs `omnibus args… | head -n lines` in bash: the reader closes the pipe while the command still
 * writes. Returns the command's own exit code and stderr, with head's lines as stdout.
 */
export function runOmnibusIntoHead(
  args: readonly string[],
  lines: number,
  options: { timeoutMs?: number } = {},
): Promise<OmnibusResult> {
  const quoted = args.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
  const script = `'${process.execPath}' --conditions=@omnibus/source '${BIN}' ${quoted} | head -${lines}; exit \${PIPESTATUS[0]}`
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 55_000)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.on('error', (error) => {
      clearTimeout(killer)
      reject(error)
    })
    child.on('exit', (code) => {
      clearTimeout(killer)
      resolve({ code, stdout, stderr })
    })
  })
}
