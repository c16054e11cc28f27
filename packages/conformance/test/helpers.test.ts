import { readFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { isValidTopic } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { Inbox } from '../src/harness.ts'
import { resolveStress, resolveTimeouts } from '../src/options.ts'
import { findClosedPort } from '../src/ports.ts'
import { newRunId } from '../src/run-id.ts'
import { CASE_IDS } from '../src/suite.ts'

describe('newRunId', () => {
  it('is unique over many calls in a tight loop', () => {
    const ids = new Set(Array.from({ length: 20_000 }, () => newRunId()))
    expect(ids.size).toBe(20_000)
  })

  it('is a valid topic segment and group name, short enough to leave room in a topic', () => {
    for (let i = 0; i < 100; i++) {
      const id = newRunId()
      expect(id).toMatch(/^[a-z0-9]+$/)
      expect(isValidTopic(`conf.${id}.x`)).toBe(true)
      expect(id.length).toBeLessThanOrEqual(20)
    }
  })
})

describe('options', () => {
  it('fills timeouts and names a bad field', () => {
    expect(resolveTimeouts({ deliveryMs: 100 }).deliveryMs).toBe(100)
    expect(resolveTimeouts(undefined).groupJoinMs).toBe(10_000)
    expect(() => resolveTimeouts({ groupJoinMs: -1 })).toThrow(
      'timeouts.groupJoinMs must be a positive number of ms, got -1',
    )
  })

  it('reads the stress factor from the option, then OMNIBUS_STRESS, then 1', () => {
    expect(resolveStress(undefined, undefined)).toBe(1)
    expect(resolveStress(undefined, '')).toBe(1)
    expect(resolveStress(undefined, '4')).toBe(4)
    expect(resolveStress(2, '4')).toBe(2)
    expect(() => resolveStress(undefined, 'lots')).toThrow('OMNIBUS_STRESS')
  })
})

describe('case ids', () => {
  it('are unique, numbered like the case list of CONFORMANCE.md, and cover cases 1-45', () => {
    expect(new Set(CASE_IDS).size).toBe(CASE_IDS.length)
    const numbers = new Set(CASE_IDS.map((id) => Number(id.slice(0, 2))))
    const contract = readFileSync(new URL('../CONFORMANCE.md', import.meta.url), 'utf8')
    const listed = new Set([...contract.matchAll(/^- `(\d\d)-[a-z0-9-]+`/gm)].map((m) => Number(m[1])))
    const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b)
    expect(sorted(numbers)).toEqual(sorted(listed))
    for (let n = 1; n <= 45; n++) expect(numbers.has(n), `case ${n}`).toBe(true)
    for (const id of CASE_IDS) expect(id).toMatch(/^\d\d-[a-z0-9-]+$/)
  })

  it('are all listed in the README and in CONFORMANCE.md, so exclude keys can be looked up there', () => {
    for (const doc of ['../README.md', '../CONFORMANCE.md']) {
      const text = readFileSync(new URL(doc, import.meta.url), 'utf8')
      const listed = CASE_IDS.filter((id) => text.includes(`\`${id}\``))
      expect({ doc, unlisted: CASE_IDS.filter((id) => !listed.includes(id)) }).toEqual({ doc, unlisted: [] })
    }
  })

  it('are the only case ids the package documents or cites', () => {
    const sources = [
      '../README.md',
      '../CONFORMANCE.md',
      '../src/options.ts',
      '../src/index.ts',
      '../src/suite.ts',
    ]
    for (const file of sources) {
      const text = readFileSync(new URL(file, import.meta.url), 'utf8')
      const cited = [...text.matchAll(/`(\d\d-[a-z0-9-]+)`/g)].map((m) => m[1])
      const variants = [...text.matchAll(/`(-[a-z]+)` variants?/g)].map((m) => m[1] ?? '')
      expect({ file, unknown: cited.filter((id) => !CASE_IDS.includes(id as never)) }).toEqual({
        file,
        unknown: [],
      })
      for (const suffix of variants) {
        expect({ file, suffix, used: CASE_IDS.some((id) => id.endsWith(suffix)) }).toEqual({
          file,
          suffix,
          used: true,
        })
      }
    }
  })
})

describe('Inbox', () => {
  it('counts acknowledgements and reports duplicates and missing ids', () => {
    const inbox = new Inbox('t')
    const ev = (id: string) => ({ id }) as never
    inbox.acked.push(ev('a'), ev('b'), ev('a'))
    expect(inbox.duplicateAcks()).toEqual(['a'])
    expect(inbox.missing(['a', 'b', 'c'])).toEqual(['c'])
  })
})

describe('findClosedPort', () => {
  it('returns a port where a connection is refused', async () => {
    const port = await findClosedPort()
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' })
      socket.once('error', resolve)
      socket.once('connect', () => {
        socket.destroy()
        resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' }))
      })
    })
    expect(err.code).toBe('ECONNREFUSED')
  })
})
