/**
 * The delay forwarder while backend instances come and go: delayed events still arrive close to
 * their time, and `disconnect({ drainTimeoutMs })` is not held up by the forwarder leaving its group.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createKafkaClient, type KafkaBackend, type KafkaClient, resolveKafkaOptions } from '@omnibus/kafka'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { itOptions, makeBackend } from './backend.ts'

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
/** The forwarder group named in the Kafka README. */
const FORWARDER_GROUP = '__omnibus_delay_forwarder'
/** What the conformance suite allows `disconnect` beyond its drain timeout. */
const CLOSE_ALLOWANCE_MS = 2_000

describeWithService('kafka', 'Kafka delay forwarder with instances joining and leaving', () => {
  process.env.OMNIBUS_IT_KAFKA_BROKERS = requireEndpoint('kafka')
  const open: KafkaBackend[] = []
  const clients: KafkaClient[] = []
  const children: ChildProcess[] = []
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await Promise.allSettled(open.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
    await Promise.allSettled(clients.splice(0).map((c) => c.disconnect()))
  })

  async function adminClient(): Promise<KafkaClient> {
    const c = createKafkaClient(resolveKafkaOptions(itOptions(requireEndpoint('kafka'))))
    clients.push(c)
    await c.connect()
    return c
  }

  /**
   * Backends that connect, subscribe, publish a delayed event of their own and disconnect, over and
   * over, until `until()` holds; returns how long each disconnect took.
   */
  async function churn(workers: number, until: () => boolean): Promise<number[]> {
    const closes: number[] = []
    let n = 0
    const loop = async (w: number): Promise<void> => {
      while (!until()) {
        const b = makeBackend({ clientId: `churn-${runId}-${w}-${n++}` })
        await b.connect()
        try {
          await b.subscribe(`delay.${runId}.noise`, () => {})
          await b.publish({ topic: `delay.${runId}.noise`, data: w, delayMs: 1_500 })
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 500))
        } finally {
          const started = Date.now()
          await b.disconnect({ drainTimeoutMs: 300 })
          closes.push(Date.now() - started)
        }
      }
    }
    await Promise.all(Array.from({ length: workers }, (_, w) => loop(w)))
    return closes
  }

  it('delayed events arrive within a bound of their time while other instances subscribe and disconnect all along', async () => {
    const topic = `delay.${runId}.churn`
    const b = makeBackend()
    open.push(b)
    await b.connect()
    const late: number[] = []
    await b.subscribe(topic, (e) => void late.push(Date.now() - (e.deliverAt ?? 0)), {
      group: `g-${runId}-churn`,
    })
    // An instance that subscribed and was killed: it leaves no LeaveGroup behind, only a member
    // the broker expires after its session timeout.
    const child = fork(fileURLToPath(new URL('./fault-child.ts', import.meta.url)), [], {
      env: {
        ...process.env,
        OMNIBUS_IT_FAULT_TOPIC: `delay.${runId}.killed`,
        OMNIBUS_IT_FAULT_GROUP: `g-${runId}-killed`,
      },
      execArgv: ['--conditions=@omnibus/source', '--no-warnings'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(child)
    let ready = false
    child.on('message', (m: { type: string }) => {
      if (m.type === 'ready') ready = true
    })
    await eventually('the child instance to subscribe', () => ready, 60_000)
    const admin = await adminClient()
    let done = false
    const churning = churn(12, () => done)
    // How many instances are in the forwarder group at once: each one joining or leaving rebalances
    // all of them, and forwarding stops while they rebalance.
    let mostMembers = 0
    const sampling = (async () => {
      while (!done) {
        mostMembers = Math.max(mostMembers, (await admin.groupMembers(FORWARDER_GROUP)).length)
        await new Promise((r) => setTimeout(r, 200))
      }
    })()
    try {
      await b.publish({ topic, data: 'first', delayMs: 1_000 })
      await eventually('the first delayed event', () => late.length === 1, 20_000)
      child.kill('SIGKILL')
      // Published while the churn is under way, in two waves.
      for (let wave = 0; wave < 2; wave++) {
        await new Promise((r) => setTimeout(r, 2_000))
        for (let i = 0; i < 3; i++) await b.publish({ topic, data: i, delayMs: 2_000 })
      }
      await eventually(`the delayed events (${late.length} of 7 handled)`, () => late.length >= 7, 20_000)
    } finally {
      done = true
      await Promise.all([churning, sampling])
    }
    expect(late).toHaveLength(7)
    expect(mostMembers, 'members of the forwarder group at once').toBeLessThanOrEqual(4)
    expect(Math.max(...late), `lateness (ms): ${late.join(', ')}`).toBeLessThan(4_000)
  }, 90_000)

  it('disconnect({ drainTimeoutMs }) stays within the drain timeout and the close allowance while its forwarder is in a rebalance held up by a hung member', async () => {
    const admin = await adminClient()
    const members = (): Promise<string[]> => admin.groupMembers(FORWARDER_GROUP)
    // Nobody forwarding at first, so the instance below is the one that must.
    const idle = Date.now() + 40_000
    while ((await members()).length > 0) {
      if (Date.now() > idle) throw new Error(`${FORWARDER_GROUP} still has members`)
      await new Promise((r) => setTimeout(r, 200))
    }
    const clientId = `leaver-${runId}`
    const b = makeBackend({ clientId })
    await b.connect()
    let release = (): void => {}
    const released = new Promise<void>((r) => {
      release = r
    })
    // A member whose batch never returns (a hung process): it heartbeats no more and does not rejoin,
    // so the next rebalance waits for it until the broker expires it.
    const hung = admin.createConsumer({
      groupId: FORWARDER_GROUP,
      partitionsConsumedConcurrently: 3,
      onBatch: () => released,
    })
    const third = admin.createConsumer({
      groupId: FORWARDER_GROUP,
      partitionsConsumedConcurrently: 1,
      onBatch: async (_batch, control) => void control.pause(),
    })
    let closed = false
    try {
      await b.subscribe(`delay.${runId}.leaver`, () => {})
      // Records on every partition of the 1 s tier, due after the test's rebalances.
      for (let i = 0; i < 12; i++) {
        await b.publish({ topic: `delay.${runId}.leaver`, data: i, partitionKey: `k${i}`, delayMs: 2_500 })
      }
      const deadline = Date.now() + 20_000
      while (!(await members()).some((m) => m.startsWith(clientId))) {
        if (Date.now() > deadline) throw new Error(`${clientId} never joined ${FORWARDER_GROUP}`)
        await new Promise((r) => setTimeout(r, 100))
      }
      await hung.start([{ topic: '__omnibus_delay_1s', fromBeginning: true }])
      await new Promise((r) => setTimeout(r, 1_000))
      void third.start([{ topic: '__omnibus_delay_1s', fromBeginning: true }]).catch(() => {})
      await new Promise((r) => setTimeout(r, 300))
      const started = Date.now()
      await b.disconnect({ drainTimeoutMs: 300 })
      closed = true
      const took = Date.now() - started
      expect(took, 'disconnect time (ms)').toBeLessThan(300 + CLOSE_ALLOWANCE_MS)
    } finally {
      release()
      if (!closed) await b.disconnect({ drainTimeoutMs: 300 })
      await Promise.allSettled([hung.disconnect(), third.disconnect()])
    }
  }, 120_000)

  it('disconnect stays within the drain timeout and the close allowance for instances that come and go', async () => {
    const stopAt = Date.now() + 15_000
    const closes = await churn(8, () => Date.now() > stopAt)
    expect(closes.length).toBeGreaterThan(4)
    expect(Math.max(...closes), `disconnect times (ms): ${closes.join(', ')}`).toBeLessThan(
      300 + CLOSE_ALLOWANCE_MS,
    )
  }, 60_000)
})
