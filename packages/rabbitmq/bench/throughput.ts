/**
 * Throughput and latency of the RabbitMQ backend against raw amqplib doing the same work on the
 * same broker, in the same run:
 * - publish: persistent messages of the same size into a quorum queue, and to a routing key with
 *   no queue, confirms windowed (raw: at most `WINDOW` unconfirmed, a CloudEvents JSON document
 *   serialised per message as a raw producer would; backend: many concurrent `publish()` calls,
 *   its own window). The unbound case also prints raw publishing one prepared buffer, which shows
 *   what the per-event envelope encoding costs;
 * - consume+ack: a prefilled quorum queue drained with the same prefetch (raw: ack per message;
 *   backend: a group subscription with `concurrency` = prefetch and a no-op handler);
 * - publish → handler latency, one event at a time, p50/p99 (backend and raw).
 *
 * Run: node --conditions=@omnibus/source packages/rabbitmq/bench/throughput.ts
 * Env: OMNIBUS_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672), BENCH_N (default 5000),
 * BENCH_ROUNDS (default 5). Raw and backend runs alternate; the ratio reported is the median of the
 * per-round ratios, which keeps a noisy shared machine from deciding the result.
 */
import { randomUUID } from 'node:crypto'
import { createEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import amqp from 'amqplib'
import { createRabbitMQBackend, groupQueueName } from '../src/index.ts'

const url = process.env.OMNIBUS_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const N = Number(process.env.BENCH_N ?? 5000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const WINDOW = 1000
const PREFETCH = 100
const LATENCY_N = 2000
const run = `bench${Date.now().toString(36)}`
const topic = `bench.${run}.evt`
const payload = { user: 'u-123', action: 'tool.start', args: { path: '/tmp/x', n: 42 }, tags: ['a', 'b'] }
const sampleBody = Buffer.from(encodeEvent(createEvent({ topic, data: payload, source: 'bench' })))

const conn = await amqp.connect(url, { noDelay: true })
const admin = await conn.createChannel()
await admin.assertExchange('omnibus.events', 'topic', { durable: true })

async function sinkQueue(name: string): Promise<void> {
  await admin.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
  await admin.bindQueue(name, 'omnibus.events', topic)
  await admin.purgeQueue(name)
}

function rate(n: number, ms: number): number {
  return Math.round((n / ms) * 1000)
}

/**
 * What a producer on raw amqplib does per event: build the CloudEvents document and serialise it
 * (fresh id and time each time), as the backend does through the core codec.
 */
function rawDocument(routingKey: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      specversion: '1.0',
      id: randomUUID(),
      source: 'bench',
      type: routingKey,
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      guarantee: 'at-least-once',
      data: payload,
    }),
  )
}

/** `serialise`: a fresh document per message (the same work); otherwise one prepared buffer. */
async function rawPublish(n: number, routingKey = topic, serialise = true): Promise<number> {
  const ch = await conn.createConfirmChannel()
  let inflight = 0
  let sent = 0
  let confirmed = 0
  const t0 = performance.now()
  await new Promise<void>((resolve, reject) => {
    const pump = (): void => {
      while (inflight < WINDOW && sent < n) {
        inflight++
        sent++
        ch.publish(
          'omnibus.events',
          routingKey,
          serialise ? rawDocument(routingKey) : sampleBody,
          { persistent: true, contentType: 'application/cloudevents+json', messageId: `raw-${sent}` },
          (err) => {
            if (err) return reject(err)
            inflight--
            if (++confirmed === n) resolve()
            else pump()
          },
        )
      }
    }
    pump()
  })
  const ms = performance.now() - t0
  await ch.close()
  return rate(n, ms)
}

async function backendPublish(n: number, routingTopic = topic): Promise<number> {
  const b = createRabbitMQBackend({ url, publishWindow: WINDOW })
  await b.connect()
  // Callers keep publishing as confirms come back, like the raw loop: 2 × WINDOW calls
  // outstanding, the backend's own window (WINDOW) decides what is on the wire.
  const t0 = performance.now()
  let started = 0
  const worker = async (): Promise<void> => {
    while (started < n) {
      started++
      await b.publish({ topic: routingTopic, data: payload, source: 'bench' })
    }
  }
  await Promise.all(Array.from({ length: 2 * WINDOW }, worker))
  const ms = performance.now() - t0
  await b.disconnect()
  return rate(n, ms)
}

async function prefill(queue: string, n: number): Promise<void> {
  const ch = await conn.createConfirmChannel()
  for (let i = 0; i < n; i++) {
    const body = Buffer.from(encodeEvent(createEvent({ topic, data: payload, source: 'bench' })))
    if (!ch.sendToQueue(queue, body, { persistent: true })) await new Promise((r) => ch.once('drain', r))
  }
  await ch.waitForConfirms()
  await ch.close()
}

async function rawConsume(queue: string, n: number): Promise<number> {
  const ch = await conn.createChannel()
  await ch.prefetch(PREFETCH)
  let got = 0
  const t0 = performance.now()
  let tag = ''
  await new Promise<void>((resolve) => {
    ch.consume(queue, (msg) => {
      if (msg === null) return
      JSON.parse(msg.content.toString('utf8'))
      ch.ack(msg)
      if (++got === n) resolve()
    }).then((r) => {
      tag = r.consumerTag
    })
  })
  const ms = performance.now() - t0
  await ch.cancel(tag)
  await ch.close()
  return rate(n, ms)
}

async function backendConsume(group: string, n: number): Promise<number> {
  const b = createRabbitMQBackend({ url })
  await b.connect()
  let got = 0
  let t0 = 0
  let done: () => void = () => {}
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  t0 = performance.now()
  const sub = await b.subscribe(
    topic,
    () => {
      if (++got === n) done()
    },
    { group, concurrency: PREFETCH },
  )
  await finished
  const ms = performance.now() - t0
  await sub.unsubscribe()
  await b.disconnect()
  return rate(n, ms)
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN
}

async function backendLatency(n: number): Promise<{ p50: number; p99: number }> {
  const b = createRabbitMQBackend({ url })
  await b.connect()
  const lat: number[] = []
  let resolveOne: () => void = () => {}
  await b.subscribe(`bench.${run}.lat`, (e) => {
    lat.push(performance.now() - (e.data as { t: number }).t)
    resolveOne()
  })
  for (let i = 0; i < n; i++) {
    const got = new Promise<void>((r) => {
      resolveOne = r
    })
    await b.publish({ topic: `bench.${run}.lat`, data: { t: performance.now() } })
    await got
  }
  await b.disconnect()
  lat.sort((a, b2) => a - b2)
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) }
}

async function rawLatency(n: number): Promise<{ p50: number; p99: number }> {
  const pub = await conn.createConfirmChannel()
  const sub = await conn.createChannel()
  const q = await sub.assertQueue('', { exclusive: true, autoDelete: true })
  await sub.bindQueue(q.queue, 'omnibus.events', `bench.${run}.rawlat`)
  const lat: number[] = []
  let resolveOne: () => void = () => {}
  await sub.consume(q.queue, (msg) => {
    if (msg === null) return
    lat.push(performance.now() - JSON.parse(msg.content.toString()).t)
    sub.ack(msg)
    resolveOne()
  })
  for (let i = 0; i < n; i++) {
    const got = new Promise<void>((r) => {
      resolveOne = r
    })
    const body = Buffer.from(JSON.stringify({ t: performance.now() }))
    await new Promise<void>((resolve, reject) =>
      pub.publish('omnibus.events', `bench.${run}.rawlat`, body, { persistent: true }, (err) =>
        err ? reject(err) : resolve(),
      ),
    )
    await got
  }
  await pub.close()
  await sub.close()
  lat.sort((a, b2) => a - b2)
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) }
}

const sink = `omnibus.bench.${run}.sink`
await sinkQueue(sink)
// Warm-up: connection set-up, JIT, queue leader.
await rawPublish(2000)
await backendPublish(2000)
await admin.purgeQueue(sink)

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

function report(title: string, raw: number[], ours: number[]): void {
  const ratios = raw.map((r, i) => (ours[i] as number) / r)
  console.log(title)
  console.log(`  raw amqplib   median ${median(raw)} msg/s   (rounds: ${raw.join(', ')})`)
  console.log(`  backend       median ${median(ours)} msg/s   (rounds: ${ours.join(', ')})`)
  console.log(
    `  ratio         ${(median(ratios) * 100).toFixed(1)}% (median of per-round ratios: ${ratios.map((r) => `${(r * 100).toFixed(0)}%`).join(', ')})`,
  )
}

const pubRaw: number[] = []
const pubOurs: number[] = []
// Which side goes first alternates, so a slow moment of the shared machine does not always hit
// the same side.
async function pair(
  raw: () => Promise<number>,
  ours: () => Promise<number>,
  round: number,
  into: [number[], number[]],
) {
  if (round % 2 === 0) {
    into[0].push(await raw())
    into[1].push(await ours())
  } else {
    into[1].push(await ours())
    into[0].push(await raw())
  }
}

for (let round = 0; round < ROUNDS; round++) {
  await pair(
    async () => {
      const r = await rawPublish(N)
      await admin.purgeQueue(sink)
      return r
    },
    async () => {
      const r = await backendPublish(N)
      await admin.purgeQueue(sink)
      return r
    },
    round,
    [pubRaw, pubOurs],
  )
}
await admin.deleteQueue(sink)
report(
  `publish into a quorum queue (persistent, confirms, window ${WINDOW}, ${N} events per round)`,
  pubRaw,
  pubOurs,
)

// The same with no queue bound: the broker only routes and confirms, so the client's own cost
// weighs more and disk noise less.
const unbound = `bench.${run}.unbound`
const freeRaw: number[] = []
const freePre: number[] = []
const freeOurs: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  await pair(
    () => rawPublish(N, unbound),
    () => backendPublish(N, unbound),
    round,
    [freeRaw, freeOurs],
  )
  freePre.push(await rawPublish(N, unbound, false))
}
report(`publish, no queue bound (confirms, window ${WINDOW}, ${N} events per round)`, freeRaw, freeOurs)
{
  const ratios = freePre.map((r, i) => (freeOurs[i] as number) / r)
  console.log(
    `  raw, one prepared buffer for every message (no per-event encoding): median ${median(freePre)} msg/s; ` +
      `backend/that ${(median(ratios) * 100).toFixed(1)}%`,
  )
}

// Consume: the raw consumer drains a quorum queue; the backend drains its group queue.
const rawQueue = `omnibus.bench.${run}.raw`
await admin.assertQueue(rawQueue, { durable: true, arguments: { 'x-queue-type': 'quorum' } })
const group = `bench-${run}`
const groupQueue = groupQueueName('omnibus', group, topic)
{
  // Declare the group queue through the backend so its arguments match.
  const b = createRabbitMQBackend({ url })
  await b.connect()
  await (await b.subscribe(topic, () => {}, { group })).unsubscribe()
  await b.disconnect()
  await admin.unbindQueue(groupQueue, 'omnibus.events', topic)
}
const consRaw: number[] = []
const consOurs: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  await prefill(rawQueue, N)
  await prefill(groupQueue, N)
  await pair(
    () => rawConsume(rawQueue, N),
    () => backendConsume(group, N),
    round,
    [consRaw, consOurs],
  )
}
await admin.deleteQueue(rawQueue)
await admin.deleteQueue(groupQueue)
report(`consume+ack (quorum queue, prefetch ${PREFETCH}, ${N} events per round)`, consRaw, consOurs)

const ours = await backendLatency(LATENCY_N)
const raw = await rawLatency(LATENCY_N)
console.log(`publish → handler latency (one at a time, ${LATENCY_N} events, broadcast queue)`)
console.log(`  backend       p50 ${ours.p50.toFixed(2)} ms   p99 ${ours.p99.toFixed(2)} ms`)
console.log(`  raw amqplib   p50 ${raw.p50.toFixed(2)} ms   p99 ${raw.p99.toFixed(2)} ms`)

await admin.close()
await conn.close()
