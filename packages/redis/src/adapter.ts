/**
 * How a subscription's stream entries map onto the consumer kernel, and how the kernel's verdicts
 * map onto Redis commands. Core's `ConsumerKernel` decides; this file only talks to the server.
 *
 * - message: one stream entry; its `event` field is the CloudEvents JSON the kernel decodes (an
 *   entry without one is handed over as the JSON array of its fields, which no envelope decodes,
 *   so it is dead-lettered as foreign). `nativeId` = `<topic>:<entry id>`.
 * - delivery count: the group's pending-entries count (`XPENDING`); `XREADGROUP` sets 1,
 *   `XAUTOCLAIM` adds one per reclaim, and a retry writes its count with `XCLAIM … RETRYCOUNT`, so a
 *   member that reclaims an entry after a crash continues the count.
 * - ack: `XACK`, coalesced into one command per stream per tick.
 * - redeliver: a local timer, then `XCLAIM … RETRYCOUNT <count>` (only if the entry is still this
 *   member's), then delivered again.
 * - release: `XCLAIM … IDLE 2^31`, which any member's next sweep reclaims at once, with the count
 *   set so that reclaim gives the entry the delivery it is owed (an entry whose handler never
 *   started is not counted again).
 * - extend: `XCLAIM … JUSTID` of every entry the subscription holds, running or waiting.
 * A broadcast subscription (`XREAD`) and an at-most-once group (`XREADGROUP NOACK`) have no pending
 * entries: ack and release are no-ops, a retry is only the local timer.
 */
import type { EventInput, Logger, OmnibusEvent } from '@omnibus/core'
import {
  type DedupeStore,
  describeError,
  type KernelAdapter,
  type KernelMessage,
} from '@omnibus/core/backend'
import type { Redis } from 'ioredis'
import { EVENT_FIELD } from './keys.ts'

/** One stream entry as the kernel sees it. */
export class RedisMessage implements KernelMessage {
  /** The stream key. */
  readonly key: string
  /** The entry id. */
  readonly id: string
  readonly topic: string
  readonly deliveryCount: number
  readonly body: string
  event: OmnibusEvent | undefined

  constructor(key: string, id: string, topic: string, deliveryCount: number, body: string) {
    this.key = key
    this.id = id
    this.topic = topic
    this.deliveryCount = deliveryCount
    this.body = body
    this.event = undefined
  }

  get nativeId(): string {
    return `${this.topic}:${this.id}`
  }

  /** The entry id's millisecond part: when the server stored it. */
  get time(): number {
    return Number(this.id.slice(0, this.id.indexOf('-')))
  }

  /** The same entry, delivered again with `deliveryCount`. */
  again(deliveryCount: number): RedisMessage {
    const m = new RedisMessage(this.key, this.id, this.topic, deliveryCount, this.body)
    m.event = this.event
    return m
  }
}

/** The message of an entry's field list (`[name, value, …]` as the server sends it). */
export function entryMessage(
  key: string,
  id: string,
  topic: string,
  fields: unknown[],
  count: number,
): RedisMessage {
  // The common entry is exactly [event, <json>].
  if (fields.length === 2 && fields[0] === EVENT_FIELD) {
    return new RedisMessage(key, id, topic, count, String(fields[1]))
  }
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === EVENT_FIELD) return new RedisMessage(key, id, topic, count, String(fields[i + 1]))
  }
  return new RedisMessage(key, id, topic, count, JSON.stringify(fields.map(String)))
}

/** Idle time that makes a handed-back entry claimable by any member at once. */
const RELEASED_IDLE_MS = 2 ** 31

/** What the adapter needs from its subscription. */
export interface AdapterSettings {
  /** The backend's command connection (throws once it is disconnected). */
  readonly command: () => Redis
  readonly logger: Logger
  /** The consumer group, or `undefined` for a broadcast subscription. */
  readonly group: string | undefined
  /** This member's consumer name in the group. */
  readonly consumer: string
  /** Whether entries stay pending until acknowledged (a group, not at-most-once). */
  readonly pending: boolean
  /** The lease (visibility timeout), ms. */
  readonly leaseMs: number
  readonly dedupe: DedupeStore | undefined
  /** Publishes a dead letter with the backend's own publish. */
  readonly publish: (input: EventInput) => Promise<unknown>
  /** Hands a message to the kernel (through the reader, which counts what it holds). */
  readonly deliver: (msg: RedisMessage) => void
  /** The reader's part of closing. */
  readonly stop: () => void
  readonly dispose: () => Promise<void>
  readonly onSettled: () => void
}

/** A retry waiting for its delay. */
interface Retry {
  readonly timer: NodeJS.Timeout
  readonly next: RedisMessage
}

/** The kernel adapter of one subscription. */
export class RedisAdapter implements KernelAdapter<RedisMessage> {
  readonly backend = 'redis'
  readonly dedupe: DedupeStore | undefined
  /** Messages delivered to the kernel and not settled yet: what `extend` renews. */
  readonly held = new Set<RedisMessage>()
  readonly #s: AdapterSettings
  readonly #group: string
  readonly #retries = new Map<RedisMessage, Retry>()
  #acks = new Map<string, string[]>()
  #ackScheduled = false
  readonly #writes = new Set<Promise<unknown>>()
  readonly #flushAcks = () => this.#flush()

  constructor(s: AdapterSettings) {
    this.#s = s
    this.#group = s.group ?? ''
    this.dedupe = s.dedupe
  }

  ack(msg: RedisMessage): void {
    this.held.delete(msg)
    if (!this.#s.pending) return
    const ids = this.#acks.get(msg.key)
    if (ids === undefined) this.#acks.set(msg.key, [msg.id])
    else ids.push(msg.id)
    if (!this.#ackScheduled) {
      this.#ackScheduled = true
      setImmediate(this.#flushAcks)
    }
  }

  redeliver(msg: RedisMessage, delayMs: number, deliveryCount: number): void {
    this.held.delete(msg)
    const next = msg.again(deliveryCount)
    const timer = setTimeout(() => this.#retry(msg, next, delayMs), delayMs)
    // The connected backend keeps the process alive, not a pending retry.
    timer.unref()
    this.#retries.set(msg, { timer, next })
  }

  release(msg: RedisMessage, started: boolean): void {
    this.held.delete(msg)
    this.#handBack(msg, started ? msg.deliveryCount + 1 : msg.deliveryCount)
  }

  extend(): Promise<void> | undefined {
    if (!this.#s.pending || this.held.size === 0) return undefined
    const byKey = new Map<string, string[]>()
    for (const m of this.held) {
      const ids = byKey.get(m.key)
      if (ids === undefined) byKey.set(m.key, [m.id])
      else ids.push(m.id)
    }
    const p = this.#s.command().pipeline()
    for (const [key, ids] of byKey) p.call('XCLAIM', key, this.#group, this.#s.consumer, 0, ...ids, 'JUSTID')
    return p.exec().then(() => undefined)
  }

  async publishDeadLetter(input: EventInput): Promise<void> {
    await this.#s.publish(input)
  }

  onSettled(): void {
    this.#s.onSettled()
  }

  stop(): void {
    this.#s.stop()
  }

  async dispose(): Promise<void> {
    // Retries still waiting go back to the group with the count they would have run with.
    for (const [msg, r] of this.#retries) {
      clearTimeout(r.timer)
      this.#handBack(msg, r.next.deliveryCount)
    }
    this.#retries.clear()
    this.#flush()
    await this.#s.dispose()
    // Entries of a read that was outstanding at stop were handed back meanwhile.
    this.#flush()
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes])
    this.held.clear()
  }

  /**
   * The retry of `key`/`id` waiting here, if any: a sweep that reclaimed it (its lease lapsed
   * during a long backoff) delivers it now instead, with the count the reclaim gave it.
   */
  takeRetry(key: string, id: string): boolean {
    for (const [msg, r] of this.#retries) {
      if (msg.key === key && msg.id === id) {
        clearTimeout(r.timer)
        this.#retries.delete(msg)
        return true
      }
    }
    return false
  }

  /** Whether the kernel holds the entry now. */
  holds(key: string, id: string): boolean {
    for (const m of this.held) if (m.key === key && m.id === id) return true
    return false
  }

  #retry(msg: RedisMessage, next: RedisMessage, delayMs: number): void {
    this.#retries.delete(msg)
    if (!this.#s.pending || next.deliveryCount === msg.deliveryCount) {
      this.#s.deliver(next)
      return
    }
    // The attempt is written into the pending entry, so a member that reclaims it after a crash
    // continues the count. Only while it is still this member's: an entry idle for less than the
    // delay less a lease period was reclaimed by another member meanwhile, which runs it.
    const minIdle = Math.max(0, delayMs - Math.floor(this.#s.leaseMs / 3))
    let sent: Promise<unknown>
    try {
      sent = this.#s
        .command()
        .call(
          'XCLAIM',
          msg.key,
          this.#group,
          this.#s.consumer,
          minIdle,
          msg.id,
          'RETRYCOUNT',
          next.deliveryCount,
          'JUSTID',
        )
    } catch {
      return
    }
    const done = sent.then(
      (ids) => {
        if (Array.isArray(ids) && ids.length > 0) this.#s.deliver(next)
      },
      // Not recorded (the connection is down): run it anyway, the count is right here.
      () => this.#s.deliver(next),
    )
    this.#track(done)
  }

  #handBack(msg: RedisMessage, nextCount: number): void {
    if (!this.#s.pending) return
    this.#send(
      'hand back',
      'XCLAIM',
      msg.key,
      this.#group,
      this.#s.consumer,
      0,
      msg.id,
      'IDLE',
      RELEASED_IDLE_MS,
      // The reclaim adds one.
      'RETRYCOUNT',
      Math.max(0, nextCount - 1),
      'JUSTID',
    )
  }

  #flush(): void {
    this.#ackScheduled = false
    if (this.#acks.size === 0) return
    const acks = this.#acks
    this.#acks = new Map()
    for (const [key, ids] of acks) this.#send('acknowledgement', 'XACK', key, this.#group, ...ids)
  }

  #send(what: string, ...args: (string | number)[]): void {
    let sent: Promise<unknown>
    try {
      sent = this.#s.command().call(...(args as [string, ...(string | number)[]]))
    } catch (error) {
      this.#failed(what, error)
      return
    }
    this.#track(sent.catch((error: unknown) => this.#failed(what, error)))
  }

  #track(p: Promise<unknown>): void {
    this.#writes.add(p)
    void p.finally(() => this.#writes.delete(p))
  }

  #failed(what: string, error: unknown): void {
    this.#s.logger.warn(`redis ${what} failed; the entries are redelivered after the visibility timeout`, {
      error: describeError(error),
    })
  }
}
