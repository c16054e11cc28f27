/**
 * Publish throughput against raw better-sqlite3, measured in the same run:
 * - baseline: prepared INSERTs of the same encoded rows, `batch` rows per transaction, WAL mode,
 *   synchronous=NORMAL (the backend's default);
 * - concurrent: `batch` (then 10 × `batch`) publishes issued at once, awaited, repeated (group
 *   commit: one transaction per tick); also with `publishOnIoThread: true` (batches committed by
 *   the I/O thread while this one encodes), for comparison;
 * - sequential: one awaited publish after another.
 * The machine is shared, so the phases are interleaved over `rounds` rounds, each on fresh files;
 * throughput is the best round, the ratio is each round against its own baseline (median shown).
 * Run: node --conditions=@omnibus/source packages/sqlite/bench/publish.ts [events=100000] [batch=1000] [rounds=3]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEvent, type EventInput } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import Database from 'better-sqlite3'
import { createSqliteBackend, SCHEMA_SQL } from '../src/index.ts'

const total = Number(process.argv[2] ?? 100_000)
const batch = Number(process.argv[3] ?? 1000)
const rounds = Number(process.argv[4] ?? 3)
const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-bench-'))
const data = { user: 'u-42', action: 'click', n: 7, tags: ['a', 'b'] }

// The same inputs for every phase, built before any clock starts.
const inputs: EventInput[] = Array.from({ length: total }, (_, i) => ({
  topic: 'bench.click',
  data: { ...data, n: i },
}))
// Baseline rows: what the backend writes for those inputs, encoded up front so only inserts are timed.
const rows = inputs.map((input) => {
  const e = createEvent(input)
  return [e.id, e.topic, null, e.time, encodeEvent(e)] as const
})

function baseline(file: string): number {
  const raw = new Database(file)
  raw.pragma('journal_mode = WAL')
  raw.pragma('synchronous = NORMAL')
  raw.exec(SCHEMA_SQL)
  const insert = raw.prepare(
    'INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, ?, ?, ?)',
  )
  const insertBatch = raw.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const r = rows[i] as (typeof rows)[number]
      insert.run(r[0], r[1], r[2], r[3], r[4])
    }
  })
  const started = performance.now()
  for (let i = 0; i < total; i += batch) insertBatch(i, Math.min(total, i + batch))
  const ms = performance.now() - started
  raw.close()
  return ms
}

// The floor for sequential publishes: one autocommit INSERT per row, each a commit of its own.
function rawSequential(file: string, count: number): number {
  const raw = new Database(file)
  raw.pragma('journal_mode = WAL')
  raw.pragma('synchronous = NORMAL')
  raw.exec(SCHEMA_SQL)
  const insert = raw.prepare(
    'INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, ?, ?, ?)',
  )
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const r = rows[i] as (typeof rows)[number]
    insert.run(r[0], r[1], r[2], r[3], r[4])
  }
  const ms = performance.now() - started
  raw.close()
  return ms
}

async function concurrent(file: string, inFlight: number, publishOnIoThread: boolean): Promise<number> {
  const backend = createSqliteBackend({ path: file, publishOnIoThread })
  await backend.connect()
  const started = performance.now()
  for (let i = 0; i < total; i += inFlight) {
    const pending = []
    for (let j = i; j < Math.min(total, i + inFlight); j++)
      pending.push(backend.publish(inputs[j] as EventInput))
    await Promise.all(pending)
  }
  const ms = performance.now() - started
  await backend.disconnect()
  return ms
}

async function sequential(file: string, count: number): Promise<number> {
  const backend = createSqliteBackend({ path: file })
  await backend.connect()
  const started = performance.now()
  for (let i = 0; i < count; i++) await backend.publish(inputs[i] as EventInput)
  const ms = performance.now() - started
  await backend.disconnect()
  return ms
}

const sequentialCount = Math.min(total, 50_000)
const times = {
  baseline: [] as number[],
  c1: [] as number[],
  c10: [] as number[],
  c1Thread: [] as number[],
  c10Thread: [] as number[],
  seq: [] as number[],
  rawSeq: [] as number[],
}
for (let r = 0; r < rounds; r++) {
  times.baseline.push(baseline(join(dir, `raw-${r}.db`)))
  times.c1.push(await concurrent(join(dir, `c1-${r}.db`), batch, false))
  times.c10.push(await concurrent(join(dir, `c10-${r}.db`), batch * 10, false))
  times.c1Thread.push(await concurrent(join(dir, `c1t-${r}.db`), batch, true))
  times.c10Thread.push(await concurrent(join(dir, `c10t-${r}.db`), batch * 10, true))
  times.rawSeq.push(rawSequential(join(dir, `rawseq-${r}.db`), sequentialCount))
  times.seq.push(await sequential(join(dir, `seq-${r}.db`), sequentialCount))
}
rmSync(dir, { recursive: true, force: true })

const perSec = (n: number, ms: number) => Math.round((n / ms) * 1000)
const fmt = (n: number) => n.toLocaleString('en-US').padStart(9)
const best = (xs: number[]) => Math.min(...xs)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const all = (n: number, xs: number[]) => xs.map((ms) => perSec(n, ms).toLocaleString('en-US')).join(', ')
// Each round's phase against the same round's baseline: load changes between rounds cancel out.
const ratios = (xs: number[]) => xs.map((ms, r) => (times.baseline[r] as number) / ms)
const base = perSec(total, best(times.baseline))
console.log(
  `events=${total}, baseline transactions of ${batch} rows, WAL, synchronous=NORMAL; ${rounds} interleaved rounds`,
)
console.log(
  `baseline raw better-sqlite3 batched inserts: ${fmt(base)}/s best   (rounds: ${all(total, times.baseline)})`,
)
for (const [label, xs] of [
  [`concurrent publishes, ${batch} in flight:`, times.c1],
  [`concurrent publishes, ${batch * 10} in flight:`, times.c10],
  [`  publishOnIoThread, ${batch} in flight:`, times.c1Thread],
  [`  publishOnIoThread, ${batch * 10} in flight:`, times.c10Thread],
] as const) {
  const r = ratios(xs)
  console.log(
    `${label.padEnd(44)} ${fmt(perSec(total, best(xs)))}/s best; ${(median(r) * 100).toFixed(0)}% of the same round's baseline (median; rounds ${r.map((x) => `${(x * 100).toFixed(0)}%`).join(', ')}), target >= 60%`,
  )
}
const seqRatios = times.seq.map((ms, r) => (times.rawSeq[r] as number) / ms)
console.log(
  `${'raw single-row commits (autocommit):'.padEnd(44)} ${fmt(perSec(sequentialCount, best(times.rawSeq)))}/s best   (rounds: ${all(sequentialCount, times.rawSeq)})`,
)
console.log(
  `${'sequential awaited publishes:'.padEnd(44)} ${fmt(perSec(sequentialCount, best(times.seq)))}/s best, target >= 50,000/s; ${(median(seqRatios) * 100).toFixed(0)}% of the same round's raw commits (median)   (rounds: ${all(sequentialCount, times.seq)})`,
)
