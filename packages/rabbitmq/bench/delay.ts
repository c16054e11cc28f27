/**
 * Precision of delayed delivery on RabbitMQ: how late a delayed event reaches its handler
 * (handler start − `deliverAt`), p50/p99/max, for
 * - schedule: `publish({ delayMs })`, held by the broker in the schedule's levels;
 * - kernel hold: the same envelopes written straight to the topic exchange (as a producer that
 *   knows the envelope but not the schedule would), so the consumer kernel holds each one through
 *   a retry copy in the delay queue of its bucket.
 * Delays are spread uniformly over [`BENCH_MIN_MS`, `BENCH_MAX_MS`] and published in random order,
 * the two ways alternating round by round on the same broker.
 *
 * Run: node --conditions=@omnibus/source packages/rabbitmq/bench/delay.ts
 * Env: OMNIBUS_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672), BENCH_N (events per round,
 * default 200), BENCH_ROUNDS (default 3), BENCH_MIN_MS (default 500), BENCH_MAX_MS (default 5000).
 */
import { randomUUID } from 'node:crypto'
import { createEvent, type OmnibusEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import amqp from 'amqplib'
import { createRabbitMQBackend } from '../src/index.ts'

const url = process.env.OMNIBUS_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const N = Number(process.env.BENCH_N ?? 200)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const MIN_MS = Number(process.env.BENCH_MIN_MS ?? 500)
const MAX_MS = Number(process.env.BENCH_MAX_MS ?? 5000)

const backend = createRabbitMQBackend({ url, groupQueueExpiresMs: 600_000 })
await backend.connect()
const raw = await amqp.connect(url, { noDelay: true })
const ch = await raw.createConfirmChannel()

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

async function round(way: 'schedule' | 'kernel hold'): Promise<number[]> {
  const run = randomUUID().slice(0, 8)
  const topic = `bench.delay.${run}`
  const lateness: number[] = []
  let early = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  const sub = await backend.subscribe(
    topic,
    (event: OmnibusEvent) => {
      const late = Date.now() - (event.deliverAt as number)
      if (late < 0) early++
      lateness.push(late)
      if (lateness.length === N) done()
    },
    { group: `bench-${run}`, concurrency: 32 },
  )
  const delays = Array.from({ length: N }, () => MIN_MS + Math.random() * (MAX_MS - MIN_MS))
  for (const delayMs of delays) {
    if (way === 'schedule') await backend.publish({ topic, data: null, delayMs })
    else {
      const body = Buffer.from(encodeEvent(createEvent({ topic, data: null, delayMs })))
      ch.publish('omnibus.events', topic, body, {
        persistent: true,
        contentType: 'application/cloudevents+json',
      })
    }
  }
  if (way === 'kernel hold') await ch.waitForConfirms()
  await all
  await sub.unsubscribe()
  if (early > 0) console.log(`  ${early} events reached their handler before deliverAt`)
  return lateness.sort((a, b) => a - b)
}

console.log(
  `delayed delivery on RabbitMQ: ${N} events per round, delays ${MIN_MS}-${MAX_MS} ms, ${ROUNDS} rounds`,
)
for (let r = 1; r <= ROUNDS; r++) {
  for (const way of ['schedule', 'kernel hold'] as const) {
    const l = await round(way)
    console.log(
      `round ${r} ${way.padEnd(11)} lateness ms: p50 ${percentile(l, 50)}  p99 ${percentile(l, 99)}  max ${l.at(-1)}`,
    )
  }
}
await ch.close()
await raw.close()
await backend.disconnect()
