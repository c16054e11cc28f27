/**
 * The read side of one subscription: which streams it reads and from where, the blocking read loop
 * and the sweep that reclaims entries of members that died.
 *
 * - A group reads with `XREADGROUP` as one consumer of a Redis consumer group named after it
 *   (`NOACK` at-most-once); a broadcast subscription reads with `XREAD` after its own positions.
 * - Start: a `from: 'latest'` subscription starts after the last entry of the streams that exist
 *   when it subscribes (`XGROUP CREATE … $`, `XREVRANGE` for broadcast), and at the server time of
 *   subscribe in streams it finds later; `from: 'earliest'` at `0-0`.
 * - Read-ahead: the next read is requested before the entries of the current one are handed to
 *   the kernel, so the server reads and sends while this process runs handlers; reads stop while
 *   `batchSize × 2` (at least `concurrency`) entries are held.
 * - The loop has its own connection, woken with `CLIENT UNBLOCK` when the stream set changes or it
 *   stops.
 * - Sweep: `XAUTOCLAIM` of entries idle for the visibility timeout, only as many as can start at
 *   once (each reclaim counts as a delivery), with their counts read from `XPENDING`.
 */
import type { Logger } from '@omnibus/core'
import { settlesWithin } from '@omnibus/core/backend'
import type { Redis } from 'ioredis'
import { entryMessage, type RedisMessage } from './adapter.ts'
import { classifyError } from './errors.ts'
import type { KeyMap } from './keys.ts'
import type { ResolvedRedisOptions } from './options.ts'

/** What the reader needs from the backend and its subscription. */
export interface ReaderSettings {
  readonly cfg: ResolvedRedisOptions
  readonly keys: KeyMap
  readonly logger: Logger
  readonly command: () => Redis
  readonly newReader: () => Promise<Redis>
  readonly releaseReader: (r: Redis) => void
  readonly group: string | undefined
  readonly consumer: string
  /** Whether entries stay pending until acknowledged (else `NOACK` or broadcast). */
  readonly pending: boolean
  readonly concurrency: number
  readonly leaseMs: number
  /** Where it reads streams found after subscribing (`0-0` for earliest). */
  readonly startId: string
  /** Streams that exist at subscribe start after their last entry (`from: 'latest'`). */
  readonly startAtEnd: boolean
  /** Hands a message to the kernel. */
  readonly sink: (msg: RedisMessage) => void
  /** How many more messages the kernel would start at once. */
  readonly free: () => number
  /** Whether the kernel holds an entry already, or a retry of it waits (then taken over). */
  readonly holds: (key: string, id: string) => boolean
}

type Reply = [string, [string, unknown[] | null][] | null][]

const DELETE_IDLE_CONSUMER = `local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return -1`

/** Reads the streams of one subscription and hands their entries to the kernel. */
export class StreamReader {
  readonly #s: ReaderSettings
  readonly #group: string
  readonly #prefetch: number
  readonly #batch: number
  /** Streams being read → topic. */
  readonly #streams = new Map<string, string>()
  readonly #adding = new Set<string>()
  /** Last id read per stream (broadcast). */
  readonly #lastIds = new Map<string, string>()
  readonly #claimCursors = new Map<string, string>()
  /** Messages handed to the kernel and not settled. */
  #active = 0
  #stopped = false
  #reader: Redis | undefined
  #readerId: number | undefined
  #blocked = false
  #readSeq = 0
  #interrupting = -1
  #loopDone: Promise<void> | undefined
  #wake: (() => void) | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  #sweeping = false
  /** The last sweep left idle entries behind for want of free slots. */
  #reclaimMore = false

  constructor(s: ReaderSettings) {
    this.#s = s
    this.#group = s.group ?? ''
    this.#batch = s.cfg.batchSize
    this.#prefetch = Math.max(this.#batch * 2, s.concurrency)
  }

  /** Hands `msg` to the kernel, counting it as held. */
  deliver(msg: RedisMessage): void {
    this.#active++
    this.#s.sink(msg)
  }

  /** A message left the kernel: reading resumes once there is room for a batch. */
  settled(): void {
    this.#active--
    // Entries left to reclaim are taken as slots free up, not one sweep interval at a time.
    if (this.#reclaimMore && !this.#sweeping && this.#s.free() > 0) void this.#sweep()
    if (this.#active <= this.#prefetch - this.#batch) {
      const w = this.#wake
      this.#wake = undefined
      w?.()
    }
  }

  /** Opens the read connection, starts reading `topics` and the loop. */
  async start(topics: readonly string[]): Promise<void> {
    const r = await this.#s.newReader()
    this.#reader = r
    r.on('ready', () => {
      this.#readerId = undefined
    })
    r.on('close', () => {
      this.#readerId = undefined
    })
    for (const t of topics) await this.addStream(t, true)
    if (this.#s.pending) {
      const every = Math.max(50, Math.min(Math.floor(this.#s.leaseMs / 2), 5_000))
      this.#sweepTimer = setInterval(() => void this.#sweep(), every)
      this.#sweepTimer.unref()
    }
    this.#loopDone = this.#loop()
    // Entries handed back by members that left are taken over at once.
    if (this.#s.pending) void this.#sweep()
  }

  /** Whether the stream of `topic` is read (or being added). */
  reads(topic: string): boolean {
    return this.#streams.has(this.#s.keys.stream(topic)) || this.#adding.has(topic)
  }

  /** Starts reading the stream of `topic`; `atSubscribe` for streams that exist at subscribe. */
  async addStream(topic: string, atSubscribe = false): Promise<void> {
    const key = this.#s.keys.stream(topic)
    if (this.#streams.has(key) || this.#adding.has(topic) || this.#stopped) return
    this.#adding.add(topic)
    try {
      const atEnd = atSubscribe && this.#s.startAtEnd
      if (this.#s.group !== undefined) await this.#ensureGroup(key, atEnd ? '$' : this.#s.startId)
      else this.#lastIds.set(key, atEnd ? await this.#lastEntryId(key) : this.#s.startId)
      this.#streams.set(key, topic)
      this.#nudge()
    } finally {
      this.#adding.delete(topic)
    }
  }

  /** Stops reading: new reads are not requested, the blocking one is interrupted. */
  stop(): void {
    this.#stopped = true
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    this.#sweepTimer = undefined
    this.#nudge()
  }

  /** Ends the loop (a read outstanding is handed to the kernel, which releases it) and the connection. */
  async close(): Promise<void> {
    this.stop()
    // The read interrupted by stop() returns what the server already gave this member; closing
    // the connection first would lose that reply and leave its entries to the lease.
    if (this.#loopDone !== undefined) await settlesWithin(this.#loopDone, 1_000)
    const r = this.#reader
    this.#reader = undefined
    if (r !== undefined) this.#s.releaseReader(r)
    await this.#loopDone?.catch(() => {})
    if (this.#s.group === undefined || this.#streams.size === 0) return
    // A member that holds nothing leaves the group's consumer list.
    try {
      const p = this.#s.command().pipeline()
      for (const key of this.#streams.keys())
        p.call('EVAL', DELETE_IDLE_CONSUMER, 1, key, this.#group, this.#s.consumer)
      await p.exec()
    } catch {
      // An idle consumer name left in the group costs nothing but a line in XINFO.
    }
  }

  async #ensureGroup(key: string, startId: string): Promise<void> {
    try {
      await this.#s.command().call('XGROUP', 'CREATE', key, this.#group, startId, 'MKSTREAM')
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err
    }
  }

  /** Id of the newest entry of a stream, or `0-0` when it has none (every later entry is new). */
  async #lastEntryId(key: string): Promise<string> {
    const last = (await this.#s.command().call('XREVRANGE', key, '+', '-', 'COUNT', 1)) as [string, unknown][]
    return last[0]?.[0] ?? '0-0'
  }

  #nudge(): void {
    const w = this.#wake
    this.#wake = undefined
    w?.()
    if (this.#blocked) void this.#interrupt(this.#readSeq)
  }

  /**
   * Interrupts the blocking read number `seq` so it restarts with the new stream set (or stops).
   * The read may not have reached the server yet (CLIENT UNBLOCK then answers 0), so this repeats
   * until the server unblocked it or it returned on its own.
   */
  async #interrupt(seq: number): Promise<void> {
    if (this.#interrupting === seq) return
    this.#interrupting = seq
    try {
      for (let tries = 0; this.#blocked && this.#readSeq === seq && tries < 200; tries++) {
        const id = this.#readerId
        if (id !== undefined) {
          const n = await Promise.resolve()
            .then(() => this.#s.command().call('CLIENT', 'UNBLOCK', id))
            .catch(() => 0)
          if (Number(n) === 1) return
        }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    } finally {
      if (this.#interrupting === seq) this.#interrupting = -1
    }
  }

  #sleep(maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined
        resolve()
      }, maxMs)
      // Waiting between reads is not what keeps the process alive: the backend's hold is.
      timer.unref()
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  /** One XREADGROUP (or XREAD) of up to `count` entries over every stream of the subscription. */
  async #fetch(r: Redis, count: number): Promise<unknown> {
    const keys = [...this.#streams.keys()]
    this.#readSeq++
    this.#blocked = true
    try {
      const block = this.#s.cfg.blockMs
      if (this.#s.group !== undefined) {
        const args: (string | number)[] = [
          'GROUP',
          this.#group,
          this.#s.consumer,
          'COUNT',
          count,
          'BLOCK',
          block,
        ]
        if (!this.#s.pending) args.push('NOACK')
        args.push('STREAMS', ...keys)
        for (let i = 0; i < keys.length; i++) args.push('>')
        return await r.call('XREADGROUP', ...args)
      }
      const args: (string | number)[] = ['COUNT', count, 'BLOCK', block, 'STREAMS', ...keys]
      for (const k of keys) args.push(this.#lastIds.get(k) ?? this.#s.startId)
      return await r.call('XREAD', ...args)
    } finally {
      this.#blocked = false
    }
  }

  /** Entries in a reply; for broadcast reads, also moves each stream's read position past them. */
  #taken(reply: unknown): number {
    if (!Array.isArray(reply)) return 0
    let n = 0
    for (const s of reply as Reply) {
      const entries = s[1]
      if (!Array.isArray(entries) || entries.length === 0) continue
      n += entries.length
      if (this.#s.group === undefined)
        this.#lastIds.set(String(s[0]), (entries[entries.length - 1] as [string, unknown])[0])
    }
    return n
  }

  #deliverReply(reply: unknown): void {
    if (!Array.isArray(reply)) return
    for (const s of reply as Reply) {
      const key = String(s[0])
      const entries = s[1]
      if (!Array.isArray(entries)) continue
      const topic = this.#streams.get(key) ?? this.#s.keys.topicOf(key) ?? key
      for (const [id, fields] of entries) {
        // A null entry was trimmed while pending: nothing left to deliver.
        if (fields !== null) this.deliver(entryMessage(key, id, topic, fields, 1))
      }
    }
  }

  async #loop(): Promise<void> {
    let failures = 0
    // The next reply, requested before the current one is handled: the server reads and sends
    // it while this process runs the handlers, instead of one waiting for the other.
    let ahead: Promise<unknown> | undefined
    while (!this.#stopped) {
      const r = this.#reader
      if (r === undefined) break
      if (ahead === undefined && (this.#streams.size === 0 || this.#active >= this.#prefetch)) {
        await this.#sleep(this.#s.cfg.blockMs)
        continue
      }
      try {
        if (this.#readerId === undefined) this.#readerId = Number(await r.client('ID'))
        const next =
          ahead ?? this.#fetch(r, Math.max(1, Math.min(this.#batch, this.#prefetch - this.#active)))
        ahead = undefined
        const reply = await next
        const n = this.#taken(reply)
        const room = this.#prefetch - this.#active - n
        if (n > 0 && room > 0 && !this.#stopped) {
          ahead = this.#fetch(r, Math.min(this.#batch, room))
          ahead.catch(() => {})
        }
        this.#deliverReply(reply)
        failures = 0
      } catch (err) {
        if (this.#stopped) break
        const msg = (err as Error).message
        if (/NOGROUP/.test(msg) && this.#s.group !== undefined) {
          // The server lost the group (restarted without persistence, or the key was deleted).
          await Promise.all(
            [...this.#streams.keys()].map((k) => this.#ensureGroup(k, this.#s.startId).catch(() => {})),
          )
          continue
        }
        failures++
        if (failures === 1 || failures % 50 === 0) {
          this.#s.logger.warn('redis read failed; retrying', {
            error: classifyError(err, 'subscribe').message,
          })
        }
        await this.#sleep(Math.min(100 * failures, 1_000))
      }
    }
    // A read still outstanding when it stopped: the closing kernel hands its entries back.
    if (ahead !== undefined) this.#deliverReply(await ahead.catch(() => null))
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#stopped) return
    this.#sweeping = true
    let more = false
    try {
      const c = this.#s.command()
      if (c.status !== 'ready') return
      for (const [key, topic] of this.#streams) {
        const room = Math.min(this.#s.free(), this.#batch)
        if (room <= 0 || this.#stopped) {
          more = true
          break
        }
        const reply = (await c.call(
          'XAUTOCLAIM',
          key,
          this.#group,
          this.#s.consumer,
          this.#s.leaseMs,
          this.#claimCursors.get(key) ?? '0-0',
          'COUNT',
          room,
        )) as [string, [string, unknown[] | null][] | null, string[] | undefined]
        this.#claimCursors.set(key, String(reply[0]))
        if (String(reply[0]) !== '0-0') more = true
        const entries = (reply[1] ?? []).filter((e) => Array.isArray(e) && e[1] !== null)
        const deleted = reply[2] ?? []
        if (deleted.length > 0) {
          this.#s.logger.warn('redis entries were trimmed from the stream before they were acknowledged', {
            stream: key,
            count: deleted.length,
          })
        }
        if (entries.length === 0 || this.#stopped) continue
        // XAUTOCLAIM does not return delivery counts: read them from the pending list.
        const first = entries[0]?.[0] as string
        const last = entries[entries.length - 1]?.[0] as string
        const pending = (await c.call(
          'XPENDING',
          key,
          this.#group,
          first,
          last,
          entries.length,
          this.#s.consumer,
        )) as [string, string, number, number][]
        const counts = new Map(pending.map((p) => [String(p[0]), Number(p[3])]))
        for (const [id, fields] of entries) {
          if (this.#s.holds(key, id)) continue
          this.deliver(entryMessage(key, id, topic, fields as unknown[], counts.get(id) ?? 2))
        }
      }
    } catch (err) {
      this.#s.logger.debug('redis reclaim sweep failed', { error: (err as Error).message })
    } finally {
      this.#sweeping = false
      this.#reclaimMore = more
      // What it took may have settled already (synchronous handlers): go on while there is room.
      if (more && !this.#stopped && this.#s.free() > 0) setImmediate(() => void this.#sweep())
    }
  }
}
