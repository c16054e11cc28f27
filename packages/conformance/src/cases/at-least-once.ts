import type { SubscribeOptions } from '@omnibus/core'
import { expect } from 'vitest'
import { spawnConsumer } from '../child.ts'
import { type CaseContext, Inbox } from '../harness.ts'
import { waitFor, withDeadline } from '../wait.ts'
import { allOf, atLeastOnce, type ConformanceCase, crossProcess, groups, persistent } from './types.ts'

const work = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const forever = () => new Promise<never>(() => {})

/** Events published while a group has no live consumer. */
const gapBatch = (topic: string, runId: string, k: number) =>
  Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId, k, i, gap: true } }))

const needsChild = (o: { childProcess?: unknown }) =>
  o.childProcess === undefined ? 'no childProcess hooks given (options.childProcess)' : undefined

/** Deadline for an event whose consumer died to reach another consumer. */
const redeliveryMs = (h: CaseContext) =>
  h.timeouts.deliveryMs + h.timeouts.visibilityMs * 2 + h.timeouts.groupJoinMs

const retryUntilSuccess: ConformanceCase = {
  id: '18-retry-until-success',
  title: 'a handler that throws on its first attempts gets the event again until it succeeds',
  gate: atLeastOnce,
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('retry')
    const inbox = new Inbox('flaky handler')
    await h.subscribe(
      b,
      topic,
      inbox,
      { retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 100 } },
      (e, ctx) => {
        if ((e.data as { flaky?: boolean }).flaky && ctx.attempt < 3)
          throw new Error(`attempt ${ctx.attempt} fails`)
      },
    )
    await h.settle(b, topic, [inbox])
    const ids = await h.publishAll(
      b,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i, flaky: true } })),
    )
    await h.waitAcked(inbox, ids)
    const fence = await b.publish({ topic, data: { runId: h.runId, fence: true } })
    await h.waitAcked(inbox, [fence.id])
    for (const id of ids) {
      // Runs after the success would be duplicates, which at-least-once allows.
      expect(
        inbox
          .runs(id)
          .slice(0, 3)
          .map((d) => d.attempt),
        `attempts of ${id}`,
      ).toEqual([1, 2, 3])
    }
  },
}

const consumerDies: ConformanceCase = {
  id: '19-consumer-dies',
  title: 'a member that disconnects mid-handler without acknowledging: another member receives the event',
  gate: allOf(atLeastOnce, groups),
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('dies')
    const group = h.group('dies')
    const opts: SubscribeOptions = { group, visibilityTimeoutMs: h.timeouts.visibilityMs }
    const dyingBackend = await h.backend()
    const dying = new Inbox('dying member')
    await h.subscribe(dyingBackend, topic, dying, opts, forever)
    await h.settle(pub, topic, [dying])
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await waitFor(() => dying.deliveries.length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the first member to receive an event',
    })
    const survivor = new Inbox('surviving member')
    await h.subscribe(await h.backend(), topic, survivor, opts)
    await h.within(dyingBackend.disconnect({ drainTimeoutMs: 100 }), 'disconnect() of the dying member')
    await h.waitAcked(survivor, ids, redeliveryMs(h))
  },
}

const consumerKilled: ConformanceCase = {
  id: '19-consumer-killed',
  title: 'a member process killed mid-handler: another member receives the event',
  gate: allOf(atLeastOnce, groups, crossProcess),
  needs: needsChild,
  async run(h) {
    const hooks = h.options.childProcess!
    const pub = await h.backend()
    const topic = h.topic('killed')
    const group = h.group('killed')
    const opts: SubscribeOptions = { group, visibilityTimeoutMs: h.timeouts.visibilityMs }
    const child = spawnConsumer(hooks, {
      label: 'child member',
      pattern: topic,
      subscribeOptions: opts,
      behaviour: 'hang',
      readyTimeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
    })
    h.defer(() => child.kill())
    await child.ready
    await h.settle(pub, topic, [child.inbox])
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await waitFor(() => child.inbox.deliveries.length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the child member to receive an event',
    })
    const survivor = new Inbox('surviving member')
    await h.subscribe(await h.backend(), topic, survivor, opts)
    await child.kill()
    await h.waitAcked(survivor, ids, redeliveryMs(h))
  },
}

const chain: ConformanceCase = {
  id: '20-consumer-chain',
  title: 'consumers replaced in a chain of batches lose nothing across the restarts',
  gate: allOf(persistent, groups, atLeastOnce),
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('chain')
    const group = h.group('chain')
    const consumers: Inbox[] = []
    const all: string[] = []
    for (let k = 0; k < 4; k++) {
      // Published while the group exists but no consumer is attached: the next one must find it.
      if (k > 0) all.push(...(await h.publishAll(pub, gapBatch(topic, h.runId, k))))
      const inbox = new Inbox(`consumer ${k + 1}`)
      consumers.push(inbox)
      const b = await h.backend()
      await h.subscribe(b, topic, inbox, { group }, () => work(2))
      // The first consumer creates the group, which starts at 'latest': make sure it is live.
      if (k === 0) await h.settle(pub, topic, [inbox])
      all.push(
        ...(await h.publishAll(
          pub,
          Array.from({ length: 15 }, (_, i) => ({ topic, data: { runId: h.runId, k, i } })),
        )),
      )
      await waitFor(() => inbox.acked.length >= 5, {
        timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
        message: `consumer ${k + 1} to handle 5 events`,
      })
      await h.within(b.disconnect(), `disconnect() of consumer ${k + 1}`)
    }
    const last = new Inbox('last consumer')
    consumers.push(last)
    await h.subscribe(await h.backend(), topic, last, { group })
    const union = () => new Set(consumers.flatMap((c) => [...c.ackedIds()]))
    await waitFor(() => all.every((id) => union().has(id)), {
      timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs * 2,
      message: () => `${all.filter((id) => !union().has(id)).length} of ${all.length} events never handled`,
    })
  },
}

const chainKilled: ConformanceCase = {
  id: '20-consumer-chain-killed',
  title: 'consumer processes killed one after another in a chain of batches lose nothing',
  gate: allOf(persistent, groups, atLeastOnce, crossProcess),
  needs: needsChild,
  timeoutMs: (t) => t.groupJoinMs * 4,
  async run(h) {
    const hooks = h.options.childProcess!
    const pub = await h.backend()
    const topic = h.topic('chainkill')
    const group = h.group('chainkill')
    const inboxes: Inbox[] = []
    const all: string[] = []
    for (let k = 0; k < 3; k++) {
      if (k > 0) all.push(...(await h.publishAll(pub, gapBatch(topic, h.runId, k))))
      const child = spawnConsumer(hooks, {
        label: `child consumer ${k + 1}`,
        pattern: topic,
        subscribeOptions: { group, visibilityTimeoutMs: h.timeouts.visibilityMs },
        behaviour: 'ack',
        handlerMs: 10,
        readyTimeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
      })
      h.defer(() => child.kill())
      inboxes.push(child.inbox)
      await child.ready
      if (k === 0) await h.settle(pub, topic, [child.inbox])
      all.push(
        ...(await h.publishAll(
          pub,
          Array.from({ length: 15 }, (_, i) => ({ topic, data: { runId: h.runId, k, i } })),
        )),
      )
      await waitFor(() => child.inbox.acked.length >= 5, {
        timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
        message: `child consumer ${k + 1} to handle 5 events`,
      })
      await child.kill()
    }
    const last = new Inbox('last consumer')
    inboxes.push(last)
    await h.subscribe(await h.backend(), topic, last, { group, visibilityTimeoutMs: h.timeouts.visibilityMs })
    const union = () => new Set(inboxes.flatMap((c) => [...c.ackedIds()]))
    await waitFor(() => all.every((id) => union().has(id)), {
      timeoutMs: redeliveryMs(h) + h.timeouts.deliveryMs,
      message: () => `${all.filter((id) => !union().has(id)).length} of ${all.length} events never handled`,
    })
  },
}

const concurrency: ConformanceCase = {
  id: '21-concurrency-limit',
  title: 'concurrency: 1 runs one handler at a time; concurrency: N never exceeds N',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const one = new Inbox('concurrency 1')
    const four = new Inbox('concurrency 4')
    const t1 = h.topic('conc', 'one')
    const t4 = h.topic('conc', 'four')
    await h.subscribe(b, t1, one, { concurrency: 1 }, () => work(3))
    await h.subscribe(b, t4, four, { concurrency: 4 }, () => work(3))
    await h.settle(b, t1, [one])
    await h.settle(b, t4, [four])
    const ids1 = await h.publishAll(
      b,
      Array.from({ length: 20 }, (_, i) => ({ topic: t1, data: { runId: h.runId, i } })),
    )
    const ids4 = await h.publishAll(
      b,
      Array.from({ length: 40 }, (_, i) => ({ topic: t4, data: { runId: h.runId, i } })),
    )
    await h.waitAcked(one, ids1)
    await h.waitAcked(four, ids4)
    expect(one.maxInFlight, 'handlers in flight at once with concurrency: 1').toBe(1)
    expect(four.maxInFlight, 'handlers in flight at once with concurrency: 4').toBeLessThanOrEqual(4)
  },
}

const slowHandler: ConformanceCase = {
  id: '22-slow-handler-lease',
  title: 'a handler slower than the lease window is not redelivered in a storm',
  gate: atLeastOnce,
  timeoutMs: (t) => t.visibilityMs * 4,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('slow')
    const vis = h.timeouts.visibilityMs
    const inbox = new Inbox('slow handler')
    const opts: SubscribeOptions = {
      visibilityTimeoutMs: vis,
      concurrency: 3,
      ...(h.caps.groups ? { group: h.group('slow') } : {}),
    }
    await h.subscribe(b, topic, inbox, opts, (e) =>
      (e.data as { slow?: boolean }).slow ? work(vis * 2.5) : undefined,
    )
    await h.settle(b, topic, [inbox])
    const ids = await h.publishAll(
      b,
      Array.from({ length: 3 }, (_, i) => ({ topic, data: { runId: h.runId, i, slow: true } })),
    )
    await h.waitAcked(inbox, ids, vis * 3 + h.timeouts.deliveryMs + h.timeouts.visibilityMs * 2)
    const fence = await b.publish({ topic, data: { runId: h.runId, fence: true } })
    await h.waitAcked(inbox, [fence.id])
    for (const id of ids) {
      expect(
        inbox.runs(id).length,
        `handler runs of one event that took 2.5 lease windows (lease ${vis} ms)`,
      ).toBeLessThanOrEqual(2)
    }
  },
}

const drain: ConformanceCase = {
  id: '23-drain-on-disconnect',
  title:
    'disconnect() waits for in-flight handlers up to the drain timeout; unacknowledged work is redelivered',
  async run(h) {
    const pub = await h.backend()
    // Part 1: a handler that finishes within the drain timeout completes before disconnect resolves.
    const topic = h.topic('drain')
    const b1 = await h.backend()
    const finishing = new Inbox('finishing handler')
    await h.subscribe(b1, topic, finishing, {}, (e) =>
      (e.data as { slow?: boolean }).slow ? work(300) : undefined,
    )
    await h.settle(pub, topic, [finishing])
    const slow = await pub.publish({ topic, data: { runId: h.runId, slow: true } })
    await waitFor(() => finishing.deliveries.some((d) => d.event.id === slow.id), {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the slow handler to start',
    })
    await withDeadline(
      b1.disconnect({ drainTimeoutMs: 10_000 }),
      10_000 + h.timeouts.deliveryMs,
      'disconnect({ drainTimeoutMs: 10000 }) with a 300 ms handler in flight',
    )
    expect(
      finishing.ackedIds().has(slow.id),
      'disconnect() resolved before the in-flight handler finished',
    ).toBe(true)
    expect(b1.isConnected).toBe(false)

    // Part 2: a handler that never finishes is abandoned after the drain timeout, its signal aborted.
    const topic2 = h.topic('drain', 'hung')
    const group = h.caps.groups ? h.group('drain') : undefined
    const opts: SubscribeOptions = {
      visibilityTimeoutMs: h.timeouts.visibilityMs,
      ...(group === undefined ? {} : { group }),
    }
    const b2 = await h.backend()
    const hung = new Inbox('hung handler')
    const aborted: string[] = []
    await h.subscribe(b2, topic2, hung, opts, async (e, ctx) => {
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }))
      aborted.push(e.id)
      return forever()
    })
    await h.settle(pub, topic2, [hung])
    const stuck = await pub.publish({ topic: topic2, data: { runId: h.runId, stuck: true } })
    await waitFor(() => hung.deliveries.some((d) => d.event.id === stuck.id), {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the hung handler to start',
    })
    const t0 = Date.now()
    await withDeadline(
      b2.disconnect({ drainTimeoutMs: 200 }),
      200 + h.timeouts.deliveryMs,
      'disconnect({ drainTimeoutMs: 200 }) with a hung handler',
    )
    const took = Date.now() - t0
    expect(took, 'disconnect({ drainTimeoutMs: 200 }) with a hung handler took too long').toBeLessThan(
      200 + h.timeouts.deliveryMs,
    )
    expect(aborted, 'the hung handler’s ctx.signal was not aborted past the drain timeout').toContain(
      stuck.id,
    )

    // Part 3: where events outlive consumers, the unacknowledged event comes back.
    if (h.caps.persistent && group !== undefined && h.caps.guarantees.includes('at-least-once')) {
      const again = new Inbox('next member')
      await h.subscribe(await h.backend(), topic2, again, opts)
      await h.waitAcked(again, [stuck.id], redeliveryMs(h))
    }
  },
}

const drainKilled: ConformanceCase = {
  id: '23-killed-mid-handler',
  title: 'work unacknowledged by a killed consumer process is redelivered to the next consumer',
  gate: allOf(persistent, groups, atLeastOnce, crossProcess),
  needs: needsChild,
  async run(h) {
    const hooks = h.options.childProcess!
    const pub = await h.backend()
    const topic = h.topic('killmid')
    const opts: SubscribeOptions = { group: h.group('killmid'), visibilityTimeoutMs: h.timeouts.visibilityMs }
    const child = spawnConsumer(hooks, {
      label: 'child consumer',
      pattern: topic,
      subscribeOptions: opts,
      behaviour: 'hang',
      readyTimeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
    })
    h.defer(() => child.kill())
    await child.ready
    await h.settle(pub, topic, [child.inbox])
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 3 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await waitFor(() => child.inbox.deliveries.length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the child to start a handler',
    })
    await child.kill()
    const next = new Inbox('next consumer')
    await h.subscribe(await h.backend(), topic, next, opts)
    await h.waitAcked(next, ids, redeliveryMs(h))
  },
}

const unsubscribe: ConformanceCase = {
  id: '24-unsubscribe-abort',
  title: 'unsubscribe and abort via signal stop delivery; repeated or concurrent close is safe',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('unsub')
    const keep = new Inbox('kept subscription')
    const gone = new Inbox('unsubscribed')
    const abortedInbox = new Inbox('aborted')
    const ac = new AbortController()
    const subKeep = await h.subscribe(b, topic, keep)
    const subGone = await h.subscribe(b, topic, gone)
    const subAbort = await h.subscribe(b, topic, abortedInbox, { signal: ac.signal })
    await h.settle(b, topic, [keep, gone, abortedInbox])
    expect([subKeep.active, subGone.active, subAbort.active]).toEqual([true, true, true])
    await Promise.all([subGone.unsubscribe(), subGone.unsubscribe()])
    await subGone.unsubscribe()
    expect(subGone.active).toBe(false)
    ac.abort()
    await waitFor(() => !subAbort.active, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'aborted subscription to close',
    })
    await subAbort.unsubscribe()
    const ids = await h.publishAll(
      b,
      Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await h.waitAcked(keep, ids)
    const leaked = [...gone.acked, ...abortedInbox.acked].filter((e) => ids.includes(e.id))
    expect(leaked.length, 'events delivered to closed subscriptions').toBe(0)
    await Promise.all([b.disconnect(), b.disconnect()])
    await b.disconnect()
    expect(b.isConnected).toBe(false)
    await subKeep.unsubscribe()
    expect(subKeep.active).toBe(false)
  },
}

/** At-least-once cases 18–24 (with child-process variants of 19, 20 and 23). */
export const atLeastOnceCases: readonly ConformanceCase[] = [
  retryUntilSuccess,
  consumerDies,
  consumerKilled,
  chain,
  chainKilled,
  concurrency,
  slowHandler,
  drain,
  drainKilled,
  unsubscribe,
]
