import { describe, expect, it } from 'vitest'
import { AgentMessageBus, ConfigurationError, silentLogger } from '../src/index.ts'
import { createFakeBackend } from './fake-backend.ts'

describe('AgentMessageBus mailboxes', () => {
  it('declares each recipient once, with the pattern and group of its default subscribeAgent', async () => {
    const backend = createFakeBackend()
    const bus = new AgentMessageBus(backend, { agentId: 'boss', prefix: 'team', logger: silentLogger })
    await bus.start()
    await bus.send('writer', 'task.draft', { n: 1 })
    await bus.send('writer', 'task.edit', { n: 2 })
    await bus.send('critic', 'task.review', { n: 3 })
    await bus.request('critic', 'task.score', {}, { timeoutMs: 50 }).catch(() => undefined)
    expect(backend.ensuredGroups).toEqual([
      { pattern: 'team.writer.**', group: 'team.writer' },
      { pattern: 'team.critic.**', group: 'team.critic' },
    ])

    // What the default subscribeAgent subscribes with, seen by the backend.
    const seen: Array<{ pattern: string; group: string | undefined }> = []
    const subscribe = backend.subscribe.bind(backend)
    backend.subscribe = async (pattern, handler, opts) => {
      seen.push({ pattern, group: opts?.group })
      return subscribe(pattern, handler, opts)
    }
    const agent = new AgentMessageBus(backend, { agentId: 'writer', prefix: 'team', logger: silentLogger })
    await agent.subscribeAgent('writer', () => {})
    expect(seen[0]).toEqual(backend.ensuredGroups[0])
    await agent.close()
    await bus.close()
  })

  it('declares again after a failed declaration, and the send fails with its error', async () => {
    const backend = createFakeBackend()
    let failures = 1
    const ensure = backend.ensureGroup.bind(backend)
    backend.ensureGroup = async (pattern, group) => {
      if (failures-- > 0) throw new Error('broker said no')
      return ensure(pattern, group)
    }
    const bus = new AgentMessageBus(backend, { agentId: 'boss', logger: silentLogger })
    await bus.start()
    await expect(bus.send('writer', 'x', 1)).rejects.toThrow('broker said no')
    expect(backend.published).toHaveLength(0)
    await bus.send('writer', 'x', 2)
    expect(backend.ensuredGroups).toHaveLength(1)
    expect(backend.published).toHaveLength(1)
    await bus.close()
  })

  it('refuses an invalid recipient before declaring anything', async () => {
    const backend = createFakeBackend()
    const bus = new AgentMessageBus(backend, { logger: silentLogger })
    await bus.start()
    await expect(bus.send('no spaces', 'x', 1)).rejects.toBeInstanceOf(ConfigurationError)
    expect(backend.ensuredGroups).toEqual([])
    await bus.close()
  })
})
