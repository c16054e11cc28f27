import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { type EventBackend, OmnibusError } from '@omnibus/core'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint, restartHint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('kafka', 'Kafka fault tests', () => {
  const brokers = requireEndpoint('kafka')
  process.env.OMNIBUS_IT_KAFKA_BROKERS = brokers
  const restart = serviceRestart('kafka')
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []

  async function backend(extra: Parameters<typeof makeBackend>[0] = {}): Promise<EventBackend> {
    const b = makeBackend(extra)
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
    `broker restart in the middle of a publish/consume run: every acknowledged publish is handled${restart === undefined ? ` (skipped: ${restartHint('kafka')})` : ''}`,
    async () => {
      const restartBroker = restart as () => Promise<void>
      const topic = `fault.${runId}.restart`
      const consumer = await backend()
      const publisher = await backend()
      const handled = new Set<string>()
      await consumer.subscribe(
        topic,
        async (event) => {
          handled.add(event.id)
        },
        { group: `fault-${runId}-restart`, concurrency: 8 },
      )
      const acked = new Set<string>()
      const failures: unknown[] = []
      let restarted = false
      let restarting: Promise<void> | undefined
      const total = 4000
      for (let sent = 0; sent < total || !restarted; sent += 20) {
        if (sent >= 1000 && restarting === undefined) {
          restarting = restartBroker().then(() => {
            restarted = true
          })
        }
        const batch = Array.from({ length: 20 }, (_, i) => ({
          topic,
          data: { runId, n: sent + i },
          partitionKey: `k${(sent + i) % 7}`,
        }))
        const results = await Promise.allSettled(batch.map((e) => publisher.publish(e)))
        for (const r of results) {
          if (r.status === 'fulfilled') acked.add(r.value.id)
          else failures.push(r.reason)
        }
        if (sent >= total && !restarted) await new Promise((resolve) => setTimeout(resolve, 200))
      }
      await restarting
      // A few more after recovery: the producer and the consumer work again.
      for (let i = 0; i < 20; i++) {
        const r = await publisher.publish({ topic, data: { runId, after: i } })
        acked.add(r.id)
      }
      for (const f of failures) {
        expect(f, 'a publish that failed during the outage').toBeInstanceOf(OmnibusError)
        expect((f as OmnibusError).retryable, `retryable: ${(f as Error).message}`).toBe(true)
      }
      expect(acked.size).toBeGreaterThan(1000)
      await eventually(
        `${acked.size} acknowledged events handled (missing ${[...acked].filter((id) => !handled.has(id)).length})`,
        () => [...acked].every((id) => handled.has(id)),
        90_000,
      )
      const health = await consumer.healthCheck()
      expect(health.healthy).toBe(true)
    },
    240_000,
  )

  it('a consumer process killed mid-handler: another member of its group handles the event', async () => {
    const topic = `fault.${runId}.killed`
    const group = `fault-${runId}-killed`
    const publisher = await backend({ numPartitions: 1 })
    // One partition: the child holds it, and only a rebalance can hand its events to the survivor.
    await publisher.publish({ topic, data: { runId, warmup: true } })
    const child = fork(fileURLToPath(new URL('./fault-child.ts', import.meta.url)), [], {
      env: { ...process.env, OMNIBUS_IT_FAULT_TOPIC: topic, OMNIBUS_IT_FAULT_GROUP: group },
      execArgv: ['--conditions=@omnibus/source', '--no-warnings'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(child)
    const seen: string[] = []
    let ready = false
    child.on('message', (m: { type: string; id?: string }) => {
      if (m.type === 'ready') ready = true
      if (m.type === 'handling' && m.id !== undefined) seen.push(m.id)
    })
    await eventually('the child consumer to join', () => ready, 60_000)
    const { id } = await publisher.publish({ topic, data: { runId, victim: true } })
    await eventually('the child to start handling the event', () => seen.includes(id), 20_000)

    const survivor = await backend()
    const handledBySurvivor: string[] = []
    const joining = survivor.subscribe(
      topic,
      async (event) => {
        handledBySurvivor.push(event.id)
      },
      { group },
    )
    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    await joining
    // The dead member is dropped after its session timeout (6 s here), then the partition moves.
    await eventually(
      'the survivor to handle the killed consumer’s event',
      () => handledBySurvivor.includes(id),
      60_000,
    )
    expect(handledBySurvivor.filter((x) => x === id).length).toBe(1)
  }, 120_000)
})
