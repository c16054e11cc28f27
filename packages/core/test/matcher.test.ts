import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compilePattern, MatcherIndex, matchTopic, oracleMatch } from '../src/matcher.ts'

const WORDS = ['a', 'b', 'ab', 'ba', 'tool', 'error', 'x_1', 'read_file', 'start', 'end', 'A-b']
const GLOB_SEGMENTS = [
  '*',
  '**',
  'a*',
  '*b',
  'read_*',
  '?',
  '??',
  '{start,end}',
  '{a,ab}',
  '[ab]',
  '[!a]',
  'a?',
  '*_*',
]

const topicArb = fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 5 }).map((s) => s.join('.'))
const patternArb = fc
  .array(fc.oneof(fc.constantFrom(...WORDS), fc.constantFrom(...GLOB_SEGMENTS)), {
    minLength: 1,
    maxLength: 5,
  })
  .map((s) => s.join('.'))

describe('MatcherIndex against the micromatch oracle', () => {
  it('agrees with micromatch on thousands of random pattern/topic pairs', () => {
    fc.assert(
      fc.property(patternArb, topicArb, (pattern, topic) => {
        expect(compilePattern(pattern)(topic), `${pattern} ~ ${topic}`).toBe(oracleMatch(pattern, topic))
      }),
      { numRuns: 20000 },
    )
  })

  it('returns exactly the matching subscriptions of a large mixed index, each once', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(patternArb, { minLength: 1, maxLength: 40 }),
        fc.array(topicArb, { maxLength: 20 }),
        (patterns, topics) => {
          const index = new MatcherIndex<string>()
          for (const p of patterns) index.add(p, p)
          for (const topic of topics) {
            const got = [...index.match(topic)].sort()
            const want = patterns.filter((p) => oracleMatch(p, topic)).sort()
            expect(got, topic).toEqual(want)
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('topic grammar examples', () => {
  const cases: Array<[string, string, boolean]> = [
    ['tool.*', 'tool.start', true],
    ['tool.*', 'tool', false],
    ['tool.*', 'tool.a.b', false],
    ['*.error', 'db.error', true],
    ['*.error', 'a.b.error', false],
    ['**.error', 'error', true],
    ['**.error', 'a.b.error', true],
    ['agent.*.task', 'agent.r.task', true],
    ['agent.*.task', 'agent.task', false],
    ['a.**', 'a', true],
    ['a.**', 'a.b.c', true],
    ['*.**', 'a', false],
    ['*.**', 'a.b', true],
    ['read_*.**', 'read_x', false],
    ['*b.**', 'ab', true],
    ['**', 'anything.at.all', true],
    ['tool.read_*', 'tool.read_file', true],
    ['tool.read_*', 'tool.write_file', false],
    ['tool.{start,end}', 'tool.end', true],
    ['tool.{start,end}', 'tool.error', false],
    ['a.?', 'a.b', true],
    ['a.?', 'a.bc', false],
  ]
  it.each(cases)('%s ~ %s → %s', (pattern, topic, expected) => {
    expect(matchTopic(pattern, topic)).toBe(expected)
    expect(oracleMatch(pattern, topic)).toBe(expected)
  })
})

describe('MatcherIndex bookkeeping', () => {
  it('removes exactly one entry per remover, idempotently, and prunes', () => {
    const index = new MatcherIndex<number>()
    const r1 = index.add('a.*', 1)
    const r2 = index.add('a.*', 2)
    const r3 = index.add('a.**', 3)
    expect([...index.match('a.b')].sort()).toEqual([1, 2, 3])
    r1()
    r1()
    expect([...index.match('a.b')].sort()).toEqual([2, 3])
    expect(index.size).toBe(2)
    r2()
    r3()
    expect(index.match('a.b')).toEqual([])
    expect(index.size).toBe(0)
  })

  it('does not serve a stale cached result after a change', () => {
    const index = new MatcherIndex<string>()
    expect(index.match('x.y')).toEqual([])
    const remove = index.add('x.*', 'sub')
    expect(index.match('x.y')).toEqual(['sub'])
    remove()
    expect(index.match('x.y')).toEqual([])
  })

  it('delivers a value once even when several trie paths match', () => {
    const index = new MatcherIndex<string>()
    index.add('**.a.**', 'deep')
    expect(index.match('a.a.a')).toEqual(['deep'])
  })

  it('rejects invalid patterns with an InvalidTopicError naming the problem', () => {
    const index = new MatcherIndex<string>()
    expect(() => index.add('a..b', 'x')).toThrow(/two adjacent '\.'/)
    expect(() => index.add('a.b**', 'x')).toThrow(/must be a whole segment/)
    expect(() => index.add('a/b', 'x')).toThrow(/'\/' at position 1/)
    expect(() => index.add('a.{b', 'x')).toThrow(/never closed/)
    expect(() => index.add('', 'x')).toThrow(/empty/)
  })
})
