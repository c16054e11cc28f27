import { randomUUID } from 'node:crypto'
import type { OmnibusEvent, Subscription } from '@omnibus/core'
import type { RedisBackend } from '@omnibus/redis'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, restartHint, serviceEndpoint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

describeWithService('redis', 'redis delayed delivery (sorted set moved into the streams)', () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const restart = serviceRestart('redis')
  const opened: RedisBackend[] = []

  async function backend(): Promise<RedisBackend> {
    const b = makeBackend()
    opened.push(b)
    await b.connect()
    return b
  }

  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
  })

  const names = () => {
    const run = randomUUID().slice(0, 8)
    return { topic: `delay.r${run}`, group: `g${run}` }
  }

  it('a waiting delayed event is in no stream and pending nowhere; an undelayed one published after it goes first (concurrency 1)', async () => {
    const { topic, group } = names()
    const b = await backend()
    const seen: { data: string; at: number; attempt: number; deliverAt: number | undefined }[] = []
    await b.subscribe(
      topic,
      (e: OmnibusEvent, ctx) =>
        void seen.push({
          data: String(e.data),
          at: Date.now(),
          attempt: ctx.attempt,
          deliverAt: e.deliverAt,
        }),
      { group, concurrency: 1 },
    )
    await b.publish({ topic, data: 'delayed', delayMs: 1_000 })
    await b.publish({ topic, data: 'now' })
    await eventually('the undelayed event', () => seen.length === 1)
    const c = b.commandClient()
    const stream = `${IT_PREFIX}stream:${topic}`
    // Only the undelayed event is in the stream; the group holds nothing for the delayed one.
    expect(await c.xlen(stream)).toBe(1)
    const [pendingCount] = (await c.call('XPENDING', stream, group)) as [number]
    expect(Number(pendingCount)).toBe(0)
    const waiting = (await c.hvals(`${IT_PREFIX}delayed:events`)).filter((v) => v.startsWith(`${topic}\n`))
    expect(waiting).toHaveLength(1)
    await eventually('the delayed event', () => seen.length === 2)
    expect(seen.map((s) => s.data)).toEqual(['now', 'delayed'])
    const d = seen[1] as (typeof seen)[number]
    expect(d.at).toBeGreaterThanOrEqual(d.deliverAt as number)
    expect(d.at - (d.deliverAt as number)).toBeLessThan(1_000)
    expect(d.attempt).toBe(1)
    expect(await c.xlen(stream)).toBe(2)
  })

  it('movers in four instances at once append each of 300 due events to the stream exactly once', async () => {
    const { topic, group } = names()
    const counts = new Map<string, number>()
    const subs: Subscription[] = []
    for (let i = 0; i < 4; i++) {
      const b = await backend()
      subs.push(
        await b.subscribe(
          topic,
          (e) => void counts.set(String(e.data), (counts.get(String(e.data)) ?? 0) + 1),
          {
            group,
            concurrency: 16,
          },
        ),
      )
    }
    const publisher = await backend()
    const deliverAt = Date.now() + 800
    const receipt = await publisher.publishBatch(
      Array.from({ length: 300 }, (_, i) => ({ topic, data: `e${i}`, deliverAt })),
    )
    expect(receipt.failed).toBe(0)
    await eventually('every delayed event', () => counts.size === 300)
    // Give a duplicate time to show.
    await new Promise((r) => setTimeout(r, 500))
    expect([...counts.values()].every((n) => n === 1)).toBe(true)
    expect(await publisher.commandClient().xlen(`${IT_PREFIX}stream:${topic}`)).toBe(300)
  })

  it('a delayed event published while its only consumer is away is delivered once when a member returns', async () => {
    const { topic, group } = names()
    const first = await backend()
    const early: string[] = []
    const sub = await first.subscribe(topic, (e) => void early.push(String(e.data)), { group })
    await first.publish({ topic, data: 'x', delayMs: 600 })
    await sub.unsubscribe()
    await first.disconnect()
    // Past its time with no process running the mover: it waits in the sorted set.
    await new Promise((r) => setTimeout(r, 900))
    const got: string[] = []
    const a = await backend()
    await a.subscribe(topic, (e) => void got.push(String(e.data)), { group })
    await eventually('the delayed event', () => got.length === 1)
    await new Promise((r) => setTimeout(r, 300))
    expect(got).toEqual(['x'])
    expect(early).toEqual([])
  })

  it.skipIf(restart === undefined)(
    `a delayed event survives a restart of the server${restart === undefined ? ` (skipped: ${restartHint('redis')})` : ''}`,
    async () => {
      const { topic, group } = names()
      const b = await backend()
      const got: string[] = []
      await b.subscribe(topic, (e) => void got.push(String(e.data)), { group })
      await b.publish({ topic, data: 'kept', delayMs: 2_500 })
      await (restart as () => Promise<void>)()
      await eventually('the delayed event after the restart', () => got.length === 1, 20_000)
      await new Promise((r) => setTimeout(r, 300))
      expect(got).toEqual(['kept'])
    },
    40_000,
  )
})
