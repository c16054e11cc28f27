import type { OmnibusEvent } from '@omnibus/core'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { createSqliteBackend, SCHEMA_VERSION } from '../src/index.ts'
import { backends, tempDir, waitFor } from './helpers.ts'

const tmp = tempDir()
const opened = backends()

afterEach(async () => {
  await opened.closeAll()
})

function rows(file: string, sql: string, ...params: unknown[]): unknown[] {
  const db = new Database(file, { readonly: true })
  try {
    return db.prepare(sql).all(...params)
  } finally {
    db.close()
  }
}

describe('sqlite delayed delivery (deliver_at column, omnibus_delayed)', () => {
  it('events delayed by an hour take no lease: 2,500 of them do not hold back an event published after them', async () => {
    const file = tmp.file()
    const b = await opened.open({ path: file })
    const seen: string[] = []
    await b.subscribe('dl.hold', (e) => void seen.push(String(e.data)), { group: 'g', concurrency: 1 })
    await b.publishBatch(
      Array.from({ length: 2500 }, (_, i) => ({ topic: 'dl.hold', data: `later-${i}`, delayMs: 3_600_000 })),
    )
    await b.publish({ topic: 'dl.hold', data: 'now' })
    await waitFor('the undelayed event', () => seen.includes('now'), 5000)
    expect(seen).toEqual(['now'])
    // They wait in the group's delayed index, not as leases that a claim would have to pass over.
    expect(
      rows(
        file,
        'SELECT count(*) AS n FROM omnibus_leases l JOIN omnibus_events e ON e.seq = l.seq WHERE e.deliver_at IS NOT NULL',
      ),
    ).toEqual([{ n: 0 }])
    expect(rows(file, 'SELECT count(*) AS n FROM omnibus_delayed')).toEqual([{ n: 2500 }])
  })

  it('a delayed event reaches its handler once, at its time, after later undelayed ones (concurrency 1)', async () => {
    const file = tmp.file()
    const b = await opened.open({ path: file })
    const seen: { data: string; at: number; attempt: number; deliverAt: number | undefined }[] = []
    await b.subscribe(
      'dl.order',
      (e: OmnibusEvent, ctx) =>
        void seen.push({
          data: String(e.data),
          at: Date.now(),
          attempt: ctx.attempt,
          deliverAt: e.deliverAt,
        }),
      { group: 'g', concurrency: 1 },
    )
    await b.publish({ topic: 'dl.order', data: 'delayed', delayMs: 400 })
    await b.publish({ topic: 'dl.order', data: 'a' })
    await b.publish({ topic: 'dl.order', data: 'b' })
    await waitFor('all three', () => seen.length === 3, 5000)
    expect(seen.map((s) => s.data)).toEqual(['a', 'b', 'delayed'])
    const d = seen[2] as (typeof seen)[number]
    expect(d.deliverAt).toBeTypeOf('number')
    expect(d.at).toBeGreaterThanOrEqual(d.deliverAt as number)
    expect(d.at - (d.deliverAt as number)).toBeLessThan(500)
    expect(d.attempt).toBe(1)
  })

  it('a delayed event survives its consumer closing and is handled once by one of two members in two connections', async () => {
    const file = tmp.file()
    const first = await opened.open({ path: file })
    const early: string[] = []
    const sub = await first.subscribe('dl.restart', (e) => void early.push(String(e.data)), { group: 'g' })
    await first.publish({ topic: 'dl.restart', data: 'x', delayMs: 700 })
    // The member has moved it past the cursor into the delayed index before it leaves.
    await waitFor('the delayed row', () => rows(file, 'SELECT 1 FROM omnibus_delayed').length === 1)
    await sub.unsubscribe()
    await first.disconnect()
    const got: string[] = []
    const a = await opened.open({ path: file })
    const c = await opened.open({ path: file })
    await a.subscribe('dl.restart', () => void got.push('a'), { group: 'g' })
    await c.subscribe('dl.restart', () => void got.push('c'), { group: 'g' })
    await waitFor('the delayed event', () => got.length === 1, 5000)
    // A second delivery would come within a claim or two: give both members time to try.
    await new Promise((r) => setTimeout(r, 300))
    expect(got).toHaveLength(1)
    expect(early).toEqual([])
  })

  it('retention counts a delayed event from its delivery time', async () => {
    const file = tmp.file()
    const b = await opened.open({ path: file })
    const seen: string[] = []
    await b.subscribe('dl.keep', (e) => void seen.push(String(e.data)), { group: 'g' })
    await b.publish({ topic: 'dl.keep', data: 'delayed', delayMs: 800 })
    await b.publish({ topic: 'dl.keep', data: 'plain' })
    await waitFor('the undelayed event', () => seen.includes('plain'))
    await new Promise((r) => setTimeout(r, 20))
    await b.cleanup({ maxAgeMs: 10 })
    expect(
      rows(
        file,
        "SELECT count(*) AS n FROM omnibus_events WHERE topic = 'dl.keep' AND deliver_at IS NOT NULL",
      ),
    ).toEqual([{ n: 1 }])
    await waitFor('the delayed event', () => seen.includes('delayed'), 5000)
  })

  it('opens a layout 1 file: adds deliver_at and delays from then on', async () => {
    const file = tmp.file()
    const db = new Database(file)
    db.exec(`CREATE TABLE omnibus_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE omnibus_events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, topic TEXT NOT NULL,
        pkey TEXT, time INTEGER NOT NULL, body BLOB NOT NULL);
      INSERT INTO omnibus_meta (key, value) VALUES ('schema_version', '1');`)
    db.close()
    const b = await opened.open({ path: file })
    expect(rows(file, "SELECT value FROM omnibus_meta WHERE key = 'schema_version'")).toEqual([
      { value: String(SCHEMA_VERSION) },
    ])
    const seen: number[] = []
    await b.subscribe('dl.migrated', () => void seen.push(Date.now()), { group: 'g' })
    const receipt = await b.publish({ topic: 'dl.migrated', data: 1, delayMs: 300 })
    const [row] = rows(
      file,
      'SELECT deliver_at FROM omnibus_events WHERE seq = ?',
      Number(receipt.position),
    ) as {
      deliver_at: number
    }[]
    expect(row?.deliver_at).toBeGreaterThan(Date.now())
    await waitFor('the delayed event', () => seen.length === 1, 5000)
    expect(seen[0]).toBeGreaterThanOrEqual(row?.deliver_at as number)
  })

  it('declares no delay limit of its own', () => {
    const b = createSqliteBackend({ path: ':memory:' })
    expect(b.capabilities.delay).toEqual({ maxDelayMs: Number.MAX_SAFE_INTEGER })
  })
})
