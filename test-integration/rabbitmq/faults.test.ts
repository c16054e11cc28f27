import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ConnectionError, type EventBackend, type OmnibusEvent } from '@omnibus/core'
import { createRabbitMQBackend, groupQueueName } from '@omnibus/rabbitmq'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint, restartHint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { rawConnect, TEST_QUEUES } from './amqp.ts'

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('rabbitmq', 'RabbitMQ fault tests', () => {
  const url = requireEndpoint('rabbitmq')
  const restart = serviceRestart('rabbitmq')
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []

  async function backend(): Promise<EventBackend> {
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url, publishTimeoutMs: 60_000 })
    await b.connect()
    backends.push(b)
    return b
  }

  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1000 })))
  })

  const restartTest = restart === undefined ? it.skip : it
  restartTest(
    `broker restart in the middle of 10,000 events: every acknowledged publish is received${restart === undefined ? ` (skipped: ${restartHint('rabbitmq')})` : ''}`,
    async () => {
      const restartBroker = restart as () => Promise<void>
      const topic = `fault.${runId}.restart`
      const consumer = await backend()
      const publisher = await backend()
      const received = new Set<string>()
      let deliveries = 0
      // Handlers hold their events until the outage is seen, so the restart hits unacknowledged
      // deliveries as well as messages still queued and publishes still to come.
      let openGate: () => void = () => {}
      const gate = new Promise<void>((resolve) => {
        openGate = resolve
      })
      await consumer.subscribe(
        topic,
        async (event: OmnibusEvent) => {
          deliveries++
          await gate
          received.add(event.id)
        },
        { group: `fault-${runId}`, concurrency: 50 },
      )
      const acked: string[] = []
      const retryable: string[] = []
      const total = 10_000
      let next = 0
      async function worker(end: number): Promise<void> {
        while (next < end) {
          const id = `${runId}-${next++}`
          for (;;) {
            try {
              await publisher.publish({ topic, id, data: { id } })
              acked.push(id)
              break
            } catch (error) {
              // Only retryable errors are allowed; the same id is sent again.
              expect((error as { retryable?: boolean }).retryable, String(error)).toBe(true)
              retryable.push(id)
            }
          }
        }
      }
      await Promise.all(Array.from({ length: 100 }, () => worker(3000)))
      const restarting = restartBroker()
      let sawOutage = false
      const until = Date.now() + 60_000
      while (!sawOutage && Date.now() < until) {
        sawOutage = !(await publisher.healthCheck()).healthy
        if (!sawOutage) await new Promise((r) => setTimeout(r, 20))
      }
      expect(sawOutage, 'healthCheck reported unhealthy during the restart').toBe(true)
      const receivedBeforeOutage = received.size
      openGate()
      // The other 7,000 are published while the broker is away and after it is back.
      await Promise.all([restarting, ...Array.from({ length: 100 }, () => worker(total))])
      expect(receivedBeforeOutage).toBe(0)
      await eventually('the publisher to be healthy again', () => publisher.isConnected, 60_000)
      expect((await publisher.healthCheck()).healthy).toBe(true)
      expect(acked.length).toBe(total)
      await eventually(
        `every acknowledged publish to arrive (${received.size}/${total})`,
        () => acked.every((id) => received.has(id)),
        90_000,
      )
      console.log(
        `restart run: ${total} acknowledged, ${received.size} distinct received, ${deliveries} deliveries, ${retryable.length} retryable publish errors`,
      )
    },
    240_000,
  )

  restartTest(
    `publishes that cannot wait out the outage fail with a retryable ConnectionError; every accepted one arrives${restart === undefined ? ` (skipped: ${restartHint('rabbitmq')})` : ''}`,
    async () => {
      const restartBroker = restart as () => Promise<void>
      const topic = `fault.${runId}.timeout`
      const consumer = await backend()
      const received = new Set<string>()
      await consumer.subscribe(topic, (e: OmnibusEvent) => void received.add(e.id), {
        group: `timeout-${runId}`,
      })
      const impatient = createRabbitMQBackend({ ...TEST_QUEUES, url, publishTimeoutMs: 300 })
      await impatient.connect()
      backends.push(impatient)
      const restarting = restartBroker()
      await eventually('the outage', () => !impatient.isConnected, 60_000)
      const accepted: string[] = []
      const failures: unknown[] = []
      for (let i = 0; i < 20; i++) {
        const id = `${runId}-t-${i}`
        try {
          await impatient.publish({ topic, id, data: { i } })
          accepted.push(id)
        } catch (error) {
          failures.push(error)
        }
      }
      await restarting
      expect(failures.length, 'publishes refused while the broker was away').toBeGreaterThan(0)
      for (const e of failures) {
        expect(e).toBeInstanceOf(ConnectionError)
        expect((e as ConnectionError).retryable).toBe(true)
        expect((e as Error).message).toMatch(/publish it again/)
      }
      // After recovery the same backend publishes again, and everything accepted arrives.
      await eventually('reconnect', () => impatient.isConnected, 60_000)
      accepted.push((await impatient.publish({ topic, id: `${runId}-t-after`, data: {} })).id)
      await eventually('accepted events', () => accepted.every((id) => received.has(id)), 30_000)
    },
    120_000,
  )

  it('a consumer process killed mid-handler: another process gets its events', async () => {
    const topic = `fault.${runId}.kill`
    const group = `kill-${runId}`
    const child = fork(fileURLToPath(new URL('./fault-child.ts', import.meta.url)), [], {
      execArgv: ['--conditions=@omnibus/source'],
      env: { ...process.env, OMNIBUS_IT_AMQP_URL: url, FAULT_PATTERN: topic, FAULT_GROUP: group },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(child)
    const heldByChild = new Set<string>()
    let ready = false
    child.on('message', (m: { type: string; id?: string }) => {
      if (m.type === 'ready') ready = true
      if (m.type === 'delivered' && m.id !== undefined) heldByChild.add(m.id)
    })
    await eventually('the child consumer to subscribe', () => ready, 30_000)
    const publisher = await backend()
    const ids: string[] = []
    for (let i = 0; i < 20; i++) ids.push((await publisher.publish({ topic, data: { i } })).id)
    // The child holds up to its concurrency (5) unacknowledged events in never-ending handlers.
    await eventually('the child to hold events', () => heldByChild.size === 5, 10_000)
    const survivor = await backend()
    const received = new Set<string>()
    await survivor.subscribe(topic, (e) => void received.add(e.id), { group, concurrency: 5 })
    await eventually(
      'the survivor to get the events the child does not hold',
      () => received.size >= 15,
      10_000,
    )
    expect([...heldByChild].some((id) => received.has(id))).toBe(false)
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    await eventually(
      'the killed child’s events to reach the survivor',
      () => ids.every((id) => received.has(id)),
      15_000,
    )
    expect([...heldByChild].every((id) => received.has(id))).toBe(true)
  }, 60_000)

  it('an event whose consumers keep dying mid-handler is dead-lettered once its deliveries exceed retry.maxAttempts', async () => {
    const topic = `fault.${runId}.poison`
    const group = `poison-${runId}`
    const dlqTopic = `fault.${runId}.poison-dlq`
    const dead: OmnibusEvent[] = []
    const watcher = await backend()
    await watcher.subscribe(dlqTopic, (e: OmnibusEvent) => void dead.push(e))
    // Declare the group queue, then leave it without a consumer.
    const first = await backend()
    await (await first.subscribe(topic, () => {}, { group, deadLetter: dlqTopic })).unsubscribe()
    const publisher = await backend()
    const { id } = await publisher.publish({ topic, data: { poison: true } })
    // Three consumers take the message and die without acknowledging it.
    const conn = await rawConnect(url)
    for (let i = 0; i < 3; i++) {
      const ch = await conn.createConfirmChannel()
      let got = false
      await ch.consume(groupQueueName('omnibus', group, topic), () => {
        got = true
      })
      await eventually(`delivery ${i + 1} to a doomed consumer`, () => got, 10_000)
      await ch.close()
    }
    await conn.close()
    const handled: string[] = []
    const b = await backend()
    await b.subscribe(topic, (e: OmnibusEvent) => void handled.push(e.id), {
      group,
      deadLetter: dlqTopic,
      retry: { maxAttempts: 3 },
    })
    await eventually('the dead letter', () => dead.length === 1, 10_000)
    expect(handled).toEqual([])
    expect(dead[0]?.headers['omnibus-dlq-original-id']).toBe(id)
    expect(dead[0]?.headers['omnibus-dlq-reason']).toMatch(
      /delivered 4 times without being settled, more than maxAttempts \(3\)/,
    )
    expect(dead[0]?.headers['omnibus-dlq-attempts']).toBe('3')
  }, 60_000)
  it('classic group queues count deliveries too: a message whose consumers leave mid-handler is dead-lettered after maxAttempts runs', async () => {
    const topic = `fault.${runId}.classic`
    const group = `classic-${runId}`
    const dlqTopic = `fault.${runId}.classic-dlq`
    const dead: OmnibusEvent[] = []
    const watcher = await backend()
    await watcher.subscribe(dlqTopic, (e: OmnibusEvent) => void dead.push(e))
    const attempts: number[] = []
    let id = ''
    // Each member takes the message, hangs on it and leaves; a classic queue only flags the
    // redelivery, and the next member turns it into a copy that carries the count.
    for (let k = 0; k < 4 && dead.length === 0; k++) {
      const member = createRabbitMQBackend({ ...TEST_QUEUES, url, queueType: 'classic' })
      await member.connect()
      backends.push(member)
      await member.subscribe(
        topic,
        (_e, ctx) => {
          attempts.push(ctx.attempt)
          return new Promise(() => {})
        },
        { group, deadLetter: dlqTopic, retry: { maxAttempts: 3 } },
      )
      if (k === 0) id = (await member.publish({ topic, data: { poison: true } })).id
      await eventually(
        `run ${k + 1} or the dead letter`,
        () => attempts.length === k + 1 || dead.length > 0,
        10_000,
      )
      await member.disconnect({ drainTimeoutMs: 50 })
    }
    await eventually('the dead letter', () => dead.length === 1, 10_000)
    expect(attempts).toEqual([1, 2, 3])
    expect(dead[0]?.headers['omnibus-dlq-original-id']).toBe(id)
    expect(dead[0]?.headers['omnibus-dlq-reason']).toMatch(/delivered 4 times without being settled/)
  }, 60_000)
})
