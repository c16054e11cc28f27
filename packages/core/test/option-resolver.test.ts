import { describe, expect, it } from 'vitest'
import { ConfigurationError } from '../src/errors.ts'
import { DEFAULT_HEALTH_TIMEOUT_MS, timedHealthCheck } from '../src/kernel/health.ts'
import { OptionResolver, parseBoolean } from '../src/option-resolver.ts'

describe('OptionResolver', () => {
  it('takes the explicit option, then the environment variable, then the default', () => {
    const env = { OMNIBUS_X_BLOCK_MS: '250', OMNIBUS_X_EMPTY: '' }
    expect(new OptionResolver('x', { blockMs: 5 }, env).integer('blockMs', 'OMNIBUS_X_BLOCK_MS', 1000)).toBe(
      5,
    )
    expect(new OptionResolver('x', {}, env).integer('blockMs', 'OMNIBUS_X_BLOCK_MS', 1000)).toBe(250)
    expect(new OptionResolver('x', {}, env).integer('other', 'OMNIBUS_X_EMPTY', 1000)).toBe(1000)
    expect(new OptionResolver('x', {}, env).integer('other', undefined, 7)).toBe(7)
    expect(new OptionResolver('x', {}, env).string('url', 'OMNIBUS_X_URL', undefined)).toBeUndefined()
  })

  it('reads one set of boolean spellings from options, URLs and the environment', () => {
    for (const t of [true, 'true', 'TRUE', ' 1 ', 'yes', 'on']) expect(parseBoolean(t)).toBe(true)
    for (const f of [false, 'false', '0', 'No', 'off']) expect(parseBoolean(f)).toBe(false)
    for (const bad of ['y', 'enabled', 2, null]) expect(parseBoolean(bad)).toBeUndefined()
    expect(new OptionResolver('x', {}, { B: 'off' }).boolean('flag', 'B', true)).toBe(false)
  })

  it('one error format naming the field, the bad value and the environment variable it came from', () => {
    const fromEnv = () =>
      new OptionResolver('redis', {}, { OMNIBUS_REDIS_BLOCK_MS: 'soon' }).integer(
        'blockMs',
        'OMNIBUS_REDIS_BLOCK_MS',
        1,
        { min: 1 },
      )
    expect(fromEnv).toThrow(ConfigurationError)
    expect(fromEnv).toThrow(
      'redis backend option blockMs must be an integer >= 1, got "soon" (from the environment variable OMNIBUS_REDIS_BLOCK_MS)',
    )
    const explicit = () =>
      new OptionResolver('redis', { blockMs: 0 }).integer('blockMs', 'OMNIBUS_REDIS_BLOCK_MS', 1, { min: 1 })
    expect(explicit).toThrow('redis backend option blockMs must be an integer >= 1, got 0')
    expect(explicit).not.toThrow(/environment/)
    expect(() => new OptionResolver('k', { flag: 'maybe' }).boolean('flag', undefined, true)).toThrow(
      /k backend option flag must be true or false \(true, 1, yes, on, false, 0, no, off\), got "maybe"/,
    )
    expect(() =>
      new OptionResolver('k', { from: 'middle' }).oneOf('from', undefined, ['latest', 'earliest'], 'latest'),
    ).toThrow("k backend option from must be one of 'latest', 'earliest', got \"middle\"")
    expect(() => new OptionResolver('k', { ratio: 2 }).number('ratio', undefined, 1, { max: 1 })).toThrow(
      'k backend option ratio must be a number between 0 and 1, got 2',
    )
    expect(() =>
      new OptionResolver('k', { name: 'a b' }).string('name', undefined, undefined, {
        test: (v) => /^[a-z]+$/.test(v),
        expected: 'lower-case letters',
      }),
    ).toThrow('k backend option name must be lower-case letters, got "a b"')
  })
})

describe('timedHealthCheck', () => {
  it('healthy with the probe detail and a measured latency', async () => {
    const h = await timedHealthCheck('x', async () => 'PONG')
    expect(h.healthy).toBe(true)
    expect(h.detail).toBe('PONG')
    expect(h.latencyMs).toBeGreaterThanOrEqual(0)
  })

  it('unhealthy when the probe throws, naming the backend and the error', async () => {
    const h = await timedHealthCheck('x', async () => {
      throw new Error('ECONNREFUSED')
    })
    expect(h).toMatchObject({ healthy: false, detail: 'x: Error: ECONNREFUSED' })
  })

  it('unhealthy when the probe does not answer within the timeout', async () => {
    const started = Date.now()
    const h = await timedHealthCheck('x', () => new Promise(() => {}), 30)
    expect(Date.now() - started).toBeLessThan(DEFAULT_HEALTH_TIMEOUT_MS)
    expect(h).toMatchObject({ healthy: false, detail: 'x: no answer within 30 ms' })
  })
})
