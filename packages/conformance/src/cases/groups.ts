import { expect } from 'vitest'
import { Inbox } from '../harness.ts'
import { allOf, type ConformanceCase, groups, persistent } from './types.ts'

const twoGroups: ConformanceCase = {
  id: '14-two-groups',
  title: 'two groups on one pattern each receive every event',
  gate: groups,
  stress: true,
  async run(h) {
    const pub = await h.backend()
    const g1 = new Inbox('group one')
    const g2 = new Inbox('group two')
    const topic = h.topic('tg', 'x')
    await h.subscribe(await h.backend(), h.topic('tg', '*'), g1, { group: h.group('one') })
    await h.subscribe(await h.backend(), h.topic('tg', '*'), g2, { group: h.group('two') })
    await h.settle(pub, topic, [g1, g2])
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 30 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    await h.waitAcked(g1, ids)
    await h.waitAcked(g2, ids)
  },
}

const competing: ConformanceCase = {
  id: '15-competing-members',
  title: 'three members of one group: the union is everything, each event handled by one member',
  gate: groups,
  stress: true,
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('cm')
    const group = h.group('members')
    const members = [new Inbox('member 1'), new Inbox('member 2'), new Inbox('member 3')]
    for (const m of members) await h.subscribe(await h.backend(), topic, m, { group })
    await h.settle(pub, topic, [union(members)])
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 60 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    const all = union(members)
    await h.waitAcked(all, ids)
    const owners = new Map<string, string[]>()
    for (const m of members) {
      for (const e of m.acked) owners.set(e.id, [...(owners.get(e.id) ?? []), m.label])
    }
    const shared = [...owners].filter(([, who]) => who.length > 1)
    expect(shared, 'events handled by more than one member of the group').toEqual([])
  },
}

/** A live view over several inboxes, as if they were one (for "the union is everything"). */
export function union(inboxes: readonly Inbox[]): Inbox {
  const u = new Inbox(inboxes.map((i) => i.label).join(' + '))
  Object.defineProperty(u, 'acked', { get: () => inboxes.flatMap((i) => i.acked) })
  Object.defineProperty(u, 'deliveries', { get: () => inboxes.flatMap((i) => i.deliveries) })
  Object.defineProperty(u, 'probes', { get: () => inboxes.reduce((n, i) => n + i.probes, 0) })
  return u
}

const broadcast: ConformanceCase = {
  id: '16-broadcast',
  title: 'broadcast (no group) subscribers each receive every event',
  stress: true,
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('bc')
    const subs = [new Inbox('subscriber 1'), new Inbox('subscriber 2'), new Inbox('subscriber 3')]
    for (const s of subs) await h.subscribe(await h.backend(), topic, s)
    await h.settle(pub, topic, subs)
    const ids = await h.publishAll(
      pub,
      Array.from({ length: 30 }, (_, i) => ({ topic, data: { runId: h.runId, i } })),
    )
    for (const s of subs) await h.waitAcked(s, ids)
  },
}

const replay: ConformanceCase = {
  id: '17-group-start-position',
  title: "a new group starts at 'latest' by default and replays history with from: 'earliest'",
  gate: allOf(groups, persistent, (caps) =>
    caps.replay ? undefined : 'backend cannot replay (capabilities.replay = false)',
  ),
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('replay')
    const history = await h.publishAll(
      pub,
      Array.from({ length: 10 }, (_, i) => ({ topic, data: { runId: h.runId, i, phase: 'history' } })),
    )
    const latest = new Inbox('new group, default start')
    const earliest = new Inbox("new group, from: 'earliest'")
    await h.subscribe(await h.backend(), topic, latest, { group: h.group('latest') })
    await h.subscribe(await h.backend(), topic, earliest, { group: h.group('earliest'), from: 'earliest' })
    await h.settle(pub, topic, [latest, earliest])
    const fresh = await h.publishAll(
      pub,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i, phase: 'fresh' } })),
    )
    await h.waitAcked(latest, fresh)
    await h.waitAcked(earliest, [...history, ...fresh])
    expect(
      latest.acked.filter((e) => history.includes(e.id)).length,
      'a group with the default start received events published before it existed',
    ).toBe(0)
  },
}

/** Groups and fan-out cases 14–17. */
export const groupCases: readonly ConformanceCase[] = [twoGroups, competing, broadcast, replay]
