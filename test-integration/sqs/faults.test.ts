import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createEvent, type EventBackend, isRetryable, type OmnibusEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import type { SqsBackend } from '@omnibus/sqs'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, restartHint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'
import { runQueues } from './cleanup.ts'

describeWithService('sqs', 'sqs fault tests', () => {
  runQueues('f')
  const restart = serviceRestart('sqs')
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []

  async function backend(options: Parameters<typeof makeBackend>[0] = {}): Promise<SqsBackend> {
    const b = makeBackend(options)
    backends.push(b)
    await b.connect()
    return b
  }

  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
  })

  function spawnChild(topic: string, group: string, visibilityMs: number, env: Record<string, string> = {}) {
    const child = spawn(
      process.execPath,
      [
        '--conditions=@omnibus/source',
        fileURLToPath(new URL('./consumer-child.ts', import.meta.url)),
        topic,
        group,
        String(visibilityMs),
      ],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    children.push(child)
    const lines: string[] = []
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l !== '')))
    return { child, lines }
  }

  it('a broadcast subscriber killed without disconnecting: its queue is reaped after orphanAfterMs, not before', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `fault.orphan.r${run}`
    const orphanAfterMs = 6_000
    const { child, lines } = spawnChild(topic, '-', 2_000, {
      OMNIBUS_SQS_ORPHAN_AFTER_MS: String(orphanAfterMs),
    })
    await eventually('the child to subscribe', () => lines.includes('ready'), 30_000)
    const publisher = await backend({ orphanAfterMs })
    // A valid envelope written as it is: the count of queues it reached is the routing table.
    const body = encodeEvent(createEvent({ topic, data: { probe: true } }))
    expect(await publisher.publishRaw(topic, body), "the child's broadcast queue is routed").toBe(1)
    // Alive for well over the window: the child refreshes its tag, so the queue stays.
    const aliveUntil = Date.now() + orphanAfterMs * 2
    while (Date.now() < aliveUntil) {
      expect(await publisher.publishRaw(topic, body), "a live subscriber's queue is never reaped").toBe(1)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    child.kill('SIGKILL')
    let reaped = false
    const deadline = Date.now() + orphanAfterMs * 3 + 5_000
    while (!reaped && Date.now() < deadline) {
      reaped = (await publisher.publishRaw(topic, body)) === 0
      if (!reaped) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(reaped, 'the queue of the killed subscriber is no longer published to').toBe(true)
  })

  it('a consumer process killed mid-handler: another member handles the event after the visibility timeout', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `fault.kill.r${run}`
    const group = `g${run}`
    const visibilityMs = 2_000
    const child = spawn(
      process.execPath,
      [
        '--conditions=@omnibus/source',
        fileURLToPath(new URL('./consumer-child.ts', import.meta.url)),
        topic,
        group,
        String(visibilityMs),
      ],
      { env: process.env, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    children.push(child)
    const lines: string[] = []
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => lines.push(...chunk.split('\n').filter((l) => l !== '')))
    await eventually('the child to subscribe', () => lines.includes('ready'), 30_000)

    const publisher = await backend()
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await publisher.publish({ topic, data: { i } })).id)
    await eventually(
      'the child to start all three handlers',
      () => ids.every((id) => lines.some((l) => l.startsWith(`handling ${id}`))),
      10_000,
    )

    // The survivor joins while the child still holds the messages: it must not get them early.
    const survivor = await backend()
    const got: Array<{ event: OmnibusEvent; attempt: number; at: number }> = []
    await survivor.subscribe(
      topic,
      (event, ctx) => void got.push({ event, attempt: ctx.attempt, at: Date.now() }),
      {
        group,
        visibilityTimeoutMs: visibilityMs,
      },
    )
    await new Promise((resolve) => setTimeout(resolve, visibilityMs + 500))
    expect(got, 'the child extends its lease while alive: nothing is redelivered yet').toEqual([])

    child.kill('SIGKILL')
    const killedAt = Date.now()
    await eventually(
      'the survivor to handle every event of the killed member',
      () => ids.every((id) => got.some((g) => g.event.id === id)),
      visibilityMs * 2 + 8_000,
    )
    for (const g of got) {
      expect(g.attempt, 'a redelivery counts as a new attempt').toBeGreaterThanOrEqual(2)
      expect(g.at - killedAt).toBeLessThanOrEqual(visibilityMs * 2 + 8_000)
    }
    expect(new Set(got.map((g) => g.event.id)).size).toBe(3)
  })

  it.skipIf(restart === undefined)(
    `broker restart: queues and unacknowledged messages survive (persistent ElasticMQ), publishers see retryable errors, consumers resume${restart === undefined ? ` (skipped: ${restartHint('sqs')})` : ''}`,
    async () => {
      const run = randomUUID().slice(0, 8)
      const topic = `fault.restart.r${run}`
      const group = `g${run}`
      const publisher = await backend()
      const live = await backend()
      const received = new Set<string>()
      await live.subscribe(topic, (e) => void received.add(e.id), { group, concurrency: 4 })
      // Published before the restart and left in the queue (no consumer of this second group yet).
      const parked = `p${run}`
      const parkedSub = await (await backend()).subscribe(topic, () => {}, { group: parked })
      await parkedSub.unsubscribe()
      const before: string[] = []
      for (let i = 0; i < 50; i++) before.push((await publisher.publish({ topic, data: { i } })).id)
      await eventually(
        'the live group to handle the first 50',
        () => before.every((id) => received.has(id)),
        10_000,
      )

      const restarting = (restart as () => Promise<void>)()
      let unhealthySeen = false
      let rejected = 0
      let nonRetryable = 0
      const acknowledged: string[] = []
      let done = false
      void restarting.finally(() => {
        done = true
      })
      let n = 0
      while (!done) {
        const h = await publisher.healthCheck()
        if (!h.healthy) unhealthySeen = true
        try {
          acknowledged.push((await publisher.publish({ topic, data: { during: n++ } })).id)
        } catch (error) {
          rejected++
          if (!isRetryable(error)) nonRetryable++
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await restarting
      expect(unhealthySeen, 'healthCheck reported the broker down').toBe(true)
      expect(rejected, 'publishes failed while the broker was down').toBeGreaterThan(0)
      expect(nonRetryable, 'every failure during the restart is retryable').toBe(0)
      expect((await publisher.healthCheck()).healthy).toBe(true)

      const after: string[] = []
      for (let i = 0; i < 20; i++) after.push((await publisher.publish({ topic, data: { after: i } })).id)
      const missing = () => ({
        during: acknowledged.filter((id) => !received.has(id)).length,
        after: after.filter((id) => !received.has(id)).length,
      })
      await eventually(
        'the live consumer to resume and handle everything acknowledged',
        () => [...acknowledged, ...after].every((id) => received.has(id)),
        60_000,
      ).catch((error: Error) => {
        throw new Error(
          `${error.message}: missing ${JSON.stringify(missing())} of ${acknowledged.length} acknowledged during the restart and ${after.length} after`,
        )
      })

      // The parked group's queue kept its 50 + everything accepted since, across the restart.
      const parkedGot = new Set<string>()
      await (await backend()).subscribe(topic, (e) => void parkedGot.add(e.id), { group: parked })
      await eventually(
        'the parked group to find every event published since it was created',
        () => [...before, ...acknowledged, ...after].every((id) => parkedGot.has(id)),
        20_000,
      )
    },
  )
})
