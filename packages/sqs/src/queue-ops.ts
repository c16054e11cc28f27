/**
 * The settling calls of one queue: deletes coalesced into `DeleteMessageBatch` (sent at the next
 * turn of the event loop, or at once when ten are pending) and visibility changes by batches of
 * ten. Each call has a deadline: a broker that accepts connections without answering must not hold
 * a message, and a failure only means the message comes back when its visibility timeout ends.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import type { Logger } from '@omnibus/core'
import { describeError } from '@omnibus/core/backend'

/** Deadline of one delete or visibility change, retries included. */
const CONTROL_DEADLINE_MS = 10_000
const BATCH = 10

/** Deletes and visibility changes on one queue. */
export class QueueOps {
  /** The queue, replaced when it was created again after a broker reset. */
  url: string
  readonly #client: SQSClient
  readonly #logger: Logger
  #deletes: string[] = []
  #scheduled = false
  readonly #inFlight = new Set<Promise<void>>()

  constructor(client: SQSClient, url: string, logger: Logger) {
    this.#client = client
    this.url = url
    this.#logger = logger
  }

  /** Deletes the message of `receipt`, batched with the others of this turn. */
  delete(receipt: string): void {
    this.#deletes.push(receipt)
    if (this.#deletes.length >= BATCH) this.#sendDeletes()
    else if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => {
        this.#scheduled = false
        this.#sendDeletes()
      })
    }
  }

  /** Sends the pending deletes and waits for every delete and visibility change in flight. */
  async flush(): Promise<void> {
    this.#sendDeletes()
    await Promise.all([...this.#inFlight])
  }

  /** Makes the messages of `receipts` visible again after `seconds` (0: at once). */
  changeVisibility(
    receipts: readonly string[],
    seconds: number,
    deadlineMs = CONTROL_DEADLINE_MS,
  ): Promise<void> {
    const calls: Promise<void>[] = []
    for (let i = 0; i < receipts.length; i += BATCH) {
      const entries = receipts
        .slice(i, i + BATCH)
        .map((r, k) => ({ Id: String(k), ReceiptHandle: r, VisibilityTimeout: seconds }))
      calls.push(
        this.#track(
          this.#client
            .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: this.url, Entries: entries }), {
              abortSignal: AbortSignal.timeout(deadlineMs),
            })
            .then(
              () => undefined,
              (error: unknown) => {
                this.#logger.debug('sqs: visibility change failed', { error: describeError(error) })
              },
            ),
        ),
      )
    }
    return Promise.all(calls).then(() => undefined)
  }

  #sendDeletes(): void {
    while (this.#deletes.length > 0) {
      const chunk = this.#deletes.splice(0, BATCH)
      const entries = chunk.map((r, i) => ({ Id: String(i), ReceiptHandle: r }))
      this.#track(
        this.#client
          .send(new DeleteMessageBatchCommand({ QueueUrl: this.url, Entries: entries }), {
            abortSignal: AbortSignal.timeout(CONTROL_DEADLINE_MS),
          })
          .then(
            (res) => {
              for (const f of res.Failed ?? []) {
                this.#logger.warn('sqs: delete failed; the message may be delivered again', {
                  code: f.Code,
                  message: f.Message,
                })
              }
            },
            (error: unknown) => {
              this.#logger.warn('sqs: delete failed; the messages may be delivered again', {
                error: describeError(error),
                count: chunk.length,
              })
            },
          ),
      )
    }
  }

  #track(p: Promise<void>): Promise<void> {
    this.#inFlight.add(p)
    void p.then(() => this.#inFlight.delete(p))
    return p
  }
}
