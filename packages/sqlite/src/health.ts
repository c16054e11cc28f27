/**
 * The health probe: it must fail whenever a publish would fail on a damaged file, and stay cheap
 * enough to poll every few seconds on a file of millions of events.
 *
 * A publish appends: it reads the schema, walks the events table from its root down the rightmost
 * path to the last leaf and inserts there (rebalancing with that leaf's siblings when it is
 * full). The probe runs that very insert inside a transaction it always rolls back, so it reads
 * and checks exactly those pages and writes nothing (a rollback leaves the file and the WAL as
 * they were, and other connections never see the row). It also reads the root and first leaf of
 * each consumer table, which every claim touches. Cost: a handful of page reads, O(log n).
 *
 * `PRAGMA quick_check` would also find damage in old pages that neither publish nor a caught-up
 * consumer reads, but it reads the whole file: about 26 ms for 100k events (57 MB), blocking the
 * thread, and ten times that at a million. It is a repair-time tool, not a probe.
 */
import { type HealthStatus, NotConnectedError } from '@omnibus/core'
import { timedHealthCheck } from '@omnibus/core/backend'
import type Database from 'better-sqlite3'
import type { Connection } from './connection.ts'

/** Thrown inside the probe's transaction to roll it back; never escapes {@link probeDatabase}. */
const ROLLBACK = Symbol('rollback')

const CONSUMER_TABLES = ['omnibus_meta', 'omnibus_groups', 'omnibus_leases', 'omnibus_processed'] as const

/** The prepared statements of the probe, made once per connection. */
export interface HealthProbe {
  /** Runs the probe; throws the native error (busy, corrupt, I/O) a publish would meet. */
  run(): void
}

/**
 * Prepares the probe on `db` (an open Omnibus database). Runs in a write transaction: when another
 * connection holds the write lock it throws `SQLITE_BUSY`, to be retried like a publish.
 */
export function prepareHealthProbe(db: Database.Database): HealthProbe {
  const insert = db.prepare(
    "INSERT INTO omnibus_events (id, topic, pkey, time, body) VALUES ('omnibus-health-probe', 'omnibus.health', NULL, 0, x'')",
  )
  const reads = CONSUMER_TABLES.map((table) =>
    db.prepare(`SELECT 1 FROM ${table} NOT INDEXED LIMIT 1`).pluck(),
  )
  const probe = db.transaction(() => {
    insert.run()
    for (const read of reads) read.get()
    throw ROLLBACK
  })
  return {
    run() {
      try {
        // A transaction nested in one the caller opened on a shared connection becomes a
        // savepoint, rolled back just the same.
        probe.immediate()
      } catch (error) {
        if (error !== ROLLBACK) throw error
      }
    },
  }
}

/**
 * The backend's `healthCheck`: the probe, waiting for the write lock like a publish does, timed
 * by core's one health-check rule. Healthy names the file.
 */
export function checkHealth(conn: Connection, probe: () => HealthProbe | undefined): Promise<HealthStatus> {
  return timedHealthCheck('sqlite', async () => {
    const p = probe()
    if (p === undefined || conn.state !== 'open') throw new NotConnectedError('sqlite', 'check health')
    await conn.retryBusy('publish', () => p.run())
    return conn.fileLabel
  })
}
