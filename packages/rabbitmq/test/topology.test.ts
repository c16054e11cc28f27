import { InvalidTopicError, matchTopic } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import {
  bindingKey,
  delayBucket,
  groupQueueName,
  SCHEDULE_LEVELS,
  SCHEDULE_MAX_DELAY_MS,
  scheduleBitHeader,
  scheduleRoute,
  supportsQuorumQueues,
} from '../src/topology.ts'

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

describe('scheduleRoute', () => {
  /** Follows a route down the levels as the broker does: the waits of the levels whose digit is 1. */
  function waits(delayMs: number): number[] {
    const route = scheduleRoute(delayMs)
    if (route === undefined) return []
    const out: number[] = []
    for (let k = route.level; k >= 0; k--) {
      const digit = route.headers[scheduleBitHeader(k)]
      expect(digit === '0' || digit === '1', `digit of level ${k}`).toBe(true)
      if (digit === '1') out.push(2 ** k)
    }
    expect(Object.keys(route.headers)).toHaveLength(route.level + 1)
    return out
  }

  it('enters at the highest digit, which waits, and adds up to the delay rounded up to a millisecond', () => {
    for (const ms of [
      1,
      2,
      3,
      1000,
      1023,
      1024,
      10_001,
      86_400_000,
      2 ** 31,
      2 ** 31 + 1,
      SCHEDULE_MAX_DELAY_MS,
    ]) {
      const w = waits(ms)
      expect(w[0], `first wait of ${ms}`).toBe(2 ** (scheduleRoute(ms)?.level ?? -1))
      expect(
        w.reduce((a, b) => a + b, 0),
        `waits of ${ms}`,
      ).toBe(ms)
    }
    expect(waits(1500.2).reduce((a, b) => a + b, 0)).toBe(1501)
    expect(waits(SCHEDULE_MAX_DELAY_MS)).toHaveLength(SCHEDULE_LEVELS)
  })

  it('has no route for no delay, and refuses one longer than the last level reaches', () => {
    expect(scheduleRoute(0)).toBeUndefined()
    expect(scheduleRoute(-5)).toBeUndefined()
    expect(scheduleRoute(0.3)?.level).toBe(0)
    expect(() => scheduleRoute(SCHEDULE_MAX_DELAY_MS + 1)).toThrow(RangeError)
  })
})
