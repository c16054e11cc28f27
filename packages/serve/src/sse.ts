/**
 * Server-Sent Events: the live tail (`/events/stream?pattern=`) and the snapshot feed
 * (`/api/live`).
 *
 * The tail writes each client's events in batches on a short timer rather than one write per
 * event, so tens of thousands of events per second cost a few writes per client. A client that
 * reads slower than events arrive gets at most `maxClientBufferBytes` queued; past that its events
 * are dropped, counted, and announced with a `dropped` event once it catches up, so one slow
 * browser never grows the server's memory.
 *
 * Resume (`Last-Event-ID`): the server keeps the last `ringSize` events in memory. When the id is
 * there, the client gets the matching events after it. When it is not and the backend can replay,
 * a temporary `from: 'earliest'` subscription on the client's pattern scans for the id (up to
 * `resumeScanLimit` events and `resumeTimeoutMs`), sends what follows it, and hands over to the
 * live feed without duplicates. Otherwise the client gets a `reset` event saying why, then the
 * live feed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  ConfigurationError,
  type EventBackend,
  type Guarantee,
  type Logger,
  MatcherIndex,
  type OmnibusEvent,
  type Subscription,
} from '@omnibus/core'
import type { Snapshot } from './snapshot.ts'

/** Options of the event tail. */
export interface EventStreamOptions {
  /** Recent events kept for `Last-Event-ID` resume. @default 10000 */
  readonly ringSize?: number
  /** Bytes queued for one slow client before its events are dropped. @default 1048576 */
  readonly maxClientBufferBytes?: number
  /** How often queued events are written to clients, ms. @default 25 */
  readonly flushIntervalMs?: number
  /** Comment sent to idle clients so proxies keep the connection, ms. @default 15000 */
  readonly heartbeatMs?: number
  /** Events a replay may scan looking for the `Last-Event-ID`. @default 100000 */
  readonly resumeScanLimit?: number
  /** Longest a replay-based resume may take before the client is switched to the live feed, ms. @default 10000 */
  readonly resumeTimeoutMs?: number
  /** A replay that delivered nothing for this long has caught up, ms. @default 300 */
  readonly resumeIdleMs?: number
}

/** The JSON an SSE `data:` line carries for one event. */
export interface StreamedEvent {
  readonly id: string
  readonly topic: string
  readonly time: number
  readonly source: string
  readonly data?: unknown
  /** The data as base64 when it is bytes. */
  readonly dataBase64?: string
  readonly headers: Readonly<Record<string, string>>
  readonly correlationId?: string
  readonly causationId?: string
  readonly partitionKey?: string
}

/** The JSON view of an event sent on the tail. */
export function streamedEvent(event: OmnibusEvent): StreamedEvent {
  const out: Record<string, unknown> = {
    id: event.id,
    topic: event.topic,
    time: event.time,
    source: event.source,
    headers: event.headers,
  }
  if (event.data instanceof Uint8Array) out.dataBase64 = Buffer.from(event.data).toString('base64')
  else out.data = event.data
  if (event.correlationId !== undefined) out.correlationId = event.correlationId
  if (event.causationId !== undefined) out.causationId = event.causationId
  if (event.partitionKey !== undefined) out.partitionKey = event.partitionKey
  return out as unknown as StreamedEvent
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  // nginx buffers responses unless told not to.
  'x-accel-buffering': 'no',
}

function chunkOf(event: OmnibusEvent): string {
  // An id with a line break would end the field early: such an event goes without an id.
  const id = /[\r\n]/.test(event.id) ? '' : `id: ${event.id}\n`
  return `${id}data: ${JSON.stringify(streamedEvent(event))}\n\n`
}

/** Opens an SSE response: status, headers, and a first comment so clients see the stream at once. */
export function openSse(res: ServerResponse): void {
  res.writeHead(200, SSE_HEADERS)
  res.write(': omnibus\n\n')
}

interface Resume {
  readonly held: Array<{ readonly id: string; readonly chunk: string }>
  heldBytes: number
  readonly heldIds: Set<string>
  readonly sent: Set<string>
  sub: Subscription | undefined
  found: boolean
  scanned: number
  lastDelivery: number
  readonly deadline: number
  done: boolean
}

class TailClient {
  pending: string[] = []
  pendingBytes = 0
  dropped = 0
  lastWrite = Date.now()
  resume: Resume | undefined
  remove: () => void = () => {}
  readonly res: ServerResponse
  constructor(res: ServerResponse) {
    this.res = res
  }

  enqueue(chunk: string, limit: number): boolean {
    if (this.pendingBytes + chunk.length > limit) {
      this.dropped++
      return false
    }
    this.pending.push(chunk)
    this.pendingBytes += chunk.length
    return true
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isInteger(v) || v < 1) {
    throw new ConfigurationError(`${name} must be an integer >= 1, got ${String(v)}`)
  }
  return v
}

/** The live tail with its resume ring. */
export class EventStream {
  readonly #ring: Array<OmnibusEvent | undefined>
  readonly #ids = new Map<string, number>()
  #seq = 0
  readonly #clients = new MatcherIndex<TailClient>()
  readonly #all = new Set<TailClient>()
  readonly #limit: number
  readonly #scanLimit: number
  readonly #resumeTimeoutMs: number
  readonly #resumeIdleMs: number
  readonly #heartbeatMs: number
  readonly #backend: EventBackend
  readonly #logger: Logger
  readonly #timer: NodeJS.Timeout
  #dropped = 0
  #closed = false

  constructor(backend: EventBackend, logger: Logger, options: EventStreamOptions = {}) {
    this.#backend = backend
    this.#logger = logger
    this.#ring = new Array<OmnibusEvent | undefined>(positive('ringSize', options.ringSize, 10_000))
    this.#limit = positive('maxClientBufferBytes', options.maxClientBufferBytes, 1 << 20)
    this.#scanLimit = positive('resumeScanLimit', options.resumeScanLimit, 100_000)
    this.#resumeTimeoutMs = positive('resumeTimeoutMs', options.resumeTimeoutMs, 10_000)
    this.#resumeIdleMs = positive('resumeIdleMs', options.resumeIdleMs, 300)
    this.#heartbeatMs = positive('heartbeatMs', options.heartbeatMs, 15_000)
    this.#timer = setInterval(() => this.#tick(), positive('flushIntervalMs', options.flushIntervalMs, 25))
    this.#timer.unref()
  }

  /** Open tail connections. */
  get clients(): number {
    return this.#all.size
  }

  /** Events not sent to slow clients, since start. */
  get dropped(): number {
    return this.#dropped
  }

  /** Takes one event: into the resume ring, and to every client whose pattern matches it. */
  push(event: OmnibusEvent): void {
    const cap = this.#ring.length
    const slot = this.#seq % cap
    const old = this.#ring[slot]
    if (old !== undefined && this.#ids.get(old.id) === this.#seq - cap) this.#ids.delete(old.id)
    this.#ring[slot] = event
    this.#ids.set(event.id, this.#seq)
    this.#seq++
    if (this.#all.size === 0) return
    const clients = this.#clients.match(event.topic)
    if (clients.length === 0) return
    const chunk = chunkOf(event)
    for (const client of clients) this.#deliver(client, event.id, chunk)
  }

  #deliver(client: TailClient, id: string, chunk: string): void {
    const resume = client.resume
    if (resume !== undefined && !resume.done) {
      if (resume.heldBytes + chunk.length > this.#limit) {
        client.dropped++
        this.#dropped++
        return
      }
      resume.held.push({ id, chunk })
      resume.heldBytes += chunk.length
      resume.heldIds.add(id)
      return
    }
    if (!client.enqueue(chunk, this.#limit)) this.#dropped++
  }

  /**
   * Serves one tail connection until the client goes away. `pattern` must be valid (the caller
   * validates it); `lastEventId` is the client's `Last-Event-ID`, if any.
   */
  open(req: IncomingMessage, res: ServerResponse, pattern: string, lastEventId: string | undefined): void {
    const client = new TailClient(res)
    openSse(res)
    res.write('retry: 2000\n\n')
    if (lastEventId !== undefined && lastEventId.length > 0) this.#startResume(client, pattern, lastEventId)
    client.remove = this.#clients.add(pattern, client)
    this.#all.add(client)
    const end = (): void => {
      client.remove()
      this.#all.delete(client)
      if (client.resume !== undefined) this.#endResume(client, false)
    }
    req.on('close', end)
    res.on('close', end)
    res.on('error', end)
  }

  #startResume(client: TailClient, pattern: string, lastEventId: string): void {
    const seq = this.#ids.get(lastEventId)
    if (seq !== undefined) {
      const match = new MatcherIndex<true>()
      match.add(pattern, true)
      for (let s = seq + 1; s < this.#seq; s++) {
        const event = this.#ring[s % this.#ring.length]
        if (event !== undefined && match.has(event.topic))
          client.enqueue(chunkOf(event), Number.POSITIVE_INFINITY)
      }
      return
    }
    if (!this.#backend.capabilities.replay) {
      this.#reset(
        client,
        `event ${lastEventId} is not among the last ${this.#ring.length} events this server kept, and the ` +
          `${this.#backend.name} backend cannot replay: events before now are not resent`,
      )
      return
    }
    const resume: Resume = {
      held: [],
      heldBytes: 0,
      heldIds: new Set(),
      sent: new Set(),
      sub: undefined,
      found: false,
      scanned: 0,
      lastDelivery: Date.now(),
      deadline: Date.now() + this.#resumeTimeoutMs,
      done: false,
    }
    client.resume = resume
    const offered = this.#backend.capabilities.guarantees
    const guarantee: Guarantee = offered.includes('at-most-once')
      ? 'at-most-once'
      : (offered[0] ?? 'at-most-once')
    this.#backend
      .subscribe(
        pattern,
        (event) => {
          if (resume.done) return
          resume.lastDelivery = Date.now()
          if (!resume.found) {
            resume.scanned++
            if (event.id === lastEventId) resume.found = true
            else if (resume.scanned >= this.#scanLimit) this.#endResume(client, false)
            return
          }
          // Replay reached what the live feed already holds: hand over.
          if (resume.heldIds.has(event.id)) {
            this.#endResume(client, true)
            return
          }
          resume.sent.add(event.id)
          client.enqueue(chunkOf(event), Number.POSITIVE_INFINITY)
        },
        { from: 'earliest', guarantee },
      )
      .then(
        (sub) => {
          if (resume.done) void sub.unsubscribe().catch(() => {})
          else resume.sub = sub
        },
        (error: unknown) => {
          this.#logger.warn('resume replay failed', { error: String(error) })
          this.#endResume(client, false)
        },
      )
  }

  #endResume(client: TailClient, caughtUp: boolean): void {
    const resume = client.resume
    if (resume === undefined || resume.done) return
    resume.done = true
    client.resume = undefined
    if (resume.sub !== undefined) void resume.sub.unsubscribe().catch(() => {})
    if (!resume.found) {
      this.#reset(
        client,
        `event not found in the first ${resume.scanned} replayed events (limit ${this.#scanLimit}, ` +
          `${this.#resumeTimeoutMs} ms): events before now are not resent`,
      )
    } else if (!caughtUp && Date.now() > resume.deadline) {
      this.#logger.warn('resume stopped at its deadline; some events may be missing', {})
    }
    for (const h of resume.held) {
      if (!resume.sent.has(h.id) && !client.enqueue(h.chunk, this.#limit)) this.#dropped++
    }
  }

  #reset(client: TailClient, reason: string): void {
    client.enqueue(`event: reset\ndata: ${JSON.stringify({ reason })}\n\n`, Number.POSITIVE_INFINITY)
  }

  #tick(): void {
    const now = Date.now()
    for (const client of this.#all) {
      const resume = client.resume
      if (resume !== undefined && !resume.done) {
        if (now > resume.deadline) this.#endResume(client, false)
        else if (resume.sub !== undefined && now - resume.lastDelivery > this.#resumeIdleMs) {
          this.#endResume(client, resume.found)
        }
      }
      const res = client.res
      if (res.writableNeedDrain || res.destroyed) continue
      if (client.pending.length === 0) {
        if (now - client.lastWrite >= this.#heartbeatMs) {
          res.write(': keep-alive\n\n')
          client.lastWrite = now
        }
        continue
      }
      let text = client.pending.join('')
      if (client.dropped > 0) {
        text += `event: dropped\ndata: ${JSON.stringify({ count: client.dropped })}\n\n`
        client.dropped = 0
      }
      client.pending = []
      client.pendingBytes = 0
      client.lastWrite = now
      res.write(text)
    }
  }

  /** Ends every connection and the flush timer. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#timer)
    this.#tick()
    for (const client of [...this.#all]) {
      if (client.resume !== undefined) this.#endResume(client, false)
      client.res.end()
    }
    this.#all.clear()
    this.#clients.clear()
  }
}

/** Options of the snapshot feed. */
export interface LiveStreamOptions {
  /** Default interval between snapshots, ms (a client may ask for another with `?intervalMs=`). @default 500 */
  readonly intervalMs?: number
  /** Shortest interval a client may ask for, ms. @default 100 */
  readonly minIntervalMs?: number
}

/** `/api/live`: a snapshot on connect, then one every interval. */
export class LiveStream {
  readonly #clients = new Set<ServerResponse>()
  readonly #snapshot: () => Snapshot
  readonly #intervalMs: number
  readonly #minIntervalMs: number
  #cached: { at: number; text: string } | undefined

  constructor(snapshot: () => Snapshot, options: LiveStreamOptions = {}) {
    this.#snapshot = snapshot
    this.#intervalMs = positive('liveIntervalMs', options.intervalMs, 500)
    this.#minIntervalMs = positive('minIntervalMs', options.minIntervalMs, 100)
  }

  /** Open feed connections. */
  get clients(): number {
    return this.#clients.size
  }

  /** The interval a request asks for, clamped; undefined when `asked` is not a number. */
  interval(asked: string | null): number | undefined {
    if (asked === null) return this.#intervalMs
    const n = Number(asked)
    if (!Number.isFinite(n) || n <= 0) return undefined
    return Math.max(this.#minIntervalMs, Math.round(n))
  }

  // Clients on one interval share one serialised snapshot per tick.
  #text(): string {
    const now = Date.now()
    if (this.#cached !== undefined && now - this.#cached.at < this.#minIntervalMs / 2)
      return this.#cached.text
    const text = `data: ${JSON.stringify(this.#snapshot())}\n\n`
    this.#cached = { at: now, text }
    return text
  }

  /** Serves one feed connection until the client goes away. */
  open(req: IncomingMessage, res: ServerResponse, intervalMs: number): void {
    openSse(res)
    this.#clients.add(res)
    res.write(this.#text())
    const timer = setInterval(() => {
      // A client still reading the previous snapshot skips this one instead of queueing it.
      if (!res.writableNeedDrain && !res.destroyed) res.write(this.#text())
    }, intervalMs)
    timer.unref()
    const end = (): void => {
      clearInterval(timer)
      this.#clients.delete(res)
    }
    req.on('close', end)
    res.on('close', end)
    res.on('error', end)
  }

  /** Ends every connection. */
  close(): void {
    for (const res of [...this.#clients]) res.end()
    this.#clients.clear()
  }
}
