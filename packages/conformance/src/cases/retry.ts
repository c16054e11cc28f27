import { DLQ_HEADERS, type OmnibusEvent, redriveInput, type SubscribeOptions } from '@omnibus/core'
import { expect } from 'vitest'
import { Inbox } from '../harness.ts'
import { waitFor } from '../wait.ts'
import { allOf, atLeastOnce, type ConformanceCase, groups } from './types.ts'

const failing = (e: OmnibusEvent) => {
  if (!(e.data as { ok?: boolean }).ok) throw new Error(`boom ${String((e.data as { i?: number }).i)}`)
}

/** Dead letters in `dead` for the original event `id`. */
const lettersOf = (dead: Inbox, id: string) =>
  dead.acked.filter((d) => d.headers[DLQ_HEADERS.originalId] === id)

async function waitLetters(dead: Inbox, ids: readonly string[], timeoutMs: number): Promise<void> {
  await waitFor(() => ids.every((id) => lettersOf(dead, id).length > 0), {
    timeoutMs,
    message: () =>
      `dead letters for ${ids.filter((id) => lettersOf(dead, id).length === 0).length} of ${ids.length} events ` +
      `(dead-letter topic received ${dead.acked.length} events)`,
  })
}

const deadLetter: ConformanceCase = {
  id: '29-dead-letter',
  title: 'an always-failing handler runs exactly maxAttempts times, then one dead letter with diagnostics',
  gate: atLeastOnce,
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('dl', 'work')
    const dlq = h.topic('dl', 'dead')
    const group = h.caps.groups ? h.group('dl') : undefined
    const dead = new Inbox('dead-letter topic')
    const work = new Inbox('failing handler')
    await h.subscribe(b, dlq, dead)
    await h.subscribe(
      b,
      topic,
      work,
      {
        retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 50 },
        deadLetter: dlq,
        ...(group === undefined ? {} : { group }),
      },
      failing,
    )
    await h.settle(b, topic, [work])
    await h.settle(b, dlq, [dead])
    const inputs = Array.from({ length: 2 }, (_, i) => ({
      topic,
      data: { runId: h.runId, i, list: [1, 'two'] },
      headers: { 'x-keep': `keep-${i}` },
      partitionKey: `pk-${i}`,
      correlationId: `corr-${h.runId}`,
    }))
    const ids = await h.publishAll(b, inputs)
    await waitLetters(dead, ids, h.timeouts.deliveryMs * 2)
    const fence = await b.publish({ topic, data: { runId: h.runId, ok: true } })
    await h.waitAcked(work, [fence.id])
    for (const [k, id] of ids.entries()) {
      expect(
        work.runs(id).map((d) => d.attempt),
        `attempts of ${id}`,
      ).toEqual([1, 2, 3])
      const letters = lettersOf(dead, id)
      expect(letters.length, `dead letters for ${id}`).toBe(1)
      const letter = letters[0] as OmnibusEvent
      const input = inputs[k] as (typeof inputs)[number]
      expect(letter.topic).toBe(dlq)
      expect(letter.data).toEqual(input.data)
      expect(letter.headers['x-keep']).toBe(input.headers['x-keep'])
      expect(letter.correlationId).toBe(input.correlationId)
      expect(letter.headers[DLQ_HEADERS.originalTopic]).toBe(topic)
      expect(letter.headers[DLQ_HEADERS.attempts]).toBe('3')
      expect(letter.headers[DLQ_HEADERS.errorName]).toBe('Error')
      expect(letter.headers[DLQ_HEADERS.errorMessage]).toMatch(/boom/)
      expect(Number.isFinite(Date.parse(letter.headers[DLQ_HEADERS.firstFailure] ?? ''))).toBe(true)
      expect(Number.isFinite(Date.parse(letter.headers[DLQ_HEADERS.lastFailure] ?? ''))).toBe(true)
      if (group !== undefined) expect(letter.headers[DLQ_HEADERS.group]).toBe(group)
    }
  },
}

const retryInGroup: ConformanceCase = {
  id: '30-retry-within-group',
  title: "retry stays within the failing group: another group's handler runs once",
  gate: allOf(atLeastOnce, groups),
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('rg')
    const dlq = h.topic('rg', 'dead')
    const dead = new Inbox('dead letters')
    const bad = new Inbox('failing group')
    const good = new Inbox('healthy group')
    const badGroup = h.group('bad')
    await h.subscribe(b, dlq, dead)
    await h.subscribe(
      await h.backend(),
      topic,
      bad,
      { group: badGroup, deadLetter: dlq, retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 50 } },
      failing,
    )
    await h.subscribe(await h.backend(), topic, good, { group: h.group('good') })
    await h.settle(b, topic, [bad, good])
    await h.settle(b, dlq, [dead])
    const ids = await h.publishAll(
      b,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await h.waitAcked(good, ids)
    await waitLetters(dead, ids, h.timeouts.deliveryMs * 2)
    for (const id of ids) {
      expect(bad.runs(id).length, `failing group runs of ${id}`).toBe(3)
      expect(
        good.runs(id).map((d) => d.attempt),
        `healthy group runs of ${id}`,
      ).toEqual([1])
      expect(lettersOf(dead, id).map((d) => d.headers[DLQ_HEADERS.group])).toEqual([badGroup])
    }
  },
}

const backoff: ConformanceCase = {
  id: '31-backoff-schedule',
  title: 'backoff delays follow the configured schedule within jitter bounds; attempts are not multiplied',
  gate: atLeastOnce,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('backoff')
    const dlq = h.topic('backoff', 'dead')
    const retry = { maxAttempts: 4, initialDelayMs: 150, multiplier: 2, jitter: 0.2, maxDelayMs: 500 }
    const dead = new Inbox('dead letters')
    const work = new Inbox('failing handler')
    await h.subscribe(b, dlq, dead)
    const opts: SubscribeOptions = {
      retry,
      deadLetter: dlq,
      ...(h.caps.groups ? { group: h.group('bo') } : {}),
    }
    await h.subscribe(b, topic, work, opts, failing)
    await h.settle(b, topic, [work])
    await h.settle(b, dlq, [dead])
    const ids = await h.publishAll(
      b,
      Array.from({ length: 3 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await waitLetters(dead, ids, 150 + 300 + 500 + h.timeouts.retrySlackMs * 3 + h.timeouts.deliveryMs)
    const schedule = [150, 300, 500] // 150 * 2^k, capped at maxDelayMs
    for (const id of ids) {
      const runs = work.runs(id)
      expect(
        runs.map((d) => d.attempt),
        `attempts of ${id}`,
      ).toEqual([1, 2, 3, 4])
      for (let k = 1; k < runs.length; k++) {
        const gap = (runs[k] as { at: number }).at - (runs[k - 1] as { at: number }).at
        const base = schedule[k - 1] as number
        expect(gap, `delay before attempt ${k + 1} (schedule ${base} ms, jitter 20%)`).toBeGreaterThanOrEqual(
          base * (1 - retry.jitter) - 15,
        )
        expect(gap, `delay before attempt ${k + 1} (schedule ${base} ms)`).toBeLessThanOrEqual(
          base + h.timeouts.retrySlackMs,
        )
      }
      expect(lettersOf(dead, id).length).toBe(1)
    }
  },
}

const foreign: ConformanceCase = {
  id: '32-foreign-wire-message',
  title:
    'a wire message that is not a valid envelope is dead-lettered with the reason; the consumer keeps going',
  needs: (o) => (o.injectRaw === undefined ? 'no injectRaw hook given (options.injectRaw)' : undefined),
  async run(h) {
    const inject = h.options.injectRaw!
    const b = await h.backend()
    const topic = h.topic('foreign')
    const dlq = h.topic('foreign', 'dead')
    const dead = new Inbox('dead letters')
    const work = new Inbox('consumer')
    await h.subscribe(b, dlq, dead)
    await h.subscribe(b, topic, work, { deadLetter: dlq, ...(h.caps.groups ? { group: h.group('fw') } : {}) })
    await h.settle(b, topic, [work])
    await h.settle(b, dlq, [dead])
    const before = await b.publish({ topic, data: { runId: h.runId, n: 'before' } })
    await inject(topic, new TextEncoder().encode(`not json at all ${h.runId} {`))
    await inject(topic, new TextEncoder().encode(JSON.stringify({ hello: 'world', runId: h.runId })))
    const after = await b.publish({ topic, data: { runId: h.runId, n: 'after' } })
    await h.waitAcked(work, [before.id, after.id])
    await waitFor(() => dead.acked.length >= 2, {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `2 dead letters for the foreign messages (got ${dead.acked.length})`,
    })
    for (const letter of dead.acked) {
      expect(letter.headers[DLQ_HEADERS.reason] ?? '', 'dead-letter reason').toMatch(
        /envelope|JSON|specversion/i,
      )
    }
    expect(
      work.deliveries.every((d) => (d.event.data as { runId?: string } | null)?.runId === h.runId),
      'the handler was given a message that is not a valid envelope',
    ).toBe(true)
    expect(work.deliveries.length).toBe(2)
  },
}

const redrive: ConformanceCase = {
  id: '33-redrive',
  title: 'dead-lettered events re-published to their original topic are then processed normally',
  gate: atLeastOnce,
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('redrive')
    const dlq = h.topic('redrive', 'dead')
    const dead = new Inbox('dead letters')
    const work = new Inbox('handler')
    let broken = true
    await h.subscribe(b, dlq, dead)
    await h.subscribe(
      b,
      topic,
      work,
      {
        deadLetter: dlq,
        retry: { maxAttempts: 2, initialDelayMs: 10 },
        ...(h.caps.groups ? { group: h.group('rd') } : {}),
      },
      () => {
        if (broken) throw new Error('downstream unavailable')
      },
    )
    await h.settle(b, topic, [work])
    await h.settle(b, dlq, [dead])
    const original = await b.publish({
      topic,
      data: { runId: h.runId, order: 42 },
      headers: { 'x-tenant': 't1' },
    })
    await waitLetters(dead, [original.id], h.timeouts.deliveryMs * 2)
    broken = false
    const letter = lettersOf(dead, original.id)[0] as OmnibusEvent
    const receipt = await b.publish(redriveInput(letter))
    expect(receipt.id).toBe(original.id)
    await h.waitAcked(work, [original.id])
    const handled = work.acked.find((e) => e.id === original.id) as OmnibusEvent
    expect(handled.topic).toBe(topic)
    expect(handled.data).toEqual({ runId: h.runId, order: 42 })
    expect(handled.headers['x-tenant']).toBe('t1')
    expect(Object.keys(handled.headers).filter((k) => k.startsWith('omnibus-dlq-'))).toEqual([])
  },
}

/** Retry and dead-letter cases 29–33. */
export const retryCases: readonly ConformanceCase[] = [deadLetter, retryInGroup, backoff, foreign, redrive]
