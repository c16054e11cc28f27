import { CloudEvent, HTTP } from 'cloudevents'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  decodeEvent,
  encodeEvent,
  HEADERS_EXTENSION,
  headerExtensionName,
  InvalidEnvelopeError,
  RESERVED_EXTENSION_NAMES,
} from '../src/codec.ts'
import { DLQ_HEADERS, deadLetterInput, redriveInput } from '../src/delivery.ts'
import { createEvent } from '../src/envelope.ts'
import { ConfigurationError } from '../src/errors.ts'
import type { EventInput, OmnibusEvent } from '../src/protocol.ts'

/** Validates `json` the two ways a consumer of the official SDK reads it, both strict. */
function assertStrictlyValid(json: string): CloudEvent<unknown> {
  const parsed = JSON.parse(json) as Record<string, unknown>
  const constructed = new CloudEvent(parsed, true)
  const received = HTTP.toEvent({ headers: { 'content-type': 'application/cloudevents+json' }, body: json })
  const event = (Array.isArray(received) ? received[0] : received) as CloudEvent<unknown>
  expect(event.validate()).toBe(true)
  return constructed
}

const TRICKY_NAMES = [
  'tenant',
  'Tenant',
  'X-Tenant',
  'x-tenant',
  'x.tenant',
  'x_tenant',
  'two words',
  'ünïcødé',
  '日本語',
  '👩‍👩‍👧',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'type',
  'id',
  'source',
  'specversion',
  'data',
  'data_base64',
  'time',
  'subject',
  'dataschema',
  'datacontenttype',
  'schemaurl',
  'guarantee',
  'partitionkey',
  'correlationid',
  'causationid',
  HEADERS_EXTENSION,
  'validate',
  'traceparent',
  'tracestate',
  'hdr_x',
  'hdr_',
  'a',
  '0',
  'a'.repeat(20),
  'a'.repeat(21),
  ' ',
  '"quoted"',
  'back\\slash',
  'line\nbreak',
]

function trickyHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  TRICKY_NAMES.forEach((name, i) => {
    Object.defineProperty(headers, name, {
      value: `v${i} "${name}" \u0000 é`,
      enumerable: true,
      writable: true,
      configurable: true,
    })
  })
  headers.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  return headers
}

describe('header mapping onto CloudEvents extensions', () => {
  it('writes extension-named headers as extensions and every other name in the headers extension', () => {
    const event = createEvent({
      topic: 'a.b',
      data: 1,
      headers: {
        tenant: 'acme',
        traceparent: 'tp',
        'X-Tenant': 'x',
        type: 't',
        id: 'i',
        [HEADERS_EXTENSION]: 'h',
      },
    })
    const ce = JSON.parse(encodeEvent(event)) as Record<string, unknown>
    expect(ce.tenant).toBe('acme')
    expect(ce.traceparent).toBe('tp')
    expect(ce.type).toBe('a.b')
    expect(ce.id).toBe(event.id)
    expect(JSON.parse(ce[HEADERS_EXTENSION] as string)).toEqual({
      'X-Tenant': 'x',
      type: 't',
      id: 'i',
      [HEADERS_EXTENSION]: 'h',
    })
    expect(Object.keys(ce).filter((k) => !/^[a-z0-9]+$/.test(k) && k !== 'data_base64')).toEqual([])
  })

  it('uses an extension only for 1-20 lower-case letters and digits that name no attribute', () => {
    expect(headerExtensionName('tenant')).toBe(true)
    expect(headerExtensionName('traceparent')).toBe(true)
    expect(headerExtensionName('a1')).toBe(true)
    expect(headerExtensionName('a'.repeat(20))).toBe(true)
    expect(headerExtensionName('a'.repeat(21))).toBe(false)
    expect(headerExtensionName('')).toBe(false)
    expect(headerExtensionName('Tenant')).toBe(false)
    expect(headerExtensionName('x-tenant')).toBe(false)
    expect(headerExtensionName('é')).toBe(false)
    for (const name of RESERVED_EXTENSION_NAMES) expect(headerExtensionName(name), name).toBe(false)
  })

  it('round-trips every tricky header name exactly, and the result validates', () => {
    const headers = trickyHeaders()
    const event = createEvent({ topic: 'h.t', data: { x: 1 }, headers, partitionKey: 'k' })
    const json = encodeEvent(event)
    assertStrictlyValid(json)
    const back = decodeEvent(json)
    expect(back.headers).toEqual(headers)
    expect(Object.keys(back.headers).sort()).toEqual(Object.keys(headers).sort())
    expect(Object.hasOwn(back.headers, '__proto__')).toBe(true)
    expect(Object.getPrototypeOf(back.headers)).toBe(Object.prototype)
    expect(back.id).toBe(event.id)
    expect(back.topic).toBe('h.t')
    expect(back.partitionKey).toBe('k')
    expect(back.guarantee).toBe('at-least-once')
  })
})

const sourceArb = fc.constantFrom(
  'omnibus:1234',
  'planner-1',
  '/sensors/42',
  'urn:uuid:6e8bc430',
  'agent:r-1',
)
const nameArb = fc.oneof(
  fc.string({ minLength: 1, unit: 'binary' }),
  fc.stringMatching(/^[a-z0-9]{1,24}$/),
  fc.constantFrom(...TRICKY_NAMES),
)
const inputArb: fc.Arbitrary<EventInput> = fc.record(
  {
    topic: fc.constantFrom('a', 'tool.start', 'agent.r-1.task_x'),
    data: fc.oneof(fc.jsonValue(), fc.uint8Array({ maxLength: 64 })),
    source: sourceArb,
    headers: fc.dictionary(nameArb, fc.string({ unit: 'binary' }), { maxKeys: 8 }),
    guarantee: fc.constantFrom('at-most-once', 'at-least-once', 'exactly-once'),
    partitionKey: fc.string({ unit: 'binary' }),
    correlationId: fc.string(),
    subject: fc.string({ minLength: 1, unit: 'binary' }),
    dataSchema: fc.constantFrom('https://example.com/schemas/v1.json', 'urn:schema:x', 'http://a.b/c?d=e#f'),
    dataContentType: fc.constantFrom('text/plain', 'application/json', 'application/xml; charset=utf-8'),
  },
  { requiredKeys: ['topic', 'data', 'source', 'headers'] },
) as fc.Arbitrary<EventInput>

describe('strict validation by the CloudEvents SDK', () => {
  it('accepts every event Omnibus writes, whatever its headers, and decodes it back equal', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const event = createEvent(input)
        const json = encodeEvent(event)
        const sdk = assertStrictlyValid(json)
        expect(sdk.type).toBe(event.topic)
        const back = decodeEvent(json)
        expect(back.headers).toEqual(event.headers)
        expect(back.subject).toBe(event.subject)
        expect(back.dataSchema).toBe(event.dataSchema)
        expect(back.dataContentType).toBe(event.dataContentType)
        if (event.data instanceof Uint8Array)
          expect(Buffer.from(back.data as Uint8Array)).toEqual(Buffer.from(event.data))
      }),
      { numRuns: 1000 },
    )
  })

  it('accepts dead letters with every diagnostic, binary data and tricky headers', () => {
    const original = createEvent({
      topic: 'orders.placed',
      data: new Uint8Array([0, 1, 2, 254, 255]),
      source: 'shop',
      headers: trickyHeaders(),
      subject: 'order-7',
      dataContentType: 'application/x-protobuf',
    })
    const letter = createEvent(
      deadLetterInput(original, 'omnibus.deadletter', {
        reason: 'handler failed 3 times: "boom"\nstack',
        group: 'billing',
        attempts: 3,
        firstFailureAt: Date.UTC(2026, 0, 1),
        lastFailureAt: Date.UTC(2026, 0, 2),
        error: new TypeError('boom'),
        backend: 'memory',
      }),
    )
    for (const name of Object.values(DLQ_HEADERS)) expect(letter.headers[name], name).toBeDefined()
    const json = encodeEvent(letter)
    const sdk = assertStrictlyValid(json)
    expect(sdk.subject).toBe('order-7')
    expect(sdk.datacontenttype).toBe('application/x-protobuf')
    const back = decodeEvent(json)
    expect(back.headers).toEqual(letter.headers)
    expect(back.subject).toBe('order-7')
    expect(back.dataContentType).toBe('application/x-protobuf')
    const redriven = createEvent(redriveInput(back))
    expect(redriven.headers).toEqual(original.headers)
    expect(redriven.subject).toBe('order-7')
    expect(redriven.dataContentType).toBe('application/x-protobuf')
    expect(Array.from(redriven.data as Uint8Array)).toEqual([0, 1, 2, 254, 255])
  })
})

describe('events of other CloudEvents producers', () => {
  it('decodes an SDK event with extensions into headers and re-publishes every attribute', () => {
    const foreign = new CloudEvent({
      specversion: '1.0',
      id: 'A234-1234-1234',
      source: 'https://example.com/sensors/42',
      type: 'com.example.sensor.reading',
      time: '2018-04-05T17:31:00.000Z',
      subject: 'room-1',
      dataschema: 'https://example.com/schemas/reading.json',
      datacontenttype: 'text/xml',
      data: '<reading c="21.5"/>',
      tenant: 'acme',
      comexampleretries: 3,
      comexampleurgent: true,
    })
    const event = decodeEvent(foreign.toString())
    expect(event).toEqual({
      id: 'A234-1234-1234',
      topic: 'com.example.sensor.reading',
      data: '<reading c="21.5"/>',
      time: Date.parse('2018-04-05T17:31:00.000Z'),
      source: 'https://example.com/sensors/42',
      headers: { tenant: 'acme', comexampleretries: '3', comexampleurgent: 'true' },
      guarantee: 'at-least-once',
      subject: 'room-1',
      dataSchema: 'https://example.com/schemas/reading.json',
      dataContentType: 'text/xml',
    })
    // What a handler re-publishes: the same attributes and extensions, as a foreign consumer reads them.
    const again = assertStrictlyValid(encodeEvent(createEvent(event)))
    expect(again.id).toBe(foreign.id)
    expect(again.source).toBe(foreign.source)
    expect(again.type).toBe(foreign.type)
    expect(again.time).toBe(foreign.time)
    expect(again.subject).toBe('room-1')
    expect(again.dataschema).toBe('https://example.com/schemas/reading.json')
    expect(again.datacontenttype).toBe('text/xml')
    expect(again.data).toBe('<reading c="21.5"/>')
    expect(again.tenant).toBe('acme')
    // Integer and Boolean extensions come back in their canonical string form.
    expect(again.comexampleretries).toBe('3')
    expect(again.comexampleurgent).toBe('true')
  })

  it('decodes a binary SDK event keeping its content type', () => {
    const foreign = new CloudEvent({
      id: 'b-1',
      source: '/cams/3',
      type: 'cam.frame',
      datacontenttype: 'image/png',
      data: new Uint8Array([137, 80, 78, 71]),
    })
    const event = decodeEvent(JSON.stringify(foreign))
    expect(Array.from(event.data as Uint8Array)).toEqual([137, 80, 78, 71])
    expect(event.dataContentType).toBe('image/png')
    const ce = JSON.parse(encodeEvent(event)) as Record<string, unknown>
    expect(ce.datacontenttype).toBe('image/png')
    expect(ce.data_base64).toBe('iVBORw==')
  })

  it('reads the hdr_ headers of events written by earlier versions', () => {
    const old = JSON.stringify({
      specversion: '1.0',
      id: 'old-1',
      source: 's',
      type: 'legacy.event',
      time: '2025-01-01T00:00:00.000Z',
      datacontenttype: 'application/json',
      data: { a: 1 },
      guarantee: 'at-least-once',
      traceparent: 'tp',
      'hdr_x-tenant': 'acme',
      'hdr_omnibus-dlq-reason': 'failed',
      hdr_type: 'user type',
      hdr___proto__: 'proto',
      hdr_tenant: 'also',
    })
    const event = decodeEvent(old)
    const expected: Record<string, string> = {
      traceparent: 'tp',
      'x-tenant': 'acme',
      'omnibus-dlq-reason': 'failed',
      type: 'user type',
      tenant: 'also',
    }
    Object.defineProperty(expected, '__proto__', { value: 'proto', enumerable: true })
    expect(event.headers).toEqual(expected)
    expect(Object.hasOwn(event.headers, '__proto__')).toBe(true)
    expect(event.topic).toBe('legacy.event')
    assertStrictlyValid(encodeEvent(event))
  })

  it('leaves out extension values CloudEvents has no type for', () => {
    const event = decodeEvent(
      JSON.stringify({
        specversion: '1.0',
        id: '1',
        source: 's',
        type: 't',
        obj: { a: 1 },
        list: [1],
        nil: null,
      }),
    )
    expect(event.headers).toEqual({})
  })
})

describe('a headers extension that cannot be read', () => {
  const base = { specversion: '1.0', id: '1', source: 's', type: 't' }
  const cases: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{"a":', /omnibusheaders must be a string holding a JSON object of string headers \(/],
    ['a JSON array', '["a"]', /got an array/],
    ['JSON null', 'null', /got null/],
    ['a non-string header', '{"a":1}', /header "a" is number/],
    ['an object, not a string', { a: 'x' }, /got object/],
  ]
  for (const [what, value, reason] of cases) {
    it(`is an InvalidEnvelopeError when it is ${what}`, () => {
      const json = JSON.stringify({ ...base, [HEADERS_EXTENSION]: value })
      expect(() => decodeEvent(json)).toThrow(InvalidEnvelopeError)
      expect(() => decodeEvent(json)).toThrow(reason)
    })
  }
})

describe('subject, dataschema and datacontenttype', () => {
  it('round-trip through encode and decode and are left out when absent', () => {
    const event = createEvent({
      topic: 'files.uploaded',
      data: 'hello',
      subject: 'report.pdf',
      dataSchema: 'https://example.com/schemas/upload.json',
      dataContentType: 'text/plain',
    })
    const json = encodeEvent(event)
    expect(JSON.parse(json)).toMatchObject({
      subject: 'report.pdf',
      dataschema: 'https://example.com/schemas/upload.json',
      datacontenttype: 'text/plain',
      data: 'hello',
    })
    expect(decodeEvent(json)).toEqual(event)
    const plain = createEvent({ topic: 'a', data: 1 })
    const back = decodeEvent(encodeEvent(plain))
    expect('subject' in back || 'dataSchema' in back || 'dataContentType' in back).toBe(false)
  })

  it('does not keep the content type the data form implies', () => {
    expect(
      createEvent({ topic: 'a', data: 1, dataContentType: 'application/json' }).dataContentType,
    ).toBeUndefined()
    expect(
      createEvent({ topic: 'a', data: new Uint8Array(1), dataContentType: 'application/octet-stream' })
        .dataContentType,
    ).toBeUndefined()
    expect(
      createEvent({ topic: 'a', data: new Uint8Array(1), dataContentType: 'application/json' })
        .dataContentType,
    ).toBe('application/json')
  })

  it('refuses values CloudEvents does not allow, with a ConfigurationError naming the attribute', () => {
    const bad: Array<[Partial<EventInput>, RegExp]> = [
      [{ subject: '' }, /subject must be a non-empty string, got an empty string/],
      [{ subject: 5 as unknown as string }, /subject must be a non-empty string, got number/],
      [{ dataSchema: 'schema.json' }, /dataschema must be an absolute URI/],
      [{ dataSchema: 'https://example.com/a b' }, /dataschema must be an absolute URI/],
      [{ dataContentType: '' }, /datacontenttype must be a non-empty string/],
    ]
    for (const [extra, message] of bad) {
      expect(() => createEvent({ topic: 'a', data: 1, ...extra })).toThrow(ConfigurationError)
      expect(() => createEvent({ topic: 'a', data: 1, ...extra })).toThrow(message)
    }
  })

  it('dead-letters a foreign event whose attributes CloudEvents does not allow', () => {
    const base = { specversion: '1.0', id: '1', source: 's', type: 't' }
    expect(() => decodeEvent(JSON.stringify({ ...base, subject: 3 }))).toThrow(
      /subject must be a non-empty string/,
    )
    expect(() => decodeEvent(JSON.stringify({ ...base, dataschema: 'x y' }))).toThrow(
      /dataschema must be an absolute URI/,
    )
    expect(() => decodeEvent(JSON.stringify({ ...base, datacontenttype: 7 }))).toThrow(
      /datacontenttype must be a non-empty string/,
    )
    const absent = decodeEvent(JSON.stringify({ ...base, subject: null, dataschema: null }))
    expect(absent.subject).toBeUndefined()
    expect(absent.dataSchema).toBeUndefined()
  })

  it('are readable by a handler of a re-published event (publish input = the event)', () => {
    const received: OmnibusEvent = decodeEvent(
      JSON.stringify({
        specversion: '1.0',
        id: '9',
        source: 's',
        type: 't',
        subject: 'x',
        dataschema: 'urn:s',
      }),
    )
    const republished = createEvent({ ...received, topic: 'u' })
    expect(republished.subject).toBe('x')
    expect(republished.dataSchema).toBe('urn:s')
  })
})
