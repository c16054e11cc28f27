/**
 * Publishing: appends rows to `omnibus_events` with group commit. Publishes of one tick share one
 * transaction; large batches are committed by the I/O thread (io-worker.ts), where publishes
 * issued during a commit share the next one. While another process holds the write lock, the
 * batch waits at the head of the queue (later publishes still commit after it) without blocking
 * this thread.
 */
import { randomUUID } from 'node:crypto'
import type { Worker } from 'node:worker_threads'
import {
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  ConnectionError,
  createEvent,
  type DelayCapability,
  type EventInput,
  NotConnectedError,
  type PublishReceipt,
} from '@omnibus/core'
import { checkDelay, encodeEventChecked } from '@omnibus/core/backend'
import { BACKEND, BUSY_RETRY_MS, type Connection, FAST_BUSY_RETRIES, isBusy, sleep } from './connection.ts'
import { classifyError } from './errors.ts'
import { type IoWorkerListeners, type IoWorkerReply, ROW_FIELDS } from './io-worker.ts'
import type { Committed } from './wakeup.ts'

/**
 * Delayed delivery: a delayed event's row carries `deliver_at`, and no group leases it before then
 * (see consumer.ts). The file has no limit of its own: any `deliverAt` a Date can hold.
 */
export const SQLITE_DELAY: DelayCapability = Object.freeze({ maxDelayMs: Number.MAX_SAFE_INTEGER })

/** Batches at least this large are written by the I/O thread. */
const IO_MIN_BATCH = 64
/** During a long synchronous run of publishes, a chunk this large leaves for the I/O thread at once. */
const IO_CHUNK = 256

interface PendingPublish {
  readonly id: string
  readonly topic: string
  readonly pkey: string | null
  readonly time: number
  readonly body: string | Uint8Array
  /** When a delayed event becomes readable (ms), else null. */
  readonly deliverAt: number | null
  resolve(receipt: PublishReceipt): void
  reject(error: unknown): void
}

/** The write side of one backend instance. */
export class Publisher {
  readonly #conn: Connection
  /**
   * Called after every commit with what it wrote (nothing named: anything may have been written):
   * wakes this instance's consumers and its peers on the file.
   */
  readonly #committed: (events?: Committed) => void
  #queue: PendingPublish[] = []
  #flushScheduled = false
  /** When the pending batch first found the file locked (0: it did not). */
  #busySince = 0
  #busyTimer: NodeJS.Timeout | undefined
  #busyImmediate = false
  #busyAttempts = 0
  #ioNextId = 0
  readonly #ioBatches = new Map<number, PendingPublish[]>()
  #ioIdleWaiters: (() => void)[] = []
  #insertAll: ((batch: PendingPublish[]) => number[]) | undefined

  constructor(conn: Connection, committed: (events?: Committed) => void) {
    this.#conn = conn
    this.#committed = committed
  }

  /** Prepares the batch insert on the freshly opened connection. */
  opened(): void {
    const conn = this.#conn
    const insert = conn.st.insertEvent
    this.#insertAll = conn.requireDb('publish').transaction((batch: PendingPublish[]) => {
      const seqs: number[] = new Array(batch.length)
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i] as PendingPublish
        seqs[i] = Number(insert.run(p.id, p.topic, p.pkey, p.time, p.body, p.deliverAt).lastInsertRowid)
      }
      return seqs
    })
  }

  /** The I/O thread's listeners: replies settle its batches; a failure moves publishing here. */
  ioListeners(worker: Worker): IoWorkerListeners {
    return {
      reply: (reply) => this.#settleIoBatch(reply),
      error: (error) => this.#ioFailed(worker, error),
      exit: (code) => this.#ioFailed(worker, new Error(`the I/O thread exited with code ${code}`)),
    }
  }

  publish(input: EventInput): Promise<PublishReceipt> {
    if (!this.#conn.usable) return Promise.reject(new NotConnectedError(BACKEND, 'publish'))
    let p: PendingPublish
    try {
      p = this.#prepare(input, this.#conn.o.maxPayloadBytes)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#enqueue(p)
  }

  async publishBatch(events: readonly EventInput[]): Promise<BatchReceipt> {
    if (!this.#conn.usable) throw new NotConnectedError(BACKEND, 'publishBatch')
    if (!Array.isArray(events)) {
      throw new ConfigurationError('publishBatch expects an array of events', { backend: BACKEND })
    }
    const max = this.#conn.o.maxPayloadBytes
    const settled = events.map(async (input, index): Promise<BatchEntryResult> => {
      try {
        const receipt = await this.#enqueue(this.#prepare(input, max))
        return { ok: true, index, receipt }
      } catch (error) {
        return { ok: false, index, error: error instanceof Error ? error : new Error(String(error)) }
      }
    })
    const results = await Promise.all(settled)
    let succeeded = 0
    for (const r of results) if (r.ok) succeeded++
    return { results, succeeded, failed: results.length - succeeded }
  }

  /**
   * Publishes a dead letter: like `publish`, without the payload limit (the diagnostics make a
   * letter larger than the event it carries, which was within the limit).
   */
  async publishDeadLetter(input: EventInput): Promise<void> {
    if (!this.#conn.usable) throw new NotConnectedError(BACKEND, 'publish')
    await this.#enqueue(this.#prepare(input, undefined))
    this.#conn.counters.deadLettered++
  }

  /** Writes a raw row, as a foreign producer or a damaged file would. */
  async injectRaw(topic: string, payload: Uint8Array | string): Promise<void> {
    const d = this.#conn.requireDb('injectRaw')
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new ConfigurationError('injectRaw needs the topic the row should be found under', {
        backend: BACKEND,
      })
    }
    const body =
      typeof payload === 'string'
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    await this.#conn.retryBusy('publish', () =>
      d
        .prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, NULL, ?, ?)')
        .run(`raw-${randomUUID()}`, topic, Date.now(), body),
    )
    this.#committed()
  }

  /** Commits (or, past the busy timeout, rejects) everything accepted so far. */
  async drain(): Promise<void> {
    for (;;) {
      this.flush()
      await this.#ioDrained()
      if (this.#queue.length === 0) break
      await sleep(BUSY_RETRY_MS)
    }
    if (this.#busyTimer !== undefined) clearTimeout(this.#busyTimer)
    this.#busyTimer = undefined
    this.#insertAll = undefined
  }

  #prepare(input: EventInput, maxPayloadBytes: number | undefined): PendingPublish {
    const source = this.#conn.o.source
    const event = createEvent(input, source === undefined ? {} : { source })
    checkDelay(event, SQLITE_DELAY, BACKEND)
    const { json } = encodeEventChecked(event, maxPayloadBytes, BACKEND)
    return {
      id: event.id,
      topic: event.topic,
      pkey: event.partitionKey ?? null,
      time: event.time,
      body: json,
      deliverAt: event.deliverAt ?? null,
      resolve: noop,
      reject: noop,
    }
  }

  #enqueue(p: PendingPublish): Promise<PublishReceipt> {
    return new Promise<PublishReceipt>((resolve, reject) => {
      p.resolve = resolve
      p.reject = reject
      this.#queue.push(p)
      // A long synchronous run of publishes is cut into chunks that the I/O thread writes while
      // this thread encodes the next ones.
      if (this.#queue.length >= IO_CHUNK && this.#onIoThread() !== undefined) this.flush()
      else this.#scheduleFlush()
    })
  }

  #onIoThread(): Worker | undefined {
    return this.#conn.o.publishOnIoThread ? this.#conn.ioWorker : undefined
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    queueMicrotask(() => this.flush())
  }

  flush(): void {
    this.#flushScheduled = false
    if (this.#queue.length === 0) return
    const worker = this.#onIoThread()
    // Large batches go to the I/O thread; so does anything behind a batch still there, which keeps
    // commits in publish order. Small ones are written here: a round trip would cost more.
    if (worker !== undefined && (this.#queue.length >= IO_MIN_BATCH || this.#ioBatches.size > 0)) {
      // Group commit: while the thread is committing, publishes accumulate and go together as its
      // next transaction. Full chunks leave at once, so encoding the next chunk here overlaps with
      // inserting the previous one there.
      if (this.#ioBatches.size === 0 || this.#queue.length >= IO_CHUNK) {
        const batch = this.#queue
        this.#queue = []
        this.#sendToIoThread(worker, batch)
      }
      return
    }
    const batch = this.#queue
    this.#queue = []
    const conn = this.#conn
    let seqs: number[]
    try {
      if (conn.db === undefined || this.#insertAll === undefined)
        throw new NotConnectedError(BACKEND, 'publish')
      if (batch.length === 1) {
        // One event: an autocommit INSERT skips the BEGIN/COMMIT round of a transaction.
        const p = batch[0] as PendingPublish
        seqs = [
          Number(conn.st.insertEvent.run(p.id, p.topic, p.pkey, p.time, p.body, p.deliverAt).lastInsertRowid),
        ]
      } else seqs = this.#insertAll(batch)
    } catch (error) {
      if (isBusy(error) && this.#retryLater(batch)) return
      this.#busySince = 0
      this.#busyAttempts = 0
      const e = classifyError(error, 'publish', conn.fileLabel)
      for (const p of batch) p.reject(e)
      return
    }
    this.#busySince = 0
    this.#busyAttempts = 0
    conn.counters.published += batch.length
    conn.counters.publishTransactions++
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as PendingPublish
      p.resolve({ id: p.id, topic: p.topic, position: String(seqs[i]) })
    }
    this.#committed(batch)
  }

  /**
   * Another process holds the write lock: keeps the batch at the head and tries again shortly.
   * False once the busy timeout has passed (the batch then fails).
   */
  #retryLater(batch: PendingPublish[]): boolean {
    const now = Date.now()
    if (this.#busySince === 0) this.#busySince = now
    if (now - this.#busySince >= this.#conn.o.busyTimeoutMs) return false
    this.#conn.counters.lockRetries++
    this.#queue = batch.concat(this.#queue)
    if (this.#busyTimer === undefined && !this.#busyImmediate) {
      if (this.#busyAttempts++ < FAST_BUSY_RETRIES) {
        this.#busyImmediate = true
        setImmediate(() => {
          this.#busyImmediate = false
          this.flush()
        })
      } else {
        this.#busyTimer = setTimeout(() => {
          this.#busyTimer = undefined
          this.flush()
        }, BUSY_RETRY_MS)
        this.#busyTimer.unref()
      }
    }
    return true
  }

  #sendToIoThread(worker: Worker, batch: PendingPublish[]): void {
    const rows: unknown[] = new Array(batch.length * ROW_FIELDS)
    let k = 0
    for (const p of batch) {
      rows[k++] = p.id
      rows[k++] = p.topic
      rows[k++] = p.pkey
      rows[k++] = p.time
      rows[k++] = p.body
      rows[k++] = p.deliverAt
    }
    const id = ++this.#ioNextId
    this.#ioBatches.set(id, batch)
    worker.postMessage({ id, rows })
  }

  #settleIoBatch(reply: IoWorkerReply): void {
    const batch = this.#ioBatches.get(reply.id)
    if (batch === undefined) return
    this.#ioBatches.delete(reply.id)
    const conn = this.#conn
    if (reply.error !== undefined || reply.first === undefined) {
      const native = Object.assign(new Error(reply.error?.message ?? 'no result'), {
        code: reply.error?.code,
      })
      const e = classifyError(native, 'publish', conn.fileLabel)
      for (const p of batch) p.reject(e)
    } else {
      conn.counters.published += batch.length
      conn.counters.publishTransactions++
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i] as PendingPublish
        p.resolve({ id: p.id, topic: p.topic, position: String(reply.first + i) })
      }
      this.#committed(batch)
    }
    // What accumulated during this commit is the next transaction.
    if (this.#queue.length > 0) this.flush()
    this.#ioIdle()
  }

  #ioFailed(worker: Worker, error: unknown): void {
    if (!this.#conn.dropIoThread(worker)) return
    this.#conn.logger.warn('sqlite: the I/O thread failed; publishes and checkpoints move to this thread', {
      error: String(error),
    })
    const failure = new ConnectionError(
      `the sqlite I/O thread failed before confirming these publishes (${String(error)}); they may or may not be written: publish again (ids dedupe for exactly-once consumers)`,
      { backend: BACKEND, retryable: true, cause: error },
    )
    for (const batch of this.#ioBatches.values()) for (const p of batch) p.reject(failure)
    this.#ioBatches.clear()
    // Publishes that were waiting for the thread are written here instead.
    if (this.#queue.length > 0) this.#scheduleFlush()
    this.#ioIdle()
  }

  #ioIdle(): void {
    if (this.#ioBatches.size > 0) return
    const waiters = this.#ioIdleWaiters
    this.#ioIdleWaiters = []
    for (const w of waiters) w()
  }

  #ioDrained(): Promise<void> {
    if (this.#ioBatches.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#ioIdleWaiters.push(resolve))
  }
}

function noop(): void {}
