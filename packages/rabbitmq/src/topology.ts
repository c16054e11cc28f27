/**
 * How topics, patterns and groups map onto RabbitMQ names: routing key = topic, binding key =
 * the pattern narrowed to what a topic exchange understands, one durable queue per (group,
 * pattern), shared delay queues for retries.
 */
import { createHash } from 'node:crypto'
import { parsePattern } from '@omnibus/core/backend'

/**
 * The topic-exchange binding key for a pattern: literal segments stay, `*` stays, `**` becomes
 * `#`, and a segment holding a glob (`read_*`, `{a,b}`, `?`) becomes `*`. The key is never
 * narrower than the pattern (it may be broader, e.g. `#` also matches zero segments where
 * `*.**` needs one), so the core matcher filters what arrives.
 */
export function bindingKey(pattern: string): string {
  const out: string[] = []
  for (const seg of parsePattern(pattern)) {
    switch (seg.kind) {
      case 'literal':
        out.push(seg.text)
        break
      case 'star':
      case 'glob':
        out.push('*')
        break
      case 'globstar':
        if (out.at(-1) !== '#') out.push('#')
        break
    }
  }
  return out.join('.')
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12)
}

/**
 * The durable queue of a group for one pattern: members of a group that subscribe to the same
 * pattern share it; another pattern in the same group gets its own queue, so a member never
 * receives an event its own pattern does not match. The pattern's hash keeps the name short
 * and free of characters the management UI would have to escape.
 */
export function groupQueueName(prefix: string, group: string, pattern: string): string {
  return `${prefix}.group.${group}.${shortHash(pattern)}`
}

/** Name of the shared delay queue that holds retries for `delayMs` before they return. */
export function delayQueueName(prefix: string, delayMs: number): string {
  return `${prefix}.delay.${delayMs}`
}

/**
 * Rounds a retry delay up to two significant digits (1234 → 1300 ms), so retries share a small
 * set of delay queues instead of one queue per jittered value; never shorter than asked, at most
 * 10% longer.
 */
export function delayBucket(delayMs: number): number {
  const ms = Math.max(1, Math.ceil(delayMs))
  if (ms < 100) return ms
  const step = 10 ** (Math.floor(Math.log10(ms)) - 1)
  return Math.ceil(ms / step) * step
}

/**
 * Whether the broker offers quorum queues: RabbitMQ from 3.8 on. Other products and unreadable
 * versions are given the benefit of the doubt (a refusal then names the queue argument).
 */
export function supportsQuorumQueues(
  serverProperties: { product?: unknown; version?: unknown } | undefined,
): boolean {
  if (serverProperties === undefined || serverProperties.product !== 'RabbitMQ') return true
  const m = /^(\d+)\.(\d+)/.exec(String(serverProperties.version))
  if (m === null) return true
  const major = Number(m[1])
  const minor = Number(m[2])
  return major > 3 || (major === 3 && minor >= 8)
}

/**
 * Arguments of a group queue (the queue that keeps dead letters is declared with the same ones):
 * the queue type, and `x-expires` when group queues expire. Every member must declare the same.
 */
export function groupQueueArguments(
  queueType: 'quorum' | 'classic',
  expiresMs: number | undefined,
): Record<string, unknown> {
  const args: Record<string, unknown> = { 'x-queue-type': queueType }
  if (expiresMs !== undefined) args['x-expires'] = expiresMs
  return args
}

/**
 * How many levels the schedule has: level `k` holds a message `2^k` ms, so a delay is the sum of
 * the levels of its binary digits and levels 0–31 reach {@link SCHEDULE_MAX_DELAY_MS}. 2^31 ms is
 * within the 32-bit range RabbitMQ documents for `x-message-ttl`.
 */
export const SCHEDULE_LEVELS = 32

/** The longest delay the schedule can hold: every level once, 2^32 - 1 ms (about 49.7 days). */
export const SCHEDULE_MAX_DELAY_MS = 2 ** SCHEDULE_LEVELS - 1

/** Name of level `level` of the schedule: both its headers exchange and its queue. */
export function scheduleLevelName(prefix: string, level: number): string {
  return `${prefix}.schedule.${2 ** level}ms`
}

/** The header a message carries for binary digit `level` of its delay: `'1'` waits there, `'0'` passes. */
export function scheduleBitHeader(level: number): string {
  return `omnibus-schedule-${level}`
}

/**
 * Where a delayed publish enters the schedule and the headers that route it down: the level of the
 * delay's highest binary digit, and one header per digit from there down to level 0. A delay of 0
 * (or less) has no route: it is published at once.
 */
export function scheduleRoute(
  delayMs: number,
): { level: number; headers: Record<string, string> } | undefined {
  const ms = Math.ceil(delayMs)
  if (!(ms >= 1)) return undefined
  if (ms > SCHEDULE_MAX_DELAY_MS) {
    throw new RangeError(
      `a delay of ${ms} ms is longer than the schedule holds (${SCHEDULE_MAX_DELAY_MS} ms)`,
    )
  }
  let level = 0
  while (2 ** (level + 1) <= ms) level++
  const headers: Record<string, string> = {}
  // Bit arithmetic on 32-bit integers would turn 2^31 negative: divide instead.
  for (let k = 0; k <= level; k++)
    headers[scheduleBitHeader(k)] = Math.floor(ms / 2 ** k) % 2 === 1 ? '1' : '0'
  return { level, headers }
}
