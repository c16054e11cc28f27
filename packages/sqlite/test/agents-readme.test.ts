/**
 * Runs the root README's agent example, as written there, in its own Node process on a fresh
 * SQLite file, and checks what it prints: agents started after the messages sent to them
 * get them, a team request gathers the replies and names the missing agent, and the delayed
 * message comes no earlier than its delay. The process must also exit by itself.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-agents-readme-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('the README agent example: any start order, a team request, a delayed message', async () => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
  const section = readme.split('\n## Agents: ')[1]?.split('\n## ')[0] ?? ''
  const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  if (example === undefined) throw new Error('the README has no agent example')
  const url = "'sqlite://./omnibus.db'"
  expect(example, 'the example names its URL once').toContain(`const url = ${url}`)
  // Inside the package, so its imports resolve as they do for a user who installed them.
  const script = fileURLToPath(new URL(`./.agents-readme-${process.pid}.ts`, import.meta.url))
  writeFileSync(script, example.replace(url, JSON.stringify(`sqlite://${path.join(dir, 'readme.db')}`)))
  const child = spawn(process.execPath, ['--conditions=@omnibus/source', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
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
  }).finally(() => rmSync(script, { force: true }))
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
