import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { spawnConsumer } from '../src/child.ts'

const module = fileURLToPath(new URL('./fixtures/child-backend.ts', import.meta.url))

describe('spawnConsumer', () => {
  it('starts a child that connects and subscribes, then is killed with SIGKILL', async () => {
    const child = spawnConsumer(
      { module },
      { label: 'test child', pattern: 'conf.child.*', behaviour: 'ack', readyTimeoutMs: 20_000 },
    )
    try {
      await child.ready
      expect(child.pid).toBeGreaterThan(0)
      const pid = child.pid as number
      await child.kill()
      expect(() => process.kill(pid, 0)).toThrow()
    } finally {
      await child.kill()
    }
  })

  it('stops a child cleanly on request', async () => {
    const child = spawnConsumer(
      { module },
      { label: 'test child', pattern: 'conf.child.x', behaviour: 'hang', readyTimeoutMs: 20_000 },
    )
    await child.ready
    await child.stop()
    expect(() => process.kill(child.pid as number, 0)).toThrow()
  })

  it('rejects ready with the reason when the module has no such factory', async () => {
    const child = spawnConsumer(
      { module, exportName: 'notAFactory' },
      { label: 'broken child', pattern: 'conf.child.x', behaviour: 'ack', readyTimeoutMs: 20_000 },
    )
    try {
      await expect(child.ready).rejects.toThrow(
        /broken child.*does not export a function named "notAFactory"/,
      )
    } finally {
      await child.kill()
    }
  })

  it('rejects ready when the subscription is refused', async () => {
    const child = spawnConsumer(
      { module },
      { label: 'bad pattern', pattern: 'conf..x', behaviour: 'ack', readyTimeoutMs: 20_000 },
    )
    try {
      await expect(child.ready).rejects.toThrow(/InvalidTopicError/)
    } finally {
      await child.kill()
    }
  })
})
