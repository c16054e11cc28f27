/**
 * The wire codec: every backend writes and reads events as one CloudEvents 1.0 JSON document
 * (structured mode). JSON data goes in `data`, bytes in `data_base64`. Envelope fields map to
 * lower-case extensions (`partitionkey`, `correlationid`, `causationid`, `guarantee`,
 * `traceparent`, `tracestate`); other user headers are members prefixed `hdr_`. Unknown scalar
 * extensions written by foreign producers are read back as headers.
 */
import { PayloadTooLargeError, SerializationError } from './errors.ts'
import { setHeader } from './headers.ts'
import type { Guarantee, OmnibusEvent } from './protocol.ts'
import { isValidTopic } from './topic.ts'

/** Prefix of user headers on the wire. */
export const HEADER_PREFIX = 'hdr_'
const JSON_TYPE = 'application/json'
const BINARY_TYPE = 'application/octet-stream'

function unencodable(topic: string, path: string, what: string): SerializationError {
  return new SerializationError(
    `cannot encode data of "${topic}": ${what} at ${path}. Event data must be JSON (objects, arrays, strings, ` +
      'finite numbers, booleans, null) or a Uint8Array as the whole payload',
  )
}

// Keys from the root to the value being checked; turned into a path string only on failure, so
// checking a payload that is fine allocates nothing per value.
type PathKey = string | number

function formatPath(keys: readonly PathKey[]): string {
  let out = 'data'
  for (const k of keys) out += typeof k === 'number' ? `[${k}]` : `.${k}`
  return out
}

// Returns what cannot be encoded (with `keys` left at its path), or undefined when all is fine.
// `ancestors` holds the objects on the current path: a value that is its own ancestor is a cycle,
// while the same object reached twice by different paths is fine (JSON writes it twice).
function findProblem(value: unknown, keys: PathKey[], ancestors: object[]): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return undefined
    case 'number':
      return Number.isFinite(value) ? undefined : `the number ${value}`
    case 'bigint':
      return 'a BigInt (convert it to a string)'
    case 'function':
      return 'a function'
    case 'symbol':
      return 'a symbol'
    case 'object': {
      if (value === null) return undefined
      if (ancestors.includes(value)) return 'a circular reference'
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
        return 'nested binary data (only the whole payload may be a Uint8Array)'
      }
      if (
        value instanceof Map ||
        value instanceof Set ||
        value instanceof WeakMap ||
        value instanceof WeakSet
      ) {
        return `a ${value.constructor.name} (convert it to an object or array)`
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined
      ancestors.push(value)
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i]
          if (
            typeof item === 'object' ||
            typeof item === 'number' ||
            typeof item === 'bigint' ||
            typeof item === 'function' ||
            typeof item === 'symbol'
          ) {
            keys.push(i)
            const problem = findProblem(item, keys, ancestors)
            if (problem !== undefined) return problem
            keys.pop()
          }
        }
      } else {
        for (const key in value) {
          if (!Object.hasOwn(value, key)) continue
          keys.push(key)
          const problem = findProblem((value as Record<string, unknown>)[key], keys, ancestors)
          if (problem !== undefined) return problem
          keys.pop()
        }
      }
      ancestors.pop()
      return undefined
    }
  }
  return undefined
}

// Plain JSON — nested plain objects and arrays of strings, finite numbers, booleans and null —
// checked without allocating anything. Anything else (class instances, Map, toJSON, binary, a
// nesting deeper than MAX_FAST_DEPTH, which is also where a cycle ends up) takes the full walk,
// which names the problem or accepts what JSON can carry.
const MAX_FAST_DEPTH = 32

function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value)
    case 'object': {
      if (value === null) return true
      if (depth >= MAX_FAST_DEPTH) return false
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!isPlainJson(value[i], depth + 1)) return false
        return true
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      for (const key in value) {
        if (!isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** Throws a {@link SerializationError} naming the path of anything in `data` that JSON cannot carry. */
export function assertEncodable(data: unknown, topic = 'event'): void {
  if (data === undefined) throw unencodable(topic, 'data', 'undefined (send null for "no data")')
  if (typeof data === 'string' || typeof data === 'boolean' || data === null) return
  if (typeof data === 'number' && Number.isFinite(data)) return
  if (data instanceof Uint8Array || isPlainJson(data, 0)) return
  const keys: PathKey[] = []
  const problem = findProblem(data, keys, [])
  if (problem !== undefined) throw unencodable(topic, formatPath(keys), problem)
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

// Formatting a date costs more than the rest of the envelope; events published in bursts share
// their millisecond, so the last one formatted is kept.
let lastIsoTime = Number.NaN
let lastIsoText = ''

function isoTime(time: number): string {
  if (time !== lastIsoTime) {
    lastIsoText = new Date(time).toISOString()
    lastIsoTime = time
  }
  return lastIsoText
}

/** The CloudEvents JSON object for an event (before stringification). */
export function toCloudEvent(event: OmnibusEvent): Record<string, unknown> {
  const ce: Record<string, unknown> = {
    specversion: '1.0',
    id: event.id,
    source: event.source,
    type: event.topic,
    time: isoTime(event.time),
  }
  if (event.data instanceof Uint8Array) {
    ce.datacontenttype = BINARY_TYPE
    ce.data_base64 = toBase64(event.data)
  } else {
    ce.datacontenttype = JSON_TYPE
    ce.data = event.data
  }
  ce.guarantee = event.guarantee
  if (event.partitionKey !== undefined) ce.partitionkey = event.partitionKey
  if (event.correlationId !== undefined) ce.correlationid = event.correlationId
  if (event.causationId !== undefined) ce.causationid = event.causationId
  for (const key in event.headers) {
    const value = event.headers[key] as string
    if (key === 'traceparent' || key === 'tracestate') ce[key] = value
    else ce[HEADER_PREFIX + key] = value
  }
  return ce
}

/**
 * Encodes an event as a CloudEvents JSON string. Throws {@link SerializationError} for data JSON
 * cannot carry (BigInt, cycles, functions, symbols, non-finite numbers, Map/Set, nested binary).
 */
export function encodeEvent(event: OmnibusEvent): string {
  assertEncodable(event.data, event.topic)
  try {
    return JSON.stringify(toCloudEvent(event))
  } catch (cause) {
    throw new SerializationError(`cannot encode event "${event.topic}": ${(cause as Error).message}`, {
      cause,
    })
  }
}

/**
 * Encodes and checks the size against `limitBytes` (when given); throws {@link PayloadTooLargeError}.
 * Returns the JSON and its UTF-8 size.
 */
export function encodeEventChecked(
  event: OmnibusEvent,
  limitBytes: number | undefined,
  backend?: string,
): { readonly json: string; readonly bytes: number } {
  const json = encodeEvent(event)
  // The exact UTF-8 size, always: callers size broker batches with it, and the UTF-16 length
  // undercounts non-ASCII text up to threefold.
  const bytes = Buffer.byteLength(json)
  if (limitBytes !== undefined && bytes > limitBytes) {
    throw new PayloadTooLargeError(bytes, limitBytes, backend === undefined ? {} : { backend })
  }
  return { json, bytes }
}

/** A decode failure: the wire message is not a valid envelope. Carries the reason. */
export class InvalidEnvelopeError extends SerializationError {
  /** The raw text that failed, truncated to 1 KiB for diagnostics. */
  readonly raw: string

  constructor(reason: string, raw: string, cause?: unknown) {
    super(`not a valid Omnibus/CloudEvents envelope: ${reason}`, {
      code: 'INVALID_ENVELOPE',
      ...(cause === undefined ? {} : { cause }),
    })
    this.raw = raw.length > 1024 ? `${raw.slice(0, 1024)}…` : raw
  }
}

function asText(raw: string | Uint8Array): string {
  if (typeof raw === 'string') return raw
  if (Buffer.isBuffer(raw)) return raw.toString('utf8')
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8')
}

/**
 * Decodes a CloudEvents JSON document into an envelope. Throws {@link InvalidEnvelopeError} with
 * the reason for anything that is not one (truncated JSON, missing id/type, invalid topic, bad
 * base64, ...); callers dead-letter such messages instead of dropping them.
 */
export function decodeEvent(raw: string | Uint8Array): OmnibusEvent {
  const text = asText(raw)
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (cause) {
    throw new InvalidEnvelopeError(`not JSON (${(cause as Error).message})`, text, cause)
  }
  return fromCloudEvent(doc, text)
}

// The raw text is only needed for an error: stringified then, not before.
function invalidDocument(doc: unknown, raw: string, reason: string): InvalidEnvelopeError {
  return new InvalidEnvelopeError(reason, raw || safeStringify(doc))
}

// The last topic found valid: events read in a row mostly share their topic, and comparing two
// equal strings is cheaper than scanning one.
let lastValidTopic = ''

/** Builds an envelope from a parsed CloudEvents object; see {@link decodeEvent}. */
export function fromCloudEvent(doc: unknown, rawForErrors = ''): OmnibusEvent {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw invalidDocument(doc, rawForErrors, 'the document is not a JSON object')
  }
  const ce = doc as Record<string, unknown>
  // The attributes by name; what else the document holds (headers, foreign extensions) only
  // needs a pass over its members when it has more members than the attributes read here.
  const specversion = ce.specversion
  const id = ce.id
  const type = ce.type
  const source = ce.source
  const time = ce.time
  let data = ce.data
  const dataBase64 = ce.data_base64
  let guarantee = ce.guarantee
  const correlationId = ce.correlationid
  const causationId = ce.causationid
  const partitionKey = ce.partitionkey
  let known =
    (specversion === undefined ? 0 : 1) +
    (id === undefined ? 0 : 1) +
    (type === undefined ? 0 : 1) +
    (source === undefined ? 0 : 1) +
    (time === undefined ? 0 : 1) +
    (data === undefined ? 0 : 1) +
    (dataBase64 === undefined ? 0 : 1) +
    (guarantee === undefined ? 0 : 1) +
    (correlationId === undefined ? 0 : 1) +
    (causationId === undefined ? 0 : 1) +
    (partitionKey === undefined ? 0 : 1)
  if (ce.datacontenttype !== undefined) known++
  let members = 0
  for (const _ in ce) members++
  const headers: Record<string, string> = {}
  if (members !== known) collectHeaders(ce, headers)
  if (specversion !== '1.0')
    throw invalidDocument(doc, rawForErrors, `specversion is ${JSON.stringify(specversion)}, expected "1.0"`)
  if (typeof id !== 'string' || id.length === 0) throw invalidDocument(doc, rawForErrors, 'id is missing')
  if (typeof type !== 'string') throw invalidDocument(doc, rawForErrors, 'type (the topic) is missing')
  if (type !== lastValidTopic) {
    if (!isValidTopic(type))
      throw invalidDocument(
        doc,
        rawForErrors,
        `type "${String(type).slice(0, 300)}" is not a valid Omnibus topic`,
      )
    lastValidTopic = type
  }
  if (typeof source !== 'string' || source.length === 0)
    throw invalidDocument(doc, rawForErrors, 'source is missing')
  let at = Date.now()
  if (time !== undefined) {
    at = typeof time === 'string' ? parseTime(time) : Number.NaN
    if (!Number.isFinite(at))
      throw invalidDocument(doc, rawForErrors, `time ${JSON.stringify(time)} is not RFC 3339`)
  }
  if (dataBase64 !== undefined) {
    if (typeof dataBase64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(dataBase64)) {
      throw invalidDocument(doc, rawForErrors, 'data_base64 is not base64')
    }
    const buf = Buffer.from(dataBase64, 'base64')
    data = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
  } else if (data === undefined) {
    data = null
  }
  if (guarantee === undefined) guarantee = 'at-least-once'
  else if (guarantee !== 'at-least-once' && guarantee !== 'at-most-once' && guarantee !== 'exactly-once') {
    throw invalidDocument(doc, rawForErrors, `guarantee ${JSON.stringify(guarantee)} is unknown`)
  }
  const event: { -readonly [K in keyof OmnibusEvent]: OmnibusEvent[K] } = {
    id,
    topic: type,
    data,
    time: at,
    source,
    headers,
    guarantee: guarantee as Guarantee,
  }
  if (typeof correlationId === 'string') event.correlationId = correlationId
  if (typeof causationId === 'string') event.causationId = causationId
  if (typeof partitionKey === 'string') event.partitionKey = partitionKey
  return event
}

// Members other than the envelope attributes: user headers (`hdr_` + name), the trace context,
// and a foreign producer's scalar extension attributes, which surface as headers.
function collectHeaders(ce: Record<string, unknown>, headers: Record<string, string>): void {
  for (const key in ce) {
    switch (key) {
      case 'specversion':
      case 'id':
      case 'type':
      case 'source':
      case 'time':
      case 'data':
      case 'data_base64':
      case 'guarantee':
      case 'correlationid':
      case 'causationid':
      case 'partitionkey':
      case 'datacontenttype':
      case 'dataschema':
      case 'subject':
        break
      default: {
        const value = ce[key]
        if (key === 'traceparent' || key === 'tracestate') {
          if (typeof value === 'string') setHeader(headers, key, value)
        } else if (key.startsWith(HEADER_PREFIX)) {
          if (typeof value === 'string') setHeader(headers, key.slice(HEADER_PREFIX.length), value)
        } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
          setHeader(headers, key, String(value))
        }
      }
    }
  }
}

function digits(s: string, from: number, count: number): number {
  let n = 0
  for (let i = from; i < from + count; i++) {
    const d = s.charCodeAt(i) - 48
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

/**
 * Milliseconds of an RFC 3339 time. The form this codec writes (`Date#toISOString`,
 * `YYYY-MM-DDTHH:MM:SS.sssZ`) is read field by field, several times cheaper than `Date.parse`;
 * any other form, and field values at the edges, go to `Date.parse`, whose result this equals.
 */
export function parseTime(s: string): number {
  // Events read in a row were often written in the same millisecond.
  if (s === lastParsedText) return lastParsedTime
  const t = parseTimeUncached(s)
  lastParsedText = s
  lastParsedTime = t
  return t
}

let lastParsedText = ''
let lastParsedTime = Number.NaN

function parseTimeUncached(s: string): number {
  if (
    s.length === 24 &&
    s.charCodeAt(4) === 45 &&
    s.charCodeAt(7) === 45 &&
    s.charCodeAt(10) === 84 &&
    s.charCodeAt(13) === 58 &&
    s.charCodeAt(16) === 58 &&
    s.charCodeAt(19) === 46 &&
    s.charCodeAt(23) === 90
  ) {
    const year = digits(s, 0, 4)
    const month = digits(s, 5, 2)
    const day = digits(s, 8, 2)
    const hour = digits(s, 11, 2)
    const minute = digits(s, 14, 2)
    const second = digits(s, 17, 2)
    const ms = digits(s, 20, 3)
    if (
      year >= 100 &&
      month >= 1 &&
      month <= 12 &&
      day >= 1 &&
      day <= 31 &&
      hour >= 0 &&
      hour <= 23 &&
      minute >= 0 &&
      minute <= 59 &&
      second >= 0 &&
      second <= 59 &&
      ms >= 0
    ) {
      return Date.UTC(year, month - 1, day, hour, minute, second, ms)
    }
  }
  return Date.parse(s)
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
