import { isAbsolute } from 'node:path'
import { ConfigurationError, createBackend } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, sqlitePathFromUrl } from '../src/index.ts'
import { tempDir } from './helpers.ts'

describe('sqlite URLs', () => {
  it('maps relative, absolute and in-memory URLs to paths', () => {
    expect(sqlitePathFromUrl(new URL('sqlite://./events.db'))).toBe('./events.db')
    expect(sqlitePathFromUrl(new URL('sqlite://data/events.db'))).toBe('data/events.db')
    expect(sqlitePathFromUrl(new URL('sqlite:///abs/path.db'))).toBe('/abs/path.db')
    expect(isAbsolute(sqlitePathFromUrl(new URL('sqlite:///abs/path.db')))).toBe(true)
    expect(sqlitePathFromUrl(new URL('sqlite://memory'))).toBe(':memory:')
    expect(sqlitePathFromUrl(new URL('sqlite:///:memory:'))).toBe(':memory:')
    expect(() => sqlitePathFromUrl(new URL('sqlite://'))).toThrow(/names no database file/)
  })

  it('in-memory backends declare themselves neither persistent nor cross-process', () => {
    const b = backendFromUrl(new URL('sqlite://memory'))
    expect(b.capabilities).toMatchObject({ persistent: false, crossProcess: false, groups: true })
    const f = backendFromUrl(new URL('sqlite://./x.db'))
    expect(f.capabilities).toMatchObject({ persistent: true, crossProcess: true, networked: false })
  })

  it('reads options from query parameters and rejects unknown ones', () => {
    const b = backendFromUrl(new URL('sqlite://./x.db?maxPayloadBytes=2048'))
    expect(b.capabilities.maxPayloadBytes).toBe(2048)
    expect(() => backendFromUrl(new URL('sqlite://./x.db?busy=1'))).toThrow(ConfigurationError)
    expect(() => backendFromUrl(new URL('sqlite://./x.db?busyTimeoutMs=soon'))).toThrow(/busyTimeoutMs/)
  })

  it('works through the core registry, end to end', async () => {
    const tmp = tempDir()
    try {
      const b = await createBackend(`sqlite://${tmp.dir}/reg.db`)
      await b.connect()
      const r = await b.publish({ topic: 'reg.t', data: 1 })
      expect(r.topic).toBe('reg.t')
      await b.disconnect()
    } finally {
      tmp.cleanup()
    }
  })
})

describe('sqlite://:memory:', () => {
  it('parses through the core registry into a private in-memory backend', async () => {
    const b = await createBackend('sqlite://:memory:?maxPayloadBytes=4096')
    expect(b.capabilities).toMatchObject({ persistent: false, crossProcess: false, maxPayloadBytes: 4096 })
    await b.connect()
    const got: unknown[] = []
    await b.subscribe('mem.t', (e) => {
      got.push(e.data)
    })
    await b.publish({ topic: 'mem.t', data: 'in memory' })
    const deadline = Date.now() + 2000
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    expect(got).toEqual(['in memory'])
    await b.disconnect()
  })
})
