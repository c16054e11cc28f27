import {
  CapabilityError,
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { classifyError } from '../src/errors.ts'

/** A fake of an ioredis ReplyError: an Error whose message starts with the Redis error prefix. */
function reply(message: string): Error {
  const e = new Error(message)
  e.name = 'ReplyError'
  return e
}

function socket(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:6379`), { code })
}

describe('classifyError', () => {
  it('maps socket failures to retryable ConnectionError', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH']) {
      const e = classifyError(socket(code), 'publish')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(true)
      expect(e.backend).toBe('redis')
      expect(e.message).toContain(code)
    }
  })

  it('treats an unknown host as not retryable', () => {
    const e = classifyError(socket('ENOTFOUND'))
    expect(e).toBeInstanceOf(ConnectionError)
    expect(e.retryable).toBe(false)
    expect(e.code).toBe('HOST_NOT_FOUND')
  })

  it('treats certificate failures as not retryable', () => {
    for (const code of ['DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED']) {
      const e = classifyError(socket(code), 'connect')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(false)
      expect(e.code).toBe('TLS_FAILED')
    }
  })

  it('maps a lost connection and exhausted retries to retryable ConnectionError', () => {
    const maxRetries = new Error('Reached the max retries per request limit (which is 20).')
    maxRetries.name = 'MaxRetriesPerRequestError'
    const aborted = new Error('Command aborted due to connection close')
    aborted.name = 'AbortError'
    const unnamed = new Error('Reached the max retries per request limit (which is 20).')
    for (const err of [maxRetries, aborted, unnamed, new Error('Connection is closed.')]) {
      const e = classifyError(err, 'publish')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(true)
      expect(e.code).toBe('CONNECTION_LOST')
    }
  })

  it('maps authentication failures to non-retryable ConnectionError without echoing secrets', () => {
    for (const msg of ['NOAUTH Authentication required.', 'WRONGPASS invalid username-password pair']) {
      const e = classifyError(reply(msg), 'connect')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(false)
      expect(e.code).toBe('AUTH_FAILED')
    }
    const perm = classifyError(reply("NOPERM this user has no permissions to run the 'xadd' command"))
    expect(perm).toBeInstanceOf(ConfigurationError)
    expect(perm.code).toBe('PERMISSION_DENIED')
  })

  it('marks transient server states retryable', () => {
    for (const msg of [
      'LOADING Redis is loading the dataset in memory',
      'BUSY Redis is busy running a script',
      'READONLY You cannot write against a read only replica.',
      'MASTERDOWN Link with MASTER is down',
    ]) {
      const e = classifyError(reply(msg), 'publish')
      expect(e).toBeInstanceOf(ConnectionError)
      expect(e.retryable).toBe(true)
    }
    const oom = classifyError(reply("OOM command not allowed when used memory > 'maxmemory'."), 'publish')
    expect(oom).toBeInstanceOf(PublishError)
    expect(oom.retryable).toBe(true)
    expect(oom.message).toMatch(/maxLen/)
  })

  it('refuses Cluster redirections with a configuration error', () => {
    for (const msg of [
      'MOVED 3999 127.0.0.1:6381',
      "CROSSSLOT Keys in request don't hash to the same slot",
    ]) {
      const e = classifyError(reply(msg))
      expect(e).toBeInstanceOf(ConfigurationError)
      expect(e.code).toBe('CLUSTER_UNSUPPORTED')
      expect(e.retryable).toBe(false)
    }
  })

  it('maps missing groups, key type conflicts and old servers', () => {
    const nogroup = classifyError(reply("NOGROUP No such key 'k' or consumer group 'g'"), 'subscribe')
    expect(nogroup).toBeInstanceOf(SubscriptionError)
    expect(nogroup.retryable).toBe(true)
    const wrongtype = classifyError(
      reply('WRONGTYPE Operation against a key holding the wrong kind of value'),
    )
    expect(wrongtype).toBeInstanceOf(ConfigurationError)
    expect(wrongtype.message).toMatch(/keyPrefix/)
    const old = classifyError(reply("ERR unknown command 'XAUTOCLAIM', with args beginning with:"))
    expect(old).toBeInstanceOf(CapabilityError)
    expect(old.message).toMatch(/6\.2/)
  })

  it('falls back to the class of the operation and keeps the cause', () => {
    const native = reply('ERR something odd')
    const pub = classifyError(native, 'publish')
    expect(pub).toBeInstanceOf(PublishError)
    expect(pub.cause).toBe(native)
    expect(classifyError(native, 'subscribe')).toBeInstanceOf(SubscriptionError)
    expect(classifyError(native, 'connect')).toBeInstanceOf(ConnectionError)
    const other = classifyError('weird')
    expect(other).toBeInstanceOf(OmnibusError)
    expect(other.code).toBe('REDIS_ERROR')
  })

  it('passes Omnibus errors through unchanged', () => {
    const e = new PublishError('already classified')
    expect(classifyError(e)).toBe(e)
  })
})
