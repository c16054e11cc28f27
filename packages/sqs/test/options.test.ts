import { ConfigurationError } from '@omnibus/core'
import { MemoryDedupeStore } from '@omnibus/core/backend'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createSqsBackend } from '../src/backend.ts'
import { deduplicationId, groupQueueName, messageGroupId } from '../src/directory.ts'
import { resolveSqsOptions } from '../src/options.ts'

describe('resolveSqsOptions', () => {
  it('applies option, then env var, then default', () => {
    const d = resolveSqsOptions({}, {})
    expect(d.region).toBe('us-east-1')
    expect(d.queuePrefix).toBe('omnibus')
    expect(d.fifo).toBe(false)
    expect(d.maxPayloadBytes).toBe(262_144)
    expect(d.waitTimeSeconds).toBe(20)
    const env = {
      OMNIBUS_SQS_REGION: 'eu-west-1',
      OMNIBUS_SQS_FIFO: 'true',
      OMNIBUS_SQS_WAIT_TIME_SECONDS: '3',
    }
    const e = resolveSqsOptions({}, env)
    expect([e.region, e.fifo, e.waitTimeSeconds]).toEqual(['eu-west-1', true, 3])
    const o = resolveSqsOptions({ region: 'ap-south-1', fifo: false, waitTimeSeconds: 7 }, env)
    expect([o.region, o.fifo, o.waitTimeSeconds]).toEqual(['ap-south-1', false, 7])
    expect(resolveSqsOptions({}, { AWS_REGION: 'us-west-2' }).region).toBe('us-west-2')
  })

  it('names the field and the bad value', () => {
    expect(() => resolveSqsOptions({ waitTimeSeconds: 21 }, {})).toThrow(/waitTimeSeconds.*21/)
    expect(() => resolveSqsOptions({}, { OMNIBUS_SQS_PREFETCH: 'lots' })).toThrow(
      'sqs backend option prefetch must be an integer between 0 and 1000, got "lots" (from the environment variable OMNIBUS_SQS_PREFETCH)',
    )
    expect(() => resolveSqsOptions({ queuePrefix: 'has space' }, {})).toThrow(/queuePrefix.*"has space"/)
    expect(() => resolveSqsOptions({ endpoint: 'localhost:9324' }, {})).toThrow(ConfigurationError)
    expect(() => resolveSqsOptions({}, { OMNIBUS_SQS_FIFO: 'maybe' })).toThrow(/fifo.*"maybe"/)
    expect(() => resolveSqsOptions({ orphanAfterMs: 500 }, {})).toThrow(
      'sqs backend option orphanAfterMs must be 0 (never) or an integer between 1000 and 604800000, got 500',
    )
  })

  it('reads booleans in the one spelling every backend accepts', () => {
    expect(resolveSqsOptions({}, { OMNIBUS_SQS_FIFO: 'yes' }).fifo).toBe(true)
    expect(resolveSqsOptions({}, { OMNIBUS_SQS_FIFO: 'off' }).fifo).toBe(false)
    expect(backendFromUrl(new URL('sqs://127.0.0.1:9324?fifo=on')).capabilities.orderedPerKey).toBe(true)
  })

  it('offers exactly-once only with a dedupe store that implements the claim protocol', () => {
    const plain = createSqsBackend({ endpoint: 'http://127.0.0.1:9324' })
    expect(plain.capabilities.guarantees).toEqual(['at-most-once', 'at-least-once'])
    const shared = createSqsBackend({
      endpoint: 'http://127.0.0.1:9324',
      dedupeStore: new MemoryDedupeStore(),
    })
    expect(shared.capabilities.guarantees).toContain('exactly-once')
    // A check-then-record store cannot keep two members from running one id at once.
    const hasAdd = { has: () => false, add: () => {} }
    expect(() => resolveSqsOptions({ dedupeStore: hasAdd as never }, {})).toThrow(
      'sqs backend option dedupeStore must be a DedupeStore shared by every member (claim, commit and release methods), got an object',
    )
  })

  it('never echoes credentials', () => {
    let message = ''
    try {
      resolveSqsOptions({ endpoint: 'http://AKIAXXX:s3cr3t@127.0.0.1:9324' }, {})
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toMatch(/credentials/)
    expect(message).not.toContain('s3cr3t')
    const b = createSqsBackend({
      endpoint: 'http://127.0.0.1:9324',
      credentials: { accessKeyId: 'AKIAXXX', secretAccessKey: 's3cr3t' },
    })
    expect(b.describe()).not.toContain('s3cr3t')
    expect(b.describe()).not.toContain('AKIAXXX')
  })

  it('uses dummy credentials only for a loopback endpoint without AWS credentials in the env', () => {
    expect(resolveSqsOptions({ endpoint: 'http://127.0.0.1:9324' }, {}).credentials).toBeDefined()
    expect(
      resolveSqsOptions({ endpoint: 'http://127.0.0.1:9324' }, { AWS_ACCESS_KEY_ID: 'x' }).credentials,
    ).toBe(undefined)
    expect(resolveSqsOptions({ endpoint: 'https://sqs.eu-west-1.amazonaws.com' }, {}).credentials).toBe(
      undefined,
    )
  })
})

describe('backendFromUrl', () => {
  it('maps host, tls, region, prefix and fifo', () => {
    const b = backendFromUrl(new URL('sqs://127.0.0.1:9324?region=eu-west-1&prefix=app&fifo=true'))
    expect(b.describe()).toContain('http://127.0.0.1:9324')
    expect(b.describe()).toContain('"app"')
    expect(b.capabilities.orderedPerKey).toBe(true)
    expect(backendFromUrl(new URL('sqs://aws?region=eu-west-1')).describe()).toContain('eu-west-1')
    expect(backendFromUrl(new URL('sqs://sqs.local:443?tls=true')).describe()).toContain('https://sqs.local')
  })

  it('refuses credentials in the URL and bad parameters', () => {
    expect(() => backendFromUrl(new URL('sqs://key:secret@127.0.0.1:9324'))).toThrow(ConfigurationError)
    expect(() => backendFromUrl(new URL('sqs://127.0.0.1:9324?fifo=perhaps'))).toThrow(/fifo/)
  })
})

describe('queue naming', () => {
  it('gives a group one stable, valid queue name per pattern', () => {
    const a = groupQueueName('omnibus', 'billing.workers', 'orders.*', false)
    expect(a).toBe(groupQueueName('omnibus', 'billing.workers', 'orders.*', false))
    expect(a).not.toBe(groupQueueName('omnibus', 'billing.workers', 'orders.**', false))
    expect(a).toMatch(/^[A-Za-z0-9_-]{1,80}$/)
    const long = groupQueueName('a'.repeat(20), 'g'.repeat(200), 'x.**', true)
    expect(long.length).toBeLessThanOrEqual(80)
    expect(long.endsWith('.fifo')).toBe(true)
  })

  it('keeps SQS-legal ids readable and hashes the rest', () => {
    expect(deduplicationId('01920000-aaaa', 1700000000000)).toBe('01920000-aaaa@1700000000000')
    expect(deduplicationId('01920000-aaaa', 1700000000001)).not.toBe(
      deduplicationId('01920000-aaaa', 1700000000000),
    )
    expect(deduplicationId('x'.repeat(200), 1)).toMatch(/^[0-9a-f]{64}$/)
    expect(deduplicationId('héllo', 1)).toMatch(/^[0-9a-f]{64}$/)
    expect(messageGroupId('user-1', 'id')).toBe('user-1')
    expect(messageGroupId(undefined, 'id-7')).toBe('id-7')
  })
})
