import { getEventListeners } from 'node:events'
import {
  createEvent,
  DLQ_HEADERS,
  type EventHandler,
  type EventInput,
  type SubscribeOptions,
  silentLogger,
} from '@omnibus/core'
import { encodeEvent, FOREIGN_HEADERS, resolveSubscribeOptions } from '@omnibus/core/backend'
import { describe, expect, it } from 'vitest'
import { createAttemptBook } from '../src/attempts.ts'
import type { BatchControl, ConsumerSpec, InboundMessage, KafkaClient } from '../src/client.ts'
import { createKafkaDedupeStore } from '../src/dedupe.ts'
import type { RecordApplier, RecordLog, RecordValue } from '../src/records.ts'
import { KafkaSubscription } from '../src/subscription.ts'

const TOPIC = 'unit.orders'

/** The records topic in memory: what every process appended, in order. */
interface RecordTopic {
  readonly records: Array<[string, string]>
  /** The live readers: each applies a record as soon as it is appended. */
  readers?: Array<() => unknown>
}

/**
 * One process's view of the records topic: it reads `topic` from the beginning on start, then
 * applies every record as it is appended, in order.
 */
export function memoryRecordLog(
  topic: RecordTopic = { records: [] },
): RecordLog & { readonly topic: RecordTopic } {
  const appliers: Array<[string, RecordApplier]> = []
  let fallback: RecordApplier | undefined
  let read = 0
  const apply = (key: string, value: string): unknown => {
    const json = value.startsWith('{') ? (JSON.parse(value) as RecordValue) : undefined
    const a = appliers.find(([prefix]) => key.startsWith(prefix))
    return a !== undefined ? a[1](key, value, json) : fallback?.(key, value, json)
  }
  /** Applies what is unread; returns what the applier of the last record said. */
  const sync = (): unknown => {
    let result: unknown
    while (read < topic.records.length) {
      const [key, value] = topic.records[read++] as [string, string]
      result = apply(key, value)
    }
    return result
  }
  topic.readers ??= []
  topic.readers.push(sync)
  const others = () => {
    for (const r of topic.readers ?? []) if (r !== sync) r()
  }
  return {
    topic,
    on(prefix, applier) {
      if (prefix === '') fallback = applier
      else appliers.push([prefix, applier])
    },
    async start() {
      sync()
    },
    async append(key, value) {
      topic.records.push([key, value])
      sync()
      others()
    },
    async write(key, value) {
      topic.records.push([key, value])
      others()
    },
    async appendSeen(key, value) {
      topic.records.push([key, JSON.stringify(value)])
      const result = sync()
      others()
      return result
    },
    async catchUp() {
      sync()
    },
    async close() {},
  }
}

interface HarnessOptions {
  /** The records topic (shared with other members, or a previous life); a new process reads it. */
  readonly records?: RecordTopic
  /** Member ids still in the group. */
  readonly members?: readonly string[]
  readonly memberId?: string
}

/** A subscription over a client whose consumer is driven by hand: the test feeds batches. */
async function harness(handler: EventHandler, opts: SubscribeOptions = {}, h: HarnessOptions = {}) {
  let spec: ConsumerSpec | undefined
  const client = {
    createConsumer(s: ConsumerSpec) {
      spec = s
      return {
        async start() {
          s.onJoin?.({ [TOPIC]: [0] }, h.memberId ?? 'member-1')
        },
        async stop() {},
        async disconnect() {},
        async seekAndCommit() {},
      }
    },
    async groupOffsets() {
      return [{ partition: 0, offset: '0' }]
    },
    async endOffsets() {
      return [{ partition: 0, offset: '0' }]
    },
    async groupMembers() {
      return [...(h.members ?? [h.memberId ?? 'member-1'])]
    },
    async deleteGroup() {},
  } as unknown as KafkaClient
  const published: EventInput[] = []
  const backend = {
    name: 'kafka',
    capabilities: {
      guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
      groups: true,
      replay: true,
    },
  } as never
  const log = memoryRecordLog(h.records)
  const attempts = createAttemptBook(log)
  const dedupe = createKafkaDedupeStore({ log, ttlMs: 60_000, maxEntries: 1000 })
  const sub = new KafkaSubscription(
    {
      id: 'unit',
      groupId: 'g',
      privateGroup: false,
      options: resolveSubscribeOptions(backend, TOPIC, handler, { group: 'g', ...opts }),
      handler,
      literal: true,
    },
    {
      client,
      logger: silentLogger,
      dedupe: () => dedupe,
      attempts: () => attempts,
      heartbeatIntervalMs: 1000,
      groupJoinTimeoutMs: 1000,
      endpoint: 'unit',
      publishDeadLetter: async (input: EventInput) => {
        published.push(input)
      },
      declaredStart: async () => undefined,
      ensureTopic: async () => {},
      forget() {},
    },
  )
  await sub.start([TOPIC])
  const commits: string[] = []
  const control: BatchControl = {
    isActive: () => true,
    heartbeat: async () => {},
    markDone() {},
    commit: async (next) => {
      commits.push(next)
    },
    pause: () => () => {},
  }
  const feed = (messages: InboundMessage[]) =>
    (spec as ConsumerSpec).onBatch({ topic: TOPIC, partition: 0, messages }, control)
  return { sub, feed, commits, published, log, subscription: sub.kernel.subscription }
}

function message(offset: number, data: unknown, id?: string): InboundMessage {
  const input: EventInput = id === undefined ? { topic: TOPIC, data } : { topic: TOPIC, data, id }
  return { offset: String(offset), key: null, value: Buffer.from(encodeEvent(createEvent(input))) }
}

describe('KafkaSubscription batches', () => {
  it('commits the offset after the last handled event, once the handlers resolved', async () => {
    const seen: number[] = []
    const h = await harness((e) => {
      seen.push((e.data as { n: number }).n)
    })
    await h.feed([message(10, { n: 1 }), message(11, { n: 2 }), message(12, { n: 3 })])
    expect(seen).toEqual([1, 2, 3])
    expect(h.commits.at(-1)).toBe('13')
  })

  it('runs synchronous handlers of a batch without waiting a turn per event', async () => {
    const seen: number[] = []
    // Set by a microtask queued in the first handler: a later handler that sees it waited a turn.
    let turned = false
    const afterTurn: number[] = []
    const h = await harness((e) => {
      const n = (e.data as { n: number }).n
      if (n === 0) queueMicrotask(() => (turned = true))
      else if (turned) afterTurn.push(n)
      seen.push(n)
    })
    await h.feed(Array.from({ length: 20 }, (_, n) => message(n, { n })))
    expect(seen).toHaveLength(20)
    expect(afterTurn, 'handlers that ran after a microtask turn').toEqual([])
    expect(h.commits).toEqual(['20'])
  })

  it('one at a time, waits for an async handler before the next event and before committing', async () => {
    let releaseFirst: () => void = () => {}
    const first = new Promise<void>((resolve) => {
      releaseFirst = resolve
    })
    const started: number[] = []
    const h = await harness(async (e) => {
      const n = (e.data as { n: number }).n
      started.push(n)
      if (n === 0) await first
    })
    const batch = h.feed([0, 1, 2].map((n) => message(n, { n })))
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(started).toEqual([0])
    expect(h.commits).toEqual([])
    releaseFirst()
    await batch
    expect(started).toEqual([0, 1, 2])
    expect(h.commits).toEqual(['3'])
  })

  it('commits the finished prefix during a batch that runs longer than a second', async () => {
    const h = await harness(async (e) => {
      if ((e.data as { n: number }).n === 1) await new Promise((resolve) => setTimeout(resolve, 1100))
    })
    await h.feed([0, 1, 2].map((n) => message(n, { n })))
    // After a second only event 0 is done (event 1 still runs): that prefix is committed then.
    expect(h.commits).toEqual(['1', '3'])
  })

  it('acknowledges without running the handler an envelope whose topic the pattern does not match', async () => {
    const seen: string[] = []
    const h = await harness((e) => {
      seen.push(e.topic)
    })
    const foreign: InboundMessage = {
      offset: '1',
      key: null,
      value: Buffer.from(encodeEvent(createEvent({ topic: 'unit.other', data: 1 }))),
    }
    await h.feed([message(0, { n: 0 }), foreign, message(2, { n: 2 })])
    expect(seen).toEqual([TOPIC, TOPIC])
    expect(h.commits.at(-1)).toBe('3')
  })

  it('leaves no abort listener behind per batch', async () => {
    let signal: AbortSignal | undefined
    const h = await harness((_e, ctx) => {
      signal = ctx.signal
    })
    await h.feed([message(0, { n: 0 })])
    const before = getEventListeners(signal as AbortSignal, 'abort').length
    for (let i = 1; i <= 50; i++) await h.feed([message(i, { n: i })])
    expect(getEventListeners(signal as AbortSignal, 'abort').length).toBe(before)
    expect(h.commits.at(-1)).toBe('51')
  })

  it('with concurrency, never commits past an event whose handler has not finished', async () => {
    let releaseFirst: () => void = () => {}
    const first = new Promise<void>((resolve) => {
      releaseFirst = resolve
    })
    const done: number[] = []
    const h = await harness(
      async (e) => {
        const n = (e.data as { n: number }).n
        if (n === 0) await first
        done.push(n)
      },
      { concurrency: 4 },
    )
    const batch = h.feed([0, 1, 2, 3].map((n) => message(100 + n, { n })))
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(done.sort()).toEqual([1, 2, 3])
    expect(h.commits).toEqual([])
    releaseFirst()
    await batch
    expect(h.commits.at(-1)).toBe('104')
  })

  it('dead-letters a message that is not an envelope, with the reason, and keeps going', async () => {
    const seen: string[] = []
    const h = await harness(
      (e) => {
        seen.push(e.id)
      },
      { deadLetter: 'unit.dead' },
    )
    const good = message(6, { ok: true })
    await h.feed([{ offset: '5', key: null, value: Buffer.from('not json {') }, good])
    expect(seen).toHaveLength(1)
    expect(h.published).toHaveLength(1)
    const letter = h.published[0] as EventInput
    expect(letter.topic).toBe('unit.dead')
    expect(letter.headers?.[DLQ_HEADERS.reason]).toMatch(
      /not a valid Omnibus\/CloudEvents envelope: not JSON/,
    )
    expect(letter.headers?.[FOREIGN_HEADERS.nativeId]).toBe(`${TOPIC}:0:5`)
    expect(Buffer.from(letter.data as Uint8Array).toString()).toBe('not json {')
    expect(h.commits.at(-1)).toBe('7')
  })

  it('retries in place, then dead-letters after maxAttempts before moving the offset', async () => {
    let runs = 0
    const h = await harness(
      () => {
        runs++
        throw new Error('boom')
      },
      { retry: { maxAttempts: 3, initialDelayMs: 1, jitter: 0 }, deadLetter: 'unit.dead' },
    )
    await h.feed([message(0, { n: 1 })])
    expect(runs).toBe(3)
    expect(h.published).toHaveLength(1)
    expect(h.published[0]?.headers?.[DLQ_HEADERS.attempts]).toBe('3')
    expect(h.commits.at(-1)).toBe('1')
  })

  it('exactly-once acknowledges a repeated id without running the handler again', async () => {
    let runs = 0
    const h = await harness(
      () => {
        runs++
      },
      { guarantee: 'exactly-once' },
    )
    await h.feed([message(0, { n: 1 }, 'same-id'), message(1, { n: 1 }, 'same-id'), message(2, { n: 2 })])
    expect(runs).toBe(2)
    expect(h.commits.at(-1)).toBe('3')
  })

  it('at-most-once commits the batch before its handlers run and does not retry', async () => {
    let commitsWhenHandled = -1
    let runs = 0
    const h = await harness(
      () => {
        runs++
        commitsWhenHandled = h.commits.length
        throw new Error('lost on purpose')
      },
      { guarantee: 'at-most-once' },
    )
    await h.feed([message(0, { n: 1 })])
    expect(runs).toBe(1)
    expect(commitsWhenHandled).toBe(1)
    expect(h.commits).toEqual(['1'])
  })
})

describe('delivery counts that outlive a consumer', () => {
  it('a message whose consumers die while handling it is dead-lettered after maxAttempts deliveries, not run again', async () => {
    const records: RecordTopic = { records: [] }
    const opts: SubscribeOptions = { retry: { maxAttempts: 3, initialDelayMs: 1 }, deadLetter: 'unit.dead' }
    const batch = () => [message(0, { poison: true }, 'poison-id'), message(1, { n: 1 }, 'after-id')]
    const attempts: number[] = []
    let handledAfter = 0
    // Each life runs the poison message and never returns, as a process killed by it would.
    const life = async (k: number) => {
      const h = await harness(
        (e, ctx) => {
          if ((e.data as { poison?: boolean }).poison) {
            attempts.push(ctx.attempt)
            return new Promise<never>(() => {})
          }
          handledAfter++
          return undefined
        },
        opts,
        // The dead members are gone from the group.
        { records, memberId: `member-${k}`, members: [`member-${k}`] },
      )
      void h.feed(batch())
      await new Promise((resolve) => setTimeout(resolve, 20))
      return h
    }
    for (let k = 1; k <= 3; k++) await life(k)
    expect(attempts).toEqual([1, 2, 3])
    const last = await harness(
      (e) => {
        if ((e.data as { poison?: boolean }).poison) attempts.push(-1)
        else handledAfter++
      },
      opts,
      { records, memberId: 'member-4', members: ['member-4'] },
    )
    await last.feed(batch())
    expect(attempts, 'the poison message is not run a fourth time').toEqual([1, 2, 3])
    expect(last.published).toHaveLength(1)
    const letter = last.published[0] as EventInput
    expect(letter.headers?.[DLQ_HEADERS.originalId]).toBe('poison-id')
    expect(letter.headers?.[DLQ_HEADERS.attempts]).toBe('3')
    expect(handledAfter).toBe(1)
    expect(last.commits.at(-1)).toBe('2')
  })

  it('a late count from a member that was cut off does not lower the count', async () => {
    const book = createAttemptBook(memoryRecordLog())
    await book.delivered('g', TOPIC, 0, '5', 2)
    await book.delivered('g', TOPIC, 0, '5', 1)
    const history = await book.begin('g', TOPIC, 0, '5', 'member-3', async () => true)
    expect(history.counts?.get('5')).toBe(2)
  })

  it('a member cut off from a partition does not mark it cleanly stopped over the new owner', async () => {
    const book = createAttemptBook(memoryRecordLog())
    await book.position('g', TOPIC, 0, '5', 'member-1', false)
    await book.position('g', TOPIC, 0, '5', 'member-2', false)
    await book.stopped('g', TOPIC, 0, '5', 'member-1')
    const history = await book.begin('g', TOPIC, 0, '5', 'member-3', async () => false)
    expect(history.suspect, 'member-2 died there: its position is still the last').toBe(true)
  })

  it('commits renew a position at most once per renewal interval, and a death after later commits is still suspect', async () => {
    const log = memoryRecordLog()
    // Retention 400 ms: positions are renewed after 100 ms.
    const book = createAttemptBook(log, 400)
    const positions = () => log.topic.records.filter(([key]) => key.startsWith('\u0001c'))
    const first = await book.begin('g', TOPIC, 0, '5', 'member-1', async () => true)
    expect(first.suspect).toBe(false)
    expect(positions()).toHaveLength(1)
    await book.committed('g', TOPIC, 0, '105', 'member-1')
    await book.committed('g', TOPIC, 0, '205', 'member-1')
    expect(positions(), 'commits within the interval write no record').toHaveLength(1)
    await new Promise((resolve) => setTimeout(resolve, 120))
    await book.committed('g', TOPIC, 0, '305', 'member-1')
    expect(positions().map(([, v]) => (JSON.parse(v) as { o: string }).o)).toEqual(['5', '305'])
    await book.committed('g', TOPIC, 0, '405', 'member-1')
    expect(positions()).toHaveLength(2)
    // member-1 dies after committing 405: its last position (305) is before where the next owner
    // starts, so the next owner knows the death happened in its first batch.
    const next = createAttemptBook(memoryRecordLog(log.topic))
    expect((await next.begin('g', TOPIC, 0, '405', 'member-2', async () => false)).suspect).toBe(true)
    // An owner that starts before the dead member's position (its commits were lost) is not.
    const earlier = createAttemptBook(memoryRecordLog({ records: log.topic.records.slice(0, 2) }))
    expect((await earlier.begin('g', TOPIC, 0, '100', 'member-3', async () => false)).suspect).toBe(false)
  })

  it('a partition handed on by a member that is still in the group is not suspect', async () => {
    const records: RecordTopic = { records: [] }
    const first = await harness(() => {}, {}, { records, memberId: 'member-1' })
    await first.feed([message(0, { n: 0 })])
    const attempts: number[] = []
    const second = await harness(
      (_e, ctx) => {
        attempts.push(ctx.attempt)
      },
      {},
      { records, memberId: 'member-2', members: ['member-1', 'member-2'] },
    )
    await second.feed([message(1, { n: 1 }), message(2, { n: 2 })])
    expect(attempts).toEqual([1, 1])
  })

  it('a retry is counted in the records before it runs again, so a death during it counts', async () => {
    const records: RecordTopic = { records: [] }
    const h = await harness(
      (_e, ctx) => {
        if (ctx.attempt === 1) throw new Error('first attempt fails')
        return new Promise<never>(() => {})
      },
      { retry: { maxAttempts: 5, initialDelayMs: 1, jitter: 0 } },
      { records },
    )
    void h.feed([message(7, { n: 7 })])
    await new Promise((resolve) => setTimeout(resolve, 50))
    const counts = records.records.filter(([key]) => key.startsWith('\u0001e')).map(([, v]) => JSON.parse(v))
    expect(counts.map((c) => [c.o, c.n])).toEqual([['7', 2]])
  })
})

describe('ordering', () => {
  it('with concurrency, a retried event holds its key: the next event of the key starts after it succeeded', async () => {
    const log: string[] = []
    const h = await harness(
      async (e, ctx) => {
        const { seq } = e.data as { seq: number }
        log.push(`start ${seq}`)
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (seq === 1 && ctx.attempt === 1) throw new Error('retry once')
        log.push(`end ${seq}`)
      },
      { concurrency: 4, retry: { maxAttempts: 3, initialDelayMs: 10, jitter: 0 } },
    )
    const keyed = (offset: number, seq: number): InboundMessage => ({
      offset: String(offset),
      key: null,
      value: Buffer.from(encodeEvent(createEvent({ topic: TOPIC, data: { seq }, partitionKey: 'k' }))),
    })
    await h.feed([0, 1, 2, 3].map((n) => keyed(n, n)))
    expect(log).toEqual([
      'start 0',
      'end 0',
      'start 1',
      'start 1',
      'end 1',
      'start 2',
      'end 2',
      'start 3',
      'end 3',
    ])
    expect(h.commits.at(-1)).toBe('4')
  })
})

describe('exactly-once claims over the records topic', () => {
  it('the first claim in log order wins across stores; commit makes the id done; release frees it', async () => {
    // Two processes, each reading the same records topic.
    const topic: RecordTopic = { records: [] }
    const a = createKafkaDedupeStore({ log: memoryRecordLog(topic), ttlMs: 60_000, maxEntries: 100 })
    const b = createKafkaDedupeStore({ log: memoryRecordLog(topic), ttlMs: 60_000, maxEntries: 100 })
    expect(await a.claim('g', 'id-1', 'A', 1000)).toBe('claimed')
    expect(await b.claim('g', 'id-1', 'B', 1000)).toBe('busy')
    expect(await a.claim('g', 'id-1', 'A', 1000), 'the holder renews its claim').toBe('claimed')
    await a.release('g', 'id-1', 'A')
    expect(await b.claim('g', 'id-1', 'B', 1000)).toBe('claimed')
    await b.commit('g', 'id-1', 'B')
    expect(await a.claim('g', 'id-1', 'A', 1000)).toBe('done')
    expect(await a.claim('other-group', 'id-1', 'A', 1000)).toBe('claimed')
  })

  it('a claim whose holder stopped renewing it expires by the times in the records', async () => {
    const a = createKafkaDedupeStore({ log: memoryRecordLog(), ttlMs: 60_000, maxEntries: 100 })
    expect(await a.claim('g', 'id-2', 'A', 1)).toBe('claimed')
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(await a.claim('g', 'id-2', 'B', 1000)).toBe('claimed')
  })

  it('two copies of one id delivered at once run once', async () => {
    let runs = 0
    const h = await harness(
      async () => {
        runs++
        await new Promise((resolve) => setTimeout(resolve, 5))
      },
      { guarantee: 'exactly-once', concurrency: 4, retry: { initialDelayMs: 1 } },
    )
    await h.feed([message(0, { n: 1 }, 'twin'), message(1, { n: 1 }, 'twin'), message(2, { n: 2 })])
    expect(runs).toBe(2)
    expect(h.commits.at(-1)).toBe('3')
  })
})
