/**
 * The wire codec: every backend writes and reads events as one CloudEvents 1.0 JSON document
 * (structured mode). JSON data goes in `data`, bytes in `data_base64`. Envelope fields map to
 * lower-case extensions (`partitionkey`, `correlationid`, `causationid`, `guarantee`) and to the
 * optional CloudEvents attributes (`subject`, `dataschema`, `datacontenttype`). A delayed or
 * expiring event carries {@link DELIVER_AT_EXTENSION} and {@link EXPIRES_AT_EXTENSION}, CloudEvents
 * Timestamp extensions (RFC 3339 strings), which any CloudEvents producer may set too.
 *
 * Headers: CloudEvents attribute names are lower-case ASCII letters and digits, while a header
 * name is any string. A header whose name is already a usable extension name (see
 * {@link headerExtensionName}) is written as that extension, so `tenant` reads as `tenant` in
 * any CloudEvents consumer (and `traceparent`/`tracestate` as the distributed-tracing
 * extension); every other header goes into one string extension, {@link HEADERS_EXTENSION},
 * holding a JSON object of those headers, so every name round-trips exactly. Reading, a foreign
 * producer's extensions become headers of the same name, and the `hdr_` members written by
 * earlier versions are still read.
 */

import { PayloadTooLargeError, SerializationError } from './errors.ts'
import { NO_HEADERS, setHeader } from './headers.ts'
import type { Guarantee, OmnibusEvent } from './protocol.ts'
import { isValidTopic } from './topic.ts'
import { uriProblem } from './uri.ts'

/**
 * Prefix of user headers in events written by earlier versions (`hdr_<name>`). Read on decode,
 * so events already in durable stores keep their headers; never written.
 */
export const HEADER_PREFIX = 'hdr_'

/**
 * The extension holding, as a JSON object in one string, the headers whose names are not usable
 * extension names (`{"x-tenant":"acme","Mixed-Case":"1"}`).
 */
export const HEADERS_EXTENSION = 'omnibusheaders'

/** The extension of `deliverAt`: the RFC 3339 time before which no handler receives the event. */
export const DELIVER_AT_EXTENSION = 'deliverat'

/** The extension of `expiresAt`: the RFC 3339 time from which the event is expired. */
export const EXPIRES_AT_EXTENSION = 'expiresat'

const JSON_TYPE = 'application/json'
const BINARY_TYPE = 'application/octet-stream'

/**
 * Longest header name written as an extension of its own: the CloudEvents spec asks that
 * attribute names not exceed 20 characters (a SHOULD; the JavaScript SDK does not enforce it),
 * so longer names go into {@link HEADERS_EXTENSION}, where no consumer can trip over them.
 */
export const MAX_EXTENSION_NAME_LENGTH = 20

/**
 * Names that are valid extension names but are never used for a header, which then goes into
 * {@link HEADERS_EXTENSION}: the CloudEvents context attributes (1.0, and the 0.3 ones SDKs still
 * read), the JSON format's `data`, the extensions Omnibus writes for envelope fields, and
 * `validate`, which the JavaScript SDK's event object would take for its own method.
 */
export const RESERVED_EXTENSION_NAMES: ReadonlySet<string> = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'subject',
  'dataschema',
  'datacontenttype',
  'data',
  'schemaurl',
  'datacontentencoding',
  'guarantee',
  'partitionkey',
  'correlationid',
  'causationid',
  DELIVER_AT_EXTENSION,
  EXPIRES_AT_EXTENSION,
  HEADERS_EXTENSION,
  'validate',
])

/**
 * Whether a header of this name is written as a CloudEvents extension of the same name: 1-20
 * lower-case ASCII letters or digits, and not one of {@link RESERVED_EXTENSION_NAMES}.
 */
export function headerExtensionName(name: string): boolean {
  const n = name.length
  if (n === 0 || n > MAX_EXTENSION_NAME_LENGTH) return false
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i)
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) return false
  }
  return !RESERVED_EXTENSION_NAMES.has(name)
}

/** The `datacontenttype` written for data without one: JSON, or octet-stream for bytes. */
export function impliedContentType(data: unknown): string {
  return data instanceof Uint8Array ? BINARY_TYPE : JSON_TYPE
}

/**
 * Why a value cannot be the CloudEvents attribute `name` (`subject`, `dataschema`,
 * `datacontenttype`), or undefined when it can.
 */
export function attributeProblem(
  name: 'subject' | 'dataschema' | 'datacontenttype',
  value: unknown,
): string | undefined {
  if (typeof value !== 'string' || value.length === 0) {
    return `${name} must be a non-empty string, got ${value === '' ? 'an empty string' : typeof value}`
  }
  if (name === 'dataschema') {
    const problem = uriProblem(value, true)
    if (problem !== undefined) {
      return `dataschema must be an absolute URI (scheme:...), and ${problem}: ${JSON.stringify(value.slice(0, 200))}`
    }
  }
  return undefined
}

/** Why a value cannot be an event's `source` (CloudEvents: a URI reference), or undefined when it can. */
export function sourceProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0) {
    return `source must be a non-empty string, got ${value === '' ? 'an empty string' : typeof value}`
  }
  const problem = uriProblem(value, false)
  if (problem === undefined) return undefined
  return (
    `source must be a URI reference such as "planner-1", "omnibus:worker-2" or "https://example.com/svc", ` +
    `and ${problem}: ${JSON.stringify(value.slice(0, 200))}`
  )
}

/**
 * `source` as is when it is a URI reference, otherwise percent-encoded whole (which always is one):
 * for events Omnibus derives from a received one, such as a dead letter of a foreign event.
 */
export function asSource(value: string): string {
  return value.length > 0 && uriProblem(value, false) === undefined
    ? value
    : encodeURIComponent(value) || 'unknown'
}

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
    ce.datacontenttype = event.dataContentType ?? BINARY_TYPE
    ce.data_base64 = toBase64(event.data)
  } else {
    ce.datacontenttype = event.dataContentType ?? JSON_TYPE
    ce.data = event.data
  }
  if (event.subject !== undefined) ce.subject = event.subject
  if (event.dataSchema !== undefined) ce.dataschema = event.dataSchema
  ce.guarantee = event.guarantee
  if (event.partitionKey !== undefined) ce.partitionkey = event.partitionKey
  if (event.correlationId !== undefined) ce.correlationid = event.correlationId
  if (event.causationId !== undefined) ce.causationid = event.causationId
  if (event.deliverAt !== undefined) ce.deliverat = new Date(event.deliverAt).toISOString()
  if (event.expiresAt !== undefined) ce.expiresat = new Date(event.expiresAt).toISOString()
  let others: Record<string, string> | undefined
  for (const key in event.headers) {
    const value = event.headers[key] as string
    // The trace context is on most events: named without the character scan.
    if (key === 'traceparent' || key === 'tracestate' || headerExtensionName(key)) ce[key] = value
    else {
      others ??= {}
      setHeader(others, key, value)
    }
  }
  if (others !== undefined) ce[HEADERS_EXTENSION] = JSON.stringify(others)
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
  const contentType = ce.datacontenttype
  const subject = ce.subject
  const dataSchema = ce.dataschema
  let guarantee = ce.guarantee
  const correlationId = ce.correlationid
  const causationId = ce.causationid
  const partitionKey = ce.partitionkey
  const deliverAt = ce.deliverat
  const expiresAt = ce.expiresat
  const known =
    (specversion === undefined ? 0 : 1) +
    (id === undefined ? 0 : 1) +
    (type === undefined ? 0 : 1) +
    (source === undefined ? 0 : 1) +
    (time === undefined ? 0 : 1) +
    (data === undefined ? 0 : 1) +
    (dataBase64 === undefined ? 0 : 1) +
    (contentType === undefined ? 0 : 1) +
    (subject === undefined ? 0 : 1) +
    (dataSchema === undefined ? 0 : 1) +
    (guarantee === undefined ? 0 : 1) +
    (correlationId === undefined ? 0 : 1) +
    (causationId === undefined ? 0 : 1) +
    (partitionKey === undefined ? 0 : 1) +
    (deliverAt === undefined ? 0 : 1) +
    (expiresAt === undefined ? 0 : 1)
  let members = 0
  for (const _ in ce) members++
  let headers = NO_HEADERS
  let headerProblem: string | undefined
  if (members !== known) {
    const collected: Record<string, string> = {}
    headerProblem = collectHeaders(ce, collected)
    headers = collected
  }
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
  if (headerProblem !== undefined) throw invalidDocument(doc, rawForErrors, headerProblem)
  // The clock is read only for a document without a time (a clock read costs as much as the rest
  // of the attribute checks together).
  let at: number
  if (time !== undefined) {
    at = typeof time === 'string' ? parseTime(time) : Number.NaN
    if (!Number.isFinite(at))
      throw invalidDocument(doc, rawForErrors, `time ${JSON.stringify(time)} is not RFC 3339`)
  } else at = Date.now()
  let defaultType = JSON_TYPE
  if (dataBase64 !== undefined) {
    if (typeof dataBase64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(dataBase64)) {
      throw invalidDocument(doc, rawForErrors, 'data_base64 is not base64')
    }
    const buf = Buffer.from(dataBase64, 'base64')
    data = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)
    defaultType = BINARY_TYPE
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
  // The optional attributes: null is how a JSON writer says "absent". The content type is kept
  // only when it is not the one the data's form implies, so an event Omnibus wrote reads back
  // without it.
  if (contentType !== undefined && contentType !== null && contentType !== defaultType) {
    const problem = attributeProblem('datacontenttype', contentType)
    if (problem !== undefined) throw invalidDocument(doc, rawForErrors, problem)
    event.dataContentType = contentType as string
  }
  if (subject !== undefined && subject !== null) {
    const problem = attributeProblem('subject', subject)
    if (problem !== undefined) throw invalidDocument(doc, rawForErrors, problem)
    event.subject = subject as string
  }
  if (dataSchema !== undefined && dataSchema !== null) {
    const problem = attributeProblem('dataschema', dataSchema)
    if (problem !== undefined) throw invalidDocument(doc, rawForErrors, problem)
    event.dataSchema = dataSchema as string
  }
  if (deliverAt !== undefined && deliverAt !== null) {
    event.deliverAt = timestampExtension(DELIVER_AT_EXTENSION, deliverAt, doc, rawForErrors)
  }
  if (expiresAt !== undefined && expiresAt !== null) {
    event.expiresAt = timestampExtension(EXPIRES_AT_EXTENSION, expiresAt, doc, rawForErrors)
  }
  return event
}

// A CloudEvents Timestamp extension: an RFC 3339 string in the JSON format.
function timestampExtension(name: string, value: unknown, doc: unknown, raw: string): number {
  const ms = typeof value === 'string' ? parseTime(value) : Number.NaN
  if (!Number.isFinite(ms)) {
    throw invalidDocument(doc, raw, `${name} ${JSON.stringify(value)} is not an RFC 3339 timestamp`)
  }
  return ms
}

// Members other than the envelope attributes: the headers extension, extensions named like
// headers (the trace context, user headers, a foreign producer's extensions), and the `hdr_`
// members of earlier versions. Extensions whose value is a number or a boolean (CloudEvents
// Integer and Boolean) become headers holding its canonical string form; other values (objects,
// arrays, null) are not CloudEvents attribute values and are left out. Returns why the headers
// extension cannot be read, if it cannot.
function collectHeaders(ce: Record<string, unknown>, headers: Record<string, string>): string | undefined {
  let problem: string | undefined
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
      case DELIVER_AT_EXTENSION:
      case EXPIRES_AT_EXTENSION:
      case 'datacontenttype':
      case 'dataschema':
      case 'subject':
        break
      case HEADERS_EXTENSION:
        problem ??= readHeadersExtension(ce[key], headers)
        break
      default: {
        const value = ce[key]
        if (key.startsWith(HEADER_PREFIX)) {
          if (typeof value === 'string') setHeader(headers, key.slice(HEADER_PREFIX.length), value)
        } else if (typeof value === 'string') {
          setHeader(headers, key, value)
        } else if (typeof value === 'number' || typeof value === 'boolean') {
          setHeader(headers, key, String(value))
        }
      }
    }
  }
  return problem
}

function readHeadersExtension(value: unknown, headers: Record<string, string>): string | undefined {
  const expected = `${HEADERS_EXTENSION} must be a string holding a JSON object of string headers`
  if (typeof value !== 'string') return `${expected}, got ${value === null ? 'null' : typeof value}`
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch (cause) {
    return `${expected} (${(cause as Error).message})`
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return `${expected}, got ${Array.isArray(parsed) ? 'an array' : String(parsed)}`
  }
  const map = parsed as Record<string, unknown>
  for (const name in map) {
    const v = map[name]
    if (typeof v !== 'string') return `${expected}; header ${JSON.stringify(name)} is ${typeof v}`
    setHeader(headers, name, v)
  }
  return undefined
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
