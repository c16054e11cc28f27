import { randomUUID } from 'node:crypto'
import {
  CapabilityError,
  ConfigurationError,
  createBackend,
  DLQ_HEADERS,
  InvalidTopicError,
  NotConnectedError,
  type OmnibusEvent,
  PayloadTooLargeError,
  SerializationError,
  silentLogger,
} from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { backendFromUrl, createMemoryBackend, resolveMemoryOptions } from '../src/index.ts'
import { memoryBackends } from './backends.ts'

const { backend, track } = memoryBackends()

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

describe('options', () => {
  it('uses defaults when neither option nor environment says anything', () => {
    const o = resolveMemoryOptions({}, {})
    expect(o).toMatchObject({
      name: undefined,
      queueCapacity: 10_000,
      maxPayloadBytes: 1_048_576,
      validatePayloads: true,
      drainTimeoutMs: 10_000,
      dedupeTtlMs: 86_400_000,
      dedupeMaxEntries: 100_000,
      source: undefined,
    })
  })

  it('reads the environment when the option is absent, and the option wins over it', () => {
    const env = {
      OMNIBUS_MEMORY_NAME: 'from-env',
      OMNIBUS_MEMORY_QUEUE_CAPACITY: '50',
      OMNIBUS_MEMORY_MAX_PAYLOAD_BYTES: '4096',
      OMNIBUS_MEMORY_VALIDATE_PAYLOADS: 'false',
      OMNIBUS_MEMORY_DRAIN_TIMEOUT_MS: '0',
      OMNIBUS_MEMORY_SOURCE: 'svc-a',
    }
    expect(resolveMemoryOptions({}, env)).toMatchObject({
      name: 'from-env',
      queueCapacity: 50,
      maxPayloadBytes: 4096,
      validatePayloads: false,
      drainTimeoutMs: 0,
      source: 'svc-a',
    })
    expect(resolveMemoryOptions({ queueCapacity: 7, name: 'explicit' }, env)).toMatchObject({
      queueCapacity: 7,
      name: 'explicit',
    })
  })

  it('names the field, the bad value and the environment variable', () => {
    expect(() => resolveMemoryOptions({ queueCapacity: 0 }, {})).toThrow(
      /queueCapacity must be an integer >= 1, got 0/,
    )
    expect(() => resolveMemoryOptions({}, { OMNIBUS_MEMORY_QUEUE_CAPACITY: 'lots' })).toThrow(
      /queueCapacity must be an integer >= 1, got "lots" \(from the environment variable OMNIBUS_MEMORY_QUEUE_CAPACITY\)/,
    )
    expect(() => resolveMemoryOptions({ validatePayloads: 'maybe' }, {})).toThrow(
      /validatePayloads must be true or false/,
    )
    expect(() => resolveMemoryOptions({ name: 'has space' }, {})).toThrow(/name must be 1-200 letters/)
    expect(() => resolveMemoryOptions({ logger: {} }, {})).toThrow(ConfigurationError)
  })

  it('rejects unknown option names instead of ignoring a typo', () => {
    expect(() => resolveMemoryOptions({ queueCapasity: 5 }, {})).toThrow(
      /unknown memory backend option "queueCapasity" \(did you mean "queueCapacity"\?\): the known memory backend options are name, queueCapacity/,
    )
  })

  it('declares its capabilities, with maxPayloadBytes from the option', () => {
    const b = createMemoryBackend({ maxPayloadBytes: 1234 })
    expect(b.capabilities).toEqual({
      guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
      persistent: false,
      crossProcess: false,
      groups: true,
      orderedPerKey: true,
      replay: false,
      maxPayloadBytes: 1234,
      networked: false,
      wildcardDiscoveryMs: 0,
      delay: { maxDelayMs: 2_147_483_647 },
    })
    expect(createMemoryBackend().capabilities.maxPayloadBytes).toBe(1_048_576)
  })
})

describe('URLs', () => {
  it('memory:// is a private bus, memory://name a shared one, query parameters set options', () => {
    expect(backendFromUrl(new URL('memory://')).busName).toBeUndefined()
    const b = backendFromUrl(new URL('memory://Jobs-1?queueCapacity=5&drainTimeoutMs=20'))
    expect(b.busName).toBe('Jobs-1')
    expect(b.options.queueCapacity).toBe(5)
    expect(b.options.drainTimeoutMs).toBe(20)
    expect(
      backendFromUrl(new URL('memory://x?queueCapacity=5'), { queueCapacity: 9 }).options.queueCapacity,
    ).toBe(9)
  })

  it('rejects a path, a foreign scheme and unknown parameters', () => {
    expect(() => backendFromUrl(new URL('memory://bus/extra'))).toThrow(
      /has a path: name the bus as the host/,
    )
    expect(() => backendFromUrl(new URL('redis://localhost'))).toThrow(/takes memory:\/\/ URLs/)
    expect(() => backendFromUrl(new URL('memory://x?capacity=1'))).toThrow(
      /unknown memory URL parameter "capacity"/,
    )
  })

  it('is what the core registry creates for memory://', async () => {
    const b = await createBackend(`memory://reg-${randomUUID()}`)
    expect(b.name).toBe('memory')
    expect(b.isConnected).toBe(false)
  })
})

describe('errors', () => {
  it('publish, publishBatch and subscribe on a disconnected backend fail with NotConnectedError', async () => {
    const b = createMemoryBackend({ logger: silentLogger })
    await expect(b.publish({ topic: 'a', data: 1 })).rejects.toBeInstanceOf(NotConnectedError)
    await expect(b.publishBatch([{ topic: 'a', data: 1 }])).rejects.toBeInstanceOf(NotConnectedError)
    await expect(b.subscribe('a', () => {})).rejects.toBeInstanceOf(NotConnectedError)
    await b.connect()
    await b.disconnect()
    await expect(b.publish({ topic: 'a', data: 1 })).rejects.toThrow(/not connected; call connect\(\) first/)
  })

  it('rejects bad topics, patterns, payloads and replay with typed errors', async () => {
    const b = await backend({ maxPayloadBytes: 300 })
    await expect(b.publish({ topic: 'a.*', data: 1 })).rejects.toBeInstanceOf(InvalidTopicError)
    await expect(b.subscribe('a..b', () => {})).rejects.toBeInstanceOf(InvalidTopicError)
    await expect(b.publish({ topic: 'a', data: { n: 10n } })).rejects.toThrow(/a BigInt .* at data\.n/)
    await expect(b.publish({ topic: 'a', data: 'x'.repeat(400) })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    )
    await expect(b.subscribe('a', () => {}, { from: 'earliest' })).rejects.toBeInstanceOf(CapabilityError)
  })

  it('refuses what SQLite and Redis refuse by default: over 1 MiB encoded, counted in UTF-8', async () => {
    const b = await backend()
    // 400k three-byte characters: 1.2 MB in UTF-8 though only 400k UTF-16 units.
    await expect(b.publish({ topic: 'big', data: '日'.repeat(400_000) })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    )
    await expect(b.publish({ topic: 'big', data: new Uint8Array(1_048_576) })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    )
    await expect(b.publish({ topic: 'big', data: 'x'.repeat(1_000_000) })).resolves.toMatchObject({
      topic: 'big',
    })
    // A class whose toJSON writes a lot is measured exactly, not guessed.
    class Report {
      toJSON() {
        return 'y'.repeat(1_100_000)
      }
    }
    await expect(b.publish({ topic: 'big', data: { report: new Report() } as never })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    )
  })

  it('catches unencodable data whatever the size, unless validation is off', async () => {
    const strict = await backend()
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    await expect(strict.publish({ topic: 'a', data: cyclic })).rejects.toBeInstanceOf(SerializationError)
    await expect(strict.publish({ topic: 'a', data: { list: [1, Number.NaN] } })).rejects.toThrow(
      /the number NaN at data\.list\[1\]/,
    )
    await expect(strict.publish({ topic: 'a', data: { at: new Date(0), n: 1 } })).resolves.toMatchObject({})
    const loose = await backend({ validatePayloads: false })
    expect(loose.capabilities.maxPayloadBytes).toBeUndefined()
    await expect(loose.publish({ topic: 'a', data: new Map() })).resolves.toMatchObject({ topic: 'a' })
    await expect(loose.publish({ topic: 'a', data: 'x'.repeat(2_000_000) })).resolves.toMatchObject({})
  })

  it('a bad batch entry fails alone', async () => {
    const b = await backend()
    const seen: unknown[] = []
    await b.subscribe('batch', (e) => {
      seen.push(e.data)
    })
    const r = await b.publishBatch([
      { topic: 'batch', data: 1 },
      { topic: 'bad topic', data: 2 },
      { topic: 'batch', data: () => 3 },
      { topic: 'batch', data: 4 },
    ])
    expect(r.succeeded).toBe(2)
    expect(r.failed).toBe(2)
    expect(r.results.map((x) => x.ok)).toEqual([true, false, false, true])
    await waitUntil(() => seen.length === 2)
    expect(seen).toEqual([1, 4])
  })
})

describe('buses', () => {
  it('instances with one name share subscriptions; unnamed instances are isolated', async () => {
    const name = `shared-${randomUUID()}`
    const a = await backend({ name })
    const b = await backend({ name })
    const privateOne = await backend()
    const seen: string[] = []
    await b.subscribe('t', (e) => {
      seen.push(`b:${e.data}`)
    })
    await privateOne.subscribe('t', (e) => {
      seen.push(`private:${e.data}`)
    })
    await a.publish({ topic: 't', data: 1 })
    await waitUntil(() => seen.length >= 1)
    await privateOne.publish({ topic: 't', data: 2 })
    await waitUntil(() => seen.length >= 2)
    expect(seen.sort()).toEqual(['b:1', 'private:2'])
  })

  it('reports health while connected', async () => {
    const b = createMemoryBackend({ logger: silentLogger })
    expect((await b.healthCheck()).healthy).toBe(false)
    await b.connect()
    track(b)
    await b.subscribe('h', () => {})
    const h = await b.healthCheck()
    expect(h.healthy).toBe(true)
    expect(h.detail).toMatch(/private bus: 1 subscription/)
  })
})

describe('delivery', () => {
  it('delivers a long backlog once each and in order, keyed events among plain ones, async handlers after sync', async () => {
    // 12,000 events queued at once: the queue compacts its array while it drains, and keyed
    // events (every seventh) take the slower path between plain ones.
    const b = await backend({ queueCapacity: 20_000 })
    const seen: number[] = []
    let asyncFrom = Number.POSITIVE_INFINITY
    await b.subscribe('backlog.*', (e) => {
      const n = e.data as number
      seen.push(n)
      // From the middle on the handler returns a promise: events then wait for the one slot.
      if (n >= asyncFrom) return Promise.resolve()
      return undefined
    })
    const batch = (from: number) =>
      Array.from({ length: 6000 }, (_, i) => ({
        topic: 'backlog.n',
        data: from + i,
        ...((from + i) % 7 === 0 ? { partitionKey: `k${(from + i) % 3}` } : {}),
      }))
    const first = await b.publishBatch(batch(0))
    expect(first.failed).toBe(0)
    await waitUntil(() => seen.length === 6000)
    asyncFrom = 6000
    await b.publishBatch(batch(6000))
    await waitUntil(() => seen.length === 12_000, { timeoutMs: 10_000 })
    expect(seen).toEqual(Array.from({ length: 12_000 }, (_, i) => i))
  })

  it('gives the concrete topic and one delivery per subscription even through several trie paths', async () => {
    const b = await backend()
    const seen: string[] = []
    // `a.**` and `**.c` can both reach `a.b.c` through different splits; the event comes once.
    await b.subscribe('a.**', (e) => {
      seen.push(`1:${e.topic}`)
    })
    await b.subscribe('**.c', (e) => {
      seen.push(`2:${e.topic}`)
    })
    await b.subscribe('**.x.**', (e) => {
      seen.push(`3:${e.topic}`)
    })
    await b.publish({ topic: 'a.b.c', data: null })
    await b.publish({ topic: 'x.x.x', data: null })
    await waitUntil(() => seen.length === 3)
    await b.publish({ topic: 'z', data: null })
    await b.publish({ topic: 'a', data: null })
    await waitUntil(() => seen.length === 4)
    expect(seen.sort()).toEqual(['1:a', '1:a.b.c', '2:a.b.c', '3:x.x.x'])
  })

  it('spreads a group round-robin and gives every group each event', async () => {
    const name = `rr-${randomUUID()}`
    const counts = new Map<string, number>()
    const count = (k: string) => () => {
      counts.set(k, (counts.get(k) ?? 0) + 1)
    }
    const members = [await backend({ name }), await backend({ name }), await backend({ name })]
    for (const [i, m] of members.entries()) await m.subscribe('job', count(`g1-${i}`), { group: 'g1' })
    const other = await backend({ name })
    await other.subscribe('job', count('g2'), { group: 'g2' })
    const pub = await backend({ name })
    await pub.publishBatch(Array.from({ length: 30 }, (_, i) => ({ topic: 'job', data: i })))
    await waitUntil(() => (counts.get('g2') ?? 0) === 30)
    await waitUntil(() => [0, 1, 2].reduce((s, i) => s + (counts.get(`g1-${i}`) ?? 0), 0) === 30)
    expect([0, 1, 2].map((i) => counts.get(`g1-${i}`))).toEqual([10, 10, 10])
  })

  it('keeps per-key order with concurrency above 1, never above the limit', async () => {
    const b = await backend()
    let running = 0
    let peak = 0
    const byKey = new Map<string, number[]>()
    await b.subscribe(
      'k',
      async (e: OmnibusEvent<number>) => {
        running++
        peak = Math.max(peak, running)
        await new Promise((r) => setTimeout(r, (e.data * 7) % 5))
        byKey.set(e.partitionKey as string, [...(byKey.get(e.partitionKey as string) ?? []), e.data])
        running--
      },
      { concurrency: 4 },
    )
    await b.publishBatch(
      Array.from({ length: 60 }, (_, i) => ({ topic: 'k', data: i, partitionKey: `key${i % 3}` })),
    )
    await waitUntil(() => [...byKey.values()].reduce((s, l) => s + l.length, 0) === 60)
    expect(peak).toBeLessThanOrEqual(3) // three keys: never two events of one key at once
    expect(peak).toBeGreaterThan(1)
    for (const [k, list] of byKey) {
      const expected = Array.from({ length: 60 }, (_, i) => i).filter((i) => `key${i % 3}` === k)
      expect(list).toEqual(expected)
    }
  })

  it('holds later events of a key while one of them waits for its retry', async () => {
    const b = await backend()
    const order: string[] = []
    let failed = false
    await b.subscribe(
      'r',
      (e: OmnibusEvent<string>) => {
        if (e.data === 'a1' && !failed) {
          failed = true
          throw new Error('first try fails')
        }
        order.push(e.data)
      },
      { concurrency: 4, retry: { initialDelayMs: 20, jitter: 0 } },
    )
    await b.publishBatch([
      { topic: 'r', data: 'a1', partitionKey: 'a' },
      { topic: 'r', data: 'b1', partitionKey: 'b' },
      { topic: 'r', data: 'a2', partitionKey: 'a' },
      { topic: 'r', data: 'b2', partitionKey: 'b' },
    ])
    await waitUntil(() => order.length === 4)
    expect(order.indexOf('a1')).toBeLessThan(order.indexOf('a2'))
    expect(order.slice(0, 2)).toEqual(['b1', 'b2']) // key b is not held up by key a's retry
  })

  it('lets unkeyed events pass a long line of events waiting for one busy key', async () => {
    const b = await backend({ queueCapacity: 50_000 })
    const gate = deferred()
    let keyed = 0
    const free: number[] = []
    await b.subscribe(
      'line',
      async (e: OmnibusEvent<number>) => {
        if (e.partitionKey === undefined) {
          free.push(e.data)
          return
        }
        if (keyed++ === 0) await gate.promise
      },
      { concurrency: 2 },
    )
    await b.publishBatch(
      Array.from({ length: 20_000 }, (_, i) => ({ topic: 'line', data: i, partitionKey: 'k' })),
    )
    await b.publish({ topic: 'line', data: -1 })
    await waitUntil(() => free.length === 1)
    expect(keyed).toBe(1)
    gate.resolve()
    await waitUntil(() => keyed === 20_000, { timeoutMs: 20_000 })
  })

  it('ctx.retry(delay) redelivers with the next attempt; ctx.deadLetter sends at once with diagnostics', async () => {
    const b = await backend()
    const attempts: number[] = []
    const dead: OmnibusEvent[] = []
    await b.subscribe('omnibus.deadletter', (e) => {
      dead.push(e)
    })
    await b.subscribe(
      'x',
      (_e, ctx) => {
        attempts.push(ctx.attempt)
        if (ctx.attempt === 1) ctx.retry(5)
        else ctx.deadLetter('not for me')
      },
      { group: 'workers' },
    )
    const { id } = await b.publish({ topic: 'x', data: { v: 1 }, headers: { h: 'v' } })
    await waitUntil(() => dead.length === 1)
    expect(attempts).toEqual([1, 2])
    const d = dead[0] as OmnibusEvent
    expect(d.data).toEqual({ v: 1 })
    expect(d.causationId).toBe(id)
    expect(d.headers).toMatchObject({
      h: 'v',
      [DLQ_HEADERS.originalTopic]: 'x',
      [DLQ_HEADERS.originalId]: id,
      [DLQ_HEADERS.group]: 'workers',
      [DLQ_HEADERS.attempts]: '2',
      [DLQ_HEADERS.reason]: 'not for me',
      [DLQ_HEADERS.backend]: 'memory',
    })
  })

  it('a failing handler of the dead-letter topic does not feed itself forever', async () => {
    const errors: string[] = []
    const b = await backend({ logger: { ...silentLogger, error: (m: string) => void errors.push(m) } })
    let runs = 0
    await b.subscribe(
      'omnibus.deadletter',
      () => {
        runs++
        throw new Error('cannot store it')
      },
      { retry: { maxAttempts: 2, initialDelayMs: 1 } },
    )
    await b.subscribe(
      'src',
      () => {
        throw new Error('bad')
      },
      { retry: { maxAttempts: 1 } },
    )
    await b.publish({ topic: 'src', data: 1 })
    await waitUntil(() => errors.length === 1)
    expect(errors[0]).toMatch(/dead letter failed in its own handler/)
    expect(runs).toBe(2)
    // A later event on the dead-letter topic shows nothing else was queued in between.
    const seen: unknown[] = []
    await b.subscribe('omnibus.deadletter', (e) => void seen.push(e.data))
    await b.publish({ topic: 'omnibus.deadletter', data: 'marker' })
    await waitUntil(() => seen.length === 1)
    expect(seen).toEqual(['marker'])
  })

  it('keeps going when a handler throws something unprintable and the logger itself throws', async () => {
    const broken = {
      ...silentLogger,
      warn: () => {
        throw new Error('logger down')
      },
      error: () => {
        throw new Error('logger down')
      },
    }
    const b = await backend({ logger: broken })
    const dead: OmnibusEvent[] = []
    await b.subscribe('omnibus.deadletter', (e) => void dead.push(e))
    const seen: unknown[] = []
    await b.subscribe(
      'weird',
      (e) => {
        if (e.data === 'bad') throw Object.create(null)
        seen.push(e.data)
      },
      { retry: { maxAttempts: 1 } },
    )
    await b.subscribe(
      'amo',
      () => {
        throw Object.create(null)
      },
      { guarantee: 'at-most-once' },
    )
    await b.publish({ topic: 'amo', data: 1 })
    await b.publish({ topic: 'weird', data: 'bad' })
    await b.publish({ topic: 'weird', data: 'good' })
    await waitUntil(() => dead.length === 1 && seen.length === 1)
    expect(dead[0]?.headers[DLQ_HEADERS.errorMessage]).toBe('[object Object]')
  })

  it('at-most-once never retries a failing handler', async () => {
    const b = await backend()
    let runs = 0
    await b.subscribe(
      'amo',
      () => {
        runs++
        throw new Error('boom')
      },
      { guarantee: 'at-most-once' },
    )
    await b.publish({ topic: 'amo', data: 1 })
    await waitUntil(() => runs === 1)
    // A later event proves the queue moved on without redelivering the first.
    await b.publish({ topic: 'amo', data: 2 })
    await waitUntil(() => runs === 2)
    expect(runs).toBe(2)
  })

  it('exactly-once handles an id once, also when the duplicate arrives while the first is running', async () => {
    const b = await backend()
    const handled: string[] = []
    const gate = deferred()
    await b.subscribe(
      'eo',
      async (e) => {
        await gate.promise
        handled.push(e.id)
      },
      { guarantee: 'exactly-once', concurrency: 4 },
    )
    await b.publish({ topic: 'eo', data: 1, id: 'same' })
    await b.publish({ topic: 'eo', data: 1, id: 'same' })
    await b.publish({ topic: 'eo', data: 2, id: 'other' })
    gate.resolve()
    await waitUntil(() => handled.length >= 2)
    await b.publish({ topic: 'eo', data: 1, id: 'same' })
    await b.publish({ topic: 'eo', data: 3, id: 'last' })
    await waitUntil(() => handled.includes('last'))
    expect(handled.sort()).toEqual(['last', 'other', 'same'])
  })

  it('exactly-once: a duplicate arriving while the first copy waits for its retry still runs once', async () => {
    const b = await backend()
    const effects: number[] = []
    let attempts = 0
    await b.subscribe(
      'eo2',
      (e: OmnibusEvent<number>) => {
        attempts++
        if (attempts === 1) throw new Error('transient')
        effects.push(e.data)
      },
      { guarantee: 'exactly-once', concurrency: 3, retry: { initialDelayMs: 30, jitter: 0 } },
    )
    await b.publish({ topic: 'eo2', data: 7, id: 'dup' })
    await waitUntil(() => attempts === 1)
    await b.publish({ topic: 'eo2', data: 7, id: 'dup' }) // arrives during the 30 ms backoff
    await b.publish({ topic: 'eo2', data: 8, id: 'fresh' })
    await waitUntil(() => effects.length === 2)
    await b.publish({ topic: 'eo2', data: 9, id: 'after' })
    await waitUntil(() => effects.includes(9))
    expect(effects.sort()).toEqual([7, 8, 9])
  })

  it('events published inside sync and async handlers carry causation and correlation', async () => {
    const b = await backend()
    const children: OmnibusEvent[] = []
    await b.subscribe('child', (e) => {
      children.push(e)
    })
    // A plain function: after its warm-up calls it runs on the cheap synchronous scope.
    await b.subscribe('sync-parent', (e) => {
      void b.publish({ topic: 'child', data: e.data })
    })
    await b.subscribe('async-parent', async (e) => {
      await new Promise((r) => setTimeout(r, 1))
      await b.publish({ topic: 'child', data: e.data })
    })
    const parents: string[] = []
    for (let i = 0; i < 20; i++) {
      parents.push((await b.publish({ topic: 'sync-parent', data: i, correlationId: 'corr' })).id)
    }
    parents.push((await b.publish({ topic: 'async-parent', data: 99 })).id)
    await waitUntil(() => children.length === 21)
    expect(children.map((c) => c.causationId).sort()).toEqual([...parents].sort())
    expect(children.filter((c) => c.data !== 99).every((c) => c.correlationId === 'corr')).toBe(true)
    const fromAsync = children.find((c) => c.data === 99) as OmnibusEvent
    expect(fromAsync.correlationId).toBe(parents.at(-1))
  })

  it('a queue drain scheduled by a handler does not pass that handler on as the current event', async () => {
    const b = await backend()
    const dead: OmnibusEvent[] = []
    await b.subscribe('omnibus.deadletter', (e) => void dead.push(e))
    await b.subscribe(
      'fails',
      () => {
        throw new Error('no')
      },
      { retry: { maxAttempts: 1 } },
    )
    await b.subscribe('trigger', async () => {
      // The first publish to 'fails' in this tick: it schedules that queue's drain from here.
      void b.publish({ topic: 'fails', data: 'from-handler' })
    })
    void b.publish({ topic: 'trigger', data: 1 })
    // Runs after the trigger's handler, before the 'fails' queue drains: a top-level event.
    queueMicrotask(() => void b.publish({ topic: 'fails', data: 'top-level' }))
    await waitUntil(() => dead.length === 2)
    const topLevel = dead.find((d) => d.data === 'top-level') as OmnibusEvent
    expect(topLevel.correlationId).toBeUndefined()
  })

  it('a plain function that returns promises keeps causation after its awaits', async () => {
    const b = await backend()
    const children: OmnibusEvent[] = []
    await b.subscribe('c2', (e) => {
      children.push(e)
    })
    await b.subscribe('p2', (e) =>
      new Promise((r) => setTimeout(r, 1)).then(() => b.publish({ topic: 'c2', data: e.data })),
    )
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await b.publish({ topic: 'p2', data: i })).id)
    await waitUntil(() => children.length === 20)
    expect(children.map((c) => c.causationId).sort()).toEqual(ids.sort())
  })
})

describe('backpressure', () => {
  it('a full queue makes publish wait, keeps order and loses nothing', async () => {
    const b = await backend({ queueCapacity: 2 })
    const gate = deferred()
    const seen: number[] = []
    await b.subscribe('bp', async (e: OmnibusEvent<number>) => {
      await gate.promise
      seen.push(e.data)
    })
    const publishes = Array.from({ length: 8 }, (_, i) => b.publish({ topic: 'bp', data: i }))
    let resolved = 0
    for (const p of publishes) void p.then(() => resolved++)
    // One in flight and two queued: the other publishes wait for room.
    await waitUntil(() => resolved === 3)
    await new Promise((r) => setImmediate(r))
    expect(resolved).toBe(3)
    gate.resolve()
    await Promise.all(publishes)
    await waitUntil(() => seen.length === 8)
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
  })

  it('publishes from inside a handler never wait, so a handler cannot deadlock on its own queue', async () => {
    const b = await backend({ queueCapacity: 1 })
    const seen: number[] = []
    await b.subscribe('loop', async (e: OmnibusEvent<number>) => {
      seen.push(e.data)
      if (e.data < 5) {
        await b.publish({ topic: 'loop', data: e.data + 10 })
        await b.publish({ topic: 'loop', data: e.data + 1 })
      }
    })
    await b.publish({ topic: 'loop', data: 0 })
    await waitUntil(() => seen.includes(5))
    expect(seen.length).toBeGreaterThan(5)
  })
})

describe('closing', () => {
  it('unsubscribe stops delivery, aborts the signal, and is safe to repeat concurrently', async () => {
    const b = await backend()
    const seen: number[] = []
    let signal: AbortSignal | undefined
    const sub = await b.subscribe('u', (e: OmnibusEvent<number>, ctx) => {
      signal = ctx.signal
      seen.push(e.data)
    })
    await b.publish({ topic: 'u', data: 1 })
    await waitUntil(() => seen.length === 1)
    await Promise.all([sub.unsubscribe(), sub.unsubscribe()])
    await sub.unsubscribe()
    expect(sub.active).toBe(false)
    expect(signal?.aborted).toBe(true)
    await b.publish({ topic: 'u', data: 2 })
    const sentinel: number[] = []
    await b.subscribe('u', (e: OmnibusEvent<number>) => {
      sentinel.push(e.data)
    })
    await b.publish({ topic: 'u', data: 3 })
    await waitUntil(() => sentinel.length === 1)
    expect(seen).toEqual([1])
  })

  it('a handler may unsubscribe its own subscription and await it without waiting for itself', async () => {
    const b = await backend({ drainTimeoutMs: 20_000 })
    const seen: number[] = []
    const retried: number[] = []
    const sub = await b.subscribe(
      'once',
      async (e: OmnibusEvent<number>, ctx) => {
        if (ctx.attempt > 1) retried.push(e.data)
        seen.push(e.data)
        await sub.unsubscribe()
        unsubscribed++
      },
      { group: 'one-shot' },
    )
    let unsubscribed = 0
    const t0 = Date.now()
    await b.publish({ topic: 'once', data: 1 })
    // The handler's own await returns promptly, not after the 20 s drain timeout.
    await waitUntil(() => unsubscribed === 1, { timeoutMs: 5000 })
    expect(sub.active).toBe(false)
    await b.publish({ topic: 'once', data: 2 })
    const probe: number[] = []
    await b.subscribe('once', (e: OmnibusEvent<number>) => void probe.push(e.data))
    await b.publish({ topic: 'once', data: 3 })
    await waitUntil(() => probe.length === 1)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(seen).toEqual([1])
    expect(retried).toEqual([])
  })

  it('handlers can still publish follow-ups while disconnect drains them', async () => {
    const name = `followup-${randomUUID()}`
    const worker = createMemoryBackend({ name, logger: silentLogger })
    await worker.connect()
    const sink = await backend({ name })
    const followUps: unknown[] = []
    await sink.subscribe('done', (e) => void followUps.push(e.data))
    const started = deferred()
    const release = deferred()
    await worker.subscribe('work', async (e) => {
      started.resolve()
      await release.promise
      await worker.publish({ topic: 'done', data: e.data })
    })
    await worker.publish({ topic: 'work', data: 'job-1' })
    await started.promise
    const closing = worker.disconnect({ drainTimeoutMs: 5000 })
    release.resolve()
    await closing
    await waitUntil(() => followUps.length === 1)
    expect(followUps).toEqual(['job-1'])
    await expect(worker.publish({ topic: 'done', data: 'late' })).rejects.toBeInstanceOf(NotConnectedError)
  })

  it('an AbortSignal ends the subscription; an already aborted one never starts it', async () => {
    const b = await backend()
    const seen: number[] = []
    const controller = new AbortController()
    const sub = await b.subscribe('s', (e: OmnibusEvent<number>) => void seen.push(e.data), {
      signal: controller.signal,
    })
    controller.abort()
    await waitUntil(() => !sub.active)
    const dead = await b.subscribe('s', () => void seen.push(-1), { signal: AbortSignal.abort() })
    expect(dead.active).toBe(false)
    await b.publish({ topic: 's', data: 1 })
    const probe: number[] = []
    await b.subscribe('s', (e: OmnibusEvent<number>) => void probe.push(e.data))
    await b.publish({ topic: 's', data: 2 })
    await waitUntil(() => probe.length === 1)
    expect(seen).toEqual([])
  })

  it('disconnect delivers what its subscriptions hold and waits for running handlers', async () => {
    const b = createMemoryBackend({ logger: silentLogger })
    await b.connect()
    const seen: number[] = []
    await b.subscribe('d', async (e: OmnibusEvent<number>) => {
      await new Promise((r) => setTimeout(r, 5))
      seen.push(e.data)
    })
    await b.publishBatch(Array.from({ length: 10 }, (_, i) => ({ topic: 'd', data: i })))
    await b.disconnect({ drainTimeoutMs: 5000 })
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(b.isConnected).toBe(false)
  })

  it('past the drain timeout it aborts handlers, and a group gets their events back for its next member', async () => {
    const name = `drain-${randomUUID()}`
    const warnings: string[] = []
    const logger = { ...silentLogger, warn: (m: string) => void warnings.push(m) }
    const pub = await backend({ name })
    const first = createMemoryBackend({ name, logger })
    await first.connect()
    let signal: AbortSignal | undefined
    const started = deferred()
    await first.subscribe(
      'slow',
      (_e, ctx) => {
        signal = ctx.signal
        started.resolve()
        return new Promise(() => {}) // never settles
      },
      { group: 'g' },
    )
    await pub.publish({ topic: 'slow', data: 'payload' })
    await started.promise
    const t0 = Date.now()
    await first.disconnect({ drainTimeoutMs: 50 })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45)
    expect(signal?.aborted).toBe(true)
    expect(warnings.join()).toMatch(/go back to group "g"/)
    const second = await backend({ name })
    const again: Array<{ data: unknown; attempt: number }> = []
    await second.subscribe('slow', (e, ctx) => void again.push({ data: e.data, attempt: ctx.attempt }), {
      group: 'g',
    })
    await waitUntil(() => again.length === 1)
    expect(again[0]).toEqual({ data: 'payload', attempt: 2 })
  })

  it('publishers waiting on a full group queue are released when its last member leaves', async () => {
    const name = `full-${randomUUID()}`
    const pub = await backend({ name, queueCapacity: 1 })
    const first = createMemoryBackend({ name, queueCapacity: 1, logger: silentLogger })
    await first.connect()
    const started = deferred()
    await first.subscribe(
      'full',
      () => {
        started.resolve()
        return new Promise(() => {})
      },
      { group: 'g' },
    )
    await pub.publish({ topic: 'full', data: 1 })
    await started.promise
    await pub.publish({ topic: 'full', data: 2 }) // queued: the queue is now full
    let thirdAccepted = false
    const third = pub.publish({ topic: 'full', data: 3 }).then(() => {
      thirdAccepted = true
    })
    await new Promise((r) => setImmediate(r))
    expect(thirdAccepted).toBe(false)
    await first.disconnect({ drainTimeoutMs: 30 })
    await third
    const next = await backend({ name })
    const got: Array<[unknown, number]> = []
    await next.subscribe('full', (e, ctx) => void got.push([e.data, ctx.attempt]), { group: 'g' })
    await waitUntil(() => got.length === 3)
    expect(got).toEqual([
      [1, 2],
      [2, 1],
      [3, 1],
    ])
  })

  it('at-most-once work cut off by the drain timeout is not redelivered to the group', async () => {
    const name = `amo-drain-${randomUUID()}`
    const pub = await backend({ name })
    const first = createMemoryBackend({ name, logger: silentLogger })
    await first.connect()
    const started = deferred()
    await first.subscribe(
      'amo-slow',
      () => {
        started.resolve()
        return new Promise(() => {})
      },
      { group: 'g', guarantee: 'at-most-once' },
    )
    await pub.publish({ topic: 'amo-slow', data: 'cut' })
    await started.promise
    await first.disconnect({ drainTimeoutMs: 20 })
    const next = await backend({ name })
    const got: unknown[] = []
    await next.subscribe('amo-slow', (e) => void got.push(e.data), { group: 'g', guarantee: 'at-most-once' })
    await pub.publish({ topic: 'amo-slow', data: 'later' })
    await waitUntil(() => got.length >= 1)
    expect(got).toEqual(['later'])
  })

  it('disconnect is idempotent and the backend can connect again', async () => {
    const b = createMemoryBackend({ logger: silentLogger })
    await b.connect()
    await b.connect()
    await Promise.all([b.disconnect(), b.disconnect()])
    await b.disconnect()
    await b.connect()
    track(b)
    const seen: unknown[] = []
    await b.subscribe('again', (e) => void seen.push(e.data))
    await b.publish({ topic: 'again', data: 'ok' })
    await waitUntil(() => seen.length === 1)
  })

  it('dead letters without a subscriber are reported, not silently lost', async () => {
    const warnings: string[] = []
    const b = await backend({ logger: { ...silentLogger, warn: (m: string) => void warnings.push(m) } })
    await b.subscribe(
      'nodlq',
      () => {
        throw new Error('always')
      },
      { retry: { maxAttempts: 1 } },
    )
    await b.publish({ topic: 'nodlq', data: 1 })
    await waitUntil(() => warnings.length === 1)
    expect(warnings[0]).toMatch(/dead letter on "omnibus\.deadletter" has no subscriber/)
  })
})
