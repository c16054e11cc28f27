import { afterEach, describe, expect, it } from 'vitest'
import {
  AgentMessageBus,
  type AgentMessageBusOptions,
  AgentUnavailableError,
  ConfigurationError,
  type PresenceEvent,
  TimeoutError,
} from '../src/index.ts'
import { waitUntil } from '../src/testing.ts'
import { createFakeBackend, type FakeBackend } from './fake-backend.ts'

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((b) => b.close()))
})

const HEARTBEAT = 60

function bus(
  backend: FakeBackend,
  agentId: string,
  options: Omit<AgentMessageBusOptions, 'agentId'> = {},
): AgentMessageBus {
  const b = new AgentMessageBus(backend, {
    agentId,
    requestTimeoutMs: 5000,
    presence: { heartbeatMs: HEARTBEAT },
    ...options,
  })
  open.push(b)
  return b
}

function recorder(b: AgentMessageBus): PresenceEvent[] {
  const seen: PresenceEvent[] = []
  b.onPresence((e) => seen.push(e))
  return seen
}

describe('AgentMessageBus presence', () => {
  it('is off by default, and the presence calls say how to turn it on', () => {
    const b = new AgentMessageBus(createFakeBackend(), { agentId: 'x' })
    open.push(b)
    expect(() => b.presence()).toThrow(/presence: true/)
    expect(() => b.onPresence(() => {})).toThrow(ConfigurationError)
    expect(() => new AgentMessageBus(createFakeBackend(), { presence: { heartbeatMs: 0 } })).toThrow(
      /heartbeatMs must be an integer >= 10, got 0/,
    )
    expect(() => new AgentMessageBus(createFakeBackend(), { presence: { everyMs: 5 } as never })).toThrow(
      /unknown AgentMessageBus presence option "everyMs"/,
    )
  })

  it('reports joins, lists agents with their instances, and a leave at once on unsubscribe and close', async () => {
    const backend = createFakeBackend()
    const watcher = bus(backend, 'watcher')
    await watcher.start()
    const seen = recorder(watcher)
    const hostA = bus(backend, 'host-a')
    const hostB = bus(backend, 'host-b')
    await hostA.start()
    await hostB.start()
    const subA = await hostA.subscribeAgent('researcher', async () => {})
    await hostB.subscribeAgent('researcher', async () => {})
    await hostB.subscribeAgent('writer', async () => {})
    await waitUntil(() => seen.filter((e) => e.type === 'join').length === 3)
    expect(watcher.presence()).toEqual([
      expect.objectContaining({ agentId: 'researcher', instances: 2, status: 'online' }),
      expect.objectContaining({ agentId: 'writer', instances: 1, status: 'online' }),
    ])
    const before = Date.now()
    await subA.unsubscribe()
    await waitUntil(() => seen.some((e) => e.type === 'leave'))
    expect(Date.now() - before).toBeLessThan(HEARTBEAT)
    expect(seen.find((e) => e.type === 'leave')).toMatchObject({
      agentId: 'researcher',
      instances: 1,
      reason: 'unsubscribed',
    })
    await hostB.close()
    await waitUntil(() => seen.filter((e) => e.type === 'leave').length === 3)
    expect(
      seen
        .filter((e) => e.reason === 'closed')
        .map((e) => e.agentId)
        .sort(),
    ).toEqual(['researcher', 'writer'])
    expect(watcher.presence().map((p) => [p.agentId, p.status, p.instances])).toEqual([
      ['researcher', 'offline', 0],
      ['writer', 'offline', 0],
    ])
    // Heartbeats never reach an agent's handler: only what was sent to it does.
    expect(backend.published.some((e) => e.topic === 'agent._presence')).toBe(true)
  })

  it('reports a leave within two intervals when an instance goes silent (a killed process)', async () => {
    const backend = createFakeBackend()
    const watcher = bus(backend, 'watcher')
    await watcher.start()
    const seen = recorder(watcher)
    // What a bus in another process sends, once, before it is killed.
    await backend.publish({
      topic: 'agent._presence',
      data: { kind: 'beat', instance: 'gone-1234', seq: 1, intervalMs: HEARTBEAT, agents: ['ghost'] },
      guarantee: 'at-most-once',
    })
    await waitUntil(() => seen.length === 1)
    const joinedAt = Date.now()
    await waitUntil(() => seen.length === 2, { timeoutMs: 2000 })
    const after = Date.now() - joinedAt
    expect(seen[1]).toMatchObject({
      type: 'leave',
      agentId: 'ghost',
      reason: 'missed-heartbeats',
      instances: 0,
    })
    expect(after).toBeGreaterThanOrEqual(2 * HEARTBEAT - 5)
    expect(after).toBeLessThan(2 * HEARTBEAT + 100)
  })

  it('a request to an agent with no live instance fails fast; { queue: true } sends it anyway', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    await caller.start()
    const started = Date.now()
    const error = await caller.request('absent', 'work', {}, { timeoutMs: 5000 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AgentUnavailableError)
    expect((error as AgentUnavailableError).agent).toBe('absent')
    // At most one interval of listening after the bus started, not the request's timeout.
    expect(Date.now() - started).toBeLessThan(HEARTBEAT + 200)
    expect(caller.stats().unavailable).toBe(1)
    const queued = await caller
      .request('absent', 'work', {}, { timeoutMs: 100, queue: true })
      .catch((e: unknown) => e)
    expect(queued).toBeInstanceOf(TimeoutError)
    expect(backend.published.filter((e) => e.topic === 'agent.absent.work')).toHaveLength(1)
  })

  it('a bus that has just started does not call a live agent unavailable', async () => {
    const backend = createFakeBackend()
    const host = bus(backend, 'host', { presence: { heartbeatMs: 5000 } })
    await host.start()
    await host.subscribeAgent('worker', async (_m, ctx) => ctx.reply('ok'))
    // A long interval: the newcomer must learn of the worker by asking, not by waiting for a beat.
    const newcomer = bus(backend, 'newcomer', { presence: { heartbeatMs: 5000 } })
    await newcomer.start()
    const started = Date.now()
    await expect(newcomer.request('worker', 'ping', {})).resolves.toBe('ok')
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it("a request to the bus's own agent never waits for presence", async () => {
    const backend = createFakeBackend()
    const b = bus(backend, 'solo', { presence: { heartbeatMs: 5000 } })
    await b.subscribeAgent('self', async (_m, ctx) => ctx.reply('me'))
    const started = Date.now()
    await expect(b.request('self', 'ping', {})).resolves.toBe('me')
    expect(Date.now() - started).toBeLessThan(1000)
  })
})
