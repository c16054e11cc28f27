import { SQSServiceException } from '@aws-sdk/client-sqs'
import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
  TimeoutError,
} from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { classifyError, isQueueMissing } from '../src/errors.ts'

function awsError(
  name: string,
  extra: { fault?: 'client' | 'server'; status?: number; retryable?: { throttling?: boolean } } = {},
): SQSServiceException {
  const e = new SQSServiceException({
    name,
    $fault: extra.fault ?? 'client',
    $metadata: { httpStatusCode: extra.status ?? 400 },
    message: `${name} happened`,
  })
  if (extra.retryable !== undefined) Object.assign(e, { $retryable: extra.retryable })
  return e
}

function sysError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:9324`), { code })
}

describe('classifyError', () => {
  it('maps socket errors to a retryable ConnectionError naming the endpoint', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND']) {
      const e = classifyError(sysError(code), 'publish', 'SQS at http://127.0.0.1:9324')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(true)
      expect(e.code).toBe(code)
      expect(e.message).toContain('http://127.0.0.1:9324')
      expect(e.backend).toBe('sqs')
    }
  })

  it('finds a socket error wrapped in cause or AggregateError', () => {
    const wrapped = new Error('request failed', { cause: new AggregateError([sysError('ECONNREFUSED')]) })
    expect(classifyError(wrapped, 'receive')).toBeInstanceOf(ConnectionError)
  })

  it('treats throttling ($retryable.throttling or a throttling code) as retryable, by operation', () => {
    const t1 = classifyError(awsError('SomethingElse', { retryable: { throttling: true } }), 'publish')
    expect(t1).toBeInstanceOf(PublishError)
    expect(t1.retryable).toBe(true)
    expect(t1.code).toBe('THROTTLED')
    const t2 = classifyError(awsError('RequestThrottled'), 'receive')
    expect(t2).toBeInstanceOf(SubscriptionError)
    expect(t2.retryable).toBe(true)
  })

  it('treats server faults and $retryable as retryable, client faults as not', () => {
    const server = classifyError(awsError('InternalError', { fault: 'server', status: 500 }), 'publish')
    expect(server.retryable).toBe(true)
    expect(server.code).toBe('SERVER_ERROR')
    const flagged = classifyError(awsError('Weird', { retryable: {} }), 'publish')
    expect(flagged.retryable).toBe(true)
    const client = classifyError(awsError('KmsDisabled'), 'publish')
    expect(client).toBeInstanceOf(PublishError)
    expect(client.retryable).toBe(false)
  })

  it('maps bad credentials to a non-retryable ConnectionError', () => {
    const e = classifyError(awsError('InvalidClientTokenId', { status: 403 }), 'connect')
    expect(e).toBeInstanceOf(ConnectionError)
    expect(e.retryable).toBe(false)
    expect(e.code).toBe('AUTH_FAILED')
  })

  it('maps invalid requests to ConfigurationError', () => {
    const e = classifyError(awsError('InvalidParameterValue'), 'subscribe')
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.retryable).toBe(false)
  })

  it('recognises a missing queue in both protocols', () => {
    expect(isQueueMissing(awsError('QueueDoesNotExist'))).toBe(true)
    expect(
      isQueueMissing(Object.assign(new Error('x'), { Code: 'AWS.SimpleQueueService.NonExistentQueue' })),
    ).toBe(true)
    expect(isQueueMissing(awsError('InvalidParameterValue'))).toBe(false)
    expect(isQueueMissing(undefined)).toBe(false)
    const e = classifyError(awsError('QueueDoesNotExist'), 'receive')
    expect(e).toBeInstanceOf(SubscriptionError)
    expect(e.code).toBe('QUEUE_MISSING')
  })

  it('maps SDK timeouts to TimeoutError', () => {
    const e = classifyError(Object.assign(new Error('socket timed out'), { name: 'TimeoutError' }), 'publish')
    expect(e).toBeInstanceOf(TimeoutError)
    expect(e.retryable).toBe(true)
  })

  it('passes Omnibus errors through unchanged and wraps the rest with the cause', () => {
    const own = new ConfigurationError('bad')
    expect(classifyError(own, 'publish')).toBe(own)
    const raw = new Error('boom')
    const e = classifyError(raw, 'admin')
    expect(e).toBeInstanceOf(OmnibusError)
    expect(e.cause).toBe(raw)
    expect(e.retryable).toBe(false)
  })
})
