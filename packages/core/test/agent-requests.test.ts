import { afterEach, describe, expect, it } from 'vitest'
import {
  AgentMessageBus,
  type AgentMessageBusOptions,
  AgentQuorumError,
  AgentReplyError,
  ConfigurationError,
  OmnibusError,
  TimeoutError,
} from '../src/index.ts'
import { waitUntil } from '../src/testing.ts'
import { createFakeBackend, type FakeBackend } from './fake-backend.ts'

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((b) => b.close()))
})

function bus(
  backend: FakeBackend,
  agentId: string,
  options: Omit<AgentMessageBusOptions, 'agentId'> = {},
): AgentMessageBus {
  const b = new AgentMessageBus(backend, { agentId, requestTimeoutMs: 5000, ...options })
  open.push(b)
  return b
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (error) {
    return error as Error
  }
  throw new Error('expected the promise to reject')
}

describe('AgentMessageBus request and close', () => {
  it('request() then close() in the same tick rejects at once with BUS_CLOSED', async () => {
    const backend = createFakeBackend()
    const a = bus(backend, 'caller')
    await a.start()
    const started = Date.now()
    const p = a.request('nobody', 'ping', {}, { timeoutMs: 10_000 })
    const closing = a.close()
    const error = await rejection(p)
    expect(error).toBeInstanceOf(OmnibusError)
    expect((error as OmnibusError).code).toBe('BUS_CLOSED')
    expect(Date.now() - started).toBeLessThan(1000)
    await closing
    // Nothing was sent after the close.
    expect(backend.published.filter((e) => e.topic.startsWith('agent.nobody.'))).toHaveLength(0)
  })
})

describe('AgentMessageBus failure replies', () => {
  it('a handler that fails every attempt rejects the request with HANDLER_FAILED, not a timeout', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host', { retry: { maxAttempts: 3, initialDelayMs: 1 } })
    const runs: number[] = []
    await worker.subscribeAgent('failer', (_msg, ctx) => {
      runs.push(ctx.attempt)
      throw new TypeError('cannot read the task')
    })
    const started = Date.now()
    const error = await rejection(caller.request('failer', 'work', {}, { timeoutMs: 10_000 }))
    expect(Date.now() - started).toBeLessThan(2000)
    expect(error).toBeInstanceOf(AgentReplyError)
    const e = error as AgentReplyError
    expect(e.code).toBe('HANDLER_FAILED')
    expect(e.agent).toBe('failer')
    expect(e.errorName).toBe('TypeError')
    expect(e.errorMessage).toBe('cannot read the task')
    expect(e.attempts).toBe(3)
    expect(e.message).toMatch(/failer.*3 attempts.*TypeError: cannot read the task/)
    expect(runs).toEqual([1, 2, 3])
    expect(worker.stats().failureReplies).toBe(1)
    expect(caller.stats()).toMatchObject({ timeouts: 0, pendingRequests: 0 })
  })

  it('a handler that recovers on a retry replies normally; no failure reply is sent', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host', { retry: { maxAttempts: 3, initialDelayMs: 1 } })
    await worker.subscribeAgent('flaky', async (_msg, ctx) => {
      if (ctx.attempt < 3) throw new Error('not yet')
      await ctx.reply('done')
    })
    await expect(caller.request('flaky', 'work', {})).resolves.toBe('done')
    expect(worker.stats()).toMatchObject({ failureReplies: 0, handlerFailures: 2, handled: 1 })
  })

  it('ctx.deadLetter fails the request at once with the reason and one attempt', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host')
    await worker.subscribeAgent('strict', (_msg, ctx) => {
      ctx.deadLetter('schema v1 is not supported')
    })
    const error = (await rejection(caller.request('strict', 'work', {}))) as AgentReplyError
    expect(error).toBeInstanceOf(AgentReplyError)
    expect(error.code).toBe('HANDLER_FAILED')
    expect(error.attempts).toBe(1)
    expect(error.errorMessage).toBe('schema v1 is not supported')
  })

  it('ctx.retry on the last attempt fails the request', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host', { retry: { maxAttempts: 2, initialDelayMs: 1 } })
    await worker.subscribeAgent('retrier', (_msg, ctx) => {
      ctx.retry(1)
    })
    const error = (await rejection(caller.request('retrier', 'work', {}))) as AgentReplyError
    expect(error.code).toBe('HANDLER_FAILED')
    expect(error.attempts).toBe(2)
  })

  it('a run that replied and then threw sends no failure reply', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host', { retry: { maxAttempts: 1 } })
    await worker.subscribeAgent('replier', async (_msg, ctx) => {
      await ctx.reply('partial')
      throw new Error('after the reply')
    })
    await expect(caller.request('replier', 'work', {})).resolves.toBe('partial')
    await waitUntil(() => worker.stats().handlerFailures === 1)
    expect(worker.stats()).toMatchObject({ repliesSent: 1, failureReplies: 0 })
  })

  it('replyError keeps its own code and carries the error name', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'caller')
    const worker = bus(backend, 'worker-host')
    await worker.subscribeAgent('picky', async (_msg, ctx) => {
      await ctx.replyError(new RangeError('too many files'))
    })
    const error = (await rejection(caller.request('picky', 'work', {}))) as AgentReplyError
    expect(error.code).toBe('AGENT_REPLY_ERROR')
    expect(error.errorName).toBe('RangeError')
    expect(error.attempts).toBeUndefined()
  })
})

describe('AgentMessageBus requestAll', () => {
  it('gathers every reply and resolves as soon as all agents answered', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'lead')
    const team = bus(backend, 'team-host')
    for (const id of ['alice', 'bob', 'carol']) {
      await team.subscribeAgent(id, async (msg, ctx) => ctx.reply(`${id}:${String(msg.data)}`))
    }
    const started = Date.now()
    const result = await caller.requestAll(['alice', 'bob', 'carol'], 'vote', 'x', { timeoutMs: 10_000 })
    expect(Date.now() - started).toBeLessThan(2000)
    expect([...result.replies]).toEqual([
      ['alice', 'alice:x'],
      ['bob', 'bob:x'],
      ['carol', 'carol:x'],
    ])
    expect(result.missing).toEqual([])
    expect(result.failures.size).toBe(0)
  })

  it('one agent missing: the others reply, the missing one is reported with its TimeoutError', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'lead')
    const team = bus(backend, 'team-host')
    await team.subscribeAgent('alice', async (_m, ctx) => ctx.reply('a'))
    await team.subscribeAgent('bob', async (_m, ctx) => ctx.reply('b'))
    const started = Date.now()
    const result = await caller.requestAll(['alice', 'ghost', 'bob'], 'vote', {}, { timeoutMs: 300, min: 2 })
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(290)
    expect(took).toBeLessThan(1500)
    expect([...result.replies.keys()]).toEqual(['alice', 'bob'])
    expect(result.missing).toEqual(['ghost'])
    expect(result.failures.get('ghost')).toBeInstanceOf(TimeoutError)
  })

  it('a failing agent is reported in failures, and min rejects at once when it cannot be met', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'lead')
    const team = bus(backend, 'team-host', { retry: { maxAttempts: 1 } })
    await team.subscribeAgent('alice', async (_m, ctx) => ctx.reply('a'))
    await team.subscribeAgent('broken', () => {
      throw new Error('disk full')
    })
    const partial = await caller.requestAll(['alice', 'broken'], 'vote', {}, { timeoutMs: 10_000 })
    expect([...partial.replies.keys()]).toEqual(['alice'])
    expect(partial.missing).toEqual(['broken'])
    const failure = partial.failures.get('broken') as AgentReplyError
    expect(failure).toBeInstanceOf(AgentReplyError)
    expect(failure.code).toBe('HANDLER_FAILED')

    const started = Date.now()
    const error = await rejection(
      caller.requestAll(['alice', 'broken', 'ghost'], 'vote', {}, { timeoutMs: 10_000, min: 3 }),
    )
    expect(Date.now() - started).toBeLessThan(2000)
    expect(error).toBeInstanceOf(AgentQuorumError)
    const quorum = error as AgentQuorumError
    expect(quorum.min).toBe(3)
    expect(quorum.result.missing).toContain('broken')
    expect(quorum.result.failures.get('broken')).toBeInstanceOf(AgentReplyError)
    // The abandoned request is no longer waiting.
    await waitUntil(() => caller.stats().pendingRequests === 0)
  })

  it('min not reached by the deadline rejects with the partial result', async () => {
    const backend = createFakeBackend()
    const caller = bus(backend, 'lead')
    const team = bus(backend, 'team-host')
    await team.subscribeAgent('alice', async (_m, ctx) => ctx.reply('a'))
    const error = (await rejection(
      caller.requestAll(['alice', 'ghost'], 'vote', {}, { timeoutMs: 200, min: 2 }),
    )) as AgentQuorumError
    expect(error).toBeInstanceOf(AgentQuorumError)
    expect([...error.result.replies]).toEqual([['alice', 'a']])
    expect(error.result.missing).toEqual(['ghost'])
  })

  it('bad arguments are ConfigurationErrors that say what to fix', async () => {
    const caller = bus(createFakeBackend(), 'lead')
    await expect(caller.requestAll([], 't', {})).rejects.toThrow(/non-empty array/)
    await expect(caller.requestAll(['a', 'a'], 't', {})).rejects.toThrow(/twice/)
    await expect(caller.requestAll(['a'], 't', {}, { min: 2 })).rejects.toThrow(
      /min must be an integer from 1/,
    )
    await expect(caller.requestAll(['a'], 't', {}, { min: 2 })).rejects.toBeInstanceOf(ConfigurationError)
    await expect(caller.requestAll(['bad id'], 't', {})).rejects.toThrow(/not a valid agent id/)
  })
})
