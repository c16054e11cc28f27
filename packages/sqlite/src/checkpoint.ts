/**
 * WAL checkpoints in a worker thread. A checkpoint copies the WAL into the database file and
 * fsyncs it; run by `wal_autocheckpoint` it stalls the commit that crosses the threshold, which
 * shows as tens of ms of publish or delivery latency. The worker has its own connection and runs
 * passive checkpoints (which never block readers or writers) on a timer.
 */
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

// Plain CommonJS so the worker needs neither the TypeScript sources nor a build.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.file, { timeout: workerData.busyTimeoutMs })
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
setInterval(() => {
  try { checkpoint.get() } catch (error) { if (error.code !== 'SQLITE_BUSY') throw error }
}, workerData.intervalMs)
`

/** Starts the checkpoint worker for `file`; `terminate()` it on disconnect. */
export function startCheckpointWorker(file: string, busyTimeoutMs: number, intervalMs: number): Worker {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3')
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver, file, busyTimeoutMs, intervalMs },
  })
  worker.unref()
  return worker
}
