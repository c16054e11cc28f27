import { ConfigurationError } from '@omnibus/core'
import { expectConfigurationError } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createRabbitMQBackend } from '../src/backend.ts'

describe('rabbitmq: unknown URL parameters and options', () => {
  it('rejects an unknown URL parameter, naming it, the known ones and the URL without secrets', () => {
    const e = expectConfigurationError(() =>
      backendFromUrl(new URL('amqp://app:hunter2@rabbit:5672/prod?hearbeat=5')),
    )
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('rabbitmq')
    expect(e.message).toContain('"hearbeat" (did you mean "heartbeat"?)')
    expect(e.message).toContain('amqp://app:***@rabbit:5672/prod?hearbeat=5')
    expect(e.message).toContain('heartbeat, frameMax, channelMax, locale')
    expect(e.message).not.toContain('hunter2')
  })

  it('applies the same rule to the url option', () => {
    const e = expectConfigurationError(() => createRabbitMQBackend({ url: 'amqps://h/v?foo=1' }))
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
  })

  it("keeps amqplib's standard parameters working", () => {
    const b = backendFromUrl(
      new URL('amqp://u:p@rabbit:5672/v?heartbeat=5&frameMax=131072&channelMax=100&locale=en_US'),
    )
    expect(b.name).toBe('rabbitmq')
  })

  it('rejects an unknown option with the same rule', () => {
    const e = expectConfigurationError(() => createRabbitMQBackend({ exchnge: 'x' } as never))
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.backend).toBe('rabbitmq')
    expect(e.message).toContain('unknown rabbitmq backend option "exchnge" (did you mean "exchange"?)')
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = createRabbitMQBackend()

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
