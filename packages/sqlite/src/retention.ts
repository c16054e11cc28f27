/**
 * Retention and housekeeping. The retention policy (`maxAgeMs`) is stored in the database, so
 * every process applies it: at connect, then at most once a minute. Housekeeping also removes
 * broadcast subscriptions whose process ended without unsubscribing (their heartbeat stopped)
 * and exactly-once claims whose holder died.
 */
import { ConfigurationError } from '@omnibus/core'
import { BACKEND, type Connection, type Statements } from './connection.ts'

/** Options of `SqliteBackend.cleanup`. */
export interface CleanupOptions {
  /**
   * Delete events (and exactly-once records) older than this, by event time (a delayed event's
   * age counts from its delivery time). Stored in the
   * database: later `connect()`s and a periodic job apply it again, in every process, until
   * changed. Omitted: apply the stored policy.
   */
  readonly maxAgeMs?: number
}

/** What `SqliteBackend.cleanup` removed. */
export interface CleanupResult {
  /** The policy applied, or `undefined` when none is stored. */
  readonly maxAgeMs: number | undefined
  readonly deletedEvents: number
  readonly deletedProcessed: number
  /** Broadcast subscriptions of processes that ended without unsubscribing. */
  readonly deletedStaleSubscriptions: number
}

/** A broadcast subscription kept alive by this process's heartbeat. */
export interface Heartbeating {
  readonly gid: number
  readonly ephemeral: boolean
  readonly alive: boolean
}

/** Broadcast subscriptions whose process has not touched them for this long are removed. */
const STALE_EPHEMERAL_MS = 60_000
const MAINTENANCE_INTERVAL_MS = 5_000
const RETENTION_INTERVAL_MS = 60_000

/** Deletes a group and everything it holds; inside the caller's transaction. */
export function dropGroupRows(st: Statements, gid: number): void {
  st.dropGroupLeases.run(gid)
  st.dropGroupProcessed.run(gid)
  st.dropGroupClaims.run(gid)
  st.dropGroupDelayed.run(gid)
  st.dropGroup.run(gid)
}

/** The housekeeping of one backend instance. */
export class Retention {
  readonly #conn: Connection
  readonly #subscriptions: () => Iterable<Heartbeating>
  #timer: NodeJS.Timeout | undefined
  #lastRunAt = 0

  constructor(conn: Connection, subscriptions: () => Iterable<Heartbeating>) {
    this.#conn = conn
    this.#subscriptions = subscriptions
  }

  /** Applies the stored policy now and starts the periodic job (after connect). */
  start(): void {
    this.#applyStored(true)
    this.#timer = setInterval(() => this.#maintain(), MAINTENANCE_INTERVAL_MS)
    this.#timer.unref()
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  /** `SqliteBackend.cleanup`: validates, then applies (and with `maxAgeMs`, stores) the policy. */
  cleanup(options: CleanupOptions = {}): Promise<CleanupResult> {
    const maxAgeMs = options.maxAgeMs
    if (
      maxAgeMs !== undefined &&
      (typeof maxAgeMs !== 'number' || !Number.isFinite(maxAgeMs) || maxAgeMs < 0)
    ) {
      return Promise.reject(
        new ConfigurationError(
          `cleanup maxAgeMs must be a number of milliseconds >= 0, got ${String(maxAgeMs)}`,
          { backend: BACKEND },
        ),
      )
    }
    try {
      this.#conn.requireDb('cleanup')
    } catch (error) {
      return Promise.reject(error)
    }
    return this.#conn.tx(() => this.#run(maxAgeMs), 'cleanup')
  }

  #maintain(): void {
    const conn = this.#conn
    if (conn.db === undefined || conn.state !== 'open') return
    try {
      const now = Date.now()
      const beating = [...this.#subscriptions()].filter((s) => s.ephemeral && s.alive)
      if (beating.length > 0) {
        conn.db
          .transaction(() => {
            for (const s of beating) conn.st.heartbeat.run(now, s.gid)
          })
          .immediate()
      }
      this.#applyStored(false)
    } catch (error) {
      conn.logger.warn('sqlite: maintenance failed, will retry', { error: String(error) })
    }
  }

  #applyStored(force: boolean): void {
    const now = Date.now()
    if (!force && now - this.#lastRunAt < RETENTION_INTERVAL_MS) return
    this.#lastRunAt = now
    try {
      this.#conn
        .requireDb('cleanup')
        .transaction(() => this.#run(undefined))
        .immediate()
    } catch (error) {
      this.#conn.logger.warn('sqlite: retention run failed, will retry', { error: String(error) })
    }
  }

  /** One retention run; inside the caller's transaction. */
  #run(maxAgeMs: number | undefined): CleanupResult {
    const st = this.#conn.st
    let policy = maxAgeMs
    if (policy !== undefined) st.setMeta.run('retention_max_age_ms', String(policy))
    else {
      const stored = st.getMeta.get('retention_max_age_ms') as string | undefined
      if (stored !== undefined) policy = Number(stored)
    }
    const now = Date.now()
    let deletedStaleSubscriptions = 0
    for (const gid of st.staleEphemeral.all(now - STALE_EPHEMERAL_MS) as number[]) {
      dropGroupRows(st, gid)
      deletedStaleSubscriptions++
    }
    st.deleteExpiredClaims.run(now)
    if (policy === undefined) {
      return { maxAgeMs: undefined, deletedEvents: 0, deletedProcessed: 0, deletedStaleSubscriptions }
    }
    const cutoff = now - policy
    const deletedEvents =
      st.deleteOld.run(cutoff, cutoff).changes + st.tombstoneNewest.run(cutoff, cutoff).changes
    const deletedProcessed = st.deleteOldProcessed.run(cutoff).changes
    if (deletedEvents > 0) {
      st.deleteOrphanLeases.run()
      st.deleteOrphanDelayed.run()
    }
    st.setMeta.run('retention_last_run', String(now))
    return { maxAgeMs: policy, deletedEvents, deletedProcessed, deletedStaleSubscriptions }
  }
}
