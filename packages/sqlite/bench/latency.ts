/**
 * Cross-process publish → handler latency: this process publishes, a second `node` process
 * (this same file with `consume`) handles the events through a consumer group on the same file
 * and reports each latency (handler start minus publish call, both on the shared wall clock).
 * Baseline from the same run: the same measurement with the consumer in this process.
 * Run: node --conditions=@omnibus/source packages/sqlite/bench/latency.ts [events=2000] [gapMs=2]
 */
import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSqliteBackend } from '../src/index.ts'

const now = () => performance.timeOrigin + performance.now()

if (process.argv[2] === 'consume') {
  const path = process.argv[3] as string
  const expected = Number(process.argv[4])
  const backend = createSqliteBackend({ path })
  await backend.connect()
  const latencies: number[] = []
  await backend.subscribe(
    'bench.latency',
    (event) => {
      latencies.push(now() - (event.data as { at: number }).at)
      if (latencies.length === expected) {
        process.send?.({ latencies })
        void backend.disconnect().then(() => process.exit(0))
      }
    },
    { group: 'latency' },
  )
  process.send?.({ ready: true })
} else {
  const total = Number(process.argv[2] ?? 2000)
  const gapMs = Number(process.argv[3] ?? 2)
  const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-latency-'))

  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b)
    return (s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number).toFixed(2)
  }
  const publishAll = async (backend: ReturnType<typeof createSqliteBackend>) => {
    for (let i = 0; i < total; i++) {
      await backend.publish({ topic: 'bench.latency', data: { i, at: now() } })
      await new Promise((r) => setTimeout(r, gapMs))
    }
  }

  // Baseline: consumer in this process (in-process wake-up, no data_version poll).
  const local = createSqliteBackend({ path: join(dir, 'local.db') })
  await local.connect()
  const localLat: number[] = []
  let done: () => void = () => {}
  const allLocal = new Promise<void>((r) => {
    done = r
  })
  await local.subscribe(
    'bench.latency',
    (event) => {
      localLat.push(now() - (event.data as { at: number }).at)
      if (localLat.length === total) done()
    },
    { group: 'latency' },
  )
  await publishAll(local)
  await allLocal
  await local.disconnect()

  const path = join(dir, 'shared.db')
  const producer = createSqliteBackend({ path })
  await producer.connect()
  const child = fork(fileURLToPath(import.meta.url), ['consume', path, String(total)], {
    execArgv: ['--conditions=@omnibus/source'],
  })
  const result = new Promise<number[]>((resolve, reject) => {
    child.on('message', (m: { latencies?: number[] }) => {
      if (m.latencies !== undefined) resolve(m.latencies)
    })
    child.on('exit', (code) => reject(new Error(`consumer exited with ${code}`)))
  })
  await new Promise<void>((resolve) => child.once('message', () => resolve()))
  await publishAll(producer)
  const remote = await result
  await producer.disconnect()
  rmSync(dir, { recursive: true, force: true })

  console.error(
    remote
      .map((l, i) => [i, Math.round(l)])
      .filter((x) => (x[1] as number) > 10)
      .slice(0, 40)
      .join(' '),
  )
  console.log(`events=${total}, one every ${gapMs} ms, consumer group, default pollIntervalMs (2 ms)`)
  console.log(`baseline same process: p50 ${pct(localLat, 50)} ms  p99 ${pct(localLat, 99)} ms`)
  console.log(
    `cross-process:         p50 ${pct(remote, 50)} ms  p99 ${pct(remote, 99)} ms  (targets p50 < 5 ms, p99 < 25 ms)`,
  )
}
