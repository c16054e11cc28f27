/**
 * The I/O worker: a thread with its own connection to the database file that
 * - writes large publish batches, so encoding the next events on the main thread overlaps with
 *   inserting the previous ones (group commit stays one transaction per batch);
 * - runs WAL checkpoints. A checkpoint copies the WAL into the database file and fsyncs it; run
 *   by `wal_autocheckpoint` it stalls the commit that crosses the threshold by tens of ms. Here it
 *   is a passive checkpoint on a timer, which never blocks readers or writers.
 */
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

/** Fields per row in a batch message: id, topic, pkey, time, body, deliver_at. */
export const ROW_FIELDS = 6

// Plain CommonJS so the worker needs neither the TypeScript sources nor a build.
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.file, { timeout: workerData.busyTimeoutMs })
db.pragma('busy_timeout = ' + workerData.busyTimeoutMs)
db.pragma('synchronous = ' + workerData.synchronous)
db.pragma('wal_autocheckpoint = 0')
const insert = db.prepare(
  'INSERT INTO omnibus_events (id, topic, pkey, time, body, deliver_at) VALUES (?, ?, ?, ?, ?, ?)',
)
const insertAll = db.transaction((rows) => {
  let first = 0
  for (let i = 0; i < rows.length; i += 6) {
    const seq = Number(
      insert.run(rows[i], rows[i + 1], rows[i + 2], rows[i + 3], rows[i + 4], rows[i + 5]).lastInsertRowid,
    )
    if (i === 0) first = seq
  }
  return first
})
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
const timer = setInterval(() => {
  try { checkpoint.get() } catch (error) { if (error.code !== 'SQLITE_BUSY') throw error }
}, workerData.checkpointIntervalMs)
timer.unref()
parentPort.on('message', (m) => {
  if (m.close === true) {
    // Ends the thread from inside, with no native call in flight: terminate() from the
    // parent can abort the whole process while the addon is loading or running.
    clearInterval(timer)
    db.close()
    parentPort.close()
    return
  }
  try {
    parentPort.postMessage({ id: m.id, first: insertAll(m.rows) })
  } catch (error) {
    parentPort.postMessage({ id: m.id, error: { code: error.code, message: String(error.message) } })
  }
})
`

/** Settings of {@link startIoWorker}. */
export interface IoWorkerConfig {
  readonly file: string
  readonly busyTimeoutMs: number
  readonly synchronous: 'NORMAL' | 'FULL'
  readonly checkpointIntervalMs: number
}

/** A reply to a batch: the `seq` of its first row (rows of one transaction are consecutive), or the error. */
export interface IoWorkerReply {
  readonly id: number
  readonly first?: number
  readonly error?: { readonly code?: string; readonly message: string }
}

/** What the backend hears from the I/O worker. */
export interface IoWorkerListeners {
  readonly reply: (reply: IoWorkerReply) => void
  readonly error: (error: Error) => void
  readonly exit: (code: number) => void
}

/**
 * Starts the I/O worker on `config.file`, with its listeners; {@link stopIoWorker} it on
 * disconnect. The thread never keeps the process alive: the backend's own hold does, while it is
 * connected.
 */
export function startIoWorker(config: IoWorkerConfig, listeners: IoWorkerListeners): Worker {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3')
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, ...config } })
  worker.on('message', listeners.reply)
  worker.on('error', listeners.error)
  worker.on('exit', listeners.exit)
  // After the listeners: adding a 'message' listener references the worker's port again, so an
  // unref() made before it would not stick.
  worker.unref()
  return worker
}

/**
 * Asks the worker to close its connection and end its thread, and waits for it to exit. Only if
 * it has not exited after `timeoutMs` is it terminated: terminating a thread while the native
 * addon is loading or inside a call can abort the process.
 */
export async function stopIoWorker(worker: Worker, timeoutMs = 10_000): Promise<void> {
  if (worker.threadId === -1) return
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
  worker.ref()
  worker.postMessage({ close: true })
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs)
  })
  const outcome = await Promise.race([exited, late])
  clearTimeout(timer)
  if (outcome === 'late') await worker.terminate()
}
