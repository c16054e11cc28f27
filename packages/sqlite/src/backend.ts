/**
 * The SQLite backend. Publishing appends rows to `omnibus_events`: publishes of one tick share one
 * transaction, and large batches are committed by the I/O thread (io-worker.ts), where publishes
 * issued during a commit share the next one. Each subscription belongs to a group row with a
 * cursor; claiming moves matching events past the cursor into `omnibus_leases` and leases the
 * oldest claimable ones to this consumer, all in one `BEGIN IMMEDIATE` transaction, so several
 * processes can compete safely. Acknowledgements (lease deleted, exactly-once id recorded) ride in
 * the next claim transaction. Commits by other processes are noticed through `PRAGMA data_version`.
 */
import { randomUUID } from 'node:crypto'
import { resolve as resolvePath } from 'node:path'
import type { Worker } from 'node:worker_threads'
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  ConnectionError,
  compilePattern,
  createEvent,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  isValidTopic,
  type Logger,
  NotConnectedError,
  type OmnibusEvent,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
  silentLogger,
} from '@omnibus/core'
import {
  deadLetterInput,
  decideFailure,
  decodeEvent,
  encodeEventChecked,
  type HandlerOutcome,
  HandlerRunner,
  holdProcess,
  InvalidEnvelopeError,
  KeyedLimiter,
  type ProcessHold,
  type ResolvedSubscribeOptions,
  resolveSubscribeOptions,
} from '@omnibus/core/backend'
import Database from 'better-sqlite3'
import { classifyError, type SqliteOperation } from './errors.ts'
import { prepareHealthProbe } from './health.ts'
import { type IoWorkerReply, ROW_FIELDS, startIoWorker, stopIoWorker } from './io-worker.ts'
import { type ResolvedSqliteOptions, resolveOptions, type SqliteBackendOptions } from './options.ts'
import { SCHEMA_SQL, SCHEMA_VERSION } from './schema.ts'

/** Options of {@link SqliteBackend.cleanup}. */
export interface CleanupOptions {
  /**
   * Delete events (and exactly-once records) older than this, by event time. Stored in the
   * database: later `connect()`s and a periodic job apply it again, in every process, until
   * changed. Omitted: apply the stored policy.
   */
  readonly maxAgeMs?: number
}

/** What {@link SqliteBackend.cleanup} removed. */
export interface CleanupResult {
  /** The policy applied, or `undefined` when none is stored. */
  readonly maxAgeMs: number | undefined
  readonly deletedEvents: number
  readonly deletedProcessed: number
  /** Broadcast subscriptions of processes that ended without unsubscribing. */
  readonly deletedStaleSubscriptions: number
}

/** The SQLite `EventBackend`, plus retention and access to the connection. */
export interface SqliteBackend extends EventBackend {
  /** Database file path (`:memory:` for a private in-memory database). */
  readonly path: string
  /** Applies (and with `maxAgeMs`, stores) the retention policy. */
  cleanup(options?: CleanupOptions): Promise<CleanupResult>
  /**
   * Writes a raw row to the events table, as a foreign producer or a damaged file would:
   * consumers of `topic` dead-letter it with the reason. For tests and tooling.
   */
  injectRaw(topic: string, payload: Uint8Array | string): Promise<void>
  /** A short description for logs, without secrets. */
  describe(): string
  /** Counters of this instance since it was created. */
  stats(): SqliteBackendStats
}

/** Counters of one backend instance. */
export interface SqliteBackendStats {
  /** Events written by `publish`/`publishBatch`. */
  readonly published: number
  /** Transactions those events were written in (group commit: many events, one transaction). */
  readonly publishTransactions: number
  /** Events dead-lettered by this instance's subscriptions (failures and undecodable rows). */
  readonly deadLettered: number
  /** Writes retried because another connection held the write lock. */
  readonly lockRetries: number
}

interface PendingPublish {
  readonly id: string
  readonly topic: string
  readonly pkey: string | null
  readonly time: number
  readonly body: string | Uint8Array
  resolve(receipt: PublishReceipt): void
  reject(error: unknown): void
}

interface ClaimedRow {
  readonly seq: number
  readonly id: string
  readonly topic: string
  readonly pkey: string | null
  readonly body: string | Uint8Array
  readonly attempts: number
  readonly firstFailure: number | null
}

interface SubState {
  readonly id: string
  readonly owner: string
  /** Row of `omnibus_groups`; replaced if another process removed it as stale. */
  gid: number
  readonly ephemeral: boolean
  readonly opts: ResolvedSubscribeOptions
  readonly handler: EventHandler
  readonly match: (topic: string) => boolean
  readonly limiter: KeyedLimiter
  readonly visibilityMs: number
  readonly abort: AbortController
  readonly subscription: Subscription
  readonly runner: HandlerRunner
  /** Claimed rows not finished (queued in the limiter or running). */
  held: number
  /** Rows whose handler has started and not finished. */
  readonly running: Set<number>
  /**
   * Acknowledged rows not yet deleted: written by the next claim transaction (or on their own
   * when there is nothing to claim), so a busy consumer makes one write per event, not two.
   */
  acks: { readonly seq: number; readonly id: string; readonly key: boolean }[]
  /** Consecutive claims that found the file locked. */
  busyStreak: number
  active: boolean
  closing: boolean
  dueTimer: NodeJS.Timeout | undefined
  dueAt: number
  extendTimer: NodeJS.Timeout | undefined
  closed: Promise<void> | undefined
}

const BACKEND = 'sqlite'
/** Pause between tries while another connection holds the write lock. */
const BUSY_RETRY_MS = 1
/** Lock retries that only yield to the event loop (a writer's transaction lasts ~0.1 ms) before waiting 1 ms. */
const FAST_BUSY_RETRIES = 8
/** New events moved into a group's pending list per claim; bounds one transaction's work. */
const SCAN_LIMIT = 1000
/** A group stops scanning ahead once this many events wait unacknowledged. */
const MAX_PENDING = 2000
/** Broadcast subscriptions whose process has not touched them for this long are removed. */
const STALE_EPHEMERAL_MS = 60_000
const MAINTENANCE_INTERVAL_MS = 5_000
const RETENTION_INTERVAL_MS = 60_000
const CHECKPOINT_INTERVAL_MS = 250
/** Batches at least this large are written by the I/O thread. */
const IO_MIN_BATCH = 64
/** During a long synchronous run of publishes, a chunk this large leaves for the I/O thread at once. */
const IO_CHUNK = 256

/** Processes with several backends on one file wake each other without waiting for the poll. */
const localPeers = new Map<string, Set<() => void>>()

/**
 * Creates an SQLite backend (not connected). Several processes may open the same file: they
 * share groups, cursors and leases through it.
 */
export function createSqliteBackend(options: SqliteBackendOptions = {}): SqliteBackend {
  const o: ResolvedSqliteOptions = resolveOptions(options)
  const logger: Logger = o.logger ?? silentLogger
  // A ready connection decides for itself: its file, or a private in-memory database.
  const dbPath = o.database === undefined ? o.path : o.database.name
  const inMemory = o.database === undefined ? o.path === ':memory:' : o.database.memory
  const fileLabel = inMemory ? 'the in-memory database' : `database file "${dbPath}"`
  const capabilities: BackendCapabilities = Object.freeze({
    guarantees: Object.freeze(['at-most-once', 'at-least-once', 'exactly-once'] as const),
    persistent: !inMemory,
    crossProcess: !inMemory,
    groups: true,
    orderedPerKey: true,
    replay: true,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: false,
    wildcardDiscoveryMs: Math.max(250, o.pollIntervalMs * 10),
  })

  let db: Database.Database | undefined
  let state: 'closed' | 'open' | 'closing' = 'closed'
  let disconnecting: Promise<void> | undefined
  let queue: PendingPublish[] = []
  let flushScheduled = false
  /** When the pending batch first found the file locked (0: it did not). */
  let busySince = 0
  let busyTimer: NodeJS.Timeout | undefined
  let busyImmediate = false
  let busyAttempts = 0
  let pollTimer: NodeJS.Timeout | undefined
  let maintenanceTimer: NodeJS.Timeout | undefined
  let lastDataVersion = 0
  let lastRetentionAt = 0
  let ioWorker: Worker | undefined
  // The one handle that keeps the process alive while connected; timers and the I/O thread are
  // unreferenced, so the rule is the same as on every other backend (see holdProcess in core).
  let hold: ProcessHold | undefined
  let ioNextId = 0
  const ioBatches = new Map<number, PendingPublish[]>()
  let ioIdleWaiters: (() => void)[] = []
  const counters = { published: 0, publishTransactions: 0, deadLettered: 0, lockRetries: 0 }
  const subs = new Map<string, SubState>()
  const dirty = new Set<SubState>()
  let pumpScheduled = false
  const peerKey = inMemory ? undefined : resolvePath(dbPath)
  const wakeFromPeer = () => wakeAll()
  let st = undefined as unknown as Statements
  let insertEvents: ((batch: PendingPublish[]) => number[]) | undefined

  function requireDb(action: string): Database.Database {
    if (db === undefined || (state !== 'open' && state !== 'closing'))
      throw new NotConnectedError(BACKEND, action)
    return db
  }

  function prepare(d: Database.Database): void {
    st = makeStatements(d)
    const insert = st.insertEvent
    insertEvents = d.transaction((batch: PendingPublish[]) => {
      const seqs: number[] = new Array(batch.length)
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i] as PendingPublish
        seqs[i] = Number(insert.run(p.id, p.topic, p.pkey, p.time, p.body).lastInsertRowid)
      }
      return seqs
    })
  }

  function openDatabase(): Database.Database {
    let d: Database.Database
    try {
      d = o.database ?? new Database(o.path, { timeout: o.busyTimeoutMs })
    } catch (error) {
      throw classifyError(error, 'connect', fileLabel)
    }
    try {
      d.pragma(`busy_timeout = ${o.busyTimeoutMs}`)
      if (!inMemory) {
        const mode = d.pragma('journal_mode = WAL', { simple: true })
        if (String(mode).toLowerCase() !== 'wal' && String(mode).toLowerCase() !== 'memory') {
          logger.warn('sqlite: WAL mode unavailable, concurrency across processes is reduced', { mode })
        }
      }
      d.pragma(`synchronous = ${o.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
      // Checkpoints (WAL → database file, with an fsync) would stall whichever commit crosses the
      // threshold for tens of ms; the I/O thread runs them instead (see io-worker.ts).
      if (!inMemory && o.ioThread) d.pragma('wal_autocheckpoint = 0')
      d.transaction(() => {
        d.exec(SCHEMA_SQL)
        const version = d.prepare("SELECT value FROM omnibus_meta WHERE key = 'schema_version'").pluck().get()
        if (version === undefined) {
          d.prepare("INSERT INTO omnibus_meta (key, value) VALUES ('schema_version', ?)").run(
            String(SCHEMA_VERSION),
          )
        } else if (Number(version) > SCHEMA_VERSION) {
          throw new ConfigurationError(
            `${fileLabel} was written by a newer @omnibus/sqlite (schema ${String(version)}, this one knows ${SCHEMA_VERSION}): upgrade @omnibus/sqlite`,
            { backend: BACKEND },
          )
        }
      }).immediate()
    } catch (error) {
      if (o.database === undefined) d.close()
      throw classifyError(error, 'connect', fileLabel)
    }
    return d
  }

  async function connect(): Promise<void> {
    if (disconnecting !== undefined) await disconnecting
    if (state === 'open') return
    // Opening is synchronous (better-sqlite3), so concurrent connect() calls cannot interleave.
    try {
      const d = openDatabase()
      db = d
      prepare(d)
      lastDataVersion = Number(st.dataVersion.get())
      state = 'open'
      if (peerKey !== undefined) {
        const set = localPeers.get(peerKey) ?? new Set<() => void>()
        localPeers.set(peerKey, set)
        set.add(wakeFromPeer)
      }
      startTimers()
      startIoThread()
      applyStoredRetention(true)
      // From here on lock waits are retried without blocking the thread (see retryBusy).
      d.pragma('busy_timeout = 0')
      hold ??= holdProcess()
    } catch (error) {
      state = 'closed'
      db = undefined
      throw error
    }
  }

  function startIoThread(): void {
    if (inMemory || db === undefined || !o.ioThread) return
    try {
      const worker: Worker = startIoWorker(
        {
          file: db.name,
          busyTimeoutMs: o.busyTimeoutMs,
          synchronous: o.synchronous === 'full' ? 'FULL' : 'NORMAL',
          checkpointIntervalMs: CHECKPOINT_INTERVAL_MS,
        },
        {
          reply: (reply) => settleIoBatch(reply),
          error: (error) => ioWorkerFailed(worker, error),
          exit: (code) => ioWorkerFailed(worker, new Error(`the I/O thread exited with code ${code}`)),
        },
      )
      ioWorker = worker
    } catch (error) {
      logger.warn('sqlite: no I/O thread; publishes and checkpoints run on this thread', {
        error: String(error),
      })
      db.pragma('wal_autocheckpoint = 1000')
    }
  }

  function ioWorkerFailed(worker: Worker, error: unknown): void {
    if (ioWorker !== worker) return
    ioWorker = undefined
    logger.warn('sqlite: the I/O thread failed; publishes and checkpoints move to this thread', {
      error: String(error),
    })
    if (db?.open) db.pragma('wal_autocheckpoint = 1000')
    const failure = new ConnectionError(
      `the sqlite I/O thread failed before confirming these publishes (${String(error)}); they may or may not be written: publish again (ids dedupe for exactly-once consumers)`,
      { backend: BACKEND, retryable: true, cause: error },
    )
    for (const batch of ioBatches.values()) for (const p of batch) p.reject(failure)
    ioBatches.clear()
    // Publishes that were waiting for the thread are written here instead.
    if (queue.length > 0) scheduleFlush()
    ioIdle()
  }

  function ioIdle(): void {
    if (ioBatches.size > 0) return
    const waiters = ioIdleWaiters
    ioIdleWaiters = []
    for (const w of waiters) w()
  }

  function ioDrained(): Promise<void> {
    if (ioBatches.size === 0) return Promise.resolve()
    return new Promise((resolve) => ioIdleWaiters.push(resolve))
  }

  function sendToIoWorker(worker: Worker, batch: PendingPublish[]): void {
    const rows: unknown[] = new Array(batch.length * ROW_FIELDS)
    let k = 0
    for (const p of batch) {
      rows[k++] = p.id
      rows[k++] = p.topic
      rows[k++] = p.pkey
      rows[k++] = p.time
      rows[k++] = p.body
    }
    const id = ++ioNextId
    ioBatches.set(id, batch)
    worker.postMessage({ id, rows })
  }

  function settleIoBatch(reply: IoWorkerReply): void {
    const batch = ioBatches.get(reply.id)
    if (batch === undefined) return
    ioBatches.delete(reply.id)
    if (reply.error !== undefined || reply.first === undefined) {
      const native = Object.assign(new Error(reply.error?.message ?? 'no result'), {
        code: reply.error?.code,
      })
      const e = classifyError(native, 'publish', fileLabel)
      for (const p of batch) p.reject(e)
    } else {
      counters.published += batch.length
      counters.publishTransactions++
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i] as PendingPublish
        p.resolve({ id: p.id, topic: p.topic, position: String(reply.first + i) })
      }
      wakeAll()
      notifyPeers()
    }
    // What accumulated during this commit is the next transaction.
    if (queue.length > 0) flush()
    ioIdle()
  }

  function startTimers(): void {
    pollTimer = setInterval(poll, o.pollIntervalMs)
    pollTimer.unref()
    maintenanceTimer = setInterval(maintenance, MAINTENANCE_INTERVAL_MS)
    maintenanceTimer.unref()
  }

  function poll(): void {
    // Nothing to wake without subscriptions; a publish-only process skips the read.
    if (db === undefined || state !== 'open' || subs.size === 0) return
    let v: number
    try {
      v = Number(st.dataVersion.get())
    } catch (error) {
      logger.warn('sqlite: data_version check failed', { error: String(error) })
      return
    }
    if (v !== lastDataVersion) {
      lastDataVersion = v
      wakeAll()
    }
  }

  function maintenance(): void {
    if (db === undefined || state !== 'open') return
    try {
      const now = Date.now()
      const d = db
      const ephemeral = [...subs.values()].filter((s) => s.ephemeral && s.active)
      if (ephemeral.length > 0) {
        d.transaction(() => {
          for (const s of ephemeral) st.heartbeat.run(now, s.gid)
        }).immediate()
      }
      applyStoredRetention(false)
    } catch (error) {
      logger.warn('sqlite: maintenance failed, will retry', { error: String(error) })
    }
  }

  function applyStoredRetention(force: boolean): void {
    const now = Date.now()
    if (!force && now - lastRetentionAt < RETENTION_INTERVAL_MS) return
    lastRetentionAt = now
    try {
      runCleanup(undefined)
    } catch (error) {
      logger.warn('sqlite: retention run failed, will retry', { error: String(error) })
    }
  }

  function runCleanup(maxAgeMs: number | undefined): CleanupResult {
    const d = requireDb('cleanup')
    return d
      .transaction((): CleanupResult => {
        let policy = maxAgeMs
        if (policy !== undefined) st.setMeta.run('retention_max_age_ms', String(policy))
        else {
          const stored = st.getMeta.get('retention_max_age_ms') as string | undefined
          if (stored !== undefined) policy = Number(stored)
        }
        const now = Date.now()
        let deletedStaleSubscriptions = 0
        for (const gid of st.staleEphemeral.all(now - STALE_EPHEMERAL_MS) as number[]) {
          dropGroupRows(gid)
          deletedStaleSubscriptions++
        }
        if (policy === undefined) {
          return { maxAgeMs: undefined, deletedEvents: 0, deletedProcessed: 0, deletedStaleSubscriptions }
        }
        const cutoff = now - policy
        const deletedEvents = st.deleteOld.run(cutoff).changes + st.tombstoneNewest.run(cutoff).changes
        const deletedProcessed = st.deleteOldProcessed.run(cutoff).changes
        if (deletedEvents > 0) st.deleteOrphanLeases.run()
        st.setMeta.run('retention_last_run', String(now))
        return { maxAgeMs: policy, deletedEvents, deletedProcessed, deletedStaleSubscriptions }
      })
      .immediate()
  }

  function dropGroupRows(gid: number): void {
    st.dropGroupLeases.run(gid)
    st.dropGroupProcessed.run(gid)
    st.dropGroup.run(gid)
  }

  // ---- publishing -------------------------------------------------------------------------

  function scheduleFlush(): void {
    if (flushScheduled) return
    flushScheduled = true
    queueMicrotask(flush)
  }

  function flush(): void {
    flushScheduled = false
    if (queue.length === 0) return
    const worker = ioWorker
    // Large batches go to the I/O thread; so does anything behind a batch still there, which keeps
    // commits in publish order. Small ones are written here: a round trip would cost more.
    if (worker !== undefined && o.publishOnIoThread && (queue.length >= IO_MIN_BATCH || ioBatches.size > 0)) {
      // Group commit: while the thread is committing, publishes accumulate and go together as its
      // next transaction. Full chunks leave at once, so encoding the next chunk here overlaps with
      // inserting the previous one there.
      if (ioBatches.size === 0 || queue.length >= IO_CHUNK) {
        const batch = queue
        queue = []
        sendToIoWorker(worker, batch)
      }
      return
    }
    const batch = queue
    queue = []
    let seqs: number[]
    try {
      if (db === undefined || insertEvents === undefined) throw new NotConnectedError(BACKEND, 'publish')
      if (batch.length === 1) {
        // One event: an autocommit INSERT skips the BEGIN/COMMIT round of a transaction.
        const p = batch[0] as PendingPublish
        seqs = [Number(st.insertEvent.run(p.id, p.topic, p.pkey, p.time, p.body).lastInsertRowid)]
      } else seqs = insertEvents(batch)
    } catch (error) {
      if (isBusy(error)) {
        const now = Date.now()
        if (busySince === 0) busySince = now
        if (now - busySince < o.busyTimeoutMs) {
          counters.lockRetries++
          // Another process holds the write lock: keep the batch at the head (later publishes
          // still commit after it) and try again shortly, without blocking this thread.
          queue = batch.concat(queue)
          if (busyTimer === undefined && !busyImmediate) {
            if (busyAttempts++ < FAST_BUSY_RETRIES) {
              busyImmediate = true
              setImmediate(() => {
                busyImmediate = false
                flush()
              })
            } else {
              busyTimer = setTimeout(() => {
                busyTimer = undefined
                flush()
              }, BUSY_RETRY_MS)
              busyTimer.unref()
            }
          }
          return
        }
      }
      busySince = 0
      busyAttempts = 0
      const e = classifyError(error, 'publish', fileLabel)
      for (const p of batch) p.reject(e)
      return
    }
    busySince = 0
    busyAttempts = 0
    counters.published += batch.length
    counters.publishTransactions++
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as PendingPublish
      p.resolve({ id: p.id, topic: p.topic, position: String(seqs[i]) })
    }
    wakeAll()
    notifyPeers()
  }

  /** Commits (or, past the busy timeout, rejects) everything accepted so far. */
  async function drainPublishes(): Promise<void> {
    for (;;) {
      flush()
      await ioDrained()
      if (queue.length === 0) return
      await sleep(BUSY_RETRY_MS)
    }
  }

  function notifyPeers(): void {
    if (peerKey === undefined) return
    const set = localPeers.get(peerKey)
    if (set === undefined || set.size < 2) return
    for (const wake of set) if (wake !== wakeFromPeer) wake()
  }

  function prepareEvent(input: EventInput): PendingPublish {
    const event = createEvent(input, o.source === undefined ? {} : { source: o.source })
    const { json } = encodeEventChecked(event, o.maxPayloadBytes, BACKEND)
    return {
      id: event.id,
      topic: event.topic,
      pkey: event.partitionKey ?? null,
      time: event.time,
      body: json,
      resolve: noop,
      reject: noop,
    }
  }

  function enqueue(p: PendingPublish): Promise<PublishReceipt> {
    return new Promise<PublishReceipt>((resolve, reject) => {
      p.resolve = resolve
      p.reject = reject
      queue.push(p)
      // A long synchronous run of publishes is cut into chunks that the I/O thread writes while
      // this thread encodes the next ones.
      if (queue.length >= IO_CHUNK && ioWorker !== undefined && o.publishOnIoThread) flush()
      else scheduleFlush()
    })
  }

  function publish<T = unknown>(input: EventInput<T>): Promise<PublishReceipt> {
    if (state !== 'open' && state !== 'closing') {
      return Promise.reject(new NotConnectedError(BACKEND, 'publish'))
    }
    let p: PendingPublish
    try {
      p = prepareEvent(input)
    } catch (error) {
      return Promise.reject(error)
    }
    return enqueue(p)
  }

  async function publishBatch(events: readonly EventInput[]): Promise<BatchReceipt> {
    if (state !== 'open' && state !== 'closing') throw new NotConnectedError(BACKEND, 'publishBatch')
    if (!Array.isArray(events)) {
      throw new ConfigurationError('publishBatch expects an array of events', { backend: BACKEND })
    }
    const settled = events.map(async (input, index): Promise<BatchEntryResult> => {
      try {
        const receipt = await enqueue(prepareEvent(input))
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

  /** Appends an event inside the caller's transaction (dead letters: atomic with the ack). */
  function appendInTx(input: EventInput): void {
    const event = createEvent(input, o.source === undefined ? {} : { source: o.source })
    const { json } = encodeEventChecked(event, undefined, BACKEND)
    st.insertEvent.run(event.id, event.topic, event.partitionKey ?? null, event.time, json)
  }

  async function injectRaw(topic: string, payload: Uint8Array | string): Promise<void> {
    const d = requireDb('injectRaw')
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new ConfigurationError('injectRaw needs the topic the row should be found under', {
        backend: BACKEND,
      })
    }
    const body =
      typeof payload === 'string'
        ? payload
        : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    await retryBusy('publish', () =>
      d
        .prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, NULL, ?, ?)')
        .run(`raw-${randomUUID()}`, topic, Date.now(), body),
    )
    wakeAll()
    notifyPeers()
  }

  // ---- consuming --------------------------------------------------------------------------

  function wakeAll(): void {
    if (subs.size === 0) return
    for (const s of subs.values()) dirty.add(s)
    schedulePump()
  }

  function wake(s: SubState): void {
    dirty.add(s)
    schedulePump()
  }

  function schedulePump(): void {
    if (pumpScheduled) return
    pumpScheduled = true
    setImmediate(() => {
      pumpScheduled = false
      const list = [...dirty]
      dirty.clear()
      for (const s of list) pump(s)
    })
  }

  function pump(s: SubState): void {
    if (!s.active || s.closing || state !== 'open' || db === undefined) return
    // No prefetch: an event claimed here waits for nothing but a free handler slot, so a stuck
    // handler never holds (and keeps extending) events another member could run.
    const room = s.opts.concurrency - s.held
    if (room <= 0 && s.acks.length === 0) return
    const now = Date.now()
    const acks = s.acks
    let rows: ClaimedRow[]
    try {
      const pre = st.precheck.get(now, s.gid) as { fresh: number; due: number } | undefined
      if (pre === undefined) {
        // Another process removed the row as stale (this one was stalled past the heartbeat
        // limit); start over at the current end rather than stop silently.
        logger.warn('sqlite: subscription state was removed as stale; it resumes from the latest event', {
          pattern: s.opts.pattern,
        })
        s.gid = (
          st.upsertGroup.get(
            groupName(s),
            s.opts.pattern,
            Number(st.topSeq.get()),
            s.ephemeral ? 1 : 0,
            now,
          ) as {
            gid: number
          }
        ).gid
        wake(s)
        return
      }
      if (!pre.fresh && !pre.due && acks.length === 0) {
        scheduleDue(s, now)
        return
      }
      s.acks = []
      try {
        rows = claim(s, pre.fresh || pre.due ? room : 0, now, acks)
      } catch (error) {
        s.acks = acks.concat(s.acks)
        throw error
      }
      s.busyStreak = 0
      // An ack can unblock the next event of a key for another consumer of the group.
      if (acks.length > 0) {
        notifyPeers()
        if (acks.some((a) => a.key)) wakeAll()
      }
    } catch (error) {
      if (isBusy(error)) {
        counters.lockRetries++
        // Another process is writing: try again in a moment without blocking this thread.
        if (s.busyStreak++ < FAST_BUSY_RETRIES) wake(s)
        else setTimer(s, Date.now() + BUSY_RETRY_MS)
        return
      }
      const e = classifyError(error, 'consume', fileLabel)
      logger.warn('sqlite: claiming events failed, will retry', { error: e.message })
      setTimer(s, Date.now() + 50)
      return
    }
    for (const row of rows) {
      s.held++
      s.limiter
        .run(row.pkey ?? undefined, () => deliver(s, row))
        .catch((error: unknown) => logger.error('sqlite: delivery failed', { error: String(error) }))
        .finally(() => {
          s.held--
          wake(s)
        })
    }
    if (rows.length === room) wake(s)
    else scheduleDue(s, now)
  }

  /** Deletes acknowledged leases (and records exactly-once ids); inside the caller's transaction. */
  function applyAcks(s: SubState, acks: SubState['acks'], now: number): void {
    const exactly = s.opts.guarantee === 'exactly-once'
    for (const a of acks) {
      if (exactly) st.markProcessed.run(s.gid, a.id, now)
      st.deleteLease.run(s.gid, a.seq)
    }
  }

  function claim(s: SubState, room: number, now: number, acks: SubState['acks']): ClaimedRow[] {
    const d = db as Database.Database
    return d
      .transaction((): ClaimedRow[] => {
        applyAcks(s, acks, now)
        if (room <= 0) return []
        const pending = Number(st.countLeases.get(s.gid))
        if (pending < MAX_PENDING) {
          const cursor = Number(st.cursor.get(s.gid))
          const fresh = st.scan.all(cursor, Math.min(SCAN_LIMIT, MAX_PENDING - pending)) as {
            seq: number
            id: string
            topic: string
            pkey: string | null
          }[]
          if (fresh.length > 0) {
            const dedupe = s.opts.guarantee === 'exactly-once'
            for (const r of fresh) {
              if (!isValidTopic(r.topic) || !s.match(r.topic)) continue
              if (dedupe && (st.processedHas.get(s.gid, r.id) || st.leaseIdHas.get(s.gid, r.id))) continue
              st.insertLease.run(s.gid, r.seq, r.id, r.pkey)
            }
            st.setCursor.run((fresh[fresh.length - 1] as { seq: number }).seq, now, s.gid)
          }
        }
        const rows = st.claimable.all(s.gid, now, room) as ClaimedRow[]
        const until = now + s.visibilityMs
        for (const r of rows) {
          if (s.opts.guarantee === 'at-most-once') st.deleteLease.run(s.gid, r.seq)
          else st.lease.run(s.owner, until, s.gid, r.seq)
        }
        return rows
      })
      .immediate()
  }

  function groupName(s: SubState): string {
    return s.opts.group ?? `~${s.id}`
  }

  function setTimer(s: SubState, at: number): void {
    if (s.dueTimer !== undefined && s.dueAt <= at) return
    if (s.dueTimer !== undefined) clearTimeout(s.dueTimer)
    s.dueAt = at
    s.dueTimer = setTimeout(
      () => {
        s.dueTimer = undefined
        wake(s)
      },
      Math.max(0, at - Date.now()),
    )
    s.dueTimer.unref()
  }

  function scheduleDue(s: SubState, now: number): void {
    const next = st.nextDue.get(s.gid, now) as number | null | undefined
    if (typeof next === 'number') setTimer(s, next + 1)
  }

  /** Runs `fn` in a write transaction, retrying while another connection holds the lock. */
  function tx(fn: () => void, operation: SqliteOperation = 'consume'): Promise<void> {
    return retryBusy(operation, () => {
      const d = db
      if (d === undefined || !d.open) throw new NotConnectedError(BACKEND, operation)
      d.transaction(fn).immediate()
    })
  }

  /**
   * Runs `fn`; while it fails because another connection holds the write lock, runs it again
   * (at once on the next turns of the event loop, then every millisecond) until `busyTimeoutMs`
   * has passed, then throws `DATABASE_LOCKED`. SQLite's own
   * busy handler (left at 0 on this connection after connect) would block the thread and back
   * off up to 100 ms between tries, which showed as tens of ms of latency with two processes.
   */
  async function retryBusy<R>(operation: SqliteOperation, fn: () => R): Promise<R> {
    const deadline = Date.now() + o.busyTimeoutMs
    for (let attempt = 0; ; attempt++) {
      try {
        return fn()
      } catch (error) {
        if (!isBusy(error) || Date.now() >= deadline) throw classifyError(error, operation, fileLabel)
      }
      counters.lockRetries++
      await busyPause(attempt)
    }
  }

  function rawStandIn(row: ClaimedRow): OmnibusEvent {
    const data: Uint8Array | string =
      typeof row.body === 'string'
        ? row.body
        : new Uint8Array(row.body.buffer, row.body.byteOffset, row.body.byteLength)
    return {
      id: row.id,
      topic: isValidTopic(row.topic) ? row.topic : 'omnibus.invalid',
      data,
      time: Date.now(),
      source: 'omnibus:sqlite',
      headers: {},
      guarantee: 'at-least-once',
    }
  }

  async function deadLetter(
    s: SubState,
    row: ClaimedRow,
    event: OmnibusEvent,
    reason: string,
    error: unknown,
    attempt: number,
  ): Promise<void> {
    const now = Date.now()
    await tx(() => {
      if (s.opts.deadLetter !== false) {
        appendInTx(
          deadLetterInput(event, s.opts.deadLetter, {
            reason,
            group: s.opts.group,
            attempts: attempt,
            firstFailureAt: row.firstFailure ?? now,
            lastFailureAt: now,
            error,
            backend: BACKEND,
          }),
        )
      }
      st.deleteLease.run(s.gid, row.seq)
    })
    if (s.opts.deadLetter !== false) counters.deadLettered++
    if (s.opts.deadLetter === false)
      logger.warn('sqlite: event dropped (deadLetter: false)', { id: event.id, reason })
    wakeAll()
    notifyPeers()
  }

  async function deliver(s: SubState, row: ClaimedRow): Promise<void> {
    const attempt = row.attempts + 1
    if (s.closing || !s.active || state !== 'open') {
      // Not started: hand it back without counting the claim as an attempt.
      if (s.opts.guarantee !== 'at-most-once' && db?.open) {
        await retryBusy('consume', () => st.release.run(1, s.gid, row.seq, s.owner))
      }
      return
    }
    let event: OmnibusEvent
    try {
      event = decodeEvent(row.body)
    } catch (error) {
      const reason =
        error instanceof InvalidEnvelopeError ? error.message : `undecodable row: ${String(error)}`
      logger.warn('sqlite: dead-lettering a row that is not an Omnibus envelope', { seq: row.seq, reason })
      await deadLetter(s, row, rawStandIn(row), reason, error, attempt)
      return
    }
    if (s.opts.guarantee !== 'at-most-once' && attempt > s.opts.retry.maxAttempts) {
      // Earlier claims ended without an answer (the consumer died or lost its lease).
      await deadLetter(
        s,
        row,
        event,
        `delivered ${row.attempts} times without an acknowledgement (consumer ended or lease expired)`,
        undefined,
        row.attempts,
      )
      return
    }
    s.running.add(row.seq)
    let outcome: HandlerOutcome
    try {
      outcome = await s.runner.run(event, attempt)
    } finally {
      s.running.delete(row.seq)
    }
    if (db === undefined || !db.open) return
    if (s.opts.guarantee === 'at-most-once') {
      if (outcome.kind !== 'ack')
        logger.debug('sqlite: at-most-once handler failed; not redelivered', { id: event.id })
      return
    }
    if (outcome.kind === 'ack') {
      // Written by the next pump (woken when this task ends), in one transaction with the next claim.
      s.acks.push({ seq: row.seq, id: event.id, key: row.pkey !== null })
      return
    }
    const decision = decideFailure(s.opts, attempt, outcome)
    if (decision.action === 'retry') {
      const now = Date.now()
      await tx(() => {
        st.retryLater.run(now + decision.delayMs, now, s.gid, row.seq, s.owner)
      })
      setTimer(s, now + decision.delayMs)
      return
    }
    if (decision.action === 'dead-letter') {
      await deadLetter(s, row, event, decision.reason, outcome.error, attempt)
      return
    }
    await tx(() => {
      st.deleteLease.run(s.gid, row.seq)
    })
    logger.debug('sqlite: event dropped after failure', { id: event.id, reason: decision.reason })
  }

  function extendLeases(s: SubState): void {
    if (s.held === 0 || db === undefined || !db.open || state === 'closed') return
    retryBusy('consume', () => st.extend.run(Date.now() + s.visibilityMs, s.owner)).catch(
      (error: unknown) => {
        logger.warn('sqlite: lease extension failed, will retry', { error: String(error) })
      },
    )
  }

  async function subscribe<T = unknown>(
    pattern: string,
    handler: EventHandler<T>,
    opts: SubscribeOptions = {},
  ): Promise<Subscription> {
    const resolved = resolveSubscribeOptions({ name: BACKEND, capabilities }, pattern, handler, opts)
    if (state !== 'open') throw new NotConnectedError(BACKEND, 'subscribe')
    const d = requireDb('subscribe')
    const id = randomUUID()
    const ephemeral = resolved.group === undefined
    const name = resolved.group ?? `~${id}`
    let gid: number
    try {
      gid = await retryBusy('subscribe', () =>
        d
          .transaction((): number => {
            const start = resolved.from === 'earliest' ? 0 : Number(st.topSeq.get())
            const row = st.upsertGroup.get(name, pattern, start, ephemeral ? 1 : 0, Date.now()) as {
              gid: number
            }
            return row.gid
          })
          .immediate(),
      )
    } catch (error) {
      throw classifyError(error, 'subscribe', fileLabel)
    }
    const abort = new AbortController()
    const visibilityMs = resolved.visibilityTimeoutMs ?? o.visibilityTimeoutMs
    const s: SubState = {
      id,
      owner: `${process.pid}:${id}`,
      gid,
      ephemeral,
      opts: resolved,
      handler: handler as EventHandler,
      match: compilePattern(pattern),
      limiter: new KeyedLimiter(resolved.concurrency),
      visibilityMs,
      abort,
      subscription: undefined as unknown as Subscription,
      runner: undefined as unknown as HandlerRunner,
      held: 0,
      running: new Set(),
      acks: [],
      busyStreak: 0,
      active: true,
      closing: false,
      dueTimer: undefined,
      dueAt: 0,
      extendTimer: undefined,
      closed: undefined,
    }
    const subscription: Subscription = {
      id,
      pattern,
      group: resolved.group,
      get active() {
        return s.active
      },
      unsubscribe: () => closeSubscription(s, undefined),
    }
    ;(s as { subscription: Subscription }).subscription = subscription
    ;(s as { runner: HandlerRunner }).runner = new HandlerRunner(
      s.handler,
      subscription,
      logger,
      abort.signal,
    )
    s.extendTimer = setInterval(() => extendLeases(s), Math.max(10, Math.floor(visibilityMs / 3)))
    s.extendTimer.unref()
    subs.set(id, s)
    if (resolved.signal !== undefined) {
      if (resolved.signal.aborted) await closeSubscription(s, undefined)
      else
        resolved.signal.addEventListener('abort', () => void closeSubscription(s, undefined), { once: true })
    }
    wake(s)
    return subscription
  }

  function closeSubscription(s: SubState, drainTimeoutMs: number | undefined): Promise<void> {
    if (s.closed !== undefined) return s.closed
    s.active = false
    s.closing = true
    s.closed = (async () => {
      if (s.dueTimer !== undefined) clearTimeout(s.dueTimer)
      let timedOut = false
      if (drainTimeoutMs === undefined) await s.limiter.onIdle()
      else {
        let timer: NodeJS.Timeout | undefined
        timedOut = await Promise.race([
          s.limiter.onIdle().then(() => false),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), drainTimeoutMs)
          }),
        ])
        if (timer !== undefined) clearTimeout(timer)
      }
      // Handlers cut off by the drain timeout learn it through their signal; after a clean drain
      // the signal still ends with the subscription, for work a handler left running.
      s.abort.abort(new Error(timedOut ? 'disconnect drain timeout reached' : 'subscription closed'))
      if (s.extendTimer !== undefined) clearInterval(s.extendTimer)
      subs.delete(s.id)
      dirty.delete(s)
      if (db?.open) {
        try {
          const acks = s.acks
          s.acks = []
          await tx(() => {
            applyAcks(s, acks, Date.now())
            // Whatever is still held (handlers cut off by the drain timeout) goes back to the group.
            st.releaseOwner.run(s.owner)
            if (s.ephemeral) dropGroupRows(s.gid)
          })
          notifyPeers()
        } catch (error) {
          logger.warn('sqlite: could not release leases on close; they expire after the visibility timeout', {
            error: String(error),
          })
        }
      }
    })()
    return s.closed
  }

  async function disconnect(opts: { readonly drainTimeoutMs?: number } = {}): Promise<void> {
    if (state === 'closed') return
    if (disconnecting !== undefined) return disconnecting
    const drainMs = opts.drainTimeoutMs ?? o.drainTimeoutMs
    state = 'closing'
    disconnecting = (async () => {
      flush()
      await Promise.all([...subs.values()].map((s) => closeSubscription(s, drainMs)))
      await drainPublishes()
      if (busyTimer !== undefined) clearTimeout(busyTimer)
      busyTimer = undefined
      if (pollTimer !== undefined) clearInterval(pollTimer)
      if (maintenanceTimer !== undefined) clearInterval(maintenanceTimer)
      pollTimer = undefined
      maintenanceTimer = undefined
      if (peerKey !== undefined) localPeers.get(peerKey)?.delete(wakeFromPeer)
      const worker = ioWorker
      ioWorker = undefined
      if (worker !== undefined) await stopIoWorker(worker)
      const d = db
      db = undefined
      insertEvents = undefined
      state = 'closed'
      if (d !== undefined && o.database === undefined && d.open) d.close()
    })().finally(() => {
      disconnecting = undefined
      hold?.release()
      hold = undefined
    })
    return disconnecting
  }

  async function healthCheck(): Promise<HealthStatus> {
    const started = performance.now()
    if (db === undefined || state !== 'open') {
      return { healthy: false, latencyMs: 0, detail: 'not connected' }
    }
    const d = db
    try {
      // What a publish would meet (see health.ts), waiting for the write lock like a publish does.
      await retryBusy('publish', () => prepareHealthProbe(d).run())
      return { healthy: true, latencyMs: performance.now() - started, detail: fileLabel }
    } catch (error) {
      return {
        healthy: false,
        latencyMs: performance.now() - started,
        detail: classifyError(error, 'publish', fileLabel).message,
      }
    }
  }

  async function cleanup(options: CleanupOptions = {}): Promise<CleanupResult> {
    const maxAgeMs = options.maxAgeMs
    if (
      maxAgeMs !== undefined &&
      (typeof maxAgeMs !== 'number' || !Number.isFinite(maxAgeMs) || maxAgeMs < 0)
    ) {
      throw new ConfigurationError(
        `cleanup maxAgeMs must be a number of milliseconds >= 0, got ${String(maxAgeMs)}`,
        {
          backend: BACKEND,
        },
      )
    }
    return retryBusy('cleanup', () => runCleanup(maxAgeMs))
  }

  return {
    name: BACKEND,
    capabilities,
    path: inMemory ? ':memory:' : dbPath,
    get isConnected() {
      return state === 'open'
    },
    connect,
    disconnect,
    healthCheck,
    publish,
    publishBatch,
    subscribe,
    cleanup,
    injectRaw,
    stats: () => ({ ...counters }),
    describe: () => `sqlite(${inMemory ? ':memory:' : dbPath}, ${state})`,
  }
}

function makeStatements(d: Database.Database) {
  return {
    insertEvent: d.prepare('INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES (?, ?, ?, ?, ?)'),
    dataVersion: d.prepare('PRAGMA data_version').pluck(),
    topSeq: d.prepare('SELECT coalesce(max(seq), 0) FROM omnibus_events').pluck(),
    upsertGroup: d.prepare(
      `INSERT INTO omnibus_groups (name, pattern, cursor, ephemeral, heartbeat) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name, pattern) DO UPDATE SET heartbeat = excluded.heartbeat RETURNING gid`,
    ),
    precheck: d.prepare(
      `SELECT (SELECT coalesce(max(seq), 0) FROM omnibus_events) > g.cursor AS fresh,
                EXISTS (SELECT 1 FROM omnibus_leases l WHERE l.gid = g.gid AND l.due <= ?) AS due
         FROM omnibus_groups g WHERE g.gid = ?`,
    ),
    countLeases: d.prepare('SELECT count(*) FROM omnibus_leases WHERE gid = ?').pluck(),
    cursor: d.prepare('SELECT cursor FROM omnibus_groups WHERE gid = ?').pluck(),
    setCursor: d.prepare('UPDATE omnibus_groups SET cursor = ?, heartbeat = ? WHERE gid = ?'),
    scan: d.prepare('SELECT seq, id, topic, pkey FROM omnibus_events WHERE seq > ? ORDER BY seq LIMIT ?'),
    processedHas: d.prepare('SELECT 1 FROM omnibus_processed WHERE gid = ? AND id = ?').pluck(),
    leaseIdHas: d.prepare('SELECT 1 FROM omnibus_leases WHERE gid = ? AND id = ?').pluck(),
    insertLease: d.prepare(
      'INSERT OR IGNORE INTO omnibus_leases (gid, seq, id, pkey, due) VALUES (?, ?, ?, ?, 0)',
    ),
    claimable: d.prepare(
      `SELECT l.seq AS seq, l.id AS id, e.topic AS topic, l.pkey AS pkey, e.body AS body,
                l.attempts AS attempts, l.first_failure AS firstFailure
         FROM omnibus_leases l JOIN omnibus_events e ON e.seq = l.seq
         WHERE l.gid = ? AND l.due <= ?
           AND (l.pkey IS NULL OR NOT EXISTS (
             SELECT 1 FROM omnibus_leases p WHERE p.gid = l.gid AND p.pkey = l.pkey AND p.seq < l.seq))
         ORDER BY l.seq LIMIT ?`,
    ),
    lease: d.prepare(
      'UPDATE omnibus_leases SET owner = ?, due = ?, attempts = attempts + 1 WHERE gid = ? AND seq = ?',
    ),
    deleteLease: d.prepare('DELETE FROM omnibus_leases WHERE gid = ? AND seq = ?'),
    markProcessed: d.prepare('INSERT OR IGNORE INTO omnibus_processed (gid, id, at) VALUES (?, ?, ?)'),
    retryLater: d.prepare(
      `UPDATE omnibus_leases SET owner = NULL, due = ?, first_failure = coalesce(first_failure, ?)
         WHERE gid = ? AND seq = ? AND owner = ?`,
    ),
    release: d.prepare(
      'UPDATE omnibus_leases SET owner = NULL, due = 0, attempts = max(0, attempts - ?) WHERE gid = ? AND seq = ? AND owner = ?',
    ),
    releaseOwner: d.prepare('UPDATE omnibus_leases SET owner = NULL, due = 0 WHERE owner = ?'),
    extend: d.prepare('UPDATE omnibus_leases SET due = ? WHERE owner = ?'),
    nextDue: d.prepare('SELECT min(due) FROM omnibus_leases WHERE gid = ? AND due > ?').pluck(),
    heartbeat: d.prepare('UPDATE omnibus_groups SET heartbeat = ? WHERE gid = ?'),
    dropGroupLeases: d.prepare('DELETE FROM omnibus_leases WHERE gid = ?'),
    dropGroupProcessed: d.prepare('DELETE FROM omnibus_processed WHERE gid = ?'),
    dropGroup: d.prepare('DELETE FROM omnibus_groups WHERE gid = ?'),
    staleEphemeral: d.prepare('SELECT gid FROM omnibus_groups WHERE ephemeral = 1 AND heartbeat < ?').pluck(),
    getMeta: d.prepare('SELECT value FROM omnibus_meta WHERE key = ?').pluck(),
    setMeta: d.prepare(
      'INSERT INTO omnibus_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    // New rows take max(seq) + 1 and cursors must never see a seq twice, so an expired newest row
    // is not deleted but emptied into a tombstone whose empty topic matches no pattern.
    deleteOld: d.prepare(
      'DELETE FROM omnibus_events WHERE time < ? AND seq < (SELECT max(seq) FROM omnibus_events)',
    ),
    tombstoneNewest: d.prepare(
      `UPDATE omnibus_events SET topic = '', body = '', pkey = NULL
       WHERE seq = (SELECT max(seq) FROM omnibus_events) AND time < ? AND topic != ''`,
    ),
    deleteOldProcessed: d.prepare('DELETE FROM omnibus_processed WHERE at < ?'),
    deleteOrphanLeases: d.prepare(
      'DELETE FROM omnibus_leases WHERE NOT EXISTS (SELECT 1 FROM omnibus_events e WHERE e.seq = omnibus_leases.seq)',
    ),
  }
}

type Statements = ReturnType<typeof makeStatements>

function noop(): void {}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The wait before lock retry number `attempt` (0-based): a turn of the event loop, then 1 ms. */
function busyPause(attempt: number): Promise<void> {
  if (attempt < FAST_BUSY_RETRIES) return new Promise((resolve) => setImmediate(resolve))
  return sleep(BUSY_RETRY_MS)
}

/** The write lock is held by another connection (SQLITE_BUSY and its extended codes). */
function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}
