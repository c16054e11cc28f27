/**
 * The tables. Every process on the host opens the same file; all coordination (cursors, leases,
 * processed ids, the retention policy) lives here, none in process memory, so a killed process
 * leaves nothing behind that another cannot take over.
 */

/** Version of the layout below, stored in `omnibus_meta` so a later layout can migrate. */
export const SCHEMA_VERSION = 2

/**
 * - `omnibus_events`: append-only log (rows leave only through retention). `seq` is the rowid
 *   (max + 1); retention always keeps the newest row so a sequence number is never reused and
 *   cursors stay valid. (AUTOINCREMENT would do the same at the cost of a page write per commit.)
 *   `deliver_at` (ms, layout 2) is set for a delayed event: no group may lease it before then.
 * - `omnibus_groups`: one row per (group, pattern) with its cursor: the last `seq` examined.
 *   Broadcast subscribers are `ephemeral` groups named `~<subscription id>`, kept alive by `heartbeat`.
 * - `omnibus_leases`: the pending entries of a group, one per matching event not yet acknowledged.
 *   `due` is when it may next be claimed: 0 for new ones, lease expiry when `owner` holds it,
 *   the retry time after a failure. `attempts` counts claims, so a crash counts as an attempt.
 * - `omnibus_delayed` (layout 2): a group's matching events that are not due yet, by due time.
 *   The cursor moves past a delayed event like any other; it waits here instead of in
 *   `omnibus_leases`, so it takes no lease, counts against no pending limit and holds back no later
 *   event, and the primary key finds the group's next due time (and what is due) in one seek.
 * - `omnibus_processed`: ids acknowledged by exactly-once subscriptions, per group, written in the
 *   transaction that deletes the lease.
 * - `omnibus_claims`: exactly-once claims of ids being handled, per group: `owner` (member and
 *   event seq) holds `id` until `until` (ms) unless it commits (the ack moves it to
 *   `omnibus_processed`) or releases it. Added to layout 1 without a migration: a table of its own.
 */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS omnibus_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS omnibus_events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  topic TEXT NOT NULL,
  pkey TEXT,
  time INTEGER NOT NULL,
  body BLOB NOT NULL,
  deliver_at INTEGER
);
CREATE TABLE IF NOT EXISTS omnibus_groups (
  gid INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  pattern TEXT NOT NULL,
  cursor INTEGER NOT NULL,
  ephemeral INTEGER NOT NULL DEFAULT 0,
  heartbeat INTEGER NOT NULL,
  UNIQUE (name, pattern)
);
CREATE TABLE IF NOT EXISTS omnibus_leases (
  gid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  pkey TEXT,
  due INTEGER NOT NULL,
  owner TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  first_failure INTEGER,
  PRIMARY KEY (gid, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS omnibus_leases_by_key ON omnibus_leases (gid, pkey, seq);
CREATE INDEX IF NOT EXISTS omnibus_leases_by_id ON omnibus_leases (gid, id);
CREATE INDEX IF NOT EXISTS omnibus_leases_by_owner ON omnibus_leases (owner);
CREATE TABLE IF NOT EXISTS omnibus_delayed (
  gid INTEGER NOT NULL,
  due INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  pkey TEXT,
  PRIMARY KEY (gid, due, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS omnibus_processed (
  gid INTEGER NOT NULL,
  id TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (gid, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS omnibus_claims (
  gid INTEGER NOT NULL,
  id TEXT NOT NULL,
  owner TEXT NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (gid, id)
) WITHOUT ROWID;
`

/**
 * Brings a layout 1 file to layout 2: `omnibus_events.deliver_at` (the new table comes from
 * {@link SCHEMA_SQL}). Additive, so it runs in place, inside the transaction that opens the file.
 */
export const MIGRATE_1_TO_2_SQL = 'ALTER TABLE omnibus_events ADD COLUMN deliver_at INTEGER'
