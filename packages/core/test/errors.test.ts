import { describe, expect, it } from 'vitest'
import {
  CapabilityError,
  ConfigurationError,
  ConnectionError,
  InvalidTopicError,
  isRetryable,
  NotConnectedError,
  OmnibusError,
  PayloadTooLargeError,
  PublishError,
  SerializationError,
  SubscriptionError,
  TimeoutError,
} from '../src/errors.ts'

describe('the error taxonomy', () => {
  const cases: Array<[OmnibusError, string, string, boolean]> = [
    [new ConnectionError('down'), 'ConnectionError', 'CONNECTION_FAILED', true],
    [new PublishError('refused'), 'PublishError', 'PUBLISH_FAILED', false],
    [new SubscriptionError('lost'), 'SubscriptionError', 'SUBSCRIPTION_FAILED', false],
    [new SerializationError('bad'), 'SerializationError', 'SERIALIZATION_FAILED', false],
    [new ConfigurationError('fix it'), 'ConfigurationError', 'INVALID_CONFIGURATION', false],
    [new CapabilityError('cannot'), 'CapabilityError', 'CAPABILITY_UNSUPPORTED', false],
    [new PayloadTooLargeError(10, 5), 'PayloadTooLargeError', 'PAYLOAD_TOO_LARGE', false],
    [new InvalidTopicError('a b', 'bad topic'), 'InvalidTopicError', 'INVALID_TOPIC', false],
    [new TimeoutError('slow'), 'TimeoutError', 'TIMEOUT', true],
    [new NotConnectedError('redis', 'publish'), 'NotConnectedError', 'NOT_CONNECTED', false],
  ]

  for (const [error, name, code, retryable] of cases) {
    it(`${name}: an OmnibusError with code ${code}, retryable ${retryable}`, () => {
      expect(error).toBeInstanceOf(Error)
      expect(error).toBeInstanceOf(OmnibusError)
      expect(error.name).toBe(name)
      expect(error.code).toBe(code)
      expect(error.retryable).toBe(retryable)
      expect(isRetryable(error)).toBe(retryable)
      expect(error.stack).toContain(name)
    })
  }

  it('keeps backend and cause, and lets options override the defaults', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })
    const e = new ConnectionError('cannot reach redis at 127.0.0.1:6379', {
      backend: 'redis',
      cause,
      code: 'CONNECTION_REFUSED',
      retryable: false,
    })
    expect(e.backend).toBe('redis')
    expect(e.cause).toBe(cause)
    expect(e.code).toBe('CONNECTION_REFUSED')
    expect(e.retryable).toBe(false)
    expect(new OmnibusError('plain')).toMatchObject({
      code: 'OMNIBUS_ERROR',
      backend: undefined,
      retryable: false,
    })
    expect('cause' in new OmnibusError('no cause')).toBe(false)
  })

  it('messages say what to do next', () => {
    expect(new NotConnectedError('kafka', 'publish').message).toBe(
      'cannot publish: the kafka backend is not connected; call connect() first',
    )
    const big = new PayloadTooLargeError(2048, 1024, { backend: 'sqs' })
    expect(big.message).toMatch(/2048 bytes, over the sqs limit of 1024 bytes: send a smaller payload/)
    expect(big).toMatchObject({ sizeBytes: 2048, limitBytes: 1024, backend: 'sqs' })
    expect(new InvalidTopicError('a..b', 'x').topic).toBe('a..b')
  })

  it('isRetryable is false for anything that is not an Omnibus error', () => {
    expect(isRetryable(new Error('x'))).toBe(false)
    expect(isRetryable({ retryable: true })).toBe(false)
    expect(isRetryable(undefined)).toBe(false)
  })
})
