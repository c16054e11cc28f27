import { existsSync } from 'node:fs'
import { ConfigurationError, createBackend, type OmnibusEvent } from '@omnibus/core'
import { type DedupeStore, MemoryDedupeStore } from '@omnibus/core/backend'
import { createRabbitMQBackend, groupQueueName } from '@omnibus/rabbitmq'
import { expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { cuttableProxy, rawConnect, TEST_QUEUES } from './amqp.ts'

function withCredentials(url: string, user: string, password: string, vhost?: string): string {
  const u = new URL(url)
  u.username = user
  u.password = password
  if (vhost !== undefined) u.pathname = `/${encodeURIComponent(vhost)}`
  return u.toString()
}

describeWithService('rabbitmq', 'RabbitMQ connection options', () => {
  const url = requireEndpoint('rabbitmq')
  const run = Date.now().toString(36)

  it('a wrong password is a ConfigurationError that does not show the password', async () => {
    const b = createRabbitMQBackend({
      ...TEST_QUEUES,
      url: withCredentials(url, 'guest', 'not-the-password-x7'),
    })
    const error = await b.connect().then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error).toBeInstanceOf(ConfigurationError)
    expect(error?.message).toMatch(/403|ACCESS.REFUSED/)
    expect(error?.message).not.toContain('not-the-password-x7')
    expect(b.isConnected).toBe(false)
  })

  it('a vhost that does not exist is refused as configuration', async () => {
    const b = createRabbitMQBackend({
      ...TEST_QUEUES,
      url: withCredentials(url, 'guest', 'guest', `missing-${run}`),
    })
    const error = await b.connect().then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(error).toBeInstanceOf(ConfigurationError)
  })

  it('createBackend picks this package for amqp:// URLs', async () => {
    const b = await createBackend(url)
    expect(b.name).toBe('rabbitmq')
    await b.connect()
    expect((await b.healthCheck()).healthy).toBe(true)
    await b.disconnect()
  })

  it('works on a ready amqplib connection and leaves it open on disconnect', async () => {
    const conn = await rawConnect(url)
    try {
      const listenersBefore = conn.listenerCount('close')
      const b = createRabbitMQBackend({ connection: conn as never })
      await b.connect()
      const topic = `conn.${run}.ready`
      const got: OmnibusEvent[] = []
      await b.subscribe(topic, (e) => void got.push(e))
      const receipt = await b.publish({ topic, data: { ok: true } })
      await eventually('the event', () => got.length === 1)
      expect(got[0]?.id).toBe(receipt.id)
      await b.disconnect()
      expect(b.isConnected).toBe(false)
      // The caller's connection is still usable, and carries none of the backend's listeners.
      const ch = await conn.createConfirmChannel()
      await ch.close()
      expect(conn.listenerCount('close')).toBe(listenersBefore)
      // The same backend can connect again on it.
      await b.connect()
      expect((await b.healthCheck()).healthy).toBe(true)
      await b.disconnect()
      expect(conn.listenerCount('close')).toBe(listenersBefore)
    } finally {
      await conn.close()
    }
  })

  it('a subscription whose channel the broker closes is re-attached', async () => {
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url })
    await b.connect()
    try {
      const topic = `conn.${run}.requeue`
      const group = `conn-${run}`
      const got = new Set<string>()
      await b.subscribe(topic, (e) => void got.add(e.id), { group })
      // Deleting the group queue cancels the consumer; the backend re-declares it and consumes again.
      const conn = await rawConnect(url)
      const ch = await conn.createConfirmChannel()
      await ch.deleteQueue(groupQueueName('omnibus', group, topic))
      await conn.close()
      const deadline = Date.now() + 10_000
      let id = ''
      while (Date.now() < deadline && !got.has(id)) {
        id = (await b.publish({ topic, data: 1 })).id
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(got.has(id)).toBe(true)
    } finally {
      await b.disconnect()
    }
  })

  it('publishing to a backend that never connected is refused at once', async () => {
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url })
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toThrow(/connect\(\) first/)
    await expect(b.subscribe('a.b', () => {})).rejects.toThrow(/connect\(\) first/)
    await expect(b.disconnect()).resolves.toBeUndefined()
  })

  it('exactly-once with a failing dedupe store: no hot loop, handled once the store works', async () => {
    let broken = true
    let claimCalls = 0
    const inner = new MemoryDedupeStore()
    const store: DedupeStore = {
      claim(group, id, owner, ttlMs) {
        claimCalls++
        if (broken) throw new Error('store unavailable')
        return inner.claim(group, id, owner, ttlMs)
      },
      commit: (group, id, owner) => inner.commit(group, id, owner),
      release: (group, id, owner) => inner.release(group, id, owner),
    }
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url, dedupeStore: store })
    await b.connect()
    try {
      const topic = `conn.${run}.eo`
      const handled: string[] = []
      // A failed claim offers the message again after max(50 ms, retry.initialDelayMs).
      await b.subscribe(topic, (e) => void handled.push(e.id), {
        group: `eo-${run}`,
        guarantee: 'exactly-once',
        retry: { initialDelayMs: 500 },
      })
      const { id } = await b.publish({ topic, data: 1, guarantee: 'exactly-once' })
      await eventually('the first store call', () => claimCalls >= 1)
      await new Promise((resolve) => setTimeout(resolve, 1500))
      // Offered again after the pause each time, not thousands of times a second.
      expect(claimCalls).toBeLessThanOrEqual(5)
      expect(handled).toEqual([])
      broken = false
      await eventually('the event once the store works', () => handled.length === 1, 10_000)
      await b.publish({ topic, id, data: 1, guarantee: 'exactly-once' })
      const fence = await b.publish({ topic, data: 'fence', guarantee: 'exactly-once' })
      await eventually('the fence', () => handled.includes(fence.id))
      expect(handled.filter((x) => x === id)).toHaveLength(1)
    } finally {
      await b.disconnect()
    }
  })

  it('a subscription that cannot re-attach is reported by healthCheck and retried until it can', async () => {
    const proxy = await cuttableProxy(url)
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url: proxy.url, reconnectMaxDelayMs: 200 })
    await b.connect()
    const conn = await rawConnect(url)
    try {
      const topic = `conn.${run}.blocked`
      const group = `blocked-${run}`
      const queue = groupQueueName('omnibus', group, topic)
      const got = new Set<string>()
      await b.subscribe(topic, (e) => void got.add(e.id), { group })
      // While the backend is cut off, someone replaces its queue with a classic one: declaring
      // it as quorum on reconnect fails.
      proxy.cut(true)
      await eventually('the backend to notice the cut', () => !b.isConnected)
      const ch = await conn.createConfirmChannel()
      await ch.deleteQueue(queue)
      await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } })
      proxy.heal()
      await eventually('reconnect', () => b.isConnected)
      // The re-attach runs right after the reconnect; its failure shows up in healthCheck.
      let health = await b.healthCheck()
      const by = Date.now() + 5000
      while (health.healthy && Date.now() < by) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        health = await b.healthCheck()
      }
      expect(health.healthy).toBe(false)
      expect(health.detail).toMatch(/not consuming.*PRECONDITION.FAILED - inequivalent arg/)
      // Once the conflicting queue is gone, the retry declares its own and consumption resumes.
      await ch.deleteQueue(queue)
      const until = Date.now() + 15_000
      let id = ''
      while (Date.now() < until && !got.has(id)) {
        id = (await b.publish({ topic, data: 1 })).id
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      expect(got.has(id)).toBe(true)
      expect((await b.healthCheck()).healthy).toBe(true)
      await ch.close()
    } finally {
      await conn.close()
      await b.disconnect()
      await proxy.close()
    }
  })

  // scripts/services/rabbitmq.sh creates the vhost omnibus-test; other brokers may not have it.
  const scriptBroker =
    existsSync(new URL('../../.services/rabbitmq/rabbitmq.conf', import.meta.url)) &&
    /^amqp:\/\/[^@]*@(127\.0\.0\.1|localhost):5672\/?$/.test(url)
  const vhostTest = scriptBroker ? it : it.skip
  vhostTest(
    `the vhost of the URL is used: events stay inside it${scriptBroker ? '' : ' (skipped: needs the vhost omnibus-test that scripts/services/rabbitmq.sh creates)'}`,
    async () => {
      const inVhost = createRabbitMQBackend({
        ...TEST_QUEUES,
        url: withCredentials(url, 'guest', 'guest', 'omnibus-test'),
      })
      const inRoot = createRabbitMQBackend({ ...TEST_QUEUES, url })
      await inVhost.connect()
      await inRoot.connect()
      try {
        const topic = `conn.${run}.vhost`
        const vhostGot = new Set<string>()
        const rootGot = new Set<string>()
        await inVhost.subscribe(topic, (e) => void vhostGot.add(e.id))
        await inRoot.subscribe(topic, (e) => void rootGot.add(e.id))
        const { id } = await inVhost.publish({ topic, data: 'vhost' })
        await eventually('the event inside the vhost', () => vhostGot.has(id))
        const fence = await inRoot.publish({ topic, data: 'fence' })
        await eventually('the fence in /', () => rootGot.has(fence.id))
        expect(rootGot.has(id)).toBe(false)
        expect(vhostGot.has(fence.id)).toBe(false)
      } finally {
        await inVhost.disconnect()
        await inRoot.disconnect()
      }
    },
  )
})
