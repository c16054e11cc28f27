/**
 * Delayed and expiring events: turning `delayMs`/`deliverAt`/`ttlMs`/`expiresAt` of a publish into
 * the envelope's absolute `deliverAt`/`expiresAt`, and the publish-side check of a delay against
 * the backend's `capabilities.delay`.
 */
import { CapabilityError, ConfigurationError } from './errors.ts'
import type { DelayCapability, EventInput, OmnibusEvent } from './protocol.ts'

/**
 * The longest wait of one Node.js timer (2^31 - 1 ms, about 24.8 days): a longer `setTimeout`
 * fires at once. The kernel never asks an adapter to wait longer in one `redeliver`, and backends
 * whose hold is a timer declare it as their `maxDelayMs`.
 */
export const MAX_TIMER_DELAY_MS = 2_147_483_647

/** An epoch-millisecond time as ISO 8601 for messages; the number itself when no date has it. */
export function isoTime(ms: number): string {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString()
}

// The range of a JavaScript Date: a time outside it cannot be written as an RFC 3339 timestamp.
const MAX_DATE_MS = 8.64e15

function absoluteTime(name: 'deliverAt' | 'expiresAt', value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : value
  if (typeof ms !== 'number' || !Number.isFinite(ms) || Math.abs(ms) > MAX_DATE_MS) {
    throw new ConfigurationError(
      `event ${name} must be a Date or epoch milliseconds (a finite number within the range of a Date), got ${describe(value)}`,
    )
  }
  return Math.ceil(ms)
}

function duration(name: 'delayMs' | 'ttlMs', value: unknown): number {
  const bound = name === 'delayMs' ? '>= 0' : '> 0'
  if (typeof value !== 'number' || !Number.isFinite(value) || (name === 'delayMs' ? value < 0 : value <= 0)) {
    throw new ConfigurationError(
      `event ${name} must be a number of milliseconds ${bound}, got ${describe(value)}`,
    )
  }
  return value
}

function describe(value: unknown): string {
  if (value instanceof Date) return 'an invalid Date'
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 100))
  return String(value)
}

/** An envelope under construction. */
type Writable = { -readonly [K in keyof OmnibusEvent]: OmnibusEvent[K] }

/**
 * Sets `event.deliverAt` and `event.expiresAt` from the input's schedule fields: `delayMs` counts
 * from now; `ttlMs` from when the event becomes deliverable (now, or `deliverAt`). A `deliverAt`
 * not in the future sets nothing (the event is deliverable at once). Throws `ConfigurationError`
 * for a bad value, for both fields of a pair, and for an expiry not after the delivery time.
 */
export function applySchedule(input: EventInput, event: Writable): void {
  const { delayMs, deliverAt, ttlMs, expiresAt } = input
  if (delayMs !== undefined && deliverAt !== undefined) {
    throw new ConfigurationError('event sets both delayMs and deliverAt: give one of them')
  }
  if (ttlMs !== undefined && expiresAt !== undefined) {
    throw new ConfigurationError('event sets both ttlMs and expiresAt: give one of them')
  }
  const now = Date.now()
  let at: number | undefined
  if (delayMs !== undefined) at = Math.ceil(now + duration('delayMs', delayMs))
  else if (deliverAt !== undefined) at = absoluteTime('deliverAt', deliverAt)
  if (at !== undefined && at > MAX_DATE_MS) {
    throw new ConfigurationError(`event delayMs ${String(delayMs)} ends beyond the range of a Date`)
  }
  const held = at !== undefined && at > now
  if (held) event.deliverAt = at as number
  let expires: number | undefined
  if (ttlMs !== undefined) {
    expires = Math.ceil((held ? (at as number) : now) + duration('ttlMs', ttlMs))
    if (expires > MAX_DATE_MS) {
      throw new ConfigurationError(`event ttlMs ${String(ttlMs)} ends beyond the range of a Date`)
    }
  } else if (expiresAt !== undefined) {
    expires = absoluteTime('expiresAt', expiresAt)
    if (held && expires <= (at as number)) {
      throw new ConfigurationError(
        `event expiresAt (${new Date(expires).toISOString()}) is not after its deliverAt ` +
          `(${new Date(at as number).toISOString()}): it would expire before it could be delivered; ` +
          'move expiresAt later or use ttlMs, which counts from deliverAt',
      )
    }
  }
  if (expires !== undefined) event.expiresAt = expires
}

/**
 * Throws `CapabilityError` when `event` asks for a longer delay than `delay` allows (or for any
 * delay when the backend has none). Every backend's `publish` and `publishBatch` call it on the
 * envelope before anything is sent, so a refused event is never published (and in a batch only
 * its own entry fails).
 */
export function checkDelay(event: OmnibusEvent, delay: DelayCapability | false, backend: string): void {
  const at = event.deliverAt
  if (at === undefined) return
  const delayMs = at - Date.now()
  if (delay === false) {
    if (delayMs <= 0) return
    throw new CapabilityError(
      `the ${backend} backend cannot delay events (capabilities.delay is false): publish without delayMs/deliverAt`,
      { backend },
    )
  }
  if (delayMs > delay.maxDelayMs) {
    throw new CapabilityError(
      `a delay of ${delayMs} ms on "${event.topic}" is longer than the ${backend} backend can hold ` +
        `(capabilities.delay.maxDelayMs = ${delay.maxDelayMs} ms): publish it later, or with a shorter delay`,
      { backend },
    )
  }
}
