/**
 * Delayed delivery precision of any backend: how late a delayed event reaches its handler
 * (handler start − `deliverAt`, in ms), p50/p99/max, and how many ran before `deliverAt` (early:
 * must stay 0). One backend instance publishes and another consumes, in a group where the backend
 * has groups, at `--concurrency` (16) so the handler is not the queue.
 *
 * The delay mix is either a list (`250,1000,3000`: `--events` events at each delay, each delay
 * measured on its own and published at once, so the tail includes a burst that comes due
 * together) or a range (`500-5000`: `--events` delays spread uniformly over it, published in random
 * order). Each URL given is measured in turn, round by round, so backends or settings compared in
 * one run share the machine's load. Ways:
 * - `publish`: `publish({ delayMs })`, the backend's own way to hold a delayed event;
 * - `raw` (`--raw`): the same envelopes written without the backend's delay, as a producer that
 *   knows the envelope but not the backend would write them, so the consumer kernel holds each
 *   one (RabbitMQ: straight to the topic exchange; SQS: `publishRaw`, no `DelaySeconds`).
 *
 * Run from the repository root (backend packages resolve from there):
 *   node --conditions=@omnibus/source packages/conformance/bench/delay-precision.ts <url>... \
 *     [--events 200] [--delays 250,1000,3000 | 500-5000] [--rounds 1] [--concurrency 16] [--raw]
 * e.g. `… delay-precision.ts redis://127.0.0.1:6379 --delays 250,1000,3000`. Use a named bus for
 * memory (`memory://bench`), a file for SQLite (`sqlite:///tmp/bench.db`); `sqs://` without a
 * `prefix` gets a prefix of its own whose queues are deleted at the end.
 */
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { createBackend, createEvent, type EventBackend, type EventInput, silentLogger } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'

const { values, positionals: urls } = parseArgs({
  allowPositionals: true,
  options: {
    events: { type: 'string', default: '200' },
    delays: { type: 'string', default: '250,1000,3000' },
    rounds: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '16' },
    raw: { type: 'boolean', default: false },
  },
})
if (urls.length === 0) {
  console.error(
    'usage: delay-precision.ts <backend url>... [--events N] [--delays a,b,c | min-max] [--rounds R] [--concurrency C] [--raw]',
  )
  process.exit(2)
}
const N = Number(values.events)
const ROUNDS = Number(values.rounds)
const range = /^(\d+)-(\d+)$/.exec(values.delays)
/** The delays of each measurement: one group per listed delay, or one group over the range. */
function mix(): number[][] {
  if (range === null) return values.delays.split(',').map((d) => Array<number>(N).fill(Number(d)))
  const [min, max] = [Number(range[1]), Number(range[2])]
  return [Array.from({ length: N }, () => min + Math.random() * (max - min))]
}
const BATCH = 100

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Writes an envelope as it is, bypassing the backend's own delay. */
type RawWriter = (topic: string, body: string) => Promise<void>

/** What a URL needs beyond `createBackend(url)`: bench-friendly options, a raw writer, a cleanup. */
async function target(url: string): Promise<{
  pub: EventBackend
  sub: EventBackend
  raw: RawWriter | undefined
  close(): Promise<void>
}> {
  const parsed = new URL(url)
  const scheme = parsed.protocol.replace(/:$/, '')
  const extra: Record<string, unknown> = { logger: silentLogger }
  let cleanup = async (): Promise<void> => {}
  let raw: RawWriter | undefined
  if (scheme === 'sqs') {
    Object.assign(extra, { discoveryIntervalMs: 500, waitTimeSeconds: 2 })
    if (!parsed.searchParams.has('prefix')) extra.queuePrefix = `benchdelay${randomUUID().slice(0, 6)}`
  }
  // Group queues of finished runs expire instead of piling up on the broker.
  if (scheme === 'amqp' || scheme === 'amqps') extra.groupQueueExpiresMs = 600_000
  const pub = await createBackend(url, extra)
  const sub = await createBackend(url, extra)
  await Promise.all([pub.connect(), sub.connect()])
  if (scheme === 'sqs') {
    const sqs = pub as EventBackend & {
      publishRaw(topic: string, body: string): Promise<number>
      deleteAllQueues(): Promise<number>
    }
    raw = async (topic, body) => void (await sqs.publishRaw(topic, body))
    if (extra.queuePrefix !== undefined) cleanup = async () => void (await sqs.deleteAllQueues())
  }
  if (scheme === 'amqp' || scheme === 'amqps') {
    // The bench does not depend on amqplib itself: it is loaded from the backend package.
    const amqp = createRequire(new URL('../../rabbitmq/package.json', import.meta.url))('amqplib') as {
      connect(url: string): Promise<{
        createConfirmChannel(): Promise<{
          publish(exchange: string, key: string, body: Buffer, options: object): boolean
          waitForConfirms(): Promise<void>
        }>
        close(): Promise<void>
      }>
    }
    const conn = await amqp.connect(url)
    const ch = await conn.createConfirmChannel()
    raw = async (topic, body) => {
      ch.publish('omnibus.events', topic, Buffer.from(body), {
        persistent: true,
        contentType: 'application/cloudevents+json',
      })
      await ch.waitForConfirms()
    }
    cleanup = () => conn.close()
  }
  return {
    pub,
    sub,
    raw,
    async close() {
      await cleanup()
      await Promise.all([pub.disconnect({ drainTimeoutMs: 1000 }), sub.disconnect({ drainTimeoutMs: 1000 })])
    },
  }
}

/** Lateness of each event of `delays`, published the `way` way; and how many ran early. */
async function measure(
  t: Awaited<ReturnType<typeof target>>,
  way: 'publish' | 'raw',
  delays: readonly number[],
): Promise<number[]> {
  const run = randomUUID().slice(0, 8)
  const topic = `bench.delay.${run}`
  const late: number[] = []
  const seen = new Set<string>()
  let probes = 0
  const subscription = await t.sub.subscribe(
    topic,
    (event) => {
      const at = Date.now()
      if ((event.data as { probe?: boolean }).probe === true) {
        probes++
        return
      }
      if (seen.has(event.id)) return
      seen.add(event.id)
      late.push(at - (event.deliverAt ?? Number.NaN))
    },
    {
      concurrency: Number(values.concurrency),
      ...(t.sub.capabilities.groups ? { group: `bench-delay-${run}` } : {}),
    },
  )
  // Readiness: the subscription receives before anything delayed is published.
  for (let i = 0; probes === 0; i++) {
    if (i > 600) throw new Error('the subscription received no probe within a minute')
    await t.pub.publish({ topic, data: { probe: true } })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (way === 'raw') {
    const write = t.raw as RawWriter
    await Promise.all(
      delays.map((delayMs, k) => write(topic, encodeEvent(createEvent({ topic, data: { k }, delayMs })))),
    )
  } else {
    for (let i = 0; i < delays.length; i += BATCH) {
      // Where a key orders (SQS FIFO), one key per event, so no event waits behind another's delay.
      const keyed = t.pub.capabilities.orderedPerKey
      const inputs: EventInput[] = delays.slice(i, i + BATCH).map((delayMs, j) => ({
        topic,
        data: { k: i + j },
        delayMs,
        ...(keyed ? { partitionKey: `k${i + j}` } : {}),
      }))
      const r = await t.pub.publishBatch(inputs)
      if (r.failed > 0) {
        const first = r.results.find((e) => !e.ok)
        throw new Error(
          `publishBatch: ${r.failed} failed (${first !== undefined && !first.ok ? first.error.message : ''})`,
        )
      }
    }
  }
  await until(
    () => late.length >= delays.length,
    Math.max(...delays) + 60_000,
    `${delays.length} delayed events (${late.length} so far)`,
  )
  await subscription.unsubscribe()
  return late.sort((a, b) => a - b)
}

const targets = []
for (const url of urls) targets.push({ url, t: await target(url) })
const ways = values.raw ? (['publish', 'raw'] as const) : (['publish'] as const)
for (const { url, t } of targets) {
  if (values.raw && t.raw === undefined) throw new Error(`--raw: no raw writer for ${url}`)
}
console.log(
  `delayed delivery precision (${N} events per ${range === null ? 'delay' : 'round'}, delays ${values.delays} ms, ${ROUNDS} round(s); lateness = handler start - deliverAt, ms; Node ${process.version})`,
)
console.log(
  `${'round'.padEnd(6)}${'url'.padEnd(40)}${'way'.padEnd(8)}   delay ms      p50      p99      max   early`,
)
const fmt = (n: number) => n.toFixed(0).padStart(8)
try {
  for (let r = 1; r <= ROUNDS; r++) {
    for (const { url, t } of targets) {
      for (const way of ways) {
        for (const delays of mix()) {
          const sorted = await measure(t, way, delays)
          const label = range === null ? String(delays[0]) : values.delays
          console.log(
            `${String(r).padEnd(6)}${url.replace(/\/\/[^@/]*@/, '//').padEnd(40)}${way.padEnd(8)} ${label.padStart(10)} ${fmt(percentile(sorted, 50))} ${fmt(percentile(sorted, 99))} ${fmt(sorted.at(-1) ?? Number.NaN)} ${String(sorted.filter((l) => l < 0).length).padStart(7)}`,
          )
        }
      }
    }
  }
} finally {
  for (const { t } of targets) await t.close()
}
