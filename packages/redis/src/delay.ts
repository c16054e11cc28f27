/**
 * Delayed events on Redis: a sorted set scored by due time, moved into the streams when due.
 *
 * - `<prefix>delayed` (sorted set): one member per delayed event, a token unique to that publish,
 *   scored by its `deliverAt` (epoch ms); `<prefix>delayed:events` (hash): token → topic and
 *   envelope. A publish writes both in one script call, so neither is ever found without the other.
 * - The mover: a script that takes the members whose score is at or below the server's clock
 *   (`TIME`), appends each envelope to its topic's stream (`XADD`, the stream's `maxLen` as for any
 *   publish), announces a new topic in the registry, and removes the member and its hash field.
 *   A script runs alone on the server and its writes are replicated and persisted as one unit, so
 *   movers in several processes may run at once: each member is moved by exactly one of them, and
 *   a mover whose process dies mid-call has either moved a member or left it in place, never half.
 * - Every backend instance with a subscription (or that published a delayed event) runs the mover:
 *   after each run it sleeps until the next score, and a publish announces its due time on the
 *   `<prefix>delayed` channel so a sleeping mover wakes earlier for it. A missed announcement
 *   (a reconnect) costs at most {@link IDLE_CHECK_MS} of lateness.
 * - Until it is moved, a delayed event is in no stream: it takes no pending entry, no consumer
 *   slot and no place in read order; once moved it is an ordinary new entry, read by the groups
 *   (and broadcast subscribers) reading that stream at its due time.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Logger, PublishReceipt } from '@omnibus/core'
import type { Redis } from 'ioredis'
import { classifyError } from './errors.ts'
import { EVENT_FIELD, type KeyMap } from './keys.ts'

/** Members moved per script call: bounds the time the server spends in one call. */
export const MOVE_LIMIT = 256
/** Longest sleep of an idle mover, in case a due-time announcement was missed. */
export const IDLE_CHECK_MS = 2_000
/** A member whose append failed (a key of another type, out of memory) is tried again after this. */
const FAILED_RETRY_MS = 10_000

/**
 * KEYS = [sorted set, hash, topic set]; ARGV = [stream key prefix, maxLen or '', limit, topics
 * channel]. Returns [moved, next score or -1, server ms, errors…].
 */
const MOVE_SCRIPT = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
local errors = {}
for _, m in ipairs(due) do
  local v = redis.call('HGET', KEYS[2], m)
  local ok = true
  if v then
    local nl = string.find(v, '\\n', 1, true)
    local topic = string.sub(v, 1, nl - 1)
    local key = ARGV[1] .. topic
    local id
    if ARGV[2] == '' then
      id = redis.pcall('XADD', key, '*', '${EVENT_FIELD}', string.sub(v, nl + 1))
    else
      id = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[2], '*', '${EVENT_FIELD}', string.sub(v, nl + 1))
    end
    if type(id) == 'table' and id.err then
      ok = false
      errors[#errors + 1] = id.err
      redis.call('ZADD', KEYS[1], now + ${FAILED_RETRY_MS}, m)
    elseif redis.call('SADD', KEYS[3], topic) == 1 then
      redis.call('PUBLISH', ARGV[4], topic)
    end
  end
  if ok then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    moved = moved + 1
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {moved, nxt[2] or '-1', now}
for _, e in ipairs(errors) do out[#out + 1] = e end
return out`
const MOVE_SHA = createHash('sha1').update(MOVE_SCRIPT).digest('hex')

/**
 * KEYS = [sorted set, hash]; ARGV = [channel, then (token, score, topic NL envelope) triples].
 * Announces the earliest score of the call on the channel.
 */
const SCHEDULE_SCRIPT = `local first
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  local s = tonumber(ARGV[i + 1])
  if first == nil or s < first then first = s end
end
if first then redis.call('PUBLISH', ARGV[1], first) end
return #ARGV`
const SCHEDULE_SHA = createHash('sha1').update(SCHEDULE_SCRIPT).digest('hex')

/** Delayed events per script call. */
const SCHEDULE_CHUNK = 256

/** The delay keys under a prefix. */
export interface DelayKeys {
  readonly set: string
  readonly events: string
  /** Pub/sub channel on which publishes announce their due time. */
  readonly channel: string
}

/** The delay keys of a key map. */
export function delayKeys(keys: KeyMap): DelayKeys {
  return {
    set: `${keys.prefix}delayed`,
    events: `${keys.prefix}delayed:events`,
    channel: `${keys.prefix}delayed`,
  }
}

interface Scheduled {
  readonly topic: string
  readonly id: string
  readonly json: string
  readonly deliverAt: number
  readonly resolve: (receipt: PublishReceipt) => void
  readonly reject: (error: Error) => void
}

/** Runs `script` by its digest, sending the body when the server does not know it. */
async function runScript(
  c: Redis,
  script: string,
  sha: string,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await c.evalsha(sha, keys.length, ...keys, ...args)
  } catch (err) {
    if (!/NOSCRIPT/.test((err as Error).message)) throw err
    return c.eval(script, keys.length, ...keys, ...args)
  }
}

/** Settings of a {@link Delayer}. */
export interface DelayerSettings {
  readonly keys: KeyMap
  readonly logger: Logger
  /** The command connection, or undefined while disconnected. */
  readonly command: () => Redis | undefined
  /** The streams' `maxLen`, when set. */
  readonly maxLen: number | undefined
}

/** The publish side (schedule) and the mover of one backend instance. */
export class Delayer {
  readonly dk: DelayKeys
  readonly #s: DelayerSettings
  #queue: Scheduled[] = []
  #flushScheduled = false
  readonly #inflight = new Set<Promise<unknown>>()
  #running = false
  #moving = false
  #again = false
  #timer: NodeJS.Timeout | undefined
  /** Local time the armed timer fires at. */
  #wakeAt = Number.POSITIVE_INFINITY
  /** Server clock minus local clock, from the last run. */
  #skew = 0
  #failures = 0

  constructor(s: DelayerSettings) {
    this.#s = s
    this.dk = delayKeys(s.keys)
  }

  /** Queues a delayed event; resolves once the server holds it. */
  schedule(topic: string, id: string, json: string, deliverAt: number): Promise<PublishReceipt> {
    // This instance moves what it delays, even if it subscribes to nothing.
    this.start()
    return new Promise<PublishReceipt>((resolve, reject) => {
      this.#queue.push({ topic, id, json, deliverAt, resolve, reject })
      if (!this.#flushScheduled) {
        this.#flushScheduled = true
        process.nextTick(() => this.flush())
      }
    })
  }

  /** Sends what is queued (one script call per chunk, in one pipeline). */
  flush(): void {
    this.#flushScheduled = false
    const items = this.#queue
    this.#queue = []
    if (items.length === 0) return
    const c = this.#s.command()
    if (c === undefined) {
      const e = classifyError(new Error('not connected'), 'publish')
      for (const it of items) it.reject(e)
      return
    }
    const run = Promise.all(
      chunks(items, SCHEDULE_CHUNK).map(async (chunk) => {
        const args: (string | number)[] = [this.dk.channel]
        for (const it of chunk) args.push(`${it.id}:${randomUUID()}`, it.deliverAt, `${it.topic}\n${it.json}`)
        try {
          await runScript(c, SCHEDULE_SCRIPT, SCHEDULE_SHA, [this.dk.set, this.dk.events], args)
          for (const it of chunk) it.resolve({ id: it.id, topic: it.topic })
        } catch (err) {
          const e = classifyError(err, 'publish')
          for (const it of chunk) it.reject(e)
        }
      }),
    )
    this.#inflight.add(run)
    void run.finally(() => this.#inflight.delete(run))
  }

  /** Publishes still waiting for the server. */
  settled(): Promise<unknown> {
    if (this.#flushScheduled) this.flush()
    return Promise.allSettled([...this.#inflight])
  }

  /** Starts the mover (idempotent). */
  start(): void {
    if (this.#running) return
    this.#running = true
    this.#arm(0)
  }

  /** A publish announced a due time (server clock, ms): wake by then if asleep longer. */
  announced(score: number): void {
    if (!this.#running || !Number.isFinite(score)) return
    this.#arm(score - this.#skew - Date.now())
  }

  stop(): void {
    this.#running = false
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#wakeAt = Number.POSITIVE_INFINITY
  }

  /** Arms the wake-up `inMs` from now unless an earlier one is armed. */
  #arm(inMs: number): void {
    if (!this.#running) return
    const wait = Math.max(0, Math.min(inMs, IDLE_CHECK_MS))
    const at = Date.now() + wait
    if (this.#timer !== undefined && this.#wakeAt <= at) return
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#wakeAt = at
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#wakeAt = Number.POSITIVE_INFINITY
      void this.#move()
    }, wait)
    this.#timer.unref()
  }

  async #move(): Promise<void> {
    if (this.#moving) {
      this.#again = true
      return
    }
    const c = this.#s.command()
    if (c === undefined || !this.#running) return
    this.#moving = true
    let next = IDLE_CHECK_MS
    try {
      const maxLen = this.#s.maxLen === undefined ? '' : String(this.#s.maxLen)
      const reply = (await runScript(
        c,
        MOVE_SCRIPT,
        MOVE_SHA,
        [this.dk.set, this.dk.events, this.#s.keys.topics],
        [this.#s.keys.stream(''), maxLen, MOVE_LIMIT, this.#s.keys.topicsChannel],
      )) as [number, string, number, ...string[]]
      const [moved, nextScore, serverNow, ...errors] = reply
      this.#skew = Number(serverNow) - Date.now()
      this.#failures = 0
      if (errors.length > 0) {
        this.#s.logger.warn('redis could not append delayed events to their streams; trying again later', {
          count: errors.length,
          error: errors[0],
        })
      }
      const score = Number(nextScore)
      if (Number(moved) >= MOVE_LIMIT) next = 0
      else if (score >= 0) next = score - Number(serverNow)
    } catch (err) {
      this.#failures++
      if (this.#failures === 1 || this.#failures % 50 === 0) {
        this.#s.logger.warn('redis delayed-event mover failed; retrying', {
          error: classifyError(err, 'subscribe').message,
        })
      }
      next = Math.min(100 * this.#failures, IDLE_CHECK_MS)
    } finally {
      this.#moving = false
    }
    if (this.#again) {
      this.#again = false
      next = 0
    }
    this.#arm(next)
  }
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}
