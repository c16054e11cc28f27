/**
 * One subscription reading one queue, as an adapter of core's consumer kernel: it long-polls up to
 * ten messages at a time and hands each to the kernel, which decides; the adapter only talks to
 * SQS. Ack = `DeleteMessage` (batched); redeliver later = a local timer for short delays (the
 * message stays leased), else `ChangeMessageVisibility` to the delay; release = visibility 0;
 * every held message is kept invisible by a heartbeat. The delivery count is
 * `ApproximateReceiveCount`, corrected by what this process knows SQS counted wrongly: a receive
 * that was not an attempt (a `busy` exactly-once claim, a message handed back unstarted) is
 * subtracted, a local retry added. On FIFO queues one message per message group is in the kernel
 * at a time, and the rest of a group goes back behind a message that does, so a key's order holds
 * through retries.
 */
import { type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs'
import {
  compilePattern,
  type EventHandler,
  type EventInput,
  type Logger,
  type OmnibusEvent,
} from '@omnibus/core'
import {
  ConsumerKernel,
  type DedupeStore,
  decodeEvent,
  describeError,
  type KernelAdapter,
  type KernelMessage,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'
import { DELAY_LEAD_MS, delaySecondsFor, MAX_DELAY_SECONDS, MAX_VISIBILITY_SECONDS } from './delay.ts'
import { classifyError, isQueueMissing } from './errors.ts'
import { QueueOps } from './queue-ops.ts'
import type { QUEUE_GONE } from './sender.ts'

/** What a consumer needs from its backend. */
export interface ConsumerDeps {
  /** Client for deletes and visibility changes. */
  readonly client: SQSClient
  /** Client for long polls (its own HTTP agent). */
  readonly receiveClient: SQSClient
  readonly where: string
  readonly logger: Logger
  readonly dedupe: DedupeStore | undefined
  readonly waitTimeSeconds: number
  readonly prefetch: number
  readonly localRetryMaxMs: number
  /** Default visibility timeout when the subscription sets none. */
  readonly visibilityTimeoutMs: number
  /** Default drain timeout of `unsubscribe()`. */
  readonly drainTimeoutMs: number
  /**
   * Sends `body` to `queueUrl` again, hidden for `delaySeconds` (0: visible at once); resolves with
   * the new message's id, or `QUEUE_GONE`.
   */
  readonly resend: (
    queueUrl: string,
    body: string,
    delaySeconds: number,
  ) => Promise<string | typeof QUEUE_GONE>
  /** Publishes a dead letter where it is kept. */
  readonly publishDeadLetter: (input: EventInput) => Promise<unknown>
  /** Creates the queue again when it vanished (broker restarted without persistence). */
  readonly recreateQueue: () => Promise<string>
  /** Called once the subscription is closed (drops it, deletes a broadcast queue). */
  readonly onClosed: (consumer: Consumer) => Promise<void>
}

/** What one consumer reads. */
export interface ConsumerConfig {
  readonly id: string
  readonly queueUrl: string
  readonly queueName: string
  readonly kind: 'group' | 'broadcast'
  readonly fifo: boolean
  readonly options: ResolvedSubscribeOptions
  readonly handler: EventHandler
}

/** A received message as the kernel sees it, with what SQS needs to settle it. */
export interface SqsMessage extends KernelMessage {
  /** Set again for a local redelivery. */
  deliveryCount: number
  readonly receipt: string
  /** The message body as received, for a re-send. */
  readonly raw: string
  /** `ApproximateReceiveCount` of this receive. */
  readonly receiveCount: number
  /** The FIFO message group; undefined on standard queues. */
  readonly groupId: string | undefined
}

/** Most delivery-count corrections remembered; the oldest are forgotten first. */
const MAX_CORRECTIONS = 10_000
/** A give-back is bounded tightly: the visibility timeout returns the message anyway. */
const RELEASE_DEADLINE_MS = 2_000
/** How long a queue must stay missing before its consumer creates it again. */
const QUEUE_MISSING_GRACE_MS = 10_000

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      resolve()
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** A running subscription on one queue. */
export class Consumer implements KernelAdapter<SqsMessage> {
  readonly backend = 'sqs'
  readonly dedupe: DedupeStore | undefined
  readonly kernel: ConsumerKernel<SqsMessage>
  readonly #deps: ConsumerDeps
  readonly #config: ConsumerConfig
  readonly #ops: QueueOps
  readonly #matches: (topic: string) => boolean
  readonly #visibilitySeconds: number
  readonly #capacity: number
  readonly #pollDeadlineMs: number
  /** Received and not settled: in the kernel, waiting for a local retry, or behind its FIFO group. */
  readonly #held = new Set<SqsMessage>()
  /** Per message id: the delivery count minus `ApproximateReceiveCount` (see the module comment). */
  readonly #corrections = new Map<string, number>()
  readonly #retryTimers = new Map<SqsMessage, NodeJS.Timeout>()
  /** FIFO: per message group with a message in the kernel, the ones received behind it. */
  readonly #groups = new Map<string, SqsMessage[]>()
  readonly #stop = new AbortController()
  #reading = true
  /** When the long poll in flight ends on the server, whose wait it is (epoch ms). */
  #pollEndsAt = 0
  /**
   * Until when an aborted long poll still waits on the server. It takes the first message that
   * becomes visible meanwhile (counting a receive, hiding it for a visibility timeout), so what
   * this consumer hands back while closing stays invisible until then.
   */
  #deadPollUntil = 0
  #roomWaiter: (() => void) | undefined
  #poll: Promise<void> | undefined
  #heartbeat: NodeJS.Timeout | undefined

  constructor(deps: ConsumerDeps, config: ConsumerConfig) {
    this.#deps = deps
    this.#config = config
    this.dedupe = deps.dedupe
    this.#ops = new QueueOps(deps.client, config.queueUrl, deps.logger)
    this.#matches = compilePattern(config.options.pattern)
    const visibilityMs = config.options.visibilityTimeoutMs ?? deps.visibilityTimeoutMs
    this.#visibilitySeconds = Math.min(43_200, Math.max(1, Math.ceil(visibilityMs / 1000)))
    this.#capacity = config.options.concurrency + deps.prefetch
    this.#pollDeadlineMs = (deps.waitTimeSeconds + 15) * 1000
    this.kernel = new ConsumerKernel<SqsMessage>({
      adapter: this,
      options: config.options,
      handler: config.handler,
      subscriptionId: config.id,
      logger: deps.logger,
      drainTimeoutMs: deps.drainTimeoutMs,
      leaseMs: visibilityMs,
    })
  }

  /** Queue this consumer reads. */
  get queueUrl(): string {
    return this.#ops.url
  }

  /** Whether the subscription is deleted with its queue when it closes. */
  get kind(): 'group' | 'broadcast' {
    return this.#config.kind
  }

  /** Starts polling and the visibility heartbeat. */
  start(): void {
    this.#poll = this.#pollLoop()
    const every = Math.max(250, Math.floor((this.#visibilitySeconds * 1000) / 3))
    // The backend's hold keeps the process alive while it is connected, not this timer.
    this.#heartbeat = setInterval(() => this.#extend(), every)
    this.#heartbeat.unref()
  }

  // ---- the kernel's primitives ----

  ack(msg: SqsMessage): void {
    if (this.#corrections.size > 0) this.#corrections.delete(msg.nativeId)
    this.#ops.delete(msg.receipt)
    this.#settled(msg)
    if (msg.groupId !== undefined) this.#nextOfGroup(msg.groupId)
  }

  redeliver(msg: SqsMessage, delayMs: number, deliveryCount: number): void | Promise<void> {
    const due = msg.event?.deliverAt
    const early = due !== undefined && due > Date.now()
    // The last moments of a delay are always waited here: SQS hides messages for whole seconds.
    const local = delayMs <= this.#deps.localRetryMaxMs || (early && delayMs < 1000 + DELAY_LEAD_MS)
    if (local && this.kernel.accepting) {
      // Waited here with the message still leased: SQS does not see this attempt, so it is added.
      msg.deliveryCount = deliveryCount
      this.#correct(msg, deliveryCount - msg.receiveCount)
      const timer = setTimeout(() => {
        this.#retryTimers.delete(msg)
        this.kernel.deliver(msg)
      }, delayMs)
      timer.unref()
      this.#retryTimers.set(msg, timer)
      return
    }
    if (early) {
      const seconds = delaySecondsFor(delayMs)
      if (msg.groupId === undefined && seconds >= 1) return this.#postpone(msg, seconds)
      this.#correct(msg, deliveryCount - (msg.receiveCount + 1))
      return this.#handBack(msg, Math.min(MAX_VISIBILITY_SECONDS, Math.max(1, seconds)))
    }
    this.#correct(msg, deliveryCount - (msg.receiveCount + 1))
    return this.#handBack(msg, Math.min(MAX_VISIBILITY_SECONDS, Math.ceil(delayMs / 1000)))
  }

  /**
   * Sends a message that came before its time to its queue again, hidden for up to 900 s more,
   * then deletes this copy: the wait costs no receive count (the poison guard's delivery count)
   * and no consumer holds it meanwhile. A failed send hides this copy instead.
   */
  async #postpone(msg: SqsMessage, seconds: number): Promise<void> {
    try {
      await this.#deps.resend(this.#ops.url, msg.raw, Math.min(MAX_DELAY_SECONDS, seconds))
    } catch (error) {
      this.#deps.logger.warn(
        'sqs: re-sending a delayed message failed; it is hidden for the rest of its wait',
        {
          queue: this.#config.queueName,
          error: describeError(error),
        },
      )
      this.#correct(msg, msg.deliveryCount - (msg.receiveCount + 1))
      return this.#handBack(msg, Math.min(MAX_VISIBILITY_SECONDS, seconds))
    }
    this.ack(msg)
  }

  release(msg: SqsMessage, started = false): Promise<void> {
    const next = started ? msg.deliveryCount + 1 : msg.deliveryCount
    this.#correct(msg, next - (msg.receiveCount + 1))
    return this.#handBack(msg, 0)
  }

  async publishDeadLetter(input: EventInput): Promise<void> {
    await this.#deps.publishDeadLetter(input)
  }

  async stop(): Promise<void> {
    this.#reading = false
    this.#deadPollUntil = this.#pollEndsAt
    this.#stop.abort()
    this.#roomWaiter?.()
    await this.#poll
    // Nothing waits here any longer: messages in a retry wait or behind their group go back now.
    const waiting = [...this.#retryTimers.keys()]
    for (const t of this.#retryTimers.values()) clearTimeout(t)
    this.#retryTimers.clear()
    for (const behind of this.#groups.values()) waiting.push(...behind)
    this.#groups.clear()
    await Promise.all(waiting.map((m) => this.release(m)))
  }

  async dispose(): Promise<void> {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat)
    await this.#ops.flush()
    await this.#deps.onClosed(this)
  }

  // ---- reading ----

  async #pollLoop(): Promise<void> {
    let failures = 0
    let missingSince: number | undefined
    while (this.#reading) {
      if (this.#held.size >= this.#capacity) {
        await new Promise<void>((resolve) => {
          this.#roomWaiter = resolve
        })
        this.#roomWaiter = undefined
        continue
      }
      // At-most-once messages leave `held` when acknowledged, before they run: the kernel's own
      // queue bounds them.
      if (this.kernel.running + this.kernel.queued >= this.#capacity) {
        await this.kernel.whenFree()
        continue
      }
      const room = this.#capacity - Math.max(this.#held.size, this.kernel.running + this.kernel.queued)
      let messages: Message[]
      // The server's wait, from before the request leaves, plus a margin for its way there.
      this.#pollEndsAt = Date.now() + this.#deps.waitTimeSeconds * 1000 + 500
      try {
        const res = await this.#deps.receiveClient.send(
          new ReceiveMessageCommand({
            QueueUrl: this.#ops.url,
            MaxNumberOfMessages: Math.min(10, room),
            WaitTimeSeconds: this.#deps.waitTimeSeconds,
            VisibilityTimeout: this.#visibilitySeconds,
            MessageSystemAttributeNames: ['ApproximateReceiveCount', 'SentTimestamp', 'MessageGroupId'],
          }),
          // A poll that outlives its wait (a server that accepted the connection but does not
          // answer, e.g. while starting) is cut so the loop can try again.
          { abortSignal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#pollDeadlineMs)]) },
        )
        this.#pollEndsAt = 0
        messages = res.Messages ?? []
        failures = 0
        missingSince = undefined
      } catch (receiveError) {
        if (!this.#reading) break
        this.#pollEndsAt = 0
        let error: unknown = receiveError
        failures++
        // Missing for a while, not just once: a restarting broker answers before it has
        // restored its persisted queues, and creating one then would race the restore.
        if (isQueueMissing(receiveError)) missingSince ??= Date.now()
        else missingSince = undefined
        if (missingSince !== undefined && Date.now() - missingSince >= QUEUE_MISSING_GRACE_MS) {
          missingSince = undefined
          try {
            this.#ops.url = await this.#deps.recreateQueue()
            this.#deps.logger.warn('sqs: queue vanished (broker reset?) and was created again', {
              queue: this.#config.queueName,
            })
            continue
          } catch (again) {
            error = again
          }
        }
        this.#deps.logger.warn('sqs: receive failed; retrying', {
          queue: this.#config.queueName,
          error: classifyError(error, 'receive', this.#deps.where).message,
          attempt: failures,
        })
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)), this.#stop.signal)
        continue
      }
      for (const m of messages) this.#accept(m)
    }
  }

  #accept(m: Message): void {
    const receipt = m.ReceiptHandle
    if (receipt === undefined) return
    const body = m.Body ?? ''
    let event: OmnibusEvent | undefined
    try {
      event = decodeEvent(body)
    } catch {
      event = undefined // the kernel dead-letters it with the decoder's reason
    }
    if (event !== undefined && !this.#matches(event.topic)) {
      // Routed here by a publisher with a stale pattern listing, or written by hand: not ours.
      this.#ops.delete(receipt)
      return
    }
    const nativeId = m.MessageId ?? receipt
    const receiveCount = Math.max(1, Number(m.Attributes?.ApproximateReceiveCount) || 1)
    const sent = Number(m.Attributes?.SentTimestamp)
    const msg: SqsMessage = {
      nativeId,
      // SQS carries no topic: an undecodable message is named after what its queue subscribes to.
      topic: this.#config.options.pattern,
      deliveryCount: Math.max(1, receiveCount + (this.#corrections.get(nativeId) ?? 0)),
      event,
      ...(event === undefined ? { body } : {}),
      ...(Number.isFinite(sent) && sent > 0 ? { time: sent } : {}),
      receipt,
      raw: body,
      receiveCount,
      groupId: this.#config.fifo ? (m.Attributes?.MessageGroupId ?? nativeId) : undefined,
    }
    this.#held.add(msg)
    if (msg.groupId !== undefined) {
      const behind = this.#groups.get(msg.groupId)
      if (behind !== undefined) {
        behind.push(msg)
        return
      }
      this.#groups.set(msg.groupId, [])
    }
    this.kernel.deliver(msg)
  }

  // ---- settling ----

  #settled(msg: SqsMessage): void {
    this.#held.delete(msg)
    this.#roomWaiter?.()
  }

  /** Gives `msg` back, visible after `seconds`; on FIFO the rest of its group goes back behind it. */
  #handBack(msg: SqsMessage, delaySeconds: number): Promise<void> {
    const receipts = [msg.receipt]
    const left = this.#deadPollUntil - Date.now()
    const seconds = left > 0 ? Math.max(delaySeconds, Math.ceil(left / 1000)) : delaySeconds
    this.#settled(msg)
    if (msg.groupId !== undefined) {
      const behind = this.#groups.get(msg.groupId)
      if (behind !== undefined) {
        this.#groups.delete(msg.groupId)
        for (const b of behind) {
          this.#correct(b, b.deliveryCount - (b.receiveCount + 1))
          this.#settled(b)
          receipts.push(b.receipt)
        }
      }
    }
    return this.#ops.changeVisibility(receipts, seconds, delaySeconds === 0 ? RELEASE_DEADLINE_MS : undefined)
  }

  /** FIFO: the message of `groupId` in the kernel is settled; the next one received behind it goes in. */
  #nextOfGroup(groupId: string): void {
    const behind = this.#groups.get(groupId)
    if (behind === undefined) return
    const next = behind.shift()
    if (next === undefined) this.#groups.delete(groupId)
    else this.kernel.deliver(next)
  }

  #correct(msg: SqsMessage, by: number): void {
    const id = msg.nativeId
    this.#corrections.delete(id)
    if (by === 0) return
    this.#corrections.set(id, by)
    if (this.#corrections.size > MAX_CORRECTIONS) {
      this.#corrections.delete(this.#corrections.keys().next().value as string)
    }
  }

  /** Keeps every held message invisible while it waits or runs. */
  #extend(): void {
    if (this.#held.size === 0) return
    const receipts = [...this.#held].map((m) => m.receipt)
    void this.#ops.changeVisibility(receipts, this.#visibilitySeconds)
  }
}
