import { CloudEvent, HTTP } from 'cloudevents'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { decodeEvent, encodeEvent, InvalidEnvelopeError } from '../src/codec.ts'
import { deadLetterInput } from '../src/delivery.ts'
import { createEvent } from '../src/envelope.ts'
import { CapabilityError } from '../src/errors.ts'
import { checkDelay, MAX_TIMER_DELAY_MS } from '../src/schedule.ts'
import { expectConfigurationError } from '../src/testing.ts'

const NOW = Date.UTC(2030, 0, 2, 3, 4, 5, 600)

describe('delayed and expiring envelopes', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(NOW)
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('turns delayMs and ttlMs into absolute times, the ttl counting from deliverAt', () => {
    const e = createEvent({ topic: 'a.b', data: 1, delayMs: 1500, ttlMs: 2000 })
    expect(e.deliverAt).toBe(NOW + 1500)
    expect(e.expiresAt).toBe(NOW + 3500)
    const now = createEvent({ topic: 'a.b', data: 1, ttlMs: 250 })
    expect(now.deliverAt).toBeUndefined()
    expect(now.expiresAt).toBe(NOW + 250)
  })

  it('takes deliverAt and expiresAt as epoch ms or Date, rounded up to whole milliseconds', () => {
    const e = createEvent({
      topic: 'a.b',
      data: 1,
      deliverAt: new Date(NOW + 60_000),
      expiresAt: NOW + 120_000.2,
    })
    expect(e.deliverAt).toBe(NOW + 60_000)
    expect(e.expiresAt).toBe(NOW + 120_001)
  })

  it('sets no deliverAt for a delay of 0 or a time already past, and keeps an expiry in the past', () => {
    expect(createEvent({ topic: 'a.b', data: 1, delayMs: 0 }).deliverAt).toBeUndefined()
    expect(createEvent({ topic: 'a.b', data: 1, deliverAt: NOW - 5 }).deliverAt).toBeUndefined()
    expect(createEvent({ topic: 'a.b', data: 1, expiresAt: NOW - 5 }).expiresAt).toBe(NOW - 5)
  })

  it('leaves events without schedule fields as they were', () => {
    const e = createEvent({ topic: 'a.b', data: 1 })
    expect('deliverAt' in e).toBe(false)
    expect('expiresAt' in e).toBe(false)
    expect(JSON.parse(encodeEvent(e))).not.toHaveProperty('deliverat')
  })

  it.each([
    [{ delayMs: -1 }, 'delayMs must be a number of milliseconds >= 0, got -1'],
    [{ delayMs: Number.NaN }, 'delayMs must be a number of milliseconds >= 0, got NaN'],
    [{ delayMs: '10' }, 'delayMs must be a number of milliseconds >= 0, got "10"'],
    [{ ttlMs: 0 }, 'ttlMs must be a number of milliseconds > 0, got 0'],
    [{ ttlMs: Number.POSITIVE_INFINITY }, 'ttlMs must be a number of milliseconds > 0, got Infinity'],
    [{ deliverAt: new Date('nope') }, 'deliverAt must be a Date or epoch milliseconds'],
    [{ expiresAt: '2030-01-01' }, 'expiresAt must be a Date or epoch milliseconds'],
    [{ expiresAt: 1e20 }, 'within the range of a Date'],
    [{ delayMs: 1, deliverAt: NOW + 5 }, 'both delayMs and deliverAt: give one of them'],
    [{ ttlMs: 1, expiresAt: NOW + 5 }, 'both ttlMs and expiresAt: give one of them'],
    [{ delayMs: 1000, expiresAt: NOW + 1000 }, 'is not after its deliverAt'],
    [{ delayMs: 1e16 }, 'beyond the range of a Date'],
  ])('refuses %j with a ConfigurationError saying what to fix', (fields, message) => {
    const error = expectConfigurationError(() =>
      createEvent({ topic: 'a.b', data: 1, ...(fields as Record<string, unknown>) }),
    )
    expect(error.message).toContain(message)
  })

  it('round-trips deliverAt and expiresAt through the codec as RFC 3339 extensions', () => {
    const e = createEvent({ topic: 'a.b', data: { x: 1 }, delayMs: 30_000, ttlMs: 5000 })
    const json = encodeEvent(e)
    const doc = JSON.parse(json) as Record<string, unknown>
    expect(doc.deliverat).toBe(new Date(NOW + 30_000).toISOString())
    expect(doc.expiresat).toBe(new Date(NOW + 35_000).toISOString())
    // Valid for the official SDK, which checks extension names and values strictly.
    expect(new CloudEvent(doc, true).validate()).toBe(true)
    const back = decodeEvent(json)
    expect(back).toEqual(e)
    expect(back.headers).toEqual({})
  })

  it('reads deliverat and expiresat set by a foreign CloudEvents producer', () => {
    const foreign = new CloudEvent({
      specversion: '1.0',
      id: 'ext-1',
      source: 'https://example.com/producer',
      type: 'orders.created',
      data: { n: 1 },
      deliverat: '2030-01-02T03:05:00Z',
      expiresat: '2030-01-02T04:00:00.250+01:00',
      tenant: 'acme',
    })
    const message = HTTP.structured(foreign)
    const event = decodeEvent(message.body as string)
    expect(event.deliverAt).toBe(Date.UTC(2030, 0, 2, 3, 5, 0))
    expect(event.expiresAt).toBe(Date.UTC(2030, 0, 2, 3, 0, 0, 250))
    expect(event.headers).toEqual({ tenant: 'acme' })
  })

  it('refuses a document whose deliverat or expiresat is not a timestamp (dead-lettered with the reason)', () => {
    const base = { specversion: '1.0', id: 'x', source: 's', type: 'a.b', data: null }
    expect(() => decodeEvent(JSON.stringify({ ...base, deliverat: 'tomorrow' }))).toThrow(
      /deliverat "tomorrow" is not an RFC 3339 timestamp/,
    )
    expect(() => decodeEvent(JSON.stringify({ ...base, expiresat: 1893553445000 }))).toThrow(
      InvalidEnvelopeError,
    )
  })

  it('keeps a user header named like the extensions apart from them', () => {
    const e = createEvent({ topic: 'a.b', data: 1, headers: { expiresat: 'mine', deliverat: 'too' } })
    const back = decodeEvent(encodeEvent(e))
    expect(back.headers).toEqual({ expiresat: 'mine', deliverat: 'too' })
    expect(back.expiresAt).toBeUndefined()
    expect(back.deliverAt).toBeUndefined()
  })

  it('gives a dead letter no schedule: it is neither held nor expired again', () => {
    const e = createEvent({ topic: 'a.b', data: 1, expiresAt: NOW - 1 })
    const letter = createEvent(
      deadLetterInput(e, 'omnibus.deadletter', {
        reason: 'expired',
        group: undefined,
        attempts: 0,
        firstFailureAt: NOW,
        lastFailureAt: NOW,
        backend: 'test',
      }),
    )
    expect(letter.expiresAt).toBeUndefined()
    expect(letter.deliverAt).toBeUndefined()
  })
})

describe('checkDelay', () => {
  it('lets through events without a delay, and delays up to maxDelayMs', () => {
    const at = Date.now()
    checkDelay(createEvent({ topic: 'a.b', data: 1 }), false, 'test')
    checkDelay(createEvent({ topic: 'a.b', data: 1, deliverAt: at + 60_000 }), { maxDelayMs: 60_000 }, 'test')
    checkDelay(
      createEvent({ topic: 'a.b', data: 1, delayMs: MAX_TIMER_DELAY_MS }),
      { maxDelayMs: MAX_TIMER_DELAY_MS },
      'test',
    )
  })

  it('refuses a longer delay, or any delay where the backend has none, with a CapabilityError', () => {
    // A second over the limit: the delay is measured when checked, so a slow machine takes some off.
    const long = createEvent({ topic: 'a.b', data: 1, delayMs: 61_000 })
    expect(() => checkDelay(long, { maxDelayMs: 60_000 }, 'test')).toThrow(CapabilityError)
    expect(() => checkDelay(long, { maxDelayMs: 60_000 }, 'test')).toThrow(
      /longer than the test backend can hold \(capabilities.delay.maxDelayMs = 60000 ms\)/,
    )
    expect(() => checkDelay(long, false, 'test')).toThrow(/cannot delay events/)
  })
})
