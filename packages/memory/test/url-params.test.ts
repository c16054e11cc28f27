import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createMemoryBackend } from '../src/index.ts'

describe('memory: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL', () => {
    const e = expectConfigurationError(() => backendFromUrl(new URL('memory://jobs?queueCapasity=5')))
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('memory')
    expect(e.message).toContain('"queueCapasity" (did you mean "queueCapacity"?)')
    expect(e.message).toContain('memory://jobs?queueCapasity=5')
    expect(e.message).toContain('queueCapacity, maxPayloadBytes')
  })

  it('does not take options a URL cannot carry as parameters', () => {
    expect(expectConfigurationError(() => backendFromUrl(new URL('memory://jobs?logger=x'))).code).toBe(
      'UNKNOWN_URL_PARAMETER',
    )
  })

  it('keeps the known parameters working', () => {
    const b = backendFromUrl(new URL('memory://jobs?queueCapacity=5&validatePayloads=false&source=svc'))
    expect(b.options.queueCapacity).toBe(5)
    expect(b.options.validatePayloads).toBe(false)
    expect(b.options.source).toBe('svc')
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() => createMemoryBackend({ queueCapacty: 5 } as never))
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.message).toContain(
      'unknown memory backend option "queueCapacty" (did you mean "queueCapacity"?)',
    )
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = createMemoryBackend()
    await b.connect()
    const error = await b
      .subscribe('a.b', () => undefined, { concurency: 2 } as never)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    await b.disconnect()
    expect(error).toBeInstanceOf(ConfigurationError)
    expect((error as ConfigurationError).code).toBe('UNKNOWN_OPTION')
    expect((error as Error).message).toContain(
      'unknown subscribe option "concurency" (did you mean "concurrency"?)',
    )
  })
})
