/**
 * Pattern matching. `MatcherIndex` holds many subscriptions in a segment trie: literal segments
 * are map lookups, `*` and `**` are dedicated edges, and only segments with an in-segment glob
 * (`read_*`, `{start,end}`, `?`) are compiled — by micromatch, so their meaning is micromatch's.
 * micromatch over `/`-joined segments is the oracle the property test compares against.
 */
import micromatch from 'micromatch'
import { type PatternSegment, parsePattern, validateTopic } from './topic.ts'

interface GlobEdge<T> {
  readonly text: string
  readonly test: (segment: string) => boolean
  readonly node: TrieNode<T>
}

interface Entry<T> {
  readonly value: T
  stamp: number
}

interface TrieNode<T> {
  literal: Map<string, TrieNode<T>> | undefined
  star: TrieNode<T> | undefined
  globstar: TrieNode<T> | undefined
  /** A trailing `**` that must consume at least one segment (see `PatternSegment`). */
  globstarPlus: TrieNode<T> | undefined
  globs: GlobEdge<T>[] | undefined
  entries: Entry<T>[] | undefined
}

function newNode<T>(): TrieNode<T> {
  return {
    literal: undefined,
    star: undefined,
    globstar: undefined,
    globstarPlus: undefined,
    globs: undefined,
    entries: undefined,
  }
}

const segmentMatchers = new Map<string, (segment: string) => boolean>()

function compileSegmentGlob(text: string): (segment: string) => boolean {
  let fn = segmentMatchers.get(text)
  if (fn === undefined) {
    const re = micromatch.makeRe(text)
    fn = (segment: string) => re.test(segment)
    segmentMatchers.set(text, fn)
  }
  return fn
}

function isEmpty<T>(n: TrieNode<T>): boolean {
  return (
    (n.literal === undefined || n.literal.size === 0) &&
    n.star === undefined &&
    n.globstar === undefined &&
    n.globstarPlus === undefined &&
    (n.globs === undefined || n.globs.length === 0) &&
    (n.entries === undefined || n.entries.length === 0)
  )
}

const RESULT_CACHE_LIMIT = 10_000
const EMPTY: readonly never[] = Object.freeze([])

/**
 * An index of patterns, each with a value (a subscription, a handler). `match(topic)` returns the
 * values of every pattern that matches, each value once.
 */
export class MatcherIndex<T> {
  #root: TrieNode<T> = newNode()
  #size = 0
  #stamp = 0
  #cache = new Map<string, readonly T[]>()

  /** Number of (pattern, value) pairs held. */
  get size(): number {
    return this.#size
  }

  /**
   * Adds `value` under `pattern` (validated; throws `InvalidTopicError`). Returns a function that
   * removes exactly this entry; calling it again does nothing.
   */
  add(pattern: string, value: T): () => void {
    const segments = parsePattern(pattern)
    const path: TrieNode<T>[] = [this.#root]
    let node = this.#root
    for (const seg of segments) {
      node = this.#child(node, seg)
      path.push(node)
    }
    const entry: Entry<T> = { value, stamp: 0 }
    if (node.entries === undefined) node.entries = []
    node.entries.push(entry)
    this.#size++
    this.#cache.clear()
    let removed = false
    return () => {
      if (removed) return
      removed = true
      const list = node.entries
      const at = list === undefined ? -1 : list.indexOf(entry)
      if (list !== undefined && at >= 0) {
        list.splice(at, 1)
        this.#size--
        this.#cache.clear()
        this.#prune(path, segments)
      }
    }
  }

  /** Values of every pattern matching the concrete `topic`. The array must not be mutated. */
  match(topic: string): readonly T[] {
    const cached = this.#cache.get(topic)
    if (cached !== undefined) return cached
    const segments = topic.split('.')
    const out: T[] = []
    const stamp = ++this.#stamp
    this.#walk(this.#root, segments, 0, out, stamp)
    const result = out.length === 0 ? EMPTY : out
    if (this.#cache.size >= RESULT_CACHE_LIMIT) this.#cache.clear()
    this.#cache.set(topic, result)
    return result
  }

  /** Whether any pattern matches `topic`. */
  has(topic: string): boolean {
    return this.match(topic).length > 0
  }

  /** Removes every entry. */
  clear(): void {
    this.#root = newNode()
    this.#size = 0
    this.#cache.clear()
  }

  #child(node: TrieNode<T>, seg: PatternSegment): TrieNode<T> {
    switch (seg.kind) {
      case 'literal': {
        if (node.literal === undefined) node.literal = new Map()
        let next = node.literal.get(seg.text)
        if (next === undefined) {
          next = newNode()
          node.literal.set(seg.text, next)
        }
        return next
      }
      case 'star':
        if (node.star === undefined) node.star = newNode()
        return node.star
      case 'globstar':
        if (seg.minSegments === 1) {
          if (node.globstarPlus === undefined) node.globstarPlus = newNode()
          return node.globstarPlus
        }
        if (node.globstar === undefined) node.globstar = newNode()
        return node.globstar
      case 'glob': {
        if (node.globs === undefined) node.globs = []
        let edge = node.globs.find((g) => g.text === seg.text)
        if (edge === undefined) {
          edge = { text: seg.text, test: compileSegmentGlob(seg.text), node: newNode() }
          node.globs.push(edge)
        }
        return edge.node
      }
    }
  }

  #prune(path: TrieNode<T>[], segments: PatternSegment[]): void {
    for (let i = segments.length - 1; i >= 0; i--) {
      const child = path[i + 1] as TrieNode<T>
      if (!isEmpty(child)) return
      const parent = path[i] as TrieNode<T>
      const seg = segments[i] as PatternSegment
      if (seg.kind === 'literal') parent.literal?.delete(seg.text)
      else if (seg.kind === 'star') parent.star = undefined
      else if (seg.kind === 'globstar' && seg.minSegments === 1) parent.globstarPlus = undefined
      else if (seg.kind === 'globstar') parent.globstar = undefined
      else if (parent.globs !== undefined) parent.globs = parent.globs.filter((g) => g.node !== child)
    }
  }

  #collect(node: TrieNode<T>, out: T[], stamp: number): void {
    const entries = node.entries
    if (entries === undefined) return
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as Entry<T>
      if (e.stamp !== stamp) {
        e.stamp = stamp
        out.push(e.value)
      }
    }
  }

  #walk(node: TrieNode<T>, segs: string[], i: number, out: T[], stamp: number): void {
    if (node.globstar !== undefined) {
      // `**` consumes zero or more segments: try every split point.
      for (let j = i; j <= segs.length; j++) this.#walk(node.globstar, segs, j, out, stamp)
    }
    if (node.globstarPlus !== undefined) {
      for (let j = i + 1; j <= segs.length; j++) this.#walk(node.globstarPlus, segs, j, out, stamp)
    }
    if (i === segs.length) {
      this.#collect(node, out, stamp)
      return
    }
    const seg = segs[i] as string
    const lit = node.literal?.get(seg)
    if (lit !== undefined) this.#walk(lit, segs, i + 1, out, stamp)
    if (node.star !== undefined) this.#walk(node.star, segs, i + 1, out, stamp)
    const globs = node.globs
    if (globs !== undefined) {
      for (const g of globs) if (g.test(seg)) this.#walk(g.node, segs, i + 1, out, stamp)
    }
  }
}

/** A compiled single pattern: `(topic) => boolean`. Validates the pattern once. */
export function compilePattern(pattern: string): (topic: string) => boolean {
  const segments = parsePattern(pattern)
  if (segments.every((s) => s.kind === 'literal')) return (topic) => topic === pattern
  const index = new MatcherIndex<true>()
  index.add(pattern, true)
  return (topic) => index.has(topic)
}

/** Whether the concrete `topic` matches `pattern` (both validated). */
export function matchTopic(pattern: string, topic: string): boolean {
  validateTopic(topic)
  return compilePattern(pattern)(topic)
}

/** The oracle: micromatch with `.` read as `/`. Used by the property test and nowhere hot. */
export function oracleMatch(pattern: string, topic: string): boolean {
  return micromatch.isMatch(topic.replaceAll('.', '/'), pattern.replaceAll('.', '/'))
}
