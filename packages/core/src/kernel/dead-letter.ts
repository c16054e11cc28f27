/**
 * The dead-letter envelope (the original event plus diagnostics headers) and its way back to the
 * original topic (redrive).
 */
import { asSource } from '../codec.ts'
import { ConfigurationError } from '../errors.ts'
import { setHeader } from '../headers.ts'
import type { EventInput, OmnibusEvent } from '../protocol.ts'

/** Diagnostics recorded on a dead-lettered event. */
export interface DeadLetterDiagnostics {
  readonly reason: string
  readonly group: string | undefined
  readonly attempts: number
  readonly firstFailureAt: number
  readonly lastFailureAt: number
  readonly error?: unknown
  readonly backend: string
}

/** Header names of the dead-letter diagnostics. */
export const DLQ_HEADERS = {
  originalTopic: 'omnibus-dlq-original-topic',
  originalId: 'omnibus-dlq-original-id',
  group: 'omnibus-dlq-group',
  attempts: 'omnibus-dlq-attempts',
  firstFailure: 'omnibus-dlq-first-failure',
  lastFailure: 'omnibus-dlq-last-failure',
  errorName: 'omnibus-dlq-error-name',
  errorMessage: 'omnibus-dlq-error-message',
  reason: 'omnibus-dlq-reason',
  backend: 'omnibus-dlq-backend',
} as const

/**
 * The reason (`DLQ_HEADERS.reason`) of a dead letter whose event reached a subscription after its
 * `expiresAt`: no handler ran for it.
 */
export const EXPIRED_REASON = 'expired'

/**
 * The event to publish on the dead-letter topic: the original data, headers, key and correlation,
 * plus diagnostics headers. It gets an id derived from the original so a re-sent dead letter
 * dedupes, and `causationId` = the original id.
 */
export function deadLetterInput(
  event: OmnibusEvent,
  deadLetterTopic: string,
  d: DeadLetterDiagnostics,
): EventInput {
  const err = d.error
  const headers: Record<string, string> = {
    ...event.headers,
    [DLQ_HEADERS.originalTopic]: event.topic,
    [DLQ_HEADERS.originalId]: event.id,
    [DLQ_HEADERS.attempts]: String(d.attempts),
    [DLQ_HEADERS.firstFailure]: new Date(d.firstFailureAt).toISOString(),
    [DLQ_HEADERS.lastFailure]: new Date(d.lastFailureAt).toISOString(),
    [DLQ_HEADERS.reason]: d.reason.slice(0, 2000),
    [DLQ_HEADERS.backend]: d.backend,
  }
  if (d.group !== undefined) headers[DLQ_HEADERS.group] = d.group
  if (err instanceof Error) {
    headers[DLQ_HEADERS.errorName] = err.name
    headers[DLQ_HEADERS.errorMessage] = err.message.slice(0, 2000)
  } else if (err !== undefined) {
    headers[DLQ_HEADERS.errorName] = typeof err
    headers[DLQ_HEADERS.errorMessage] = printable(err).slice(0, 2000)
  }
  const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
    topic: deadLetterTopic,
    data: event.data,
    id: `${event.id}.dlq.${d.group ?? 'broadcast'}`,
    time: Date.now(),
    source: asSource(event.source),
    headers,
    causationId: event.id,
    guarantee: 'at-least-once',
  }
  if (event.correlationId !== undefined) input.correlationId = event.correlationId
  if (event.partitionKey !== undefined) input.partitionKey = event.partitionKey
  copyAttributes(event, input)
  return input
}

// What a handler threw, as text, even when it cannot be turned into a string (`Object.create(null)`).
function printable(value: unknown): string {
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

// The CloudEvents attributes describe the data, which a dead letter and a redrive carry as is.
function copyAttributes(from: OmnibusEvent, to: { -readonly [K in keyof EventInput]: EventInput[K] }): void {
  if (from.subject !== undefined) to.subject = from.subject
  if (from.dataSchema !== undefined) to.dataSchema = from.dataSchema
  if (from.dataContentType !== undefined) to.dataContentType = from.dataContentType
}

/**
 * The event that re-publishes a dead letter to its original topic: original id, data and user
 * headers, diagnostics stripped. Throws `ConfigurationError` if `dlq` is not a dead letter.
 */
export function redriveInput(dlq: OmnibusEvent): EventInput {
  const topic = dlq.headers[DLQ_HEADERS.originalTopic]
  const id = dlq.headers[DLQ_HEADERS.originalId]
  if (topic === undefined || id === undefined) {
    throw new ConfigurationError(
      `event ${dlq.id} on "${dlq.topic}" has no dead-letter headers: nothing to redrive`,
    )
  }
  const dlqNames = new Set<string>(Object.values(DLQ_HEADERS))
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(dlq.headers)) if (!dlqNames.has(k)) setHeader(headers, k, v)
  const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
    topic,
    data: dlq.data,
    id,
    source: asSource(dlq.source),
    headers,
    guarantee: 'at-least-once',
  }
  if (dlq.correlationId !== undefined) input.correlationId = dlq.correlationId
  if (dlq.partitionKey !== undefined) input.partitionKey = dlq.partitionKey
  copyAttributes(dlq, input)
  return input
}
