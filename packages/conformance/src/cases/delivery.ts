import {
  createEvent,
  InvalidTopicError,
  type OmnibusEvent,
  PayloadTooLargeError,
  SerializationError,
} from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { expect } from 'vitest'
import { caught, Inbox, isErrorOf } from '../harness.ts'
import type { ConformanceCase } from './types.ts'

function bytesEqual(a: unknown, b: Uint8Array): boolean {
  if (!(a instanceof Uint8Array) || a.byteLength !== b.byteLength) return false
  for (let i = 0; i < b.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

const roundTrip: ConformanceCase = {
  id: '01-round-trip',
  title: '100 events with distinct ids, payloads and headers arrive intact (every envelope field)',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('rt')
    const inbox = new Inbox('round-trip')
    await h.subscribe(b, topic, inbox)
    await h.settle(b, topic, [inbox])
    const time0 = Date.now() - 60_000
    const sent = Array.from({ length: 100 }, (_, i) => ({
      topic,
      id: `${h.runId}-rt-${i}`,
      data: { runId: h.runId, i, text: `event ${i}`, nested: { ok: i % 2 === 0, list: [i, `${i}`] } },
      time: time0 + i,
      source: `conformance-${h.runId}`,
      correlationId: `corr-${h.runId}-${i % 7}`,
      causationId: `cause-${h.runId}-${i}`,
      partitionKey: `key-${i % 5}`,
      headers: { 'x-run': h.runId, 'x-index': String(i), 'x-unicode': 'héllo ✓' },
      guarantee: 'at-least-once' as const,
    }))
    const ids = await h.publishAll(b, sent)
    expect(ids).toEqual(sent.map((e) => e.id))
    await h.waitAcked(inbox, ids)
    const byId = new Map(inbox.acked.map((e) => [e.id, e]))
    for (const s of sent) {
      const got = byId.get(s.id) as OmnibusEvent
      expect({
        id: got.id,
        topic: got.topic,
        data: got.data,
        time: got.time,
        source: got.source,
        correlationId: got.correlationId,
        causationId: got.causationId,
        partitionKey: got.partitionKey,
        headers: got.headers,
        guarantee: got.guarantee,
      }).toEqual(s)
    }
  },
}

const edgePayloads: ConformanceCase = {
  id: '02-edge-payloads',
  title: 'edge payloads (empty object, null, unicode, large arrays, binary) arrive exactly',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('edge')
    const inbox = new Inbox('edge-payloads')
    await h.subscribe(b, topic, inbox)
    await h.settle(b, topic, [inbox])
    const limit = h.caps.maxPayloadBytes ?? 1_000_000
    // Keep the large array well under the declared limit: about limit / 4 bytes once encoded.
    const arrayLength = Math.max(10, Math.min(20_000, Math.floor(limit / 4 / 6)))
    const allBytes = new Uint8Array(512)
    for (let i = 0; i < allBytes.length; i++) allBytes[i] = (i * 131 + 7) % 256
    const payloads: Array<[string, unknown]> = [
      ['empty-object', {}],
      ['null', null],
      ['zero', 0],
      ['false', false],
      ['empty-string', ''],
      ['empty-array', []],
      ['unicode', { 'clé 🔑': 'héllo 世界 🎉 \u0000 \u2028 "quoted" \\ back', deep: [[{ ü: ['ñ', '😀'] }]] }],
      ['large-array', Array.from({ length: arrayLength }, (_, i) => i * 3)],
      ['numbers', { neg: -1.5, big: 2 ** 53 - 1, tiny: 5e-324, exp: 1e300 }],
      ['binary', allBytes],
      ['binary-empty', new Uint8Array(0)],
      ['binary-one', new Uint8Array([0])],
    ]
    const inputs = payloads.map(([name, data]) => ({
      topic,
      id: `${h.runId}-edge-${name}`,
      data,
      headers: { 'x-case': name },
    }))
    const ids = await h.publishAll(b, inputs)
    await h.waitAcked(inbox, ids)
    const byId = new Map(inbox.acked.map((e) => [e.id, e]))
    for (const input of inputs) {
      const got = byId.get(input.id) as OmnibusEvent
      if (input.data instanceof Uint8Array) {
        expect(
          bytesEqual(got.data, input.data),
          `${input.headers['x-case']}: expected a byte-exact Uint8Array of ${input.data.byteLength} bytes, got ${Object.prototype.toString.call(got.data)}`,
        ).toBe(true)
      } else {
        expect(got.data, `payload ${input.headers['x-case']}`).toEqual(input.data)
      }
    }
  },
}

const payloadLimit: ConformanceCase = {
  id: '03-payload-limit',
  title: 'just under maxPayloadBytes is delivered; just over fails at publish with PayloadTooLargeError',
  gate: (caps) =>
    caps.maxPayloadBytes === undefined
      ? 'backend declares no payload limit (maxPayloadBytes undefined)'
      : undefined,
  async run(h) {
    const limit = h.caps.maxPayloadBytes as number
    const b = await h.backend()
    const topic = h.topic('limit')
    const inbox = new Inbox('payload-limit')
    await h.subscribe(b, topic, inbox)
    await h.settle(b, topic, [inbox])
    const fixed = { topic, source: 'conformance', time: Date.now(), guarantee: 'at-least-once' as const }
    // The encoded size grows by one byte per 'x': size the string so the envelope lands exactly.
    const sized = (id: string, targetBytes: number) => {
      const overhead = Buffer.byteLength(encodeEvent(createEvent({ ...fixed, id, data: '' })))
      const data = 'x'.repeat(Math.max(0, targetBytes - overhead))
      return { ...fixed, id, data }
    }
    const under = sized(`${h.runId}-under`, limit - 64)
    const over = sized(`${h.runId}-over`, limit + 64)
    expect(Buffer.byteLength(encodeEvent(createEvent(under)))).toBeLessThanOrEqual(limit)
    const err = await caught(() => b.publish(over), 'publishing an event over maxPayloadBytes')
    expect(
      isErrorOf(err, PayloadTooLargeError),
      `expected PayloadTooLargeError, got ${err.name}: ${err.message}`,
    ).toBe(true)
    expect(err.message).toMatch(String(limit))
    const receipt = await b.publish(under)
    await h.waitAcked(inbox, [receipt.id])
    expect(inbox.acked.find((e) => e.id === receipt.id)?.data).toBe(under.data)
    expect(inbox.ackedIds().has(over.id)).toBe(false)
  },
}

const topicIsolation: ConformanceCase = {
  id: '04-topic-isolation',
  title: 'subscribers of one topic never see events of another',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const a = h.topic('iso', 'a')
    const names = { a, b: h.topic('iso', 'b'), aa: h.topic('iso', 'aa'), sub: h.topic('iso', 'a', 'sub') }
    const inA = new Inbox('topic a')
    const inB = new Inbox('topic b')
    const all = new Inbox('catch-all')
    await h.subscribe(b, names.a, inA)
    await h.subscribe(b, names.b, inB)
    await h.subscribe(b, h.topic('iso', '**'), all)
    await h.settle(b, names.a, [inA, all])
    await h.settle(b, names.b, [inB])
    const inputs = Object.values(names).flatMap((t) =>
      Array.from({ length: 20 }, (_, i) => ({ topic: t, data: { runId: h.runId, t, i } })),
    )
    const ids = await h.publishAll(b, inputs)
    const idsOf = (t: string) => ids.filter((_, k) => inputs[k]?.topic === t)
    // The catch-all is a wildcard meeting two brand-new topics: allow the declared discovery delay.
    await h.waitAcked(all, ids, h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs)
    await h.waitAcked(inA, idsOf(names.a))
    await h.waitAcked(inB, idsOf(names.b))
    expect(inA.acked.filter((e) => e.topic !== names.a).map((e) => e.topic)).toEqual([])
    expect(inB.acked.filter((e) => e.topic !== names.b).map((e) => e.topic)).toEqual([])
    expect(inA.ackedIds().size).toBe(20)
    expect(inB.ackedIds().size).toBe(20)
  },
}

const manyTopics: ConformanceCase = {
  id: '05-many-topics',
  title: '20 topics published and consumed concurrently, each complete',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topics = Array.from({ length: 20 }, (_, i) => h.topic('many', `t${i}`))
    const inboxes = topics.map((t) => new Inbox(t))
    await Promise.all(topics.map((t, i) => h.subscribe(b, t, inboxes[i] as Inbox)))
    await Promise.all(topics.map((t, i) => h.settle(b, t, [inboxes[i] as Inbox])))
    const perTopic = await Promise.all(
      topics.map((t) =>
        h.publishAll(
          b,
          Array.from({ length: 10 }, (_, i) => ({ topic: t, data: { runId: h.runId, t, i } })),
        ),
      ),
    )
    await Promise.all(inboxes.map((inbox, i) => h.waitAcked(inbox, perTopic[i] as string[])))
    inboxes.forEach((inbox, i) => {
      expect(inbox.acked.every((e) => e.topic === topics[i])).toBe(true)
    })
  },
}

const concurrentPublishers: ConformanceCase = {
  id: '06-concurrent-publishers',
  title: 'concurrent publishers, then disconnect: nothing accepted by publish is lost',
  stress: true,
  async run(h) {
    const consumer = await h.backend()
    const topic = h.topic('pubs')
    const inbox = new Inbox('consumer')
    await h.subscribe(consumer, topic, inbox)
    await h.settle(consumer, topic, [inbox])
    const publishers = await Promise.all(Array.from({ length: 4 }, () => h.backend()))
    const accepted: string[] = []
    await Promise.all(
      publishers.map(async (p, k) => {
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, i) => p.publish({ topic, data: { runId: h.runId, k, i } })),
        )
        for (const r of results) {
          if (r.status === 'fulfilled') accepted.push(r.value.id)
          else throw r.reason
        }
        // Disconnect right after the last publish resolved: accepted events must survive it.
        await h.within(p.disconnect(), 'disconnect() of a publisher')
      }),
    )
    expect(accepted.length).toBe(200)
    await h.waitAcked(inbox, accepted)
  },
}

const publishBeforeSubscribe: ConformanceCase = {
  id: '07-publish-before-subscribe',
  title:
    'events published while no consumer is attached: delivered later if persistent, not delivered otherwise',
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('early')
    if (h.caps.persistent) {
      // A group that exists but has no live consumer must find its events when it comes back.
      const group = h.caps.groups ? h.group('early') : undefined
      const opts = group === undefined ? {} : { group }
      const consumer = await h.backend()
      const first = new Inbox('first consumer')
      const sub = await h.subscribe(consumer, topic, first, opts)
      await h.settle(b, topic, [first])
      await h.within(sub.unsubscribe(), 'unsubscribe() of the first consumer')
      await h.within(consumer.disconnect(), 'disconnect() of the first consumer')
      const ids = await h.publishAll(
        b,
        Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
      )
      const later = new Inbox('returning consumer')
      const c2 = await h.backend()
      await h.subscribe(c2, topic, later, opts)
      await h.waitAcked(later, ids, h.timeouts.deliveryMs + h.timeouts.groupJoinMs)
    } else {
      const ids = await h.publishAll(
        b,
        Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
      )
      const inbox = new Inbox('late subscriber')
      await h.subscribe(b, topic, inbox)
      await h.settle(b, topic, [inbox])
      const fence = await b.publish({ topic, data: { runId: h.runId, fence: true } })
      await h.waitAcked(inbox, [fence.id])
      expect(
        inbox.acked.filter((e) => ids.includes(e.id)).map((e) => e.id),
        'a non-persistent backend delivered events published before the subscription existed',
      ).toEqual([])
    }
  },
}

const batchPublish: ConformanceCase = {
  id: '08-batch-publish',
  title: 'publishBatch gives per-entry results; a bad entry does not sink the rest',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('batch')
    const inbox = new Inbox('batch')
    await h.subscribe(b, topic, inbox)
    await h.settle(b, topic, [inbox])
    const cyclic: Record<string, unknown> = { runId: h.runId }
    cyclic.self = cyclic
    const entries = [
      { topic, data: { runId: h.runId, i: 0 } },
      { topic: 'not a topic!', data: { runId: h.runId, i: 1 } },
      { topic, data: { runId: h.runId, i: 2 } },
      { topic, data: { big: 10n } as unknown },
      { topic, data: cyclic as unknown },
      { topic: `${topic}.*`, data: { runId: h.runId, i: 5 } },
      { topic, data: { runId: h.runId, i: 6 } },
    ]
    const bad = new Map<number, abstract new (...args: never[]) => Error>([
      [1, InvalidTopicError],
      [3, SerializationError],
      [4, SerializationError],
      [5, InvalidTopicError],
    ])
    const receipt = await b.publishBatch(entries)
    expect(receipt.results.map((r) => r.index)).toEqual(entries.map((_, i) => i))
    expect(receipt.succeeded).toBe(3)
    expect(receipt.failed).toBe(4)
    const okIds: string[] = []
    for (const r of receipt.results) {
      const expected = bad.get(r.index)
      if (expected === undefined) {
        expect(r.ok, `entry ${r.index} should succeed`).toBe(true)
        if (r.ok) okIds.push(r.receipt.id)
      } else {
        expect(r.ok, `entry ${r.index} should fail`).toBe(false)
        if (!r.ok) {
          expect(
            isErrorOf(r.error, expected),
            `entry ${r.index}: expected ${expected.name}, got ${r.error.name}: ${r.error.message}`,
          ).toBe(true)
        }
      }
    }
    await h.waitAcked(inbox, okIds)
    expect([...new Set(inbox.acked.map((e) => (e.data as { i: number }).i))].sort()).toEqual([0, 2, 6])
    // An empty batch is valid and reports nothing.
    const empty = await b.publishBatch([])
    expect({ n: empty.results.length, ok: empty.succeeded, failed: empty.failed }).toEqual({
      n: 0,
      ok: 0,
      failed: 0,
    })
  },
}

/** Delivery cases 1–8. */
export const deliveryCases: readonly ConformanceCase[] = [
  roundTrip,
  edgePayloads,
  payloadLimit,
  topicIsolation,
  manyTopics,
  concurrentPublishers,
  publishBeforeSubscribe,
  batchPublish,
]
