import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createBackend, DLQ_HEADERS, type EventBackend, type OmnibusEvent, waitUntil } from '@omnibus/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url))

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

function omnibus(
  args: string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@omnibus/source', BIN, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.on('error', reject)
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.input ?? '')
  })
}

let dir: string
let url: string
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'omnibus-cli-'))
  url = `sqlite://${path.join(dir, 'cli.db')}`
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('omnibus usage and exit codes', () => {
  it('--help lists the commands and exits 0; no command exits 2', async () => {
    const help = await omnibus(['--help'])
    expect(help.code).toBe(0)
    for (const cmd of ['tail', 'publish', 'health', 'dlq', 'demo']) expect(help.stdout).toContain(cmd)
    const none = await omnibus([])
    expect(none.code).toBe(2)
    const tailHelp = await omnibus(['tail', '--help'])
    expect(tailHelp.stdout).toContain('--from earliest')
  })

  it('an unknown command or option is a usage error (2)', async () => {
    expect((await omnibus(['frobnicate'])).code).toBe(2)
    const bad = await omnibus(['health', '--bogus'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/bogus/)
  })

  it('a bad backend URL exits 2 and names the known schemes', async () => {
    const r = await omnibus(['health', '--backend', 'foo://x'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/known schemes are .*sqlite/)
  })

  it('an unreachable broker exits 3 with the redacted URL', async () => {
    const r = await omnibus(['health', '--backend', 'redis://user:secret@127.0.0.1:1', '--timeout', '3000'])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/cannot reach redis:\/\/user:\*\*\*@127\.0\.0\.1:1/)
    expect(r.stderr).not.toContain('secret')
  })

  it('OMNIBUS_BACKEND chooses the backend', async () => {
    const r = await omnibus(['health', '--json'], { env: { OMNIBUS_BACKEND: url } })
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout)
    expect(report).toMatchObject({ backend: 'sqlite', healthy: true })
    expect(report.capabilities.guarantees).toContain('at-least-once')
    expect(typeof report.latencyMs).toBe('number')
  })
})

describe('publish and tail', () => {
  it('tail --json prints what publish sends, with key and headers', async () => {
    // tail subscribes from 'latest' and only prints events: publish until it has seen four.
    const tail = omnibus(['tail', 'task.*', '--count', '4', '--json', '--backend', url, '--from', 'latest'])
    const deadline = Date.now() + 15_000
    let seen: Result | undefined
    const tailDone = tail.then((r) => {
      seen = r
    })
    while (seen === undefined && Date.now() < deadline) {
      const one = await omnibus([
        'publish',
        'task.created',
        '{"id":1}',
        '--key',
        'k1',
        '--header',
        'tenant=acme',
        '--backend',
        url,
      ])
      expect(one.code).toBe(0)
      expect(one.stdout).toMatch(/^published \S+ to task\.created/)
      const many = await omnibus(['publish', 'task.bulk', '-', '--backend', url], {
        input: '1\n"two"\n{"x":3}\n',
      })
      expect(many.code).toBe(0)
      expect(many.stdout.trim().split('\n')).toHaveLength(3)
      await Promise.race([tailDone, new Promise((r) => setTimeout(r, 1500))])
    }
    await tailDone
    expect(seen?.code).toBe(0)
    const lines = (seen?.stdout ?? '')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(lines).toHaveLength(4)
    const created = lines.find((l) => l.type === 'task.created')
    expect(created).toMatchObject({ data: { id: 1 }, partitionkey: 'k1', tenant: 'acme' })
    expect(lines.filter((l) => l.type === 'task.bulk').map((l) => l.data)).toEqual(
      expect.arrayContaining([1, 'two']),
    )
  })

  it('a bad JSON line sends nothing and exits 2', async () => {
    const r = await omnibus(['publish', 'task.bulk', '-', '--backend', url], { input: '1\n{oops\n3\n' })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/stdin line 2 is not JSON/)
    expect(r.stdout).toBe('')
  })

  it('tail --from earliest replays retained events', async () => {
    const r = await omnibus([
      'tail',
      'task.created',
      '--from',
      'earliest',
      '--count',
      '1',
      '--json',
      '--backend',
      url,
    ])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout.trim().split('\n')[0] as string).type).toBe('task.created')
  })
})

describe('dlq', () => {
  let backend: EventBackend
  beforeAll(async () => {
    backend = await createBackend(url)
    await backend.connect()
  })
  afterAll(async () => {
    await backend.disconnect()
  })

  it('list shows dead letters with their diagnostics; redrive re-publishes them to the original topic', async () => {
    let reject = true
    const handled: OmnibusEvent[] = []
    const sub = await backend.subscribe(
      'orders.placed',
      (event, ctx) => {
        if (reject) {
          ctx.deadLetter('malformed order')
          return
        }
        handled.push(event)
      },
      { group: 'billing' },
    )
    const receipt = await backend.publish({ topic: 'orders.placed', data: { order: 7 } })
    const dlqSeen: OmnibusEvent[] = []
    const watch = await backend.subscribe('omnibus.deadletter', (e) => void dlqSeen.push(e), {
      guarantee: 'at-most-once',
      from: 'earliest',
    })
    await waitUntil(() => dlqSeen.some((e) => e.headers[DLQ_HEADERS.originalId] === receipt.id), {
      timeoutMs: 10_000,
    })
    await watch.unsubscribe()

    const list = await omnibus(['dlq', 'list', '--backend', url, '--idle', '1500'])
    expect(list.code).toBe(0)
    expect(list.stdout).toMatch(
      new RegExp(`orders\\.placed id=${receipt.id} .*group=billing reason=malformed order`),
    )

    reject = false
    const redrive = await omnibus(['dlq', 'redrive', '--backend', url, '--idle', '1500'])
    expect(redrive.code).toBe(0)
    expect(redrive.stdout).toContain(`redriven ${receipt.id} to orders.placed`)
    await waitUntil(() => handled.some((e) => e.id === receipt.id), { timeoutMs: 10_000 })
    expect(handled.find((e) => e.id === receipt.id)?.data).toEqual({ order: 7 })
    await sub.unsubscribe()
  })
})

describe('demo', () => {
  it('refuses an in-process-only backend with a usage error', async () => {
    const r = await omnibus(['demo', '--backend', 'memory://'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/separate processes.*memory/)
  })

  it('runs a coordinator and worker processes on SQLite, finishes by itself and exits 0', async () => {
    const started = Date.now()
    const r = await omnibus(['demo', '--workers', '2', '--tasks', '20'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(Date.now() - started).toBeLessThan(45_000)
    expect(r.stdout).toContain('2 workers ready (worker-1, worker-2)')
    expect(r.stdout).toMatch(/tasks\s+20\/20 answered \(\d+ ok, \d+ failed by design, 0 lost\)/)
    const m = r.stdout.match(/telemetry\s+(\d+) events received of (\d+) flushed/)
    expect(m).not.toBeNull()
    expect(Number(m?.[1])).toBe(Number(m?.[2]))
    expect(Number(m?.[1])).toBeGreaterThan(20 * 4)
    expect(r.stdout).toMatch(/worker-1 \d+ \(\d+ named, \d+ group\)/)
    expect(r.stdout).toContain('all exited cleanly')
    expect(r.stdout).toContain('✓ demo complete')
  }, 60_000)
})
