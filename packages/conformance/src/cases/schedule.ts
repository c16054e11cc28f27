import {
  type BackendCapabilities,
  CapabilityError,
  ConfigurationError,
  DLQ_HEADERS,
  type EventInput,
  type OmnibusEvent,
  type SubscribeOptions,
} from '@omnibus/core'
import { expect } from 'vitest'
import { type CaseContext, caught, type Delivery, Inbox, isErrorOf } from '../harness.ts'
import { waitFor } from '../wait.ts'
import { atLeastOnce, type ConformanceCase } from './types.ts'

/** Gate: delayed delivery declared. */
const delay = (caps: BackendCapabilities) =>
  caps.delay === false ? 'backend cannot delay events (capabilities.delay = false)' : undefined

const lettersOf = (dead: Inbox, id: string) =>
  dead.acked.filter((d) => d.headers[DLQ_HEADERS.originalId] === id)

const groupOpts = (h: CaseContext, name: string): SubscribeOptions =>
  h.caps.groups ? { group: h.group(name) } : {}

const delayedDelivery: ConformanceCase = {
  id: '46-delayed-delivery',
  title:
    'delayed events (delayMs, deliverAt, in publishBatch too) reach no handler before their time, then arrive within deliveryMs of it, as their first attempt',
  gate: (caps) => atLeastOnce(caps) ?? delay(caps),
  timeoutMs: (t) => 4000 + t.deliveryMs * 2,
  async run(h) {
    const pub = await h.backend()
    const sub = await h.backend()
    const topic = h.topic('delay')
    const inbox = new Inbox('delayed subscription')
    await h.subscribe(sub, topic, inbox, groupOpts(h, 'delay'))
    await h.settle(pub, topic, [inbox])
    const data = (n: number) => ({ runId: h.runId, n })
    const sent = Date.now()
    const plan: Array<{ input: EventInput; delayMs: number }> = [
      { input: { topic, data: data(1), delayMs: 1500 }, delayMs: 1500 },
      { input: { topic, data: data(2), deliverAt: new Date(sent + 3000) }, delayMs: 3000 },
      { input: { topic, data: data(3), deliverAt: sent + 2200, partitionKey: 'k' }, delayMs: 2200 },
    ]
    const ids = await h.publishInOrder(
      pub,
      plan.slice(0, 2).map((p) => p.input),
    )
    const batch = await pub.publishBatch([(plan[2] as (typeof plan)[number]).input])
    const entry = batch.results[0]
    if (entry === undefined || !entry.ok)
      throw new Error(`publishBatch of a delayed event failed: ${String(entry)}`)
    ids.push(entry.receipt.id)
    const published = Date.now()
    const now = await pub.publish({ topic, data: data(0) })
    await h.waitAcked(inbox, [now.id])
    const firstRun = (id: string) => inbox.runs(id)[0]
    await waitFor(() => ids.every((id) => inbox.ackedIds().has(id)), {
      timeoutMs: 3000 + h.timeouts.deliveryMs + (published - sent),
      message: () =>
        `the delayed events (${ids.filter((id) => !inbox.ackedIds().has(id)).length} of ${ids.length} not handled yet)`,
    })
    for (const [k, id] of ids.entries()) {
      const p = plan[k] as (typeof plan)[number]
      const runs = inbox.runs(id)
      const run = firstRun(id) as Delivery
      const deliverAt = run.event.deliverAt
      expect(deliverAt, `deliverAt of event ${k + 1} as delivered`).toBeTypeOf('number')
      expect(deliverAt as number, `deliverAt of event ${k + 1}`).toBeGreaterThanOrEqual(sent + p.delayMs)
      expect(deliverAt as number, `deliverAt of event ${k + 1}`).toBeLessThanOrEqual(published + p.delayMs)
      expect(
        runs
          .filter((r) => r.at < (deliverAt as number))
          .map((r) => `run at deliverAt ${r.at - (deliverAt as number)} ms`),
        `handler runs of event ${k + 1} before its deliverAt`,
      ).toEqual([])
      expect(run.at - (deliverAt as number), `lateness of event ${k + 1} (ms)`).toBeLessThanOrEqual(
        h.timeouts.deliveryMs,
      )
      expect(
        runs.map((r) => r.attempt),
        `attempts of event ${k + 1}: a hold is not an attempt`,
      ).toEqual([1])
    }
  },
}

/** Publishes events that expire before they reach a handler, with a control event; returns their ids. */
async function publishExpiring(
  h: CaseContext,
  pub: Awaited<ReturnType<CaseContext['backend']>>,
  topic: string,
  work: Inbox,
  release: () => void,
): Promise<{ expired: string[]; control: string }> {
  const data = (what: string) => ({ runId: h.runId, what })
  // Expired on arrival.
  const past = await pub.publish({ topic, data: data('past'), expiresAt: Date.now() - 1 })
  // Alive when it reaches the broker, expired by the time the one slot is free.
  const blocker = await pub.publish({ topic, data: data('blocker') })
  await waitFor(() => work.runs(blocker.id).length > 0, {
    timeoutMs: h.timeouts.deliveryMs,
    message: 'the blocking event to start',
  })
  const queued = await pub.publish({ topic, data: data('queued'), ttlMs: 300 })
  const control = await pub.publish({ topic, data: data('control'), ttlMs: 10 * 60_000 })
  const expiresAt = Date.now() + 300
  await waitFor(() => Date.now() > expiresAt, { timeoutMs: 2000, message: 'the queued event to expire' })
  release()
  return { expired: [past.id, queued.id], control: control.id }
}

const expiredDeadLetter: ConformanceCase = {
  id: '47-expired-dead-letter',
  title:
    'an event past its expiresAt (expired when published, or while it waited for a slot) reaches no handler and is dead-lettered once with reason expired; onExpired sees it once',
  gate: atLeastOnce,
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('expire', 'work')
    const dlq = h.topic('expire', 'dead')
    const group = h.caps.groups ? h.group('expire') : undefined
    const dead = new Inbox('dead-letter topic')
    const work = new Inbox('worker')
    const reported: OmnibusEvent[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    await h.subscribe(pub, dlq, dead)
    await h.subscribe(
      await h.backend(),
      topic,
      work,
      {
        deadLetter: dlq,
        concurrency: 1,
        onExpired: (e) => void reported.push(e),
        ...(group === undefined ? {} : { group }),
      },
      (e) => ((e.data as { what?: string }).what === 'blocker' ? gate : undefined),
    )
    await h.settle(pub, topic, [work])
    await h.settle(pub, dlq, [dead])
    const { expired, control } = await publishExpiring(h, pub, topic, work, release)
    await h.waitAcked(work, [control])
    await waitFor(() => expired.every((id) => lettersOf(dead, id).length > 0), {
      timeoutMs: h.timeouts.deliveryMs * 2,
      message: () =>
        `dead letters of the ${expired.length} expired events (${dead.acked.length} letters on the topic, ` +
        `${reported.length} reported to onExpired)`,
    })
    await waitFor(() => reported.length >= expired.length, {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `onExpired for the ${expired.length} expired events (${reported.length} so far)`,
    })
    for (const id of expired) {
      expect(work.runs(id).length, `handler runs of expired event ${id}`).toBe(0)
      const letters = lettersOf(dead, id)
      expect(letters.length, `dead letters of ${id}`).toBe(1)
      const letter = letters[0] as OmnibusEvent
      expect(letter.headers[DLQ_HEADERS.reason]).toBe('expired')
      expect(letter.headers[DLQ_HEADERS.originalTopic]).toBe(topic)
      if (group !== undefined) expect(letter.headers[DLQ_HEADERS.group]).toBe(group)
      expect(letter.expiresAt, 'a dead letter carries no expiry of its own').toBeUndefined()
    }
    expect(lettersOf(dead, control), 'dead letters of the event that had not expired').toEqual([])
    expect(reported.map((e) => e.id).sort()).toEqual([...expired].sort())
  },
}

const expiredDrop: ConformanceCase = {
  id: '48-expired-drop',
  title:
    "with expired: 'drop' an expired event reaches no handler and no dead-letter topic, and is counted once by onExpired",
  gate: atLeastOnce,
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('drop', 'work')
    const dlq = h.topic('drop', 'dead')
    const dead = new Inbox('dead-letter topic')
    const work = new Inbox('worker')
    let count = 0
    const reported: string[] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    await h.subscribe(pub, dlq, dead)
    await h.subscribe(
      await h.backend(),
      topic,
      work,
      {
        deadLetter: dlq,
        concurrency: 1,
        expired: 'drop',
        onExpired: (e) => {
          count++
          reported.push(e.id)
        },
        ...groupOpts(h, 'drop'),
      },
      (e) => ((e.data as { what?: string }).what === 'blocker' ? gate : undefined),
    )
    await h.settle(pub, topic, [work])
    await h.settle(pub, dlq, [dead])
    const { expired, control } = await publishExpiring(h, pub, topic, work, release)
    await h.waitAcked(work, [control])
    await waitFor(() => count >= expired.length, {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `onExpired for the ${expired.length} dropped events (${count} so far)`,
    })
    // Anything the subscription sent to the dead-letter topic was sent before the fence was published.
    const fence = await pub.publish({ topic: dlq, data: { runId: h.runId, fence: true } })
    await h.waitAcked(dead, [fence.id])
    for (const id of expired) {
      expect(work.runs(id).length, `handler runs of expired event ${id}`).toBe(0)
      expect(lettersOf(dead, id), `dead letters of dropped event ${id}`).toEqual([])
    }
    expect(count, 'expired events counted').toBe(expired.length)
    expect([...reported].sort()).toEqual([...expired].sort())
  },
}

/** The latest time a JavaScript Date (and so an RFC 3339 timestamp) can hold. */
const MAX_DATE_MS = 8.64e15

const delayBeyondMax: ConformanceCase = {
  id: '49-delay-beyond-max',
  title:
    'a delay beyond capabilities.delay.maxDelayMs (any delay where delay is false) is a CapabilityError at publish, and fails only its own entry of publishBatch; where the maximum is beyond the range of a Date, a time outside that range is a ConfigurationError instead',
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('toolong')
    const d = h.caps.delay
    const max = d === false || d === undefined ? 0 : d.maxDelayMs
    // A maximum no time can pass (Number.MAX_SAFE_INTEGER: "no limit of its own") leaves only
    // times a Date cannot hold to refuse, and those are bad input rather than a missing capability.
    const unbounded = Date.now() + max + 60_000 > MAX_DATE_MS
    const expected = unbounded ? ConfigurationError : CapabilityError
    const tooLong = unbounded ? MAX_DATE_MS : max + 60_000
    const data = { runId: h.runId, tooLong: true }
    const one = await caught(
      () => pub.publish({ topic, data, delayMs: tooLong }),
      'publish with a delay too long',
    )
    expect(isErrorOf(one, expected), `publish failed with ${one.name}: ${one.message}`).toBe(true)
    if (!unbounded) {
      const at = await caught(
        () => pub.publish({ topic, data, deliverAt: new Date(Date.now() + tooLong) }),
        'publish with a deliverAt too far',
      )
      expect(isErrorOf(at, expected), `publish failed with ${at.name}: ${at.message}`).toBe(true)
    }
    const batch = await pub.publishBatch([
      { topic, data: { runId: h.runId, ok: 1 } },
      { topic, data, delayMs: tooLong },
      { topic, data: { runId: h.runId, ok: 2 } },
    ])
    expect(batch.results.map((r) => r.ok)).toEqual([true, false, true])
    expect(batch.failed).toBe(1)
    const failed = batch.results[1]
    const error = failed !== undefined && !failed.ok ? failed.error : undefined
    expect(
      error !== undefined && isErrorOf(error, expected),
      `the failed entry's error: ${String(error)}`,
    ).toBe(true)
  },
}

/** Cases 46-49: delayed and expiring events, the same kernel rules on every backend. */
export const scheduleCases: readonly ConformanceCase[] = [
  delayedDelivery,
  expiredDeadLetter,
  expiredDrop,
  delayBeyondMax,
]
