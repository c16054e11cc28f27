import { InvalidTopicError, matchTopic } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { bindingKey, delayBucket, groupQueueName, supportsQuorumQueues } from '../src/topology.ts'

/** What a RabbitMQ topic exchange does with a binding key: `*` one word, `#` zero or more. */
function amqpMatch(key: string, routingKey: string): boolean {
  const k = key.split('.')
  const r = routingKey.split('.')
  const go = (i: number, j: number): boolean => {
    if (i === k.length) return j === r.length
    if (k[i] === '#') return go(i + 1, j) || (j < r.length && go(i, j + 1))
    if (j === r.length) return false
    return (k[i] === '*' || k[i] === r[j]) && go(i + 1, j + 1)
  }
  return go(0, 0)
}

describe('bindingKey', () => {
  it.each([
    ['tool.start', 'tool.start'],
    ['tool.*', 'tool.*'],
    ['*.error', '*.error'],
    ['**', '#'],
    ['**.error', '#.error'],
    ['agent.**', 'agent.#'],
    ['a.**.**.b', 'a.#.b'],
    ['agent.*.task', 'agent.*.task'],
    ['tool.read_*', 'tool.*'],
    ['{start,end}.x', '*.x'],
    ['a.b?c.**', 'a.*.#'],
    ['*.**', '*.#'],
  ])('%s → %s', (pattern, key) => {
    expect(bindingKey(pattern)).toBe(key)
  })

  it('rejects invalid patterns with the core error', () => {
    expect(() => bindingKey('a..b')).toThrow(InvalidTopicError)
    expect(() => bindingKey('a.**x')).toThrow(/\*\*/)
  })

  // The binding may be broader than the pattern (the matcher filters), never narrower: an
  // event the pattern matches must reach the queue.
  const patterns = [
    'tool.*',
    '**',
    '**.error',
    'a.**',
    '*.**',
    'a.*.c',
    'read_*.x',
    '{a,b}.**',
    'a?.*',
    'x.**.y',
  ]
  const topics = [
    'a',
    'b',
    'x',
    'error',
    'tool.start',
    'a.b',
    'a.b.c',
    'ab.c',
    'read_x.x',
    'b.q.z',
    'x.y',
    'x.1.2.y',
    'db.error',
    'a.b.error',
  ]
  for (const pattern of patterns) {
    it(`never narrower than the pattern: ${pattern}`, () => {
      const key = bindingKey(pattern)
      for (const topic of topics) {
        if (matchTopic(pattern, topic))
          expect(amqpMatch(key, topic), `${pattern} (${key}) on ${topic}`).toBe(true)
      }
    })
  }
})

describe('queue names', () => {
  it('one queue per (group, pattern), stable across processes', () => {
    const a = groupQueueName('omnibus', 'billing', 'order.*')
    expect(a).toBe(groupQueueName('omnibus', 'billing', 'order.*'))
    expect(a).not.toBe(groupQueueName('omnibus', 'billing', 'order.**'))
    expect(a).not.toBe(groupQueueName('omnibus', 'shipping', 'order.*'))
    expect(a).toMatch(/^omnibus\.group\.billing\.[0-9a-f]{12}$/)
  })

  it('delay buckets are never shorter and at most 10% longer', () => {
    for (const ms of [0, 1, 57, 99, 100, 101, 1234, 9999, 10_001, 29_999, 87_654]) {
      const b = delayBucket(ms)
      expect(b).toBeGreaterThanOrEqual(Math.max(1, ms))
      expect(b).toBeLessThanOrEqual(Math.max(1, Math.ceil(ms * 1.1)))
    }
    expect(delayBucket(1234)).toBe(1300)
    expect(delayBucket(80)).toBe(80)
  })
})

describe('supportsQuorumQueues', () => {
  it('RabbitMQ from 3.8 on; other brokers and unknown versions are not second-guessed', () => {
    expect(supportsQuorumQueues({ product: 'RabbitMQ', version: '3.10.8' })).toBe(true)
    expect(supportsQuorumQueues({ product: 'RabbitMQ', version: '4.2.0' })).toBe(true)
    expect(supportsQuorumQueues({ product: 'RabbitMQ', version: '3.8.0' })).toBe(true)
    expect(supportsQuorumQueues({ product: 'RabbitMQ', version: '3.7.28' })).toBe(false)
    expect(supportsQuorumQueues({ product: 'RabbitMQ', version: 'dev' })).toBe(true)
    expect(supportsQuorumQueues({ product: 'LavinMQ', version: '1.0' })).toBe(true)
    expect(supportsQuorumQueues(undefined)).toBe(true)
  })
})
