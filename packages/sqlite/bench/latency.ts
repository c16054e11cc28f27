/**
 * Cross-process publish → handler latency: this process publishes, a second `node` process
 * (this same file with `consume`) handles the events through a consumer group on the same file
 * and reports each latency (handler start minus publish call, both on the shared wall clock).
 * Baseline from the same run: the same measurement with the consumer in this process.
 * The first `warmup` events of each run (module loading, JIT) are published but not counted.
 * Run: node --conditions=@omnibus/source packages/sqlite/bench/latency.ts [events=2000] [gapMs=2] [warmup=200]
 */
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSqliteBackend, type SqliteBackend } from '../src/index.ts'

interface Sample {
  readonly i: number
  readonly at: number
}

const now = () => performance.timeOrigin + performance.now()

/** Subscribes in group `latency`; `record(i, ms)` per event; resolves after `expected` events. */
async function consume(backend: SqliteBackend, expected: number, record: (i: number, ms: number) => void) {
  let seen = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => {
    done = resolve
  })
  await backend.subscribe(
    'bench.latency',
    (event) => {
      const d = event.data as Sample
      record(d.i, now() - d.at)
      if (++seen === expected) done()
    },
    { group: 'latency' },
  )
  // Wrapped: an async function returning the promise itself would make `await consume()` wait for all.
  return { all }
}

if (process.argv[2] === 'consume') {
  const [path, expected] = [process.argv[3] as string, Number(process.argv[4])]
  const backend = createSqliteBackend({ path })
  await backend.connect()
  const latencies: [number, number][] = []
  const { all } = await consume(backend, expected, (i, ms) => latencies.push([i, ms]))
  process.send?.({ ready: true })
  await all
  process.send?.({ latencies })
  await backend.disconnect()
  process.exit(0)
} else {
  const total = Number(process.argv[2] ?? 2000)
  const gapMs = Number(process.argv[3] ?? 2)
  const warmup = Number(process.argv[4] ?? 200)
  const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-latency-'))

  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b)
    return (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number).toFixed(2)
  }
  const counted = (pairs: [number, number][]) => pairs.filter(([i]) => i >= warmup).map(([, ms]) => ms)
  const publishAll = async (backend: SqliteBackend) => {
    for (let i = 0; i < warmup + total; i++) {
      await backend.publish({ topic: 'bench.latency', data: { i, at: now() } })
      await new Promise((r) => setTimeout(r, gapMs))
    }
  }

  // Baseline: consumer in this process (in-process wake-up, no data_version poll).
  const local = createSqliteBackend({ path: join(dir, 'local.db') })
  await local.connect()
  const localPairs: [number, number][] = []
  const { all: allLocal } = await consume(local, warmup + total, (i, ms) => localPairs.push([i, ms]))
  await publishAll(local)
  await allLocal
  await local.disconnect()

  const path = join(dir, 'shared.db')
  const producer = createSqliteBackend({ path })
  await producer.connect()
  const child = fork(fileURLToPath(import.meta.url), ['consume', path, String(warmup + total)], {
    execArgv: ['--conditions=@omnibus/source'],
  })
  const ready = new Promise<void>((resolve) => child.once('message', () => resolve()))
  const result = new Promise<[number, number][]>((resolve, reject) => {
    child.on('message', (m: { latencies?: [number, number][] }) => {
      if (m.latencies !== undefined) resolve(m.latencies)
    })
    child.on('exit', (code) => reject(new Error(`consumer exited with ${code}`)))
  })
  await ready
  await publishAll(producer)
  const remote = counted(await result)
  await producer.disconnect()
  rmSync(dir, { recursive: true, force: true })
  const localLat = counted(localPairs)

  console.log(
    `events=${total} (after ${warmup} warm-up events), one every ${gapMs} ms, consumer group, default pollIntervalMs (2 ms)`,
  )
  console.log(`baseline same process: p50 ${pct(localLat, 50)} ms  p99 ${pct(localLat, 99)} ms`)
  console.log(
    `cross-process:         p50 ${pct(remote, 50)} ms  p99 ${pct(remote, 99)} ms  max ${pct(remote, 100)} ms  (targets p50 < 5 ms, p99 < 25 ms)`,
  )
}
