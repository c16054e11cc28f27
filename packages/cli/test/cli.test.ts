import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createBackend, createEvent, DLQ_HEADERS, type EventBackend, type OmnibusEvent } from '@omnibus/core'
import { deadLetterInput } from '@omnibus/core/backend'
import { waitUntil } from '@omnibus/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type OmnibusResult, runOmnibus, runOmnibusIntoHead } from './process.ts'

/** Bytes that look like nothing SQLite wrote, the same on every run. */
function garbage(length: number): Buffer {
  const out = Buffer.alloc(length)
  let x = 2463534242
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** A database file with a few events whose pages `first`…`first + 2` (counted from 0) are garbage. */
async function damagedDatabase(name: string, first: number): Promise<string> {
  const file = path.join(dir, name)
  const b = await createBackend(`sqlite://${file}`)
  await b.connect()
  await b.publishBatch(Array.from({ length: 50 }, (_, i) => ({ topic: 'orders.placed', data: { i } })))
  await b.disconnect()
  const fd = openSync(file, 'r+')
  // The page size, as PRAGMA page_size reports it: bytes 16–17 of the header (1 means 65536).
  const header = Buffer.alloc(18)
  readSync(fd, header, 0, 18, 0)
  const pageSize = header.readUInt16BE(16) === 1 ? 65536 : header.readUInt16BE(16)
  writeSync(fd, garbage(pageSize * 3), 0, pageSize * 3, pageSize * first)
  closeSync(fd)
  return `sqlite://${file}`
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
    const help = await runOmnibus(['--help'])
    expect(help.code).toBe(0)
    for (const cmd of ['tail', 'publish', 'health', 'dlq', 'demo']) expect(help.stdout).toContain(cmd)
    const none = await runOmnibus([])
    expect(none.code).toBe(2)
    const tailHelp = await runOmnibus(['tail', '--help'])
    expect(tailHelp.stdout).toContain('--from earliest')
  })

  it('an unknown command or option is a usage error (2)', async () => {
    expect((await runOmnibus(['frobnicate'])).code).toBe(2)
    const bad = await runOmnibus(['health', '--bogus'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/bogus/)
  })

  it('a bad backend URL exits 2 and names the known schemes', async () => {
    const r = await runOmnibus(['health', '--backend', 'foo://x'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/known schemes are .*sqlite/)
  })

  it('an unreachable broker exits 3 with the redacted URL', async () => {
    const r = await runOmnibus([
      'health',
      '--backend',
      'redis://user:secret@127.0.0.1:1',
      '--timeout',
      '3000',
    ])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/cannot reach redis:\/\/user:\*\*\*@127\.0\.0\.1:1/)
    expect(r.stderr).not.toContain('secret')
  })

  it('OMNIBUS_BACKEND chooses the backend', async () => {
    const r = await runOmnibus(['health', '--json'], { env: { OMNIBUS_BACKEND: url } })
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout)
    expect(report).toMatchObject({ backend: 'sqlite', healthy: true })
    expect(report.capabilities.guarantees).toContain('at-least-once')
    expect(typeof report.latencyMs).toBe('number')
  })
})

describe('health on a damaged SQLite file', () => {
  it('is unhealthy (exit 1) when the pages publish reads are garbage, as publish fails', async () => {
    // Pages 2–4 counted from 0: the events table's root and the groups table.
    const bad = await damagedDatabase('damaged-events.db', 2)
    const health = await runOmnibus(['health', '--backend', bad])
    expect(health.code).toBe(1)
    expect(health.stdout).toContain('UNHEALTHY')
    expect(health.stdout).toMatch(/is damaged .*: restore it from a backup or run "sqlite3 <file> \.recover"/)
    const publish = await runOmnibus(['publish', 'orders.placed', '1', '--backend', bad])
    expect(publish.code).toBe(1)
    expect(publish.stderr).toMatch(/publish failed: .*is damaged/)
  })

  it('is unhealthy (exit 1), in JSON too, when the file is too damaged to open', async () => {
    // Pages 1–3 counted from 0: omnibus_meta, which connect() reads, and the events table.
    const bad = await damagedDatabase('damaged-meta.db', 1)
    const health = await runOmnibus(['health', '--json', '--backend', bad])
    expect(health.code).toBe(1)
    expect(health.stderr).toBe('')
    expect(JSON.parse(health.stdout)).toMatchObject({
      backend: 'sqlite',
      healthy: false,
      detail: expect.stringMatching(/is damaged .*restore it from a backup/),
    })
    const text = await runOmnibus(['health', '--backend', bad])
    expect(text.code).toBe(1)
    expect(text.stdout).toContain('UNHEALTHY')
    // Not a usage error: the command is right, the file is broken.
    const publish = await runOmnibus(['publish', 'orders.placed', '1', '--backend', bad])
    expect(publish.code).toBe(1)
    expect(publish.stderr).toMatch(/is damaged/)
    expect(publish.stderr).not.toContain('--help')
  })
})

describe('a reader that closes the pipe early', () => {
  let piped: string
  beforeAll(async () => {
    // Far more than a pipe buffer holds (64 KiB), so the command is still writing when head exits.
    piped = `sqlite://${path.join(dir, 'piped.db')}`
    const b = await createBackend(piped)
    await b.connect()
    const now = Date.now()
    for (let k = 0; k < 4; k++) {
      const events = Array.from({ length: 500 }, (_, i) => ({ topic: 'bulk.item', data: { i: k * 500 + i } }))
      expect((await b.publishBatch(events)).failed).toBe(0)
      const letters = events.map((e) =>
        deadLetterInput(createEvent(e), 'omnibus.deadletter', {
          reason: 'test letter',
          group: 'billing',
          attempts: 3,
          firstFailureAt: now,
          lastFailureAt: now,
          backend: 'sqlite',
        }),
      )
      expect((await b.publishBatch(letters)).failed).toBe(0)
    }
    await b.disconnect()
  })

  it('tail --json --from earliest | head -1 prints one event and ends quietly with exit 0', async () => {
    const r = await runOmnibusIntoHead(['tail', '--json', '--from', 'earliest', '--backend', piped], 1)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'bulk.item' })
  })

  it('tail (text) | head -1 ends quietly with exit 0', async () => {
    const r = await runOmnibusIntoHead(['tail', 'bulk.*', '--from', 'earliest', '--backend', piped], 1)
    expect(r.code).toBe(0)
    expect(r.stderr).not.toMatch(/EPIPE|Error/)
    expect(r.stdout).toContain('bulk.item')
  })

  it('dlq list --json | head -1 prints one dead letter and ends quietly with exit 0', async () => {
    const r = await runOmnibusIntoHead(['dlq', 'list', '--json', '--backend', piped], 1)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'omnibus.deadletter' })
  })
})

describe('backends a command cannot use', () => {
  it('tail --backend memory:// is refused with exit 2 and one line saying why', async () => {
    const started = Date.now()
    const r = await runOmnibus(['tail', '--backend', 'memory://'], { timeoutMs: 10_000 })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^omnibus: tail .*memory backend .* its own process/m)
    expect(r.stderr).not.toMatch(/top-level await|Error:/)
    expect(Date.now() - started).toBeLessThan(15_000)
  })

  it('dlq on RabbitMQ or SQS is refused with exit 2 and what to do instead, before connecting', async () => {
    // Port 1: nothing listens there; the refusal must come before any connection attempt.
    for (const backend of ['amqp://guest:secret@127.0.0.1:1', 'sqs://127.0.0.1:1']) {
      for (const action of ['list', 'redrive']) {
        const r = await runOmnibus(['dlq', action, '--backend', backend, '--timeout', '2000'])
        expect(r.code).toBe(2)
        expect(r.stderr).toMatch(/cannot replay a topic .*group subscription to the dead-letter topic/)
        expect(r.stderr).toMatch(/redriveInput\(\)/)
        expect(r.stderr).not.toContain('secret')
      }
    }
  })

  it('dlq list and dlq redrive on memory:// are refused with exit 2', async () => {
    for (const action of ['list', 'redrive']) {
      const r = await runOmnibus(['dlq', action, '--backend', 'memory://'])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/dead letters .*memory backend .* its own process/)
    }
  })
})

describe('publish and tail', () => {
  it('tail --json prints what publish sends, with key and headers', async () => {
    // tail subscribes from 'latest' and only prints events: publish until it has seen four.
    const tail = runOmnibus([
      'tail',
      'task.*',
      '--count',
      '4',
      '--json',
      '--backend',
      url,
      '--from',
      'latest',
    ])
    const deadline = Date.now() + 15_000
    let seen: OmnibusResult | undefined
    const tailDone = tail.then((r) => {
      seen = r
    })
    while (seen === undefined && Date.now() < deadline) {
      const one = await runOmnibus([
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
      const many = await runOmnibus(['publish', 'task.bulk', '-', '--backend', url], {
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
    const r = await runOmnibus(['publish', 'task.bulk', '-', '--backend', url], { input: '1\n{oops\n3\n' })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/stdin line 2 is not JSON/)
    expect(r.stdout).toBe('')
  })

  it('tail --from earliest replays retained events', async () => {
    const r = await runOmnibus([
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

    const list = await runOmnibus(['dlq', 'list', '--backend', url, '--idle', '1500'])
    expect(list.code).toBe(0)
    expect(list.stdout).toMatch(
      new RegExp(`orders\\.placed id=${receipt.id} .*group=billing reason=malformed order`),
    )

    reject = false
    const redrive = await runOmnibus(['dlq', 'redrive', '--backend', url, '--idle', '1500'])
    expect(redrive.code).toBe(0)
    expect(redrive.stdout).toContain(`redriven ${receipt.id} to orders.placed`)
    await waitUntil(() => handled.some((e) => e.id === receipt.id), { timeoutMs: 10_000 })
    expect(handled.find((e) => e.id === receipt.id)?.data).toEqual({ order: 7 })

    // Redriven letters are no longer pending, in a later process too; --all still shows them.
    const after = await runOmnibus(['dlq', 'list', '--backend', url, '--idle', '1500'])
    expect(after.code).toBe(0)
    expect(after.stdout).not.toContain(receipt.id)
    expect(after.stderr).toMatch(/^0 pending dead letter\(s\) on omnibus\.deadletter \(1 redriven\b/m)
    const all = await runOmnibus(['dlq', 'list', '--all', '--backend', url, '--idle', '1500'])
    expect(all.code).toBe(0)
    expect(all.stdout).toMatch(
      new RegExp(`^redriven +orders\\.placed id=${receipt.id} .*reason=malformed order`, 'm'),
    )
    const json = await runOmnibus(['dlq', 'list', '--all', '--json', '--backend', url, '--idle', '1500'])
    const letters = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(letters).toHaveLength(1)
    expect(letters[0]).toMatchObject({ type: 'omnibus.deadletter', dlqstate: 'redriven' })
    // A second redrive has nothing left to do.
    const again = await runOmnibus(['dlq', 'redrive', '--backend', url, '--idle', '1500'])
    expect(again.code).toBe(0)
    expect(again.stdout).toBe('')
    expect(again.stderr).toMatch(/0 redriven, 0 failed/)

    // The same event dead-lettered again is a new letter: pending, while the first stays redriven.
    reject = true
    const secondDlq: OmnibusEvent[] = []
    const watch2 = await backend.subscribe('omnibus.deadletter', (e) => void secondDlq.push(e), {
      guarantee: 'at-most-once',
      from: 'latest',
    })
    await backend.publish({ topic: 'orders.placed', id: receipt.id, data: { order: 7 } })
    await waitUntil(() => secondDlq.length > 0, { timeoutMs: 10_000 })
    await watch2.unsubscribe()
    const third = await runOmnibus(['dlq', 'list', '--all', '--backend', url, '--idle', '1500'])
    const states = third.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[0])
    expect(states).toEqual(['redriven', 'pending'])
    await sub.unsubscribe()
  })

  it('--group is not a dlq option any more: a usage error says so', async () => {
    const r = await runOmnibus(['dlq', 'redrive', '--group', 'x', '--backend', url])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--group/)
  })
})

describe('demo', () => {
  it('refuses an in-process-only backend with a usage error', async () => {
    const r = await runOmnibus(['demo', '--backend', 'memory://'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/separate processes.*memory/)
  })

  it('runs a coordinator and worker processes on SQLite, finishes by itself and exits 0', async () => {
    const started = Date.now()
    const r = await runOmnibus(['demo', '--workers', '2', '--tasks', '20'])
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
