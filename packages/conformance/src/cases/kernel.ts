import { DLQ_HEADERS, type OmnibusEvent, type SubscribeOptions } from '@omnibus/core'
import { expect } from 'vitest'
import { type ChildConsumer, spawnConsumer } from '../child.ts'
import { type CaseContext, Inbox } from '../harness.ts'
import { WaitTimeoutError, waitFor, withDeadline } from '../wait.ts'
import { union } from './groups.ts'
import {
  allOf,
  atLeastOnce,
  type ConformanceCase,
  crossProcess,
  groups,
  needsGuarantee,
  persistent,
} from './types.ts'

const work = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const forever = () => new Promise<never>(() => {})

const needsChild = (o: { childProcess?: unknown }) =>
  o.childProcess === undefined ? 'no childProcess hooks given (options.childProcess)' : undefined

/** Deadline for an event whose consumer died to reach another consumer. */
const redeliveryMs = (h: CaseContext) =>
  h.timeouts.deliveryMs + h.timeouts.visibilityMs * 2 + h.timeouts.groupJoinMs

/**
 * Time allowed on top of a drain timeout for `disconnect()` to close the broker connections; the
 * drain itself must not wait longer than it was told to.
 */
const CLOSE_SLACK_MS = 2000

const groupOpts = (h: CaseContext, name: string): SubscribeOptions =>
  h.caps.groups ? { group: h.group(name) } : {}

const exactlyOnceConcurrent: ConformanceCase = {
  id: '40-exactly-once-concurrent',
  title:
    'exactly-once with two members at concurrency 4: copies of one id delivered at once, and redelivered, give one effect',
  gate: allOf((caps) => needsGuarantee(caps, 'exactly-once'), groups),
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('eoc')
    const opts: SubscribeOptions = {
      group: h.group('eoc'),
      guarantee: 'exactly-once',
      concurrency: 4,
      retry: { maxAttempts: 5, initialDelayMs: 10, maxDelayMs: 50 },
    }
    // Each run takes long enough for the other copies of its id to arrive while it is in flight,
    // and the first attempt of every other id fails, so its redelivery overlaps the copies too.
    const behaviour = async (e: OmnibusEvent, ctx: { attempt: number }) => {
      await work(40)
      if ((e.data as { flaky?: boolean }).flaky && ctx.attempt === 1) throw new Error('forced redelivery')
    }
    const members = [new Inbox('member 1'), new Inbox('member 2')]
    for (const m of members) await h.subscribe(await h.backend(), topic, m, opts, behaviour)
    const all = union(members)
    await h.settle(pub, topic, [all])
    const inputs = Array.from({ length: 12 }, (_, i) => ({
      topic,
      id: `${h.runId}-eoc-${i}`,
      data: { runId: h.runId, i, flaky: i % 2 === 0 },
      guarantee: 'exactly-once' as const,
    }))
    const ids = inputs.map((e) => e.id)
    const [, , batch] = await Promise.all([
      h.publishAll(pub, inputs),
      h.publishAll(pub, inputs),
      pub.publishBatch(inputs),
    ])
    expect(batch.failed, 'entries of publishBatch that failed').toBe(0)
    await h.waitAcked(all, ids, h.timeouts.deliveryMs * 2)
    const fence = await pub.publish({
      topic,
      data: { runId: h.runId, fence: true },
      guarantee: 'exactly-once',
    })
    await h.waitAcked(all, [fence.id])
    const counts = all.ackCounts()
    const twice = ids.filter((id) => (counts.get(id) ?? 0) !== 1)
    expect(
      twice.map((id) => `${id}: ${counts.get(id)} effects (${all.runs(id).length} runs)`),
      'ids whose handler took effect more than once',
    ).toEqual([])
  },
}

/** A member of case 41's group: it dies on the poison message, by leaving mid-handler or killed. */
interface Poisoned {
  readonly inbox: Inbox
  /** Resolves once this member is gone. */
  die(): Promise<void>
}

/** A live view over every inbox `members()` returns, members added later included. */
function liveUnion(label: string, members: () => readonly Inbox[]): Inbox {
  const u = new Inbox(label)
  Object.defineProperty(u, 'acked', { get: () => members().flatMap((i) => i.acked) })
  Object.defineProperty(u, 'deliveries', { get: () => members().flatMap((i) => i.deliveries) })
  Object.defineProperty(u, 'probes', { get: () => members().reduce((n, i) => n + i.probes, 0) })
  return u
}

async function poisonCase(
  h: CaseContext,
  startMember: (k: number, opts: SubscribeOptions) => Promise<Poisoned>,
): Promise<void> {
  const maxAttempts = 3
  const pub = await h.backend()
  const topic = h.topic('poison')
  const dlq = h.topic('poison', 'dead')
  const group = h.group('poison')
  const opts: SubscribeOptions = {
    group,
    deadLetter: dlq,
    visibilityTimeoutMs: h.timeouts.visibilityMs,
    retry: { maxAttempts, initialDelayMs: 10, maxDelayMs: 50 },
  }
  const dead = new Inbox('dead-letter topic')
  await h.subscribe(pub, dlq, dead)
  await h.settle(pub, dlq, [dead])
  const members: Poisoned[] = [await startMember(0, opts)]
  const all = liveUnion('every member', () => members.map((m) => m.inbox))
  await h.settle(pub, topic, [(members[0] as Poisoned).inbox])
  const normal = (n: number, phase: string) =>
    Array.from({ length: n }, (_, i) => ({ topic, data: { runId: h.runId, i, phase } }))
  const before = await h.publishAll(pub, normal(3, 'before'))
  const poison = (await pub.publish({ topic, data: { runId: h.runId, poison: true } })).id
  const during = await h.publishAll(pub, normal(3, 'during'))
  const letters = () => dead.acked.filter((d) => d.headers[DLQ_HEADERS.originalId] === poison)
  const runs = () => all.deliveries.filter((d) => d.event.id === poison).length
  for (let k = 0; letters().length === 0; k++) {
    const member = members[members.length - 1] as Poisoned
    await waitFor(() => letters().length > 0 || member.inbox.runs(poison).length > 0, {
      timeoutMs: redeliveryMs(h) + h.timeouts.deliveryMs,
      message: () =>
        `member ${k + 1} to be given the poison message, or its dead letter (runs so far: ${runs()}, ` +
        `maxAttempts ${maxAttempts})`,
    })
    if (letters().length > 0) break
    expect(
      runs(),
      `the poison message ran again after ${maxAttempts} deliveries without an acknowledgement instead of ` +
        'being dead-lettered',
    ).toBeLessThanOrEqual(maxAttempts)
    // The next member joins before this one dies, so the group is never empty.
    members.push(await startMember(k + 1, opts))
    await member.die()
  }
  const current = members[members.length - 1] as Poisoned
  const after = await h.publishAll(pub, normal(3, 'after'))
  await h.waitAcked(current.inbox, after, redeliveryMs(h))
  const others = [...before, ...during]
  await waitFor(() => all.missing(others).length === 0, {
    timeoutMs: redeliveryMs(h),
    message: () => {
      const missing = all.missing(others)
      const lettered = missing.filter((id) =>
        dead.acked.some((d) => d.headers[DLQ_HEADERS.originalId] === id),
      )
      return (
        `the group to handle the ${others.length} events published around the poison message ` +
        `(${missing.length} never handled; ${lettered.length} of them dead-lettered instead: ` +
        `${dead.acked.find((d) => lettered.includes(d.headers[DLQ_HEADERS.originalId] ?? ''))?.headers[DLQ_HEADERS.reason] ?? 'no reason'})`
      )
    },
  })
  expect(runs(), 'handler runs of the poison message').toBe(maxAttempts)
  expect(letters().length, 'dead letters of the poison message').toBe(1)
  const letter = letters()[0] as OmnibusEvent
  expect(letter.data).toEqual({ runId: h.runId, poison: true })
  expect(letter.headers[DLQ_HEADERS.originalTopic]).toBe(topic)
  expect(letter.headers[DLQ_HEADERS.group]).toBe(group)
  expect(letter.headers[DLQ_HEADERS.attempts], 'attempts recorded in the dead letter').toBe(
    String(maxAttempts),
  )
  expect(
    letter.headers[DLQ_HEADERS.reason] ?? letter.headers[DLQ_HEADERS.errorMessage] ?? '',
    'the reason given in the dead letter',
  ).not.toBe('')
}

const poisonInProcess: ConformanceCase = {
  id: '41-poison-message',
  title:
    'a message whose consumers leave mid-handler is dead-lettered after maxAttempts deliveries and not run again; the group keeps consuming',
  gate: allOf(atLeastOnce, groups),
  timeoutMs: (t) => 5 * (t.deliveryMs * 2 + t.visibilityMs * 2 + t.groupJoinMs),
  async run(h) {
    await poisonCase(h, async (k, opts) => {
      const b = await h.backend()
      const inbox = new Inbox(`member ${k + 1}`)
      await h.subscribe(b, h.topic('poison'), inbox, opts, (e) =>
        (e.data as { poison?: boolean }).poison ? forever() : undefined,
      )
      return {
        inbox,
        die: () => h.within(b.disconnect({ drainTimeoutMs: 100 }), `disconnect() of member ${k + 1}`),
      }
    })
  },
}

const poisonKilled: ConformanceCase = {
  id: '41-poison-message-killed',
  title:
    'a message that kills its consumer process is dead-lettered after maxAttempts deliveries and not run again; the group keeps consuming',
  gate: allOf(atLeastOnce, groups, crossProcess),
  needs: needsChild,
  timeoutMs: (t) => 5 * (t.deliveryMs * 2 + t.visibilityMs * 2 + t.groupJoinMs),
  async run(h) {
    const hooks = h.options.childProcess!
    await poisonCase(h, async (k, opts) => {
      const child: ChildConsumer = spawnConsumer(hooks, {
        label: `child member ${k + 1}`,
        pattern: h.topic('poison'),
        subscribeOptions: opts,
        behaviour: 'poison',
        readyTimeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs,
      })
      h.defer(() => child.kill())
      await child.ready
      return {
        inbox: child.inbox,
        // The child kills itself on the poison message; make sure it is gone before going on.
        die: () =>
          withDeadline(
            child.exited,
            h.timeouts.deliveryMs,
            `child member ${k + 1} to die on the poison message`,
          ),
      }
    })
  },
}

const selfUnsubscribe: ConformanceCase = {
  id: '42-unsubscribe-in-handler',
  title:
    'a handler that awaits unsubscribe() of its own subscription or disconnect() returns; disconnect with a drain timeout returns within it while a handler hangs',
  async run(h) {
    // Part 1: unsubscribe() of the subscription whose handler is running cannot wait for that handler.
    const b1 = await h.backend()
    const topic = h.topic('selfunsub')
    const inbox = new Inbox('self-unsubscribing handler')
    const returned: string[] = []
    const sub = await h.subscribe(b1, topic, inbox, groupOpts(h, 'selfunsub'), async (e, ctx) => {
      await ctx.subscription.unsubscribe()
      returned.push(e.id)
    })
    await h.settle(b1, topic, [inbox])
    const first = await b1.publish({ topic, data: { runId: h.runId, stop: true } })
    await waitFor(() => inbox.runs(first.id).length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the handler that unsubscribes to start',
    })
    await waitFor(() => returned.includes(first.id), {
      timeoutMs: h.timeouts.deliveryMs,
      message:
        'a handler awaiting unsubscribe() of its own subscription to return (unsubscribe waits for the handler that called it)',
    })
    expect(sub.active, 'the subscription after its handler unsubscribed it').toBe(false)

    // Part 2: a handler that never returns and ignores its signal holds disconnect() no longer than the drain timeout.
    const drainMs = 300
    const b2 = await h.backend()
    const topic2 = h.topic('selfunsub', 'hung')
    const hung = new Inbox('hung handler')
    await h.subscribe(b2, topic2, hung, groupOpts(h, 'hung'), forever)
    await h.settle(b2, topic2, [hung])
    const stuck = await b2.publish({ topic: topic2, data: { runId: h.runId, stuck: true } })
    await waitFor(() => hung.runs(stuck.id).length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the hung handler to start',
    })
    const t0 = Date.now()
    await withDeadline(
      b2.disconnect({ drainTimeoutMs: drainMs }),
      drainMs + CLOSE_SLACK_MS + h.timeouts.deliveryMs,
      `disconnect({ drainTimeoutMs: ${drainMs} }) with a hung handler`,
    )
    expect(
      Date.now() - t0,
      `disconnect({ drainTimeoutMs: ${drainMs} }) with a hung handler (ms; ${CLOSE_SLACK_MS} ms allowed to close)`,
    ).toBeLessThan(drainMs + CLOSE_SLACK_MS)

    // Part 3: disconnect() awaited inside a handler returns once the other handlers are drained.
    const b3 = await h.backend()
    const topic3 = h.topic('selfunsub', 'close')
    const closing = new Inbox('handler that disconnects its backend')
    const closed: string[] = []
    await h.subscribe(b3, topic3, closing, groupOpts(h, 'close'), async (e) => {
      await b3.disconnect({ drainTimeoutMs: drainMs })
      closed.push(e.id)
    })
    await h.settle(b3, topic3, [closing])
    const last = await b3.publish({ topic: topic3, data: { runId: h.runId, close: true } })
    await waitFor(() => closing.runs(last.id).length > 0, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the handler that disconnects to start',
    })
    await waitFor(() => closed.includes(last.id), {
      timeoutMs: drainMs + CLOSE_SLACK_MS,
      message: `a handler awaiting disconnect({ drainTimeoutMs: ${drainMs} }) of its own backend to return`,
    })
    expect(b3.isConnected).toBe(false)
  },
}

const deadLetterNoLoop: ConformanceCase = {
  id: '43-dead-letter-no-loop',
  title:
    'a failing handler on the dead-letter topic does not loop: bounded runs, one dead letter per failed event',
  gate: atLeastOnce,
  async run(h) {
    const maxAttempts = 2
    const retry = { maxAttempts, initialDelayMs: 10, maxDelayMs: 50 }
    const b = await h.backend()
    const topic = h.topic('dlloop')
    const dlq = h.topic('dlloop', 'dead')
    const observer = new Inbox('observer of the dead-letter topic')
    const failingDead = new Inbox('failing handler of the dead-letter topic')
    const failingWork = new Inbox('failing handler')
    await h.subscribe(b, dlq, observer)
    // Its own failures would be dead-lettered into the topic it reads: the loop this case is about.
    await h.subscribe(b, dlq, failingDead, { deadLetter: dlq, retry, ...groupOpts(h, 'dead') }, (e) => {
      if (!(e.data as { fence?: boolean }).fence) throw new Error('the dead-letter handler fails too')
    })
    await h.subscribe(b, topic, failingWork, { deadLetter: dlq, retry, ...groupOpts(h, 'work') }, (e) => {
      if (!(e.data as { fence?: boolean }).fence) throw new Error('the handler fails')
    })
    await h.settle(b, topic, [failingWork])
    await h.settle(b, dlq, [observer, failingDead])
    const lettersOf = (id: string) =>
      failingDead.deliveries.filter((d) => d.event.headers[DLQ_HEADERS.originalId] === id)
    // Two rounds, one after the other: a letter dead-lettered again in the first round has time to
    // come back while the second runs.
    const originals: string[] = []
    for (const n of [1, 2]) {
      const id = (await b.publish({ topic, data: { runId: h.runId, n } })).id
      originals.push(id)
      await waitFor(() => lettersOf(id).length >= maxAttempts && failingDead.inFlight === 0, {
        timeoutMs: h.timeouts.deliveryMs * 2,
        message: () =>
          `the dead letter of event ${n} to fail ${maxAttempts} times on the dead-letter topic ` +
          `(${lettersOf(id).length} runs so far)`,
      })
    }
    const fence = await b.publish({ topic: dlq, data: { runId: h.runId, fence: true } })
    await h.waitAcked(observer, [fence.id])
    await h.waitAcked(failingDead, [fence.id])
    const letters = [...new Set(observer.acked.filter((e) => e.id !== fence.id).map((e) => e.id))]
    const describe = (id: string) => {
      const e = observer.acked.find((x) => x.id === id) as OmnibusEvent
      return `${id} (dead letter of ${e.headers[DLQ_HEADERS.originalTopic]} ${e.headers[DLQ_HEADERS.originalId]})`
    }
    expect(letters.map(describe), 'events on the dead-letter topic').toHaveLength(originals.length)
    const runsByLetter = new Map<string, number>()
    for (const d of failingDead.deliveries) {
      if (d.event.id !== fence.id) runsByLetter.set(d.event.id, (runsByLetter.get(d.event.id) ?? 0) + 1)
    }
    for (const [id, n] of runsByLetter) {
      expect(n, `runs of the dead-letter handler for ${id}`).toBeLessThanOrEqual(maxAttempts)
    }
  },
}

const concurrencyReached: ConformanceCase = {
  id: '44-concurrency-reached',
  title: 'concurrency: 4 with handlers that wait runs 4 handlers at once, with and without a group',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const subs: Array<[Inbox, string, SubscribeOptions]> = [
      [new Inbox('concurrency 4, no group'), h.topic('reach', 'broadcast'), { concurrency: 4 }],
    ]
    if (h.caps.groups) {
      subs.push([
        new Inbox('concurrency 4 in a group'),
        h.topic('reach', 'group'),
        { concurrency: 4, group: h.group('reach') },
      ])
    }
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    for (const [inbox, topic, opts] of subs) await h.subscribe(b, topic, inbox, opts, () => gate)
    for (const [inbox, topic] of subs) await h.settle(b, topic, [inbox])
    const ids = await Promise.all(
      subs.map(([, topic]) =>
        h.publishAll(
          b,
          Array.from({ length: 8 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
        ),
      ),
    )
    try {
      for (const [inbox] of subs) {
        await waitFor(() => inbox.inFlight >= 4, {
          timeoutMs: h.timeouts.deliveryMs,
          message: () =>
            `${inbox.label}: 4 handlers in flight at once (at most ${inbox.maxInFlight} ran at once; ` +
            `${inbox.deliveries.length} of 8 started)`,
        })
      }
    } finally {
      release()
    }
    for (const [k, [inbox]] of subs.entries()) await h.waitAcked(inbox, ids[k] as string[])
    for (const [inbox] of subs) expect(inbox.maxInFlight, `${inbox.label}: most handlers at once`).toBe(4)
  },
}

const rounds = 200
const parallelRounds = 20

const defaultStartRounds: ConformanceCase = {
  id: '45-default-start-rounds',
  title: `${rounds} rounds of publish, then subscribe a new group at the default start: no group receives an earlier event`,
  gate: allOf(groups, persistent),
  timeoutMs: (t) => Math.ceil(rounds / parallelRounds) * (t.groupJoinMs * 3 + t.deliveryMs * 2),
  async run(h) {
    const b = await h.backend()
    const leaks: string[] = []
    const round = async (k: number) => {
      // Each round has its own topic, so a group never sees later rounds' traffic.
      const topic = h.topic('start', `r${k}`)
      const history = await h.publishAll(
        b,
        Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, k, i, phase: 'history' } })),
      )
      const inbox = new Inbox(`new group of round ${k}`)
      const sub = await h.subscribe(b, topic, inbox, { group: h.group(`r${k}`) })
      await h.settle(b, topic, [inbox])
      const fence = await b.publish({ topic, data: { runId: h.runId, k, fence: true } })
      await h.waitAcked(inbox, [fence.id])
      const early = inbox.deliveries.filter((d) => history.includes(d.event.id)).length
      if (early > 0) leaks.push(`round ${k}: ${early} of ${history.length}`)
      await h.within(sub.unsubscribe(), `unsubscribe() of the group of round ${k}`)
    }
    let next = 0
    const worker = async () => {
      for (let k = next++; k < rounds; k = next++) await round(k)
    }
    try {
      await Promise.all(Array.from({ length: parallelRounds }, worker))
    } catch (error) {
      if (error instanceof WaitTimeoutError && leaks.length > 0) {
        throw new Error(`${error.message}; earlier rounds leaked: ${leaks.slice(0, 5).join('; ')}`)
      }
      throw error
    }
    expect(
      leaks,
      `new groups at the default start that received events published before they subscribed (${leaks.length} of ${rounds})`,
    ).toEqual([])
  },
}

/** Cases 40–45: the delivery rules every backend applies the same way. */
export const kernelCases: readonly ConformanceCase[] = [
  exactlyOnceConcurrent,
  poisonInProcess,
  poisonKilled,
  selfUnsubscribe,
  deadLetterNoLoop,
  concurrencyReached,
  defaultStartRounds,
]
