import { afterEach, describe, expect, it, vi } from 'vitest'
import { createEvent } from '../src/envelope.ts'
import { type DedupeStore, MemoryDedupeStore } from '../src/kernel/dedupe.ts'
import { waitUntil } from '../src/testing.ts'
import { FakeBroker, type FakeMessage } from './kernel-fake.ts'

let broker: FakeBroker
afterEach(() => {
  broker?.stop()
  vi.useRealTimers()
})

/** A store whose every answer takes a few milliseconds, like one over the network. */
function slowStore(inner: MemoryDedupeStore): DedupeStore {
  const later = <T>(f: () => T) => new Promise<T>((r) => setTimeout(() => r(f()), 2))
  return {
    claim: (g, id, owner, ttl) => later(() => inner.claim(g, id, owner, ttl)),
    commit: (g, id, owner) => later(() => inner.commit(g, id, owner)),
    release: (g, id, owner) => later(() => inner.release(g, id, owner)),
  }
}

describe('MemoryDedupeStore claim protocol', () => {
  it('claimed, busy for another owner, claimed again by its owner, done after commit', () => {
    const s = new MemoryDedupeStore()
    expect(s.claim('g', 'e1', 'A:1', 1000)).toBe('claimed')
    expect(s.claim('g', 'e1', 'B:1', 1000)).toBe('busy')
    expect(s.claim('g', 'e1', 'A:1', 1000)).toBe('claimed')
    expect(s.claim('other', 'e1', 'B:1', 1000)).toBe('claimed')
    s.commit('g', 'e1', 'A:1')
    expect(s.claim('g', 'e1', 'B:1', 1000)).toBe('done')
    expect(s.claims).toBe(1)
  })

  it('release frees only the owner’s claim', () => {
    const s = new MemoryDedupeStore()
    s.claim('g', 'e', 'A', 1000)
    s.release('g', 'e', 'B')
    expect(s.claim('g', 'e', 'B', 1000)).toBe('busy')
    s.release('g', 'e', 'A')
    expect(s.claim('g', 'e', 'B', 1000)).toBe('claimed')
  })

  it('a claim whose holder died expires after its ttl', () => {
    vi.useFakeTimers()
    vi.setSystemTime(1_000_000)
    const s = new MemoryDedupeStore()
    s.claim('g', 'e', 'A', 100)
    vi.setSystemTime(1_000_050)
    expect(s.claim('g', 'e', 'B', 100)).toBe('busy')
    vi.setSystemTime(1_000_101)
    expect(s.claim('g', 'e', 'B', 100)).toBe('claimed')
  })

  it('done ids expire after the retention ttl', () => {
    vi.useFakeTimers()
    vi.setSystemTime(1_000_000)
    const s = new MemoryDedupeStore({ ttlMs: 1000 })
    s.claim('g', 'e', 'A', 10)
    s.commit('g', 'e', 'A')
    vi.setSystemTime(1_001_001)
    expect(s.claim('g', 'e', 'A', 10)).toBe('claimed')
  })
})

describe('ConsumerKernel: exactly-once', () => {
  for (const [name, makeStore] of [
    ['a synchronous store', (s: MemoryDedupeStore): DedupeStore => s],
    ['an asynchronous store', slowStore],
  ] as const) {
    it(`runs the effect once with two members at concurrency 4 and the same id delivered at once (${name})`, async () => {
      broker = new FakeBroker()
      const store = makeStore(new MemoryDedupeStore())
      const effects = new Map<string, number>()
      let running = 0
      let peak = 0
      const handler = async (e: { id: string }) => {
        running++
        peak = Math.max(peak, running)
        await new Promise((r) => setTimeout(r, 5))
        effects.set(e.id, (effects.get(e.id) ?? 0) + 1)
        running--
      }
      const opts = {
        group: 'g',
        guarantee: 'exactly-once' as const,
        concurrency: 4,
        retry: { initialDelayMs: 5 },
      }
      const m1 = broker.member(handler, opts, { dedupe: store, memberId: 'member-1' })
      const m2 = broker.member(handler, opts, { dedupe: store, memberId: 'member-2' })
      const events = Array.from({ length: 8 }, (_, i) => createEvent({ topic: 'a.b', data: i }))
      let n = 0
      for (const event of events) {
        // Published twice (two native messages with one event id), each copy to a different member;
        // and the first copy also redelivered at once to the other member (a forced redelivery).
        const copy1: FakeMessage = { nativeId: `n${++n}`, topic: 'a.b', deliveryCount: 1, event }
        const copy2: FakeMessage = { nativeId: `n${++n}`, topic: 'a.b', deliveryCount: 1, event }
        m1.deliver(copy1)
        m2.deliver(copy2)
        m2.deliver({ ...copy1, deliveryCount: 2 })
      }
      await waitUntil(() => broker.acked.length === 24, { timeoutMs: 10_000 })
      expect([...effects.values()]).toEqual(Array(8).fill(1))
      expect(effects.size).toBe(8)
      expect(peak).toBeGreaterThan(1)
      // Every copy that found the id busy was offered again, uncounted, and then found it done.
      for (const r of broker.redelivered) expect(r.deliveryCount).toBe(r.msg.deliveryCount)
    })
  }

  it('with a synchronous store, claims, runs, commits and acks synchronous handlers inside deliver()', () => {
    const b = new FakeBroker()
    broker = b
    const store = new MemoryDedupeStore()
    let runs = 0
    const k = b.member(
      () => {
        runs++
        // The claim is held while the handler runs.
        expect(store.claims).toBe(1)
      },
      { guarantee: 'exactly-once', group: 'g' },
      { dedupe: store },
    )
    const event = createEvent({ topic: 'a.b', data: 1 })
    // The same id published twice: two native messages.
    k.deliver({ nativeId: 'n1', topic: 'a.b', deliveryCount: 1, event })
    k.deliver({ nativeId: 'n2', topic: 'a.b', deliveryCount: 1, event })
    // No await: both settled inside deliver(), the copy without running.
    expect(runs).toBe(1)
    expect(b.acked.map((m) => m.nativeId)).toEqual(['n1', 'n2'])
    expect(b.settled).toBe(2)
    expect(k.running).toBe(0)
    expect(store.size).toBe(1)
    expect(store.claims).toBe(0)
  })

  it('acks a message whose id is done without running it', async () => {
    broker = new FakeBroker()
    const store = new MemoryDedupeStore()
    const event = createEvent({ topic: 'a.b', data: 1 })
    store.claim('g', event.id, 'elsewhere:1', 1000)
    store.commit('g', event.id, 'elsewhere:1')
    let runs = 0
    broker.member(() => void runs++, { group: 'g', guarantee: 'exactly-once' }, { dedupe: store })
    broker.deliver({ nativeId: 'x', topic: 'a.b', deliveryCount: 1, event })
    await waitUntil(() => broker.acked.length === 1)
    expect(runs).toBe(0)
  })

  it('releases the claim when the handler fails, so the retry can claim it', async () => {
    broker = new FakeBroker()
    const store = new MemoryDedupeStore()
    let runs = 0
    broker.member(
      () => {
        runs++
        if (runs === 1) throw new Error('first try fails')
      },
      { group: 'g', guarantee: 'exactly-once', retry: { initialDelayMs: 1 } },
      { dedupe: store, memberId: 'me' },
    )
    const event = createEvent({ topic: 'a.b', data: 1 })
    broker.deliver({ nativeId: 'n1', topic: 'a.b', deliveryCount: 1, event })
    await waitUntil(() => broker.acked.length === 1)
    expect(runs).toBe(2)
    expect(store.claim('g', event.id, 'other:1', 1000)).toBe('done')
    expect(store.claims).toBe(0)
  })

  it('commits before it acks', async () => {
    broker = new FakeBroker()
    const order: string[] = []
    const inner = new MemoryDedupeStore()
    const store: DedupeStore = {
      claim: (...a) => inner.claim(...a),
      commit: (...a) => {
        order.push('commit')
        inner.commit(...a)
      },
      release: (...a) => inner.release(...a),
    }
    broker.member(
      () => void order.push('run'),
      { guarantee: 'exactly-once' },
      {
        dedupe: store,
        adapter: { ack: () => void order.push('ack') },
      },
    )
    broker.deliver({
      nativeId: 'n',
      topic: 'a.b',
      deliveryCount: 1,
      event: createEvent({ topic: 'a.b', data: 1 }),
    })
    await waitUntil(() => order.length === 3)
    expect(order).toEqual(['run', 'commit', 'ack'])
  })

  it('a store that fails to claim gets the message offered again later, uncounted', async () => {
    broker = new FakeBroker()
    broker.redeliver = false
    const store: DedupeStore = {
      claim: () => Promise.reject(new Error('store down')),
      commit: () => {},
      release: () => {},
    }
    let runs = 0
    broker.member(() => void runs++, { guarantee: 'exactly-once' }, { dedupe: store })
    broker.deliver({
      nativeId: 'n',
      topic: 'a.b',
      deliveryCount: 2,
      event: createEvent({ topic: 'a.b', data: 1 }),
    })
    await waitUntil(() => broker.redelivered.length === 1)
    expect(runs).toBe(0)
    expect(broker.redelivered[0]?.deliveryCount).toBe(2)
  })

  it('keeps its claim alive while a long handler runs', async () => {
    broker = new FakeBroker()
    const store = new MemoryDedupeStore()
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const event = createEvent({ topic: 'a.b', data: 1 })
    broker.member(
      () => gate,
      { guarantee: 'exactly-once', group: 'g' },
      { dedupe: store, leaseMs: 30, memberId: 'me' },
    )
    broker.deliver({ nativeId: 'n', topic: 'a.b', deliveryCount: 1, event })
    // Three lease periods later the claim is still held: it was refreshed.
    await new Promise((r) => setTimeout(r, 90))
    expect(store.claim('g', event.id, 'other:1', 30)).toBe('busy')
    release()
    await waitUntil(() => broker.acked.length === 1)
  })
})
