import { CapabilityError, ConfigurationError, NotConnectedError } from '@omnibus/core'
import { MemoryDedupeStore } from '@omnibus/core/backend'
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
    expect(resolveOptions({}, {}).groupQueueExpiresMs).toBeUndefined()
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS: '60000' }).groupQueueExpiresMs).toBe(
      60_000,
    )
    expect(() => resolveOptions({ groupQueueExpiresMs: 5 }, {})).toThrow(
      'rabbitmq backend option groupQueueExpiresMs must be an integer >= 1000, got 5',
    )
    expect(resolveOptions({}, { OMNIBUS_RABBITMQ_QUEUE_TYPE: 'classic' }).queueType).toBe('classic')
  })

  it('bad values name the field and the value, never the password', () => {
    expect(() => resolveOptions({ publishWindow: 0 }, {})).toThrow(
      'rabbitmq backend option publishWindow must be an integer >= 1, got 0',
    )
    expect(() => resolveOptions({}, { OMNIBUS_RABBITMQ_HEARTBEAT_S: 'soon' })).toThrow(
      'rabbitmq backend option heartbeatSeconds must be an integer >= 0, got "soon" (from the environment variable OMNIBUS_RABBITMQ_HEARTBEAT_S)',
    )
    expect(() => resolveOptions({ queueType: 'stream' as 'quorum' }, {})).toThrow(
      "rabbitmq backend option queueType must be one of 'quorum', 'classic', got \"stream\"",
    )
    expect(() => resolveOptions({ queueType: 'stream' as 'quorum' }, {})).toThrow(ConfigurationError)
    expect(() => resolveOptions({ exchange: 'bad exchange' }, {})).toThrow(
      `rabbitmq backend option exchange must be 1-100 letters, digits, '_', '.', ':' or '-', got "bad exchange"`,
    )
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

  it('maxRedeliveries is retired: set explicitly or from the environment, it names retry.maxAttempts', () => {
    expect(() => resolveOptions({ maxRedeliveries: 3 }, {})).toThrow(
      /^rabbitmq backend option maxRedeliveries must be left unset: every delivery now counts against the subscribe option retry\.maxAttempts .*, got 3$/,
    )
    expect(() => resolveOptions({}, { OMNIBUS_RABBITMQ_MAX_REDELIVERIES: '10' })).toThrow(
      /retry\.maxAttempts.*got "10" \(from the environment variable OMNIBUS_RABBITMQ_MAX_REDELIVERIES\)$/,
    )
    expect(() => resolveOptions({ maxRedeliveries: 3 }, {})).toThrow(ConfigurationError)
  })

  it('dedupeStore must implement the claim protocol', () => {
    const hasAdd = { has: () => false, add: () => {} }
    expect(() => resolveOptions({ dedupeStore: hasAdd as never }, {})).toThrow(
      /dedupeStore must be a DedupeStore with claim, commit and release methods .*got an object/,
    )
    const store = new MemoryDedupeStore()
    expect(resolveOptions({ dedupeStore: store }, {}).dedupeStore).toBe(store)
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
    const withStore = createRabbitMQBackend({ dedupeStore: new MemoryDedupeStore() })
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
