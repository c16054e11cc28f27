import { compilePattern, InvalidTopicError } from '@omnibus/core'
import { expect } from 'vitest'
import { caught, Inbox, isErrorOf } from '../harness.ts'
import type { ConformanceCase } from './types.ts'

/**
 * The grammar table, relative to a per-run prefix: [pattern, topics it must match, topics it must
 * not match]. Every row is also checked against the core matcher, so the table cannot drift.
 */
const TABLE: ReadonlyArray<readonly [string, readonly string[], readonly string[]]> = [
  ['tool.start', ['tool.start'], ['tool', 'tool.start.x', 'tool.end']],
  ['tool.*', ['tool.start', 'tool.end'], ['tool', 'tool.a.b']],
  ['*.error', ['db.error', 'tool.error'], ['error', 'a.b.error']],
  ['**.error', ['error', 'db.error', 'a.b.error'], ['error.x', 'errors']],
  ['tool.**', ['tool', 'tool.start', 'tool.a.b'], ['tools.x']],
  ['agent.*.task', ['agent.r.task'], ['agent.task', 'agent.a.b.task']],
  ['read_*', ['read_file', 'read_'], ['read', 'write_file']],
  ['op.{start,end}', ['op.start', 'op.end'], ['op.stop']],
  ['v?.x', ['v1.x', 'v2.x'], ['v10.x', 'v.x']],
  ['a.**.z', ['a.z', 'a.b.z', 'a.b.c.z'], ['a.b.c', 'b.z']],
]

const grammarTable: ConformanceCase = {
  id: '09-grammar-table',
  title: 'the grammar table gives the same result through the backend as through the core matcher',
  async run(h) {
    const b = await h.backend()
    const prefix = h.topic('gr')
    const topics = [...new Set(TABLE.flatMap(([, yes, no]) => [...yes, ...no]))].map((t) => `${prefix}.${t}`)
    const inboxes = TABLE.map(([p]) => new Inbox(`pattern ${p}`))
    const all = new Inbox('catch-all')
    for (const [k, [pattern, yes, no]] of TABLE.entries()) {
      const full = `${prefix}.${pattern}`
      const match = compilePattern(full)
      for (const t of yes)
        expect(match(`${prefix}.${t}`), `core: ${full} should match ${prefix}.${t}`).toBe(true)
      for (const t of no)
        expect(match(`${prefix}.${t}`), `core: ${full} should not match ${prefix}.${t}`).toBe(false)
      await h.subscribe(b, full, inboxes[k] as Inbox)
    }
    await h.subscribe(b, `${prefix}.**`, all)
    await h.settle(b, `${prefix}.probe`, [all])
    const discovery = h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs
    const ids = await h.publishAll(
      b,
      topics.map((topic) => ({ topic, data: { runId: h.runId, topic } })),
    )
    const idOf = new Map(topics.map((t, i) => [t, ids[i] as string]))
    await h.waitAcked(all, ids, discovery)
    for (const [k, [pattern]] of TABLE.entries()) {
      const full = `${prefix}.${pattern}`
      const match = compilePattern(full)
      const expected = topics.filter((t) => match(t))
      await h.waitAcked(
        inboxes[k] as Inbox,
        expected.map((t) => idOf.get(t) as string),
        discovery,
      )
    }
    // Everything was delivered everywhere it should be; now nothing may be delivered where it should not.
    for (const [k, [pattern]] of TABLE.entries()) {
      const full = `${prefix}.${pattern}`
      const match = compilePattern(full)
      const inbox = inboxes[k] as Inbox
      const wrong = inbox.acked.filter((e) => !match(e.topic)).map((e) => e.topic)
      expect(wrong, `pattern ${full} received topics it does not match`).toEqual([])
    }
  },
}

const concreteTopic: ConformanceCase = {
  id: '10-wildcard-concrete-topic',
  title: 'a wildcard subscription reports the concrete topic of each event',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const one = new Inbox('w.*')
    const many = new Inbox('w.**')
    const subOne = await h.subscribe(b, h.topic('w', '*'), one)
    const subMany = await h.subscribe(b, h.topic('w', '**'), many)
    await h.settle(b, h.topic('w', 'probe'), [one, many])
    const inputs = [h.topic('w', 'alpha'), h.topic('w', 'beta'), h.topic('w', 'beta', 'deep', 'er')].map(
      (topic) => ({ topic, data: { runId: h.runId, topic } }),
    )
    const ids = await h.publishAll(b, inputs)
    const discovery = h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs
    await h.waitAcked(one, ids.slice(0, 2), discovery)
    await h.waitAcked(many, ids, discovery)
    for (const inbox of [one, many]) {
      for (const d of inbox.deliveries) expect(d.event.topic).toBe((d.event.data as { topic: string }).topic)
    }
    expect(one.deliveries.every((d) => d.pattern === subOne.pattern)).toBe(true)
    expect(many.deliveries.every((d) => d.pattern === subMany.pattern)).toBe(true)
  },
}

const overlapping: ConformanceCase = {
  id: '11-overlapping-subscriptions',
  title: 'an event matching two subscriptions of one consumer is delivered once to each',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('ov', 'x')
    const exact = new Inbox('exact')
    const star = new Inbox('ov.*')
    const deep = new Inbox('**')
    await h.subscribe(b, topic, exact)
    await h.subscribe(b, h.topic('ov', '*'), star)
    await h.subscribe(b, h.topic('**'), deep)
    await h.settle(b, topic, [exact, star, deep])
    const ids = await h.publishAll(
      b,
      Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    const fence = await b.publish({ topic: h.topic('ov', 'x'), data: { runId: h.runId, fence: true } })
    for (const inbox of [exact, star, deep]) {
      await h.waitAcked(inbox, [...ids, fence.id])
      expect(inbox.duplicateAcks(), `${inbox.label} got duplicates`).toEqual([])
      expect(inbox.acked.length).toBe(11)
    }
  },
}

const discovery: ConformanceCase = {
  id: '12-wildcard-discovery',
  title: 'a wildcard subscription receives topics first published after it subscribed',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const inbox = new Inbox('new.*')
    await h.subscribe(b, h.topic('new', '*'), inbox)
    await h.settle(b, h.topic('new', 'probe'), [inbox])
    const topics = Array.from({ length: 5 }, (_, i) => h.topic('new', `fresh${i}`))
    const ids = await h.publishAll(
      b,
      topics.map((topic) => ({ topic, data: { runId: h.runId, topic } })),
    )
    await h.waitAcked(inbox, ids, h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs)
  },
}

const invalidNames: ConformanceCase = {
  id: '13-invalid-topics',
  title: 'invalid topics and patterns are rejected with an error naming the problem',
  async run(h) {
    const b = await h.backend()
    const base = h.topic('bad')
    const topics: Array<[string, RegExp]> = [
      ['', /empty/],
      [`${base}..x`, /adjacent|segment/],
      [`.${base}`, /starts with/],
      [`${base}.`, /ends with/],
      [`${base}.a b`, /space/],
      [`${base}.*`, /wildcard|'\*'/],
      [`${base}.x/y`, /'\/'/],
      [`${base}.${'x'.repeat(250)}`, /249|long/],
    ]
    for (const [topic, why] of topics) {
      const err = await caught(() => b.publish({ topic, data: null }), `publish to "${topic}"`)
      expect(isErrorOf(err, InvalidTopicError), `publish "${topic}": got ${err.name}: ${err.message}`).toBe(
        true,
      )
      expect(err.message).toMatch(why)
    }
    const patterns: Array<[string, RegExp]> = [
      ['', /empty/],
      [`${base}..x`, /adjacent|segment/],
      [`${base}.a**`, /\*\*/],
      [`${base}.{a`, /never closed/],
      [`${base}.a b`, /space/],
      [`${base}.[ab`, /never closed/],
    ]
    const inbox = new Inbox('never')
    for (const [pattern, why] of patterns) {
      const err = await caught(() => h.subscribe(b, pattern, inbox), `subscribe to "${pattern}"`)
      expect(
        isErrorOf(err, InvalidTopicError),
        `subscribe "${pattern}": got ${err.name}: ${err.message}`,
      ).toBe(true)
      expect(err.message).toMatch(why)
    }
    // The backend still works after the rejections.
    const ok = new Inbox('valid')
    await h.subscribe(b, `${base}.ok`, ok)
    await h.settle(b, `${base}.ok`, [ok])
    const r = await b.publish({ topic: `${base}.ok`, data: 1 })
    await h.waitAcked(ok, [r.id])
  },
}

/** Topic grammar cases 9–13. */
export const grammarCases: readonly ConformanceCase[] = [
  grammarTable,
  concreteTopic,
  overlapping,
  discovery,
  invalidNames,
]
