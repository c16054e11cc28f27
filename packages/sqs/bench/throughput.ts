/**
 * Throughput and latency of the SQS backend against raw @aws-sdk/client-sqs on the same server,
 * in the same run. Each side runs ROUNDS times, alternating and flipping the order every round,
 * so the load of a shared machine weighs on both alike:
 *   - publish: N concurrent `publish()` calls (coalesced into SendMessageBatch) vs raw
 *     SendMessageBatch of 10 with the same number of batches (16) in flight, bodies built in the loop;
 *   - consume: a subscription (concurrency 10) draining N/2 queued events vs a raw
 *     ReceiveMessage(10) + DeleteMessageBatch loop (one poller each);
 *   - latency: publish → handler, one event at a time, p50/p99.
 *
 *   node --conditions=@omnibus/source packages/sqs/bench/throughput.ts
 * Env: OMNIBUS_SQS_ENDPOINT (default http://127.0.0.1:9324), BENCH_N (default 2000),
 * BENCH_LATENCY_N (default 200).
 */
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
} from '@aws-sdk/client-sqs'
import { createEvent, silentLogger } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { createSqsBackend } from '../src/index.ts'

const endpoint = process.env.OMNIBUS_SQS_ENDPOINT ?? 'http://127.0.0.1:9324'
const N = Number(process.env.BENCH_N ?? 2000)
const LATENCY_N = Number(process.env.BENCH_LATENCY_N ?? 200)
const BATCHES_IN_FLIGHT = 16
const ROUNDS = 4
const prefix = `bench${Math.random().toString(36).slice(2, 7)}`
const credentials = { accessKeyId: 'bench', secretAccessKey: 'bench' }

const raw = new SQSClient({ endpoint, region: 'us-east-1', credentials })
const backendOptions = {
  endpoint,
  queuePrefix: prefix,
  discoveryIntervalMs: 1000,
  waitTimeSeconds: 2,
  logger: silentLogger,
} as const

const payload = (i: number) => ({ i, name: `event ${i}`, tags: ['a', 'b', 'c'], value: i * 1.5 })
/** A body the size of an encoded Omnibus envelope, so both sides move the same bytes. */
const rawBody = (i: number) => encodeEvent(createEvent({ topic: 'bench.raw', data: payload(i) }))

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')} msg/s`
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

async function rawQueue(name: string): Promise<string> {
  const res = await raw.send(new CreateQueueCommand({ QueueName: `${prefix}-raw-${name}` }))
  return res.QueueUrl as string
}

async function rawPublish(url: string, n: number): Promise<number> {
  const started = performance.now()
  let next = 0
  async function worker(): Promise<void> {
    while (next < n) {
      const start = next
      next += 10
      const entries = []
      // Bodies are built inside the timed loop: a raw producer serialises its messages too.
      for (let i = start; i < Math.min(n, start + 10); i++) {
        entries.push({ Id: String(i - start), MessageBody: rawBody(i) })
      }
      const res = await raw.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }))
      if ((res.Failed ?? []).length > 0) throw new Error(`raw send failed: ${res.Failed?.[0]?.Message}`)
    }
  }
  await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, () => worker()))
  return performance.now() - started
}

async function rawConsume(url: string, n: number): Promise<number> {
  const started = performance.now()
  let got = 0
  while (got < n) {
    const res = await raw.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 2,
        VisibilityTimeout: 30,
      }),
    )
    const messages = res.Messages ?? []
    if (messages.length === 0) continue
    got += messages.length
    await raw.send(
      new DeleteMessageBatchCommand({
        QueueUrl: url,
        Entries: messages.map((m, k) => ({ Id: String(k), ReceiptHandle: m.ReceiptHandle as string })),
      }),
    )
  }
  return performance.now() - started
}

async function main(): Promise<void> {
  console.log(`SQS bench against ${endpoint}: N=${N}, ${BATCHES_IN_FLIGHT} batches of 10 in flight`)

  // Publish: raw and Omnibus alternate, ROUNDS each, so load changes on the machine hit both.
  const rawUrl = await rawQueue('pub')
  const backend = createSqsBackend(backendOptions)
  await backend.connect()
  const topic = 'bench.publish'
  // A durable group queue to publish into, with no consumer attached while publishing.
  const holder = await backend.subscribe(topic, () => {}, { group: 'bench-pub' })
  await holder.unsubscribe()
  await backend.publish({ topic, data: payload(-1) })
  async function omniPublish(n: number): Promise<number> {
    const t0 = performance.now()
    let sent = 0
    async function publisher(): Promise<void> {
      while (sent < n) {
        const i = sent++
        await backend.publish({ topic, data: payload(i) })
      }
    }
    await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT * 10 }, () => publisher()))
    return performance.now() - t0
  }
  let rawPub = 0
  let omni = 0
  for (let r = 0; r < ROUNDS; r++) {
    // The order flips every round so neither side always runs on the fuller queue.
    if (r % 2 === 0) {
      rawPub += await rawPublish(rawUrl, N)
      omni += await omniPublish(N)
    } else {
      omni += await omniPublish(N)
      rawPub += await rawPublish(rawUrl, N)
    }
  }
  console.log(
    `publish  raw SendMessageBatch: ${rate(N * ROUNDS, rawPub)}  omnibus publish(): ${rate(N * ROUNDS, omni)}  ratio ${((rawPub / omni) * 100).toFixed(0)}%`,
  )

  // Consume: both queues now hold N * ROUNDS; each round drains N / 2 from each, alternating.
  const perRound = Math.floor(N / 2)
  const consumer = createSqsBackend(backendOptions)
  await consumer.connect()
  async function omniConsume(n: number): Promise<number> {
    let handled = 0
    let finish: () => void = () => {}
    const finished = new Promise<void>((resolve) => {
      finish = resolve
    })
    const t0 = performance.now()
    const sub = await consumer.subscribe(
      topic,
      () => {
        if (++handled === n) finish()
      },
      { group: 'bench-pub', concurrency: 10 },
    )
    await finished
    const ms = performance.now() - t0
    await sub.unsubscribe()
    return ms
  }
  let rawCons = 0
  let omniCons = 0
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      rawCons += await rawConsume(rawUrl, perRound)
      omniCons += await omniConsume(perRound)
    } else {
      omniCons += await omniConsume(perRound)
      rawCons += await rawConsume(rawUrl, perRound)
    }
  }
  const consumed = perRound * ROUNDS
  console.log(
    `consume  raw Receive+DeleteBatch: ${rate(consumed, rawCons)}  omnibus subscribe(): ${rate(consumed, omniCons)}  ratio ${((rawCons / omniCons) * 100).toFixed(0)}%`,
  )
  await consumer.disconnect()

  // Latency: one event at a time through a broadcast subscription.
  const samples: number[] = []
  let waiting: ((t: number) => void) | undefined
  const latTopic = 'bench.latency'
  const sub = await backend.subscribe(latTopic, () => waiting?.(performance.now()))
  for (let i = 0; i < LATENCY_N + 10; i++) {
    const arrived = new Promise<number>((resolve) => {
      waiting = resolve
    })
    const t = performance.now()
    await backend.publish({ topic: latTopic, data: { i } })
    const at = await arrived
    if (i >= 10) samples.push(at - t)
  }
  samples.sort((a, b) => a - b)
  console.log(
    `latency  publish→handler over ${LATENCY_N}: p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms`,
  )
  await sub.unsubscribe()
  await raw.send(new DeleteQueueCommand({ QueueUrl: rawUrl }))
  raw.destroy()
  await backend.deleteAllQueues()
  await backend.disconnect()
}

await main()
