import { createEvent, type OmnibusEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { describe, expect, it } from 'vitest'
import { encodedSizeBound } from '../src/size.ts'

// A small seeded generator: the same cases on every run.
function rng(seed: number): () => number {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
}

const NASTY = [
  '\u0000',
  '\u001f',
  '"',
  '\\',
  '\u2028',
  '\ud800',
  '\udfff',
  '😀',
  'é',
  '日',
  'a',
  '\n',
  '<',
  '\u007f',
]
const NUMBERS = [
  0,
  -0,
  1,
  -1.5,
  1e21,
  -1e-7,
  -0.0000012345678901234567,
  Number.MAX_VALUE,
  -Number.MIN_VALUE,
  2 ** 53,
]

function randomString(r: () => number): string {
  let s = ''
  const n = Math.floor(r() * 12)
  for (let i = 0; i < n; i++) s += NASTY[Math.floor(r() * NASTY.length)]
  return s
}

function randomValue(r: () => number, depth: number): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 5 : 7))
  switch (pick) {
    case 0:
      return randomString(r)
    case 1:
      return NUMBERS[Math.floor(r() * NUMBERS.length)]
    case 2:
      return r() < 0.5
    case 3:
      return null
    case 4:
      return undefined
    case 5:
      return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let i = Math.floor(r() * 5); i > 0; i--) o[randomString(r)] = randomValue(r, depth + 1)
      return o
    }
  }
}

describe('encodedSizeBound', () => {
  it('never underestimates the encoded UTF-8 size over thousands of random events', () => {
    const r = rng(20261121)
    for (let i = 0; i < 3000; i++) {
      let data = randomValue(r, 0)
      if (data === undefined) data = null
      const headers: Record<string, string> = {}
      for (let h = Math.floor(r() * 3); h > 0; h--) headers[`h${h}${randomString(r)}`] = randomString(r)
      if (r() < 0.3) headers.traceparent = randomString(r)
      const event = createEvent({
        topic: 'a.b',
        data,
        headers,
        // A source is a URI reference (checked at publish): random, in URI-safe characters.
        source: `src${Buffer.from(randomString(r)).toString('base64url')}`,
        ...(r() < 0.5 ? { partitionKey: randomString(r) } : {}),
        ...(r() < 0.5 ? { correlationId: randomString(r) } : {}),
      })
      const exact = Buffer.byteLength(encodeEvent(event))
      const bound = encodedSizeBound(event, 1_000_000)
      expect(bound).toBeGreaterThanOrEqual(exact)
    }
  })

  it('bounds headers escaped twice inside the headers extension, and the CloudEvents attributes', () => {
    const worst = '\u0000'.repeat(2000)
    const event = createEvent({
      topic: 'a.b',
      data: null,
      headers: { [`X-${worst}`]: worst, tenant: worst },
      subject: worst,
      dataSchema: `urn:${'%00'.repeat(300)}`,
      dataContentType: 'text/plain',
    })
    expect(encodedSizeBound(event, 1_000_000)).toBeGreaterThanOrEqual(Buffer.byteLength(encodeEvent(event)))
  })

  it('bounds bytes by their base64 size, and gives up on what it does not model', () => {
    const bytes = createEvent({ topic: 'b', data: new Uint8Array(3000) })
    expect(encodedSizeBound(bytes, 1_000_000)).toBeGreaterThanOrEqual(Buffer.byteLength(encodeEvent(bytes)))
    const dated = createEvent({ topic: 'b', data: { at: new Date() } })
    expect(encodedSizeBound(dated, 1_000_000)).toBe(Number.POSITIVE_INFINITY)
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const event = { ...createEvent({ topic: 'b', data: null }), data: cyclic } as OmnibusEvent
    expect(encodedSizeBound(event, 1_000_000)).toBe(Number.POSITIVE_INFINITY)
  })

  it('sends class instances and spoofed plain objects to the exact path', () => {
    class Big {
      toJSON() {
        return 'x'.repeat(10)
      }
    }
    const withClass = createEvent({ topic: 'b', data: { big: new Big() } as never })
    expect(encodedSizeBound(withClass, 1_000_000)).toBe(Number.POSITIVE_INFINITY)
    const spoof = createEvent({ topic: 'b', data: { constructor: Object, v: 1 } as never })
    expect(encodedSizeBound(spoof, 1_000_000)).toBe(Number.POSITIVE_INFINITY)
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { v: 'é' })
    const nullProto = createEvent({ topic: 'b', data: bare as never })
    expect(encodedSizeBound(nullProto, 1_000_000)).toBeGreaterThanOrEqual(
      Buffer.byteLength(encodeEvent(nullProto)),
    )
  })

  it('stops at the limit', () => {
    const event = createEvent({ topic: 'b', data: 'x'.repeat(1000) })
    expect(encodedSizeBound(event, 100)).toBe(Number.POSITIVE_INFINITY)
    expect(encodedSizeBound(event, 100_000)).toBeLessThan(100_000)
  })
})
