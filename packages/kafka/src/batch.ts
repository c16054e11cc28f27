/**
 * How Kafka maps onto the consumer kernel. A fetched batch of one partition is handed to the
 * kernel message by message, and since Kafka has no per-message acknowledgement:
 *
 * - **ack** marks the message's offset done; the partition's committed offset moves only over a
 *   done prefix (the highest contiguous done offset), at the end of the batch and once a second
 *   during a long one. The batch returns to kafkajs once each of its messages is done or handed
 *   back, so kafkajs never fetches past a message still in flight.
 * - **redeliver** is a local timer that hands the same message to the kernel again; the partition
 *   does not move past it meanwhile. Its key stays held (no later message of that key starts), and
 *   with `concurrency: 1` the whole partition waits, as it would for the handler.
 * - **release** leaves the offset undone: the group's next owner of the partition reads it again.
 * - **deliveryCount** is kept per message in memory, and in the records topic before every delivery
 *   that is not a first one, so that a consumer dying on a message does not reset it
 *   (see `attempts.ts`).
 * - at-most-once commits the whole batch before any of its handlers runs.
 */
import type { OmnibusEvent } from '@omnibus/core'
import { type ConsumerKernel, decodeEvent, type KernelMessage } from '@omnibus/core/backend'
import type { PartitionHistory } from './attempts.ts'
import type { BatchControl, InboundBatch, InboundMessage } from './client.ts'

const EMPTY = Buffer.alloc(0)

/** One Kafka message as the kernel sees it. */
export class KafkaMessage implements KernelMessage {
  event: OmnibusEvent | undefined
  deliveryCount: number
  /** The partition key this message holds while it is in the kernel (concurrency > 1). */
  gateKey: string | undefined = undefined
  readonly run: BatchRun
  readonly index: number

  constructor(run: BatchRun, index: number, event: OmnibusEvent | undefined, deliveryCount: number) {
    this.run = run
    this.index = index
    this.event = event
    this.deliveryCount = deliveryCount
  }

  /**
   * The raw value while the message is undecodable (else null): read from the batch when asked,
   * so the usual message, decoded on arrival, carries one field less.
   */
  get body(): Uint8Array | null {
    if (this.event !== undefined) return null
    const raw = (this.run.messages[this.index] as InboundMessage).value ?? EMPTY
    return new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)
  }

  get topic(): string {
    return this.run.topic
  }

  get offset(): string {
    return (this.run.messages[this.index] as InboundMessage).offset
  }

  /** `topic:partition:offset`. */
  get nativeId(): string {
    return `${this.run.topic}:${this.run.partition}:${this.offset}`
  }

  /** The broker's timestamp (the stand-in of an undecodable message carries it). */
  get time(): number {
    const t = Number((this.run.messages[this.index] as InboundMessage).timestamp)
    return Number.isFinite(t) ? t : Date.now()
  }
}

/** The done-offset book of one batch: which messages are done, and how far the prefix reaches. */
export class BatchRun {
  readonly topic: string
  readonly partition: number
  readonly messages: readonly InboundMessage[]
  readonly control: BatchControl
  /** Messages handed over (to the kernel, a key's queue or a retry timer) and not done or back. */
  pending = 0
  /** Messages waiting on a redelivery timer. */
  retrying = 0
  /** Messages before this index are done. */
  next = 0
  /** Messages before this index are committed. */
  committed = 0
  /** The next message to hand over. */
  cursor = 0
  /** Deliveries so far of messages a gone member had, by offset. */
  counts: ReadonlyMap<string, number> | undefined = undefined
  /** A delivery count is being recorded before its message is handed over. */
  counting = false
  /** Resolves `#feed` once every message is handed over. */
  fed: (() => void) | undefined = undefined
  /** Start nothing more of this batch (closing, or the partition is being revoked). */
  halted = false
  /** No longer waited for (closing): late acks still mark offsets, nothing more is committed. */
  over = false
  readonly #done: Uint8Array
  #wake: (() => void) | undefined

  constructor(batch: InboundBatch, control: BatchControl) {
    this.topic = batch.topic
    this.partition = batch.partition
    this.messages = batch.messages
    this.control = control
    this.#done = new Uint8Array(batch.messages.length)
  }

  /** The message at `index` is done (acknowledged, dead-lettered, or not ours to handle). */
  done(index: number): void {
    this.#done[index] = 1
    if (index === this.next) {
      const n = this.messages.length
      let i = index + 1
      while (i < n && this.#done[i] === 1) i++
      this.next = i
    }
  }

  /** A handed-over message came back: done or released. */
  back(): void {
    this.pending--
    if (this.#wake !== undefined) this.#notify()
  }

  /** A message waiting for its redelivery timer is handed over again (or back). */
  retried(): void {
    this.retrying--
    if (this.#wake !== undefined) this.#notify()
  }

  /** Resolves at the next `back()`, `retried()` or `end()`: the waiter checks what it waits for. */
  changed(): Promise<void> {
    if (this.over) return Promise.resolve()
    return new Promise((resolve) => {
      const prev = this.#wake
      this.#wake =
        prev === undefined
          ? resolve
          : () => {
              prev()
              resolve()
            }
    })
  }

  /** Stops waiting for what is still pending (closing). */
  end(): void {
    this.over = true
    this.#notify()
  }

  #notify(): void {
    const wake = this.#wake
    if (wake !== undefined) {
      this.#wake = undefined
      wake()
    }
  }

  /** Waits until no message is pending (or `end()`). */
  async idle(): Promise<void> {
    while (this.pending > 0 && !this.over) await this.changed()
  }

  /** Offset to commit for the done prefix, or undefined when it did not move since the last commit. */
  commitPoint(): string | undefined {
    if (this.next <= this.committed) return undefined
    this.committed = this.next
    const last = this.messages[this.next - 1] as InboundMessage
    this.control.markDone(last.offset)
    return (BigInt(last.offset) + 1n).toString()
  }
}

/** What the feeder needs from its subscription. */
export interface FeedHost {
  readonly kernel: ConsumerKernel<KafkaMessage>
  /** Whether this subscription wants an envelope of this topic (its pattern matches). */
  matches(topic: string): boolean
  readonly atMostOnce: boolean
  /** Hold the whole partition during a redelivery (concurrency 1), else only the message's key. */
  readonly serial: boolean
  readonly heartbeatIntervalMs: number
  /** Whether the feeder may start more work for this batch (not closing, partition still ours). */
  active(run: BatchRun): boolean
  /** What the records say of a partition this member starts on, or undefined when it keeps none. */
  begin(run: BatchRun): Promise<PartitionHistory | undefined>
  /** Records the deliveries so far of a message before it is delivered again (a no-op when it keeps none). */
  count(run: BatchRun, offset: string, deliveries: number): Promise<void>
  /** Commits `offset` as the partition's next (with the member's position record). */
  commit(run: BatchRun, offset: string): Promise<void>
  warn(message: string, error: unknown, run: BatchRun): void
}

/**
 * Feeds fetched batches to the kernel and turns the kernel's acks, redeliveries and releases into
 * offsets. One per subscription.
 */
export class Feeder {
  readonly #host: FeedHost
  readonly #kernel: ConsumerKernel<KafkaMessage>
  /** Partition keys held by a message in the kernel, with the messages that wait for them. */
  readonly #gate = new Map<string, KafkaMessage[] | null>()
  readonly #timers = new Map<ReturnType<typeof setTimeout>, KafkaMessage>()
  readonly #runs = new Set<BatchRun>()
  /** Partitions this member has started on since it last joined its group. */
  #started = new Set<string>()
  #stopped = false
  /** Batches waiting for room in the kernel. */
  #hungry: BatchRun[] = []
  #pumping = false

  constructor(host: FeedHost) {
    this.#host = host
    this.#kernel = host.kernel
  }

  /** The group was joined again: partitions may have moved, their history is read anew. */
  rejoined(): void {
    this.#started = new Set()
  }

  /** Handles one fetched batch: resolves when each of its messages is done or handed back. */
  async onBatch(batch: InboundBatch, control: BatchControl): Promise<void> {
    if (batch.messages.length === 0 || this.#stopped) return
    const run = new BatchRun(batch, control)
    const host = this.#host
    this.#runs.add(run)
    const beat = setInterval(() => {
      control.heartbeat().catch(() => {
        // A rebalance started: finish what runs, start nothing new, let the member rejoin.
        run.halted = true
      })
    }, host.heartbeatIntervalMs)
    // The backend's hold keeps the process alive while connected, not the timers of a batch.
    beat.unref()
    const tick = setInterval(() => void this.#commit(run), 1000)
    tick.unref()
    try {
      if (host.atMostOnce) {
        // Acknowledged before any handler runs: a crash now loses these events, never repeats them.
        run.next = batch.messages.length
        const point = run.commitPoint()
        if (point !== undefined) await host.commit(run, point)
      }
      let history: PartitionHistory | undefined
      const pk = `${batch.topic}\u0000${batch.partition}`
      if (!this.#started.has(pk)) {
        history = await host.begin(run)
        this.#started.add(pk)
      }
      if (history?.suspect === true) await this.#feedCarefully(run, history.counts)
      else await this.#feed(run, history?.counts)
      await run.idle()
    } catch (error) {
      host.warn('kafka batch processing stopped', error, run)
    } finally {
      clearInterval(beat)
      clearInterval(tick)
      this.#runs.delete(run)
      await this.#commit(run)
    }
  }

  async #commit(run: BatchRun): Promise<void> {
    const point = run.commitPoint()
    if (point === undefined) return
    try {
      await this.#host.commit(run, point)
    } catch (error) {
      this.#host.warn('kafka offset commit failed; the events will be delivered again', error, run)
    }
  }

  /**
   * The usual path: every message is handed over as soon as the kernel has room. Resolves when
   * each message was handed over (or the batch halted).
   */
  #feed(run: BatchRun, counts: ReadonlyMap<string, number> | undefined): Promise<void> {
    run.counts = counts
    return new Promise((resolve) => {
      run.fed = resolve
      this.#pump(run)
    })
  }

  /**
   * Hands over what fits, synchronously; when the kernel is full (or, at concurrency 1, a
   * redelivery is pending) the batch waits in `#hungry` and the kernel's `onSettled` resumes it,
   * so a message costs no promise of its own. A call made while pumping (a synchronous handler
   * settling inside `deliver`) returns at once: the running loop sees the room.
   */
  #pump(run: BatchRun): void {
    if (this.#pumping) {
      if (!this.#hungry.includes(run)) this.#hungry.push(run)
      return
    }
    this.#pumping = true
    try {
      const kernel = this.#kernel
      const host = this.#host
      const serial = host.serial
      const messages = run.messages
      while (run.cursor < messages.length) {
        const i = run.cursor
        // Asking the client whether the partition is still ours costs a lookup per call; every
        // 16th event is enough (a few extra events after a rebalance are redelivered, never lost).
        if ((i & 15) === 0 && !host.active(run)) run.halted = true
        if (run.halted || run.over) break
        if (kernel.free === 0 || (serial && run.retrying > 0)) {
          this.#hungry.push(run)
          return
        }
        run.cursor = i + 1
        const msg = this.#message(run, i)
        if (msg === undefined) continue
        run.pending++
        const seen = run.counts === undefined ? undefined : run.counts.get(msg.offset)
        if (seen !== undefined) {
          // Delivered before by a member that is gone: counted in the records before it runs.
          msg.deliveryCount = seen + 1
          run.counting = true
          void this.#countThenHand(run, msg)
          return
        }
        this.#hand(msg)
      }
      const fed = run.fed
      run.fed = undefined
      fed?.()
    } finally {
      this.#pumping = false
    }
  }

  async #countThenHand(run: BatchRun, msg: KafkaMessage): Promise<void> {
    try {
      await this.#host.count(run, msg.offset, msg.deliveryCount)
    } catch (error) {
      this.#host.warn('kafka delivery count could not be recorded', error, run)
    }
    run.counting = false
    this.#hand(msg)
    this.#pump(run)
  }

  /** The kernel has room again (or a redelivery was handed over): batches waiting for it go on. */
  settled(): void {
    if (this.#pumping || this.#hungry.length === 0) return
    if (this.#hungry.length === 1) {
      // The usual case (one partition at a time): no array per event.
      const run = this.#hungry.pop() as BatchRun
      if (run.counting) this.#hungry.push(run)
      else this.#pump(run)
      return
    }
    const waiting = this.#hungry
    this.#hungry = []
    for (const run of waiting) {
      if (run.counting) this.#hungry.push(run)
      else this.#pump(run)
    }
  }

  /**
   * After a member died in this batch: one message at a time, each committed before the next
   * starts and counted before it runs, so a message that kills its consumer is pinned down and its
   * count grows by one per death.
   */
  async #feedCarefully(run: BatchRun, counts: ReadonlyMap<string, number> | undefined): Promise<void> {
    const host = this.#host
    for (let i = 0; i < run.messages.length; i++) {
      await run.idle()
      if (run.halted || run.over || !host.active(run) || run.next < i) return
      await this.#commit(run)
      const msg = this.#message(run, i)
      if (msg === undefined) continue
      // Unknown: the member that died may have run it once.
      msg.deliveryCount = (counts?.get(msg.offset) ?? 1) + 1
      await host.count(run, msg.offset, msg.deliveryCount)
      run.pending++
      this.#hand(msg)
    }
  }

  /** Decodes message `i`; one whose envelope names a topic the pattern does not match is done at once. */
  #message(run: BatchRun, i: number): KafkaMessage | undefined {
    const raw = (run.messages[i] as InboundMessage).value ?? EMPTY
    let event: OmnibusEvent | undefined
    try {
      // Kafka values are Buffers: decoding their text directly spares the codec a Buffer view.
      event = decodeEvent(raw.toString())
    } catch {
      // The kernel wraps and dead-letters it with the decode error.
      return new KafkaMessage(run, i, undefined, 1)
    }
    // Only matching topics are consumed, so an envelope naming the batch's own topic needs no
    // matcher call; a foreign producer may write another type onto a topic we read.
    if (event.topic !== run.topic && !this.#host.matches(event.topic)) {
      run.done(i)
      return undefined
    }
    return new KafkaMessage(run, i, event, 1)
  }

  /** Into the kernel, unless a message of its key is there already (then it waits its turn). */
  #hand(msg: KafkaMessage): void {
    const key = this.#host.serial ? undefined : msg.event?.partitionKey
    if (key !== undefined) {
      if (this.#gate.has(key)) {
        const waiting = this.#gate.get(key)
        if (waiting === null || waiting === undefined) this.#gate.set(key, [msg])
        else waiting.push(msg)
        return
      }
      this.#gate.set(key, null)
      msg.gateKey = key
    }
    this.#kernel.deliver(msg)
  }

  /** The key `msg` held passes to the next message of that key. */
  #ungate(msg: KafkaMessage): void {
    const key = msg.gateKey as string
    msg.gateKey = undefined
    const waiting = this.#gate.get(key)
    const next = waiting?.shift()
    if (next === undefined) {
      this.#gate.delete(key)
      return
    }
    if (waiting?.length === 0) this.#gate.set(key, null)
    next.gateKey = key
    this.#kernel.deliver(next)
  }

  // ---- the kernel adapter's primitives ----

  ack(msg: KafkaMessage): void {
    const run = msg.run
    run.done(msg.index)
    run.back()
    if (msg.gateKey !== undefined) this.#ungate(msg)
  }

  redeliver(msg: KafkaMessage, delayMs: number, deliveryCount: number): void {
    const run = msg.run
    run.retrying++
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      void this.#again(msg, deliveryCount)
    }, delayMs)
    timer.unref()
    this.#timers.set(timer, msg)
  }

  async #again(msg: KafkaMessage, deliveryCount: number): Promise<void> {
    const run = msg.run
    if (this.#stopped || run.halted || !this.#host.active(run)) {
      run.retried()
      await this.#handBack(msg, deliveryCount - 1)
      return
    }
    try {
      // Before it runs again: a consumer that dies in this run leaves the count behind.
      if (deliveryCount > 1) await this.#host.count(run, msg.offset, deliveryCount)
    } catch (error) {
      this.#host.warn('kafka delivery count could not be recorded', error, run)
    }
    msg.deliveryCount = deliveryCount
    this.#kernel.deliver(msg)
    run.retried()
    this.settled()
  }

  release(msg: KafkaMessage, started: boolean): Promise<void> {
    return this.#handBack(msg, started ? msg.deliveryCount : 0)
  }

  /** Leaves `msg` undone for the partition's next reader, which then delivers it `deliveries + 1` times. */
  async #handBack(msg: KafkaMessage, deliveries: number): Promise<void> {
    const run = msg.run
    try {
      if (deliveries > 0) await this.#host.count(run, msg.offset, deliveries)
    } catch (error) {
      this.#host.warn('kafka delivery count could not be recorded', error, run)
    } finally {
      // Not done: the committed offset stops before it, whatever comes after.
      run.halted = true
      run.back()
      if (msg.gateKey !== undefined) this.#ungate(msg)
    }
  }

  /** Closing: nothing more is handed to the kernel; waiting redeliveries and keys go back. */
  stop(): Promise<void> {
    this.#stopped = true
    const back: Array<Promise<void>> = []
    for (const [timer, msg] of this.#timers) {
      clearTimeout(timer)
      msg.run.retried()
      back.push(this.#handBack(msg, msg.deliveryCount))
    }
    this.#timers.clear()
    for (const waiting of this.#gate.values()) {
      for (const msg of waiting ?? []) msg.run.back()
    }
    this.#gate.clear()
    for (const run of this.#runs) run.halted = true
    this.settled()
    return Promise.all(back).then(() => {})
  }

  /** Stops waiting for every batch still open (after the drain): they commit what is done and return. */
  end(): void {
    for (const run of this.#runs) run.end()
    this.settled()
  }
}
