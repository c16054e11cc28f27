/**
 * Publish throughput against raw better-sqlite3 in the same run:
 * - baseline: prepared INSERTs of the same encoded rows, `batch` rows per transaction, WAL mode;
 * - concurrent: `batch` (then 10 × `batch`) publishes issued at once, awaited, repeated; one
 *   group-commit transaction per tick, at most 256 events each when the I/O thread writes;
 * - sequential: one awaited publish after another.
 * Run: node --conditions=@omnibus/source packages/sqlite/bench/publish.ts [events=200000] [batch=1000]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEvent, type EventInput, encodeEvent } from '@omnibus/core'
import Database from 'better-sqlite3'
import { createSqliteBackend, SCHEMA_SQL } from '../src/index.ts'

const total = Number(process.argv[2] ?? 200_000)
const batch = Number(process.argv[3] ?? 1000)
const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-bench-'))
const data = { user: 'u-42', action: 'click', n: 7, tags: ['a', 'b'] }

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`
}

// Baseline: the rows our publish writes, encoded up front so only the inserts are timed.
const rows = Array.from({ length: total }, (_, i) => {
  const e = createEvent({ topic: 'bench.click', data: { ...data, n: i } })
  return [e.id, e.topic, null, e.time, encodeEvent(e)] as const
})
const raw = new Database(join(dir, 'raw.db'))
raw.pragma('journal_mode = WAL')
raw.pragma('synchronous = NORMAL')
raw.exec(SCHEMA_SQL)
const insert = raw.prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, ?, ?, ?)')
const insertBatch = raw.transaction((from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const r = rows[i] as (typeof rows)[number]
    insert.run(r[0], r[1], r[2], r[3], r[4])
  }
})
let t = performance.now()
for (let i = 0; i < total; i += batch) insertBatch(i, Math.min(total, i + batch))
const rawMs = performance.now() - t
raw.close()

// The same inputs as the baseline's rows, built before the clock starts like them.
const inputs: EventInput[] = Array.from({ length: total }, (_, i) => ({
  topic: 'bench.click',
  data: { ...data, n: i },
}))
const backend = createSqliteBackend({ path: join(dir, 'omnibus.db') })
await backend.connect()

// `inFlight` publishes issued at once, all awaited, repeated: the group commit path.
async function concurrent(inFlight: number): Promise<number> {
  const started = performance.now()
  for (let i = 0; i < total; i += inFlight) {
    const pending = []
    for (let j = i; j < Math.min(total, i + inFlight); j++)
      pending.push(backend.publish(inputs[j] as EventInput))
    await Promise.all(pending)
  }
  return performance.now() - started
}
const waves = [batch, batch * 10]
const concurrentMs: number[] = []
for (const w of waves) concurrentMs.push(await concurrent(w))

const sequentialCount = Math.min(total, 100_000)
t = performance.now()
for (let i = 0; i < sequentialCount; i++) await backend.publish(inputs[i] as EventInput)
const sequentialMs = performance.now() - t
await backend.disconnect()
rmSync(dir, { recursive: true, force: true })

console.log(
  `events=${total}, baseline transactions of ${batch} rows (WAL, synchronous=NORMAL, one file per run)`,
)
console.log(`baseline raw better-sqlite3 batched inserts:      ${rate(total, rawMs)}`)
waves.forEach((w, i) => {
  const ms = concurrentMs[i] as number
  console.log(
    `concurrent publishes, ${String(w).padStart(6)} in flight:       ${rate(total, ms)}  = ${((rawMs / ms) * 100).toFixed(0)}% of baseline (target >= 60%)`,
  )
})
console.log(
  `sequential awaited publishes:                     ${rate(sequentialCount, sequentialMs)}  (target >= 50,000/s)`,
)
