import {
  type AgentMessage,
  AgentMessageBus,
  type AgentMessageBusOptions,
  AgentReplyError,
  AgentUnavailableError,
  type PresenceEvent,
  silentLogger,
  TimeoutError,
} from '@omnibus/core'
import { expect } from 'vitest'
import { spawnAgent } from '../agent-process.ts'
import type { CaseContext } from '../harness.ts'
import { caught, isErrorOf } from '../harness.ts'
import { waitFor } from '../wait.ts'
import { allOf, atLeastOnce, type ConformanceCase, crossProcess } from './types.ts'

const needsChild = (o: { childProcess?: unknown }) =>
  o.childProcess === undefined ? 'no childProcess hooks given (options.childProcess)' : undefined

/**
 * The heartbeat interval of the presence cases: short enough that "two intervals" is quick to
 * check, long enough that a beat's delivery time on a networked broker stays well inside one.
 */
function heartbeatMs(h: CaseContext): number {
  return Math.min(2000, Math.max(300, Math.round(h.timeouts.deliveryMs / 5)))
}

/** A bus on a fresh backend instance (a separate connection, as another process would have). */
async function agentBus(
  h: CaseContext,
  prefix: string,
  agentId: string,
  options: Omit<AgentMessageBusOptions, 'agentId' | 'prefix'> = {},
): Promise<AgentMessageBus> {
  const bus = new AgentMessageBus(await h.backend(), { agentId, prefix, logger: silentLogger, ...options })
  h.defer(() => bus.close())
  await h.within(bus.start(), `AgentMessageBus(${agentId}).start()`)
  return bus
}

/** Records presence events, for waits with a deadline. */
function watch(bus: AgentMessageBus): PresenceEvent[] {
  const events: PresenceEvent[] = []
  bus.onPresence((e) => events.push(e))
  return events
}

function describeEvents(events: readonly PresenceEvent[]): string {
  return events
    .map((e) => `${e.type} ${e.agentId}@${e.instance} (${e.reason}, ${e.instances} left)`)
    .join('; ')
}

/** Waits until a request to `agentId` is answered: its subscription and the caller's inbox are live. */
async function warmUp(h: CaseContext, caller: AgentMessageBus, agentId: string): Promise<void> {
  await waitFor(
    async () => {
      try {
        await caller.request(agentId, 'warmup', {}, { timeoutMs: 1000, queue: true })
        return true
      } catch {
        return false
      }
    },
    {
      timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
      message: `a first reply from agent "${agentId}"`,
    },
  )
}

const expiredRequest: ConformanceCase = {
  id: '52-agent-expired-request',
  title:
    'AgentMessageBus: requests that timed out while the agent was busy never run (counted in stats().expired); a send past its deadline neither',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const caller = await agentBus(h, prefix, 'caller')
    const agent = await agentBus(h, prefix, 'agent-host')
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const ran: unknown[] = []
    let pings = 0
    // One handler at a time: the requests below wait behind the blocked one until after their deadline.
    await h.within(
      agent.subscribeAgent('busy', async (msg, ctx) => {
        const data = msg.data as { kind?: string }
        if (data.kind === 'block') await gate
        else if (data.kind === 'ping') pings++
        else if (data.kind !== undefined) ran.push(data)
        if (ctx.canReply) await ctx.reply('ok')
      }),
      'subscribeAgent(busy)',
    )
    // Warmed up with plain messages, which carry no deadline: every expiry counted below is one of ours.
    await waitFor(
      async () => {
        await caller.send('busy', 'work', { kind: 'ping' })
        return pings > 0
      },
      {
        timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
        message: 'a first message handled by agent "busy"',
        intervalMs: 200,
      },
    )
    // The caller's reply inbox must be live too, or the requests below would time out before they
    // are even sent (a request is not sent once its caller has given up): warmed on another bus.
    const helper = await agentBus(h, prefix, 'helper-host')
    await h.within(
      helper.subscribeAgent('helper', async (_m, ctx) => ctx.reply('ok')),
      'subscribeAgent(helper)',
    )
    await warmUp(h, caller, 'helper')
    const key = { partitionKey: 'busy' }
    await caller.send('busy', 'work', { kind: 'block' }, key)
    const expiring = [1, 2].map((n) =>
      caught(
        () => caller.request('busy', 'work', { kind: 'late', n }, { timeoutMs: 300, ...key }),
        `request ${n} with a 300 ms timeout`,
      ),
    )
    const sendDeadline = Date.now() + 300
    await caller.send('busy', 'work', { kind: 'late-send' }, { deadline: sendDeadline, ...key })
    for (const error of await Promise.all(expiring)) {
      expect(
        isErrorOf(error, TimeoutError),
        `expected TimeoutError, got ${error.name}: ${error.message}`,
      ).toBe(true)
    }
    await waitFor(() => Date.now() > sendDeadline, { timeoutMs: 1000, message: 'the deadline of the send' })
    // Past every deadline now: the agent goes on, and must skip the three.
    release()
    await waitFor(() => agent.stats().expired >= 3, {
      timeoutMs: h.timeouts.deliveryMs * 2 + h.timeouts.retrySlackMs,
      message: () =>
        `the two timed-out requests and the send past its deadline to be settled as expired (expired = ${agent.stats().expired}, ran = ${JSON.stringify(ran)})`,
    })
    expect(ran, 'handler runs of messages past their deadline').toEqual([])
    expect(agent.stats().expired).toBe(3)
    // The agent still answers a request in time.
    expect(
      await caller.request('busy', 'work', { kind: 'fresh' }, { timeoutMs: h.timeouts.deliveryMs, ...key }),
    ).toBe('ok')
    expect(ran).toEqual([{ kind: 'fresh' }])
  },
}

const failureReply: ConformanceCase = {
  id: '53-agent-handler-failed',
  title:
    "AgentMessageBus: a request whose handler fails for good rejects at once with AgentReplyError HANDLER_FAILED (the error's name, message and the attempts), not a timeout",
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const caller = await agentBus(h, prefix, 'caller')
    const agent = await agentBus(h, prefix, 'failer-host', {
      retry: { maxAttempts: 2, initialDelayMs: 20, maxDelayMs: 50 },
    })
    const runs: number[] = []
    await h.within(
      agent.subscribeAgent('failer', async (msg, ctx) => {
        const data = msg.data as { mode?: string }
        if (data.mode === 'ok') {
          await ctx.reply('ok')
          return
        }
        runs.push(ctx.attempt)
        if (data.mode === 'dead-letter') {
          ctx.deadLetter(`cannot do ${h.runId}`)
          return
        }
        throw new RangeError(`no such file ${h.runId}`)
      }),
      'subscribeAgent(failer)',
    )
    await waitFor(
      async () =>
        (await caller.request('failer', 'x', { mode: 'ok' }, { timeoutMs: 1000 }).catch(() => '')) === 'ok',
      {
        timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
        message: 'a first reply from agent "failer"',
      },
    )
    const timeoutMs = h.timeouts.deliveryMs * 4
    // Warm-up requests may have timed out while the agent joined; none may from here on.
    const timeoutsBefore = caller.stats().timeouts
    const t0 = Date.now()
    const error = await caught(
      () => caller.request('failer', 'x', { mode: 'throw' }, { timeoutMs }),
      'a request whose handler always throws',
    )
    const took = Date.now() - t0
    expect(
      isErrorOf(error, AgentReplyError),
      `expected AgentReplyError, got ${error.name}: ${error.message}`,
    ).toBe(true)
    const e = error as AgentReplyError
    expect(e.code).toBe('HANDLER_FAILED')
    expect(e.agent).toBe('failer')
    expect(e.errorName).toBe('RangeError')
    expect(e.errorMessage).toBe(`no such file ${h.runId}`)
    expect(e.attempts).toBe(2)
    expect(took, 'ms until the failure reached the caller').toBeLessThan(timeoutMs / 2)

    const dead = await caught(
      () => caller.request('failer', 'x', { mode: 'dead-letter' }, { timeoutMs }),
      'a request its handler dead-letters',
    )
    expect(isErrorOf(dead, AgentReplyError)).toBe(true)
    expect((dead as AgentReplyError).code).toBe('HANDLER_FAILED')
    expect((dead as AgentReplyError).attempts).toBe(1)
    expect((dead as AgentReplyError).errorMessage).toBe(`cannot do ${h.runId}`)
    expect(caller.stats().timeouts).toBe(timeoutsBefore)
  },
}

const presenceJoinLeave: ConformanceCase = {
  id: '54-agent-presence',
  title:
    'AgentMessageBus presence: joins within two heartbeat intervals, instances counted, a leave at once on unsubscribe and on close',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const interval = heartbeatMs(h)
    const presence = { heartbeatMs: interval }
    const watcher = await agentBus(h, prefix, 'watcher', { presence })
    const events = watch(watcher)
    const hostA = await agentBus(h, prefix, 'host-a', { presence })
    const hostB = await agentBus(h, prefix, 'host-b', { presence })
    const t0 = Date.now()
    const subA = await h.within(
      hostA.subscribeAgent('alpha', async () => {}),
      'subscribeAgent(alpha) on host-a',
    )
    await h.within(
      hostB.subscribeAgent('alpha', async () => {}),
      'subscribeAgent(alpha) on host-b',
    )
    await waitFor(() => watcher.presence().find((p) => p.agentId === 'alpha')?.instances === 2, {
      timeoutMs: 2 * interval + h.timeouts.deliveryMs + h.timeouts.groupJoinMs,
      message: () => `two live instances of alpha (events: ${describeEvents(events)})`,
    })
    const joined = Date.now() - t0
    expect(events.filter((e) => e.type === 'join' && e.agentId === 'alpha')).toHaveLength(2)
    const alpha = watcher.presence().find((p) => p.agentId === 'alpha')
    expect(alpha).toMatchObject({ instances: 2, status: 'online' })
    expect(alpha?.lastSeen).toBeGreaterThanOrEqual(t0)
    // Heartbeats keep it there: nothing leaves while both instances live for two more intervals.
    const steady = Date.now()
    await waitFor(() => Date.now() - steady >= 2 * interval, {
      timeoutMs: 3 * interval,
      message: 'two intervals',
    })
    expect(
      events.filter((e) => e.type === 'leave'),
      `leaves while alive (joined after ${joined} ms)`,
    ).toEqual([])

    const t1 = Date.now()
    await subA.unsubscribe()
    await waitFor(() => events.some((e) => e.type === 'leave'), {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `a leave of alpha on host-a after unsubscribe (events: ${describeEvents(events)})`,
    })
    expect(Date.now() - t1, 'ms from unsubscribe to the leave').toBeLessThan(interval + h.timeouts.deliveryMs)
    expect(events.find((e) => e.type === 'leave')).toMatchObject({
      agentId: 'alpha',
      reason: 'unsubscribed',
      instances: 1,
    })
    const t2 = Date.now()
    await hostB.close()
    await waitFor(() => watcher.presence().find((p) => p.agentId === 'alpha')?.status === 'offline', {
      timeoutMs: h.timeouts.deliveryMs,
      message: () => `alpha offline after its last host closed (events: ${describeEvents(events)})`,
    })
    expect(Date.now() - t2).toBeLessThan(interval + h.timeouts.deliveryMs)
    expect(events.at(-1)).toMatchObject({ type: 'leave', agentId: 'alpha', reason: 'closed', instances: 0 })
  },
}

async function crossProcessPresence(h: CaseContext, end: 'stop' | 'kill'): Promise<void> {
  const hooks = h.options.childProcess!
  const prefix = h.topic('agent')
  const interval = heartbeatMs(h)
  const watcher = await agentBus(h, prefix, 'watcher', { presence: { heartbeatMs: interval } })
  const events = watch(watcher)
  const child = spawnAgent(hooks, {
    label: 'agent child',
    prefix,
    agentId: 'remote',
    heartbeatMs: interval,
    readyTimeoutMs: h.timeouts.groupJoinMs * 3,
  })
  h.defer(() => child.kill())
  await child.ready
  const ready = Date.now()
  await waitFor(() => watcher.presence().find((p) => p.agentId === 'remote')?.status === 'online', {
    timeoutMs: 2 * interval + h.timeouts.deliveryMs + h.timeouts.groupJoinMs,
    message: () => `a join of the agent in the child process (events: ${describeEvents(events)})`,
  })
  const join = events.find((e) => e.type === 'join' && e.agentId === 'remote')
  expect(join?.reason).toBe('heartbeat')
  expect(
    join?.at ?? Number.POSITIVE_INFINITY,
    'join heard by two intervals after the child was ready',
  ).toBeLessThan(ready + 2 * interval + h.timeouts.deliveryMs)
  // The agent in the other process answers (its subscription is live, not only its heartbeats).
  await warmUp(h, watcher, 'remote')
  const reply = (await watcher.request(
    'remote',
    'ping',
    { runId: h.runId },
    { timeoutMs: h.timeouts.deliveryMs },
  )) as {
    pid: number
  }
  expect(reply.pid).toBe(child.pid)
  expect(reply.pid).not.toBe(process.pid)

  const t0 = Date.now()
  if (end === 'stop') await child.stop()
  else await child.kill()
  await waitFor(() => events.some((e) => e.type === 'leave' && e.agentId === 'remote'), {
    timeoutMs: 2 * interval + h.timeouts.deliveryMs * 2,
    message: () =>
      `a leave of the agent after its process ${end === 'stop' ? 'closed' : 'was killed'} (events: ${describeEvents(events)})`,
  })
  const leave = events.find((e) => e.type === 'leave' && e.agentId === 'remote')
  expect(leave).toMatchObject({ reason: end === 'stop' ? 'closed' : 'missed-heartbeats', instances: 0 })
  const bound = end === 'stop' ? h.timeouts.deliveryMs : 2 * interval + h.timeouts.retrySlackMs
  expect((leave?.at ?? Number.POSITIVE_INFINITY) - t0, `ms from ${end} to the leave`).toBeLessThan(bound)
  // Presence now knows: a request fails fast instead of waiting out its timeout.
  const t1 = Date.now()
  const gone = await caught(
    () => watcher.request('remote', 'ping', {}, { timeoutMs: h.timeouts.deliveryMs * 4 }),
    'a request to the agent whose process ended',
  )
  expect(
    isErrorOf(gone, AgentUnavailableError),
    `expected AgentUnavailableError, got ${gone.name}: ${gone.message}`,
  ).toBe(true)
  expect(Date.now() - t1).toBeLessThan(h.timeouts.deliveryMs)
}

const presenceCrossProcess: ConformanceCase = {
  id: '55-agent-presence-cross-process',
  title:
    'AgentMessageBus presence across processes: an agent in a child process joins within two intervals, answers, and leaves at once when its bus closes',
  gate: allOf(atLeastOnce, crossProcess),
  needs: needsChild,
  run: (h) => crossProcessPresence(h, 'stop'),
}

const presenceKilled: ConformanceCase = {
  id: '56-agent-presence-killed',
  title:
    'AgentMessageBus presence: an agent whose process is killed with SIGKILL leaves within two heartbeat intervals; requests to it then fail fast',
  gate: allOf(atLeastOnce, crossProcess),
  needs: needsChild,
  run: (h) => crossProcessPresence(h, 'kill'),
}

const requestAllMissing: ConformanceCase = {
  id: '57-agent-request-all',
  title:
    'AgentMessageBus requestAll: every answer gathered at once; with one agent missing, the others reply and the missing one is reported after the timeout; a failing agent is reported',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const lead = await agentBus(h, prefix, 'lead')
    const team = await agentBus(h, prefix, 'team-host', { retry: { maxAttempts: 1 } })
    for (const id of ['alice', 'bob']) {
      await h.within(
        team.subscribeAgent(id, async (msg: AgentMessage<{ q: string }>, ctx) => {
          await ctx.reply({ from: id, a: `${msg.data.q}!` })
        }),
        `subscribeAgent(${id})`,
      )
    }
    await h.within(
      team.subscribeAgent('broken', () => {
        throw new Error(`broken ${h.runId}`)
      }),
      'subscribeAgent(broken)',
    )
    await warmUp(h, lead, 'alice')
    await warmUp(h, lead, 'bob')

    const t0 = Date.now()
    const all = await lead.requestAll(
      ['alice', 'bob'],
      'ask',
      { q: 'x' },
      { timeoutMs: h.timeouts.deliveryMs * 4 },
    )
    expect(Date.now() - t0, 'every agent answered: resolved before the timeout').toBeLessThan(
      h.timeouts.deliveryMs * 2,
    )
    expect([...all.replies]).toEqual([
      ['alice', { from: 'alice', a: 'x!' }],
      ['bob', { from: 'bob', a: 'x!' }],
    ])
    expect(all.missing).toEqual([])

    const timeoutMs = Math.max(1000, h.timeouts.deliveryMs / 2)
    const t1 = Date.now()
    const partial = await lead.requestAll(
      ['alice', 'ghost', 'broken', 'bob'],
      'ask',
      { q: 'y' },
      {
        timeoutMs,
        min: 2,
      },
    )
    const took = Date.now() - t1
    expect(took).toBeGreaterThanOrEqual(timeoutMs - 10)
    expect(took).toBeLessThan(timeoutMs + h.timeouts.retrySlackMs)
    expect([...partial.replies.keys()]).toEqual(['alice', 'bob'])
    expect(partial.missing).toEqual(['ghost', 'broken'])
    expect(isErrorOf(partial.failures.get('ghost') as Error, TimeoutError)).toBe(true)
    const broken = partial.failures.get('broken') as AgentReplyError
    expect(isErrorOf(broken, AgentReplyError)).toBe(true)
    expect(broken.code).toBe('HANDLER_FAILED')
    expect(broken.errorMessage).toBe(`broken ${h.runId}`)
  },
}

const unavailable: ConformanceCase = {
  id: '58-agent-unavailable',
  title:
    'AgentMessageBus presence: a bus that has just started reaches a live agent; a request to an agent with no live instance fails fast with AgentUnavailableError, unless { queue: true }',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const presence = { heartbeatMs: heartbeatMs(h) }
    const host = await agentBus(h, prefix, 'host', { presence })
    await h.within(
      host.subscribeAgent('live', async (_m, ctx) => ctx.reply('here')),
      'subscribeAgent(live)',
    )
    // Another bus, started after the agent: it has heard no heartbeat yet and must not call it unavailable.
    const newcomer = await agentBus(h, prefix, 'newcomer', { presence })
    expect(
      await newcomer.request(
        'live',
        'ping',
        {},
        { timeoutMs: h.timeouts.groupJoinMs + h.timeouts.deliveryMs },
      ),
    ).toBe('here')

    const t0 = Date.now()
    const error = await caught(
      () => newcomer.request('absent', 'ping', {}, { timeoutMs: h.timeouts.deliveryMs * 4 }),
      'a request to an agent that never started',
    )
    expect(
      isErrorOf(error, AgentUnavailableError),
      `expected AgentUnavailableError, got ${error.name}: ${error.message}`,
    ).toBe(true)
    expect((error as AgentUnavailableError).agent).toBe('absent')
    expect(Date.now() - t0).toBeLessThan(h.timeouts.deliveryMs)
    expect(newcomer.stats().unavailable).toBe(1)

    // queue: true leaves it for the agent, which answers once it starts.
    const queued = newcomer.request(
      'absent',
      'ping',
      { queued: true },
      {
        timeoutMs: h.timeouts.groupJoinMs * 3 + h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
        queue: true,
      },
    )
    queued.catch(() => undefined)
    await waitFor(() => newcomer.stats().requests >= 2, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the queued request to be sent',
    })
    const late = await agentBus(h, prefix, 'late-host', { presence })
    await h.within(
      late.subscribeAgent('absent', async (msg, ctx) => ctx.reply({ got: msg.data })),
      'subscribeAgent(absent)',
    )
    expect(await queued).toEqual({ got: { queued: true } })
  },
}

const deadlineSignal: ConformanceCase = {
  id: '59-agent-deadline-signal',
  title:
    "AgentMessageBus deadlines: a request's timeout travels as the envelope's expiresAt and aborts ctx.signal when it passes mid-handler; send carries deadline and delay",
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const caller = await agentBus(h, prefix, 'caller')
    const agent = await agentBus(h, prefix, 'slow-host')
    const aborted: Array<{ after: number; expiresAt: number | undefined; at: number }> = []
    const received: AgentMessage[] = []
    await h.within(
      agent.subscribeAgent('slow', async (msg, ctx) => {
        if (msg.topic === 'hang') {
          const started = Date.now()
          await new Promise<void>((resolve) =>
            ctx.signal.addEventListener('abort', () => resolve(), { once: true }),
          )
          aborted.push({ after: Date.now() - started, expiresAt: msg.event.expiresAt, at: Date.now() })
          return
        }
        received.push(msg)
        if (ctx.canReply) await ctx.reply('ok')
      }),
      'subscribeAgent(slow)',
    )
    await warmUp(h, caller, 'slow')
    const timeoutMs = 1500
    const sentAt = Date.now()
    const error = await caught(
      () => caller.request('slow', 'hang', {}, { timeoutMs }),
      'a request whose handler waits for its signal',
    )
    expect(isErrorOf(error, TimeoutError)).toBe(true)
    await waitFor(() => aborted.length === 1, {
      timeoutMs: h.timeouts.deliveryMs,
      message: "the handler's signal to abort at the request's deadline",
    })
    const run = aborted[0]!
    expect(run.expiresAt, 'expiresAt of the request').toBeGreaterThanOrEqual(sentAt + timeoutMs)
    expect(run.expiresAt).toBeLessThanOrEqual(sentAt + timeoutMs + 100)
    expect(run.at).toBeGreaterThanOrEqual((run.expiresAt ?? 0) - 5)
    expect(run.at, 'abort soon after the deadline').toBeLessThan(
      (run.expiresAt ?? 0) + h.timeouts.retrySlackMs,
    )

    const deadline = Date.now() + 60_000
    const delayMs = 400
    const t0 = Date.now()
    await caller.send('slow', 'note', { runId: h.runId }, { deadline: new Date(deadline), delayMs })
    await waitFor(() => received.some((m) => m.topic === 'note'), {
      timeoutMs: delayMs + h.timeouts.deliveryMs,
      message: 'the delayed message',
    })
    const note = received.find((m) => m.topic === 'note')!
    expect(note.event.expiresAt).toBe(deadline)
    expect(note.event.deliverAt).toBeGreaterThanOrEqual(t0 + delayMs)
    expect(Date.now() - t0, 'the delayed message arrived no earlier than its delay').toBeGreaterThanOrEqual(
      delayMs - 5,
    )
  },
}

/** Agent bus cases 52–59: deadlines, failure replies, presence, fan-out requests. */
export const agentCases: readonly ConformanceCase[] = [
  expiredRequest,
  failureReply,
  presenceJoinLeave,
  presenceCrossProcess,
  presenceKilled,
  requestAllMissing,
  unavailable,
  deadlineSignal,
]
