import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  backoffDelay,
  DEFAULT_RETRY,
  DLQ_HEADERS,
  deadLetterInput,
  decideFailure,
  HandlerRunner,
  invokeHandler,
  KeyedLimiter,
  MemoryDedupeStore,
  PendingCall,
  type ResolvedRetryPolicy,
  redriveInput,
  resolveRetryPolicy,
  resolveSubscribeOptions,
  silentLogger,
} from '../src/delivery.ts'
import { createEvent, currentEvent } from '../src/envelope.ts'
import { CapabilityError, ConfigurationError, InvalidTopicError } from '../src/errors.ts'
import type { BackendCapabilities, OmnibusEvent, Subscription } from '../src/protocol.ts'
import { waitUntil } from '../src/testing.ts'

const caps: BackendCapabilities = {
  guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
  persistent: true,
  crossProcess: true,
  groups: true,
  orderedPerKey: true,
  replay: true,
  maxPayloadBytes: undefined,
  networked: false,
  wildcardDiscoveryMs: 0,
  delay: false,
}
const backend = { name: 'test', capabilities: caps }
const subscription: Subscription = {
  id: 's',
  pattern: 'a.*',
  group: undefined,
  active: true,
  unsubscribe: async () => {},
}
const noop = () => {}

describe('resolveSubscribeOptions', () => {
  it('fills defaults', () => {
    const o = resolveSubscribeOptions(backend, 'a.*', noop)
    expect(o).toMatchObject({
      pattern: 'a.*',
      group: undefined,
      guarantee: 'at-least-once',
      concurrency: 1,
      from: 'latest',
      retry: DEFAULT_RETRY,
      deadLetter: 'omnibus.deadletter',
      signal: undefined,
      visibilityTimeoutMs: undefined,
      expired: 'dead-letter',
      onExpired: undefined,
    })
  })

  it('refuses what the backend does not offer with CapabilityError', () => {
    const weak = {
      name: 'weak',
      capabilities: { ...caps, guarantees: ['at-most-once'] as const, groups: false, replay: false },
    }
    expect(() => resolveSubscribeOptions(weak, 'a', noop, { guarantee: 'exactly-once' })).toThrow(
      CapabilityError,
    )
    expect(() => resolveSubscribeOptions(weak, 'a', noop, { guarantee: 'exactly-once' })).toThrow(
      /weak backend does not offer exactly-once delivery \(it offers at-most-once\)/,
    )
    expect(() => resolveSubscribeOptions(weak, 'a', noop, { guarantee: 'at-most-once', group: 'g' })).toThrow(
      /does not support consumer groups/,
    )
    expect(() =>
      resolveSubscribeOptions(weak, 'a', noop, { guarantee: 'at-most-once', from: 'earliest' }),
    ).toThrow(/cannot replay history/)
  })

  it('rejects bad patterns, handlers and options with messages that say what to fix', () => {
    expect(() => resolveSubscribeOptions(backend, 'a..b', noop)).toThrow(InvalidTopicError)
    expect(() => resolveSubscribeOptions(backend, 'a', 'nope')).toThrow(
      /needs a handler function, got string/,
    )
    expect(() => resolveSubscribeOptions(backend, 'a', noop, { group: 'bad group' })).toThrow(
      /group "bad group" is invalid/,
    )
    expect(() => resolveSubscribeOptions(backend, 'a', noop, { concurrency: 0 })).toThrow(
      /concurrency must be an integer >= 1, got 0/,
    )
    expect(() => resolveSubscribeOptions(backend, 'a', noop, { deadLetter: 'dl q' })).toThrow(
      InvalidTopicError,
    )
    expect(() => resolveSubscribeOptions(backend, 'a', noop, { from: 'middle' as 'latest' })).toThrow(
      /from must be/,
    )
    expect(resolveSubscribeOptions(backend, 'a', noop, { deadLetter: false }).deadLetter).toBe(false)
  })
})

describe('resolveRetryPolicy', () => {
  it('merges with the defaults and validates every field', () => {
    expect(resolveRetryPolicy({ maxAttempts: 2 })).toEqual({ ...DEFAULT_RETRY, maxAttempts: 2 })
    expect(() => resolveRetryPolicy({ maxAttempts: 0 })).toThrow(/retry.maxAttempts must be an integer >= 1/)
    expect(() => resolveRetryPolicy({ initialDelayMs: -1 })).toThrow(
      /retry.initialDelayMs must be a number >= 0/,
    )
    expect(() => resolveRetryPolicy({ multiplier: 0.5 })).toThrow(/retry.multiplier must be >= 1/)
    expect(() => resolveRetryPolicy({ jitter: 1.5 })).toThrow(/retry.jitter must be between 0 and 1/)
    expect(() => resolveRetryPolicy({ maxDelayMs: Number.NaN })).toThrow(ConfigurationError)
  })
})

describe('backoffDelay', () => {
  const policy: ResolvedRetryPolicy = {
    maxAttempts: 10,
    initialDelayMs: 100,
    maxDelayMs: 5000,
    multiplier: 2,
    jitter: 0.2,
  }

  it('grows exponentially up to the cap, without jitter at random() = 0', () => {
    const schedule = [1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelay(policy, a, () => 0))
    expect(schedule).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000])
  })

  it('stays within the jitter bounds for any random value', () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const base = Math.min(5000, 100 * 2 ** (attempt - 1))
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(policy, attempt)
        expect(d).toBeGreaterThanOrEqual(Math.floor(base * 0.8))
        expect(d).toBeLessThanOrEqual(base)
      }
      expect(backoffDelay(policy, attempt, () => 1)).toBe(Math.round(base * 0.8))
    }
  })

  it('with full jitter spans zero to the delay, and jitter 0 is exact', () => {
    expect(backoffDelay({ ...policy, jitter: 1 }, 3, () => 1)).toBe(0)
    expect(backoffDelay({ ...policy, jitter: 0 }, 3, () => 0.7)).toBe(400)
  })
})

describe('decideFailure', () => {
  const opts = { retry: { ...DEFAULT_RETRY, maxAttempts: 3, jitter: 0 }, deadLetter: 'dlq' as const }
  const failure = { kind: 'retry' as const, delayMs: undefined, error: new TypeError('bad input') }

  it('retries on the backoff schedule until maxAttempts runs have failed, then dead-letters', () => {
    expect(decideFailure({ ...opts, guarantee: 'at-least-once' }, 1, failure)).toEqual({
      action: 'retry',
      delayMs: 100,
    })
    expect(decideFailure({ ...opts, guarantee: 'at-least-once' }, 2, failure)).toEqual({
      action: 'retry',
      delayMs: 200,
    })
    expect(decideFailure({ ...opts, guarantee: 'exactly-once' }, 3, failure)).toEqual({
      action: 'dead-letter',
      reason: 'failed 3 of 3 attempts: TypeError: bad input',
    })
  })

  it("uses the handler's own delay, and dead-letters at once when the handler asks", () => {
    expect(decideFailure({ ...opts, guarantee: 'at-least-once' }, 1, { ...failure, delayMs: 7 })).toEqual({
      action: 'retry',
      delayMs: 7,
    })
    expect(
      decideFailure({ ...opts, guarantee: 'at-least-once' }, 1, {
        kind: 'dead-letter',
        reason: 'poison',
        error: undefined,
      }),
    ).toEqual({ action: 'dead-letter', reason: 'poison' })
  })

  it('drops for at-most-once and when dead-lettering is off', () => {
    expect(decideFailure({ ...opts, guarantee: 'at-most-once' }, 1, failure).action).toBe('drop')
    expect(decideFailure({ ...opts, deadLetter: false, guarantee: 'at-least-once' }, 3, failure)).toEqual({
      action: 'drop',
      reason: 'failed 3 of 3 attempts: TypeError: bad input',
    })
    expect(
      decideFailure({ ...opts, guarantee: 'at-least-once' }, 3, { ...failure, error: 'plain string' }),
    ).toEqual({
      action: 'dead-letter',
      reason: 'failed 3 of 3 attempts: plain string',
    })
  })
})

describe('dead letters', () => {
  const original = createEvent({
    topic: 'orders.created',
    data: { order: 42, note: 'ünïcode ✓' },
    id: 'evt-1',
    source: 'shop',
    correlationId: 'corr-1',
    partitionKey: 'customer-7',
    headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tenant: 'acme' },
  })

  it('carries the original and the diagnostics, and redrives back to the original', () => {
    const dlq = deadLetterInput(original, 'omnibus.deadletter', {
      reason: 'failed 5 of 5 attempts: Error: boom',
      group: 'billing',
      attempts: 5,
      firstFailureAt: Date.UTC(2026, 0, 1, 10),
      lastFailureAt: Date.UTC(2026, 0, 1, 11),
      error: new RangeError('boom'),
      backend: 'memory',
    })
    expect(dlq).toMatchObject({
      topic: 'omnibus.deadletter',
      data: original.data,
      id: 'evt-1.dlq.billing',
      source: 'shop',
      causationId: 'evt-1',
      correlationId: 'corr-1',
      partitionKey: 'customer-7',
      guarantee: 'at-least-once',
    })
    expect(dlq.headers).toEqual({
      ...original.headers,
      [DLQ_HEADERS.originalTopic]: 'orders.created',
      [DLQ_HEADERS.originalId]: 'evt-1',
      [DLQ_HEADERS.group]: 'billing',
      [DLQ_HEADERS.attempts]: '5',
      [DLQ_HEADERS.firstFailure]: '2026-01-01T10:00:00.000Z',
      [DLQ_HEADERS.lastFailure]: '2026-01-01T11:00:00.000Z',
      [DLQ_HEADERS.errorName]: 'RangeError',
      [DLQ_HEADERS.errorMessage]: 'boom',
      [DLQ_HEADERS.reason]: 'failed 5 of 5 attempts: Error: boom',
      [DLQ_HEADERS.backend]: 'memory',
    })
    const back = redriveInput(createEvent(dlq))
    expect(back).toEqual({
      topic: 'orders.created',
      data: original.data,
      id: 'evt-1',
      source: 'shop',
      headers: original.headers,
      correlationId: 'corr-1',
      partitionKey: 'customer-7',
      guarantee: 'at-least-once',
    })
  })

  it('names broadcast dead letters, records non-Error failures and bounds long texts', () => {
    const dlq = deadLetterInput(original, 'dlq', {
      reason: 'r'.repeat(5000),
      group: undefined,
      attempts: 1,
      firstFailureAt: 0,
      lastFailureAt: 0,
      error: 42,
      backend: 'memory',
    })
    expect(dlq.id).toBe('evt-1.dlq.broadcast')
    expect(dlq.headers?.[DLQ_HEADERS.group]).toBeUndefined()
    expect(dlq.headers?.[DLQ_HEADERS.errorName]).toBe('number')
    expect(dlq.headers?.[DLQ_HEADERS.errorMessage]).toBe('42')
    expect(dlq.headers?.[DLQ_HEADERS.reason]).toHaveLength(2000)
  })

  it('refuses to redrive an event that is not a dead letter', () => {
    expect(() => redriveInput(original)).toThrow(/has no dead-letter headers: nothing to redrive/)
  })
})

describe('invokeHandler', () => {
  const event = createEvent({ topic: 'a', data: 1, id: 'e1' })
  const args = { event, attempt: 2, subscription, logger: silentLogger, signal: new AbortController().signal }

  it('acks when the handler returns or resolves, with the context and the causation scope', async () => {
    let seen: { attempt: number; current: OmnibusEvent | undefined } | undefined
    const outcome = await invokeHandler({
      ...args,
      handler: async (_e, ctx) => {
        await Promise.resolve()
        seen = { attempt: ctx.attempt, current: currentEvent() }
      },
    })
    expect(outcome).toEqual({ kind: 'ack' })
    expect(seen).toEqual({ attempt: 2, current: event })
  })

  it('asks for a retry when the handler throws or calls ctx.retry, and dead-letters on ctx.deadLetter', async () => {
    const err = new Error('x')
    expect(
      await invokeHandler({
        ...args,
        handler: () => {
          throw err
        },
      }),
    ).toEqual({ kind: 'retry', delayMs: undefined, error: err })
    expect(await invokeHandler({ ...args, handler: (_e, ctx) => ctx.retry(250) })).toMatchObject({
      kind: 'retry',
      delayMs: 250,
    })
    expect(await invokeHandler({ ...args, handler: (_e, ctx) => ctx.deadLetter('poison') })).toEqual({
      kind: 'dead-letter',
      reason: 'poison',
      error: undefined,
    })
  })
  it('returns the outcome of a synchronous handler as a plain value, and waits for promises and thenables', async () => {
    let current: OmnibusEvent | undefined
    const sync = invokeHandler({
      ...args,
      handler: () => {
        current = currentEvent()
      },
    })
    expect(sync).not.toBeInstanceOf(Promise)
    expect(sync).toEqual({ kind: 'ack' })
    expect(current).toBe(event)
    expect(invokeHandler({ ...args, handler: (_e, ctx) => ctx.retry(5) })).toMatchObject({
      kind: 'retry',
      delayMs: 5,
    })

    const err = new Error('late')
    const rejected = invokeHandler({ ...args, handler: () => Promise.reject(err) })
    expect(rejected).toBeInstanceOf(Promise)
    expect(await rejected).toEqual({ kind: 'retry', delayMs: undefined, error: err })

    let resolveThen: () => void = () => {}
    const thenable = {
      // biome-ignore lint/suspicious/noThenProperty: a foreign promise-like is what this case is about
      then(ok: () => void) {
        resolveThen = ok
      },
    }
    let settled = false
    const pending = Promise.resolve(invokeHandler({ ...args, handler: () => thenable as never })).then(
      (o) => {
        settled = true
        return o
      },
    )
    await new Promise((resolve) => setTimeout(resolve, 5))
    expect(settled).toBe(false)
    resolveThen()
    expect(await pending).toEqual({ kind: 'ack' })
  })
})

describe('HandlerRunner', () => {
  const signal = new AbortController().signal
  const events = Array.from({ length: 40 }, (_, i) => createEvent({ topic: 'a.b', data: i, id: `e${i}` }))
  const tick = () => new Promise((resolve) => setTimeout(resolve, 1))

  it('keeps the full async scope for async handlers: events published after an await inherit causation', async () => {
    const children: OmnibusEvent[] = []
    const runner = new HandlerRunner(
      async () => {
        await Promise.resolve()
        children.push(createEvent({ topic: 'child', data: null }))
      },
      subscription,
      silentLogger,
      signal,
    )
    for (const event of events) expect(await runner.run(event, 1)).toEqual({ kind: 'ack' })
    expect(runner.synchronousScope).toBe(false)
    expect(children.map((c) => c.causationId)).toEqual(events.map((e) => e.id))
  })

  it('runThen: a value for a synchronous handler, a pending call settled once by callback for an async one, with causation', async () => {
    const children: OmnibusEvent[] = []
    const settled: Array<[unknown, string]> = []
    const settle = (outcome: unknown, owner: string) => void settled.push([outcome, owner])
    let fail = false
    const asyncRunner = new HandlerRunner(
      async (_e, ctx) => {
        await Promise.resolve()
        children.push(createEvent({ topic: 'child', data: null }))
        if (fail) throw new Error('boom')
        if (ctx.attempt === 2) ctx.deadLetter('bad')
      },
      subscription,
      silentLogger,
      signal,
    )
    const first = asyncRunner.runThen(events[0] as OmnibusEvent, 1, undefined, settle)
    expect(first).toBeInstanceOf(PendingCall)
    ;(first as PendingCall<string>).owner = 'one'
    const second = asyncRunner.runThen(events[1] as OmnibusEvent, 2, undefined, settle)
    ;(second as PendingCall<string>).owner = 'two'
    await waitUntil(() => settled.length === 2)
    fail = true
    const third = asyncRunner.runThen(events[2] as OmnibusEvent, 1, undefined, settle)
    ;(third as PendingCall<string>).owner = 'three'
    await waitUntil(() => settled.length === 3)
    expect(settled[0]).toEqual([{ kind: 'ack' }, 'one'])
    expect(settled[1]).toEqual([{ kind: 'dead-letter', reason: 'bad', error: undefined }, 'two'])
    expect(settled[2]?.[1]).toBe('three')
    expect(settled[2]?.[0]).toMatchObject({ kind: 'retry', error: new Error('boom') })
    expect(children.map((c) => c.causationId)).toEqual(['e0', 'e1', 'e2'])
    const syncRunner = new HandlerRunner(
      () => {
        throw new Error('sync boom')
      },
      subscription,
      silentLogger,
      signal,
    )
    expect(syncRunner.runThen(events[0] as OmnibusEvent, 1, undefined, settle)).toMatchObject({
      kind: 'retry',
      error: new Error('sync boom'),
    })
    await tick()
    expect(settled).toHaveLength(3)
  })

  it('moves a synchronous handler to the synchronous scope after its warm-up, keeping causation for what it publishes', () => {
    const children: OmnibusEvent[] = []
    const runner = new HandlerRunner(
      () => {
        children.push(createEvent({ topic: 'child', data: null }))
      },
      subscription,
      silentLogger,
      signal,
    )
    const modes: boolean[] = []
    for (const event of events) {
      const outcome = runner.run(event, 1)
      expect(outcome).toEqual({ kind: 'ack' })
      modes.push(runner.synchronousScope)
    }
    expect(modes.indexOf(true)).toBe(15)
    expect(modes.slice(15).every(Boolean)).toBe(true)
    expect(children.map((c) => c.causationId)).toEqual(events.map((e) => e.id))
    expect(children.every((c) => c.correlationId === c.causationId)).toBe(true)
    // Nothing leaks out of the scope once the handler returned.
    expect(currentEvent()).toBeUndefined()
  })

  it('goes back to the async scope for good once a handler returns a promise', async () => {
    let asyncNow = false
    const children: OmnibusEvent[] = []
    const runner = new HandlerRunner(
      () => {
        if (!asyncNow) return undefined
        return tick().then(() => {
          children.push(createEvent({ topic: 'child', data: null }))
        })
      },
      subscription,
      silentLogger,
      signal,
    )
    for (const event of events.slice(0, 20)) runner.run(event, 1)
    expect(runner.synchronousScope).toBe(true)
    asyncNow = true
    // The first promise was started in the synchronous scope; from the next call on, the scope is async.
    expect(await runner.run(events[20] as OmnibusEvent, 1)).toEqual({ kind: 'ack' })
    expect(runner.synchronousScope).toBe(false)
    for (const event of events.slice(21, 25)) expect(await runner.run(event, 1)).toEqual({ kind: 'ack' })
    expect(children[0]?.causationId).toBeUndefined()
    expect(children.slice(1).map((c) => c.causationId)).toEqual(events.slice(21, 25).map((e) => e.id))
  })

  it('turns throws, ctx.retry and ctx.deadLetter into outcomes in either scope, destructured actions included', () => {
    const err = new Error('boom')
    let behaviour = 'ack'
    const seen: Array<{ attempt: number; subscription: Subscription; signal: AbortSignal }> = []
    const runner = new HandlerRunner(
      (_e, ctx) => {
        seen.push({ attempt: ctx.attempt, subscription: ctx.subscription, signal: ctx.signal })
        const { retry, deadLetter } = ctx
        if (behaviour === 'throw') throw err
        if (behaviour === 'retry') retry(70)
        if (behaviour === 'dead') deadLetter('poison')
      },
      subscription,
      silentLogger,
      signal,
    )
    const round = (attempt: number) => {
      const event = events[attempt] as OmnibusEvent
      behaviour = 'throw'
      expect(runner.run(event, attempt)).toEqual({ kind: 'retry', delayMs: undefined, error: err })
      behaviour = 'retry'
      expect(runner.run(event, attempt)).toMatchObject({ kind: 'retry', delayMs: 70 })
      behaviour = 'dead'
      expect(runner.run(event, attempt)).toEqual({ kind: 'dead-letter', reason: 'poison', error: undefined })
      behaviour = 'ack'
      expect(runner.run(event, attempt)).toEqual({ kind: 'ack' })
    }
    round(1)
    expect(runner.synchronousScope).toBe(false)
    for (let i = 0; i < 5; i++) round(2)
    expect(runner.synchronousScope).toBe(true)
    round(3)
    expect(seen.at(-1)).toEqual({ attempt: 3, subscription, signal })
  })
})

describe('MemoryDedupeStore', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('remembers ids per group for the time to live', () => {
    vi.useFakeTimers()
    vi.setSystemTime(1_000_000)
    const store = new MemoryDedupeStore({ ttlMs: 1000 })
    store.add('g1', 'a')
    expect(store.has('g1', 'a')).toBe(true)
    expect(store.has('g2', 'a')).toBe(false)
    vi.setSystemTime(1_001_000)
    expect(store.has('g1', 'a')).toBe(true)
    vi.setSystemTime(1_001_001)
    expect(store.has('g1', 'a')).toBe(false)
    expect(store.size).toBe(0)
  })

  it('keeps at most maxEntries, forgetting the least recently added first', () => {
    const store = new MemoryDedupeStore({ maxEntries: 3 })
    for (const id of ['a', 'b', 'c']) store.add('g', id)
    store.add('g', 'a') // refreshed: now the newest
    store.add('g', 'd')
    expect(store.size).toBe(3)
    expect(['a', 'b', 'c', 'd'].map((id) => store.has('g', id))).toEqual([true, false, true, true])
  })

  it('forgets the oldest id of any group first', () => {
    vi.useFakeTimers()
    const store = new MemoryDedupeStore({ maxEntries: 3 })
    const at = (ms: number, group: string, id: string) => {
      vi.setSystemTime(1_000_000 + ms)
      store.add(group, id)
    }
    at(1, 'g1', 'a')
    at(2, 'g2', 'b')
    at(3, 'g1', 'c')
    at(4, 'g2', 'd')
    expect(store.size).toBe(3)
    expect([store.has('g1', 'a'), store.has('g2', 'b'), store.has('g1', 'c'), store.has('g2', 'd')]).toEqual([
      false,
      true,
      true,
      true,
    ])
    at(5, 'g3', 'e')
    expect(store.has('g2', 'b')).toBe(false)
    expect(store.size).toBe(3)
  })

  it('does not confuse group and id boundaries', () => {
    const store = new MemoryDedupeStore()
    store.add('a.b', 'c')
    expect(store.has('a', 'b.c')).toBe(false)
  })
})

describe('KeyedLimiter', () => {
  const tick = () => new Promise((r) => setTimeout(r, Math.random() * 3))

  it('never runs more than its concurrency at once', async () => {
    const limiter = new KeyedLimiter(3)
    let running = 0
    let peak = 0
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        limiter.run(i % 2 === 0 ? undefined : `k${i % 7}`, async () => {
          running++
          peak = Math.max(peak, running, limiter.running)
          await tick()
          running--
        }),
      ),
    )
    expect(peak).toBe(3)
    expect(limiter.running).toBe(0)
    expect(limiter.pending).toBe(0)
  })

  it('runs tasks of one key one at a time in submission order, other keys alongside', async () => {
    const limiter = new KeyedLimiter(4)
    const log = new Map<string, number[]>()
    const busy = new Set<string>()
    let overlap = false
    await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        const key = `k${i % 3}`
        return limiter.run(key, async () => {
          if (busy.has(key)) overlap = true
          busy.add(key)
          await tick()
          log.set(key, [...(log.get(key) ?? []), i])
          busy.delete(key)
        })
      }),
    )
    expect(overlap).toBe(false)
    for (const [key, list] of log) {
      expect(list).toEqual(Array.from({ length: 60 }, (_, i) => i).filter((i) => `k${i % 3}` === key))
    }
  })

  it('passes results and errors through, and onIdle resolves when everything is done', async () => {
    const limiter = new KeyedLimiter(1)
    await expect(limiter.onIdle()).resolves.toBeUndefined()
    const done: number[] = []
    const a = limiter.run('k', async () => {
      await tick()
      done.push(1)
      return 'a'
    })
    const b = limiter.run('k', async () => {
      throw new Error('b failed')
    })
    const c = limiter.run(undefined, async () => {
      done.push(3)
    })
    expect(limiter.pending).toBe(2)
    await limiter.onIdle()
    expect(done).toEqual([1, 3])
    await expect(a).resolves.toBe('a')
    await expect(b).rejects.toThrow('b failed')
    await c
  })

  it('survives a task that throws synchronously or returns a plain value', async () => {
    const limiter = new KeyedLimiter(1)
    const syncThrow = (() => {
      throw new Error('sync failure')
    }) as unknown as () => Promise<void>
    await expect(limiter.run('k', syncThrow)).rejects.toThrow('sync failure')
    const plain = (() => 7) as unknown as () => Promise<number>
    await expect(limiter.run('k', plain)).resolves.toBe(7)
    // The slot and the key were released: the next task of that key still runs.
    await expect(limiter.run('k', async () => 'next')).resolves.toBe('next')
    expect(limiter.running).toBe(0)
  })

  it('rejects a concurrency below 1', () => {
    expect(() => new KeyedLimiter(0)).toThrow(ConfigurationError)
    expect(() => new KeyedLimiter(1.5)).toThrow(/concurrency must be an integer >= 1/)
  })
})
