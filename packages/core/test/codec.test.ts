import { describe, expect, it } from 'vitest'
import {
  assertEncodable,
  decodeEvent,
  encodeEvent,
  encodeEventChecked,
  fromCloudEvent,
  InvalidEnvelopeError,
  toCloudEvent,
} from '../src/codec.ts'
import { createEvent } from '../src/envelope.ts'
import { PayloadTooLargeError, SerializationError } from '../src/errors.ts'
import type { OmnibusEvent } from '../src/protocol.ts'

const full = createEvent({
  topic: 'agents.planner.task',
  data: { step: 3, tags: ['a', 'b'], nested: { ok: true, none: null } },
  id: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  time: Date.UTC(2026, 10, 21, 12, 30, 45, 123),
  source: 'planner-1',
  correlationId: 'corr-9',
  causationId: 'cause-8',
  partitionKey: 'agent-7',
  headers: {
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    tracestate: 'vendor=1',
    'x-tenant': 'acme',
  },
  guarantee: 'exactly-once',
})

describe('encoding', () => {
  it('writes CloudEvents 1.0 structured mode with lower-case extensions', () => {
    const ce = JSON.parse(encodeEvent(full))
    expect(ce).toEqual({
      specversion: '1.0',
      id: full.id,
      source: 'planner-1',
      type: 'agents.planner.task',
      time: '2026-11-21T12:30:45.123Z',
      datacontenttype: 'application/json',
      data: full.data,
      guarantee: 'exactly-once',
      partitionkey: 'agent-7',
      correlationid: 'corr-9',
      causationid: 'cause-8',
      traceparent: full.headers.traceparent,
      tracestate: 'vendor=1',
      omnibusheaders: '{"x-tenant":"acme"}',
    })
    expect(toCloudEvent(full)).toEqual(ce)
  })

  it('round-trips every envelope field', () => {
    expect(decodeEvent(encodeEvent(full))).toEqual(full)
    const minimal = createEvent({ topic: 'a', data: null, source: 's' })
    expect(decodeEvent(encodeEvent(minimal))).toEqual(minimal)
  })

  it('round-trips user headers whose names collide with CloudEvents members or the prefix', () => {
    const headers = {
      id: 'h-id',
      type: 'h-type',
      specversion: '0.1',
      data: 'h-data',
      hdr_x: 'prefixed already',
      partitionkey: 'not the key',
      guarantee: 'not a guarantee',
      'Mixed-Case': 'kept',
    }
    const event = createEvent({ topic: 'h', data: 1, headers, partitionKey: 'real-key' })
    const back = decodeEvent(encodeEvent(event))
    expect(back.headers).toEqual(headers)
    expect(back.id).toBe(event.id)
    expect(back.partitionKey).toBe('real-key')
    expect(back.guarantee).toBe('at-least-once')
  })

  it('keeps binary data byte-exact, including views into larger buffers', () => {
    const all = new Uint8Array(256).map((_, i) => i)
    const view = new Uint8Array(all.buffer, 10, 20)
    for (const bytes of [all, view, new Uint8Array(0)]) {
      const event = createEvent({ topic: 'bin', data: bytes })
      const json = encodeEvent(event)
      const ce = JSON.parse(json)
      expect(ce.datacontenttype).toBe('application/octet-stream')
      expect(ce.data).toBeUndefined()
      const back = decodeEvent(json).data
      expect(back).toBeInstanceOf(Uint8Array)
      expect(Array.from(back as Uint8Array)).toEqual(Array.from(bytes))
    }
  })

  it('keeps unicode in data and headers', () => {
    const text = 'héllo — 日本語 — 👩‍👩‍👧 — \u0000 — \u202eRTL — "quotes" \\ backslash'
    const event = createEvent({ topic: 'u', data: { text, [text]: [text] }, headers: { note: text } })
    const back = decodeEvent(new TextEncoder().encode(encodeEvent(event)))
    expect(back.data).toEqual(event.data)
    expect(back.headers.note).toBe(text)
  })
})

describe('decoding foreign CloudEvents', () => {
  it('reads an event written by another producer, extensions becoming headers, attributes kept', () => {
    const foreign = JSON.stringify({
      specversion: '1.0',
      type: 'com.example.sensor.reading',
      source: '/sensors/42',
      id: 'A234-1234-1234',
      time: '2018-04-05T17:31:00Z',
      subject: 'room-1',
      dataschema: 'https://example.com/schema',
      comexampleextension1: 'value',
      comexampleothervalue: 5,
      flag: true,
      ignoredobject: { a: 1 },
      datacontenttype: 'text/xml',
      data: '<much wow="xml"/>',
    })
    const event = decodeEvent(foreign)
    expect(event).toEqual({
      id: 'A234-1234-1234',
      topic: 'com.example.sensor.reading',
      data: '<much wow="xml"/>',
      time: Date.parse('2018-04-05T17:31:00Z'),
      source: '/sensors/42',
      headers: { comexampleextension1: 'value', comexampleothervalue: '5', flag: 'true' },
      guarantee: 'at-least-once',
      subject: 'room-1',
      dataSchema: 'https://example.com/schema',
      dataContentType: 'text/xml',
    })
  })

  it('fills what CloudEvents leaves optional: no data is null, no time is now', () => {
    const before = Date.now()
    const event = decodeEvent('{"specversion":"1.0","id":"1","source":"s","type":"t"}')
    expect(event.data).toBeNull()
    expect(event.time).toBeGreaterThanOrEqual(before)
    expect(fromCloudEvent({ specversion: '1.0', id: '1', source: 's', type: 't', data: [1] }).data).toEqual([
      1,
    ])
  })
})

describe('headers beside the envelope attributes', () => {
  const base = { specversion: '1.0', id: 'i', source: 's', type: 't.u' }
  const cases: Array<[string, Record<string, unknown>, Record<string, string>]> = [
    [
      'attributes only, every one of them',
      {
        ...base,
        time: '2026-01-02T03:04:05.678Z',
        datacontenttype: 'application/json',
        data: 1,
        guarantee: 'exactly-once',
        correlationid: 'c',
        causationid: 'k',
        partitionkey: 'p',
      },
      {},
    ],
    ['optional CloudEvents attributes only', { ...base, subject: 'x', dataschema: 'urn:y' }, {}],
    ['a header and no data', { ...base, hdr_a: 'x' }, { a: 'x' }],
    [
      'trace context only',
      { ...base, traceparent: '00-1-2-01', tracestate: 'k=v' },
      { traceparent: '00-1-2-01', tracestate: 'k=v' },
    ],
    [
      'a member left undefined next to a header',
      { ...base, id: 'i', extra: undefined, hdr_b: 'y' },
      { b: 'y' },
    ],
    ['an attribute left undefined next to a header', { ...base, time: undefined, hdr_c: 'z' }, { c: 'z' }],
    ['a header next to bytes', { ...base, data_base64: 'AQI=', hdr_d: 'w', ext: 3 }, { d: 'w', ext: '3' }],
  ]
  for (const [what, doc, headers] of cases) {
    it(`reads ${what}`, () => {
      const event = fromCloudEvent(doc)
      expect(event.headers).toEqual(headers)
      expect(event.topic).toBe('t.u')
      expect(decodeEvent(JSON.stringify(doc)).headers).toEqual(headers)
    })
  }
})

describe('invalid envelopes', () => {
  const valid = encodeEvent(full)
  const cases: Array<[string, string | Uint8Array, RegExp]> = [
    ['corrupt JSON', '{"specversion":"1.0",,}', /not JSON/],
    ['truncated', valid.slice(0, valid.length - 10), /not JSON/],
    ['invalid UTF-8 bytes', new Uint8Array([0xff, 0xfe, 0x7b]), /not JSON/],
    ['an array', '[1,2]', /not a JSON object/],
    ['a number', '42', /not a JSON object/],
    ['null', 'null', /not a JSON object/],
    [
      'wrong specversion',
      valid.replace('"specversion":"1.0"', '"specversion":"0.3"'),
      /specversion is "0.3", expected "1.0"/,
    ],
    ['no specversion', '{"id":"1","source":"s","type":"t"}', /specversion is undefined/],
    ['no id', '{"specversion":"1.0","source":"s","type":"t"}', /id is missing/],
    ['no type', '{"specversion":"1.0","id":"1","source":"s"}', /type \(the topic\) is missing/],
    [
      'a type that is no topic',
      '{"specversion":"1.0","id":"1","source":"s","type":"a b"}',
      /type "a b" is not a valid Omnibus topic/,
    ],
    ['no source', '{"specversion":"1.0","id":"1","type":"t"}', /source is missing/],
    [
      'a bad time',
      '{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}',
      /time "yesterday" is not RFC 3339/,
    ],
    [
      'bad base64',
      '{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}',
      /data_base64 is not base64/,
    ],
    [
      'an unknown guarantee',
      '{"specversion":"1.0","id":"1","source":"s","type":"t","guarantee":"twice"}',
      /guarantee "twice" is unknown/,
    ],
  ]

  for (const [what, raw, reason] of cases) {
    it(`rejects ${what} with InvalidEnvelopeError and the reason`, () => {
      let caught: unknown
      try {
        decodeEvent(raw)
      } catch (error) {
        caught = error
      }
      expect(caught).toBeInstanceOf(InvalidEnvelopeError)
      expect(caught).toBeInstanceOf(SerializationError)
      const e = caught as InvalidEnvelopeError
      expect(e.message).toMatch(/^not a valid Omnibus\/CloudEvents envelope: /)
      expect(e.message).toMatch(reason)
      expect(e.code).toBe('INVALID_ENVELOPE')
      expect(e.retryable).toBe(false)
    })
  }

  it('keeps at most 1 KiB of the raw text for diagnostics', () => {
    const huge = `{"junk":"${'x'.repeat(5000)}"`
    try {
      decodeEvent(huge)
      expect.unreachable()
    } catch (error) {
      expect((error as InvalidEnvelopeError).raw.length).toBeLessThanOrEqual(1025)
    }
  })
})

describe('what cannot be encoded', () => {
  const cyclic: Record<string, unknown> = { a: {} }
  ;(cyclic.a as Record<string, unknown>).back = cyclic
  const cases: Array<[string, unknown, RegExp]> = [
    ['a BigInt', { n: { deep: 10n } }, /a BigInt \(convert it to a string\) at data\.n\.deep/],
    ['a cycle', cyclic, /a circular reference at data\.a\.back/],
    ['a function', { list: [1, () => 2] }, /a function at data\.list\[1\]/],
    ['NaN', { x: Number.NaN }, /the number NaN at data\.x/],
    ['Infinity', [Number.POSITIVE_INFINITY], /the number Infinity at data\[0\]/],
    ['a Map', { m: new Map() }, /a Map \(convert it to an object or array\) at data\.m/],
    ['a Set', { s: new Set([1]) }, /a Set .* at data\.s/],
    ['a symbol', { s: Symbol('x') }, /a symbol at data\.s/],
    ['nested bytes', { b: new Uint8Array(2) }, /nested binary data .* at data\.b/],
    ['undefined', undefined, /undefined \(send null for "no data"\)/],
    ['a top-level BigInt', 5n, /a BigInt .* at data\b/],
  ]

  for (const [what, data, message] of cases) {
    it(`rejects ${what} with a SerializationError naming the path`, () => {
      expect(() => assertEncodable(data, 'my.topic')).toThrow(SerializationError)
      expect(() => assertEncodable(data, 'my.topic')).toThrow(message)
      expect(() => assertEncodable(data, 'my.topic')).toThrow(/cannot encode data of "my\.topic"/)
    })
  }

  it('accepts shared (non-cyclic) references, toJSON objects, undefined members and bytes', () => {
    const shared = { v: 1 }
    expect(() => assertEncodable({ a: shared, b: [shared, shared] })).not.toThrow()
    expect(() => assertEncodable({ at: new Date(0), gone: undefined })).not.toThrow()
    expect(() => assertEncodable(new Uint8Array(3))).not.toThrow()
    expect(() => assertEncodable('text')).not.toThrow()
    expect(() => assertEncodable(null)).not.toThrow()
  })

  it('encodeEvent refuses the same payloads', () => {
    const event = { ...full, data: { n: 1n } } as OmnibusEvent
    expect(() => encodeEvent(event)).toThrow(/at data\.n/)
  })
})

describe('encodeEventChecked', () => {
  it('returns the JSON and its UTF-8 size, also for multi-byte text', () => {
    const event = createEvent({ topic: 'sz', data: 'é日👍'.repeat(10) })
    const { json, bytes } = encodeEventChecked(event, 1_000_000)
    expect(json).toBe(encodeEvent(event))
    expect(bytes).toBe(Buffer.byteLength(json))
    expect(encodeEventChecked(event, undefined).bytes).toBe(Buffer.byteLength(json))
  })

  it('refuses an event over the limit with PayloadTooLargeError giving both sizes', () => {
    const event = createEvent({ topic: 'sz', data: '日'.repeat(100) })
    const size = Buffer.byteLength(encodeEvent(event))
    expect(() => encodeEventChecked(event, size)).not.toThrow()
    try {
      encodeEventChecked(event, size - 1, 'sqs')
      expect.unreachable()
    } catch (error) {
      expect(error).toBeInstanceOf(PayloadTooLargeError)
      const e = error as PayloadTooLargeError
      expect(e.sizeBytes).toBe(size)
      expect(e.limitBytes).toBe(size - 1)
      expect(e.backend).toBe('sqs')
      expect(e.message).toMatch(
        new RegExp(`encoded event is ${size} bytes, over the sqs limit of ${size - 1} bytes`),
      )
    }
  })
})
