import { closeSync, copyFileSync, openSync, writeSync } from 'node:fs'
import { OmnibusError } from '@omnibus/core'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { createSqliteBackend } from '../src/index.ts'
import { backends, tempDir } from './helpers.ts'

const tmp = tempDir()
const pool = backends()
afterEach(async () => {
  await pool.closeAll()
})
process.on('exit', () => tmp.cleanup())

/** Bytes that look like nothing SQLite wrote, the same on every run. */
function garbage(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** A database file written by the backend: `events` events, then closed (checkpointed, no WAL). */
async function writeDatabase(file: string, events: number): Promise<{ pageSize: number; pages: number }> {
  const b = createSqliteBackend({ path: file })
  await b.connect()
  for (let done = 0; done < events; done += 500) {
    const n = Math.min(500, events - done)
    const batch = await b.publishBatch(
      Array.from({ length: n }, (_, i) => ({
        topic: 'orders.placed',
        data: { i: done + i, pad: 'x'.repeat(120) },
      })),
    )
    expect(batch.failed).toBe(0)
  }
  await b.disconnect()
  const d = new Database(file, { readonly: true })
  const pageSize = d.pragma('page_size', { simple: true }) as number
  const pages = d.pragma('page_count', { simple: true }) as number
  d.close()
  return { pageSize, pages }
}

/** Overwrites `count` pages from the 0-based page index `first` with garbage. */
function overwritePages(file: string, pageSize: number, first: number, count: number, seed = 7): void {
  const fd = openSync(file, 'r+')
  try {
    writeSync(fd, garbage(pageSize * count, seed), 0, pageSize * count, pageSize * first)
  } finally {
    closeSync(fd)
  }
}

async function publishOutcome(b: ReturnType<typeof createSqliteBackend>): Promise<string> {
  try {
    await b.publish({ topic: 'orders.placed', data: { after: 'damage' } })
    return 'ok'
  } catch (error) {
    return error instanceof OmnibusError ? error.code : String(error)
  }
}

describe('sqlite backend: health sees a damaged file', () => {
  it('reports the events table pages overwritten (pages 2–4 from 0) unhealthy, as publish fails', async () => {
    const file = tmp.file()
    const { pageSize } = await writeDatabase(file, 100)
    overwritePages(file, pageSize, 2, 3)
    const b = await pool.open({ path: file })
    const health = await b.healthCheck()
    expect(health.healthy).toBe(false)
    expect(health.detail).toMatch(/is damaged/)
    expect(health.detail).toMatch(/restore it from a backup|\.recover/)
    expect(health.latencyMs).toBeGreaterThanOrEqual(0)
    expect(await publishOutcome(b)).toBe('DATABASE_CORRUPT')
  })

  it('whenever a publish fails DATABASE_CORRUPT, healthCheck first reported the file unhealthy', async () => {
    // One damaged page at a time, in a file whose events table has interior pages, so the
    // damage lands on every kind of page: roots, interior pages, the leaf publish appends to,
    // leaves publish never reads, the consumer tables.
    const pristine = tmp.file()
    const { pageSize, pages } = await writeDatabase(pristine, 3000)
    expect(pages).toBeGreaterThan(100)
    const cases: { page: number; health: boolean; publish: string }[] = []
    // Page 1 (index 0) is the header and schema: connect() itself refuses it.
    const indexes = [...Array(pages).keys()].filter(
      (i) => i > 0 && (i < 12 || i % 25 === 0 || i >= pages - 3),
    )
    for (const index of indexes) {
      const file = tmp.file()
      copyFileSync(pristine, file)
      overwritePages(file, pageSize, index, 1, index + 1)
      const b = createSqliteBackend({ path: file })
      try {
        await b.connect()
      } catch (error) {
        expect((error as OmnibusError).code).toMatch(/DATABASE_CORRUPT|NOT_A_DATABASE/)
        cases.push({ page: index, health: false, publish: 'connect refused' })
        continue
      }
      const health = await b.healthCheck()
      cases.push({ page: index, health: health.healthy, publish: await publishOutcome(b) })
      await b.disconnect({ drainTimeoutMs: 100 })
    }
    const missed = cases.filter((c) => c.health && c.publish === 'DATABASE_CORRUPT')
    expect(missed).toEqual([])
    // Not vacuous: some damage is seen by publish, and some (an old leaf) by neither.
    expect(cases.some((c) => c.publish === 'DATABASE_CORRUPT')).toBe(true)
    expect(cases.some((c) => c.health && c.publish === 'ok')).toBe(true)
  })

  it('stays fast on a large file: the probe reads only the pages publish reads', async () => {
    const file = tmp.file()
    await writeDatabase(file, 20_000)
    const b = await pool.open({ path: file })
    const samples: number[] = []
    for (let i = 0; i < 20; i++) {
      const h = await b.healthCheck()
      expect(h.healthy).toBe(true)
      samples.push(h.latencyMs)
    }
    samples.sort((x, y) => x - y)
    // A full quick_check of this file takes several ms; the probe is well under one.
    expect(samples[10]).toBeLessThan(2)
  })
})
