/**
 * Coalesces acknowledgements of one consumer channel: acks requested during one turn of the event
 * loop go out together, the longest settled run from the oldest delivery as a single
 * `multiple` ack, the rest one by one. Fewer frames and fewer queue operations on the broker
 * (a quorum queue settles each ack through its log), without holding back an ack behind a slow
 * handler.
 */
import type { Channel, ConsumeMessage } from 'amqplib'

/** Ack/nack bookkeeping of one channel. Every delivery of the channel must be `track`ed. */
export class AckBatcher {
  readonly #channel: Channel
  /** Unsettled deliveries in delivery order (delivery tag → message, done flag). */
  readonly #open = new Map<number, { msg: ConsumeMessage; done: boolean }>()
  #scheduled = false
  #doneCount = 0

  constructor(channel: Channel) {
    this.#channel = channel
  }

  /** Records a delivery; call before anything may ack it. */
  track(msg: ConsumeMessage): void {
    this.#open.set(msg.fields.deliveryTag, { msg, done: false })
  }

  /** Acknowledges `msg` at the end of this turn of the event loop. */
  ack(msg: ConsumeMessage): void {
    const entry = this.#open.get(msg.fields.deliveryTag)
    if (entry === undefined || entry.done) return
    entry.done = true
    this.#doneCount++
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.flush())
    }
  }

  /** Returns `msg` to the queue now (it is redelivered, to this or another consumer). */
  nack(msg: ConsumeMessage): void {
    const tag = msg.fields.deliveryTag
    const entry = this.#open.get(tag)
    if (entry === undefined || entry.done) return
    this.#open.delete(tag)
    try {
      this.#channel.nack(msg, false, true)
    } catch {
      // The channel closed: the broker requeues it anyway.
    }
  }

  /** Sends the pending acks. */
  flush(): void {
    this.#scheduled = false
    if (this.#doneCount === 0) return
    let prefixEnd: ConsumeMessage | undefined
    const singles: ConsumeMessage[] = []
    let inPrefix = true
    for (const [tag, entry] of this.#open) {
      if (!entry.done) {
        inPrefix = false
        continue
      }
      this.#open.delete(tag)
      if (inPrefix) prefixEnd = entry.msg
      else singles.push(entry.msg)
    }
    this.#doneCount = 0
    try {
      // Everything up to prefixEnd that is still unacknowledged on the broker is in the prefix:
      // earlier deliveries were acked or nacked already.
      if (prefixEnd !== undefined) this.#channel.ack(prefixEnd, true)
      for (const msg of singles) this.#channel.ack(msg, false)
    } catch {
      // The channel closed: unacknowledged messages are redelivered, as at-least-once allows.
    }
  }
}
