import { ConnectionError, type EventBackend, type OmnibusEvent } from '@omnibus/core'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { type CuttableProxy, cuttableProxy, TEST_QUEUES } from './amqp.ts'

describeWithService('rabbitmq', 'RabbitMQ reconnects (connections cut by a proxy)', () => {
  const url = requireEndpoint('rabbitmq')
  const run = Date.now().toString(36)
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  })

  async function setup(): Promise<{ proxy: CuttableProxy; through: EventBackend; direct: EventBackend }> {
    const proxy = await cuttableProxy(url)
    cleanups.push(() => proxy.close())
    const through = createRabbitMQBackend({ ...TEST_QUEUES, url: proxy.url, reconnectMaxDelayMs: 200 })
    const direct = createRabbitMQBackend({ ...TEST_QUEUES, url })
    await through.connect()
    await direct.connect()
    cleanups.push(() => through.disconnect({ drainTimeoutMs: 500 }))
    cleanups.push(() => direct.disconnect({ drainTimeoutMs: 500 }))
    return { proxy, through, direct }
  }

  it('a dropped connection is re-established: consuming resumes and publishes waiting in the outage succeed', async () => {
    const { proxy, through, direct } = await setup()
    const topic = `rc.${run}.resume`
    const got = new Set<string>()
    await through.subscribe(topic, (e: OmnibusEvent) => void got.add(e.id), { group: `rc-${run}` })
    const before = await direct.publish({ topic, data: 'before' })
    await eventually('delivery before the cut', () => got.has(before.id))

    proxy.cut(true)
    await eventually('the backend to notice', () => !through.isConnected)
    expect((await through.healthCheck()).healthy).toBe(false)
    // Published elsewhere while this consumer is cut off: the group queue keeps them.
    const during = await direct.publish({ topic, data: 'during' })
    // Published through the cut backend: waits for the link instead of failing.
    const waiting = through.publish({ topic, data: 'waiting' })
    await new Promise((resolve) => setTimeout(resolve, 300))
    proxy.heal()
    const waited = await waiting
    await eventually('reconnect', () => through.isConnected)
    const health = await through.healthCheck()
    expect(health.healthy, health.detail).toBe(true)
    await eventually('events from the outage', () => got.has(during.id) && got.has(waited.id))
  })

  it('broadcast subscriptions come back with a new queue and receive again', async () => {
    const { proxy, through, direct } = await setup()
    const topic = `rc.${run}.bcast`
    const got = new Set<string>()
    await through.subscribe(topic, (e: OmnibusEvent) => void got.add(e.id))
    proxy.cut(true)
    await eventually('the backend to notice', () => !through.isConnected)
    proxy.heal()
    await eventually('reconnect', () => through.isConnected)
    const deadline = Date.now() + 10_000
    let id = ''
    while (Date.now() < deadline && !got.has(id)) {
      id = (await direct.publish({ topic, data: 1 })).id
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(got.has(id)).toBe(true)
  })

  it('disconnect() while reconnecting ends it for good, and pending publishes fail', async () => {
    const { proxy, through } = await setup()
    proxy.cut(true)
    await eventually('the backend to notice', () => !through.isConnected)
    const pending = through.publish({ topic: `rc.${run}.gone`, data: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    )
    await through.disconnect({ drainTimeoutMs: 100 })
    proxy.heal()
    const error = await pending
    expect(error).toBeInstanceOf(ConnectionError)
    // It does not come back to life once the broker is reachable again.
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(through.isConnected).toBe(false)
    expect((await through.healthCheck()).healthy).toBe(false)
  })
})
