/**
 * Redis backend against raw ioredis doing the same work, in the same run, on the same server:
 * - publish: `backend.publish` (N concurrent calls per window) and `publishBatch` vs one ioredis
 *   pipeline of `XADD` per window, with the very same envelope JSON pre-encoded for the raw side;
 * - consume: a group subscription with a no-op handler vs a loop of `XREADGROUP COUNT <batch>`
 *   + one `XACK` per batch over the same pre-filled stream;
 * - latency: publish → handler on a live group subscription, one event at a time, p50/p99.
 *
 *   node --conditions=@omnibus/source packages/redis/bench/throughput.ts [events] [url]
 *
 * Each contender runs BENCH_ROUNDS times (default 3), alternating, and keeps its best round, so
 * one noisy moment on a shared machine does not decide the ratio. Next to the wall-clock ratio the
 * bench prints CPU per event (this process, and the Redis server from INFO cpu) and the ratio of
 * events per CPU-second, which stays meaningful when other work competes for the cores. For
 * consume it also prints that ratio round by round (median and range): each round measures the
 * sides one right after the other, so their ratio is the steadiest figure. The backend connects
 * before its clock starts, as the raw client did.
 */
import { randomUUID } from 'node:crypto'
import { createEvent, type Logger } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { Redis } from 'ioredis'
import { createRedisBackend, type RedisBackend } from '../src/index.ts'

const TOTAL = Number(process.argv[2] ?? 20_000)
const URL_ = process.argv[3] ?? process.env.OMNIBUS_REDIS_URL ?? 'redis://127.0.0.1:6379'
const WINDOW = 1_000
const BATCH = 100
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const PREFIX = `omnibus-bench:${randomUUID().slice(0, 8)}:`
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} }

const raw = new Redis(URL_)
const payload = (n: number) => ({ n, text: 'lorem ipsum dolor sit amet '.repeat(4), tags: ['a', 'b'] })

function perSec(count: number, ms: number): number {
  return Math.round((count / ms) * 1000)
}

function fmt(n: number): string {
  return n.toLocaleString('en-US')
}

/** One contender: best wall time over the rounds, and CPU per event (client and server) of that round. */
interface Side {
  readonly label: string
  bestMs: number
  clientUs: number
  serverUs: number
  /** CPU per event (client + server) of every round, in round order. */
  readonly roundsUs: number[]
}

function side(label: string): Side {
  return { label, bestMs: Number.POSITIVE_INFINITY, clientUs: 0, serverUs: 0, roundsUs: [] }
}

/**
 * The ratio of events per CPU-second, `s` to `baseline`, round by round (the two measured one
 * right after the other, so the machine's load weighs on both alike): median and range.
 */
function pairedByCpu(s: Side, baseline: Side): string {
  const ratios = s.roundsUs.map((us, i) => (baseline.roundsUs[i] as number) / us).sort((a, b) => a - b)
  const median = ratios[Math.floor(ratios.length / 2)] as number
  return `${median.toFixed(2)} (${(ratios[0] as number).toFixed(2)}–${(ratios[ratios.length - 1] as number).toFixed(2)})`
}

async function serverCpuSeconds(): Promise<number> {
  const info = await raw.info('cpu')
  const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0)
  const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0)
  return user + sys
}

/** Runs `fn` (which returns its own wall time) and keeps the round if it is the fastest so far. */
async function measure(s: Side, fn: () => Promise<number>): Promise<void> {
  const server0 = await serverCpuSeconds()
  const cpu0 = process.cpuUsage()
  const ms = await fn()
  const cpu = process.cpuUsage(cpu0)
  const server = (await serverCpuSeconds()) - server0
  s.roundsUs.push((cpu.user + cpu.system + server * 1e6) / TOTAL)
  if (ms < s.bestMs) {
    s.bestMs = ms
    s.clientUs = (cpu.user + cpu.system) / TOTAL
    s.serverUs = (server * 1e6) / TOTAL
  }
}

function line(s: Side, baseline?: Side, strict?: Side): string {
  const rate = perSec(TOTAL, s.bestMs)
  let out = `  ${s.label.padEnd(34)} ${fmt(rate).padStart(9)} ev/s   cpu/event client ${s.clientUs.toFixed(1)} µs, redis ${s.serverUs.toFixed(1)} µs`
  if (baseline !== undefined) out += `   ratio ${(baseline.bestMs / s.bestMs).toFixed(2)}`
  if (strict !== undefined) out += ` (strict ${(strict.bestMs / s.bestMs).toFixed(2)})`
  // Events per CPU-second (client + server) do not depend on how much of the machine others use.
  if (baseline !== undefined) {
    const cpu = (x: Side) => x.clientUs + x.serverUs
    out += `   by cpu ${(cpu(baseline) / cpu(s)).toFixed(2)}`
    if (strict !== undefined) out += ` (strict ${(cpu(strict) / cpu(s)).toFixed(2)})`
  }
  return out
}

async function newBackend(): Promise<RedisBackend> {
  const b = createRedisBackend({ url: URL_, keyPrefix: PREFIX, logger: silent, batchSize: BATCH })
  await b.connect()
  return b
}

/**
 * Raw baseline. `docs` given: XADD of the very envelope JSON the backend writes, encoded before the
 * clock starts (the strictest baseline). `docs` absent: what an application using ioredis directly
 * does with the same payload, `XADD key * data JSON.stringify(payload)`.
 */
async function rawPublish(topic: string, docs: string[] | undefined): Promise<number> {
  const key = `${PREFIX}stream:${topic}`
  const t0 = performance.now()
  for (let i = 0; i < TOTAL; i += WINDOW) {
    const p = raw.pipeline()
    for (let j = i; j < Math.min(i + WINDOW, TOTAL); j++) {
      if (docs === undefined) p.xadd(key, '*', 'data', JSON.stringify(payload(j)))
      else p.xadd(key, '*', 'event', docs[j] as string)
    }
    await p.exec()
  }
  return performance.now() - t0
}

async function omnibusPublish(b: RedisBackend, topic: string, batch: boolean): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < TOTAL; i += WINDOW) {
    const inputs = Array.from({ length: Math.min(WINDOW, TOTAL - i) }, (_, k) => ({
      topic,
      data: payload(i + k),
    }))
    if (batch) {
      const r = await b.publishBatch(inputs)
      if (r.failed > 0) throw new Error(`${r.failed} publishes failed`)
    } else {
      await Promise.all(inputs.map((e) => b.publish(e)))
    }
  }
  return performance.now() - t0
}

async function benchPublish(): Promise<number> {
  const b = await newBackend()
  const docs = Array.from({ length: TOTAL }, (_, n) =>
    encodeEvent(createEvent({ topic: 'bench.pub.raw', data: payload(n) })),
  )
  const strict = side('raw XADD, pre-encoded envelopes')
  const app = side('raw XADD, JSON.stringify(data)')
  const one = side('backend.publish (concurrent)')
  const many = side('backend.publishBatch')
  for (let round = 0; round < ROUNDS; round++) {
    await measure(strict, () => rawPublish(`bench.pub.raw${round}`, docs))
    await measure(app, () => rawPublish(`bench.pub.app${round}`, undefined))
    await measure(one, () => omnibusPublish(b, `bench.pub.one${round}`, false))
    await measure(many, () => omnibusPublish(b, `bench.pub.batch${round}`, true))
  }
  await b.disconnect()
  console.log(
    `publish, ${fmt(TOTAL)} events (envelope ${docs[0]?.length} bytes), windows of ${WINDOW}, best of ${ROUNDS}`,
  )
  console.log(`${line(strict)}   (strict baseline)`)
  console.log(`${line(app)}   (baseline)`)
  console.log(line(one, app, strict))
  console.log(line(many, app, strict))
  return app.bestMs / one.bestMs
}

async function fill(key: string): Promise<void> {
  const docs = Array.from({ length: TOTAL }, (_, n) =>
    encodeEvent(createEvent({ topic: 'bench.consume', data: payload(n) })),
  )
  for (let i = 0; i < docs.length; i += WINDOW) {
    const p = raw.pipeline()
    for (let j = i; j < Math.min(i + WINDOW, docs.length); j++) p.xadd(key, '*', 'event', docs[j] as string)
    await p.exec()
  }
}

async function rawConsume(key: string, parse: boolean): Promise<number> {
  const group = `raw${parse ? 'p' : ''}`
  await raw.xgroup('CREATE', key, group, '0')
  const t0 = performance.now()
  let seen = 0
  while (seen < TOTAL) {
    const reply = (await raw.call('XREADGROUP', 'GROUP', group, 'c1', 'COUNT', BATCH, 'STREAMS', key, '>')) as
      | [string, [string, string[]][]][]
      | null
    const entries = reply?.[0]?.[1] ?? []
    if (entries.length === 0) throw new Error('stream ran dry before every entry was read')
    const ids: string[] = []
    for (const [id, fields] of entries) {
      if (parse) JSON.parse(fields[1] as string)
      ids.push(id)
    }
    await raw.xack(key, group, ...ids)
    seen += entries.length
  }
  return performance.now() - t0
}

/** Subscribes a new group to the filled stream until it handled every entry (connected before, as the raw side is). */
async function omnibusConsume(b: RedisBackend, topic: string, round: number): Promise<number> {
  let seen = 0
  let resolveDone: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve
  })
  const t0 = performance.now()
  const sub = await b.subscribe(
    topic,
    () => {
      if (++seen === TOTAL) resolveDone()
    },
    { group: `omnibus${round}`, from: 'earliest' },
  )
  await done
  const ms = performance.now() - t0
  await sub.unsubscribe()
  return ms
}

async function pendingOf(key: string, group: string): Promise<number> {
  const summary = (await raw.xpending(key, group)) as [number, ...unknown[]]
  return Number(summary[0])
}

async function benchConsume(): Promise<number> {
  const topic = 'bench.consume'
  const key = `${PREFIX}stream:${topic}`
  await fill(key)
  const rawSide = side('raw XREADGROUP + XACK loop')
  const parseSide = side('raw loop + JSON.parse')
  const omni = side('backend group subscription')
  for (let round = 0; round < ROUNDS; round++) {
    await raw.xgroup('DESTROY', key, 'raw').catch(() => {})
    await raw.xgroup('DESTROY', key, 'rawp').catch(() => {})
    await measure(rawSide, () => rawConsume(key, false))
    await measure(parseSide, () => rawConsume(key, true))
    const b = await newBackend()
    await measure(omni, () => omnibusConsume(b, topic, round))
    await b.disconnect()
    // The backend acknowledged everything it handled (acks are flushed before unsubscribe resolves).
    const left = await pendingOf(key, `omnibus${round}`)
    if (left !== 0) throw new Error(`${left} entries left unacknowledged by the backend`)
  }
  console.log(`consume + ack, ${fmt(TOTAL)} entries, batch ${BATCH}, best of ${ROUNDS}`)
  console.log(`${line(rawSide)}   (strict baseline)`)
  console.log(`${line(parseSide)}   (baseline)`)
  console.log(line(omni, parseSide, rawSide))
  console.log(
    `  per-round ratio by cpu, median (range) over ${ROUNDS} rounds: ${pairedByCpu(omni, parseSide)} (strict ${pairedByCpu(omni, rawSide)})`,
  )
  return parseSide.bestMs / omni.bestMs
}

async function benchLatency(): Promise<void> {
  const pub = await newBackend()
  const sub = await newBackend()
  const samples: number[] = []
  let pending: ((at: number) => void) | undefined
  const topic = 'bench.latency'
  const s = await sub.subscribe(
    topic,
    () => {
      pending?.(performance.now())
    },
    { group: 'lat' },
  )
  const count = Math.min(2_000, TOTAL)
  for (let i = 0; i < count + 100; i++) {
    const arrived = new Promise<number>((resolve) => {
      pending = resolve
    })
    const t0 = performance.now()
    await pub.publish({ topic, data: payload(i) })
    const t1 = await arrived
    if (i >= 100) samples.push(t1 - t0)
  }
  await s.unsubscribe()
  await pub.disconnect()
  await sub.disconnect()
  samples.sort((a, b) => a - b)
  const q = (p: number) =>
    (samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] as number).toFixed(2)
  console.log(`latency publish → handler, ${fmt(count)} events one at a time (after 100 warm-up)`)
  console.log(`  p50 ${q(0.5)} ms   p99 ${q(0.99)} ms   max ${q(1)} ms`)
}

async function cleanup(): Promise<void> {
  let cursor = '0'
  do {
    const [next, found] = await raw.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000)
    cursor = next
    if (found.length > 0) await raw.del(...found)
  } while (cursor !== '0')
}

try {
  const which = process.env.BENCH ?? 'all'
  const ratios: string[] = []
  if (which === 'all' || which === 'publish') ratios.push(`publish ${(await benchPublish()).toFixed(2)}`)
  if (which === 'all' || which === 'consume') ratios.push(`consume ${(await benchConsume()).toFixed(2)}`)
  if (which === 'all' || which === 'latency') await benchLatency()
  console.log(`ratios vs raw ioredis (target >= 0.80): ${ratios.join(', ')}`)
} finally {
  await cleanup()
  raw.disconnect()
}
