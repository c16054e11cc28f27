/**
 * The consumer kernel: everything between "a message arrived" and "it is settled", written once for
 * every backend. A backend reads its broker and hands each message to {@link ConsumerKernel.deliver};
 * the kernel decides and calls back the {@link KernelAdapter} to ack, redeliver, release, extend and
 * publish dead letters. The README section "Writing a backend: the kernel and its adapter" is the
 * contract in prose.
 *
 * Per message, in order:
 * 1. undecodable body: wrapped in the stand-in event ({@link foreignEvent}) and dead-lettered;
 * 2. at-most-once: acknowledged, then run once; a failure is logged, never redelivered;
 * 3. schedule: a message before its `deliverAt` is redelivered then (same delivery count, not an
 *    attempt); one after its `expiresAt` runs no handler and is dead-lettered with reason
 *    `expired` (or dropped: `expired: 'drop'`); a handler of an event with `expiresAt` sees its
 *    `ctx.signal` abort at that time;
 * 4. poison guard: `deliveryCount > maxAttempts` (earlier deliveries ended without a settle: a crash,
 *    a lost lease) dead-letters with diagnostics without running the handler;
 * 5. exactly-once: claim on the dedupe store (`done`: ack without running, `busy`: redeliver later);
 * 6. the handler runs in the event's causation scope with its context ({@link HandlerRunner});
 * 7. ack (after the dedupe commit), or retry with backoff, or dead-letter, or drop, as
 *    {@link decideFailure} says; a failing handler of its own dead-letter topic drops the letter
 *    (logged) instead of dead-lettering it again.
 * Up to `concurrency` messages run at once, never two of one partition key; unsubscribe and close
 * wait for them up to the drain timeout (never for the handler that called them), then hand the
 * rest back to the broker.
 */
import { randomUUID } from 'node:crypto'
import { decodeEvent } from '../codec.ts'
import { currentEvent } from '../envelope.ts'
import { ConfigurationError, TimeoutError } from '../errors.ts'
import {
  type DeliveryObservation,
  type Instrumentation,
  instrumentation,
  instrumentationFailed,
  instrumentedPublish,
  type SettleOutcome,
} from '../instrumentation.ts'
import type { EventHandler, EventInput, Logger, OmnibusEvent, Subscription } from '../protocol.ts'
import { isoTime, MAX_TIMER_DELAY_MS } from '../schedule.ts'
import { deadLetterInput, EXPIRED_REASON } from './dead-letter.ts'
import { Deadline } from './deadlines.ts'
import type { ClaimResult, DedupeStore } from './dedupe.ts'
import { checkDrainTimeout, DEFAULT_DRAIN_TIMEOUT_MS, settlesWithin } from './drain.ts'
import { foreignEvent, foreignReason } from './foreign.ts'
import { safeLog } from './loggers.ts'
import { backoffDelay, decideFailure, describeError, type HandlerOutcome } from './outcome.ts'
import { ACK, HandlerRunner, PendingCall, type SignalSource } from './runner.ts'
import type { ResolvedSubscribeOptions } from './subscribe-options.ts'

/**
 * One message as the adapter hands it to the kernel. The adapter's own message type extends it with
 * what it needs to ack (a stream key, a delivery tag, a receipt handle); the kernel passes that
 * same object back to every {@link KernelAdapter} call.
 */
export interface KernelMessage {
  /**
   * The broker's id of this message, unique within the subscription and the same on every
   * redelivery: a stream entry (`stream:1700000000000-0`), `topic:partition:offset`, an SQS
   * `MessageId`, an AMQP `messageId` or a sequence number. Read only off the fast path.
   */
  readonly nativeId: string
  /** The topic (routing key, stream) it was read from, as the broker names it. */
  readonly topic: string
  /**
   * Deliveries of this message to this subscription or group so far, this one included (1 for the
   * first): the broker's count where it keeps one. It is the handler's `ctx.attempt`, and a count
   * above `maxAttempts` trips the poison guard. After `redeliver(msg, delay, n)` the next delivery
   * must report `n`.
   */
  readonly deliveryCount: number
  /**
   * The decoded envelope, or `undefined` when the adapter hands the raw `body` and lets the kernel
   * decode it (the kernel then stores the decoded event here).
   */
  event: OmnibusEvent | undefined
  /** The raw body, when `event` is `undefined`. */
  readonly body?: string | Uint8Array | null
  /** When the broker stored the message (epoch ms), for the stand-in of an undecodable one. */
  readonly time?: number
}

/**
 * The broker primitives a backend gives the kernel. Every call may return a promise; a call that
 * throws or rejects is logged and the message is left to the broker's own redelivery (lease expiry).
 */
export interface KernelAdapter<M extends KernelMessage = KernelMessage> {
  /** The backend's name, for diagnostics and the stand-in of undecodable messages. */
  readonly backend: string
  /** Settles `msg` for good (XACK, basic.ack, DeleteMessage, commit offset, delete the lease row). */
  ack(msg: M): void | Promise<void>
  /**
   * Delivers `msg` again after `delayMs`, reporting `deliveryCount` then (one more than now after a
   * failed run; the same after a `busy` claim, which is not an attempt). Native means: a visibility
   * change, a lease, `XCLAIM … RETRYCOUNT`, a republish with a count header, a local timer.
   */
  redeliver(msg: M, delayMs: number, deliveryCount: number): void | Promise<void>
  /**
   * Hands `msg` back at once (closing): another member, or this group's next subscriber, gets it.
   * `started` tells whether its handler ran (a run abandoned after the drain timeout): that
   * delivery counts, and the next one reports one more, so a message that hangs every handler
   * meets the poison guard; a message that never started need not count.
   */
  release(msg: M, started: boolean): void | Promise<void>
  /**
   * Extends the broker's lease of messages being handled, called every `leaseMs / 3` while handlers
   * run. Leave it out where the broker has no lease (Kafka, memory) or the adapter renews leases
   * itself.
   */
  extend?(msgs: readonly M[]): void | Promise<void>
  /**
   * Publishes a dead letter (the backend's own publish). It must be kept even when nobody subscribes
   * to the dead-letter topic yet (a durable dead-letter queue, topic or stream). Rejecting makes
   * the kernel retry it later.
   */
  publishDeadLetter(input: EventInput): void | Promise<void>
  /** The exactly-once store: required when the subscription asks for `exactly-once`. */
  readonly dedupe?: DedupeStore | undefined
  /**
   * First step of closing: stop reading new messages. The kernel keeps accepting deliveries until
   * the returned promise settles (bounded by the drain timeout), so an adapter may hand over what
   * it still holds; afterwards every delivery is released at once.
   */
  stop?(): void | Promise<void>
  /** Last step of closing, after the drain: free what the subscription holds (readers, consumers). */
  dispose?(): void | Promise<void>
  /**
   * Called each time a message leaves the kernel (settled, redelivered or abandoned), its slot
   * free again: a read loop may fetch more. The kernel keeps no reference to `msg` afterwards, so
   * an adapter may reuse the object. `msg` is undefined for a first delivery handed with
   * {@link ConsumerKernel.deliverEvent} that settled without a message. Synchronous and cheap: it
   * runs on the hot path.
   */
  onSettled?(msg?: M): void
  /**
   * For an adapter whose first deliveries are the events themselves (events held in process, with
   * no broker record to ack): makes the message of `event`'s first delivery (count 1, a native id
   * of its own). With it the adapter may hand events with {@link ConsumerKernel.deliverEvent},
   * and the kernel makes the message only when it keeps the delivery (a wait, an `async` handler,
   * a failure); a first delivery settled at once is acked with {@link ackFirst}.
   */
  firstDelivery?(event: OmnibusEvent): M
  /**
   * Acks a first delivery handed with {@link ConsumerKernel.deliverEvent} whose handler returned
   * and acked synchronously: what `ack` does for its message. Synchronous; a throw is logged like
   * a failed `ack`.
   */
  ackFirst?(event: OmnibusEvent): void
}

/** Settings of one {@link ConsumerKernel}. */
export interface KernelOptions<M extends KernelMessage = KernelMessage> {
  /** The broker side. */
  readonly adapter: KernelAdapter<M>
  /** The subscription's resolved options (`resolveSubscribeOptions`). */
  readonly options: ResolvedSubscribeOptions
  readonly handler: EventHandler
  /** Unique id of the subscription (in this process). */
  readonly subscriptionId: string
  readonly logger: Logger
  /** Default drain timeout of `unsubscribe()` and `close()`. @default 10000 */
  readonly drainTimeoutMs?: number
  /**
   * How long a delivered message stays leased (the claim TTL of exactly-once, the period of
   * `extend`): the subscription's `visibilityTimeoutMs` wins over it. @default 30000
   */
  readonly leaseMs?: number
  /**
   * The member's id in exactly-once claim owners (`<memberId>:<nativeId>`): unique across
   * processes. @default `<backend>-<random UUID>`
   */
  readonly memberId?: string
  /** The group key of exactly-once records. @default the group, or the subscription id for broadcast */
  readonly dedupeGroup?: string
  /** The source of randomness of backoff jitter (tests). @default Math.random */
  readonly random?: () => number
}

function runHandler(
  runner: HandlerRunner,
  call: {
    readonly event: OmnibusEvent
    readonly attempt: number
    readonly signal: AbortSignal | SignalSource
  },
): HandlerOutcome | Promise<HandlerOutcome> {
  return runner.run(call.event, call.attempt, call.signal)
}

function endDelivery(observation: DeliveryObservation, outcome: HandlerOutcome): void {
  try {
    observation.end(outcome.kind === 'ack' ? outcome : { kind: outcome.kind, error: outcome.error })
  } catch (error) {
    instrumentationFailed('deliver', error)
  }
}

/** A message whose handling left the synchronous path: tracked for drain and abandonment. */
class Run<M extends KernelMessage> {
  readonly msg: M
  readonly event: OmnibusEvent | undefined
  /** The exactly-once claim owner while this run holds a claim. */
  owner: string | undefined = undefined
  /** Handed back after the drain timeout: its late results are ignored. */
  abandoned = false
  /** An expiring event's deadline, ended when its handler's promise settles. */
  deadline: Deadline | undefined = undefined
  /** Neighbours in the kernel's {@link RunList}. */
  prev: Run<M> | undefined = undefined
  next: Run<M> | undefined = undefined
  /** Whether it is in the kernel's {@link RunList}. */
  listed = false

  constructor(msg: M, event: OmnibusEvent | undefined) {
    this.msg = msg
    this.event = event
  }
}

/**
 * The runs in progress, as a list threaded through the runs themselves: every asynchronous handler
 * call enters and leaves it, and a set paid a hash-table insert and delete per event for it.
 */
class RunList<M extends KernelMessage> {
  head: Run<M> | undefined = undefined
  size = 0

  add(run: Run<M>): void {
    if (run.listed) return
    run.listed = true
    run.prev = undefined
    run.next = this.head
    if (this.head !== undefined) this.head.prev = run
    this.head = run
    this.size++
  }

  delete(run: Run<M>): void {
    if (!run.listed) return
    run.listed = false
    const { prev, next } = run
    if (prev === undefined) this.head = next
    else prev.next = next
    if (next !== undefined) next.prev = prev
    run.prev = undefined
    run.next = undefined
    this.size--
  }

  /** The runs, copied (so the caller may delete while it goes through them). */
  list(): Run<M>[] {
    const out: Run<M>[] = []
    for (let r = this.head; r !== undefined; r = r.next) out.push(r)
    return out
  }
}

/** When failures of one message started (for dead-letter diagnostics), kept across its retries. */
interface FailureRecord {
  first: number
  /** A dead letter this message owes: its publish failed, the next delivery retries it first. */
  owed: { readonly reason: string; readonly error: unknown; readonly attempts: number } | undefined
}

/** A close waiting for the running count to fall to `upTo`. */
interface IdleWaiter {
  readonly upTo: number
  readonly resolve: () => void
}

const OPEN = 0
const STOPPING = 1
const CLOSED = 2
const MAX_FAILURE_RECORDS = 10_000
/** Shortest wait before a `busy` exactly-once message is offered again. */
const MIN_BUSY_DELAY_MS = 50

/**
 * The consumer of one subscription: receives messages from its adapter, runs the handler and
 * settles each message. Create one per subscription; hand it every message with {@link deliver};
 * give applications its {@link subscription}.
 */
export class ConsumerKernel<M extends KernelMessage = KernelMessage> {
  /** The subscription handed to the application (and to handlers in their context). */
  readonly subscription: Subscription
  /** Aborted when the subscription closes or its drain times out. */
  readonly signal: AbortSignal
  readonly #adapter: KernelAdapter<M>
  readonly #opts: ResolvedSubscribeOptions
  readonly #logger: Logger
  readonly #runner: HandlerRunner
  readonly #controller = new AbortController()
  readonly #concurrency: number
  readonly #maxAttempts: number
  readonly #drainTimeoutMs: number
  readonly #leaseMs: number
  readonly #memberId: string
  readonly #dedupeGroup: string
  readonly #random: () => number
  /** The adapter has `onSettled` (called as its method: one call target for every kernel of a backend). */
  readonly #notifySettled: boolean
  /** At-least-once without exactly-once: the path that may settle without a promise. */
  readonly #fast: boolean
  /** The adapter has `firstDelivery` and `ackFirst`: `deliverEvent` may run without a message. */
  readonly #byEvent: boolean
  /** At-most-once: acked, then run, without a promise when both answer synchronously. */
  readonly #atMostOnce: boolean
  /** Exactly-once: claimed, run, committed and acked without a promise when all answer synchronously. */
  readonly #exactlyOnce: boolean
  /** `<memberId>:`, the start of every claim owner of this member. */
  readonly #ownerPrefix: string
  #state = OPEN
  #running = 0
  /** Messages waiting for a slot, in arrival order. */
  #waiting: M[] = []
  #waitingHead = 0
  /** Messages whose turn came (the next one of a key that was busy): before `#waiting`. */
  #ready: M[] = []
  /** Messages waiting for their partition key, per key, in order. */
  readonly #blocked = new Map<string, M[]>()
  readonly #busyKeys = new Set<string>()
  readonly #runs = new RunList<M>()
  readonly #failures = new Map<string, FailureRecord>()
  /** Failure records that owe a dead letter: while there are any, deliveries check for theirs. */
  #owed = 0
  /** Messages delivered and not started yet. */
  #queued = 0
  /** The event whose handler is being called synchronously right now. */
  #calling: OmnibusEvent | undefined = undefined
  #pumping = false
  #idleWaiters: IdleWaiter[] = []
  #freeWaiters: Array<() => void> = []
  /** Close and `whenFree` waiters: checked only when there are any. */
  #waiters = 0
  #leaseTimer: ReturnType<typeof setInterval> | undefined
  #closing: Promise<void> | undefined
  /** The handler's event a close was called from, if it was. */
  #self: OmnibusEvent | undefined
  #onAbort: (() => void) | undefined
  #expired = 0

  constructor(k: KernelOptions<M>) {
    this.#adapter = k.adapter
    this.#opts = k.options
    this.#logger = k.logger
    this.#concurrency = k.options.concurrency
    this.#maxAttempts = k.options.retry.maxAttempts
    this.#drainTimeoutMs = k.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS
    this.#leaseMs = k.options.visibilityTimeoutMs ?? k.leaseMs ?? 30_000
    this.#memberId = k.memberId ?? `${k.adapter.backend}-${randomUUID()}`
    this.#dedupeGroup = k.dedupeGroup ?? k.options.group ?? k.subscriptionId
    this.#random = k.random ?? Math.random
    this.#notifySettled = typeof k.adapter.onSettled === 'function'
    if (k.options.guarantee === 'exactly-once' && k.adapter.dedupe === undefined) {
      throw new ConfigurationError(
        `the ${k.adapter.backend} backend has no dedupe store for an exactly-once subscription: ` +
          'give its adapter a DedupeStore',
        { backend: k.adapter.backend },
      )
    }
    this.#fast = k.options.guarantee === 'at-least-once'
    this.#byEvent = typeof k.adapter.firstDelivery === 'function' && typeof k.adapter.ackFirst === 'function'
    this.#atMostOnce = k.options.guarantee === 'at-most-once'
    this.#exactlyOnce = k.options.guarantee === 'exactly-once'
    this.#ownerPrefix = `${this.#memberId}:`
    this.signal = this.#controller.signal
    const kernel = this
    this.subscription = {
      id: k.subscriptionId,
      pattern: k.options.pattern,
      group: k.options.group,
      get active() {
        return kernel.#state === OPEN
      },
      unsubscribe: () => this.close(),
    }
    this.#runner = new HandlerRunner(k.handler, this.subscription, k.logger, this.signal)
    const signal = k.options.signal
    if (signal !== undefined) {
      if (signal.aborted) {
        void this.close()
      } else {
        this.#onAbort = () => void this.close()
        signal.addEventListener('abort', this.#onAbort, { once: true })
      }
    }
  }

  /** Handlers running (or settling) now. */
  get running(): number {
    return this.#running
  }

  /** Messages delivered and not started yet (waiting for a slot or for their key). */
  get queued(): number {
    return this.#queued
  }

  /** How many more messages would start at once: what a reader should fetch next. */
  get free(): number {
    const free = this.#concurrency - this.#running - this.#queued
    return this.#state === CLOSED || free < 0 ? 0 : free
  }

  /**
   * Handlers a close in progress still waits for: the running ones, less the one it was called
   * from. An adapter's `stop` that drains what it holds waits for this to reach 0 too.
   */
  get draining(): number {
    return this.#running - (this.#self === undefined ? 0 : 1)
  }

  /** Expired events this subscription settled without running its handler (dead-lettered or dropped). */
  get expired(): number {
    return this.#expired
  }

  /** Whether the kernel takes messages (false once closing). */
  get accepting(): boolean {
    return this.#state !== CLOSED
  }

  /** Resolves when a slot frees up (`free > 0`) or the kernel closes. */
  whenFree(): Promise<void> {
    if (this.free > 0 || this.#state === CLOSED) return Promise.resolve()
    this.#waiters++
    return new Promise((resolve) => this.#freeWaiters.push(resolve))
  }

  /**
   * Hands one message to the kernel. It starts at once when a slot and its partition key are
   * free, else waits in arrival order. After close it is released to the broker at once.
   */
  deliver(msg: M): void {
    const event = msg.event
    // The usual case first, small enough to be inlined into the adapter's loop: a plain
    // at-least-once delivery of a decoded event without a partition key or schedule, a free slot
    // and nothing waiting.
    if (
      this.#fast &&
      event !== undefined &&
      event.partitionKey === undefined &&
      event.deliverAt === undefined &&
      (event.expiresAt === undefined || event.expiresAt > Date.now()) &&
      msg.deliveryCount <= this.#maxAttempts &&
      this.#startsNow()
    ) {
      this.#running++
      this.#startFast(msg, event)
      return
    }
    this.#deliverOther(msg)
  }

  /**
   * Hands `event` to the kernel as its own first delivery, for an adapter with `firstDelivery` and
   * `ackFirst` (an in-process queue): the usual delivery (at-least-once, a plain event, a free slot,
   * a handler that returns and acks at once) makes no message object; any other is made one with
   * `firstDelivery` and goes the way of {@link deliver}.
   */
  deliverEvent(event: OmnibusEvent): void {
    if (
      this.#fast &&
      this.#byEvent &&
      event.partitionKey === undefined &&
      event.deliverAt === undefined &&
      event.expiresAt === undefined &&
      instrumentation === undefined &&
      this.#startsNow()
    ) {
      this.#running++
      this.#runFirst(event)
      return
    }
    this.#deliverOther(this.#firstMessage(event))
  }

  /** #startFast for a first delivery without a message: one is made only if the run needs it. */
  #runFirst(event: OmnibusEvent): void {
    const outer = this.#calling
    this.#calling = event
    const outcome = this.#runner.runThen(event, 1, undefined, this.#ranAsync)
    this.#calling = outer
    if (outcome === ACK && this.#failures.size === 0) {
      try {
        ;(this.#adapter as Required<KernelAdapter<M>>).ackFirst(event)
      } catch (error) {
        this.#adapterFailed('ack', this.#firstMessage(event), error)
      }
      this.#finish(undefined, undefined)
      return
    }
    this.#ranFast(this.#firstMessage(event), event, outcome, undefined)
  }

  #firstMessage(event: OmnibusEvent): M {
    const adapter = this.#adapter
    if (!this.#byEvent || adapter.firstDelivery === undefined) {
      throw new TypeError(
        `${adapter.backend}: deliverEvent needs an adapter with firstDelivery and ackFirst; hand a message with deliver instead`,
      )
    }
    return adapter.firstDelivery(event)
  }

  /** A delivery may start at once: a slot free, nothing waiting, pumping or owed, not closed. */
  #startsNow(): boolean {
    return (
      this.#owed === 0 &&
      this.#running < this.#concurrency &&
      this.#queued === 0 &&
      !this.#pumping &&
      this.#state !== CLOSED
    )
  }

  #deliverOther(msg: M): void {
    if (this.#state === CLOSED) {
      this.#handBack(msg)
      return
    }
    let event = msg.event
    if (event === undefined) {
      event = this.#decode(msg)
      if (event !== undefined) msg.event = event
    }
    if (this.#running >= this.#concurrency || this.#queued > 0 || this.#pumping) {
      this.#waiting.push(msg)
      this.#queued++
      this.#pump()
      return
    }
    const key = event?.partitionKey
    if (key !== undefined) {
      if (this.#busyKeys.has(key)) {
        this.#queued++
        this.#block(key, msg)
        return
      }
      this.#busyKeys.add(key)
    }
    this.#start(msg, event)
  }

  /**
   * Stops delivery and drains: the adapter's `stop`, then the running handlers for up to
   * `timeoutMs` (never the handler this is called from, which cannot finish first), then the
   * rest is handed back and the signal aborted, then the adapter's `dispose`. Idempotent.
   */
  close(timeoutMs: number = this.#drainTimeoutMs): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    try {
      checkDrainTimeout(timeoutMs, this.#adapter.backend)
    } catch (error) {
      return Promise.reject(error)
    }
    // Decided now, synchronously: from inside a handler, currentEvent() is that handler's event.
    const self = this.#ownRun()
    this.#self = self
    this.#state = STOPPING
    this.#closing = this.#close(timeoutMs, self)
    return this.#closing
  }

  // ---- starting ----

  #decode(msg: M): OmnibusEvent | undefined {
    const body = msg.body
    if (body === undefined || body === null) return undefined
    try {
      return decodeEvent(body)
    } catch {
      return undefined
    }
  }

  #start(msg: M, event: OmnibusEvent | undefined): void {
    this.#running++
    if (
      this.#fast &&
      event !== undefined &&
      event.deliverAt === undefined &&
      (event.expiresAt === undefined || event.expiresAt > Date.now()) &&
      msg.deliveryCount <= this.#maxAttempts &&
      this.#owed === 0
    ) {
      this.#startFast(msg, event)
      return
    }
    this.#startOther(msg, event)
  }

  /**
   * A plain at-least-once delivery: run, then ack. Kept small (the rest is in #startOther) so it
   * stays inlined into a backend's delivery loop.
   */
  #startFast(msg: M, event: OmnibusEvent): void {
    if (instrumentation !== undefined || event.expiresAt !== undefined) {
      this.#startScoped(msg, event)
      return
    }
    const outer = this.#calling
    this.#calling = event
    const outcome = this.#runner.runThen(event, msg.deliveryCount, undefined, this.#ranAsync)
    this.#calling = outer
    if (outcome === ACK && this.#failures.size === 0) {
      const acked = this.#ackNow(msg)
      if (acked instanceof Promise) this.#ackLater(msg, event, acked)
      else this.#finish(msg, event.partitionKey)
      return
    }
    this.#ranFast(msg, event, outcome, undefined)
  }

  /**
   * #startFast for an expiring event or under an installed instrumentation. Apart, so the usual
   * case and the synchronous handler's run it calls fit V8's inlining budget together.
   */
  #startScoped(msg: M, event: OmnibusEvent): void {
    if (instrumentation !== undefined) {
      this.#startObserved(msg, event)
      return
    }
    const outer = this.#calling
    this.#calling = event
    // An expiring event's handler gets a signal that aborts at expiresAt, made only if it reads it.
    const deadline = new Deadline(event.expiresAt as number, this.signal)
    const outcome = this.#runner.runThen(event, msg.deliveryCount, deadline, this.#ranAsync)
    this.#calling = outer
    if (outcome === ACK && this.#failures.size === 0) {
      deadline.end()
      const acked = this.#ackNow(msg)
      if (acked instanceof Promise) this.#ackLater(msg, event, acked)
      else this.#finish(msg, event.partitionKey)
      return
    }
    this.#ranFast(msg, event, outcome, deadline)
  }

  /** #startFast with an instrumentation installed: the run is observed by its hook. */
  #startObserved(msg: M, event: OmnibusEvent): void {
    const outer = this.#calling
    this.#calling = event
    const expiresAt = event.expiresAt
    const deadline = expiresAt === undefined ? undefined : new Deadline(expiresAt, this.signal)
    let outcome: HandlerOutcome | Promise<HandlerOutcome>
    try {
      outcome = this.#observed(event, msg.deliveryCount, deadline ?? this.signal)
    } catch (error) {
      deadline?.end()
      throw error
    } finally {
      this.#calling = outer
    }
    this.#ranFast(msg, event, outcome, deadline)
  }

  /** The rest of #startFast: an async handler, a failure, an instrumented run, an async ack. */
  #ranFast(
    msg: M,
    event: OmnibusEvent,
    outcome: HandlerOutcome | PendingCall<Run<M>> | Promise<HandlerOutcome>,
    deadline: Deadline | undefined,
  ): void {
    if (outcome instanceof PendingCall) {
      const run = new Run(msg, event)
      run.deadline = deadline
      this.#awaitRun(run)
      outcome.owner = run
      return
    }
    if (outcome instanceof Promise) {
      const run = new Run(msg, event)
      run.deadline = deadline
      this.#awaitRun(run)
      outcome.then(
        (o) => this.#ranAsync(o, run),
        (error: unknown) => {
          run.deadline?.end()
          this.#watch(run, Promise.reject(error))
        },
      )
      return
    }
    if (deadline !== undefined) deadline.end()
    if (outcome.kind === 'ack') {
      this.#ackRan(msg, event)
      return
    }
    const run = new Run(msg, event)
    this.#track(run, () => this.#settle(run, outcome))
  }

  #startOther(msg: M, event: OmnibusEvent | undefined): void {
    if (event === undefined) {
      this.#track(new Run(msg, undefined), (run) => this.#foreign(run))
      return
    }
    if ((event.deliverAt !== undefined || event.expiresAt !== undefined) && this.#scheduled(msg, event))
      return
    if (this.#fast && msg.deliveryCount <= this.#maxAttempts && this.#owed === 0) {
      this.#startFast(msg, event)
      return
    }
    if (this.#atMostOnce) {
      this.#startAtMostOnce(msg, event)
      return
    }
    if (this.#exactlyOnce && msg.deliveryCount <= this.#maxAttempts && this.#owed === 0) {
      this.#startExactlyOnce(msg, event)
      return
    }
    this.#track(new Run(msg, event), (run) => this.#slow(run, event))
  }

  /**
   * An at-least-once handler's promise settled. One reaction per event: a plain ack settles inside
   * it, without #settle's promises.
   */
  readonly #ranAsync = (o: HandlerOutcome, run: Run<M>): void => {
    if (run.deadline !== undefined) run.deadline.end()
    if (run.abandoned) return
    const msg = run.msg
    if (o.kind === 'ack' && this.#failures.size === 0) {
      if (instrumentation !== undefined) this.#settled(run.event as OmnibusEvent, msg.deliveryCount, 'acked')
      const acked = this.#ackNow(msg)
      if (acked instanceof Promise) {
        this.#watch(
          run,
          acked.catch((error: unknown) => this.#adapterFailed('ack', msg, error)),
        )
      } else this.#untrack(run)
      return
    }
    this.#watch(run, this.#settle(run, o))
  }

  /** Keeps `run` in the running set while its handler's promise is pending. */
  #awaitRun(run: Run<M>): void {
    this.#runs.add(run)
    if (this.#runs.size === 1) this.#startLeaseTimer()
  }

  /**
   * A run that ended in `ack` (and, for exactly-once, was committed): acknowledged, and finished
   * at once when the adapter acks synchronously.
   */
  #ackRan(msg: M, event: OmnibusEvent): void {
    if (this.#failures.size > 0) this.#failures.delete(msg.nativeId)
    if (instrumentation !== undefined) this.#settled(event, msg.deliveryCount, 'acked')
    const acked = this.#ackNow(msg)
    if (acked instanceof Promise) this.#ackLater(msg, event, acked)
    else this.#finish(msg, event.partitionKey)
  }

  /** Keeps `msg` running until the adapter's asynchronous ack settles. */
  #ackLater(msg: M, event: OmnibusEvent, acked: Promise<void>): void {
    this.#track(new Run(msg, event), () =>
      acked.catch((error: unknown) => this.#adapterFailed('ack', msg, error)),
    )
  }

  /**
   * At-most-once: acknowledged, then run once. While the adapter acks synchronously and the
   * handler returns a non-promise, no promise is made (telemetry subscriptions take this path).
   */
  #startAtMostOnce(msg: M, event: OmnibusEvent): void {
    let acked: void | Promise<void>
    try {
      acked = this.#adapter.ack(msg)
    } catch (error) {
      // Not acknowledged: the broker may deliver it again, and running it now could run it twice.
      this.#adapterFailed('ack', msg, error)
      this.#finish(msg, event.partitionKey)
      return
    }
    if (acked instanceof Promise) {
      const pending = acked
      this.#track(new Run(msg, event), (run) => this.#runAtMostOnce(run, event, pending))
      return
    }
    let outcome: HandlerOutcome | Promise<HandlerOutcome>
    try {
      outcome = this.#call(event, msg.deliveryCount)
    } catch (error) {
      this.#track(new Run(msg, event), () => Promise.reject(error))
      return
    }
    if (outcome instanceof Promise) {
      const run = new Run(msg, event)
      this.#awaitRun(run)
      outcome.then(
        (o) => {
          if (run.abandoned) return
          this.#ranAtMostOnce(msg, event, o, run)
          this.#untrack(run)
        },
        (error: unknown) => this.#watch(run, Promise.reject(error)),
      )
      return
    }
    this.#ranAtMostOnce(msg, event, outcome, undefined)
    this.#finish(msg, event.partitionKey)
  }

  /** At-most-once after an ack that returned a promise (or on the slow path): run once if it succeeded. */
  async #runAtMostOnce(run: Run<M>, event: OmnibusEvent, acked: void | Promise<void>): Promise<void> {
    const msg = run.msg
    // Acknowledged before the handler runs: if the ack fails the broker may deliver it again,
    // and running it now could run it twice.
    try {
      await acked
    } catch (error) {
      this.#adapterFailed('ack', msg, error)
      return
    }
    if (run.abandoned) return
    this.#ranAtMostOnce(msg, event, await this.#call(event, msg.deliveryCount), run)
  }

  /** What follows an at-most-once run: a failure is logged, never redelivered. */
  #ranAtMostOnce(msg: M, event: OmnibusEvent, outcome: HandlerOutcome, run: Run<M> | undefined): void {
    if (outcome.kind === 'retry') {
      safeLog(this.#logger, 'warn', 'at-most-once handler failed; the event is not redelivered', {
        ...this.#fields(run ?? new Run(msg, event), outcome.error),
      })
    }
    if (instrumentation !== undefined) {
      this.#settled(event, msg.deliveryCount, outcome.kind === 'ack' ? 'acked' : 'dropped')
    }
  }

  /**
   * Exactly-once: claim, run, commit, ack. While the dedupe store and the adapter answer
   * synchronously (the in-process store) and the handler returns a non-promise, no promise is made.
   */
  #startExactlyOnce(msg: M, event: OmnibusEvent): void {
    const owner = this.#ownerPrefix + msg.nativeId
    const store = this.#adapter.dedupe as DedupeStore
    let claim: ClaimResult | Promise<ClaimResult>
    try {
      claim = store.claim(this.#dedupeGroup, event.id, owner, this.#leaseMs)
    } catch (error) {
      claim = Promise.reject(error)
    }
    if (claim !== 'claimed') {
      if (claim === 'done') {
        const acked = this.#ackNow(msg)
        if (acked instanceof Promise) {
          this.#track(new Run(msg, event), () =>
            acked.catch((error: unknown) => this.#adapterFailed('ack', msg, error)),
          )
        } else this.#finish(msg, event.partitionKey)
        return
      }
      const answer = claim
      this.#track(new Run(msg, event), (run) => this.#runClaimed(run, event, owner, answer))
      return
    }
    let outcome: HandlerOutcome | Promise<HandlerOutcome>
    try {
      outcome = this.#call(event, msg.deliveryCount)
    } catch (error) {
      const run = new Run(msg, event)
      this.#track(run, async () => {
        await this.#releaseClaim(event, owner)
        throw error
      })
      return
    }
    const run = outcome instanceof Promise || outcome.kind !== 'ack' ? new Run(msg, event) : undefined
    if (run !== undefined) {
      run.owner = owner
      if (outcome instanceof Promise) {
        this.#awaitRun(run)
        outcome.then(
          (o) => {
            if (!run.abandoned) this.#watch(run, this.#settle(run, o))
          },
          (error: unknown) => this.#watch(run, Promise.reject(error)),
        )
      } else {
        const failed = outcome
        this.#track(run, () => this.#settle(run, failed))
      }
      return
    }
    let committed: void | Promise<void>
    try {
      committed = store.commit(this.#dedupeGroup, event.id, owner)
    } catch (error) {
      committed = Promise.reject(error)
    }
    if (committed instanceof Promise) {
      const commit = committed
      this.#track(new Run(msg, event), (r) => this.#ackCommitted(r, event, commit))
      return
    }
    this.#ackRan(msg, event)
  }

  /** Acks after a commit that returned a promise (the effect happened: acked even if it failed). */
  async #ackCommitted(run: Run<M>, event: OmnibusEvent, committed: Promise<void>): Promise<void> {
    try {
      await committed
    } catch (error) {
      this.#commitFailed(run, error)
    }
    if (this.#failures.size > 0) this.#failures.delete(run.msg.nativeId)
    if (instrumentation !== undefined) this.#settled(event, run.msg.deliveryCount, 'acked')
    await this.#ack(run)
  }

  #commitFailed(run: Run<M>, error: unknown): void {
    // The effect happened: acknowledging is right; without the record a re-published copy of
    // this id may run again, which is what the log says.
    safeLog(this.#logger, 'error', 'exactly-once commit failed; a later copy of this id may run again', {
      ...this.#fields(run, error),
    })
  }

  /** Exactly-once after the claim's answer (or its promise): ack a done id, offer a busy one later, else run. */
  async #runClaimed(
    run: Run<M>,
    event: OmnibusEvent,
    owner: string,
    answer: ClaimResult | Promise<ClaimResult>,
  ): Promise<void> {
    const msg = run.msg
    let claim: ClaimResult
    try {
      claim = await answer
    } catch (error) {
      safeLog(this.#logger, 'warn', 'exactly-once claim failed; the message is offered again later', {
        ...this.#fields(run, error),
      })
      await this.#redeliver(run, this.#busyDelay(), msg.deliveryCount)
      return
    }
    if (run.abandoned) {
      if (claim === 'claimed') await this.#releaseClaim(event, owner)
      return
    }
    if (claim === 'done') {
      await this.#ack(run)
      return
    }
    if (claim === 'busy') {
      await this.#redeliver(run, this.#busyDelay(), msg.deliveryCount)
      return
    }
    run.owner = owner
    const outcome = await this.#call(event, msg.deliveryCount)
    if (run.abandoned) return
    await this.#settle(run, outcome)
  }

  /** Runs `work` for `run`, keeping it in the running set until it settles. */
  #track(run: Run<M>, work: (run: Run<M>) => void | Promise<void>): void {
    this.#runs.add(run)
    if (this.#runs.size === 1) this.#startLeaseTimer()
    let done: void | Promise<void>
    try {
      done = work(run)
    } catch (error) {
      safeLog(this.#logger, 'error', 'the consumer kernel failed on a message', this.#fields(run, error))
      done = undefined
    }
    if (done instanceof Promise) this.#watch(run, done)
    else this.#untrack(run)
  }

  /** Keeps `run` in the running set until `done` settles. */
  #watch(run: Run<M>, done: Promise<void>): void {
    done.then(
      () => this.#untrack(run),
      (error: unknown) => {
        safeLog(this.#logger, 'error', 'the consumer kernel failed on a message', this.#fields(run, error))
        this.#untrack(run)
      },
    )
  }

  #untrack(run: Run<M>): void {
    if (run.abandoned) return
    // The lease timer stops at its next tick that finds no run (or at close), not here: with one
    // handler at a time the set empties after every event, and a timer per event costs more than
    // the tick.
    this.#runs.delete(run)
    this.#finish(run.msg, run.event?.partitionKey)
  }

  /** The path of everything but a plain at-least-once delivery. */
  async #slow(run: Run<M>, event: OmnibusEvent): Promise<void> {
    const msg = run.msg
    const opts = this.#opts
    if (opts.guarantee === 'at-most-once') {
      let acked: void | Promise<void>
      try {
        acked = this.#adapter.ack(msg)
      } catch (error) {
        acked = Promise.reject(error)
      }
      await this.#runAtMostOnce(run, event, acked)
      return
    }
    const record = this.#owed === 0 ? undefined : this.#failures.get(msg.nativeId)
    const owed = record?.owed
    if (record !== undefined && owed !== undefined) {
      record.owed = undefined
      this.#owed--
      await this.#deadLetter(run, event, owed.reason, owed.error, owed.attempts)
      return
    }
    if (msg.deliveryCount > this.#maxAttempts) {
      await this.#deadLetter(
        run,
        event,
        `delivered ${msg.deliveryCount} times without being settled, more than maxAttempts ` +
          `(${this.#maxAttempts}): a consumer crashed, hung or lost its lease while handling it`,
        undefined,
        msg.deliveryCount - 1,
      )
      return
    }
    if (opts.guarantee === 'exactly-once') {
      const owner = this.#ownerPrefix + msg.nativeId
      let claim: ClaimResult | Promise<ClaimResult>
      try {
        claim = (this.#adapter.dedupe as DedupeStore).claim(this.#dedupeGroup, event.id, owner, this.#leaseMs)
      } catch (error) {
        claim = Promise.reject(error)
      }
      await this.#runClaimed(run, event, owner, claim)
      return
    }
    const outcome = await this.#call(event, msg.deliveryCount)
    if (run.abandoned) return
    await this.#settle(run, outcome)
  }

  /**
   * Calls the handler synchronously (its outcome may be a promise); `#calling` names it meanwhile.
   * An expiring event's handler gets a signal that aborts at `expiresAt` while it runs.
   */
  #call(event: OmnibusEvent, attempt: number): HandlerOutcome | Promise<HandlerOutcome> {
    const expiresAt = event.expiresAt
    const deadline = expiresAt === undefined ? undefined : new Deadline(expiresAt, this.signal)
    const outer = this.#calling
    this.#calling = event
    let outcome: HandlerOutcome | Promise<HandlerOutcome>
    try {
      outcome =
        instrumentation === undefined
          ? this.#runner.run(event, attempt, deadline)
          : this.#observed(event, attempt, deadline ?? this.signal)
    } catch (error) {
      deadline?.end()
      throw error
    } finally {
      this.#calling = outer
    }
    if (deadline === undefined) return outcome
    if (!(outcome instanceof Promise)) {
      deadline.end()
      return outcome
    }
    return outcome.then(
      (o) => {
        deadline.end()
        return o
      },
      (error: unknown) => {
        deadline.end()
        throw error
      },
    )
  }

  // ---- schedule ----

  /**
   * Settles a message that must not run now: before its `deliverAt` it is redelivered then (the
   * same delivery count: not an attempt); after its `expiresAt` it expires. Returns false when
   * the message may run.
   */
  #scheduled(msg: M, event: OmnibusEvent): boolean {
    const now = Date.now()
    const deliverAt = event.deliverAt
    if (deliverAt !== undefined && deliverAt > now) {
      const wait = Math.min(deliverAt - now, MAX_TIMER_DELAY_MS)
      this.#track(new Run(msg, event), (run) => this.#redeliver(run, wait, msg.deliveryCount))
      return true
    }
    const expiresAt = event.expiresAt
    if (expiresAt !== undefined && expiresAt <= now) {
      this.#track(new Run(msg, event), (run) => this.#expire(run, event, expiresAt))
      return true
    }
    return false
  }

  /** An expired message: dead-lettered with reason `expired`, or dropped, and reported once. */
  async #expire(run: Run<M>, event: OmnibusEvent, expiresAt: number): Promise<void> {
    const msg = run.msg
    // A dead letter this message still owes is superseded: it is an expired event now.
    const record = this.#owed === 0 ? undefined : this.#failures.get(msg.nativeId)
    if (record?.owed !== undefined) {
      record.owed = undefined
      this.#owed--
    }
    const attempts = msg.deliveryCount - 1
    const error = new TimeoutError(
      `the event expired at ${isoTime(expiresAt)} (expiresAt), ${Date.now() - expiresAt} ms before this delivery`,
      { code: 'EXPIRED' },
    )
    if (this.#opts.expired === 'drop') {
      safeLog(this.#logger, 'warn', "expired event dropped (expired: 'drop')", {
        ...this.#fields(run, error),
        reason: EXPIRED_REASON,
      })
      if (this.#failures.size > 0) this.#failures.delete(msg.nativeId)
      if (instrumentation !== undefined) this.#settled(event, attempts, 'expired')
      await this.#ack(run)
    } else if (!(await this.#deadLetter(run, event, EXPIRED_REASON, error, attempts, 'expired'))) {
      // The letter could not be published: the message comes back and expires again then.
      return
    }
    if (run.abandoned) return
    this.#expired++
    const onExpired = this.#opts.onExpired
    if (onExpired === undefined) return
    try {
      onExpired(event)
    } catch (callbackError) {
      safeLog(this.#logger, 'warn', 'onExpired threw; the event is settled all the same', {
        ...this.#fields(run, callbackError),
      })
    }
  }

  // ---- settling ----

  /** Applies a handler's outcome. */
  async #settle(run: Run<M>, outcome: HandlerOutcome): Promise<void> {
    const event = run.event as OmnibusEvent
    const msg = run.msg
    if (outcome.kind === 'ack') {
      if (run.owner !== undefined) {
        const owner = run.owner
        run.owner = undefined
        try {
          await (this.#adapter.dedupe as DedupeStore).commit(this.#dedupeGroup, event.id, owner)
        } catch (error) {
          this.#commitFailed(run, error)
        }
      }
      if (this.#failures.size > 0) this.#failures.delete(msg.nativeId)
      if (instrumentation !== undefined) this.#settled(event, msg.deliveryCount, 'acked')
      await this.#ack(run)
      return
    }
    if (run.owner !== undefined) {
      const owner = run.owner
      run.owner = undefined
      await this.#releaseClaim(event, owner)
    }
    const attempt = msg.deliveryCount
    const decision = decideFailure(this.#opts, attempt, outcome, this.#random)
    if (decision.action === 'retry') {
      this.#recordFailure(msg.nativeId)
      if (instrumentation !== undefined) this.#settled(event, attempt, 'retried')
      await this.#redeliver(run, decision.delayMs, attempt + 1)
      return
    }
    if (decision.action === 'drop') {
      safeLog(this.#logger, 'warn', 'event dropped after its last attempt (deadLetter: false)', {
        ...this.#fields(run, outcome.error),
        reason: decision.reason,
      })
      if (this.#failures.size > 0) this.#failures.delete(msg.nativeId)
      if (instrumentation !== undefined) this.#settled(event, attempt, 'dropped')
      await this.#ack(run)
      return
    }
    await this.#deadLetter(run, event, decision.reason, outcome.error, attempt)
  }

  /** Dead-letters `event` (or drops it: `deadLetter: false`, or a letter failing on its own topic), then acks. */
  async #deadLetter(
    run: Run<M>,
    event: OmnibusEvent,
    reason: string,
    error: unknown,
    attempts: number,
    settleAs?: SettleOutcome,
  ): Promise<boolean> {
    const msg = run.msg
    const topic = this.#opts.deadLetter
    if (topic === false) {
      safeLog(this.#logger, 'warn', 'event dropped instead of dead-lettered (deadLetter: false)', {
        ...this.#fields(run, error),
        reason,
      })
    } else if (event.topic === topic) {
      // A failing handler of the dead-letter topic itself: dead-lettering again would feed the
      // same handler forever.
      safeLog(this.#logger, 'error', 'a dead letter failed in its own handler and is dropped', {
        ...this.#fields(run, error),
        reason,
      })
    } else {
      const now = Date.now()
      const record = this.#failures.size === 0 ? undefined : this.#failures.get(msg.nativeId)
      const input = deadLetterInput(event, topic, {
        reason,
        group: this.#opts.group,
        attempts,
        firstFailureAt: record?.first ?? now,
        lastFailureAt: now,
        error,
        backend: this.#adapter.backend,
      })
      try {
        await this.#publishDeadLetter(input)
      } catch (publishError) {
        safeLog(this.#logger, 'error', 'dead letter could not be published; it is retried later', {
          ...this.#fields(run, publishError),
          reason,
        })
        const owing = this.#recordFailure(msg.nativeId)
        if (owing.owed === undefined) this.#owed++
        owing.owed = { reason, error, attempts }
        await this.#redeliver(
          run,
          backoffDelay(this.#opts.retry, attempts, this.#random),
          msg.deliveryCount + 1,
        )
        return false
      }
      safeLog(this.#logger, 'warn', 'event dead-lettered', {
        ...this.#fields(run, error),
        reason,
        deadLetter: topic,
      })
    }
    if (this.#failures.size > 0) this.#failures.delete(msg.nativeId)
    if (instrumentation !== undefined) {
      this.#settled(
        event,
        attempts,
        settleAs ?? (topic === false || event.topic === topic ? 'dropped' : 'dead-lettered'),
      )
    }
    await this.#ack(run)
    return true
  }

  /** The adapter's dead-letter publish, seen by the installed instrumentation as a publish of its own. */
  #publishDeadLetter(input: EventInput): void | Promise<void> {
    if (instrumentation === undefined) return this.#adapter.publishDeadLetter(input)
    return instrumentedPublish(this.#adapter.backend, 'dead-letter', [input], async (inputs) => {
      await this.#adapter.publishDeadLetter(inputs[0] as EventInput)
      return undefined
    })
  }

  /** Runs the handler inside the installed instrumentation's delivery observation. */
  #observed(
    event: OmnibusEvent,
    attempt: number,
    signal: AbortSignal | SignalSource,
  ): HandlerOutcome | Promise<HandlerOutcome> {
    const hook = instrumentation as Instrumentation
    if (hook.isActive?.() === false) return this.#runner.run(event, attempt, signal)
    let obs: DeliveryObservation | undefined
    try {
      obs = hook.deliver({
        backend: this.#adapter.backend,
        event,
        subscription: this.subscription,
        attempt,
        guarantee: this.#opts.guarantee,
      })
    } catch (error) {
      instrumentationFailed('deliver', error)
    }
    if (obs === undefined) return this.#runner.run(event, attempt, signal)
    const observation = obs
    const outcome = observation.run(runHandler, this.#runner, { event, attempt, signal })
    if (outcome instanceof Promise) {
      return outcome.then((o) => {
        endDelivery(observation, o)
        return o
      })
    }
    endDelivery(observation, outcome)
    return outcome
  }

  /** Tells the installed instrumentation how a message was settled. */
  #settled(event: OmnibusEvent, attempt: number, outcome: SettleOutcome): void {
    const hook = instrumentation
    if (hook === undefined || hook.isActive?.() === false) return
    try {
      hook.settle({
        backend: this.#adapter.backend,
        event,
        subscription: this.subscription,
        attempt,
        outcome,
      })
    } catch (error) {
      instrumentationFailed('settle', error)
    }
  }

  /** Dead-letters an undecodable message as its stand-in event. */
  async #foreign(run: Run<M>): Promise<void> {
    const msg = run.msg
    let error: unknown = new Error('the message has no body')
    if (msg.body !== undefined && msg.body !== null) {
      try {
        decodeEvent(msg.body)
      } catch (e) {
        error = e
      }
    }
    const standIn = foreignEvent({
      backend: this.#adapter.backend,
      nativeId: msg.nativeId,
      topic: msg.topic,
      body: msg.body ?? null,
      ...(msg.time === undefined ? {} : { time: msg.time }),
    })
    if (this.#opts.guarantee === 'at-most-once') {
      safeLog(this.#logger, 'warn', 'undecodable message dropped (at-most-once)', {
        ...this.#fields(run, error),
        reason: foreignReason(error),
      })
      await this.#ack(run)
      return
    }
    await this.#deadLetter(run, standIn, foreignReason(error), error, msg.deliveryCount)
  }

  /** The fast path's ack: a synchronous adapter answers without a promise. */
  #ackNow(msg: M): void | Promise<void> {
    try {
      return this.#adapter.ack(msg)
    } catch (error) {
      this.#adapterFailed('ack', msg, error)
      return undefined
    }
  }

  async #ack(run: Run<M>): Promise<void> {
    if (run.abandoned) return
    try {
      await this.#adapter.ack(run.msg)
    } catch (error) {
      this.#adapterFailed('ack', run.msg, error)
    }
  }

  async #redeliver(run: Run<M>, delayMs: number, deliveryCount: number): Promise<void> {
    if (run.abandoned) return
    try {
      await this.#adapter.redeliver(run.msg, delayMs, deliveryCount)
    } catch (error) {
      this.#adapterFailed('redeliver', run.msg, error)
    }
  }

  async #releaseClaim(event: OmnibusEvent, owner: string): Promise<void> {
    try {
      await (this.#adapter.dedupe as DedupeStore).release(this.#dedupeGroup, event.id, owner)
    } catch (error) {
      // The claim expires after its TTL; until then a redelivery finds the id busy.
      safeLog(this.#logger, 'warn', 'exactly-once release failed; the claim expires by itself', {
        id: event.id,
        error: describeError(error),
      })
    }
  }

  /** Hands a message back to the broker without running it (closing). */
  #handBack(msg: M, started = false): void {
    try {
      const r = this.#adapter.release(msg, started)
      if (r instanceof Promise) r.catch((error: unknown) => this.#adapterFailed('release', msg, error))
    } catch (error) {
      this.#adapterFailed('release', msg, error)
    }
  }

  #recordFailure(nativeId: string): FailureRecord {
    let r = this.#failures.get(nativeId)
    if (r === undefined) {
      if (this.#failures.size >= MAX_FAILURE_RECORDS) {
        const oldest = this.#failures.keys().next().value as string
        if (this.#failures.get(oldest)?.owed !== undefined) this.#owed--
        this.#failures.delete(oldest)
      }
      r = { first: Date.now(), owed: undefined }
      this.#failures.set(nativeId, r)
    }
    return r
  }

  #busyDelay(): number {
    return Math.max(MIN_BUSY_DELAY_MS, this.#opts.retry.initialDelayMs)
  }

  #adapterFailed(what: string, msg: M, error: unknown): void {
    safeLog(
      this.#logger,
      'warn',
      `${this.#adapter.backend}: ${what} failed; the broker redelivers the message`,
      {
        subscription: this.subscription.id,
        nativeId: msg.nativeId,
        topic: msg.topic,
        error: describeError(error),
      },
    )
  }

  #fields(run: Run<M>, error: unknown): Record<string, unknown> {
    const fields: Record<string, unknown> = {
      subscription: this.subscription.id,
      pattern: this.#opts.pattern,
      topic: run.event?.topic ?? run.msg.topic,
      id: run.event?.id,
      nativeId: run.msg.nativeId,
    }
    if (this.#opts.group !== undefined) fields.group = this.#opts.group
    if (error !== undefined) fields.error = describeError(error)
    return fields
  }

  // ---- slots and keys ----

  #block(key: string, msg: M): void {
    const list = this.#blocked.get(key)
    if (list === undefined) this.#blocked.set(key, [msg])
    else list.push(msg)
  }

  /** One message is settled: its slot and key free up, and the next waiting ones start. */
  #finish(msg: M | undefined, key: string | undefined): void {
    this.#running--
    // The usual case (no key, nothing waiting) stays small enough to be inlined.
    if (key !== undefined || this.#queued > 0 || this.#waiters > 0) this.#passOn(key)
    if (this.#notifySettled) this.#adapter.onSettled?.(msg)
  }

  /** After a message settled: its key passes on, waiting messages start, waiters are told. */
  #passOn(key: string | undefined): void {
    if (key !== undefined) {
      const list = this.#blocked.get(key)
      if (list === undefined) this.#busyKeys.delete(key)
      else {
        // The key stays busy: it passes to the next message of that key.
        this.#ready.push(list.shift() as M)
        if (list.length === 0) this.#blocked.delete(key)
      }
    }
    if (this.#queued > 0) this.#pump()
    if (this.#waiters > 0) this.#wake()
  }

  /** Resolves the close and `whenFree` waiters whose condition now holds. */
  #wake(): void {
    if (this.#idleWaiters.length > 0) this.#notifyIdle()
    if (this.#freeWaiters.length > 0 && this.free > 0) {
      const waiters = this.#freeWaiters
      this.#freeWaiters = []
      for (const w of waiters) w()
    }
    this.#waiters = this.#idleWaiters.length + this.#freeWaiters.length
  }

  /** Starts waiting messages while slots are free; a loop, so synchronous handlers do not recurse. */
  #pump(): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.#running < this.#concurrency && this.#state !== CLOSED) {
        let msg: M | undefined
        if (this.#ready.length > 0) {
          // Its key was passed on to it by #finish.
          msg = this.#ready.shift() as M
        } else {
          msg = this.#takeWaiting()
          if (msg === undefined) break
        }
        this.#queued--
        this.#start(msg, msg.event)
      }
    } finally {
      this.#pumping = false
    }
  }

  #takeWaiting(): M | undefined {
    while (this.#waitingHead < this.#waiting.length) {
      const msg = this.#waiting[this.#waitingHead] as M
      this.#waiting[this.#waitingHead++] = undefined as unknown as M
      if (this.#waitingHead === this.#waiting.length) {
        this.#waiting = []
        this.#waitingHead = 0
      }
      const key = msg.event?.partitionKey
      if (key !== undefined) {
        if (this.#busyKeys.has(key)) {
          this.#block(key, msg)
          continue
        }
        this.#busyKeys.add(key)
      }
      return msg
    }
    return undefined
  }

  // ---- leases ----

  #startLeaseTimer(): void {
    if (this.#leaseTimer !== undefined) return
    if (this.#adapter.extend === undefined && this.#opts.guarantee !== 'exactly-once') return
    this.#leaseTimer = setInterval(() => this.#extendLeases(), Math.max(10, Math.floor(this.#leaseMs / 3)))
    this.#leaseTimer.unref?.()
  }

  #stopLeaseTimer(): void {
    if (this.#leaseTimer === undefined) return
    clearInterval(this.#leaseTimer)
    this.#leaseTimer = undefined
  }

  #extendLeases(): void {
    if (this.#runs.size === 0) {
      this.#stopLeaseTimer()
      return
    }
    const msgs: M[] = []
    for (const run of this.#runs.list()) {
      msgs.push(run.msg)
      const owner = run.owner
      if (owner !== undefined && run.event !== undefined) {
        const id = run.event.id
        Promise.resolve()
          .then(() =>
            (this.#adapter.dedupe as DedupeStore).claim(this.#dedupeGroup, id, owner, this.#leaseMs),
          )
          .then(
            (r) => {
              if (r !== 'claimed' && run.owner === owner) {
                safeLog(this.#logger, 'warn', `exactly-once claim lost while the handler runs (${r})`, {
                  ...this.#fields(run, undefined),
                })
              }
            },
            (error: unknown) => {
              safeLog(
                this.#logger,
                'warn',
                'exactly-once claim could not be extended',
                this.#fields(run, error),
              )
            },
          )
      }
    }
    const extend = this.#adapter.extend
    if (extend === undefined || msgs.length === 0) return
    Promise.resolve()
      .then(() => extend.call(this.#adapter, msgs))
      .catch((error: unknown) => {
        safeLog(this.#logger, 'warn', `${this.#adapter.backend}: lease extension failed`, {
          subscription: this.subscription.id,
          error: describeError(error),
        })
      })
  }

  // ---- closing ----

  /** The run (or synchronous call) of this subscription that the caller is inside of, if any. */
  #ownRun(): OmnibusEvent | undefined {
    const current = currentEvent()
    if (current === undefined) return undefined
    if (this.#calling === current) return current
    for (let run = this.#runs.head; run !== undefined; run = run.next)
      if (run.event === current) return current
    return undefined
  }

  #whenIdle(upTo: number): Promise<void> {
    if (this.#running <= upTo) return Promise.resolve()
    this.#waiters++
    return new Promise((resolve) => this.#idleWaiters.push({ upTo, resolve }))
  }

  #notifyIdle(): void {
    const still: IdleWaiter[] = []
    for (const w of this.#idleWaiters) {
      if (this.#running <= w.upTo) w.resolve()
      else still.push(w)
    }
    this.#idleWaiters = still
    this.#waiters = this.#idleWaiters.length + this.#freeWaiters.length
  }

  async #close(timeoutMs: number, self: OmnibusEvent | undefined): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const left = () => Math.max(0, deadline - Date.now())
    const signal = this.#opts.signal
    if (signal !== undefined && this.#onAbort !== undefined)
      signal.removeEventListener('abort', this.#onAbort)
    await this.#step('stop', () => this.#adapter.stop?.(), left())
    this.#state = CLOSED
    for (const w of this.#freeWaiters) w()
    this.#freeWaiters = []
    this.#waiters = this.#idleWaiters.length
    // Not started: back to the broker, uncounted.
    const unstarted: M[] = [...this.#ready]
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) unstarted.push(this.#waiting[i] as M)
    for (const list of this.#blocked.values()) unstarted.push(...list)
    this.#ready = []
    this.#waiting = []
    this.#waitingHead = 0
    this.#blocked.clear()
    this.#queued = 0
    for (const msg of unstarted) this.#handBack(msg)
    const own = self === undefined ? 0 : 1
    if (this.#running > own && !(await settlesWithin(this.#whenIdle(own), left()))) {
      this.#controller.abort(
        new Error(
          `the ${this.#adapter.backend} backend stopped waiting for this handler after ${timeoutMs} ms`,
        ),
      )
      const cut = this.#abandon(self)
      if (cut > 0) {
        const group = this.#opts.group
        const where =
          group === undefined
            ? 'their events are not redelivered to this subscription'
            : `their events go back to group "${group}"`
        safeLog(this.#logger, 'warn', `${cut} handler(s) still running after ${timeoutMs} ms; ${where}`, {
          subscription: this.subscription.id,
          pattern: this.#opts.pattern,
        })
      }
    }
    this.#stopLeaseTimer()
    if (!this.#controller.signal.aborted) this.#controller.abort(new Error('the subscription is closed'))
    await this.#step('dispose', () => this.#adapter.dispose?.(), Math.max(left(), 1_000))
  }

  async #step(name: string, fn: () => void | Promise<void>, timeoutMs: number): Promise<void> {
    try {
      const r = fn()
      if (r instanceof Promise && !(await settlesWithin(r, timeoutMs))) {
        safeLog(
          this.#logger,
          'warn',
          `${this.#adapter.backend}: ${name} did not finish within ${timeoutMs} ms`,
          {
            subscription: this.subscription.id,
          },
        )
      }
    } catch (error) {
      safeLog(this.#logger, 'warn', `${this.#adapter.backend}: ${name} failed`, {
        subscription: this.subscription.id,
        error: describeError(error),
      })
    }
  }

  /** Gives up on running handlers (drain timeout): their messages go back to the broker. */
  #abandon(self: OmnibusEvent | undefined): number {
    let n = 0
    for (const run of this.#runs.list()) {
      if (self !== undefined && run.event === self) continue
      run.abandoned = true
      this.#runs.delete(run)
      this.#running--
      n++
      if (run.event?.partitionKey !== undefined) this.#busyKeys.delete(run.event.partitionKey)
      if (run.owner !== undefined && run.event !== undefined) void this.#releaseClaim(run.event, run.owner)
      // At-most-once messages were acknowledged before their handler ran: nothing to hand back.
      if (this.#opts.guarantee !== 'at-most-once') this.#handBack(run.msg, true)
      this.#adapter.onSettled?.(run.msg)
    }
    this.#notifyIdle()
    return n
  }
}
