/**
 * Consume throughput of one group subscription against raw better-sqlite3, measured in the same run.
 *   node --conditions=@omnibus/source packages/sqlite/bench/consume.ts [events=20000] [concurrency=1,64] [rounds=3]
 * Each round fills a fresh file with `events` Omnibus envelopes (raw INSERTs of encoded events,
 * not timed), then:
 * - baseline: a loop over raw better-sqlite3 that reads the oldest `concurrency` rows, parses each
 *   body with JSON.parse, calls the handler, and deletes those rows in one transaction, until the
 *   table is empty (the least a durable queue on one SQLite file does per event);
 * - backend: subscribes in a group from `earliest` with `concurrency` and a plain synchronous
 *   handler, from subscribe until the last event has been handled; the acks of the last events
 *   are then written by the disconnect.
 * Both report events/s (wall) and the process's CPU time per event. The machine is shared, so the
 * phases alternate over `rounds` rounds; each line shows the best round and the median ratio of
 * each round's backend to its own baseline.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEvent } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import Database from 'better-sqlite3'
import { createSqliteBackend, SCHEMA_SQL } from '../src/index.ts'

const total = Number(process.argv[2] ?? 20_000)
const concurrencies = (process.argv[3] ?? '1,64').split(',').map(Number)
const rounds = Number(process.argv[4] ?? 3)
const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-consume-'))
const topic = 'bench.consume'
const rows = Array.from({ length: total }, (_, i) => {
  const e = createEvent({ topic, data: { user: 'u-42', action: 'click', n: i, tags: ['a', 'b'] } })
  return [e.id, e.topic, null, e.time, encodeEvent(e)] as const
})

let sink = 0
function handler(data: unknown): void {
  sink += (data as { n: number }).n
}

function fill(file: string): void {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec(SCHEMA_SQL)
  const insert = db.prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, ?, ?, ?)')
  db.transaction(() => {
    for (const r of rows) insert.run(r[0], r[1], r[2], r[3], r[4])
  })()
  db.close()
}

interface Timing {
  readonly ms: number
  readonly cpuUs: number
}

function baseline(file: string, batch: number): Timing {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  const read = db.prepare('SELECT seq, body FROM omnibus_events ORDER BY seq LIMIT ?')
  const del = db.prepare('DELETE FROM omnibus_events WHERE seq = ?')
  const ack = db.transaction((seqs: number[]) => {
    for (const s of seqs) del.run(s)
  })
  const cpu = process.cpuUsage()
  const started = performance.now()
  let handled = 0
  for (;;) {
    const got = read.all(batch) as { seq: number; body: string }[]
    if (got.length === 0) break
    const seqs: number[] = []
    for (const r of got) {
      handler((JSON.parse(r.body) as { data: unknown }).data)
      seqs.push(r.seq)
    }
    ack(seqs)
    handled += got.length
  }
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)
  db.close()
  if (handled !== total) throw new Error(`baseline handled ${handled} of ${total}`)
  return { ms, cpuUs: used.user + used.system }
}

async function backendRun(file: string, concurrency: number): Promise<Timing> {
  const backend = createSqliteBackend({ path: file })
  await backend.connect()
  let handled = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  const cpu = process.cpuUsage()
  const started = performance.now()
  await backend.subscribe(
    topic,
    (event) => {
      handler(event.data)
      if (++handled === total) done()
    },
    { group: 'bench', from: 'earliest', concurrency },
  )
  await all
  const ms = performance.now() - started
  const used = process.cpuUsage(cpu)
  await backend.disconnect()
  return { ms, cpuUs: used.user + used.system }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const perSec = (t: Timing) => Math.round((total / t.ms) * 1000)
const cpuPerEvent = (t: Timing) => (t.cpuUs / total).toFixed(2)

console.log(`events=${total} rounds=${rounds} node=${process.version}`)
for (const concurrency of concurrencies) {
  const base: Timing[] = []
  const ours: Timing[] = []
  for (let r = 0; r < rounds; r++) {
    const a = join(dir, `base-${concurrency}-${r}.db`)
    const b = join(dir, `backend-${concurrency}-${r}.db`)
    fill(a)
    fill(b)
    base.push(baseline(a, concurrency))
    ours.push(await backendRun(b, concurrency))
  }
  const best = (ts: Timing[]) => ts.reduce((x, y) => (y.ms < x.ms ? y : x))
  const ratio = median(ours.map((t, i) => (base[i] as Timing).ms / t.ms))
  const cpuRatio = median(ours.map((t, i) => (base[i] as Timing).cpuUs / t.cpuUs))
  const bb = best(base)
  const bo = best(ours)
  console.log(
    `concurrency ${concurrency}: raw read+delete ${perSec(bb)} ev/s (${cpuPerEvent(bb)} µs CPU/ev) | ` +
      `backend ${perSec(bo)} ev/s (${cpuPerEvent(bo)} µs CPU/ev) | backend/raw wall ${ratio.toFixed(2)}, by CPU ${cpuRatio.toFixed(2)}`,
  )
}
rmSync(dir, { recursive: true, force: true })
if (sink === 0) console.log('')
