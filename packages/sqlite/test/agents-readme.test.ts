/**
 * Runs the root README's agent example (fixtures/agents-readme.ts) in its own Node process on a
 * fresh SQLite file, and checks what it prints: agents started after the messages sent to them
 * get them, a team request gathers the replies and names the missing agent, and the delayed
 * message comes no earlier than its delay. The process must also exit by itself.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-agents-readme-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('the README agent example: any start order, a team request, a delayed message', async () => {
  const script = fileURLToPath(new URL('./fixtures/agents-readme.ts', import.meta.url))
  const child = spawn(
    process.execPath,
    ['--conditions=@omnibus/source', script, `sqlite://${path.join(dir, 'readme.db')}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString()
  })
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString()
  })
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (c) => {
      clearTimeout(timer)
      resolve(c)
    })
  })
  expect({ code, err }).toEqual({ code: 0, err: '' })
  const lines = out.trim().split('\n')
  expect(lines.slice(0, 3)).toEqual([
    'alice was assigned PR 42',
    '{ alice: { approve: true }, bob: { approve: false } }',
    "[ 'carol' ] AgentUnavailableError",
  ])
  const reminder = /^reminder \{ pr: 42 \} after (\d+) ms$/.exec(lines[3] ?? '')
  expect(reminder, `the reminder line, got ${lines[3]}`).not.toBeNull()
  expect(Number(reminder?.[1]), 'ms from send to the delayed message').toBeGreaterThanOrEqual(1500)
  expect(lines).toHaveLength(4)
})
