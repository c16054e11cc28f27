/**
 * The topic grammar, identical on every backend.
 *
 * A topic is 1–249 characters: non-empty segments of `[A-Za-z0-9_-]` separated by `.` — valid
 * Kafka topic names and AMQP routing keys as they are. A pattern is a glob in which `.` plays the
 * role of `/`: `*` is one segment, `**` (a whole segment) is zero or more segments, and `?`,
 * `[...]`, `{a,b}` and `*` inside a segment match within that segment.
 */
import { InvalidTopicError } from './errors.ts'

/** Longest topic accepted (Kafka's own limit). */
export const MAX_TOPIC_LENGTH = 249

const TOPIC_CHAR = /^[A-Za-z0-9_-]$/
const GRAMMAR_HINT = "topics are segments of letters, digits, '_' and '-' separated by '.'"

// Positions in messages count characters (code points) from 0, so a character outside the BMP
// is one position and is printed whole, never as half of a surrogate pair.
const POSITION_NOTE = '(counting characters from 0)'

function hex(code: number): string {
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`
}

function describeChar(ch: string): string {
  if (ch === ' ') return 'a space'
  const code = ch.codePointAt(0) ?? 0
  if (code < 0x20 || code === 0x7f) return `control character ${hex(code)}`
  if (code >= 0xd800 && code <= 0xdfff) return `unpaired surrogate ${hex(code)}`
  // A mark printed alone fuses with the quote before it; an invisible character shows nothing.
  if (/\p{M}/u.test(ch)) return `combining mark ${hex(code)}`
  if (/[\p{Z}\p{C}]/u.test(ch)) return `invisible character ${hex(code)}`
  return code < 0x80 ? `'${ch}'` : `'${ch}' (${hex(code)})`
}

// The value as it can be printed: a lone surrogate would corrupt the whole message. In a `u`
// regex a surrogate pair is one code point, so \p{Cs} matches only unpaired halves.
function printable(value: string): string {
  return value.replace(/\p{Cs}/gu, '\uFFFD')
}

function checkShape(kind: 'topic' | 'pattern', value: unknown): string {
  if (typeof value !== 'string') {
    throw new InvalidTopicError(String(value), `${kind} must be a string, got ${typeof value}`)
  }
  if (value.length === 0) throw new InvalidTopicError(value, `${kind} is empty: ${GRAMMAR_HINT}`)
  // Counted in characters: a value long only in UTF-16 units holds a character the scan names.
  const length = value.length > MAX_TOPIC_LENGTH ? [...value].length : value.length
  if (length > MAX_TOPIC_LENGTH) {
    throw new InvalidTopicError(
      value,
      `${kind} is ${length} characters long, over the limit of ${MAX_TOPIC_LENGTH}`,
    )
  }
  const segments = value.split('.')
  for (let i = 0; i < segments.length; i++) {
    if (segments[i] === '') {
      const where = i === 0 ? 'starts with' : i === segments.length - 1 ? 'ends with' : 'has two adjacent'
      throw new InvalidTopicError(
        value,
        `${kind} "${printable(value)}" ${where} '.': every segment must be non-empty`,
      )
    }
  }
  return value
}

/** Whether `topic` is a valid concrete topic. */
export function isValidTopic(topic: unknown): topic is string {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) return false
  let prevDot = true
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i)
    if (c === 46) {
      if (prevDot) return false
      prevDot = true
      continue
    }
    prevDot = false
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 45
    if (!ok) return false
  }
  return !prevDot
}

// Topics seen valid recently. Applications publish to a bounded set of topics, usually the same
// string objects, whose hash V8 caches: a set lookup is several times cheaper than the scan.
const recentlyValid = new Set<string>()
const RECENT_LIMIT = 4096

/** Throws an {@link InvalidTopicError} naming the problem unless `topic` is a valid concrete topic. */
export function validateTopic(topic: unknown): string {
  if (recentlyValid.has(topic as string)) return topic as string
  if (isValidTopic(topic)) {
    if (recentlyValid.size >= RECENT_LIMIT) recentlyValid.clear()
    recentlyValid.add(topic)
    return topic
  }
  const value = checkShape('topic', topic)
  let i = 0
  for (const ch of value) {
    if (ch === '.' || TOPIC_CHAR.test(ch)) {
      i++
      continue
    }
    const hint =
      ch === '*' || ch === '?' || ch === '{' || ch === '['
        ? ': wildcards belong in subscribe patterns; publish to a concrete topic'
        : `: ${GRAMMAR_HINT}`
    throw new InvalidTopicError(
      value,
      `invalid topic "${printable(value)}": ${describeChar(ch)} at position ${i} ${POSITION_NOTE} is not allowed${hint}`,
    )
  }
  throw new InvalidTopicError(value, `invalid topic "${printable(value)}": ${GRAMMAR_HINT}`)
}

/** One segment of a parsed pattern. */
export type PatternSegment =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'star' }
  | {
      readonly kind: 'globstar'
      /**
       * 1 when the globstar must consume at least one segment. micromatch reads a trailing `**`
       * after a segment ending in `*` (`*.**`, `read_*.**`) that way: `a.**` matches `a`, `*.**` does not.
       */
      readonly minSegments: 0 | 1
    }
  | { readonly kind: 'glob'; readonly text: string }

function patternError(pattern: string, message: string): InvalidTopicError {
  return new InvalidTopicError(pattern, `invalid pattern "${printable(pattern)}": ${message}`)
}

// `offset` is the segment's position in characters within the pattern.
function checkGlobSegment(pattern: string, segment: string, offset: number): void {
  let inClass = false
  let inBrace = false
  const chars = [...segment]
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] as string
    const pos = `${offset + i} ${POSITION_NOTE}`
    if (inClass) {
      if (ch === ']') inClass = false
      else if (!TOPIC_CHAR.test(ch) && ch !== '!' && ch !== '^') {
        throw patternError(pattern, `${describeChar(ch)} at position ${pos} is not allowed in a [...] class`)
      }
      continue
    }
    if (ch === '[') {
      inClass = true
      continue
    }
    if (ch === '{') {
      if (inBrace) throw patternError(pattern, `nested '{' at position ${pos}: brace lists cannot nest`)
      inBrace = true
      continue
    }
    if (ch === '}') {
      if (!inBrace) throw patternError(pattern, `'}' at position ${pos} closes no '{'`)
      inBrace = false
      continue
    }
    if (ch === ',') {
      if (!inBrace) throw patternError(pattern, `',' at position ${pos} is only allowed inside {a,b}`)
      continue
    }
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        throw patternError(
          pattern,
          `'**' at position ${pos} must be a whole segment (as in "a.**" or "**.error"); use '*' inside a segment`,
        )
      }
      continue
    }
    if (ch === '?' || TOPIC_CHAR.test(ch)) continue
    throw patternError(
      pattern,
      `${describeChar(ch)} at position ${pos} is not allowed: patterns use topic characters and * ** ? [...] {a,b}`,
    )
  }
  if (inClass) throw patternError(pattern, `'[' is never closed`)
  if (inBrace) throw patternError(pattern, `'{' is never closed`)
}

/** Parses and validates a subscribe pattern; throws an {@link InvalidTopicError} naming the problem. */
export function parsePattern(pattern: unknown): PatternSegment[] {
  const value = checkShape('pattern', pattern)
  const parts = value.split('.')
  const out: PatternSegment[] = []
  let offset = 0
  for (const part of parts) {
    if (part === '**') {
      // Consecutive globstars are the same as one.
      if (out.at(-1)?.kind !== 'globstar') out.push({ kind: 'globstar', minSegments: 0 })
    } else if (part === '*') {
      out.push({ kind: 'star' })
    } else if (/^[A-Za-z0-9_-]+$/.test(part)) {
      out.push({ kind: 'literal', text: part })
    } else {
      checkGlobSegment(value, part, offset)
      out.push({ kind: 'glob', text: part })
    }
    offset += [...part].length + 1
  }
  const last = out.length - 1
  const before = out[last - 1]
  if (
    out[last]?.kind === 'globstar' &&
    (before?.kind === 'star' || (before?.kind === 'glob' && before.text.endsWith('*')))
  ) {
    out[last] = { kind: 'globstar', minSegments: 1 }
  }
  return out
}

/** Throws an {@link InvalidTopicError} unless `pattern` is a valid subscribe pattern. */
export function validatePattern(pattern: unknown): string {
  parsePattern(pattern)
  return pattern as string
}

/** Whether a pattern has no wildcard at all (it names exactly one topic). */
export function isLiteralPattern(pattern: string): boolean {
  return isValidTopic(pattern)
}
