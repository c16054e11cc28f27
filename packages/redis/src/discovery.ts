/**
 * Discovery of streams nobody announced: a producer that is not Omnibus (a plain `XADD` of a
 * CloudEvents document to `<prefix>stream:<topic>`) writes neither the topic registry nor its
 * pub/sub announcement, so wildcard subscriptions also walk the keyspace with
 * `SCAN … MATCH <prefix>stream:* TYPE stream`. The walk is bounded per round
 * ({@link SCAN_STEPS_PER_ROUND} calls of `COUNT` {@link SCAN_COUNT}) and resumes at its cursor on
 * the next round, so one round costs the server the same whatever the size of the keyspace.
 */
import { isValidTopic, type Logger } from '@omnibus/core'
import type { Redis } from 'ioredis'
import type { KeyMap } from './keys.ts'

/** Keys Redis examines per `SCAN` call (a hint to the server). */
export const SCAN_COUNT = 1_000
/** `SCAN` calls per discovery round: at most this × {@link SCAN_COUNT} keys examined per round. */
export const SCAN_STEPS_PER_ROUND = 10

/** Escapes what Redis glob patterns treat as special (`* ? [ ] \`), for a literal prefix. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[*?[\]\\]/g, '\\$&')
}

/** Finds the streams of a key prefix round by round; see the module comment. */
export interface StreamScanner {
  /**
   * Runs one bounded round and returns the topics of streams seen for the first time. Streams
   * whose key suffix is not a valid topic are skipped (logged once at debug level).
   */
  round(client: Redis): Promise<string[]>
  /** Every topic found so far. */
  readonly topics: ReadonlySet<string>
  /** Forgets the cursor and what was found (after a disconnect). */
  reset(): void
}

/** A scanner for the streams under `keys.prefix`. */
export function createStreamScanner(keys: KeyMap, logger: Logger): StreamScanner {
  const match = `${escapeGlob(keys.stream(''))}*`
  const topics = new Set<string>()
  const skipped = new Set<string>()
  let cursor = '0'
  return {
    topics,
    async round(client) {
      const found: string[] = []
      for (let step = 0; step < SCAN_STEPS_PER_ROUND; step++) {
        const [next, streamKeys] = (await client.call(
          'SCAN',
          cursor,
          'MATCH',
          match,
          'COUNT',
          SCAN_COUNT,
          'TYPE',
          'stream',
        )) as [string, string[]]
        cursor = next
        for (const key of streamKeys) {
          const topic = keys.topicOf(key)
          if (topic === undefined || topics.has(topic) || skipped.has(key)) continue
          if (!isValidTopic(topic)) {
            skipped.add(key)
            logger.debug('redis stream skipped: its name after the prefix is not a valid topic', { key })
            continue
          }
          topics.add(topic)
          found.push(topic)
        }
        // A finished walk starts again on the next round, not in this one.
        if (cursor === '0') break
      }
      return found
    },
    reset() {
      cursor = '0'
      topics.clear()
      skipped.clear()
    },
  }
}
