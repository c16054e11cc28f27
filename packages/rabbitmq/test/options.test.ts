import { CapabilityError, ConfigurationError, NotConnectedError } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createRabbitMQBackend } from '../src/backend.ts'
import { resolveOptions } from '../src/options.ts'

describe('options', () => {
  it('option, then env var, then default', () => {
    expect(resolveOptions({}, {}).url).toBe('amqp://guest:guest@127.0.0.1:5672')
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_URL: 'amqp://h:1' }).url).toBe('amqp://h:1')
    expect(resolveOptions({ url: 'amqp://o:2' }, { OMNIBUS_RABBITMQ_URL: 'amqp://h:1' }).url).toBe(
      'amqp://o:2',
    )
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_PUBLISH_WINDOW: '64' }).publishWindow).toBe(64)
    expect(resolveOptions({}, {}).queueType).toBe('quorum')
    expect(resolveOptions({}, {}).maxRedeliveries).toBe(10)
    expect(resolveOptions({}, {}).groupQueueExpiresMs).toBeUndefined()
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS: '60000' }).groupQueueExpiresMs).toBe(
      60_000,
    )
    expect(() => resolveOptions({ groupQueueExpiresMs: 5 }, {})).toThrow(
      /groupQueueExpiresMs must be an integer >= 1000, got 5/,
    )
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_MAX_REDELIVERIES: '0' }).maxRedeliveries).toBe(0)
    expect(() => resolveOptions({ maxRedeliveries: -1 }, {})).toThrow(
      /maxRedeliveries must be an integer >= 0, got -1/,
    )
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_QUEUE_TYPE: 'classic' }).queueType).toBe('classic')
  })

  it('bad values name the field and the value, never the password', () => {
    expect(() => resolveOptions({ publishWindow: 0 }, {})).toThrow(
      /publishWindow must be an integer >= 1, got 0/,
    )
    expect(() => resolveOptions({}, { OMNIBUS_RABBITMQ_HEARTBEAT_S: 'soon' })).toThrow(
      /heartbeatSeconds \(from OMNIBUS_RABBITMQ_HEARTBEAT_S\).*"soon"/,
    )
    expect(() => resolveOptions({ queueType: 'stream' as 'quorum' }, {})).toThrow(ConfigurationError)
    expect(() => resolveOptions({ exchange: 'bad exchange' }, {})).toThrow(/exchange/)
    let message = ''
    try {
      resolveOptions({ url: 'redis://user:hunter2@h:6379' }, {})
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toMatch(/amqp:\/\//)
    expect(message).not.toContain('hunter2')
  })

  it('rejects something that is not an amqplib connection', () => {
    expect(() => resolveOptions({ connection: {} as never }, {})).toThrow(/amqplib connection/)
  })
})

describe('backend object', () => {
  it('declares what RabbitMQ gives; exactly-once only with a shared dedupe store', async () => {
    const b = createRabbitMQBackend()
    expect(b.name).toBe('rabbitmq')
    expect(b.capabilities.guarantees).toEqual(['at-most-once', 'at-least-once'])
    expect(b.capabilities.groups).toBe(true)
    expect(b.capabilities.replay).toBe(false)
    expect(b.isConnected).toBe(false)
    await expect(b.subscribe('a.b', () => {}, { guarantee: 'exactly-once' })).rejects.toBeInstanceOf(
      CapabilityError,
    )
    await expect(b.subscribe('a.b', () => {}, { group: 'g', from: 'earliest' })).rejects.toBeInstanceOf(
      CapabilityError,
    )
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toBeInstanceOf(NotConnectedError)
    const withStore = createRabbitMQBackend({ dedupeStore: { has: () => false, add: () => {} } })
    expect(withStore.capabilities.guarantees).toContain('exactly-once')
  })

  it('backendFromUrl keeps the URL and its vhost', async () => {
    const b = backendFromUrl(new URL('amqp://u:p@127.0.0.1:1/%2Fv'))
    expect(b.name).toBe('rabbitmq')
    // Nothing listens on port 1: a fast, typed failure naming the endpoint without the password.
    const error = await b.connect().then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error?.name).toBe('ConnectionError')
    expect(error?.message).toContain('127.0.0.1:1')
    expect(error?.message).not.toContain(':p@')
  })
})
