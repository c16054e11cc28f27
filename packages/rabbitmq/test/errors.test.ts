import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { classifyError, replyCodeOf } from '../src/errors.ts'

function sysError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5672`), { code })
}

function amqpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { code })
}

describe('classifyError', () => {
  it('socket failures are retryable ConnectionErrors naming the endpoint', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE']) {
      const e = classifyError(sysError(code), 'connect', 'amqp://guest:***@127.0.0.1:5999')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(true)
      expect(e.code).toBe(`CONNECTION_${code}`)
      expect(e.backend).toBe('rabbitmq')
      expect(e.message).toContain('127.0.0.1:5999')
      expect(e.cause).toBeInstanceOf(Error)
    }
  })

  it('a refused handshake (403 in the message) is a ConfigurationError, not retried', () => {
    const native = new Error(
      'Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"',
    )
    expect(replyCodeOf(native)).toBe(403)
    const e = classifyError(native, 'connect', 'amqp://bob:***@h:5672')
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.retryable).toBe(false)
    expect(e.code).toBe('AMQP_ACCESS_REFUSED')
    expect(e.message).toMatch(/user, password, vhost/)
  })

  it('a vhost the broker will not open is a ConfigurationError', () => {
    const e = classifyError(
      new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'),
      'connect',
      'amqp://h/v',
    )
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.code).toBe('AMQP_NOT_ALLOWED')
    expect(e.message).toMatch(/vhost/)
  })

  it('broker shutdown (320) and resource errors are retryable', () => {
    const forced = classifyError(amqpError(320, 'Connection closed: 320 (CONNECTION-FORCED)'))
    expect(forced).toBeInstanceOf(ConnectionError)
    expect(forced.retryable).toBe(true)
    expect(classifyError(amqpError(506, 'x')).retryable).toBe(true)
    expect(classifyError(amqpError(405, 'RESOURCE_LOCKED')).retryable).toBe(true)
  })

  it('406 PRECONDITION-FAILED depends on the operation and is not retryable', () => {
    const native = amqpError(
      406,
      'Channel closed by server: 406 (PRECONDITION-FAILED) with message "inequivalent arg \'x-queue-type\'"',
    )
    const sub = classifyError(native, 'subscribe')
    expect(sub).toBeInstanceOf(SubscriptionError)
    expect(sub.retryable).toBe(false)
    expect(sub.message).toMatch(/other arguments/)
    const pub = classifyError(native, 'publish')
    expect(pub).toBeInstanceOf(PublishError)
    expect(pub.retryable).toBe(false)
    expect(classifyError(amqpError(404, 'NOT_FOUND'), 'subscribe')).toBeInstanceOf(SubscriptionError)
    const refused = classifyError(amqpError(540, 'not supported by quorum queues'), 'subscribe')
    expect(refused).toBeInstanceOf(SubscriptionError)
    expect(refused.retryable).toBe(false)
    expect(refused.code).toBe('AMQP_NOT_IMPLEMENTED')
  })

  it('311 CONTENT-TOO-LARGE is a non-retryable PublishError', () => {
    const e = classifyError(amqpError(311, 'too large'), 'publish')
    expect(e).toBeInstanceOf(PublishError)
    expect(e.retryable).toBe(false)
  })

  it('operations on a closed channel are retryable connection losses', () => {
    const illegal = Object.assign(new Error('Channel closed'), { name: 'IllegalOperationError' })
    const e = classifyError(illegal, 'publish')
    expect(e).toBeInstanceOf(ConnectionError)
    expect(e.code).toBe('CONNECTION_LOST')
    expect(e.retryable).toBe(true)
    expect(classifyError(new Error('Heartbeat timeout')).code).toBe('CONNECTION_LOST')
  })

  it('TLS failures are configuration errors', () => {
    const e = classifyError(sysError('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'connect', 'amqps://h:5671')
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.code).toBe('TLS_FAILED')
  })

  it('a local RangeError from publish (oversized headers) is not retryable', () => {
    const e = classifyError(new RangeError('headers table exceeds 64 KiB'), 'publish')
    expect(e).toBeInstanceOf(PublishError)
    expect(e.retryable).toBe(false)
  })

  it('passes Omnibus errors through and wraps unknown values', () => {
    const mine = new PublishError('already classified')
    expect(classifyError(mine)).toBe(mine)
    const other = classifyError('weird', 'other')
    expect(other).toBeInstanceOf(OmnibusError)
    expect(other.message).toContain('weird')
    expect(classifyError(new Error('odd'), 'connect')).toBeInstanceOf(ConnectionError)
  })
})
