import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
  TimeoutError,
} from '@omnibus/core'
import kafkajs from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { classifyError } from '../src/index.ts'

const {
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSNonRetriableError,
  KafkaJSSASLAuthenticationError,
  KafkaJSTimeout,
} = kafkajs

type ErrorCtor = new (message: string) => Error
const SaslError = KafkaJSSASLAuthenticationError as unknown as ErrorCtor
const NonRetriableError = KafkaJSNonRetriableError as unknown as ErrorCtor

function protocolError(type: string, retriable: boolean): Error {
  return new KafkaJSProtocolError({ message: `broker said ${type}`, type, code: 1, retriable } as never)
}

describe('classifyError', () => {
  it('maps a refused connection to a retryable ConnectionError naming the endpoint', () => {
    const native = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1', {
      broker: '127.0.0.1:1',
      code: 'ECONNREFUSED',
    } as never)
    const e = classifyError(native, 'connect', '127.0.0.1:1')
    expect(e).toBeInstanceOf(ConnectionError)
    expect(e.retryable).toBe(true)
    expect(e.backend).toBe('kafka')
    expect(e.message).toContain('127.0.0.1:1')
    expect(e.cause).toBe(native)
  })

  it('looks through "retries exceeded" to the connection failure underneath', () => {
    const inner = new KafkaJSConnectionError('Connection timeout', { broker: 'b:9092' } as never)
    const outer = new KafkaJSNumberOfRetriesExceeded(inner, { retryCount: 5, retryTime: 100 } as never)
    const e = classifyError(outer, 'publish', 'b:9092')
    expect(e).toBeInstanceOf(ConnectionError)
    expect(e.retryable).toBe(true)
  })

  it('maps a raw socket error code to ConnectionError', () => {
    const native = Object.assign(new Error('connect ECONNRESET'), { code: 'ECONNRESET' })
    expect(classifyError(native, 'subscribe')).toBeInstanceOf(ConnectionError)
  })

  it('maps authorization and topic-policy errors to a non-retryable ConfigurationError', () => {
    for (const type of ['TOPIC_AUTHORIZATION_FAILED', 'POLICY_VIOLATION', 'INVALID_REPLICATION_FACTOR']) {
      const e = classifyError(protocolError(type, false), 'admin')
      expect(e, type).toBeInstanceOf(ConfigurationError)
      expect(e.retryable).toBe(false)
      expect(e.code).toBe(type)
    }
  })

  it('maps SASL failures to ConfigurationError without echoing credentials', () => {
    const e = classifyError(new SaslError('SASL PLAIN authentication failed'), 'connect')
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.code).toBe('SASL_AUTHENTICATION_FAILED')
  })

  it('maps MESSAGE_TOO_LARGE to a non-retryable PublishError', () => {
    const e = classifyError(protocolError('MESSAGE_TOO_LARGE', false), 'publish')
    expect(e).toBeInstanceOf(PublishError)
    expect(e.code).toBe('PAYLOAD_TOO_LARGE')
    expect(e.retryable).toBe(false)
  })

  it("follows kafkajs' retriable flag for other protocol errors, by operation", () => {
    const leader = classifyError(protocolError('NOT_LEADER_FOR_PARTITION', true), 'publish')
    expect(leader).toBeInstanceOf(PublishError)
    expect(leader.retryable).toBe(true)
    expect(leader.code).toBe('NOT_LEADER_FOR_PARTITION')
    const corrupt = classifyError(protocolError('CORRUPT_MESSAGE', false), 'subscribe')
    expect(corrupt).toBeInstanceOf(SubscriptionError)
    expect(corrupt.retryable).toBe(false)
    const wrapped = new KafkaJSNumberOfRetriesExceeded(protocolError('REQUEST_TIMED_OUT', true), {
      retryCount: 5,
      retryTime: 1,
    } as never)
    expect(classifyError(wrapped, 'publish').retryable).toBe(true)
    expect(classifyError(new NonRetriableError('nope'), 'publish').retryable).toBe(false)
  })

  it('treats idempotent producer-session errors as retryable (the next publish gets a new session)', () => {
    const e = classifyError(protocolError('OUT_OF_ORDER_SEQUENCE_NUMBER', false), 'publish')
    expect(e).toBeInstanceOf(PublishError)
    expect(e.retryable).toBe(true)
  })

  it('maps client timeouts to TimeoutError', () => {
    expect(
      classifyError(new (KafkaJSTimeout as unknown as ErrorCtor)('took too long'), 'admin'),
    ).toBeInstanceOf(TimeoutError)
  })

  it('passes Omnibus errors through and wraps non-errors', () => {
    const own = new PublishError('already classified')
    expect(classifyError(own)).toBe(own)
    const e = classifyError('weird', 'admin')
    expect(e).toBeInstanceOf(OmnibusError)
    expect(e.message).toContain('weird')
  })
})
