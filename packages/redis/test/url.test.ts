import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createRedisBackend } from '../src/backend.ts'
import { classifyError } from '../src/errors.ts'
import { resolveRedisOptions } from '../src/options.ts'

describe('redis: the database path of the URL', () => {
  it.each(['/abc', '/1.5', '/-1', '/0/extra', '/%201', '/%zz', '/0x1', '/1e2', '/1234567890'])(
    'rejects %j at option resolution, naming the URL without its password',
    (path) => {
      const url = `redis://:hunter2@127.0.0.1:6391${path}`
      for (const make of [
        () => createRedisBackend({ url }),
        () => backendFromUrl(new URL(url)),
        () => resolveRedisOptions({}, { OMNIBUS_REDIS_URL: url }),
      ]) {
        const e = expectConfigurationError(make)
        expect(e.code).toBe('INVALID_DATABASE')
        expect(e.retryable).toBe(false)
        expect(e.message).toContain(`redis://:***@127.0.0.1:6391${path}`)
        expect(e.message).toContain('/0')
        expect(e.message).toContain('/15')
        expect(e.message).not.toContain('hunter2')
      }
    },
  )

  it.each(['', '/', '/0', '/3', '/15', '/16'])(
    'accepts %j (the server decides how many databases it has)',
    (path) => {
      const b = createRedisBackend({ url: `redis://127.0.0.1:6379${path}` })
      expect(b.name).toBe('redis')
    },
  )

  it('rejects a non-integer db in redisOptions too', () => {
    const e = expectConfigurationError(() =>
      createRedisBackend({ redisOptions: { db: 'two' as unknown as number } }),
    )
    expect(e.code).toBe('INVALID_DATABASE')
  })

  it("classifies the server's out-of-range answer to SELECT as a ConfigurationError", () => {
    const reply = Object.assign(new Error('ERR DB index is out of range'), { name: 'ReplyError' })
    const e = classifyError(reply, 'connect')
    expect(e).toBeInstanceOf(ConfigurationError)
    expect(e.retryable).toBe(false)
    expect(e.code).toBe('INVALID_DATABASE')
    expect(e.message).toMatch(/databases/)
  })
})

describe('redis: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL without secrets', () => {
    for (const make of [
      (url: string) => backendFromUrl(new URL(url)),
      (url: string) => createRedisBackend({ url }),
    ]) {
      const e = expectConfigurationError(() => make('redis://:hunter2@127.0.0.1:6379/2?keyprefix=a:'))
      expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
      expect(e.backend).toBe('redis')
      expect(e.message).toContain('"keyprefix" (did you mean "keyPrefix"?)')
      expect(e.message).toContain('redis://:***@127.0.0.1:6379/2?keyprefix=a')
      expect(e.message).toContain('keyPrefix, maxLen')
      expect(e.message).not.toContain('hunter2')
    }
  })

  it('reads keyPrefix and maxLen from the url option too, and never hands them to ioredis', () => {
    const o = resolveRedisOptions({ url: 'redis://127.0.0.1:6379/1?keyPrefix=app:&maxLen=50' }, {})
    expect(o.keyPrefix).toBe('app:')
    expect(o.maxLen).toBe(50)
    expect(o.url).toBe('redis://127.0.0.1:6379/1')
    const explicit = resolveRedisOptions({ url: 'redis://h?keyPrefix=app:', keyPrefix: 'mine:' }, {})
    expect(explicit.keyPrefix).toBe('mine:')
    const b = backendFromUrl(new URL('redis://127.0.0.1:6379?keyPrefix=q:&maxLen=100'), { keyPrefix: 'o:' })
    expect(b.keys.prefix).toBe('o:')
    expect(b.describe()).toContain('maxLen~100')
  })

  it('names the URL parameter when its value is bad', () => {
    const e = expectConfigurationError(() => backendFromUrl(new URL('redis://h?maxLen=lots')))
    expect(e.message).toContain('maxLen')
    expect(e.message).toContain('lots')
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() => createRedisBackend({ keyPrefx: 'a:' } as never))
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.backend).toBe('redis')
    expect(e.message).toContain('unknown redis backend option "keyPrefx" (did you mean "keyPrefix"?)')
  })
})
