import { ConfigurationError } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createRedisBackend } from '../src/backend.ts'
import { EVENT_FIELD, keyMap, startIdAt } from '../src/keys.ts'
import { describeEndpoint, resolveRedisOptions } from '../src/options.ts'

describe('key mapping', () => {
  it('maps topics, registry and processed-id records under the prefix', () => {
    const k = keyMap('app:')
    expect(k.stream('agent.task.done')).toBe('app:stream:agent.task.done')
    expect(k.topicOf('app:stream:agent.task.done')).toBe('agent.task.done')
    expect(k.topicOf('other:stream:x')).toBeUndefined()
    expect(k.topics).toBe('app:topics')
    expect(k.topicsChannel).toBe('app:topics')
    expect(k.processed('billing', 'id-1')).toBe('app:eo:billing:id-1')
    expect(EVENT_FIELD).toBe('event')
  })

  it('starts latest subscriptions just before the server millisecond of subscribe', () => {
    expect(startIdAt(1_700_000_000_123)).toBe('1700000000122-18446744073709551615')
    expect(startIdAt(0)).toBe('0-18446744073709551615')
  })
})

describe('options', () => {
  it('applies defaults', () => {
    const o = resolveRedisOptions({}, {})
    expect(o.url).toBe('redis://127.0.0.1:6379')
    expect(o.keyPrefix).toBe('omnibus:')
    expect(o.maxLen).toBeUndefined()
    expect(o.visibilityTimeoutMs).toBe(30_000)
    expect(o.batchSize).toBe(100)
    expect(o.maxPayloadBytes).toBe(1_048_576)
    expect(o.tls).toBeUndefined()
  })

  it('reads environment variables when the option is absent, options win', () => {
    const env = {
      OMNIBUS_REDIS_URL: 'redis://10.0.0.1:6380/2',
      OMNIBUS_REDIS_KEY_PREFIX: 'x:',
      OMNIBUS_REDIS_MAX_LEN: '5000',
      OMNIBUS_REDIS_BATCH_SIZE: '50',
      OMNIBUS_REDIS_PASSWORD: 'from-env',
    }
    const o = resolveRedisOptions({}, env)
    expect(o.url).toBe('redis://10.0.0.1:6380/2')
    expect(o.keyPrefix).toBe('x:')
    expect(o.maxLen).toBe(5000)
    expect(o.batchSize).toBe(50)
    expect(o.password).toBe('from-env')
    const p = resolveRedisOptions({ keyPrefix: 'y:', maxLen: 10, batchSize: 7 }, env)
    expect(p.keyPrefix).toBe('y:')
    expect(p.maxLen).toBe(10)
    expect(p.batchSize).toBe(7)
  })

  it('rejects bad values naming the field and the value', () => {
    expect(() => resolveRedisOptions({ batchSize: 0 }, {})).toThrow(
      'redis backend option batchSize must be an integer >= 1, got 0',
    )
    expect(() => resolveRedisOptions({ maxLen: 1.5 }, {})).toThrow(
      'redis backend option maxLen must be an integer >= 1, got 1.5',
    )
    expect(() => resolveRedisOptions({}, { OMNIBUS_REDIS_BLOCK_MS: 'soon' })).toThrow(
      'redis backend option blockMs must be an integer >= 10, got "soon" (from the environment variable OMNIBUS_REDIS_BLOCK_MS)',
    )
    expect(() => resolveRedisOptions({ url: 'http://x' }, {})).toThrow(ConfigurationError)
    expect(() => resolveRedisOptions({ url: 'http://x' }, {})).toThrow(/redis:\/\/ or rediss:\/\//)
    expect(() => resolveRedisOptions({ keyPrefix: 'a b' }, {})).toThrow(
      'redis backend option keyPrefix must be up to 100 characters without spaces, glob characters or braces, got "a b"',
    )
  })

  it('never echoes the password of a bad URL', () => {
    let message = ''
    try {
      resolveRedisOptions({ url: 'memcache://user:s3cret@host:1' }, {})
    } catch (e) {
      message = (e as Error).message
    }
    expect(message).toMatch(/scheme/)
    expect(message).not.toContain('s3cret')
  })

  it('turns rediss:// into TLS, and tls: true into default TLS options', () => {
    expect(resolveRedisOptions({ url: 'rediss://h:6380' }, {}).tls).toEqual({})
    expect(resolveRedisOptions({ tls: true }, {}).tls).toEqual({})
    expect(resolveRedisOptions({ tls: { servername: 'h' } }, {}).tls).toEqual({ servername: 'h' })
    expect(resolveRedisOptions({ url: 'rediss://h:6380', tls: false }, {}).tls).toBeUndefined()
  })

  it('refuses a Cluster client and a client with an ioredis keyPrefix', () => {
    const cluster = { isCluster: true, call() {} } as never
    expect(() => resolveRedisOptions({ client: cluster }, {})).toThrow(/Cluster is not supported/)
    const prefixed = { call() {}, options: { keyPrefix: 'p:' } } as never
    expect(() => resolveRedisOptions({ client: prefixed }, {})).toThrow(/keyPrefix/)
  })

  it('describes the endpoint without credentials', () => {
    const o = resolveRedisOptions({ url: 'redis://alice:hunter2@cache.local:6390/3' }, {})
    expect(describeEndpoint(o)).toBe('redis://cache.local:6390/3')
    const b = createRedisBackend({ url: 'redis://alice:hunter2@cache.local:6390/3' })
    expect(b.describe()).not.toContain('hunter2')
    expect(b.describe()).toContain('cache.local:6390')
  })

  it('builds a backend from a URL with query options', () => {
    const b = backendFromUrl(new URL('redis://127.0.0.1:6379?keyPrefix=q:&maxLen=100'))
    expect(b.keys.prefix).toBe('q:')
    expect(b.describe()).toContain('maxLen~100')
    expect(b.name).toBe('redis')
    expect(b.isConnected).toBe(false)
    expect(b.capabilities.guarantees).toEqual(['at-most-once', 'at-least-once', 'exactly-once'])
  })

  it('refuses to publish before connect', async () => {
    const b = createRedisBackend({})
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toThrow(/connect\(\) first/)
  })
})
