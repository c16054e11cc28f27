import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { type EventBackend, isRetryable, type Subscription } from '@omnibus/core'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, restartHint, serviceEndpoint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

/** An idle TCP connection to the server of `url`; `closed` settles when the server drops it. */
async function idleConnection(url: string): Promise<{ closed: Promise<void> }> {
  const { hostname, port } = new URL(url)
  const socket = connect({ host: hostname, port: Number(port || 6379) })
  await once(socket, 'connect')
  socket.unref()
  socket.on('error', () => {})
  return { closed: once(socket, 'close').then(() => undefined) }
}

describeWithService('redis', 'redis fault tests', () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const restart = serviceRestart('redis')
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []

  async function backend(): Promise<EventBackend> {
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    return b
  }

  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
  })

  it.skipIf(restart === undefined)(
    `broker restart in the middle of 10,000 events: every acknowledged publish is received${restart === undefined ? ` (skipped: ${restartHint('redis')})` : ''}`,
    async () => {
      const run = randomUUID().slice(0, 8)
      const topic = `fault.restart.r${run}`
      const group = `g${run}`
      const publisher = await backend()
      const received = new Set<string>()
      const subs: Subscription[] = []
      for (let i = 0; i < 2; i++) {
        const consumer = await backend()
        subs.push(
          await consumer.subscribe(topic, (e) => void received.add(e.id), {
            group,
            guarantee: 'at-least-once',
            concurrency: 8,
            visibilityTimeoutMs: 3_000,
          }),
        )
      }
      const acknowledged = new Set<string>()
      let rejected = 0
      let nonRetryable = 0
      let restarted: Promise<void> | undefined
      let publishedWhileDown = 0
      const total = 10_000
      const window = 100
      for (let start = 0; start < total; start += window) {
        const batch = Array.from({ length: Math.min(window, total - start) }, (_, k) => ({
          topic,
          id: `${run}-${start + k}`,
          data: { n: start + k },
        }))
        const results = await Promise.allSettled(batch.map((e) => publisher.publish(e)))
        for (const r of results) {
          if (r.status === 'fulfilled') acknowledged.add(r.value.id)
          else {
            rejected++
            if (!isRetryable(r.reason)) {
              nonRetryable++
              if (nonRetryable === 1) console.error(r.reason)
            }
          }
        }
        if (restarted === undefined && acknowledged.size >= 3_000) {
          // Publish the rest once the broker is really down. A health-check poll can miss a
          // restart this quick (a PING in flight is resent after the reconnect and succeeds), so
          // an idle connection of its own tells when the server closed its clients.
          const watcher = await idleConnection(serviceEndpoint('redis') as string)
          restarted = (restart as () => Promise<void>)()
          let timer: NodeJS.Timeout | undefined
          await Promise.race([
            watcher.closed,
            restarted.then(() => {
              throw new Error('the restart command finished but the server never closed its connections')
            }),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error('the broker never went down within 30 s of the restart')),
                30_000,
              )
            }),
          ]).finally(() => clearTimeout(timer))
          publishedWhileDown = total - start - window
        }
      }
      await restarted
      expect(nonRetryable, 'publish failures during the restart must be retryable').toBe(0)
      expect(publishedWhileDown, 'events published after the broker went down').toBeGreaterThan(1_000)
      expect(acknowledged.size).toBeGreaterThan(total / 2)
      await eventually(
        'every acknowledged event',
        () => [...acknowledged].every((id) => received.has(id)),
        60_000,
      )
      const health = await publisher.healthCheck()
      expect(health.healthy).toBe(true)
      console.info(
        `restart run: ${publishedWhileDown} published from the outage on, ${acknowledged.size} acknowledged, ${rejected} rejected (retryable), all received`,
      )
    },
    180_000,
  )

  it.skipIf(restart === undefined)(
    `a health check in flight while the server restarts reports the outage${restart === undefined ? ` (skipped: ${restartHint('redis')})` : ''}`,
    async () => {
      const b = await backend()
      const samples: Array<{ healthy: boolean; detail: string }> = []
      let polling = true
      // Back to back, so a PING is almost always in flight when the server goes away; ioredis
      // resends it after the reconnect, and it must not then count as healthy.
      const poll = (async () => {
        while (polling) {
          const h = await b.healthCheck()
          samples.push({ healthy: h.healthy, detail: h.detail ?? '' })
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      await (restart as () => Promise<void>)()
      const firstDown = () => samples.findIndex((s) => !s.healthy)
      try {
        await eventually('a health check to see the restart', () => firstDown() >= 0, 5_000)
        // The polling checks themselves must come back up: a check in flight across the reconnect
        // reports the outage, and the ones after it report health again.
        await eventually(
          'a health check after the outage to report healthy',
          () => firstDown() >= 0 && samples.slice(firstDown()).some((s) => s.healthy),
          30_000,
        )
      } finally {
        polling = false
        await poll
      }
      expect(samples[firstDown()]?.detail, 'the outage is explained').not.toBe('')
    },
    60_000,
  )

  it('consumers replaced in a chain of batches (group declared first) lose nothing', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `fault.chain.r${run}`
    const group = `g${run}`
    const publisher = await backend()
    const handled = new Set<string>()
    const handler = async (e: { id: string }) => {
      await new Promise((resolve) => setTimeout(resolve, 2))
      handled.add(e.id)
    }
    // Declare the group, then leave: from here on it holds events for its next member.
    const first = await backend()
    await (await first.subscribe(topic, handler, { group, visibilityTimeoutMs: 2_000 })).unsubscribe()
    await first.disconnect()
    const all: string[] = []
    for (let k = 0; k < 4; k++) {
      for (let i = 0; i < 10; i++)
        all.push((await publisher.publish({ topic, data: { k, i, gap: true } })).id)
      const b = await backend()
      const before = handled.size
      await b.subscribe(topic, handler, { group, visibilityTimeoutMs: 2_000 })
      for (let i = 0; i < 15; i++) all.push((await publisher.publish({ topic, data: { k, i } })).id)
      await eventually(`consumer ${k + 1} to handle 5 events`, () => handled.size >= before + 5, 10_000)
      await b.disconnect({ drainTimeoutMs: 1_000 })
    }
    const last = await backend()
    await last.subscribe(topic, handler, { group, visibilityTimeoutMs: 2_000 })
    await eventually('every event of the chain', () => all.every((id) => handled.has(id)), 15_000)
  }, 60_000)

  it('attempts survive crashes: an entry left unacknowledged maxAttempts times is dead-lettered without running', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `fault.poison.r${run}`
    const dlq = `fault.poison.dlq.r${run}`
    const group = `g${run}`
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    const raw = b.commandClient()
    const key = `${IT_PREFIX}stream:${topic}`
    await raw.xgroup('CREATE', key, group, '0', 'MKSTREAM')
    const { id } = await b.publish({ topic, data: { poison: true } })
    // Three consumers took the entry and died before acknowledging (delivery count 3), and the
    // last one's lease ran out long ago.
    await raw.call('XREADGROUP', 'GROUP', group, 'ghost', 'COUNT', 1, 'STREAMS', key, '>')
    await raw.call(
      'XCLAIM',
      key,
      group,
      'ghost',
      0,
      (await raw.xrange(key, '-', '+'))[0]?.[0] as string,
      'RETRYCOUNT',
      3,
      'IDLE',
      60_000,
    )
    const handled: string[] = []
    const dead: { reason: string | undefined; attempts: string | undefined; original: string | undefined }[] =
      []
    await b.subscribe(dlq, (e) => {
      dead.push({
        reason: e.headers['omnibus-dlq-reason'],
        attempts: e.headers['omnibus-dlq-attempts'],
        original: e.headers['omnibus-dlq-original-id'],
      })
    })
    await b.subscribe(topic, (e) => void handled.push(e.id), {
      group,
      retry: { maxAttempts: 3 },
      deadLetter: dlq,
      visibilityTimeoutMs: 500,
    })
    await eventually('the dead letter', () => dead.length > 0, 10_000)
    expect(handled).toEqual([])
    expect(dead[0]?.original).toBe(id)
    expect(dead[0]?.attempts).toBe('3')
    // This delivery is the fourth: three ended without a settle.
    expect(dead[0]?.reason).toMatch(/delivered 4 times without being settled, more than maxAttempts \(3\)/)
    // The dead-lettered entry is acknowledged: nothing stays pending in the group.
    const deadline = Date.now() + 5_000
    let pending = -1
    while (pending !== 0 && Date.now() < deadline) {
      pending = Number(((await raw.xpending(key, group)) as [number, ...unknown[]])[0])
      if (pending !== 0) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(pending).toBe(0)
  }, 30_000)

  it('a reclaimed entry continues the attempt count of the member that died with it', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `fault.attempt.r${run}`
    const group = `g${run}`
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    const raw = b.commandClient()
    const key = `${IT_PREFIX}stream:${topic}`
    await raw.xgroup('CREATE', key, group, '0', 'MKSTREAM')
    await b.publish({ topic, data: { n: 1 } })
    // One member ran attempt 1, failed, started attempt 2 (RETRYCOUNT 2) and died.
    await raw.call('XREADGROUP', 'GROUP', group, 'ghost', 'COUNT', 1, 'STREAMS', key, '>')
    const entryId = (await raw.xrange(key, '-', '+'))[0]?.[0] as string
    await raw.call('XCLAIM', key, group, 'ghost', 0, entryId, 'RETRYCOUNT', 2, 'IDLE', 60_000)
    const attempts: number[] = []
    await b.subscribe(
      topic,
      (_e, ctx) => {
        attempts.push(ctx.attempt)
        if (ctx.attempt < 4) throw new Error('not yet')
      },
      { group, retry: { maxAttempts: 5, initialDelayMs: 10 }, visibilityTimeoutMs: 500 },
    )
    await eventually('attempt 4 to succeed', () => attempts.includes(4), 10_000)
    expect(attempts).toEqual([3, 4])
  }, 30_000)

  it('a consumer process killed mid-handler: another process gets its events', async () => {
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
      { env: { ...process.env }, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    children.push(child)
    const childHandling = new Set<string>()
    let childReady = false
    let buffered = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        if (line === 'ready') childReady = true
        else if (line.startsWith('handling ')) childHandling.add(line.slice('handling '.length))
      }
    })
    await eventually('the child consumer to subscribe', () => childReady, 20_000)

    const survivor = await backend()
    const received = new Set<string>()
    await survivor.subscribe(topic, (e) => void received.add(e.id), {
      group,
      visibilityTimeoutMs: visibilityMs,
      concurrency: 4,
    })
    const publisher = await backend()
    const ids: string[] = []
    for (let i = 0; i < 50; i++) ids.push((await publisher.publish({ topic, data: { i } })).id)

    await eventually('the child to start handling events', () => childHandling.size > 0, 10_000)
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    const taken = [...childHandling]
    expect(taken.some((id) => !received.has(id))).toBe(true)
    await eventually(
      "the killed process's events at the survivor",
      () => ids.every((id) => received.has(id)),
      visibilityMs + 15_000,
    )
    for (const id of taken) expect(received.has(id)).toBe(true)
  }, 60_000)

  // Copies of one id in consecutive stream entries reach the same member back to back: the second
  // asks for the processed-id lock before the first one's "done" record is written.
  it.each([1, 8])(
    'copies of an id published back to back run the handler once on one member (concurrency %i)',
    async (concurrency) => {
      const run = randomUUID().slice(0, 8)
      const topic = `eo.dup.r${run}`
      const publisher = await backend()
      const consumer = await backend()
      const effects = new Map<string, number>()
      let deliveries = 0
      await consumer.subscribe(
        topic,
        (e) => {
          effects.set(e.id, (effects.get(e.id) ?? 0) + 1)
        },
        { group: `g${run}`, guarantee: 'exactly-once', concurrency },
      )
      const ids = Array.from({ length: 50 }, (_, i) => `${run}-${i}`)
      const copies = 4
      for (const id of ids) {
        const batch = await publisher.publishBatch(
          Array.from({ length: copies }, () => ({
            topic,
            id,
            data: { id },
            guarantee: 'exactly-once' as const,
          })),
        )
        expect(batch.failed).toBe(0)
      }
      const fence = await publisher.publish({ topic, data: { fence: true }, guarantee: 'exactly-once' })
      await eventually('the fence event', () => effects.has(fence.id), 20_000)
      // A copy that found the id busy looks again after at most 1 s and then finds it done:
      // give those re-checks time to run (and to show a second effect, were there one).
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      for (const id of ids) {
        deliveries += effects.get(id) ?? 0
        expect(effects.get(id), `handler runs for ${id}`).toBe(1)
      }
      expect(deliveries).toBe(ids.length)
    },
    60_000,
  )
})
