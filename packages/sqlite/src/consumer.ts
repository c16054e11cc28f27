/**
 * How a subscription maps onto the database, as the adapter of core's consumer kernel.
 *
 * - Topics: every event is a row of `omnibus_events`; a subscription matches the `topic` column
 *   against its pattern with core's matcher.
 * - Groups: a subscription belongs to a row of `omnibus_groups` (its group name and pattern) with
 *   a cursor; broadcast subscriptions are private groups `~<subscription id>`. Claiming moves the
 *   matching events past the cursor into `omnibus_leases` and leases the oldest claimable ones
 *   (never a second one of a partition key while an earlier one is pending) to this member, in one
 *   `BEGIN IMMEDIATE` transaction, so members in several processes compete safely. It claims only
 *   what the kernel can start now (`kernel.free`): a stuck handler never holds events another
 *   member could run.
 * - Delay: a delayed event (`deliver_at` in the future) that matches is moved past the cursor into
 *   `omnibus_delayed` instead of the pending leases, and into them by the first claim at or after
 *   its due time; the member sets a timer for the group's next due time (retries and delayed
 *   events alike). Until then it takes no lease and no handler slot, and later events (of its key
 *   too) go ahead of it.
 * - Delivery count: a lease's `attempts`, incremented by each claim; a killed consumer's lease
 *   expires after the visibility timeout and the next claim counts it.
 * - Ack: deletes the lease (and records an exactly-once id: see dedupe.ts), batched into the next
 *   claim transaction, so a busy consumer writes once per event. At-most-once leases are deleted
 *   when claimed. Redeliver: the lease goes back with a due time and the count the kernel says.
 *   Release: back at once, uncounted unless its handler ran. Extend: every lease of this member
 *   gets a new expiry. Dead letters are ordinary events (publisher.ts), kept like any other.
 */
import { randomUUID } from 'node:crypto'
import {
  compilePattern,
  type EventHandler,
  type EventInput,
  isValidTopic,
  type OmnibusEvent,
  type Subscription,
} from '@omnibus/core'
import {
  ConsumerKernel,
  type KernelAdapter,
  type KernelMessage,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'
import { BUSY_RETRY_MS, type Connection, FAST_BUSY_RETRIES, isBusy } from './connection.ts'
import { SqliteDedupeStore } from './dedupe.ts'
import { classifyError } from './errors.ts'
import type { Publisher } from './publisher.ts'
import { dropGroupRows, type Heartbeating } from './retention.ts'
import type { Wakeup } from './wakeup.ts'

/** New events moved into a group's pending list per claim; bounds one transaction's work. */
const SCAN_LIMIT = 1000
/** A group stops scanning ahead once this many events wait unacknowledged. */
const MAX_PENDING = 2000

/** Longest timer Node runs as asked (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647

/** A new row of the log, as the claim moves it past the cursor. */
interface ScannedRow {
  readonly seq: number
  readonly id: string
  readonly topic: string
  readonly pkey: string | null
  readonly deliver_at: number | null
}

/** A group's delayed event (`omnibus_delayed`). */
interface DelayedRow {
  readonly due: number
  readonly seq: number
  readonly id: string
  readonly pkey: string | null
}

/** What a consumer needs of its backend instance. */
export interface ConsumerContext {
  readonly conn: Connection
  readonly publisher: Publisher
  readonly wakeup: Wakeup<SqliteConsumer>
}

interface ClaimedRow {
  readonly seq: number
  readonly topic: string
  readonly pkey: string | null
  readonly time: number
  readonly body: string | Uint8Array
  readonly attempts: number
}

/** One claimed lease, as the kernel sees it. */
class SqliteMessage implements KernelMessage {
  readonly seq: number
  readonly topic: string
  readonly pkey: string | null
  readonly deliveryCount: number
  readonly body: string | Uint8Array
  readonly time: number
  event: OmnibusEvent | undefined = undefined

  constructor(row: ClaimedRow) {
    this.seq = row.seq
    this.topic = row.topic
    this.pkey = row.pkey
    this.deliveryCount = row.attempts + 1
    this.body = row.body
    this.time = row.time
  }

  get nativeId(): string {
    return String(this.seq)
  }
}

/** An acknowledgement waiting for the next transaction. */
interface Ack {
  readonly seq: number
  /** The claim owner when an exactly-once id is to be recorded as processed. */
  readonly owner: string | undefined
  readonly id: string | undefined
  readonly key: boolean
}

/** One subscription: its claim loop, and the kernel's adapter. */
export class SqliteConsumer implements KernelAdapter<SqliteMessage>, Heartbeating {
  readonly backend = 'sqlite'
  readonly kernel: ConsumerKernel<SqliteMessage>
  readonly dedupe: SqliteDedupeStore | undefined
  readonly id: string
  readonly ephemeral: boolean
  /** Row of `omnibus_groups`; replaced if another process removed it as stale. */
  gid: number
  readonly #ctx: ConsumerContext
  readonly #opts: ResolvedSubscribeOptions
  readonly #match: (topic: string) => boolean
  /** Lease owner, and the member id of exactly-once claim owners (`<owner>:<seq>`). */
  readonly #owner: string
  readonly #visibilityMs: number
  readonly #atMostOnce: boolean
  #acks: Ack[] = []
  /** Consecutive claims that found the file locked. */
  #busyStreak = 0
  #stopped = false
  #dueTimer: NodeJS.Timeout | undefined
  #dueAt = 0
  /** The last claim's scan or move of due delayed events stopped at its limit. */
  #scanFull = false

  /** Creates the group row (or joins it) and starts consuming. */
  static async open(
    ctx: ConsumerContext,
    handler: EventHandler,
    opts: ResolvedSubscribeOptions,
  ): Promise<Subscription> {
    const conn = ctx.conn
    const id = randomUUID()
    const ephemeral = opts.group === undefined
    const name = opts.group ?? `~${id}`
    const gid = await conn.tx(() => {
      const start = opts.from === 'earliest' ? 0 : Number(conn.st.topSeq.get())
      return (
        conn.st.upsertGroup.get(name, opts.pattern, start, ephemeral ? 1 : 0, Date.now()) as { gid: number }
      ).gid
    }, 'subscribe')
    const consumer = new SqliteConsumer(ctx, handler, opts, id, gid)
    const subscription = consumer.kernel.subscription
    // An already aborted signal closed the subscription in the kernel's constructor.
    if (subscription.active) {
      ctx.wakeup.consumers.set(id, consumer)
      ctx.wakeup.one(consumer)
    }
    return subscription
  }

  private constructor(
    ctx: ConsumerContext,
    handler: EventHandler,
    opts: ResolvedSubscribeOptions,
    id: string,
    gid: number,
  ) {
    this.#ctx = ctx
    this.#opts = opts
    this.id = id
    this.gid = gid
    this.ephemeral = opts.group === undefined
    this.#match = compilePattern(opts.pattern)
    this.#owner = `${process.pid}:${id}`
    this.#visibilityMs = opts.visibilityTimeoutMs ?? ctx.conn.o.visibilityTimeoutMs
    this.#atMostOnce = opts.guarantee === 'at-most-once'
    this.dedupe =
      opts.guarantee === 'exactly-once' ? new SqliteDedupeStore(ctx.conn, () => this.gid) : undefined
    this.kernel = new ConsumerKernel<SqliteMessage>({
      adapter: this,
      options: opts,
      handler,
      subscriptionId: id,
      logger: ctx.conn.logger,
      drainTimeoutMs: ctx.conn.o.drainTimeoutMs,
      leaseMs: this.#visibilityMs,
      memberId: this.#owner,
    })
  }

  get alive(): boolean {
    return !this.#stopped
  }

  /** Whether its pattern matches `topic`: a commit of other topics does not wake it. */
  wants(topic: string): boolean {
    return this.#match(topic)
  }

  // ---- the adapter ----

  ack(msg: SqliteMessage): void {
    if (this.#atMostOnce) return
    let owner: string | undefined
    if (this.dedupe !== undefined) {
      owner = `${this.#owner}:${msg.nativeId}`
      if (!this.dedupe.takeCommit(owner)) owner = undefined
    }
    this.#acks.push({
      seq: msg.seq,
      owner,
      id: owner === undefined ? undefined : msg.event?.id,
      key: msg.pkey !== null,
    })
  }

  async redeliver(msg: SqliteMessage, delayMs: number, deliveryCount: number): Promise<void> {
    const at = Date.now() + delayMs
    const st = this.#ctx.conn.st
    // The next claim adds one: it then reports `deliveryCount`.
    await this.#ctx.conn.tx(() => st.redeliver.run(at, deliveryCount - 1, this.gid, msg.seq, this.#owner))
    this.#setTimer(at)
  }

  release(msg: SqliteMessage, started: boolean): Promise<void> | undefined {
    if (this.#atMostOnce || this.#ctx.conn.db?.open !== true) return undefined
    const st = this.#ctx.conn.st
    return this.#ctx.conn.tx(() => {
      st.release.run(started ? 0 : 1, this.gid, msg.seq, this.#owner)
    })
  }

  async extend(): Promise<void> {
    const st = this.#ctx.conn.st
    await this.#ctx.conn.retryBusy('consume', () =>
      st.extend.run(Date.now() + this.#visibilityMs, this.#owner),
    )
  }

  publishDeadLetter(input: EventInput): Promise<void> {
    return this.#ctx.publisher.publishDeadLetter(input)
  }

  onSettled(): void {
    if (!this.#stopped) this.#ctx.wakeup.one(this)
  }

  stop(): void {
    this.#stopped = true
    if (this.#dueTimer !== undefined) clearTimeout(this.#dueTimer)
    this.#ctx.wakeup.forget(this)
  }

  /** Writes the acks still pending, hands back what is still leased, and drops a broadcast group. */
  async dispose(): Promise<void> {
    const { conn, wakeup } = this.#ctx
    wakeup.consumers.delete(this.id)
    wakeup.forget(this)
    if (conn.db?.open !== true) return
    const acks = this.#acks
    this.#acks = []
    try {
      await conn.tx(() => {
        this.#applyAcks(acks, Date.now())
        conn.st.releaseOwner.run(this.#owner)
        if (this.ephemeral) dropGroupRows(conn.st, this.gid)
      })
      wakeup.peers()
    } catch (error) {
      conn.logger.warn(
        'sqlite: could not release leases on close; they expire after the visibility timeout',
        {
          error: String(error),
        },
      )
    }
  }

  // ---- the claim loop ----

  /** Writes pending acks and claims what the kernel can start, then hands it over. */
  pump(): void {
    const conn = this.#ctx.conn
    if (this.#stopped || conn.state !== 'open' || conn.db === undefined) return
    const room = this.kernel.free
    const acks = this.#acks
    if (room <= 0 && acks.length === 0) return
    const now = Date.now()
    let rows: ClaimedRow[]
    try {
      const pre = conn.st.precheck.get(now, now, this.gid) as
        | { fresh: number; due: number; ripe: number }
        | undefined
      if (pre === undefined) {
        this.#rejoin(now)
        return
      }
      if (!pre.fresh && !pre.due && !pre.ripe && acks.length === 0) {
        this.#scheduleDue(now)
        return
      }
      this.#acks = []
      try {
        rows = this.#claim(pre.fresh || pre.due || pre.ripe ? room : 0, now, acks)
      } catch (error) {
        this.#acks = acks.concat(this.#acks)
        throw error
      }
      this.#busyStreak = 0
      // An ack can unblock the next event of a key for another consumer of the group.
      if (acks.length > 0) {
        const keyed = acks.some((a) => a.key)
        this.#ctx.wakeup.group(this.gid, keyed)
      }
    } catch (error) {
      if (isBusy(error)) {
        conn.counters.lockRetries++
        // Another process is writing: try again in a moment without blocking this thread.
        if (this.#busyStreak++ < FAST_BUSY_RETRIES) this.#ctx.wakeup.one(this)
        else this.#setTimer(Date.now() + BUSY_RETRY_MS)
        return
      }
      const e = classifyError(error, 'consume', conn.fileLabel)
      conn.logger.warn('sqlite: claiming events failed, will retry', { error: e.message })
      this.#setTimer(Date.now() + 50)
      return
    }
    for (const row of rows) this.kernel.deliver(new SqliteMessage(row))
    // A full claim, or a scan or move that stopped at its limit (thousands of delayed events or
    // of other topics' events can fill one without a claimable row): there may be more at once.
    if (rows.length === room || this.#scanFull) this.#ctx.wakeup.one(this)
    else this.#scheduleDue(now)
  }

  #claim(room: number, now: number, acks: Ack[]): ClaimedRow[] {
    const { conn } = this.#ctx
    const st = conn.st
    conn.counters.claims++
    return (conn.db as NonNullable<Connection['db']>)
      .transaction((): ClaimedRow[] => {
        this.#applyAcks(acks, now)
        if (room <= 0) return []
        const gid = this.gid
        this.#scanFull = false
        let pending = Number(st.countLeases.get(gid))
        if (pending < MAX_PENDING) {
          // Delayed events that came due join the pending ones (in due order, then publish order).
          const ripe = st.ripe.all(gid, now, Math.min(SCAN_LIMIT, MAX_PENDING - pending)) as DelayedRow[]
          for (const r of ripe) {
            st.insertLease.run(gid, r.seq, r.id, r.pkey)
            st.deleteDelayed.run(gid, r.due, r.seq)
          }
          pending += ripe.length
          if (ripe.length === SCAN_LIMIT) this.#scanFull = true
        }
        if (pending < MAX_PENDING) {
          const cursor = Number(st.cursor.get(gid))
          const fresh = st.scan.all(cursor, Math.min(SCAN_LIMIT, MAX_PENDING - pending)) as ScannedRow[]
          if (fresh.length > 0) {
            for (const r of fresh) {
              if (!isValidTopic(r.topic) || !this.#match(r.topic)) continue
              if (r.deliver_at !== null && r.deliver_at > now)
                st.insertDelayed.run(gid, r.deliver_at, r.seq, r.id, r.pkey)
              else st.insertLease.run(gid, r.seq, r.id, r.pkey)
            }
            st.setCursor.run((fresh[fresh.length - 1] as ScannedRow).seq, now, gid)
            if (fresh.length === SCAN_LIMIT) this.#scanFull = true
          }
        }
        const rows = st.claimable.all(gid, now, room) as ClaimedRow[]
        const until = now + this.#visibilityMs
        for (const r of rows) {
          if (this.#atMostOnce) st.deleteLease.run(gid, r.seq)
          else st.lease.run(this.#owner, until, gid, r.seq)
        }
        return rows
      })
      .immediate()
  }

  /** Deletes acknowledged leases and records committed exactly-once ids; inside the caller's transaction. */
  #applyAcks(acks: readonly Ack[], now: number): void {
    const st = this.#ctx.conn.st
    const gid = this.gid
    for (const a of acks) {
      if (a.owner !== undefined && a.id !== undefined) {
        st.markProcessed.run(gid, a.id, now)
        st.dropClaim.run(gid, a.id, a.owner)
      }
      st.deleteLease.run(gid, a.seq)
    }
  }

  /**
   * Another process removed the group row as stale (this one was stalled past the heartbeat
   * limit): start over at the current end rather than stop silently.
   */
  #rejoin(now: number): void {
    const { conn } = this.#ctx
    conn.logger.warn('sqlite: subscription state was removed as stale; it resumes from the latest event', {
      pattern: this.#opts.pattern,
    })
    const name = this.#opts.group ?? `~${this.id}`
    this.gid = (
      conn.st.upsertGroup.get(
        name,
        this.#opts.pattern,
        Number(conn.st.topSeq.get()),
        this.ephemeral ? 1 : 0,
        now,
      ) as {
        gid: number
      }
    ).gid
    this.#ctx.wakeup.one(this)
  }

  #setTimer(at: number): void {
    if (this.#stopped) return
    if (this.#dueTimer !== undefined && this.#dueAt <= at) return
    if (this.#dueTimer !== undefined) clearTimeout(this.#dueTimer)
    this.#dueAt = at
    this.#dueTimer = setTimeout(
      () => {
        this.#dueTimer = undefined
        this.#ctx.wakeup.one(this)
      },
      // Node fires longer timers at once: a far due time is reached in steps.
      Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS),
    )
    this.#dueTimer.unref()
  }

  /** Wakes this consumer when its next retry or delayed event is due. */
  #scheduleDue(now: number): void {
    const st = this.#ctx.conn.st
    const retry = st.nextDue.get(this.gid, now) as number | null | undefined
    const delayed = st.nextDelayed.get(this.gid) as number | null | undefined
    const next = Math.min(retry ?? Number.POSITIVE_INFINITY, delayed ?? Number.POSITIVE_INFINITY)
    if (next !== Number.POSITIVE_INFINITY) this.#setTimer(next + 1)
  }
}
