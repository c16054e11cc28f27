import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createBackend, type EventBackend, ObservabilityBus, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import type { Snapshot } from '@omnibus/serve'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LAUNCHER, runOmnibus, runOmnibusIntoHead } from './process.ts'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'omnibus-top-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

let seq = 0
function dbUrl(): string {
  return `sqlite://${path.join(dir, `top-${++seq}.db`)}`
}

/** `calls` tool calls of `tool` by `agent`, `failed` of them failing, and one model call. */
async function toolCalls(
  backend: EventBackend,
  agent: string,
  tool: string,
  calls: number,
  failed = 0,
): Promise<void> {
  const obs = new ObservabilityBus(backend, { source: agent, flushIntervalMs: 10, logger: silentLogger })
  await obs.start()
  for (let i = 0; i < calls; i++) {
    const span = obs.startTool(tool, { i })
    if (i < failed) span.fail(new Error(`${tool} failed`))
    else span.end({ ok: true })
  }
  obs.emitModelCall({ model: 'gpt-4o-mini', inputTokens: 2000, outputTokens: 500, agent })
  await obs.close()
}

const tmuxPresent = spawnSync('tmux', ['-V']).status === 0
// CI must run the terminal test: there a missing tmux fails instead of skipping.
const required = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'
const tmuxIt = tmuxPresent || required ? it : it.skip
const tmuxTitle = tmuxPresent ? '' : ' (skipped: tmux is not installed; apt-get install tmux to run it)'

describe('omnibus top in a terminal', () => {
  tmuxIt(
    `draws agents and tools in place, the numbers move as events arrive, q quits with exit 0${tmuxTitle}`,
    async () => {
      if (!tmuxPresent) throw new Error('tmux is required to test omnibus top in CI: apt-get install tmux')
      const url = dbUrl()
      const producer = await createBackend(url)
      await producer.connect()
      // A server of its own, so the test never touches the user's tmux sessions.
      const socket = `omnibus-top-${process.pid}`
      const session = 'top'
      const exitFile = path.join(dir, 'top-exit')
      const tmux = (...args: string[]): string => {
        const r = spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' })
        if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`)
        return r.stdout
      }
      const screen = (): string[] => tmux('capture-pane', '-p', '-t', session).split('\n')
      const quote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`
      try {
        // As `pnpm omnibus top` runs it: the launcher, in a 120x40 terminal.
        tmux(
          'new-session',
          '-d',
          '-s',
          session,
          '-x',
          '120',
          '-y',
          '40',
          `${quote(process.execPath)} ${quote(LAUNCHER)} top --backend ${quote(url)} --interval 200ms; echo $? > ${quote(exitFile)}`,
        )
        const rowOf = (lines: string[], name: string): string | undefined =>
          lines.find((l) => l.startsWith(`${name} `))
        const until = async (what: string, check: (lines: string[]) => boolean): Promise<string[]> => {
          let last: string[] = []
          try {
            await waitUntil(
              () => {
                last = screen()
                return check(last)
              },
              { timeoutMs: 15_000, intervalMs: 100, description: what },
            )
          } catch (error) {
            throw new Error(`${(error as Error).message}; screen:\n${last.join('\n')}`)
          }
          return last
        }

        const empty = await until('the first frame', (l) => l.some((x) => x.startsWith('omnibus top')))
        expect(empty.join('\n')).toContain('waiting for events on sqlite')

        await toolCalls(producer, 'agent-one', 'alpha_tool', 2)
        const first = await until('alpha_tool with 2 calls', (l) =>
          /^alpha_tool\s+2\s+0\s/.test(rowOf(l, 'alpha_tool') ?? ''),
        )
        expect(first.some((l) => l.startsWith('agent-one '))).toBe(true)
        expect(first.join('\n')).toMatch(/tool calls 2 \(0 failed\)/)

        await toolCalls(producer, 'agent-two', 'alpha_tool', 3, 1)
        await toolCalls(producer, 'agent-two', 'beta_tool', 4)
        const second = await until(
          'alpha_tool with 5 calls, 1 failed, and beta_tool',
          (l) =>
            /^alpha_tool\s+5\s+1\s/.test(rowOf(l, 'alpha_tool') ?? '') && rowOf(l, 'beta_tool') !== undefined,
        )
        expect(rowOf(second, 'alpha_tool')).not.toBe(rowOf(first, 'alpha_tool'))
        expect(rowOf(second, 'beta_tool')).toMatch(/^beta_tool\s+4\s+0\s/)
        expect(second.some((l) => l.startsWith('agent-two '))).toBe(true)
        expect(second.join('\n')).toMatch(/tool calls 9 \(1 failed\)/)
        expect(second.join('\n')).toMatch(/RECENT ERRORS/)
        // Drawn in place: the frame fits the terminal, with the header on the first row.
        expect(second[0]).toMatch(/^omnibus top {2}sqlite /)
        for (const line of second) expect(line.length).toBeLessThanOrEqual(120)

        tmux('send-keys', '-t', session, 'q')
        await waitUntil(() => existsSync(exitFile) && readFileSync(exitFile, 'utf8').trim() !== '', {
          timeoutMs: 10_000,
          description: 'top to exit after q',
        })
        expect(readFileSync(exitFile, 'utf8').trim()).toBe('0')
      } finally {
        spawnSync('tmux', ['-L', socket, 'kill-server'])
        await producer.disconnect()
      }
    },
    60_000,
  )
})

describe('omnibus top without a terminal', () => {
  it('--json watches for one interval and prints one snapshot; --from earliest includes what happened before', async () => {
    const url = dbUrl()
    const producer = await createBackend(url)
    await producer.connect()
    try {
      await toolCalls(producer, 'agent-json', 'gamma_tool', 4, 1)
    } finally {
      await producer.disconnect()
    }
    const started = Date.now()
    const r = await runOmnibus([
      'top',
      '--backend',
      url,
      '--json',
      '--from',
      'earliest',
      '--interval',
      '1500ms',
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500)
    const lines = r.stdout.trim().split('\n')
    expect(lines).toHaveLength(1)
    const snap = JSON.parse(lines[0] as string) as Snapshot
    expect(snap.tools.find((t) => t.tool === 'gamma_tool')).toMatchObject({ calls: 4, errors: 1 })
    expect(snap.agents.some((a) => a.agentId === 'agent-json')).toBe(true)
    expect(snap.models.find((m) => m.model === 'gpt-4o-mini')?.costUsd).toBeGreaterThan(0)
    expect(snap.backend).toMatchObject({ name: 'sqlite', healthy: true })

    // Without --from earliest, only what arrives while it watches.
    const latest = await runOmnibus(['top', '--backend', url, '--json', '--interval', '300ms'])
    expect(latest.code).toBe(0)
    expect((JSON.parse(latest.stdout) as Snapshot).tools).toEqual([])
  }, 60_000)

  it('into a pipe prints plain frames, and a reader that closes the pipe ends it quietly with exit 0', async () => {
    const url = dbUrl()
    const producer = await createBackend(url)
    await producer.connect()
    try {
      await toolCalls(producer, 'agent-pipe', 'delta_tool', 2)
    } finally {
      await producer.disconnect()
    }
    const r = await runOmnibusIntoHead(
      ['top', '--backend', url, '--from', 'earliest', '--interval', '200ms'],
      100,
      {
        timeoutMs: 30_000,
      },
    )
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('\x1b[')
    // More than one frame before head had its 100 lines; frames grow once the replay arrives.
    expect(r.stdout.match(/^omnibus top {2}sqlite /gm)?.length ?? 0).toBeGreaterThanOrEqual(2)
    expect(r.stdout).toMatch(/^delta_tool\s+2\s+0\s/m)
  }, 60_000)

  it('refuses memory:// and a bad --interval with exit 2', async () => {
    const memory = await runOmnibus(['top', '--backend', 'memory://'])
    expect(memory.code).toBe(2)
    expect(memory.stderr).toMatch(/top shows what other processes publish.*memory/)
    for (const interval of ['10ms', 'soon', '0']) {
      const r = await runOmnibus(['top', '--backend', dbUrl(), '--interval', interval])
      expect(r.code, interval).toBe(2)
      expect(r.stderr).toContain('--interval must be a duration of at least 100 ms')
    }
  }, 30_000)
})
