import { createEvent, DLQ_HEADERS, type OmnibusEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { backends, tempDir, waitFor } from './helpers.ts'

const tmp = tempDir()
const pool = backends()
afterEach(async () => {
  await pool.closeAll()
})
process.on('exit', () => tmp.cleanup())

describe('sqlite backend: publishing', () => {
  it('commits concurrent publishes of one tick in one transaction, in order', async () => {
    const b = await pool.open({ path: tmp.file() })
    const before = b.stats()
    const receipts = await Promise.all(
      Array.from({ length: 250 }, (_, i) => b.publish({ topic: 'gc.t', data: i })),
    )
    const after = b.stats()
    expect(after.published - before.published).toBe(250)
    expect(after.publishTransactions - before.publishTransactions).toBe(1)
    const positions = receipts.map((r) => Number(r.position))
    expect(positions).toEqual(positions.map((_, i) => (positions[0] as number) + i))
    // Sequential awaited publishes each get their own commit.
    await b.publish({ topic: 'gc.t', data: 'a' })
    await b.publish({ topic: 'gc.t', data: 'b' })
    expect(b.stats().publishTransactions - after.publishTransactions).toBe(2)
  })

  it('with publishOnIoThread, writes a long run of publishes in a few ordered transactions', async () => {
    const b = await pool.open({ path: tmp.file(), publishOnIoThread: true })
    const before = b.stats()
    const receipts = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => b.publish({ topic: 'gc.long', data: i })),
    )
    const after = b.stats()
    expect(after.published - before.published).toBe(2000)
    // Chunks of 256 leave while the rest is still being encoded; the remainder accumulates behind
    // them and goes as one more transaction: a few transactions, far fewer than events.
    const transactions = after.publishTransactions - before.publishTransactions
    expect(transactions).toBeGreaterThanOrEqual(2)
    expect(transactions).toBeLessThanOrEqual(9)
    const positions = receipts.map((r) => Number(r.position))
    expect(positions).toEqual(positions.map((_, i) => (positions[0] as number) + i))
    const got: number[] = []
    await b.subscribe(
      'gc.long',
      (e) => {
        got.push(e.data as number)
      },
      { group: 'long', from: 'earliest', concurrency: 1 },
    )
    await waitFor('all 2000 events', () => got.length === 2000, 15_000)
    expect(got).toEqual(got.map((_, i) => i))
  })

  it('publishes issued while a batch waits for the lock join it: one transaction', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const holder = new Database(file)
    holder.exec('BEGIN IMMEDIATE')
    const before = b.stats()
    const first = Promise.all(Array.from({ length: 300 }, (_, i) => b.publish({ topic: 'gc.wait', data: i })))
    const later: Promise<unknown>[] = []
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r))
      later.push(b.publish({ topic: 'gc.wait', data: `later-${i}` }))
    }
    expect(b.stats().publishTransactions).toBe(before.publishTransactions)
    holder.exec('COMMIT')
    holder.close()
    await first
    await Promise.all(later)
    // The batch kept retrying at the head of the queue; the five later ticks joined it.
    expect(b.stats().publishTransactions - before.publishTransactions).toBe(1)
    expect(b.stats().published - before.published).toBe(305)
    expect(b.stats().lockRetries).toBeGreaterThan(0)
  })

  it('with publishOnIoThread, publishes issued while the thread commits share its next transaction', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file, publishOnIoThread: true })
    const holder = new Database(file)
    holder.exec('BEGIN IMMEDIATE')
    const before = b.stats()
    // 300 at once go to the I/O thread, whose commit now waits for the lock.
    const first = Promise.all(Array.from({ length: 300 }, (_, i) => b.publish({ topic: 'gc.wait', data: i })))
    const later: Promise<unknown>[] = []
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r))
      later.push(b.publish({ topic: 'gc.wait', data: `later-${i}` }))
    }
    expect(b.stats().publishTransactions).toBe(before.publishTransactions)
    holder.exec('COMMIT')
    holder.close()
    await first
    await Promise.all(later)
    // The five publishes of five different ticks went in one transaction after the first.
    expect(b.stats().publishTransactions - before.publishTransactions).toBe(2)
    expect(b.stats().published - before.published).toBe(305)
  })

  it('a tick of publishes is one transaction on the calling thread, however many', async () => {
    const b = await pool.open({ path: tmp.file() })
    const before = b.stats()
    const receipts = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => b.publish({ topic: 'gc.inline', data: i })),
    )
    expect(b.stats().publishTransactions - before.publishTransactions).toBe(1)
    const positions = receipts.map((r) => Number(r.position))
    expect(positions).toEqual(positions.map((_, i) => (positions[0] as number) + i))
  })

  it('a resolved publish is on disk: another connection reads it', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const r = await b.publish({ topic: 'disk.t', data: { ok: true } })
    const raw = new Database(file, { readonly: true })
    const row = raw.prepare('SELECT id, topic FROM omnibus_events WHERE seq = ?').get(Number(r.position))
    raw.close()
    expect(row).toEqual({ id: r.id, topic: 'disk.t' })
  })

  it('uses WAL mode', async () => {
    const file = tmp.file()
    await pool.open({ path: file })
    const raw = new Database(file, { readonly: true })
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal')
    raw.close()
  })
})

describe('sqlite backend: change detection', () => {
  it('wakes on a commit by another connection through PRAGMA data_version', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file, pollIntervalMs: 5 })
    const got: OmnibusEvent[] = []
    await b.subscribe('dv.*', (e) => {
      got.push(e)
    })
    // A connection the backend knows nothing about: only data_version can tell it something changed.
    const raw = new Database(file)
    const event = createEvent({ topic: 'dv.foreign', data: { from: 'raw' } })
    raw
      .prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, NULL, ?, ?)')
      .run(event.id, event.topic, event.time, encodeEvent(event))
    raw.close()
    await waitFor('the raw insert to be delivered', () => got.length === 1, 3000)
    expect(got[0]?.id).toBe(event.id)
    expect(got[0]?.data).toEqual({ from: 'raw' })
  })

  it('two backends in one process on one file wake each other without waiting for the poll', async () => {
    const file = tmp.file()
    // A poll interval far longer than the wait below: only the in-process notify can deliver in time.
    const a = await pool.open({ path: file, pollIntervalMs: 60_000 })
    const c = await pool.open({ path: file, pollIntervalMs: 60_000 })
    const got: string[] = []
    await c.subscribe('peer.t', (e) => {
      got.push(e.id)
    })
    const r = await a.publish({ topic: 'peer.t', data: 1 })
    await waitFor('delivery through the in-process notify', () => got.length === 1, 2000)
    expect(got).toEqual([r.id])
  })
})

describe('sqlite backend: groups, cursors and broadcast', () => {
  it('a group shares the work across instances and resumes from its cursor after a restart', async () => {
    const file = tmp.file()
    const a = await pool.open({ path: file })
    const c = await pool.open({ path: file })
    const seen = new Map<string, number>()
    const h = (e: OmnibusEvent) => {
      seen.set(e.id, (seen.get(e.id) ?? 0) + 1)
    }
    const s1 = await a.subscribe('grp.*', h, { group: 'workers', concurrency: 4 })
    await c.subscribe('grp.*', h, { group: 'workers', concurrency: 4 })
    const ids = (
      await Promise.all(Array.from({ length: 60 }, (_, i) => a.publish({ topic: 'grp.x', data: i })))
    ).map((r) => r.id)
    await waitFor('all 60 events', () => seen.size === 60)
    expect([...seen.values()].every((n) => n === 1)).toBe(true)
    await s1.unsubscribe()
    await pool.closeAll()
    // Published while the group has no member: delivered when one comes back.
    const p = await pool.open({ path: file })
    const late = await p.publish({ topic: 'grp.y', data: 'late' })
    const back = await pool.open({ path: file })
    const after: string[] = []
    await back.subscribe(
      'grp.*',
      (e) => {
        after.push(e.id)
      },
      { group: 'workers' },
    )
    await waitFor('the event published while the group was away', () => after.length === 1)
    expect(after).toEqual([late.id])
    expect(ids).not.toContain(late.id)
  })

  it('broadcast subscribers start at latest and leave no rows behind when they unsubscribe', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    await b.publish({ topic: 'bc.t', data: 'before' })
    const got: unknown[] = []
    const sub = await b.subscribe('bc.t', (e) => {
      got.push(e.data)
    })
    await b.publish({ topic: 'bc.t', data: 'after' })
    await waitFor('the event published after subscribing', () => got.length === 1)
    expect(got).toEqual(['after'])
    await sub.unsubscribe()
    const raw = new Database(file, { readonly: true })
    const rows = raw.prepare("SELECT count(*) AS n FROM omnibus_groups WHERE name LIKE '~%'").get() as {
      n: number
    }
    raw.close()
    expect(rows.n).toBe(0)
  })

  it('a new group replays history with from: earliest', async () => {
    const b = await pool.open({ path: tmp.file() })
    await b.publish({ topic: 'rp.t', data: 1 })
    await b.publish({ topic: 'rp.t', data: 2 })
    const got: unknown[] = []
    await b.subscribe(
      'rp.t',
      (e) => {
        got.push(e.data)
      },
      { group: 'replayer', from: 'earliest' },
    )
    await waitFor('both historical events', () => got.length === 2)
    expect(got).toEqual([1, 2])
  })
})

describe('sqlite backend: failures', () => {
  it('a failing key does not block other keys; later events of that key wait for it', async () => {
    const b = await pool.open({ path: tmp.file() })
    const order: string[] = []
    let failures = 0
    await b.subscribe(
      'ord.t',
      (e) => {
        const d = e.data as string
        if (d === 'a1' && failures < 2) {
          failures++
          throw new Error('not yet')
        }
        order.push(d)
      },
      { group: 'ord', concurrency: 4, retry: { initialDelayMs: 50, jitter: 0 } },
    )
    for (const [key, d] of [
      ['a', 'a1'],
      ['a', 'a2'],
      ['b', 'b1'],
      ['b', 'b2'],
    ] as const) {
      await b.publish({ topic: 'ord.t', data: d, partitionKey: key })
    }
    await waitFor('all four events', () => order.length === 4)
    expect(order.indexOf('a1')).toBeLessThan(order.indexOf('a2'))
    expect(order.indexOf('b1')).toBeLessThan(order.indexOf('b2'))
    // b's events were not held up by a1's retries.
    expect(order.indexOf('b2')).toBeLessThan(order.indexOf('a1'))
  })

  it('dead-letters after maxAttempts with diagnostics', async () => {
    const b = await pool.open({ path: tmp.file() })
    let runs = 0
    await b.subscribe(
      'dl.t',
      () => {
        runs++
        throw new TypeError('always broken')
      },
      { group: 'dl', retry: { maxAttempts: 3, initialDelayMs: 5 }, deadLetter: 'dl.dead' },
    )
    const dead: OmnibusEvent[] = []
    await b.subscribe(
      'dl.dead',
      (e) => {
        dead.push(e)
      },
      { group: 'dlq', from: 'earliest' },
    )
    const r = await b.publish({ topic: 'dl.t', data: { n: 1 }, headers: { h: 'v' } })
    await waitFor('the dead letter', () => dead.length === 1)
    expect(runs).toBe(3)
    const d = dead[0] as OmnibusEvent
    expect(d.data).toEqual({ n: 1 })
    expect(d.headers.h).toBe('v')
    expect(d.headers[DLQ_HEADERS.originalId]).toBe(r.id)
    expect(d.headers[DLQ_HEADERS.attempts]).toBe('3')
    expect(d.headers[DLQ_HEADERS.errorName]).toBe('TypeError')
    expect(d.headers[DLQ_HEADERS.group]).toBe('dl')
  })

  it('dead-letters foreign and corrupt rows with the reason and keeps consuming', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const good: unknown[] = []
    await b.subscribe(
      'fr.*',
      (e) => {
        good.push(e.data)
      },
      { group: 'fr' },
    )
    const dead: OmnibusEvent[] = []
    await b.subscribe(
      'omnibus.deadletter',
      (e) => {
        dead.push(e)
      },
      { group: 'fr-dlq', from: 'earliest' },
    )
    const raw = new Database(file)
    const ins = raw.prepare(
      'INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, NULL, 0, ?)',
    )
    ins.run('foreign-1', 'fr.json', JSON.stringify({ hello: 'not a cloudevent' }))
    ins.run('foreign-2', 'fr.trunc', '{"specversion":"1.0","id":')
    ins.run('foreign-3', 'fr.bin', Buffer.from([0xff, 0x00, 0xfe]))
    raw.close()
    await b.publish({ topic: 'fr.ok', data: 'still fine' })
    await waitFor('three dead letters and the good event', () => dead.length === 3 && good.length === 1)
    expect(good).toEqual(['still fine'])
    const reasons = dead.map((d) => d.headers[DLQ_HEADERS.reason])
    expect(reasons.every((r) => r?.startsWith('not a valid Omnibus/CloudEvents envelope'))).toBe(true)
    // The stand-in of an undecodable row is core's one scheme: foreign:sqlite:<seq>, the body as data.
    expect(dead.every((d) => /^foreign:sqlite:\d+$/.test(d.headers[DLQ_HEADERS.originalId] ?? ''))).toBe(true)
    expect(dead.find((d) => d.headers[DLQ_HEADERS.originalTopic] === 'fr.bin')?.data).toEqual(
      new Uint8Array([0xff, 0x00, 0xfe]),
    )
    expect(b.stats().deadLettered).toBe(3)
  })

  it('exactly-once: the same id published twice is handled once per group', async () => {
    const b = await pool.open({ path: tmp.file() })
    const seen: string[] = []
    await b.subscribe(
      'eo.t',
      (e) => {
        seen.push(e.id)
      },
      { group: 'eo', guarantee: 'exactly-once' },
    )
    await b.publish({ topic: 'eo.t', data: 1, id: 'same-id' })
    await waitFor('the first copy', () => seen.length === 1)
    await b.publish({ topic: 'eo.t', data: 2, id: 'same-id' })
    await b.publish({ topic: 'eo.t', data: 3, id: 'other-id' })
    await waitFor('the other id', () => seen.includes('other-id'))
    expect(seen).toEqual(['same-id', 'other-id'])
  })

  it('acknowledgements still pending when a subscription closes are written by the close', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const seen: string[] = []
    const sub = await b.subscribe(
      'ack.t',
      (e) => {
        seen.push(e.id)
      },
      { group: 'ack', guarantee: 'exactly-once' },
    )
    await b.publish({ topic: 'ack.t', data: 1, id: 'ack-once' })
    await waitFor('the first run', () => seen.length === 1)
    await sub.unsubscribe()
    const raw = new Database(file, { readonly: true })
    const processed = raw
      .prepare("SELECT count(*) AS n FROM omnibus_processed WHERE id = 'ack-once'")
      .get() as {
      n: number
    }
    const leases = raw.prepare('SELECT count(*) AS n FROM omnibus_leases').get() as { n: number }
    raw.close()
    expect(processed.n).toBe(1)
    expect(leases.n).toBe(0)
    const again: string[] = []
    await b.subscribe(
      'ack.t',
      (e) => {
        again.push(e.id)
      },
      { group: 'ack', guarantee: 'exactly-once' },
    )
    await b.publish({ topic: 'ack.t', data: 2, id: 'ack-once' })
    await b.publish({ topic: 'ack.t', data: 3, id: 'ack-next' })
    await waitFor('the next id', () => again.length >= 1)
    expect(again).toEqual(['ack-next'])
  })

  it('extends the lease of a handler slower than the visibility timeout instead of redelivering', async () => {
    const file = tmp.file()
    const a = await pool.open({ path: file })
    const c = await pool.open({ path: file })
    let runs = 0
    let release: () => void = () => {}
    const h = () => {
      runs++
      return new Promise<void>((r) => {
        release = r
      })
    }
    await a.subscribe('slow.t', h, { group: 'slow', visibilityTimeoutMs: 300 })
    await c.subscribe('slow.t', h, { group: 'slow', visibilityTimeoutMs: 300 })
    await a.publish({ topic: 'slow.t', data: 1 })
    await waitFor('the first run', () => runs === 1)
    // Five visibility windows: without extension the other member would have taken it by now.
    const until = Date.now() + 1500
    await waitFor('five visibility windows', () => Date.now() > until || runs > 1, 3000)
    expect(runs).toBe(1)
    release()
  })
})

describe('sqlite backend: retention', () => {
  it('cleanup({ maxAgeMs }) deletes old events, and the policy persists across reopening', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const old = Date.now() - 3_600_000
    await b.publish({ topic: 'ret.t', data: 'old-1', time: old })
    await b.publish({ topic: 'ret.t', data: 'new-1' })
    const result = await b.cleanup({ maxAgeMs: 60_000 })
    expect(result).toMatchObject({ maxAgeMs: 60_000, deletedEvents: 1 })
    await pool.closeAll()

    // Another instance writes old rows behind the policy's back, then a fresh open applies it.
    const raw = new Database(file)
    const stale = createEvent({ topic: 'ret.t', data: 'old-2', time: old })
    raw
      .prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, NULL, ?, ?)')
      .run(stale.id, stale.topic, stale.time, encodeEvent(stale))
    raw.close()
    const reopened = await pool.open({ path: file })
    const got: unknown[] = []
    await reopened.subscribe(
      'ret.t',
      (e) => {
        got.push(e.data)
      },
      { group: 'ret', from: 'earliest' },
    )
    await reopened.publish({ topic: 'ret.t', data: 'new-2' })
    await waitFor('the retained events', () => got.length === 2)
    expect(got).toEqual(['new-1', 'new-2'])
    expect((await reopened.cleanup()).maxAgeMs).toBe(60_000)
  })

  it('never reuses a sequence number, even when retention removes everything old', async () => {
    const b = await pool.open({ path: tmp.file() })
    const old = Date.now() - 3_600_000
    const first = await b.publish({ topic: 'seq.t', data: 1, time: old })
    const last = await b.publish({ topic: 'seq.t', data: 2, time: old })
    await b.cleanup({ maxAgeMs: 1000 })
    const next = await b.publish({ topic: 'seq.t', data: 3 })
    expect(Number(next.position)).toBeGreaterThan(Number(last.position))
    expect(Number(last.position)).toBeGreaterThan(Number(first.position))
  })
})

describe('sqlite backend: a ready connection', () => {
  it('uses a given file connection, shares it with other instances, and leaves it open', async () => {
    const file = tmp.file()
    const own = new Database(file)
    const b = await pool.open({ database: own })
    expect(b.path).toBe(file)
    const other = await pool.open({ path: file })
    const got: unknown[] = []
    await other.subscribe('ready.t', (e) => {
      got.push(e.data)
    })
    await Promise.all(Array.from({ length: 100 }, (_, i) => b.publish({ topic: 'ready.t', data: i })))
    await waitFor('100 events through the other instance', () => got.length === 100)
    await pool.closeAll()
    expect(own.open).toBe(true)
    expect((own.prepare('SELECT count(*) AS n FROM omnibus_events').get() as { n: number }).n).toBe(100)
    own.close()
  })

  it('a given in-memory connection is private and declares so, and large batches stay in it', async () => {
    const mem = new Database(':memory:')
    const b = await pool.open({ database: mem })
    expect(b.capabilities).toMatchObject({ persistent: false, crossProcess: false })
    const got: unknown[] = []
    await b.subscribe(
      'mem.big',
      (e) => {
        got.push(e.data)
      },
      { concurrency: 8 },
    )
    await Promise.all(Array.from({ length: 600 }, (_, i) => b.publish({ topic: 'mem.big', data: i })))
    await waitFor('600 events', () => got.length === 600)
    expect((mem.prepare('SELECT count(*) AS n FROM omnibus_events').get() as { n: number }).n).toBe(600)
  })
})

describe('sqlite backend: health', () => {
  it('healthCheck is healthy while connected and says why not otherwise', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const up = await b.healthCheck()
    expect(up.healthy).toBe(true)
    expect(up.latencyMs).toBeGreaterThanOrEqual(0)
    expect(b.describe()).toContain(file)
    await b.disconnect()
    const down = await b.healthCheck()
    expect(down.healthy).toBe(false)
    expect(down.detail).toMatch(
      /^sqlite: NotConnectedError: cannot check health: the sqlite backend is not connected/,
    )
  })
})
