import { type AgentMessage, AgentMessageBus, silentLogger } from '@omnibus/core'
import { expect } from 'vitest'
import { Inbox } from '../harness.ts'
import { waitFor } from '../wait.ts'
import { allOf, atLeastOnce, type ConformanceCase, groups } from './types.ts'

const sendBeforeSubscribe: ConformanceCase = {
  id: '50-send-before-subscribe',
  title:
    'AgentMessageBus: messages and a request sent to an agent before its first subscribeAgent reach it when it starts, at the default start',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('mbox')
    const sender = new AgentMessageBus(await h.backend(), { agentId: 'early', prefix, logger: silentLogger })
    h.defer(() => sender.close())
    await sender.start()
    const sent: string[] = []
    for (let i = 0; i < 3; i++) {
      sent.push((await sender.send('late', 'task.assigned', { runId: h.runId, i })).id)
    }
    // Another logical topic, so a backend that keeps one stream, queue or topic per topic must keep
    // each of them for the agent, not only the first.
    sent.push((await sender.send('late', 'note', { runId: h.runId, i: 3 })).id)
    const reply = sender.request<{ answer: number }>(
      'late',
      'task.ask',
      { runId: h.runId },
      // The agent starts after this request was sent: its join (a Kafka group join) is inside the wait.
      { timeoutMs: h.timeouts.deliveryMs + h.timeouts.groupJoinMs * 3 + h.caps.wildcardDiscoveryMs },
    )
    reply.catch(() => undefined)

    const receiver = new AgentMessageBus(await h.backend(), { agentId: 'late', prefix, logger: silentLogger })
    h.defer(() => receiver.close())
    await receiver.start()
    const received: AgentMessage[] = []
    await h.within(
      receiver.subscribeAgent('late', async (msg, ctx) => {
        received.push(msg)
        if (msg.topic === 'task.ask') await ctx.reply({ answer: 42 })
      }),
      'subscribeAgent("late")',
    )
    await waitFor(() => sent.every((id) => received.some((m) => m.id === id)), {
      timeoutMs: h.timeouts.deliveryMs + h.timeouts.groupJoinMs + h.caps.wildcardDiscoveryMs,
      message: () =>
        `the agent started late received ${sent.filter((id) => received.some((m) => m.id === id)).length} of ` +
        `the ${sent.length} messages sent before it subscribed`,
    })
    expect(await reply).toEqual({ answer: 42 })
    const first = received.find((m) => m.id === sent[0])
    expect(first?.from).toBe('early')
    expect(first?.topic).toBe('task.assigned')
    expect(first?.data).toEqual({ runId: h.runId, i: 0 })
    // A message sent once the agent runs still arrives (the mailbox is its live group).
    const after = await sender.send('late', 'task.assigned', { runId: h.runId, after: true })
    await waitFor(() => received.some((m) => m.id === after.id), {
      timeoutMs: h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
      message: 'a message sent after the agent subscribed',
    })
  },
}

const ensureGroup: ConformanceCase = {
  id: '51-ensure-group',
  title:
    "ensureGroup makes a group hold events published before its first member (literal and wildcard patterns, idempotent); a new group at 'latest' does not get them",
  gate: allOf(groups),
  async run(h) {
    const pub = await h.backend()
    const topic = h.topic('ensure', 'literal')
    const wildcard = h.topic('ensure', 'tree', '**')
    const declared = h.group('declared')
    const declaredTree = h.group('declared-tree')
    await h.within(pub.ensureGroup(topic, declared), `ensureGroup("${topic}")`)
    // Idempotent, also from another instance.
    await h.within(pub.ensureGroup(topic, declared), `ensureGroup("${topic}") again`)
    await h.within(
      (await h.backend()).ensureGroup(topic, declared),
      `ensureGroup("${topic}") from another instance`,
    )
    await h.within(pub.ensureGroup(wildcard, declaredTree), `ensureGroup("${wildcard}")`)
    const early = await h.publishInOrder(
      pub,
      Array.from({ length: 5 }, (_, i) => ({ topic, data: { runId: h.runId, i, phase: 'early' } })),
    )
    // Topics under the wildcard that did not exist when the group was declared.
    const earlyTree = await h.publishInOrder(
      pub,
      Array.from({ length: 4 }, (_, i) => ({
        topic: h.topic('ensure', 'tree', `t${i % 2}`, 'leaf'),
        data: { runId: h.runId, i, phase: 'early' },
      })),
    )

    const member = new Inbox('first member of the declared group')
    const treeMember = new Inbox('first member of the declared wildcard group')
    const fresh = new Inbox("a new group at 'latest'")
    await h.subscribe(await h.backend(), topic, member, { group: declared })
    await h.subscribe(await h.backend(), wildcard, treeMember, { group: declaredTree })
    await h.subscribe(await h.backend(), topic, fresh, { group: h.group('fresh') })
    await h.waitAcked(member, early, h.timeouts.deliveryMs + h.timeouts.groupJoinMs)
    await h.waitAcked(
      treeMember,
      earlyTree,
      h.timeouts.deliveryMs + h.timeouts.groupJoinMs + h.caps.wildcardDiscoveryMs,
    )
    await h.settle(pub, topic, [member, fresh])
    const fence = await pub.publish({ topic, data: { runId: h.runId, fence: true } })
    await h.waitAcked(fresh, [fence.id])
    await h.waitAcked(member, [fence.id])
    expect(
      fresh.acked.filter((e) => early.includes(e.id)).length,
      'a new group at the default start received events published before it existed (ensureGroup must only make the declared group hold them)',
    ).toBe(0)
    // Declaring a group that has members changes nothing for it.
    await h.within(pub.ensureGroup(topic, declared), 'ensureGroup of a live group')
    const later = await pub.publish({ topic, data: { runId: h.runId, phase: 'later' } })
    await h.waitAcked(member, [later.id])
  },
}

/** Durable mailboxes: cases 50–51. */
export const mailboxCases: readonly ConformanceCase[] = [sendBeforeSubscribe, ensureGroup]
