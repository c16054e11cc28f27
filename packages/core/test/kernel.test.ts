import { describe, expect, it, vi } from 'vitest'
import { encodeEvent } from '../src/codec.ts'
import { createEvent } from '../src/envelope.ts'
import { ConfigurationError } from '../src/errors.ts'
import { DLQ_HEADERS } from '../src/kernel/dead-letter.ts'
import { FOREIGN_HEADERS, FOREIGN_TOPIC } from '../src/kernel/foreign.ts'
import type { HandlerContext, OmnibusEvent } from '../src/protocol.ts'
import { waitUntil } from '../src/testing.ts'
import { deferred, fakeBrokers, message, recordingLogger } from './kernel-fake.ts'

const setup = fakeBrokers()

describe('ConsumerKernel: outcomes', () => {
  it('acks a handled message, with the delivery count as the attempt', async () => {
    const b = setup()
    const seen: Array<[string, number]> = []
    const k = b.member((e, ctx) => {
      seen.push([e.topic, ctx.attempt])
    })
    const m = message({ topic: 'a.b', data: 1 }, 3)
    k.deliver(m)
    expect(seen).toEqual([['a.b', 3]])
    expect(b.acked).toEqual([m])
    expect(k.running).toBe(0)
  })

  it('acks an async handler once it resolves', async () => {
    const b = setup()
    const gate = deferred()
    const k = b.member(async () => {
      await gate.promise
    })
    k.deliver(message({ topic: 'a.b', data: 1 }))
    await new Promise((r) => setImmediate(r))
    expect(b.acked).toHaveLength(0)
    expect(k.running).toBe(1)
    gate.resolve()
    await waitUntil(() => b.acked.length === 1)
    expect(k.running).toBe(0)
  })

  it('retries a failing handler with backoff, then dead-letters it with diagnostics', async () => {
    const b = setup()
    const attempts: number[] = []
    b.member(
      (_e, ctx) => {
        attempts.push(ctx.attempt)
        throw new TypeError('boom')
      },
      { retry: { maxAttempts: 3, initialDelayMs: 1, jitter: 0 }, group: 'g' },
    )
    const m = message({ topic: 'a.b', data: { x: 1 } })
    b.deliver(m)
    await waitUntil(() => b.deadLetters.length === 1)
    expect(attempts).toEqual([1, 2, 3])
    expect(b.redelivered.map((r) => [r.deliveryCount, r.delayMs])).toEqual([
      [2, 1],
      [3, 2],
    ])
    const dl = b.deadLetters[0]
    expect(dl?.topic).toBe('omnibus.deadletter')
    expect(dl?.data).toEqual({ x: 1 })
    expect(dl?.headers?.[DLQ_HEADERS.originalTopic]).toBe('a.b')
    expect(dl?.headers?.[DLQ_HEADERS.attempts]).toBe('3')
    expect(dl?.headers?.[DLQ_HEADERS.group]).toBe('g')
    expect(dl?.headers?.[DLQ_HEADERS.errorName]).toBe('TypeError')
    expect(dl?.headers?.[DLQ_HEADERS.backend]).toBe('fake')
    expect(dl?.headers?.[DLQ_HEADERS.reason]).toMatch(/failed 3 of 3 attempts: TypeError: boom/)
    // The first failure time is the first run's, kept across retries.
    expect(Date.parse(dl?.headers?.[DLQ_HEADERS.firstFailure] ?? '')).toBeLessThanOrEqual(
      Date.parse(dl?.headers?.[DLQ_HEADERS.lastFailure] ?? ''),
    )
    await waitUntil(() => b.acked.length === 1)
  })

  it('dead-letters what a handler threw even when it cannot be printed', async () => {
    const b = setup()
    b.member(
      () => {
        throw Object.create(null)
      },
      { retry: { maxAttempts: 1 } },
    )
    b.deliver(message({ topic: 'a.b', data: 1 }))
    await waitUntil(() => b.deadLetters.length === 1)
    expect(b.deadLetters[0]?.headers?.[DLQ_HEADERS.errorMessage]).toBe('[object Object]')
    expect(b.acked).toHaveLength(1)
  })

  it('honours ctx.retry(delay) and ctx.deadLetter(reason)', async () => {
    const b = setup()
    b.member((e, ctx: HandlerContext) => {
      if (e.data === 'retry' && ctx.attempt === 1) ctx.retry(7)
      if (e.data === 'dl') ctx.deadLetter('not for us')
    })
    b.redeliver = false
    b.deliver(message({ topic: 'a.b', data: 'retry' }))
    b.deliver(message({ topic: 'a.b', data: 'dl' }))
    await waitUntil(() => b.deadLetters.length === 1)
    expect(b.redelivered.map((r) => [r.delayMs, r.deliveryCount])).toEqual([[7, 2]])
    expect(b.deadLetters[0]?.headers?.[DLQ_HEADERS.reason]).toBe('not for us')
  })

  it('drops after the last attempt with deadLetter: false, logging it', async () => {
    const b = setup()
    const logger = recordingLogger()
    b.member(
      () => {
        throw new Error('no')
      },
      { retry: { maxAttempts: 1 }, deadLetter: false },
      { logger },
    )
    b.deliver(message({ topic: 'a.b', data: 1 }))
    await waitUntil(() => b.acked.length === 1)
    expect(b.deadLetters).toHaveLength(0)
    expect(logger.lines.some((l) => l.level === 'warn' && /deadLetter: false/.test(l.message))).toBe(true)
  })

  it('at-most-once acks before the handler runs and never redelivers', async () => {
    const b = setup()
    const order: string[] = []
    b.member(
      () => {
        order.push(`run, acked ${b.acked.length}`)
        throw new Error('lost')
      },
      { guarantee: 'at-most-once' },
      { adapter: { ack: () => void order.push('ack') } },
    )
    b.deliver(message({ topic: 'a.b', data: 1 }))
    await waitUntil(() => order.length === 2)
    await new Promise((r) => setTimeout(r, 5))
    expect(order).toEqual(['ack', 'run, acked 0'])
    expect(b.redelivered).toHaveLength(0)
    expect(b.deadLetters).toHaveLength(0)
  })

  it('retries a failed dead-letter publish on the next delivery without running the handler again', async () => {
    const b = setup()
    let runs = 0
    b.member(
      () => {
        runs++
        throw new Error('bad')
      },
      { retry: { maxAttempts: 1, initialDelayMs: 1 } },
    )
    b.failDeadLetters = 1
    b.deliver(message({ topic: 'a.b', data: 1 }))
    await waitUntil(() => b.deadLetters.length === 1)
    expect(runs).toBe(1)
    expect(b.deadLetters[0]?.headers?.[DLQ_HEADERS.reason]).toMatch(/failed 1 of 1 attempts: Error: bad/)
    expect(b.acked).toHaveLength(1)
  })

  it('refuses exactly-once without a dedupe store', () => {
    const b = setup()
    expect(() => b.member(() => {}, { guarantee: 'exactly-once' })).toThrow(ConfigurationError)
  })
})

describe('ConsumerKernel: poison guard', () => {
  it('dead-letters a message delivered more than maxAttempts times without running it', async () => {
    const b = setup()
    let runs = 0
    b.member(
      () => {
        runs++
      },
      { retry: { maxAttempts: 3 }, group: 'g' },
    )
    b.deliver(message({ topic: 'a.b', data: 'kills its consumer' }, 4))
    await waitUntil(() => b.acked.length === 1)
    expect(runs).toBe(0)
    expect(b.deadLetters).toHaveLength(1)
    const h = b.deadLetters[0]?.headers ?? {}
    expect(h[DLQ_HEADERS.reason]).toMatch(
      /delivered 4 times without being settled, more than maxAttempts \(3\)/,
    )
    expect(h[DLQ_HEADERS.attempts]).toBe('3')
    expect(h[DLQ_HEADERS.originalTopic]).toBe('a.b')
  })

  it('still runs the last allowed delivery, and the group keeps consuming', async () => {
    const b = setup()
    const seen: unknown[] = []
    b.member((e) => void seen.push(e.data), { retry: { maxAttempts: 3 } })
    b.deliver(message({ topic: 'a.b', data: 'third' }, 3))
    b.deliver(message({ topic: 'a.b', data: 'poison' }, 9))
    b.deliver(message({ topic: 'a.b', data: 'next' }, 1))
    await waitUntil(() => b.acked.length === 3)
    expect(seen).toEqual(['third', 'next'])
    expect(b.deadLetters).toHaveLength(1)
  })

  it('does not apply to at-most-once (already acknowledged on the wire)', async () => {
    const b = setup()
    let runs = 0
    b.member(() => void runs++, { guarantee: 'at-most-once', retry: { maxAttempts: 1 } })
    b.deliver(message({ topic: 'a.b', data: 1 }, 5))
    await waitUntil(() => runs === 1)
    expect(b.deadLetters).toHaveLength(0)
  })
})

describe('ConsumerKernel: dead-letter loop guard', () => {
  it('drops a dead letter whose own handler fails, with an error log, instead of dead-lettering it again', async () => {
    const b = setup()
    const logger = recordingLogger()
    let runs = 0
    b.member(
      () => {
        runs++
        throw new Error('the dead-letter handler is broken')
      },
      { pattern: 'omnibus.**', retry: { maxAttempts: 2, initialDelayMs: 1 } },
      { logger },
    )
    b.deliver(message({ topic: 'omnibus.deadletter', data: 'a letter' }))
    await waitUntil(() => b.acked.length === 1)
    await new Promise((r) => setTimeout(r, 10))
    expect(runs).toBe(2)
    expect(b.deadLetters).toHaveLength(0)
    expect(
      logger.lines.some(
        (l) => l.level === 'error' && /failed in its own handler and is dropped/.test(l.message),
      ),
    ).toBe(true)
  })

  it('applies to a custom dead-letter topic and to the poison guard', async () => {
    const b = setup()
    b.member(() => {}, { pattern: '**', deadLetter: 'app.dlq', retry: { maxAttempts: 1 } })
    b.deliver(message({ topic: 'app.dlq', data: 1 }, 5))
    await waitUntil(() => b.acked.length === 1)
    expect(b.deadLetters).toHaveLength(0)
  })
})

describe('ConsumerKernel: foreign messages', () => {
  it('decodes a raw body itself', () => {
    const b = setup()
    const seen: OmnibusEvent[] = []
    const k = b.member((e) => void seen.push(e))
    const event = createEvent({ topic: 'a.raw', data: { ok: true } })
    k.deliver({ nativeId: '7', topic: 'a.raw', deliveryCount: 1, event: undefined, body: encodeEvent(event) })
    expect(seen.map((e) => [e.id, e.data])).toEqual([[event.id, { ok: true }]])
  })

  it('dead-letters an undecodable body as the stand-in event, without running the handler', async () => {
    const b = setup()
    let runs = 0
    b.member(() => void runs++, { group: 'g' })
    b.deliver(message({ topic: 'a.raw', body: 'not json at all' }, 1, 'stream-a:1-0'))
    await waitUntil(() => b.acked.length === 1)
    expect(runs).toBe(0)
    const dl = b.deadLetters[0]
    expect(dl?.id).toBe('foreign:fake:stream-a:1-0.dlq.g')
    expect(dl?.data).toBe('not json at all')
    expect(dl?.headers?.[DLQ_HEADERS.originalTopic]).toBe('a.raw')
    expect(dl?.headers?.[DLQ_HEADERS.originalId]).toBe('foreign:fake:stream-a:1-0')
    expect(dl?.headers?.[FOREIGN_HEADERS.backend]).toBe('fake')
    expect(dl?.headers?.[FOREIGN_HEADERS.nativeId]).toBe('stream-a:1-0')
    expect(dl?.headers?.[DLQ_HEADERS.reason]).toMatch(/^not a valid Omnibus\/CloudEvents envelope: not JSON/)
    expect(dl?.source).toBe('omnibus:fake')
  })

  it('names an invalid wire topic in a header and uses the foreign topic', async () => {
    const b = setup()
    b.member(() => {})
    const bytes = new Uint8Array([0, 1, 255])
    b.deliver(message({ topic: 'queue/with spaces', body: bytes }))
    await waitUntil(() => b.deadLetters.length === 1)
    const dl = b.deadLetters[0]
    expect(dl?.headers?.[DLQ_HEADERS.originalTopic]).toBe(FOREIGN_TOPIC)
    expect(dl?.headers?.[FOREIGN_HEADERS.wireTopic]).toBe('queue/with spaces')
    expect(dl?.data).toEqual(bytes)
  })
})

describe('ConsumerKernel: concurrency', () => {
  it('runs up to `concurrency` handlers at once, really at once', async () => {
    const b = setup()
    const gates = Array.from({ length: 8 }, () => deferred())
    let running = 0
    let peak = 0
    const k = b.member(
      async (e) => {
        running++
        peak = Math.max(peak, running)
        await gates[e.data as number]?.promise
        running--
      },
      { concurrency: 4 },
    )
    for (let i = 0; i < 8; i++) k.deliver(message({ topic: 'a.b', data: i }))
    // All four start before any finishes: a serial consumer would sit at 1 here.
    await waitUntil(() => running === 4)
    expect(k.running).toBe(4)
    expect(k.queued).toBe(4)
    expect(k.free).toBe(0)
    for (const g of gates) g.resolve()
    await waitUntil(() => b.acked.length === 8)
    expect(peak).toBe(4)
    expect(k.free).toBe(4)
  })

  it('keeps per-partition-key order while running other keys in parallel', async () => {
    const b = setup()
    const log: string[] = []
    const k = b.member(
      async (e) => {
        const { key, n } = e.data as { key: string; n: number }
        log.push(`start ${key}${n}`)
        await new Promise((r) => setTimeout(r, key === 'x' ? 6 : 1))
        log.push(`end ${key}${n}`)
      },
      { concurrency: 4 },
    )
    for (let n = 0; n < 3; n++) {
      for (const key of ['x', 'y']) {
        k.deliver(message({ topic: 'a.b', data: { key, n }, partitionKey: key }))
      }
    }
    await waitUntil(() => b.acked.length === 6)
    for (const key of ['x', 'y']) {
      const mine = log.filter((l) => l.endsWith(`${key}0`) || l.endsWith(`${key}1`) || l.endsWith(`${key}2`))
      expect(mine).toEqual([
        `start ${key}0`,
        `end ${key}0`,
        `start ${key}1`,
        `end ${key}1`,
        `start ${key}2`,
        `end ${key}2`,
      ])
    }
    // y did not wait for x: y's last event ended before x's.
    expect(log.indexOf('end y2')).toBeLessThan(log.indexOf('end x2'))
  })

  it('concurrency 1 is strictly ordered and settles synchronous handlers without a promise', () => {
    const b = setup()
    const seen: number[] = []
    const k = b.member((e) => void seen.push(e.data as number))
    for (let i = 0; i < 100; i++) k.deliver(message({ topic: 'a.b', data: i }))
    // No await: every synchronous handler ran and was acknowledged inside deliver().
    expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(b.acked).toHaveLength(100)
    expect(b.settled).toBe(100)
  })

  it('an adapter whose ack is asynchronous: each message acked once, its slot held until the ack settles', async () => {
    for (const guarantee of ['at-least-once', 'at-most-once'] as const) {
      const b = setup()
      const acks: string[] = []
      const gate = deferred()
      const k = b.member(
        () => {},
        { guarantee, concurrency: 1 },
        {
          adapter: {
            ack: async (msg) => {
              acks.push(msg.nativeId)
              await gate.promise
            },
          },
        },
      )
      k.deliver(message({ topic: 'a.b', data: 1 }, 1, 'x1'))
      k.deliver(message({ topic: 'a.b', data: 2 }, 1, 'x2'))
      await new Promise((r) => setTimeout(r, 5))
      expect(acks).toEqual(['x1'])
      expect(k.running).toBe(1)
      gate.resolve()
      await waitUntil(() => b.settled === 2)
      expect(acks).toEqual(['x1', 'x2'])
      expect(k.running).toBe(0)
      b.stop()
    }
  })

  it('at-most-once acks and runs synchronous handlers inside deliver(), without a promise', () => {
    const b = setup()
    const order: string[] = []
    const k = b.member((e) => void order.push(`run ${e.data}, acked ${b.acked.length}`), {
      guarantee: 'at-most-once',
    })
    for (let i = 0; i < 3; i++) k.deliver(message({ topic: 'a.b', data: i }))
    // No await: each was acknowledged, then run, then settled, one after the other.
    expect(order).toEqual(['run 0, acked 1', 'run 1, acked 2', 'run 2, acked 3'])
    expect(b.settled).toBe(3)
    expect(k.running).toBe(0)
  })

  it('at-most-once does not run the handler when the ack throws, and frees its slot', () => {
    const b = setup()
    const logger = recordingLogger()
    let runs = 0
    const k = b.member(
      () => {
        runs++
      },
      { guarantee: 'at-most-once', concurrency: 1 },
      {
        logger,
        adapter: {
          ack: () => {
            throw new Error('channel closed')
          },
        },
      },
    )
    k.deliver(message({ topic: 'a.b', data: 1 }))
    k.deliver(message({ topic: 'a.b', data: 2 }))
    expect(runs).toBe(0)
    expect(k.running).toBe(0)
    expect(b.settled).toBe(2)
    expect(logger.lines.filter((l) => l.message.includes('ack failed'))).toHaveLength(2)
  })

  it('at-most-once logs a failing async handler once and never redelivers it', async () => {
    const b = setup()
    const logger = recordingLogger()
    const k = b.member(
      async () => {
        throw new Error('lost')
      },
      { guarantee: 'at-most-once' },
      { logger },
    )
    k.deliver(message({ topic: 'a.b', data: 1 }))
    expect(b.acked).toHaveLength(1)
    await waitUntil(() => b.settled === 1)
    expect(k.running).toBe(0)
    expect(b.redelivered).toHaveLength(0)
    expect(logger.lines.map((l) => l.message)).toEqual([
      'at-most-once handler failed; the event is not redelivered',
    ])
  })

  it('handles a delivery made from inside a synchronous handler after that handler', () => {
    const b = setup()
    const seen: number[] = []
    const k = b.member((e) => {
      seen.push(e.data as number)
      if (e.data === 0) k.deliver(message({ topic: 'a.b', data: 1 }))
      seen.push(-(e.data as number))
    })
    k.deliver(message({ topic: 'a.b', data: 0 }))
    expect(seen).toEqual([0, -0, 1, -1])
  })

  it('whenFree resolves when a slot frees up', async () => {
    const b = setup()
    const gate = deferred()
    const k = b.member(() => gate.promise)
    k.deliver(message({ topic: 'a.b', data: 1 }))
    let freed = false
    const wait = k.whenFree().then(() => {
      freed = true
    })
    await new Promise((r) => setImmediate(r))
    expect(freed).toBe(false)
    gate.resolve()
    await wait
    expect(k.free).toBe(1)
  })
})

describe('ConsumerKernel: drain and close', () => {
  it('an async handler that awaits its own unsubscribe does not deadlock', async () => {
    const b = setup()
    let after = false
    const k = b.member(
      async (_e, ctx) => {
        await ctx.subscription.unsubscribe()
        after = true
      },
      {},
      { drainTimeoutMs: 60_000 },
    )
    const started = Date.now()
    k.deliver(message({ topic: 'a.b', data: 1 }))
    await waitUntil(() => after, { timeoutMs: 2_000 })
    expect(Date.now() - started).toBeLessThan(2_000)
    expect(k.subscription.active).toBe(false)
    await waitUntil(() => b.acked.length === 1)
  })

  it('a synchronous handler that unsubscribes itself stops delivery of what follows', async () => {
    const b = setup()
    const seen: number[] = []
    let closing: Promise<void> | undefined
    const k = b.member(
      (e, ctx) => {
        seen.push(e.data as number)
        if (e.data === 1) closing = ctx.subscription.unsubscribe()
      },
      {},
      { drainTimeoutMs: 60_000 },
    )
    k.deliver(message({ topic: 'a.b', data: 1 }))
    await closing
    k.deliver(message({ topic: 'a.b', data: 2 }))
    expect(seen).toEqual([1])
    expect(b.released.map((m) => m.event?.data)).toEqual([2])
  })

  it('close returns within the drain timeout while a handler hangs, aborts its signal and hands its message back', async () => {
    const b = setup()
    let signal: AbortSignal | undefined
    const k = b.member(
      (_e, ctx) => {
        signal = ctx.signal
        return new Promise(() => {})
      },
      { group: 'g' },
    )
    const m = message({ topic: 'a.b', data: 'hangs' })
    k.deliver(m)
    const started = Date.now()
    await k.close(50)
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(45)
    expect(took).toBeLessThan(1_000)
    expect(signal?.aborted).toBe(true)
    expect(b.released).toEqual([m])
    // Its handler ran: the delivery counts, so a message that hangs every member meets the poison guard.
    expect(b.releasedStarted).toEqual([true])
    expect(b.acked).toHaveLength(0)
    expect(k.running).toBe(0)
    expect(b.settled).toBe(1)
  })

  it('waits for running handlers within the timeout, and releases what had not started', async () => {
    const b = setup()
    const gate = deferred()
    const k = b.member(() => gate.promise)
    const first = message({ topic: 'a.b', data: 1 })
    const second = message({ topic: 'a.b', data: 2 })
    k.deliver(first)
    k.deliver(second)
    const closed = k.close(10_000)
    await new Promise((r) => setTimeout(r, 5))
    expect(b.released).toEqual([second])
    expect(b.releasedStarted).toEqual([false])
    gate.resolve()
    await closed
    expect(b.acked).toEqual([first])
  })

  it('aborting the subscription signal unsubscribes; later deliveries are released', async () => {
    const b = setup()
    const controller = new AbortController()
    const k = b.member(() => {}, { signal: controller.signal })
    expect(k.subscription.active).toBe(true)
    controller.abort()
    expect(k.subscription.active).toBe(false)
    await k.close()
    k.deliver(message({ topic: 'a.b', data: 1 }))
    expect(b.released).toHaveLength(1)
  })

  it('calls the adapter stop, keeps delivering while it drains, then dispose', async () => {
    const b = setup()
    const steps: string[] = []
    const handed = deferred()
    const seen: unknown[] = []
    const k = b.member(
      (e) => void seen.push(e.data),
      {},
      {
        adapter: {
          stop: async () => {
            steps.push('stop')
            await handed.promise
          },
          dispose: () => void steps.push('dispose'),
        },
      },
    )
    const closed = k.close(5_000)
    k.deliver(message({ topic: 'a.b', data: 'held by the adapter' }))
    handed.resolve()
    await closed
    k.deliver(message({ topic: 'a.b', data: 'after' }))
    expect(steps).toEqual(['stop', 'dispose'])
    expect(seen).toEqual(['held by the adapter'])
  })

  it('rejects a bad drain timeout with ConfigurationError', async () => {
    const b = setup()
    const k = b.member(() => {})
    await expect(k.close(-1)).rejects.toThrow(ConfigurationError)
  })

  it('extends leases of running messages while their handlers run', async () => {
    const b = setup()
    const gate = deferred()
    const k = b.member(
      () => gate.promise,
      {},
      {
        leaseMs: 30,
        adapter: { extend: (msgs) => void b.extended.push([...msgs]) },
      },
    )
    const m = message({ topic: 'a.b', data: 1 })
    k.deliver(m)
    await waitUntil(() => b.extended.length >= 2)
    expect(b.extended[0]).toEqual([m])
    gate.resolve()
    await waitUntil(() => b.acked.length === 1)
    const count = b.extended.length
    await new Promise((r) => setTimeout(r, 40))
    expect(b.extended.length).toBe(count)
  })

  it('keeps one lease timer across async handlers run one after another (not one per event)', async () => {
    const b = setup()
    const intervals = vi.spyOn(globalThis, 'setInterval')
    try {
      const k = b.member(
        async () => {},
        {},
        { leaseMs: 3_000, adapter: { extend: (msgs) => void b.extended.push([...msgs]) } },
      )
      for (let i = 0; i < 50; i++) {
        k.deliver(message({ topic: 'a.b', data: i }))
        await waitUntil(() => b.acked.length === i + 1)
      }
      const leaseTimers = intervals.mock.calls.filter((call) => call[1] === 1_000)
      expect(leaseTimers.length).toBe(1)
      await k.close()
    } finally {
      intervals.mockRestore()
    }
  })
})

describe('ConsumerKernel: events handed as their own first delivery', () => {
  /** An adapter with firstDelivery/ackFirst that records what the kernel asked of it. */
  function eventAdapter() {
    const made: OmnibusEvent[] = []
    const ackedFirst: OmnibusEvent[] = []
    return {
      made,
      ackedFirst,
      adapter: {
        firstDelivery(event: OmnibusEvent) {
          made.push(event)
          return { nativeId: `first-${made.length}`, topic: event.topic, deliveryCount: 1, event }
        },
        ackFirst(event: OmnibusEvent) {
          ackedFirst.push(event)
        },
      },
    }
  }

  it('runs and acks a plain event without making a message', () => {
    const b = setup()
    const e = eventAdapter()
    const seen: Array<[string, number]> = []
    const k = b.member(
      (event, ctx) => {
        seen.push([event.id, ctx.attempt])
      },
      {},
      { adapter: e.adapter },
    )
    const event = createEvent({ topic: 'a.b', data: 1 })
    k.deliverEvent(event)
    expect(seen).toEqual([[event.id, 1]])
    expect(e.ackedFirst).toEqual([event])
    expect(e.made).toHaveLength(0)
    expect(b.acked).toHaveLength(0)
    expect(b.settled).toBe(1)
    expect(k.running).toBe(0)
  })

  it('makes a message for an async handler and acks that message once it resolves', async () => {
    const b = setup()
    const e = eventAdapter()
    const gate = deferred()
    const k = b.member(
      async () => {
        await gate.promise
      },
      {},
      { adapter: e.adapter },
    )
    const event = createEvent({ topic: 'a.b', data: 1 })
    k.deliverEvent(event)
    expect(e.made).toEqual([event])
    expect(k.running).toBe(1)
    gate.resolve()
    await waitUntil(() => b.acked.length === 1)
    expect(b.acked[0]?.nativeId).toBe('first-1')
    expect(e.ackedFirst).toHaveLength(0)
  })

  it('retries a failing handler through the message it made, counting from 1', async () => {
    const b = setup()
    b.redeliver = false
    const e = eventAdapter()
    const k = b.member(
      () => {
        throw new Error('boom')
      },
      { retry: { maxAttempts: 3, initialDelayMs: 5 } },
      { adapter: e.adapter },
    )
    k.deliverEvent(createEvent({ topic: 'a.b', data: 1 }))
    await waitUntil(() => b.redelivered.length === 1)
    expect(b.redelivered[0]?.msg.nativeId).toBe('first-1')
    expect(b.redelivered[0]?.deliveryCount).toBe(2)
    expect(e.ackedFirst).toHaveLength(0)
  })

  it('keeps events of one partition key in order through the message path', async () => {
    const b = setup()
    const e = eventAdapter()
    const order: number[] = []
    const gate = deferred()
    const k = b.member(
      async (event) => {
        order.push(event.data as number)
        if (event.data === 1) await gate.promise
      },
      { concurrency: 4 },
      { adapter: e.adapter },
    )
    k.deliverEvent(createEvent({ topic: 'a.b', data: 1, partitionKey: 'k' }))
    k.deliverEvent(createEvent({ topic: 'a.b', data: 2, partitionKey: 'k' }))
    k.deliverEvent(createEvent({ topic: 'a.b', data: 3 }))
    await waitUntil(() => order.length === 2)
    expect(order).toEqual([1, 3])
    gate.resolve()
    await waitUntil(() => b.acked.length === 3)
    expect(order).toEqual([1, 3, 2])
    expect(e.made).toHaveLength(3)
  })

  it('logs an ackFirst that throws and still frees the slot', () => {
    const b = setup()
    const logger = recordingLogger()
    const k = b.member(
      () => {},
      {},
      {
        logger,
        adapter: {
          ...eventAdapter().adapter,
          ackFirst() {
            throw new Error('queue gone')
          },
        },
      },
    )
    k.deliverEvent(createEvent({ topic: 'a.b', data: 1 }))
    expect(k.running).toBe(0)
    expect(b.settled).toBe(1)
    expect(logger.lines.some((l) => l.level === 'warn' && /ack failed/.test(l.message))).toBe(true)
  })

  it('refuses deliverEvent on an adapter without firstDelivery, naming what to use', () => {
    const b = setup()
    const k = b.member(() => {})
    expect(() => k.deliverEvent(createEvent({ topic: 'a.b', data: 1 }))).toThrow(/firstDelivery and ackFirst/)
  })
})
