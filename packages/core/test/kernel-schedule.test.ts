import { describe, expect, it } from 'vitest'
import { encodeEvent } from '../src/codec.ts'
import { createEvent } from '../src/envelope.ts'
import { TimeoutError } from '../src/errors.ts'
import { DLQ_HEADERS, EXPIRED_REASON } from '../src/kernel/dead-letter.ts'
import type { OmnibusEvent } from '../src/protocol.ts'
import { MAX_TIMER_DELAY_MS } from '../src/schedule.ts'
import { waitUntil } from '../src/testing.ts'
import { deferred, fakeBrokers, message, recordingLogger } from './kernel-fake.ts'

const setup = fakeBrokers()

/** A message whose envelope carries `fields` as they arrive from the wire (no publish-side checks). */
function scheduled(fields: { deliverAt?: number; expiresAt?: number }, deliveryCount = 1) {
  const msg = message({ topic: 'a.b', data: 1 }, deliveryCount)
  msg.event = { ...(msg.event as OmnibusEvent), ...fields }
  return msg
}

describe('ConsumerKernel: delayed events', () => {
  it('redelivers a message before its deliverAt for the rest of the delay, with the same count', async () => {
    const b = setup()
    b.redeliver = false
    const seen: number[] = []
    const k = b.member(() => {
      seen.push(1)
    })
    const before = Date.now()
    k.deliver(scheduled({ deliverAt: before + 5_000 }, 2))
    expect(seen).toEqual([])
    expect(b.acked).toEqual([])
    expect(b.redelivered).toHaveLength(1)
    const r = b.redelivered[0] as { delayMs: number; deliveryCount: number }
    expect(r.deliveryCount).toBe(2)
    expect(r.delayMs).toBeGreaterThan(4_900)
    expect(r.delayMs).toBeLessThanOrEqual(5_000)
    // The slot frees up at once: holding a message is not running it.
    await waitUntil(() => k.running === 0 && b.settled === 1)
  })

  it('runs it once it is due, as attempt 1', async () => {
    const b = setup()
    const attempts: number[] = []
    const arrived: number[] = []
    const k = b.member((_e, ctx) => {
      attempts.push(ctx.attempt)
      arrived.push(Date.now())
    })
    const deliverAt = Date.now() + 60
    k.deliver(scheduled({ deliverAt }))
    await waitUntil(() => b.acked.length === 1)
    expect(attempts).toEqual([1])
    expect(arrived[0]).toBeGreaterThanOrEqual(deliverAt)
  })

  it('asks for at most one timer at a time for a very long delay', () => {
    const b = setup()
    b.redeliver = false
    const k = b.member(() => {})
    k.deliver(scheduled({ deliverAt: Date.now() + 40 * 86_400_000 }))
    expect(b.redelivered[0]?.delayMs).toBe(MAX_TIMER_DELAY_MS)
  })

  it('holds an at-most-once message too, without acknowledging it first', () => {
    const b = setup()
    b.redeliver = false
    const seen: number[] = []
    const k = b.member(() => void seen.push(1), { guarantee: 'at-most-once' })
    k.deliver(scheduled({ deliverAt: Date.now() + 1_000 }))
    expect(b.acked).toEqual([])
    expect(b.redelivered).toHaveLength(1)
    expect(seen).toEqual([])
  })

  it('reads deliverAt from a raw body the kernel decodes', () => {
    const b = setup()
    b.redeliver = false
    const k = b.member(() => {})
    const body = encodeEvent(createEvent({ topic: 'a.b', data: 1, delayMs: 10_000 }))
    k.deliver(message({ topic: 'a.b', body }))
    expect(b.redelivered).toHaveLength(1)
    expect(b.acked).toEqual([])
  })
})

describe('ConsumerKernel: expired events', () => {
  it('dead-letters an expired message with reason expired, without running the handler, once', async () => {
    const b = setup()
    const logger = recordingLogger()
    const seen: number[] = []
    const expired: string[] = []
    const k = b.member(
      () => void seen.push(1),
      { group: 'g', onExpired: (e) => void expired.push(e.id) },
      { logger },
    )
    const expiresAt = Date.now() - 10
    const m = scheduled({ expiresAt }, 3)
    k.deliver(m)
    await waitUntil(() => b.acked.length === 1)
    expect(seen).toEqual([])
    expect(b.deadLetters).toHaveLength(1)
    const letter = b.deadLetters[0]
    expect(letter?.headers?.[DLQ_HEADERS.reason]).toBe(EXPIRED_REASON)
    expect(letter?.headers?.[DLQ_HEADERS.reason]).toBe('expired')
    expect(letter?.headers?.[DLQ_HEADERS.originalId]).toBe(m.event?.id)
    expect(letter?.headers?.[DLQ_HEADERS.attempts]).toBe('2')
    expect(letter?.headers?.[DLQ_HEADERS.group]).toBe('g')
    expect(letter?.headers?.[DLQ_HEADERS.errorName]).toBe('TimeoutError')
    expect(letter?.headers?.[DLQ_HEADERS.errorMessage]).toContain(new Date(expiresAt).toISOString())
    // The letter itself carries no expiry: it is kept, not expired again.
    expect(letter?.expiresAt).toBeUndefined()
    expect(expired).toEqual([m.event?.id])
    expect(k.expired).toBe(1)
    expect(logger.lines.filter((l) => l.fields?.reason === 'expired')).toHaveLength(1)
  })

  it("drops it with expired: 'drop', counted and reported", async () => {
    const b = setup()
    const logger = recordingLogger()
    const expired: string[] = []
    const k = b.member(() => {}, { expired: 'drop', onExpired: (e) => void expired.push(e.id) }, { logger })
    const m = scheduled({ expiresAt: Date.now() - 1 })
    k.deliver(m)
    await waitUntil(() => b.acked.length === 1)
    expect(b.deadLetters).toEqual([])
    expect(expired).toEqual([m.event?.id])
    expect(k.expired).toBe(1)
    expect(logger.lines.filter((l) => l.message.includes('expired event dropped'))).toHaveLength(1)
  })

  it('reports an expired event once even when its dead letter had to be published again', async () => {
    const b = setup()
    b.failDeadLetters = 1
    const expired: string[] = []
    const k = b.member(() => {}, {
      retry: { initialDelayMs: 1, jitter: 0 },
      onExpired: (e) => void expired.push(e.id),
    })
    k.deliver(scheduled({ expiresAt: Date.now() - 1 }))
    await waitUntil(() => b.deadLetters.length === 1 && b.acked.length === 1)
    expect(expired).toHaveLength(1)
    expect(k.expired).toBe(1)
  })

  it('runs a message that expires later, and aborts its signal at expiresAt', async () => {
    const b = setup()
    let reason: unknown
    const started = deferred()
    b.member(async (_e, ctx) => {
      started.resolve()
      await new Promise<void>((resolve) => {
        ctx.signal.addEventListener('abort', () => {
          reason = ctx.signal.reason
          resolve()
        })
      })
    })
    const expiresAt = Date.now() + 80
    b.deliver(scheduled({ expiresAt }))
    await started.promise
    await waitUntil(() => b.acked.length === 1, { timeoutMs: 2_000 })
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt)
    expect(reason).toBeInstanceOf(TimeoutError)
    expect((reason as TimeoutError).code).toBe('EXPIRED')
  })

  it('leaves the signal of a handler that finished before expiry alone, and the subscription signal with it', async () => {
    const b = setup()
    const signals: AbortSignal[] = []
    const k = b.member((_e, ctx) => void signals.push(ctx.signal))
    const expiresAt = Date.now() + 30
    k.deliver(scheduled({ expiresAt }))
    k.deliver(message({ topic: 'a.b', data: 2 }))
    await waitUntil(() => b.acked.length === 2)
    // Past the expiry (and the timer it would have had): nothing aborted it.
    await waitUntil(() => Date.now() > expiresAt + 20)
    expect(signals[0]?.aborted).toBe(false)
    // Events without expiresAt keep the subscription's own signal.
    expect(signals[1]).toBe(k.signal)
  })

  it('aborts each of several running handlers at its own expiresAt, whatever order they started in', async () => {
    const b = setup()
    const now = Date.now()
    // Started late-first; the one at +40 finishes on its own before its expiry.
    const plan = [
      { data: 0, expiresAt: now + 200 },
      { data: 1, expiresAt: now + 60 },
      { data: 2, expiresAt: now + 40, finish: deferred() },
      { data: 3, expiresAt: now + 120 },
    ]
    const abortedAt = new Map<number, number>()
    const signals = new Map<number, AbortSignal>()
    const k = b.member(
      async (e, ctx) => {
        const step = plan[e.data as number] as (typeof plan)[number]
        signals.set(step.data, ctx.signal)
        await new Promise<void>((resolve) => {
          step.finish?.promise.then(resolve)
          ctx.signal.addEventListener('abort', () => {
            abortedAt.set(step.data, Date.now())
            resolve()
          })
        })
      },
      { concurrency: 4 },
    )
    for (const step of plan) {
      const msg = message({ topic: 'a.b', data: step.data })
      msg.event = { ...(msg.event as OmnibusEvent), expiresAt: step.expiresAt }
      k.deliver(msg)
    }
    await waitUntil(() => signals.size === 4)
    plan[2]?.finish?.resolve()
    await waitUntil(() => b.acked.length === 4, { timeoutMs: 3_000 })
    expect([...abortedAt.keys()].sort()).toEqual([0, 1, 3])
    for (const step of plan) {
      if (step.data === 2) continue
      expect(abortedAt.get(step.data)).toBeGreaterThanOrEqual(step.expiresAt)
      const reason = signals.get(step.data)?.reason as TimeoutError
      expect(reason).toBeInstanceOf(TimeoutError)
      expect(reason.code).toBe('EXPIRED')
    }
    expect(signals.get(2)?.aborted).toBe(false)
  })

  it('gives a handler that first reads its signal after expiresAt an aborted one', async () => {
    const b = setup()
    const expiresAt = Date.now() + 30
    let signal: AbortSignal | undefined
    b.member(async (_e, ctx) => {
      await waitUntil(() => Date.now() > expiresAt)
      signal = ctx.signal
    })
    b.deliver(scheduled({ expiresAt }))
    await waitUntil(() => b.acked.length === 1)
    expect(signal?.aborted).toBe(true)
    expect((signal?.reason as TimeoutError | undefined)?.code).toBe('EXPIRED')
  })

  it('aborts an expiring handler when the subscription closes past its drain timeout', async () => {
    const b = setup()
    let aborted = false
    const k = b.member(async (_e, ctx) => {
      await new Promise<void>((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          aborted = true
          resolve()
        }),
      )
    })
    k.deliver(scheduled({ expiresAt: Date.now() + 60_000 }))
    await k.close(20)
    expect(aborted).toBe(true)
  })

  it('checks expiry when the message starts, not when it arrived', async () => {
    const b = setup()
    const gate = deferred()
    const seen: number[] = []
    const k = b.member(
      async (e) => {
        seen.push(e.data as number)
        if (e.data === 1) await gate.promise
      },
      { concurrency: 1 },
    )
    k.deliver(message({ topic: 'a.b', data: 1 }))
    const expiresAt = Date.now() + 20
    k.deliver(scheduled({ expiresAt }))
    await waitUntil(() => Date.now() > expiresAt)
    gate.resolve()
    await waitUntil(() => b.acked.length === 2)
    expect(seen).toEqual([1])
    expect(b.deadLetters.map((d) => d.headers?.[DLQ_HEADERS.reason])).toEqual(['expired'])
  })
})
