import { afterEach, describe, expect, it } from 'vitest'
import {
  AGENT_HEADERS,
  type AgentContext,
  type AgentMessage,
  AgentMessageBus,
  AgentReplyError,
  CapabilityError,
  ConfigurationError,
  ObservabilityBus,
  silentLogger,
  TimeoutError,
} from '../src/index.ts'
import { handlerSpy, waitForMessage, waitUntil } from '../src/testing.ts'
import { createFakeBackend } from './fake-backend.ts'

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((b) => b.close()))
})

function bus(backend = createFakeBackend(), agentId = 'coordinator'): AgentMessageBus {
  const b = new AgentMessageBus(backend, { agentId, requestTimeoutMs: 2000 })
  open.push(b)
  return b
}

describe('AgentMessageBus', () => {
  it('send delivers to the agent with from/to as headers, not in data', async () => {
    const backend = createFakeBackend()
    const a = bus(backend)
    await a.start()
    const spy = handlerSpy<[AgentMessage<{ file: string }>, unknown]>()
    await a.subscribeAgent('researcher', spy)
    await a.send('researcher', 'task.assigned', { file: 'main.py' })
    const call = await spy.waitFor()
    const msg = call.args[0]
    expect(msg).toMatchObject({
      from: 'coordinator',
      to: 'researcher',
      topic: 'task.assigned',
      kind: 'message',
    })
    expect(msg.data).toEqual({ file: 'main.py' })
    expect(msg.event.topic).toBe('agent.researcher.task.assigned')
    expect(msg.event.headers[AGENT_HEADERS.from]).toBe('coordinator')
    expect(msg.event.guarantee).toBe('at-least-once')
  })

  it('messages for one agent never reach another', async () => {
    const a = bus()
    const r = handlerSpy()
    const w = handlerSpy()
    await a.subscribeAgent('researcher', r)
    await a.subscribeAgent('writer', w)
    await a.send('writer', 'x', 1)
    await w.waitForCount(1)
    await a.send('researcher', 'x', 2)
    await r.waitForCount(1)
    expect(r.count).toBe(1)
    expect(w.count).toBe(1)
  })

  it('request resolves with the reply; the correlation id is a header', async () => {
    const backend = createFakeBackend()
    const requester = bus(backend, 'coordinator')
    const worker = bus(backend, 'worker-host')
    await worker.subscribeAgent('calc', async (msg, ctx) => {
      expect(msg.kind).toBe('request')
      expect(msg.correlationId).toBe(msg.id)
      expect(msg.replyTo).toBe(requester.inboxTopic)
      await ctx.reply({ sum: (msg.data as number[]).reduce((x, y) => x + y, 0) })
    })
    await expect(requester.request('calc', 'sum', [1, 2, 3])).resolves.toEqual({ sum: 6 })
    const reply = await requester.requestMessage('calc', 'sum', [4])
    expect(reply).toMatchObject({ kind: 'reply', from: 'calc', to: 'coordinator', data: { sum: 4 } })
    expect(reply.event.headers[AGENT_HEADERS.correlationId]).toBeDefined()
    expect(requester.stats()).toMatchObject({ requests: 2, repliesReceived: 2, pendingRequests: 0 })
  })

  it('request with no responder rejects with TimeoutError in time', async () => {
    const a = bus()
    const started = Date.now()
    await expect(a.request('nobody', 'ping', {}, { timeoutMs: 100 })).rejects.toBeInstanceOf(TimeoutError)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(a.stats().timeouts).toBe(1)
    const text = a.prometheus({ app: 'x' })
    expect(text).toContain('omnibus_agent_request_timeouts_total{app="x"} 1')
    expect(text).toContain('omnibus_agent_replies_discarded_total{app="x",reason="late"} 0')
  })

  it('the deadline covers a slow publish: TimeoutError, and no unhandled rejection', async () => {
    const backend = createFakeBackend()
    const a = bus(backend)
    await a.subscribeAgent('calc', async (_m, ctx) => ctx.reply(1))
    backend.publishDelayMs = 150
    await expect(a.request('calc', 'x', {}, { timeoutMs: 30 })).rejects.toBeInstanceOf(TimeoutError)
    backend.publishDelayMs = 0
    await expect(a.request('calc', 'x', {})).resolves.toBe(1)
  })

  it('a late reply after the timeout is discarded and counted', async () => {
    const backend = createFakeBackend()
    const a = bus(backend)
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    await a.subscribeAgent('slow', async (_m, ctx) => {
      await gate
      await ctx.reply('too late')
    })
    await expect(a.request('slow', 'work', {}, { timeoutMs: 50 })).rejects.toBeInstanceOf(TimeoutError)
    release()
    await waitUntil(() => a.stats().lateReplies === 1)
    expect(a.stats().repliesReceived).toBe(0)
  })

  it('replyError rejects the request with AgentReplyError', async () => {
    const a = bus()
    await a.subscribeAgent('picky', async (_m, ctx) => {
      await ctx.replyError(new Error('unsupported task'))
    })
    const p = a.request('picky', 'work', {})
    await expect(p).rejects.toBeInstanceOf(AgentReplyError)
    await expect(a.request('picky', 'work', {})).rejects.toThrow(/unsupported task/)
  })

  it('reply on a plain message is a ConfigurationError', async () => {
    const a = bus()
    const errors: unknown[] = []
    await a.subscribeAgent(
      'x',
      async (_m, ctx) => {
        expect(ctx.canReply).toBe(false)
        try {
          await ctx.reply(1)
        } catch (e) {
          errors.push(e)
        }
      },
      {},
    )
    await a.send('x', 't', 1)
    await waitUntil(() => errors.length === 1)
    expect(errors[0]).toBeInstanceOf(ConfigurationError)
  })

  it('instances of one agent share work through the group; group:false gives each instance all', async () => {
    const backend = createFakeBackend()
    const a = bus(backend)
    const i1 = handlerSpy()
    const i2 = handlerSpy()
    await a.subscribeAgent('worker', i1)
    await a.subscribeAgent('worker', i2)
    for (let i = 0; i < 10; i++) await a.send('worker', 'task', i)
    await waitUntil(() => i1.count + i2.count === 10)
    expect(i1.count).toBeGreaterThan(0)
    expect(i2.count).toBeGreaterThan(0)

    const e1 = handlerSpy()
    const e2 = handlerSpy()
    await a.subscribeAgent('auditor', e1, { group: false })
    await a.subscribeAgent('auditor', e2, { group: false })
    await a.send('auditor', 'log', 1)
    await e1.waitForCount(1)
    await e2.waitForCount(1)
  })

  it('broadcast reaches every agent once; topics filters logical topics', async () => {
    const a = bus()
    const r = handlerSpy()
    const w = handlerSpy()
    const tasksOnly = handlerSpy()
    await a.subscribeAgent('r', r)
    await a.subscribeAgent('w', w)
    await a.subscribeAgent('t', tasksOnly, { topics: 'task.*' })
    await a.broadcast('shutdown', { now: true })
    await a.send('t', 'task.run', 1)
    await r.waitForCount(1)
    await w.waitForCount(1)
    await tasksOnly.waitForCount(1)
    expect(r.calls[0]?.args[0]).toMatchObject({ kind: 'broadcast', to: '*', topic: 'shutdown' })
    expect(tasksOnly.calls[0]?.args[0]).toMatchObject({ topic: 'task.run' })
  })

  it('a throwing handler gets the message again (at-least-once)', async () => {
    const a = bus()
    let attempts = 0
    const spy = handlerSpy(async () => {
      attempts++
      if (attempts < 3) throw new Error('transient')
    })
    await a.subscribeAgent('flaky', spy, { retry: { maxAttempts: 5, initialDelayMs: 1 } })
    await a.send('flaky', 'job', 1)
    await waitUntil(() => spy.calls.some((c) => c.error === undefined))
    expect(attempts).toBe(3)
    expect(a.stats().handlerFailures).toBe(2)
  })

  it('refuses a backend without at-least-once (CapabilityError)', () => {
    const weak = createFakeBackend({ guarantees: ['at-most-once'] })
    expect(() => new AgentMessageBus(weak)).toThrow(CapabilityError)
    expect(() => new AgentMessageBus(createFakeBackend(), { guarantee: 'exactly-once' })).toThrow(
      CapabilityError,
    )
  })

  it('validates agent ids with a message saying what to fix', async () => {
    const a = bus()
    await expect(a.send('bad id', 't', 1)).rejects.toThrow(/not a valid agent id/)
    await expect(a.subscribeAgent('_all', () => {})).rejects.toThrow(ConfigurationError)
  })

  it('telemetry pressure never drops agent messages on the same backend', async () => {
    const backend = createFakeBackend()
    let release!: () => void
    backend.stall = new Promise<void>((r) => {
      release = r
    })
    const obs = new ObservabilityBus(backend, {
      bufferSize: 5,
      overflow: 'drop-newest',
      logger: silentLogger,
    })
    open.push(obs)
    await obs.start()
    const a = bus(backend)
    const spy = handlerSpy()
    await a.subscribeAgent('ops', spy)
    for (let i = 0; i < 100; i++) obs.emit('metric.noise', i)
    expect(obs.stats().dropped['drop-newest']).toBe(95)
    for (let i = 0; i < 20; i++) await a.send('ops', 'task', i)
    await spy.waitForCount(20)
    release()
  })

  it('close rejects pending requests', async () => {
    const a = new AgentMessageBus(createFakeBackend(), { agentId: 'c' })
    const p = a.request('nobody', 'x', {}, { timeoutMs: 10_000 })
    await waitUntil(() => a.stats().pendingRequests === 1)
    await a.close()
    await expect(p).rejects.toThrow(/closed/)
  })
})

describe('test helpers', () => {
  it('waitForMessage resolves with the first matching message, or times out', async () => {
    const a = bus()
    const seen = waitForMessage(a, (e) => e.topic.endsWith('.done'))
    await a.send('w', 'started', 1)
    await a.send('w', 'done', 2)
    expect((await seen).data).toBe(2)
    await expect(waitForMessage(a, () => false, { timeoutMs: 30 })).rejects.toBeInstanceOf(TimeoutError)
  })

  it('a typed handlerSpy works as an agent handler and can reply', async () => {
    const a = bus()
    const spy = handlerSpy<[AgentMessage, AgentContext]>(async (_msg, ctx) => {
      if (ctx.canReply) await ctx.reply('ok')
    })
    await a.subscribeAgent('worker', spy)
    await a.send('worker', 'job', 1)
    const call = await spy.waitFor((msg) => msg.topic === 'job', { timeoutMs: 2000 })
    expect(call.args[0].data).toBe(1)
    await expect(a.request('worker', 'ask', 2)).resolves.toBe('ok')
  })

  it('handlerSpy.waitFor times out with the number of calls seen', async () => {
    const spy = handlerSpy()
    await spy('a')
    await expect(spy.waitFor((x) => x === 'b', { timeoutMs: 20 })).rejects.toThrow(/1 call/)
  })
})
