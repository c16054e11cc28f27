import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeEvent, encodeEvent, parseTime } from '../src/codec.ts'
import { deadLetterInput, redriveInput } from '../src/delivery.ts'
import { createEvent } from '../src/envelope.ts'
import type { OmnibusEvent } from '../src/protocol.ts'

const eventArb: fc.Arbitrary<OmnibusEvent> = fc.record(
  {
    id: fc.string({ minLength: 1 }),
    topic: fc.constantFrom('a', 'tool.start', 'agent.r-1.task_x'),
    data: fc.oneof(
      fc.jsonValue(),
      fc.uint8Array({ maxLength: 64 }),
      fc.dictionary(fc.string(), fc.string({ unit: 'binary' })),
    ),
    time: fc.integer({ min: 0, max: 4_102_444_800_000 }),
    source: fc.string({ minLength: 1 }),
    headers: fc.dictionary(
      fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom('traceparent', 'tracestate')),
      fc.string({ unit: 'binary' }),
    ),
    guarantee: fc.constantFrom('at-most-once', 'at-least-once', 'exactly-once'),
    partitionKey: fc.string({ unit: 'binary' }),
    correlationId: fc.string(),
    causationId: fc.string(),
  },
  { requiredKeys: ['id', 'topic', 'data', 'time', 'source', 'headers', 'guarantee'] },
) as fc.Arbitrary<OmnibusEvent>

describe('encodeEvent', () => {
  it('round-trips random envelopes: ids, headers, keys, unicode and binary data survive', () => {
    fc.assert(
      fc.property(eventArb, (event) => {
        const back = decodeEvent(encodeEvent(event))
        expect(back.id).toBe(event.id)
        expect(back.topic).toBe(event.topic)
        expect(back.source).toBe(event.source)
        expect(back.time).toBe(event.time)
        expect(back.guarantee).toBe(event.guarantee)
        expect(back.partitionKey).toBe(event.partitionKey)
        expect(back.correlationId).toBe(event.correlationId)
        expect(back.causationId).toBe(event.causationId)
        expect(back.headers).toEqual(event.headers)
        if (event.data instanceof Uint8Array)
          expect(Buffer.from(back.data as Uint8Array)).toEqual(Buffer.from(event.data))
        // JSON normalises -0 to 0; compare through JSON for that alone.
        else expect(back.data).toEqual(JSON.parse(JSON.stringify(event.data)))
      }),
      { numRuns: 2000 },
    )
  })
})

describe('header names that are Object.prototype members', () => {
  const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty']
  const headers = Object.fromEntries(names.map((n, i) => [n, `v${i}`]))

  it('survive createEvent, encode and decode as own headers', () => {
    const event = createEvent({ topic: 'a.b', data: 1, headers })
    const back = decodeEvent(encodeEvent(event))
    for (const [i, n] of names.entries()) {
      expect(Object.hasOwn(back.headers, n)).toBe(true)
      expect(back.headers[n]).toBe(`v${i}`)
    }
    expect(Object.getPrototypeOf(back.headers)).toBe(Object.prototype)
  })

  it('survive a dead letter and its redrive', () => {
    const event = createEvent({ topic: 'a.b', data: 1, headers })
    const now = Date.now()
    const dead = createEvent(
      deadLetterInput(event, 'omnibus.deadletter', {
        group: undefined,
        attempts: 3,
        firstFailureAt: now,
        lastFailureAt: now,
        reason: 'boom',
        backend: 'memory',
      }),
    )
    const again = redriveInput(decodeEvent(encodeEvent(dead)))
    for (const [i, n] of names.entries())
      expect(Object.hasOwn(again.headers ?? {}, n) && again.headers?.[n]).toBe(`v${i}`)
  })
})

describe('parseTime', () => {
  const pad = (n: number, width: number) => String(n).padStart(width, '0')
  const same = (text: string) => {
    const expected = Date.parse(text)
    const actual = parseTime(text)
    if (Number.isNaN(expected)) expect(actual, text).toBeNaN()
    else expect(actual, text).toBe(expected)
  }

  it('equals Date.parse on every toISOString output, years 0 to 9999', () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date('0000-01-01T00:00:00.000Z'),
          max: new Date('9999-12-31T23:59:59.999Z'),
          noInvalidDate: true,
        }),
        (d) => same(d.toISOString()),
      ),
      { numRuns: 5000 },
    )
  })

  it('equals Date.parse on the 24-character shape with field values in and out of range', () => {
    fc.assert(
      fc.property(
        fc.tuple(
          fc.integer({ min: 0, max: 9999 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 99 }),
          fc.integer({ min: 0, max: 999 }),
        ),
        ([y, mo, d, h, mi, s, ms]) =>
          same(
            `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(s, 2)}.${pad(ms, 3)}Z`,
          ),
      ),
      { numRuns: 5000 },
    )
  })

  it('hands other RFC 3339 forms and near misses to Date.parse', () => {
    for (const text of [
      '2026-11-22T10:00:00Z',
      '2026-11-22T10:00:00.1234Z',
      '2026-11-22T10:00:00.123+02:00',
      '2026-11-22t10:00:00.123z',
      '2026-11-22T1a:00:00.000Z',
      '2026-11-22 10:00:00.000Z',
      '+2026-11-22T10:00:00.00Z',
      'not a time at all, really',
    ])
      same(text)
  })
})
