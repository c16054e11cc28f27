/**
 * When consumers look for work. A commit by this instance wakes its consumers at once; other
 * instances on the same file in this process are woken directly (peers); commits by other
 * processes are noticed by polling `PRAGMA data_version` every `pollIntervalMs`. Woken consumers
 * claim on the next turn of the event loop, each once however often it was woken.
 */
import { resolve as resolvePath } from 'node:path'
import type { Connection } from './connection.ts'

/** What the wake-up loop drives: a subscription's claim loop. */
export interface Pumped {
  pump(): void
}

/** Instances in one process on one file wake each other without waiting for the poll. */
const localPeers = new Map<string, Set<() => void>>()

/** The wake-up loop of one backend instance. */
export class Wakeup<C extends Pumped> {
  /** The consumers of this instance, by subscription id. */
  readonly consumers = new Map<string, C>()
  readonly #conn: Connection
  readonly #dirty = new Set<C>()
  readonly #peerKey: string | undefined
  readonly #fromPeer = () => this.all()
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
      const set = localPeers.get(this.#peerKey) ?? new Set<() => void>()
      localPeers.set(this.#peerKey, set)
      set.add(this.#fromPeer)
    }
    this.#pollTimer = setInterval(() => this.#poll(), this.#conn.o.pollIntervalMs)
    this.#pollTimer.unref()
  }

  stop(): void {
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer)
    this.#pollTimer = undefined
    if (this.#peerKey !== undefined) localPeers.get(this.#peerKey)?.delete(this.#fromPeer)
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
  }

  /** After a commit: this instance's consumers, and the other instances on the file. */
  committed(): void {
    this.all()
    this.peers()
  }

  /** Wakes the other instances on the same file in this process. */
  peers(): void {
    if (this.#peerKey === undefined) return
    const set = localPeers.get(this.#peerKey)
    if (set === undefined || set.size < 2) return
    for (const wake of set) if (wake !== this.#fromPeer) wake()
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      const list = [...this.#dirty]
      this.#dirty.clear()
      for (const c of list) c.pump()
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
