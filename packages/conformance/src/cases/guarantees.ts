import {
  CapabilityError,
  ConfigurationError,
  GUARANTEES,
  type Guarantee,
  type OmnibusEvent,
  type SubscribeOptions,
} from '@omnibus/core'
import { expect } from 'vitest'
import { caught, Inbox, isErrorOf } from '../harness.ts'
import { waitFor } from '../wait.ts'
import { type ConformanceCase, groups, needsGuarantee } from './types.ts'

const atMostOnce: ConformanceCase = {
  id: '25-at-most-once',
  title: 'at-most-once: a throwing handler is not retried; no duplicates are observed',
  gate: (caps) => needsGuarantee(caps, 'at-most-once'),
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('amo')
    const inbox = new Inbox('at-most-once')
    await h.subscribe(
      b,
      topic,
      inbox,
      { guarantee: 'at-most-once', retry: { maxAttempts: 5, initialDelayMs: 1 } },
      (e) => {
        if ((e.data as { fail?: boolean }).fail) throw new Error('at-most-once handler failure')
      },
    )
    await h.settle(b, topic, [inbox])
    const failing = await h.publishAll(
      b,
      Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i, fail: true } })),
    )
    const fine = await h.publishAll(
      b,
      Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await h.waitAcked(inbox, fine)
    await waitFor(() => failing.every((id) => inbox.runs(id).length > 0), {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `${failing.filter((id) => inbox.runs(id).length === 0).length} failing events never ran`,
    })
    const fence = await b.publish({ topic, data: { runId: h.runId, fence: true } })
    await h.waitAcked(inbox, [fence.id])
    for (const id of [...failing, ...fine]) {
      expect(
        inbox.runs(id).map((d) => d.attempt),
        `runs of ${id}`,
      ).toEqual([1])
    }
  },
}

const exactlyOnce: ConformanceCase = {
  id: '26-exactly-once',
  title: 'exactly-once: duplicate publishes and forced redeliveries give one handler effect per id',
  gate: (caps) => needsGuarantee(caps, 'exactly-once'),
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('eo')
    const inbox = new Inbox('exactly-once')
    const opts: SubscribeOptions = {
      guarantee: 'exactly-once',
      retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 50 },
      ...(h.caps.groups ? { group: h.group('eo') } : {}),
    }
    await h.subscribe(b, topic, inbox, opts, (e, ctx) => {
      if ((e.data as { flaky?: boolean }).flaky && ctx.attempt === 1) throw new Error('forced redelivery')
    })
    await h.settle(b, topic, [inbox])
    const inputs = Array.from({ length: 10 }, (_, i) => ({
      topic,
      id: `${h.runId}-eo-${i}`,
      data: { runId: h.runId, i, flaky: i % 2 === 0 },
      guarantee: 'exactly-once' as const,
    }))
    await Promise.all([h.publishAll(b, inputs), h.publishAll(b, inputs)])
    const ids = inputs.map((e) => e.id)
    await h.waitAcked(inbox, ids)
    await h.publishInOrder(b, inputs)
    const batch = await b.publishBatch(inputs)
    expect(batch.failed).toBe(0)
    const fence = await b.publish({ topic, data: { runId: h.runId, fence: true }, guarantee: 'exactly-once' })
    await h.waitAcked(inbox, [fence.id])
    const counts = inbox.ackCounts()
    for (const id of ids) expect(counts.get(id), `handler effects for ${id}`).toBe(1)
  },
}

const refused: ConformanceCase = {
  id: '27-undeclared-guarantee',
  title:
    'a guarantee (or group, replay) the backend does not declare fails at subscribe with CapabilityError',
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('cap')
    const inbox = new Inbox('never')
    const expectRefused = async (opts: SubscribeOptions, what: string, mention: RegExp) => {
      const err = await caught(() => h.subscribe(b, topic, inbox, opts), `subscribe with ${what}`)
      expect(
        isErrorOf(err, CapabilityError),
        `${what}: expected CapabilityError, got ${err.name}: ${err.message}`,
      ).toBe(true)
      expect(err.message).toMatch(mention)
    }
    for (const g of GUARANTEES.filter((x) => !h.caps.guarantees.includes(x))) {
      await expectRefused({ guarantee: g }, `guarantee ${g}`, new RegExp(g))
    }
    if (!h.caps.groups) await expectRefused({ group: h.group('g') }, 'a group', /group/)
    if (!h.caps.replay) {
      await expectRefused(
        { from: 'earliest', ...(h.caps.groups ? { group: h.group('replay') } : {}) },
        "from: 'earliest'",
        /replay|earliest/,
      )
    }
    const bogus = await caught(
      () => h.subscribe(b, topic, inbox, { guarantee: 'twice' as Guarantee }),
      'subscribe with an unknown guarantee',
    )
    expect(
      isErrorOf(bogus, CapabilityError) || isErrorOf(bogus, ConfigurationError),
      `unknown guarantee: got ${bogus.name}: ${bogus.message}`,
    ).toBe(true)
    expect(inbox.deliveries.length).toBe(0)
  },
}

const orderedPerKey: ConformanceCase = {
  id: '28-ordered-per-key',
  title: 'per partition key, events arrive in publish order across group members, also when one is retried',
  gate: (caps) =>
    caps.orderedPerKey ? undefined : 'backend does not order per key (capabilities.orderedPerKey = false)',
  stress: true,
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('order')
    const useGroup = groups(h.caps) === undefined
    const opts: SubscribeOptions = {
      concurrency: 4,
      retry: { maxAttempts: 5, initialDelayMs: 20, maxDelayMs: 100 },
      ...(useGroup ? { group: h.group('order') } : {}),
    }
    const log: Array<{ key: string; seq: number; phase: 'start' | 'end' }> = []
    const handler = async (e: OmnibusEvent, ctx: { attempt: number }) => {
      const { key, seq } = e.data as { key: string; seq: number }
      log.push({ key, seq, phase: 'start' })
      await new Promise((resolve) => setTimeout(resolve, (seq * 7) % 4))
      if (seq === 5 && ctx.attempt === 1) throw new Error('retry one event of the key')
      log.push({ key, seq, phase: 'end' })
    }
    const members = (useGroup ? [1, 2, 3] : [1]).map((n) => new Inbox(`member ${n}`))
    for (const m of members) await h.subscribe(await h.backend(), topic, m, opts, handler)
    const probeInbox = new Inbox('any member')
    Object.defineProperty(probeInbox, 'probes', { get: () => members.reduce((n, m) => n + m.probes, 0) })
    await h.settle(pub, topic, [probeInbox])
    const keys = ['k0', 'k1', 'k2', 'k3']
    const perKey = 15
    const ids = (
      await Promise.all(
        keys.map((key) =>
          h.publishInOrder(
            pub,
            Array.from({ length: perKey }, (_, seq) => ({
              topic,
              partitionKey: key,
              data: { runId: h.runId, key, seq },
            })),
          ),
        ),
      )
    ).flat()
    await waitFor(() => new Set(members.flatMap((m) => [...m.ackedIds()])).size >= ids.length, {
      timeoutMs: h.timeouts.deliveryMs * 2,
      message: () =>
        `all ${ids.length} keyed events handled (${log.filter((l) => l.phase === 'end').length} so far)`,
    })
    for (const key of keys) {
      const mine = log.filter((l) => l.key === key)
      const ends = mine.filter((l) => l.phase === 'end').map((l) => l.seq)
      expect(ends, `completion order of key ${key}`).toEqual(Array.from({ length: perKey }, (_, i) => i))
      // A later event of the key never starts before the earlier one has succeeded.
      let done = -1
      for (const l of mine) {
        if (l.phase === 'start') {
          expect(l.seq, `key ${key}: event ${l.seq} started before event ${done + 1} succeeded`).toBe(
            done + 1,
          )
        } else {
          done = l.seq
        }
      }
    }
  },
}

/** Guarantee cases 25–27 and ordering case 28. */
export const guaranteeCases: readonly ConformanceCase[] = [atMostOnce, exactlyOnce, refused, orderedPerKey]
