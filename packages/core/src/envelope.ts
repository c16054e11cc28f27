/**
 * Building envelopes from caller input. Ids are UUIDv7 (time-ordered). When an event is published
 * from inside a handler, it inherits `causationId` (the handled event's id) and `correlationId`
 * through an AsyncLocalStorage scope that {@link runWithEventContext} opens around every handler.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { v7 as uuidv7 } from 'uuid'
import { ConfigurationError, SerializationError } from './errors.ts'
import { type EventInput, GUARANTEES, type Guarantee, type OmnibusEvent } from './protocol.ts'
import { validateTopic } from './topic.ts'

/** A new UUIDv7 string. */
export function newEventId(): string {
  return uuidv7()
}

const handling = new AsyncLocalStorage<OmnibusEvent>()

/** Runs `fn` with `event` as the event being handled, so events published inside inherit causation. */
export function runWithEventContext<R>(event: OmnibusEvent, fn: () => R): R {
  return handling.run(event, fn)
}

/** The event whose handler is running in the current async context, if any. */
export function currentEvent(): OmnibusEvent | undefined {
  return handling.getStore()
}

/** Defaults applied by {@link createEvent}. */
export interface EventDefaults {
  readonly source?: string
  readonly guarantee?: Guarantee
}

const DEFAULT_SOURCE = `omnibus:${process.pid}`

function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === undefined) return {}
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new ConfigurationError('event headers must be an object of string values')
  }
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') {
      throw new ConfigurationError(`event header "${k}" must be a string, got ${typeof v}: convert it first`)
    }
    if (k.length === 0) throw new ConfigurationError('event header names must be non-empty')
    out[k] = v
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
  const parent = handling.getStore()
  const correlationId = input.correlationId ?? parent?.correlationId ?? parent?.id
  const causationId = input.causationId ?? parent?.id
  const event: {
    -readonly [K in keyof OmnibusEvent<T>]: OmnibusEvent<T>[K]
  } = {
    id: input.id ?? uuidv7(),
    topic,
    data: input.data,
    time: input.time ?? Date.now(),
    source: input.source ?? defaults.source ?? DEFAULT_SOURCE,
    headers: checkHeaders(input.headers),
    guarantee,
  }
  if (correlationId !== undefined) event.correlationId = correlationId
  if (causationId !== undefined) event.causationId = causationId
  if (input.partitionKey !== undefined) event.partitionKey = String(input.partitionKey)
  return event
}
