/**
 * Building envelopes from caller input. Ids are UUIDv7 (time-ordered). When an event is published
 * from inside a handler, it inherits `causationId` (the handled event's id) and `correlationId`
 * through an AsyncLocalStorage scope that {@link runWithEventContext} opens around every handler.
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks'
import { randomBytes } from 'node:crypto'
import { attributeProblem, impliedContentType, sourceProblem } from './codec.ts'
import { ConfigurationError, SerializationError } from './errors.ts'
import { NO_HEADERS, setHeader } from './headers.ts'
import { type EventInput, GUARANTEES, type Guarantee, type OmnibusEvent } from './protocol.ts'
import { applySchedule } from './schedule.ts'
import { validateTopic } from './topic.ts'

// Ids are generated here rather than with the `uuid` package: it asks the OS for 16 random bytes
// per id (a few microseconds each), which alone capped in-process publishing near 300k events/s.
// Random bytes come from a pooled buffer instead, and the timestamp is the caller's when it has one.
const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
// Random hex digits, refilled in bulk: slicing a long string is cheaper than formatting bytes.
let randomHex = ''
let randomHexAt = 0
let lastMs = -1
let prefix = ''
let seq = 0

function h(byte: number): string {
  return HEX[byte] as string
}

function takeRandomHex(n: number): string {
  if (randomHexAt + n > randomHex.length) {
    randomHex = randomBytes(8192).toString('hex')
    randomHexAt = 0
  }
  const at = randomHexAt
  randomHexAt += n
  return randomHex.slice(at, at + n)
}

// The id up to the counter's low 6 bits (`xxxxxxxx-xxxx-7xxx-xxxx-`): it changes once per
// millisecond or every 64 ids, so most ids are this string plus three short parts.
let head = ''
let headKey = -1

function uuidv7At(now: number): string {
  // RFC 9562 method 1: a 31-bit counter (12 bits of rand_a, 19 of rand_b) seeded at random each
  // millisecond and incremented within it, so ids are strictly increasing in one process even when
  // the clock stands still or steps back.
  if (now > lastMs) {
    lastMs = now
    seq = Number.parseInt(takeRandomHex(8), 16) & 0x7fffffff
    prefix = msPrefix(now)
    headKey = -1
  } else {
    seq = (seq + 1) | 0
    if (seq < 0) {
      seq = 0
      lastMs++
      prefix = msPrefix(lastMs)
      headKey = -1
    }
  }
  if (seq >>> 6 !== headKey) {
    headKey = seq >>> 6
    head =
      prefix +
      h(0x70 | ((seq >>> 28) & 0x0f)) +
      h((seq >>> 20) & 0xff) +
      '-' +
      h(0x80 | ((seq >>> 14) & 0x3f)) +
      h((seq >>> 6) & 0xff) +
      '-'
  }
  const tail = takeRandomHex(11)
  const c = tail.charCodeAt(0)
  const twoRandomBits = (c <= 57 ? c - 48 : c - 87) & 0x03
  // The first random digit only gave its two bits; the other ten are the last five bytes.
  return head + h(((seq << 2) & 0xfc) | twoRandomBits) + tail.substring(1)
}

// The first 48 bits (the millisecond) as `xxxxxxxx-xxxx-`, the same for every id of that millisecond.
function msPrefix(ms: number): string {
  return (
    h(Math.floor(ms / 0x10000000000) & 0xff) +
    h(Math.floor(ms / 0x100000000) & 0xff) +
    h(Math.floor(ms / 0x1000000) & 0xff) +
    h(Math.floor(ms / 0x10000) & 0xff) +
    '-' +
    h(Math.floor(ms / 0x100) & 0xff) +
    h(ms & 0xff) +
    '-'
  )
}

/** A new UUIDv7 string: time-ordered, and strictly increasing within one process. */
export function newEventId(): string {
  return uuidv7At(Date.now())
}

const handling = new AsyncLocalStorage<OmnibusEvent>()
// The event of a synchronous handler call (see callWithEventContextSync). It is only ever set for
// the duration of one synchronous call, so no other code can observe a stale value.
let syncHandling: OmnibusEvent | undefined

/** Runs `fn` with `event` as the event being handled, so events published inside inherit causation. */
export function runWithEventContext<R>(event: OmnibusEvent, fn: () => R): R {
  return runWithEventContext2(event, fn, undefined, undefined)
}

/**
 * {@link runWithEventContext} for a two-argument function: `fn(a, b)` runs in `event`'s scope
 * without a closure to allocate per call (the handler hot path of every backend).
 */
export function runWithEventContext2<A, B, R>(event: OmnibusEvent, fn: (a: A, b: B) => R, a: A, b: B): R {
  const outer = syncHandling
  syncHandling = undefined
  try {
    return new AsyncResource(HANDLER_RESOURCE).runInAsyncScope(enterAndCall, null, event, fn, a, b) as R
  } finally {
    syncHandling = outer
  }
}

// The scope of one handler call. `handling.run` would make two async context frames per call (a
// copy of the caller's frame with the event on entry, and another copy to restore the caller's on
// exit). A resource made for the call holds the caller's frame as it is and puts it back on exit
// without a copy, so a call costs one frame: the one with the event. Promise continuations of the
// handler keep that frame, as with `run`; the caller's frame is left unchanged.
const HANDLER_RESOURCE = 'omnibus.handler'

function enterAndCall<A, B, R>(event: OmnibusEvent, fn: (a: A, b: B) => R, a: A, b: B): R {
  handling.enterWith(event)
  return fn(a, b)
}

/**
 * Calls `fn(event, arg)` with `event` as the event being handled, like {@link runWithEventContext}
 * but for the synchronous part of the call only: it costs a few nanoseconds instead of an async
 * context switch (hundreds), and events published by `fn` before it returns inherit causation,
 * while callbacks and promise continuations scheduled by `fn` do not. For handlers known to be
 * synchronous; use {@link runWithEventContext} for anything that may await.
 */
export function callWithEventContextSync<A, R>(
  event: OmnibusEvent,
  fn: (event: OmnibusEvent, arg: A) => R,
  arg: A,
): R {
  const outer = syncHandling
  syncHandling = event
  try {
    return fn(event, arg)
  } finally {
    syncHandling = outer
  }
}

/** The event whose handler is running in the current async context, if any. */
export function currentEvent(): OmnibusEvent | undefined {
  return syncHandling ?? handling.getStore()
}

/** Defaults applied by {@link createEvent}. */
export interface EventDefaults {
  readonly source?: string
  readonly guarantee?: Guarantee
  /**
   * Publish time (epoch ms) for events without one, e.g. the time of a `publishBatch` call, so a
   * batch reads the clock once instead of once per event.
   */
  readonly time?: number
}

const DEFAULT_SOURCE = `omnibus:${process.pid}`

function checkHeaders(headers: unknown): Readonly<Record<string, string>> {
  if (headers === undefined) return NO_HEADERS
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new ConfigurationError('event headers must be an object of string values')
  }
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') {
      throw new ConfigurationError(`event header "${k}" must be a string, got ${typeof v}: convert it first`)
    }
    if (k.length === 0) throw new ConfigurationError('event header names must be non-empty')
    setHeader(out, k, v)
  }
  return out
}

/**
 * Turns caller input into a complete envelope: validates the topic (throws `InvalidTopicError`),
 * fills `id`, `time`, `source`, `guarantee`, and causation/correlation from the handler context.
 */
export function createEvent<T>(input: EventInput<T>, defaults: EventDefaults = {}): OmnibusEvent<T> {
  if (input === null || typeof input !== 'object') {
    throw new ConfigurationError('publish expects an event object { topic, data }')
  }
  const topic = validateTopic(input.topic)
  const guarantee = input.guarantee ?? defaults.guarantee ?? 'at-least-once'
  if (!GUARANTEES.includes(guarantee)) {
    throw new ConfigurationError(
      `unknown guarantee "${String(guarantee)}": use one of ${GUARANTEES.join(', ')}`,
    )
  }
  if (input.id !== undefined && (typeof input.id !== 'string' || input.id.length === 0)) {
    throw new ConfigurationError('event id must be a non-empty string')
  }
  if (input.time !== undefined && !Number.isFinite(input.time)) {
    throw new ConfigurationError('event time must be epoch milliseconds (a finite number)')
  }
  if (input.data === undefined) {
    throw new SerializationError(`event data for "${topic}" is undefined: send null for "no data"`)
  }
  const parent = syncHandling ?? handling.getStore()
  const now = input.time === undefined ? (defaults.time ?? Date.now()) : 0
  const correlationId = input.correlationId ?? parent?.correlationId ?? parent?.id
  const causationId = input.causationId ?? parent?.id
  let headers = checkHeaders(input.headers)
  // The trace continues through the handler: its event's W3C trace context goes on to what it
  // publishes, unless the caller (or an installed instrumentation) set a traceparent of its own.
  if (parent !== undefined) headers = inheritTraceContext(headers, parent.headers)
  const event: {
    -readonly [K in keyof OmnibusEvent<T>]: OmnibusEvent<T>[K]
  } = {
    id: input.id ?? (input.time === undefined ? uuidv7At(now) : newEventId()),
    topic,
    data: input.data,
    time: input.time ?? now,
    source: checkSource(input.source ?? defaults.source ?? DEFAULT_SOURCE),
    headers,
    guarantee,
  }
  if (correlationId !== undefined) event.correlationId = correlationId
  if (causationId !== undefined) event.causationId = causationId
  if (input.partitionKey !== undefined) event.partitionKey = String(input.partitionKey)
  if (input.subject !== undefined) event.subject = checkAttribute('subject', input.subject)
  if (input.dataSchema !== undefined) event.dataSchema = checkAttribute('dataschema', input.dataSchema)
  if (input.dataContentType !== undefined) {
    const contentType = checkAttribute('datacontenttype', input.dataContentType)
    // The type the data's form implies is what the wire says anyway: not kept, as on decode.
    if (contentType !== impliedContentType(input.data)) event.dataContentType = contentType
  }
  if (
    input.delayMs !== undefined ||
    input.deliverAt !== undefined ||
    input.ttlMs !== undefined ||
    input.expiresAt !== undefined
  ) {
    applySchedule(input, event)
  }
  return event
}

// `headers` is checkHeaders' result: the shared NO_HEADERS, or an object of this event's own.
function inheritTraceContext(
  headers: Readonly<Record<string, string>>,
  from: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  const traceparent = from.traceparent
  if (traceparent === undefined || headers.traceparent !== undefined) return headers
  const own: Record<string, string> = headers === NO_HEADERS ? {} : (headers as Record<string, string>)
  own.traceparent = traceparent
  const tracestate = from.tracestate
  if (tracestate !== undefined && own.tracestate === undefined) own.tracestate = tracestate
  return own
}

// The default source is a URI reference already; one set by the caller is checked once per event,
// which the last-seen cache makes free for a producer that keeps its source.
let lastSource = DEFAULT_SOURCE
function checkSource(source: unknown): string {
  if (source === lastSource) return source
  const problem = sourceProblem(source)
  if (problem !== undefined) throw new ConfigurationError(`event ${problem}`)
  lastSource = source as string
  return lastSource
}

function checkAttribute(name: 'subject' | 'dataschema' | 'datacontenttype', value: unknown): string {
  const problem = attributeProblem(name, value)
  if (problem !== undefined) throw new ConfigurationError(`event ${problem}`)
  return value as string
}
