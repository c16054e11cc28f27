/**
 * When consumers look for work. A commit by this instance wakes its consumers at once; other
 * instances on the same file in this process are woken directly (peers); commits by other
 * processes are noticed by polling `PRAGMA data_version` every `pollIntervalMs`. Woken consumers
 * claim on the next turn of the event loop, each once however often it was woken.
 *
 * A commit made in this process names its topics, and wakes only the consumers whose pattern
 * matches one of them: a claim is a write transaction, and a subscription on other topics would
 * find nothing in it but a cursor to move. Such a consumer's cursor moves later, with the claim of
 * its next match, the next poll that sees another connection's commit, or once it has been passed
 * over for `CATCH_UP_EVENTS` events (so no claim has an unbounded stretch to scan).
 */
import { resolve as resolvePath } from 'node:path'
import type { Connection } from './connection.ts'

/** What the wake-up loop drives: a subscription's claim loop. */
export interface Pumped {
  pump(): void
  /** Its row of `omnibus_groups`: the members of a group share it. */
  readonly gid: number
  /** Whether an event of `topic` could be delivered to it (its pattern matches). */
  wants(topic: string): boolean
}

/** Something committed, each with its topic. */
export type Committed = readonly { readonly topic: string }[]

/** A consumer passed over for this many events is woken anyway, to move its cursor. */
export const CATCH_UP_EVENTS = 256
/** Larger commits wake every consumer rather than match each topic against each pattern. */
const MATCH_LIMIT = 64

/** Instances in one process on one file wake each other without waiting for the poll. */
const localPeers = new Map<string, Set<Wakeup<Pumped>>>()

/** The wake-up loop of one backend instance. */
export class Wakeup<C extends Pumped> {
  /** The consumers of this instance, by subscription id. */
  readonly consumers = new Map<string, C>()
  readonly #conn: Connection
  readonly #dirty = new Set<C>()
  /** Events committed in this process that each consumer was not woken for. */
  readonly #passedOver = new Map<C, number>()
  readonly #peerKey: string | undefined
  #scheduled = false
  #pollTimer: NodeJS.Timeout | undefined
  #lastDataVersion = 0

  constructor(conn: Connection) {
    this.#conn = conn
    this.#peerKey = conn.inMemory ? undefined : resolvePath(conn.path)
  }

  /** Starts polling and joins the peers on the file (after connect). */
  start(): void {
    this.#lastDataVersion = Number(this.#conn.st.dataVersion.get())
    if (this.#peerKey !== undefined) {
      const set = localPeers.get(this.#peerKey) ?? new Set<Wakeup<Pumped>>()
      localPeers.set(this.#peerKey, set)
      set.add(this)
    }
    this.#pollTimer = setInterval(() => this.#poll(), this.#conn.o.pollIntervalMs)
    this.#pollTimer.unref()
  }

  stop(): void {
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer)
    this.#pollTimer = undefined
    if (this.#peerKey !== undefined) localPeers.get(this.#peerKey)?.delete(this)
  }

  /** Wakes every consumer of this instance. */
  all(): void {
    if (this.consumers.size === 0) return
    for (const c of this.consumers.values()) this.#dirty.add(c)
    this.#schedule()
  }

  one(c: C): void {
    this.#dirty.add(c)
    this.#schedule()
  }

  forget(c: C): void {
    this.#dirty.delete(c)
    this.#passedOver.delete(c)
  }

  /**
   * Wakes the consumers that could want one of `events` (all of them when the events are not
   * named); the others only once they have been passed over for `CATCH_UP_EVENTS` events.
   */
  matching(events?: Committed): void {
    if (this.consumers.size === 0) return
    if (events === undefined || events.length > MATCH_LIMIT) {
      this.all()
      return
    }
    let woke = false
    for (const c of this.consumers.values()) {
      if (this.#dirty.has(c)) continue
      let wants = false
      for (const e of events) {
        if (c.wants(e.topic)) {
          wants = true
          break
        }
      }
      if (!wants) {
        const passed = (this.#passedOver.get(c) ?? 0) + events.length
        if (passed < CATCH_UP_EVENTS) {
          this.#passedOver.set(c, passed)
          continue
        }
      }
      this.#dirty.add(c)
      woke = true
    }
    if (woke) this.#schedule()
  }

  /** After a commit of `events`: this instance's consumers, and the other instances on the file. */
  committed(events?: Committed): void {
    this.matching(events)
    this.peers(events)
  }

  /** Wakes the other instances on the same file in this process (for `events`, when named). */
  peers(events?: Committed): void {
    if (this.#peerKey === undefined) return
    const set = localPeers.get(this.#peerKey)
    if (set === undefined || set.size < 2) return
    for (const w of set) if (w !== this) w.matching(events)
  }

  /**
   * Wakes the members of group `gid` in this process (this instance's when `here`, and the other
   * instances'): an acknowledgement changes only its own group's leases.
   */
  group(gid: number, here: boolean): void {
    if (here) this.#wakeGroup(gid)
    if (this.#peerKey === undefined) return
    const set = localPeers.get(this.#peerKey)
    if (set === undefined || set.size < 2) return
    for (const w of set) if (w !== this) w.#wakeGroup(gid)
  }

  #wakeGroup(gid: number): void {
    let woke = false
    for (const c of this.consumers.values()) {
      if (c.gid !== gid) continue
      this.#dirty.add(c)
      woke = true
    }
    if (woke) this.#schedule()
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      const list = [...this.#dirty]
      this.#dirty.clear()
      for (const c of list) {
        // Its claim moves its cursor over everything committed so far.
        this.#passedOver.delete(c)
        c.pump()
      }
    })
  }

  #poll(): void {
    // Nothing to wake without subscriptions; a publish-only process skips the read.
    const conn = this.#conn
    if (conn.db === undefined || conn.state !== 'open' || this.consumers.size === 0) return
    let v: number
    try {
      v = Number(conn.st.dataVersion.get())
    } catch (error) {
      conn.logger.warn('sqlite: data_version check failed', { error: String(error) })
      return
    }
    if (v !== this.#lastDataVersion) {
      this.#lastDataVersion = v
      this.all()
    }
  }
}
