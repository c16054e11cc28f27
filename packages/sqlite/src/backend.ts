/**
 * The SQLite backend object: it connects the parts (connection.ts: the file, its statements and
 * the I/O thread; publisher.ts: group commit; consumer.ts: subscriptions as adapters of core's
 * consumer kernel; wakeup.ts: when consumers look for work; retention.ts; health.ts) and runs
 * connect and disconnect.
 */
import {
  type BackendCapabilities,
  type EventBackend,
  type EventHandler,
  type Logger,
  NotConnectedError,
  type SubscribeOptions,
  type Subscription,
  silentLogger,
} from '@omnibus/core'
import {
  checkDrainTimeout,
  checkEnsureGroup,
  holdProcess,
  instrumentBackend,
  type ProcessHold,
  resolveSubscribeOptions,
} from '@omnibus/core/backend'
import { BACKEND, Connection } from './connection.ts'
import { SqliteConsumer } from './consumer.ts'
import { checkHealth, type HealthProbe, prepareHealthProbe } from './health.ts'
import { resolveOptions, type SqliteBackendOptions } from './options.ts'
import { Publisher, SQLITE_DELAY } from './publisher.ts'
import { type CleanupOptions, type CleanupResult, Retention } from './retention.ts'
import { Wakeup } from './wakeup.ts'

export type { CleanupOptions, CleanupResult } from './retention.ts'

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
  /**
   * Claim transactions run by this instance's subscriptions (each moves a group's cursor over new
   * events and leases what it can start).
   */
  readonly claims: number
}

/**
 * Creates an SQLite backend (not connected). Several processes may open the same file: they
 * share groups, cursors and leases through it.
 */
export function createSqliteBackend(options: SqliteBackendOptions = {}): SqliteBackend {
  const o = resolveOptions(options)
  const logger: Logger = o.logger ?? silentLogger
  const conn = new Connection(o, logger)
  const capabilities: BackendCapabilities = Object.freeze({
    guarantees: Object.freeze(['at-most-once', 'at-least-once', 'exactly-once'] as const),
    persistent: !conn.inMemory,
    crossProcess: !conn.inMemory,
    groups: true,
    orderedPerKey: true,
    replay: true,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: false,
    wildcardDiscoveryMs: Math.max(250, o.pollIntervalMs * 10),
    delay: SQLITE_DELAY,
  })
  const wakeup = new Wakeup<SqliteConsumer>(conn)
  const publisher = new Publisher(conn, (events) => wakeup.committed(events))
  const retention = new Retention(conn, () => wakeup.consumers.values())
  let probe: HealthProbe | undefined
  let disconnecting: Promise<void> | undefined
  // The one handle that keeps the process alive while connected; timers and the I/O thread are
  // unreferenced, so the rule is the same as on every other backend (see holdProcess in core).
  let hold: ProcessHold | undefined

  async function connect(): Promise<void> {
    if (disconnecting !== undefined) await disconnecting
    if (conn.state === 'open') return
    // Opening is synchronous (better-sqlite3), so concurrent connect() calls cannot interleave.
    try {
      const d = conn.open()
      conn.state = 'open'
      publisher.opened()
      probe = prepareHealthProbe(d)
      wakeup.start()
      conn.startIoThread((worker) => publisher.ioListeners(worker))
      retention.start()
      // From here on lock waits are retried without blocking the thread (see Connection.retryBusy).
      d.pragma('busy_timeout = 0')
      hold ??= holdProcess()
    } catch (error) {
      conn.state = 'closed'
      conn.db = undefined
      throw error
    }
  }

  function disconnect(opts: { readonly drainTimeoutMs?: number } = {}): Promise<void> {
    if (conn.state === 'closed') return Promise.resolve()
    if (disconnecting !== undefined) return disconnecting
    let drainMs: number
    try {
      drainMs = checkDrainTimeout(opts.drainTimeoutMs ?? o.drainTimeoutMs, BACKEND)
    } catch (error) {
      return Promise.reject(error)
    }
    conn.state = 'closing'
    disconnecting = (async () => {
      // Publishing keeps working while handlers drain (they often publish follow-ups).
      publisher.flush()
      await Promise.all([...wakeup.consumers.values()].map((c) => c.kernel.close(drainMs)))
      await publisher.drain()
      wakeup.stop()
      retention.stop()
      probe = undefined
      await conn.close()
    })().finally(() => {
      disconnecting = undefined
      hold?.release()
      hold = undefined
    })
    return disconnecting
  }

  /** Groups this instance has declared: the row exists in the file from then on. */
  const ensured = new Set<string>()

  async function ensureGroup(pattern: string, group: string): Promise<void> {
    checkEnsureGroup({ name: BACKEND, capabilities }, pattern, group)
    if (conn.state !== 'open') throw new NotConnectedError(BACKEND, 'ensureGroup')
    const key = `${group}\u0000${pattern}`
    if (ensured.has(key)) return
    // The row a subscription of this group and pattern would create at 'latest': its cursor at the
    // newest event, so what is committed from now on waits for the group. An existing row keeps its cursor.
    await conn.tx(() => {
      conn.st.upsertGroup.get(group, pattern, Number(conn.st.topSeq.get()), 0, Date.now())
    }, 'subscribe')
    ensured.add(key)
  }

  async function subscribe<T = unknown>(
    pattern: string,
    handler: EventHandler<T>,
    opts: SubscribeOptions = {},
  ): Promise<Subscription> {
    const resolved = resolveSubscribeOptions({ name: BACKEND, capabilities }, pattern, handler, opts)
    if (conn.state !== 'open') throw new NotConnectedError(BACKEND, 'subscribe')
    return SqliteConsumer.open({ conn, publisher, wakeup }, handler as EventHandler, resolved)
  }

  return instrumentBackend({
    name: BACKEND,
    capabilities,
    path: conn.inMemory ? ':memory:' : conn.path,
    get isConnected() {
      return conn.state === 'open'
    },
    connect,
    disconnect,
    healthCheck: () => checkHealth(conn, () => probe),
    publish: (input) => publisher.publish(input),
    publishBatch: (events) => publisher.publishBatch(events),
    subscribe,
    ensureGroup,
    cleanup: (options) => retention.cleanup(options),
    injectRaw: (topic, payload) => publisher.injectRaw(topic, payload),
    stats: () => ({ ...conn.counters }),
    describe: () => `sqlite(${conn.inMemory ? ':memory:' : conn.path}, ${conn.state})`,
  })
}
