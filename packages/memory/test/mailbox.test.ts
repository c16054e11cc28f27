import { randomUUID } from 'node:crypto'
import {
  ConfigurationError,
  InvalidTopicError,
  NotConnectedError,
  type OmnibusEvent,
  PublishError,
  silentLogger,
} from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { createMemoryBackend } from '../src/index.ts'
import { memoryBackends } from './backends.ts'

const { backend } = memoryBackends()

describe('memory ensureGroup: the in-process mailbox', () => {
  it('holds up to queueCapacity events for a group with no member, then refuses the publish with MAILBOX_FULL', async () => {
    const b = await backend({ queueCapacity: 3 })
    await b.ensureGroup('inbox.**', 'reader')
    const watcher: OmnibusEvent[] = []
    await b.subscribe('inbox.**', (e) => void watcher.push(e))
    for (let i = 0; i < 3; i++) await b.publish({ topic: 'inbox.a', data: i })
    const refused = await b.publish({ topic: 'inbox.a', data: 3 }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(PublishError)
    expect((refused as PublishError).code).toBe('MAILBOX_FULL')
    expect((refused as PublishError).retryable).toBe(true)
    expect((refused as Error).message).toMatch(/group "reader".*queueCapacity/)
    // In a batch, the refusal is that entry's result; the other entries go through.
    const batch = await b.publishBatch([
      { topic: 'inbox.a', data: 4 },
      { topic: 'elsewhere', data: 5 },
    ])
    expect(batch.results.map((r) => r.ok)).toEqual([false, true])
    // A refused event reached no subscriber at all (nothing half-published).
    await waitUntil(() => watcher.length === 3)
    expect(watcher.map((e) => e.data)).toEqual([0, 1, 2])

    const got: unknown[] = []
    await b.subscribe('inbox.**', (e) => void got.push(e.data), { group: 'reader' })
    await waitUntil(() => got.length === 3)
    expect(got).toEqual([0, 1, 2])
    // With a member, a full queue is back-pressure again, not a refusal.
    await b.publish({ topic: 'inbox.b', data: 6 })
    await waitUntil(() => got.length === 4)
  })

  it('keeps the mailbox after the last member leaves, and shares it across instances of a named bus', async () => {
    const name = `mailbox-${randomUUID()}`
    const sender = await backend({ name })
    const agent = await backend({ name })
    await sender.ensureGroup('agent.x.**', 'agent.x')
    await sender.ensureGroup('agent.x.**', 'agent.x')
    await sender.publish({ topic: 'agent.x.task', data: 1 })
    const got: unknown[] = []
    const sub = await agent.subscribe('agent.x.**', (e) => void got.push(e.data), { group: 'agent.x' })
    await waitUntil(() => got.length === 1)
    await sub.unsubscribe()
    await sender.publish({ topic: 'agent.x.task', data: 2 })
    await agent.subscribe('agent.x.**', (e) => void got.push(e.data), { group: 'agent.x' })
    await waitUntil(() => got.length === 2)
    expect(got).toEqual([1, 2])
  })

  it('gives a narrower member only what its pattern matches; the rest waits for a member that takes it', async () => {
    const b = await backend()
    await b.ensureGroup('agent.y.**', 'agent.y')
    await b.publish({ topic: 'agent.y.task.a', data: 'task' })
    await b.publish({ topic: 'agent.y.note', data: 'note' })
    const narrow: unknown[] = []
    await b.subscribe('agent.y.task.*', (e) => void narrow.push(e.data), { group: 'agent.y' })
    await waitUntil(() => narrow.length === 1)
    const wide: unknown[] = []
    await b.subscribe('agent.y.**', (e) => void wide.push(e.data), { group: 'agent.y' })
    await waitUntil(() => wide.length === 1)
    expect(narrow).toEqual(['task'])
    expect(wide).toEqual(['note'])
  })

  it('refuses bad arguments with typed errors', async () => {
    const b = await backend()
    await expect(b.ensureGroup('bad..pattern', 'g')).rejects.toBeInstanceOf(InvalidTopicError)
    await expect(b.ensureGroup('ok.*', 'bad group')).rejects.toBeInstanceOf(ConfigurationError)
    await b.ensureGroup('one.**', 'g1')
    await expect(b.ensureGroup('two.**', 'g1')).rejects.toThrow(
      /declared already with the pattern "one.\*\*"/,
    )
    const closed = createMemoryBackend({ logger: silentLogger })
    await expect(closed.ensureGroup('a', 'g')).rejects.toBeInstanceOf(NotConnectedError)
  })
})
