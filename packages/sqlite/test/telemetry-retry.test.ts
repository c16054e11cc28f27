import { ObservabilityBus, silentLogger } from '@omnibus/core'
import Database from 'better-sqlite3'
import { afterEach, expect, it } from 'vitest'
import { backends, tempDir, waitFor } from './helpers.ts'

const dirs = tempDir()
const opened = backends()
afterEach(async () => {
  await opened.closeAll()
})

it('telemetry published while another connection holds the write lock for 2 s is retried, not lost', async () => {
  const file = dirs.file()
  const backend = await opened.open({ path: file, busyTimeoutMs: 100 })
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    flushIntervalMs: 10,
    maxRetryDelayMs: 200,
  })
  await bus.start()
  const received: number[] = []
  await bus.subscribe('metric.*', (e) => {
    received.push((e.data as { value: number }).value)
  })

  const holder = new Database(file)
  holder.exec('BEGIN IMMEDIATE')
  const released = new Promise<void>((resolve) =>
    setTimeout(() => {
      holder.exec('COMMIT')
      holder.close()
      resolve()
    }, 2000),
  )
  for (let i = 0; i < 50; i++) bus.emitMetric('tokens', i)
  await waitFor('a failed flush', () => bus.stats().flushFailures >= 2, 3000)
  expect(bus.health()).toMatchObject({ status: 'degraded' })
  expect(bus.health().lastPublishError).toMatch(/locked/)
  expect(bus.stats().dropped['publish-failed']).toBe(0)
  await released
  await waitFor('all 50 events delivered', () => received.length === 50, 5000)
  expect(received).toEqual([...Array(50).keys()])
  const s = bus.stats()
  expect(s).toMatchObject({ flushed: 50, droppedTotal: 0 })
  expect(s.retried).toBeGreaterThanOrEqual(50)
  expect(bus.health().status).toBe('ok')
  await bus.close()
  dirs.cleanup()
}, 15_000)
