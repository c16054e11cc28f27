/**
 * Coalesces concurrent sends into `SendMessageBatch` calls: entries for one queue wait at most
 * until the next turn of the event loop, and go out as soon as ten are pending or the batch
 * reaches the request size limit. Each entry settles on its own: a failed entry does not fail
 * the others of its batch.
 */
import {
  SendMessageBatchCommand,
  type SendMessageBatchCommandOutput,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import { PublishError } from '@omnibus/core'
import { classifyError, isQueueMissing } from './errors.ts'

/** One message for one queue. */
export interface OutgoingMessage {
  readonly body: string
  readonly bytes: number
  readonly groupId?: string
  readonly deduplicationId?: string
  /** `DelaySeconds`: how long SQS hides the message after the send (standard queues, 1–900). */
  readonly delaySeconds?: number
}

/** Why an entry was not delivered to its queue: the queue is gone (not an error for a publish). */
export const QUEUE_GONE = Symbol('queue-gone')

interface Pending {
  readonly message: OutgoingMessage
  readonly resolve: (value: string | typeof QUEUE_GONE) => void
  readonly reject: (error: Error) => void
}

const MAX_ENTRIES = 10

/** Batches sends per queue. */
export class BatchSender {
  readonly #client: SQSClient
  readonly #maxBatchBytes: number
  readonly #where: string
  readonly #pending = new Map<string, Pending[]>()
  #scheduled = false
  readonly #inFlight = new Set<Promise<void>>()

  constructor(client: SQSClient, maxBatchBytes: number, where: string) {
    this.#client = client
    this.#maxBatchBytes = maxBatchBytes
    this.#where = where
  }

  /** Sends `message` to `url`; resolves with the SQS message id, or `QUEUE_GONE`. */
  send(url: string, message: OutgoingMessage): Promise<string | typeof QUEUE_GONE> {
    return new Promise((resolve, reject) => {
      let list = this.#pending.get(url)
      if (list === undefined) {
        list = []
        this.#pending.set(url, list)
      }
      list.push({ message, resolve, reject })
      if (list.length >= MAX_ENTRIES) this.#drainQueue(url, list, false)
      if (!this.#scheduled && this.#pending.size > 0) {
        this.#scheduled = true
        setImmediate(() => {
          this.#scheduled = false
          this.flushAll()
        })
      }
    })
  }

  /** Sends everything pending now. */
  flushAll(): void {
    for (const [url, list] of this.#pending) this.#drainQueue(url, list, true)
  }

  /** Resolves when every send started so far has settled. */
  async idle(): Promise<void> {
    this.flushAll()
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
  }

  #drainQueue(url: string, list: Pending[], all: boolean): void {
    while (list.length >= MAX_ENTRIES || (all && list.length > 0)) {
      const batch: Pending[] = []
      let bytes = 0
      while (batch.length < MAX_ENTRIES && list.length > 0) {
        const next = list[0] as Pending
        if (batch.length > 0 && bytes + next.message.bytes > this.#maxBatchBytes) break
        batch.push(next)
        bytes += next.message.bytes
        list.shift()
      }
      const p = this.#sendBatch(url, batch).finally(() => this.#inFlight.delete(p))
      this.#inFlight.add(p)
    }
    if (list.length === 0) this.#pending.delete(url)
  }

  async #sendBatch(url: string, batch: Pending[]): Promise<void> {
    const entries: SendMessageBatchRequestEntry[] = batch.map((p, i) => {
      const e: SendMessageBatchRequestEntry = { Id: String(i), MessageBody: p.message.body }
      if (p.message.groupId !== undefined) e.MessageGroupId = p.message.groupId
      if (p.message.deduplicationId !== undefined) e.MessageDeduplicationId = p.message.deduplicationId
      if (p.message.delaySeconds !== undefined) e.DelaySeconds = p.message.delaySeconds
      return e
    })
    let result: SendMessageBatchCommandOutput
    try {
      result = await this.#client.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }))
    } catch (error) {
      if (isQueueMissing(error)) {
        for (const p of batch) p.resolve(QUEUE_GONE)
        return
      }
      const e = classifyError(error, 'publish', this.#where)
      for (const p of batch) p.reject(e)
      return
    }
    const settled = new Set<number>()
    for (const ok of result.Successful ?? []) {
      const i = Number(ok.Id)
      const p = batch[i]
      if (p === undefined) continue
      settled.add(i)
      p.resolve(ok.MessageId ?? '')
    }
    for (const bad of result.Failed ?? []) {
      const i = Number(bad.Id)
      const p = batch[i]
      if (p === undefined) continue
      settled.add(i)
      p.reject(
        new PublishError(
          `${this.#where} rejected the message (${bad.Code ?? 'unknown'}): ${bad.Message ?? ''}`,
          {
            backend: 'sqs',
            code: bad.SenderFault === true ? 'REJECTED' : 'SERVER_ERROR',
            retryable: bad.SenderFault !== true,
          },
        ),
      )
    }
    batch.forEach((p, i) => {
      if (!settled.has(i)) {
        p.reject(
          new PublishError(`${this.#where} returned no result for a batch entry`, {
            backend: 'sqs',
            retryable: true,
          }),
        )
      }
    })
  }
}
