import { describe, expect, it } from 'vitest'
import { InvalidTopicError } from '../src/errors.ts'
import { MAX_TOPIC_LENGTH, validatePattern, validateTopic } from '../src/topic.ts'

// No unpaired surrogate: in a `u` regex a pair is one code point, so \p{Cs} only matches halves.
function wellFormed(text: string): boolean {
  return !/\p{Cs}/u.test(text)
}

function messageOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidTopicError)
    return (error as Error).message
  }
  throw new Error('expected an InvalidTopicError')
}

// Characters outside the Basic Multilingual Plane are two UTF-16 code units: a message built from
// one unit at a time shows half a character (a lone surrogate, printed as U+FFFD).
describe('InvalidTopicError names a character outside the BMP whole', () => {
  const astral: Array<[string, string, string, number]> = [
    ['tool.🚀', '🚀', 'U+1F680', 5],
    ['a.b😀c', '😀', 'U+1F600', 3],
    ['math.𝔘', '𝔘', 'U+1D518', 5],
    ['x.🇫🇷', '🇫', 'U+1F1EB', 2],
    ['dev.👩‍💻', '👩', 'U+1F469', 4],
    ['𠜎', '𠜎', 'U+2070E', 0],
  ]
  it.each(astral)('topic %j', (topic, char, code, position) => {
    const message = messageOf(() => validateTopic(topic))
    expect(wellFormed(message)).toBe(true)
    expect(message).not.toContain('\uFFFD')
    expect(message).toContain(`'${char}' (${code}) at position ${position} `)
    expect(message).toContain('counting characters from 0')
    expect(message).toContain(`"${topic}"`)
  })

  it.each(astral)('pattern %j', (topic, char, code, position) => {
    const message = messageOf(() => validatePattern(`${topic}.*`))
    expect(wellFormed(message)).toBe(true)
    expect(message).toContain(`'${char}' (${code}) at position ${position} `)
  })

  it('reports the position of a bad character in a later glob segment of a pattern', () => {
    const message = messageOf(() => validatePattern('a*.b🚀'))
    expect(message).toContain("'🚀' (U+1F680) at position 4 ")
  })

  it('reports the bad character, not the length, of a topic that is long only in UTF-16 units', () => {
    const topic = `${'x'.repeat(MAX_TOPIC_LENGTH - 3)}.🚀🚀`
    expect(topic.length).toBeGreaterThan(MAX_TOPIC_LENGTH)
    expect([...topic].length).toBe(MAX_TOPIC_LENGTH)
    const message = messageOf(() => validateTopic(topic))
    expect(message).toContain(`'🚀' (U+1F680) at position ${MAX_TOPIC_LENGTH - 2} `)
    expect(message).not.toMatch(/characters long/)
  })
})

describe('InvalidTopicError describes combining marks and invisible characters by code point', () => {
  it.each([
    ['cafe\u0301', 'combining mark U+0301', 4],
    ['n\u0303.x', 'combining mark U+0303', 1],
    ['a.e\u20dd', 'combining mark U+20DD', 3],
    ['a\u200bb', 'invisible character U+200B', 1],
    ['a\u00a0b', 'invisible character U+00A0', 1],
  ])('topic %j', (topic, description, position) => {
    const message = messageOf(() => validateTopic(topic))
    expect(message).toContain(`${description} at position ${position} `)
    expect(wellFormed(message)).toBe(true)
  })

  it('names an unpaired surrogate and keeps the message well formed', () => {
    const message = messageOf(() => validateTopic('a.\ud83d'))
    expect(message).toContain('unpaired surrogate U+D83D at position 2 ')
    expect(wellFormed(message)).toBe(true)
  })
})
