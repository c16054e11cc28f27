import { getEventListeners } from 'node:events'
import {
  createEvent,
  DLQ_HEADERS,
  type EventHandler,
  type EventInput,
  type SubscribeOptions,
  silentLogger,
} from '@omnibus/core'
import { encodeEvent, MemoryDedupeStore, resolveSubscribeOptions } from '@omnibus/core/backend'
import { describe, expect, it } from 'vitest'
import type { BatchControl, ConsumerSpec, InboundMessage, KafkaClient } from '../src/client.ts'
import { KafkaSubscription } from '../src/subscription.ts'

const TOPIC = 'unit.orders'

/** A subscription over a client whose consumer is driven by hand: the test feeds batches. */
async function harness(handler: EventHandler, opts: SubscribeOptions = {}) {
  let spec: ConsumerSpec | undefined
  const client = {
    createConsumer(s: ConsumerSpec) {
      spec = s
      return {
        async start() {
          s.onJoin?.({})
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
      dedupe: new MemoryDedupeStore(),
      heartbeatIntervalMs: 1000,
      groupJoinTimeoutMs: 1000,
      endpoint: 'unit',
      publish: async (input) => {
        published.push(input)
      },
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
  }
  const feed = (messages: InboundMessage[]) =>
    (spec as ConsumerSpec).onBatch({ topic: TOPIC, partition: 0, messages }, control)
  return { sub, feed, commits, published }
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
    const h = await harness((e) => {
      seen.push((e.data as { n: number }).n)
    })
    const batch = h.feed(Array.from({ length: 20 }, (_, n) => message(n, { n })))
    expect(seen).toHaveLength(20)
    await batch
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
    expect(h.commits).toEqual(['2', '3'])
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
    expect(letter.headers?.[DLQ_HEADERS.reason]).toMatch(/offset 5.*not JSON/)
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
