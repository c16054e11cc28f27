import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createKafkaBackend } from '../src/index.ts'

describe('kafka: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL without secrets', () => {
    const e = expectConfigurationError(() =>
      backendFromUrl(new URL('kafka://svc:hunter2@k1:9094?sasl=plain&partition=3')),
    )
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('kafka')
    expect(e.message).toContain('"partition" (did you mean "partitions"?)')
    expect(e.message).toContain('kafka://svc:***@k1:9094?sasl=plain&partition=3')
    expect(e.message).toContain('brokers, clientId, groupIdPrefix, partitions, replicationFactor, ssl, sasl')
    expect(e.message).not.toContain('hunter2')
  })

  it('keeps the known parameters working', () => {
    const b = backendFromUrl(
      new URL(
        'kafka://k1?brokers=k1:9092,k2:9092&clientId=a&groupIdPrefix=g&partitions=2&replicationFactor=1&ssl=false',
      ),
    )
    expect(b.describe().brokers).toEqual(['k1:9092', 'k2:9092'])
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() => createKafkaBackend({ clientID: 'a' } as never))
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.backend).toBe('kafka')
    expect(e.message).toContain('unknown kafka backend option "clientID" (did you mean "clientId"?)')
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = createKafkaBackend()

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
