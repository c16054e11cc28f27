import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createSqliteBackend } from '../src/index.ts'

describe('sqlite: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL', () => {
    const e = expectConfigurationError(() => backendFromUrl(new URL('sqlite://./events.db?busyTimeout=10')))
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('sqlite')
    expect(e.message).toContain('"busyTimeout" (did you mean "busyTimeoutMs"?)')
    expect(e.message).toContain('sqlite://./events.db?busyTimeout=10')
    expect(e.message).toContain('busyTimeoutMs, pollIntervalMs')
  })

  it('keeps the known parameters working', () => {
    const b = backendFromUrl(new URL('sqlite://memory?busyTimeoutMs=100&synchronous=full&ioThread=false'))
    expect(b.name).toBe('sqlite')
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() =>
      createSqliteBackend({ path: ':memory:', pollInterval: 5 } as never),
    )
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.message).toContain(
      'unknown sqlite backend option "pollInterval" (did you mean "pollIntervalMs"?)',
    )
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = createSqliteBackend({ path: ':memory:' })
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
