import { describe, expect, it } from 'vitest'
import { InvalidTopicError } from '../src/errors.ts'
import { isValidTopic, MAX_TOPIC_LENGTH, parsePattern, validatePattern, validateTopic } from '../src/topic.ts'

describe('validateTopic', () => {
  it('accepts segments of letters, digits, _ and - up to 249 characters', () => {
    for (const t of ['a', 'tool.start', 'agent.r-1.task_x', 'A.B.C', 'x'.repeat(MAX_TOPIC_LENGTH)]) {
      expect(validateTopic(t)).toBe(t)
      expect(isValidTopic(t)).toBe(true)
    }
  })

  const bad: Array<[unknown, RegExp]> = [
    ['', /empty/],
    ['x'.repeat(250), /250 characters long, over the limit of 249/],
    ['.a', /starts with '\.'/],
    ['a.', /ends with '\.'/],
    ['a..b', /two adjacent '\.'/],
    ['tool.*', /'\*' at position 5.*wildcards belong in subscribe patterns/],
    ['a b', /a space at position 1/],
    ['a/b', /'\/' at position 1/],
    ['caf\u00e9', /'\u00e9' \(U\+00E9\) at position 3 \(counting characters from 0\)/],
    ['a\nb', /control character U\+000A/],
    [42, /must be a string, got number/],
  ]
  it.each(bad)('rejects %j naming the problem', (topic, message) => {
    expect(isValidTopic(topic)).toBe(false)
    let caught: unknown
    try {
      validateTopic(topic)
    } catch (error) {
      caught = error
    }
    expect(caught).toBeInstanceOf(InvalidTopicError)
    expect((caught as Error).message).toMatch(message)
    expect((caught as InvalidTopicError).code).toBe('INVALID_TOPIC')
  })
})

describe('parsePattern', () => {
  it('classifies segments and folds consecutive globstars', () => {
    expect(parsePattern('a.*.**.**.read_*')).toEqual([
      { kind: 'literal', text: 'a' },
      { kind: 'star' },
      { kind: 'globstar', minSegments: 0 },
      { kind: 'glob', text: 'read_*' },
    ])
    expect(parsePattern('read_*.**').at(-1)).toEqual({ kind: 'globstar', minSegments: 1 })
    expect(parsePattern('a.**').at(-1)).toEqual({ kind: 'globstar', minSegments: 0 })
  })

  it('rejects what micromatch would read as something else', () => {
    expect(() => validatePattern('!a')).toThrow(/'!' at position 0/)
    expect(() => validatePattern('a.{b.c}')).toThrow(InvalidTopicError)
    expect(() => validatePattern('a.b,c')).toThrow(/only allowed inside \{a,b\}/)
    expect(() => validatePattern('a.[bc')).toThrow(/'\[' is never closed/)
    expect(() => validatePattern('a.{b,{c,d}}')).toThrow(/cannot nest/)
  })
})
