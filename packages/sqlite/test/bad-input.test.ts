import { writeFileSync } from 'node:fs'
import {
  CapabilityError,
  ConfigurationError,
  ConnectionError,
  InvalidTopicError,
  NotConnectedError,
  PayloadTooLargeError,
  SerializationError,
} from '@omnibus/core'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { createSqliteBackend } from '../src/index.ts'
import { backends, tempDir, waitFor } from './helpers.ts'

const tmp = tempDir()
const pool = backends()
afterEach(async () => {
  await pool.closeAll()
})
process.on('exit', () => tmp.cleanup())

async function countRows(file: string, topic: string): Promise<number> {
  const raw = new Database(file, { readonly: true })
  const row = raw.prepare('SELECT count(*) AS n FROM omnibus_events WHERE topic = ?').get(topic) as {
    n: number
  }
  raw.close()
  return row.n
}

describe('sqlite backend: bad input', () => {
  it('rejects invalid topics and patterns with an error naming the problem', async () => {
    const b = await pool.open({ path: tmp.file() })
    await expect(b.publish({ topic: 'bad topic', data: 1 })).rejects.toThrow(InvalidTopicError)
    await expect(b.publish({ topic: 'a..b', data: 1 })).rejects.toThrow(/"a\.\.b" has two adjacent/)
    await expect(b.publish({ topic: 'tool.*', data: 1 })).rejects.toThrow(
      /wildcards belong in subscribe patterns/,
    )
    await expect(b.subscribe('a..b', () => {})).rejects.toThrow(InvalidTopicError)
  })

  it('rejects unencodable payloads and keeps the events accepted in the same tick', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file })
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const good = b.publish({ topic: 'enc.t', data: 1 })
    await expect(b.publish({ topic: 'enc.t', data: { n: 10n } as unknown })).rejects.toThrow(
      SerializationError,
    )
    await expect(b.publish({ topic: 'enc.t', data: cyclic })).rejects.toThrow(
      /circular reference at data.self/,
    )
    await expect(b.publish({ topic: 'enc.t', data: { f: () => 1 } as unknown })).rejects.toThrow(/a function/)
    await good
    const batch = await b.publishBatch([
      { topic: 'enc.t', data: 2 },
      { topic: 'enc.t', data: 3n as unknown },
      { topic: 'bad topic', data: 4 },
      { topic: 'enc.t', data: 5 },
    ])
    expect(batch.succeeded).toBe(2)
    expect(batch.results.map((r) => r.ok)).toEqual([true, false, false, true])
    const failed = batch.results[1]
    expect(failed?.ok === false && failed.error).toBeInstanceOf(SerializationError)
    expect(await countRows(file, 'enc.t')).toBe(3)
  })

  it('rejects payloads over maxPayloadBytes with the size and the limit', async () => {
    const b = await pool.open({ path: tmp.file(), maxPayloadBytes: 4096 })
    expect(b.capabilities.maxPayloadBytes).toBe(4096)
    const error = await b.publish({ topic: 'big.t', data: 'x'.repeat(5000) }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PayloadTooLargeError)
    expect((error as PayloadTooLargeError).limitBytes).toBe(4096)
    expect((error as Error).message).toMatch(/send a smaller payload/)
    await expect(b.publish({ topic: 'big.t', data: 'x'.repeat(3000) })).resolves.toMatchObject({
      topic: 'big.t',
    })
  })

  it('publish, publishBatch and subscribe on a disconnected backend are NotConnectedError', async () => {
    const b = createSqliteBackend({ path: tmp.file() })
    await expect(b.publish({ topic: 'nc.t', data: 1 })).rejects.toThrow(NotConnectedError)
    await expect(b.publishBatch([{ topic: 'nc.t', data: 1 }])).rejects.toThrow(/call connect\(\) first/)
    await expect(b.subscribe('nc.t', () => {})).rejects.toThrow(NotConnectedError)
    await b.connect()
    await b.disconnect()
    await expect(b.publish({ topic: 'nc.t', data: 1 })).rejects.toThrow(NotConnectedError)
  })

  it('a backend connects again after disconnect, and after a failed connect', async () => {
    const file = tmp.file()
    const b = createSqliteBackend({ path: file })
    await Promise.all([b.connect(), b.connect()])
    await b.publish({ topic: 'again.t', data: 1 })
    await b.disconnect()
    await b.connect()
    expect(b.isConnected).toBe(true)
    const got: unknown[] = []
    await b.subscribe(
      'again.t',
      (e) => {
        got.push(e.data)
      },
      { group: 'again', from: 'earliest' },
    )
    await b.publish({ topic: 'again.t', data: 2 })
    await waitFor('both events after reconnecting', () => got.length === 2)
    expect(got).toEqual([1, 2])
    await b.disconnect()
  })

  it('publishes accepted before disconnect are written, not lost', async () => {
    const file = tmp.file()
    const b = createSqliteBackend({ path: file })
    await b.connect()
    const pending = Array.from({ length: 50 }, (_, i) => b.publish({ topic: 'drain.t', data: i }))
    await b.disconnect()
    await expect(Promise.all(pending)).resolves.toHaveLength(50)
    expect(await countRows(file, 'drain.t')).toBe(50)
  })

  it('rejects unsupported options and bad option values with the field and the value', () => {
    expect(() => createSqliteBackend({ path: tmp.file(), pollIntervalMS: 5 } as never)).toThrow(
      /unknown sqlite backend option "pollIntervalMS" \(did you mean "pollIntervalMs"\?\)/,
    )
    expect(() => createSqliteBackend({ busyTimeoutMs: -1 })).toThrow(
      /^sqlite backend option busyTimeoutMs must be an integer between 0 and 3600000, got -1$/,
    )
    expect(() => createSqliteBackend({ synchronous: 'off' as never })).toThrow(
      /^sqlite backend option synchronous must be one of 'normal', 'full', got "off"$/,
    )
    expect(() => createSqliteBackend({ maxPayloadBytes: 10 })).toThrow(ConfigurationError)
    expect(() => createSqliteBackend({ ioThread: 'maybe' as never })).toThrow(
      /^sqlite backend option ioThread must be true or false \(true, 1, yes, on, false, 0, no, off\), got "maybe"$/,
    )
    expect(() => createSqliteBackend({ ioThread: false, publishOnIoThread: true })).toThrow(
      /publishOnIoThread needs ioThread: true/,
    )
    const previous = process.env.OMNIBUS_SQLITE_POLL_INTERVAL_MS
    process.env.OMNIBUS_SQLITE_POLL_INTERVAL_MS = 'soon'
    try {
      expect(() => createSqliteBackend({})).toThrow(
        /^sqlite backend option pollIntervalMs must be an integer between 1 and 60000, got "soon" \(from the environment variable OMNIBUS_SQLITE_POLL_INTERVAL_MS\)$/,
      )
    } finally {
      if (previous === undefined) delete process.env.OMNIBUS_SQLITE_POLL_INTERVAL_MS
      else process.env.OMNIBUS_SQLITE_POLL_INTERVAL_MS = previous
    }
  })

  it('rejects unsupported subscribe options at subscribe time', async () => {
    const b = await pool.open({ path: tmp.file() })
    await expect(b.subscribe('x.t', () => {}, { guarantee: 'twice' as never })).rejects.toThrow(
      CapabilityError,
    )
    await expect(b.subscribe('x.t', () => {}, { group: 'no spaces' })).rejects.toThrow(ConfigurationError)
    await expect(b.subscribe('x.t', () => {}, { concurrency: 0 })).rejects.toThrow(
      /concurrency must be an integer/,
    )
    await expect(b.subscribe('x.t', 'not a function' as never)).rejects.toThrow(/needs a handler function/)
  })

  it('a locked database gives a retryable DATABASE_LOCKED error after the busy timeout, and nothing accepted is lost', async () => {
    const file = tmp.file()
    const b = await pool.open({ path: file, busyTimeoutMs: 100 })
    await b.publish({ topic: 'lock.t', data: 'before' })
    const holder = new Database(file)
    holder.exec('BEGIN IMMEDIATE')
    const started = Date.now()
    const error = await b.publish({ topic: 'lock.t', data: 'during' }).catch((e: unknown) => e)
    expect(Date.now() - started).toBeGreaterThanOrEqual(90)
    expect(error).toBeInstanceOf(ConnectionError)
    expect(error).toMatchObject({ code: 'DATABASE_LOCKED', retryable: true, backend: 'sqlite' })
    expect((error as Error).message).toMatch(/is locked by another connection.*retry later/)
    holder.exec('COMMIT')
    holder.close()
    await b.publish({ topic: 'lock.t', data: 'after' })
    const got: unknown[] = []
    await b.subscribe(
      'lock.t',
      (e) => {
        got.push(e.data)
      },
      { group: 'lock', from: 'earliest' },
    )
    await waitFor('both accepted events', () => got.length === 2)
    expect(got).toEqual(['before', 'after'])
  })

  it('connecting to a file another process holds locked fails after the busy timeout with a retryable error', async () => {
    const file = tmp.file()
    const holder = new Database(file)
    holder.exec('CREATE TABLE other (x); BEGIN EXCLUSIVE; INSERT INTO other VALUES (1)')
    const b = createSqliteBackend({ path: file, busyTimeoutMs: 150 })
    const started = Date.now()
    const error = await b.connect().catch((e: unknown) => e)
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    expect(error).toBeInstanceOf(ConnectionError)
    expect(error).toMatchObject({ code: 'DATABASE_LOCKED', retryable: true })
    expect(b.isConnected).toBe(false)
    holder.exec('COMMIT')
    holder.close()
    // Retrying once the lock is gone works, and the other application's table is untouched.
    await b.connect()
    await b.publish({ topic: 'locked.t', data: 1 })
    await b.disconnect()
    const check = new Database(file, { readonly: true })
    expect(check.prepare('SELECT count(*) AS n FROM other').get()).toEqual({ n: 1 })
    check.close()
  })

  it('a file that is not an SQLite database gives NOT_A_DATABASE at connect', async () => {
    const file = tmp.file('not-a-db.db')
    writeFileSync(file, 'this is a text file, not a database\n'.repeat(200))
    const b = createSqliteBackend({ path: file })
    const error = await b.connect().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigurationError)
    expect(error).toMatchObject({ code: 'NOT_A_DATABASE', retryable: false })
    expect((error as Error).message).toMatch(/is not an SQLite database/)
    expect(b.isConnected).toBe(false)
  })

  it('a missing directory gives a ConfigurationError naming the file', async () => {
    const b = createSqliteBackend({ path: `${tmp.dir}/no/such/dir/x.db` })
    await expect(b.connect()).rejects.toThrow(/no\/such\/dir\/x.db/)
  })
})
