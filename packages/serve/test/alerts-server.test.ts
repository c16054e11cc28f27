/**
 * Alerts driven by the server end to end: real telemetry and a real dead letter on a memory
 * backend, the server's evaluation timer, a real HTTP receiver for the webhook, `alert.<name>` on
 * the bus, and the states in `/api/alerts`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ObservabilityBus, type OmnibusEvent, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { createMemoryBackend } from '@omnibus/memory'
import { afterEach, expect, it } from 'vitest'
import { AlertEngine, type AlertNotification, type AlertView, startServer } from '../src/index.ts'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

it('fires and resolves through a real webhook, the bus and /api/alerts while the server runs', async () => {
  const received: AlertNotification[] = []
  const receiver: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8')
    })
    req.on('end', () => {
      received.push(JSON.parse(body) as AlertNotification)
      res.end()
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  cleanups.push(async () => {
    receiver.closeAllConnections()
    await new Promise<void>((resolve) => receiver.close(() => resolve()))
  })
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/alerts`

  const backend = createMemoryBackend()
  await backend.connect()
  cleanups.push(() => backend.disconnect())
  const onBus: OmnibusEvent[] = []
  await backend.subscribe('alert.*', async (e) => {
    onBus.push(e)
  })

  const engine = new AlertEngine({
    rules: [
      { name: 'dead-letters', kind: 'dead-letters', window: '2s', severity: 'critical' },
      {
        name: 'tool-errors',
        kind: 'error-rate',
        topics: 'tool.end',
        threshold: 0.4,
        minEvents: 5,
        window: '2s',
      },
    ],
    channels: [{ type: 'webhook', url: hook }, { type: 'bus' }],
  })
  const running = await startServer({
    backend,
    port: 0,
    alerts: engine,
    alertIntervalMs: 50,
    logger: silentLogger,
  })
  cleanups.push(() => running.close())

  const alertsOf = async (): Promise<AlertView[]> =>
    (await (await fetch(`${running.url}/api/alerts`)).json()) as AlertView[]
  // Before anything happens, every rule is listed, inactive.
  const initial = await waitUntil(
    async () => {
      const alerts = await alertsOf()
      return alerts.length > 0 ? alerts : undefined
    },
    { description: 'the first evaluation' },
  )
  expect(initial.map((a) => `${a.name}:${a.state}`).sort()).toEqual([
    'dead-letters:inactive',
    'tool-errors:inactive',
  ])

  // A handler that always fails: the kernel dead-letters the event after its only attempt.
  await backend.subscribe(
    'orders.created',
    async () => {
      throw new Error('billing is down')
    },
    { group: 'billing', retry: { maxAttempts: 1 } },
  )
  await backend.publish({ topic: 'orders.created', data: { id: 1 } })
  // Tool telemetry through the ObservabilityBus: 3 failures in 5 calls.
  const telemetry = new ObservabilityBus(backend, { flushIntervalMs: 10 })
  await telemetry.start()
  cleanups.push(() => telemetry.close())
  for (const success of [true, false, true, false, false])
    telemetry.emitToolEnd('search', { success, durationMs: 5 })

  await waitUntil(() => received.filter((n) => n.status === 'firing').length === 2, {
    description: 'two firing webhooks',
  })
  const firing = Object.fromEntries(received.map((n) => [n.rule, n]))
  expect(firing['dead-letters']).toMatchObject({
    status: 'firing',
    severity: 'critical',
    value: 1,
    endsAt: null,
  })
  expect(firing['tool-errors']).toMatchObject({
    status: 'firing',
    severity: 'warning',
    value: 0.6,
    threshold: 0.4,
  })
  expect((await alertsOf()).filter((a) => a.state === 'firing').map((a) => a.name)).toEqual([
    'dead-letters',
    'tool-errors',
  ])
  expect(running.serve.snapshot().alerts[0]).toMatchObject({ name: 'dead-letters', state: 'firing' })
  await waitUntil(() => onBus.length === 2, { description: 'two alert events on the bus' })
  expect(onBus.map((e) => e.topic).sort()).toEqual(['alert.dead-letters', 'alert.tool-errors'])

  // Both windows empty after two seconds without new failures.
  await waitUntil(() => received.filter((n) => n.status === 'resolved').length === 2, {
    timeoutMs: 10_000,
    description: 'two resolved webhooks',
  })
  expect(received.map((n) => `${n.status} ${n.rule}`).sort()).toEqual([
    'firing dead-letters',
    'firing tool-errors',
    'resolved dead-letters',
    'resolved tool-errors',
  ])
  for (const n of received.filter((r) => r.status === 'resolved')) {
    expect(Date.parse(n.endsAt ?? '')).toBeGreaterThan(Date.parse(n.startsAt))
  }
  expect((await alertsOf()).map((a) => a.state)).toEqual(['resolved', 'resolved'])
  expect(engine.stats().channels).toMatchObject([
    { name: 'webhook', sent: 4, failed: 0 },
    { name: 'bus', sent: 4, failed: 0 },
  ])
  // The server registered the engine's metrics in its own /metrics.
  const exposition = await (await fetch(`${running.url}/metrics`)).text()
  expect(exposition).toMatch(/^omnibus_serve_alert_evaluations_total [1-9]\d*$/m)
  expect(exposition).toMatch(
    /^omnibus_serve_alert_notifications_total\{channel="webhook",outcome="sent"\} 4$/m,
  )
})
