import { ConfigurationError } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createKafkaBackend, resolveKafkaOptions } from '../src/index.ts'

describe('resolveKafkaOptions', () => {
  it('uses defaults when nothing is set', () => {
    const o = resolveKafkaOptions({}, {})
    expect(o.brokers).toEqual(['127.0.0.1:9092'])
    expect(o.clientId).toBe('omnibus')
    expect(o.autoCreateTopics).toBe(true)
    expect(o.numPartitions).toBe(3)
    expect(o.replicationFactor).toBe(-1)
    expect(o.maxWaitTimeMs).toBe(100)
    expect(o.clientLogLevel).toBe('nothing')
  })

  it('reads environment variables when the option is absent, and options win over them', () => {
    const env = {
      OMNIBUS_KAFKA_BROKERS: 'k1:9092, k2:9093',
      OMNIBUS_KAFKA_PARTITIONS: '6',
      OMNIBUS_KAFKA_AUTO_CREATE_TOPICS: 'false',
      OMNIBUS_KAFKA_SSL: 'true',
      OMNIBUS_KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      OMNIBUS_KAFKA_SASL_USERNAME: 'app',
      OMNIBUS_KAFKA_SASL_PASSWORD: 's3cret',
    }
    const o = resolveKafkaOptions({}, env)
    expect(o.brokers).toEqual(['k1:9092', 'k2:9093'])
    expect(o.numPartitions).toBe(6)
    expect(o.autoCreateTopics).toBe(false)
    expect(o.ssl).toBe(true)
    expect(o.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'app', password: 's3cret' })
    const explicit = resolveKafkaOptions({ brokers: ['x:1'], numPartitions: 1 }, env)
    expect(explicit.brokers).toEqual(['x:1'])
    expect(explicit.numPartitions).toBe(1)
  })

  it('rejects bad values with a message naming the field and the value', () => {
    expect(() => resolveKafkaOptions({ numPartitions: 0 }, {})).toThrow(
      'kafka backend option numPartitions must be an integer >= 1, got 0',
    )
    expect(() => resolveKafkaOptions({}, { OMNIBUS_KAFKA_PARTITIONS: 'many' })).toThrow(
      'kafka backend option numPartitions must be an integer >= 1, got "many" (from the environment variable OMNIBUS_KAFKA_PARTITIONS)',
    )
    expect(() => resolveKafkaOptions({}, { OMNIBUS_KAFKA_SSL: 'maybe' })).toThrow(
      /kafka backend option ssl must be true or false .*got "maybe" \(from the environment variable OMNIBUS_KAFKA_SSL\)/,
    )
    expect(resolveKafkaOptions({}, { OMNIBUS_KAFKA_AUTO_CREATE_TOPICS: 'off' }).autoCreateTopics).toBe(false)
    expect(() => resolveKafkaOptions({ brokers: ['not a host'] }, {})).toThrow(ConfigurationError)
    expect(() => resolveKafkaOptions({ heartbeatIntervalMs: 5000, sessionTimeoutMs: 3000 }, {})).toThrow(
      /heartbeatIntervalMs/,
    )
    expect(() => resolveKafkaOptions({ replicationFactor: 0 }, {})).toThrow(/replicationFactor/)
    expect(() => resolveKafkaOptions({ clientLogLevel: 'loud' as never }, {})).toThrow(/clientLogLevel/)
  })

  it('never echoes a SASL password in errors', () => {
    let message = ''
    try {
      resolveKafkaOptions({ sasl: { mechanism: 'plain', username: 'u', password: 42 as never } }, {})
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toMatch(/sasl.password/)
    expect(message).not.toContain('42')
  })
})

describe('createKafkaBackend / backendFromUrl', () => {
  it('declares its capabilities and hides secrets from describe()', () => {
    const b = createKafkaBackend({ sasl: { mechanism: 'plain', username: 'svc', password: 'hunter2' } })
    expect(b.name).toBe('kafka')
    expect(b.isConnected).toBe(false)
    expect(b.capabilities.guarantees).toEqual(['at-most-once', 'at-least-once', 'exactly-once'])
    expect(b.capabilities.persistent).toBe(true)
    expect(b.capabilities.maxPayloadBytes).toBe(1_000_000)
    expect(JSON.stringify(b.describe())).not.toContain('hunter2')
  })

  it('builds from a kafka:// URL', () => {
    const b = backendFromUrl(new URL('kafka://user:pw@k1:9094?sasl=plain&partitions=2&clientId=svc'))
    const d = b.describe()
    expect(d.brokers).toEqual(['k1:9094'])
    expect(d.numPartitions).toBe(2)
    expect(d.clientId).toBe('svc')
    expect(d.sasl).toBe('plain as user')
    const multi = backendFromUrl(new URL('kafka://k1?brokers=k1:9092,k2:9092'))
    expect(multi.describe().brokers).toEqual(['k1:9092', 'k2:9092'])
    expect(() => backendFromUrl(new URL('redis://x'))).toThrow(ConfigurationError)
  })

  it('refuses publish and subscribe before connect with a typed error', async () => {
    const b = createKafkaBackend()
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toThrow(/not connected/)
    await expect(b.subscribe('a.*', () => {})).rejects.toThrow(/not connected/)
  })
})
