import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createSqsBackend } from '../src/backend.ts'

describe('sqs: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL', () => {
    const e = expectConfigurationError(() => backendFromUrl(new URL('sqs://aws?regoin=eu-west-1')))
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('sqs')
    expect(e.message).toContain('"regoin" (did you mean "region"?)')
    expect(e.message).toContain('sqs://aws?regoin=eu-west-1')
    expect(e.message).toContain('region, prefix, fifo, tls')
  })

  it('keeps the known parameters working', () => {
    const b = backendFromUrl(
      new URL('sqs://127.0.0.1:9324?region=eu-west-1&prefix=shop&fifo=false&tls=false'),
    )
    expect(b.name).toBe('sqs')
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() => createSqsBackend({ queuePrefx: 'x' } as never))
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.backend).toBe('sqs')
    expect(e.message).toContain('unknown sqs backend option "queuePrefx" (did you mean "queuePrefix"?)')
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = createSqsBackend({ endpoint: 'http://127.0.0.1:1', region: 'us-east-1' })

    const error = await b
      .subscribe('a.b', () => undefined, { concurency: 2 } as never)
      .then(
        () => undefined,
        (e: unknown) => e,
      )

    expect(error).toBeInstanceOf(ConfigurationError)
    expect((error as ConfigurationError).code).toBe('UNKNOWN_OPTION')
    expect((error as Error).message).toContain(
      'unknown subscribe option "concurency" (did you mean "concurrency"?)',
    )
  })
})
