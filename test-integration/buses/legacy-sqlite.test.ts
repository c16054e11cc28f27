import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createBackend, type EventBackend, ObservabilityBus, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { EventBus, EventBusAdapter, type LegacyEvent } from '@omnibus/legacy'
import { afterAll, expect, it } from 'vitest'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-legacy-it-'))
const backends: EventBackend[] = []
afterAll(async () => {
  await Promise.allSettled(backends.map((b) => b.disconnect()))
  rmSync(dir, { recursive: true, force: true })
})

it('two legacy buses bridged through SQLite: events cross once, and nothing loops back', async () => {
  const url = `sqlite://${path.join(dir, 'legacy.db')}`
  const run = Math.random().toString(36).slice(2, 8)
  const make = async () => {
    const backend = await createBackend(url)
    backends.push(backend)
    const obs = new ObservabilityBus(backend, { logger: silentLogger, flushIntervalMs: 10 })
    await obs.start()
    const legacy = new EventBus({ sessionId: `s-${run}` })
    const got: LegacyEvent[] = []
    legacy.subscribeAll((e) => void got.push(e))
    const adapter = new EventBusAdapter(legacy, {
      observability: obs,
      reverse: { patterns: [`custom.${run}_*`] },
    })
    await adapter.enableForwarding()
    return { obs, legacy, got, adapter }
  }
  const a = await make()
  const b = await make()
  a.legacy.publish({ category: 'custom', eventType: `${run}_hello`, data: { from: 'a' }, priority: 'high' })
  await waitUntil(() => b.got.length === 1, {
    timeoutMs: 15_000,
    description: 'the event on the other legacy bus',
  })
  expect(b.got[0]).toMatchObject({
    category: 'custom',
    eventType: `${run}_hello`,
    data: { from: 'a' },
    priority: 'high',
  })
  // Bus B must not forward the reversed event again, and bus A must not get its own event back.
  b.legacy.publish({ category: 'custom', eventType: `${run}_marker`, data: { from: 'b' } })
  await waitUntil(() => a.got.some((e) => e.eventType === `${run}_marker`), { timeoutMs: 15_000 })
  expect(a.got.map((e) => e.eventType)).toEqual([`${run}_hello`, `${run}_marker`])
  expect(b.got.map((e) => e.eventType)).toEqual([`${run}_hello`, `${run}_marker`])
  expect(b.adapter.getStats()).toMatchObject({ reversed: 1, forwarded: 1 })
  expect(a.adapter.getStats()).toMatchObject({ reversed: 1, forwarded: 1 })
  for (const side of [a, b]) {
    await side.adapter.disableForwarding()
    await side.obs.close()
  }
})
