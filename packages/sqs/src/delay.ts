/**
 * Delayed delivery on SQS. A standard queue hides a message for `DelaySeconds` (at most 900 s)
 * after the send: a delayed event is sent with the whole seconds of its delay (less a lead, see
 * {@link DELAY_LEAD_MS}), up to that, and a consumer that receives it before its time (a longer
 * delay, or the last second) hands it to the kernel, whose hold the consumer carries out: the
 * last second on a local timer, a longer wait by sending the message again with the next
 * `DelaySeconds` and deleting the received copy, so it never waits in a consumer and SQS never
 * counts a receive for the wait.
 * FIFO queues take no per-message delay: there the kernel's hold is `ChangeMessageVisibility`.
 */
import type { DelayCapability } from '@omnibus/core'

/** The longest `DelaySeconds` SQS takes on a message. */
export const MAX_DELAY_SECONDS = 900

/** The longest visibility timeout SQS takes (12 hours), in seconds. */
export const MAX_VISIBILITY_SECONDS = 43_200

/**
 * The longest delay on standard queues: 14 days, the longest time SQS keeps a message
 * (`MessageRetentionPeriod` at its maximum). Each re-send starts the queue's retention again,
 * so the chain itself has no limit; a longer delay is more likely a unit mistake than a plan.
 */
export const STANDARD_DELAY: DelayCapability = Object.freeze({ maxDelayMs: 14 * 86_400_000 })

/**
 * The longest delay on FIFO queues: one visibility timeout of 12 hours. The message is received
 * once before its time and hidden for the rest of it; a longer wait would take more receives, and
 * SQS counts each in `ApproximateReceiveCount`, which is the poison guard's delivery count.
 */
export const FIFO_DELAY: DelayCapability = Object.freeze({ maxDelayMs: MAX_VISIBILITY_SECONDS * 1000 })

/**
 * How much sooner than its time a held message is made visible again: SQS hides messages for
 * whole seconds and hands one out some milliseconds after it becomes visible (about 60–100 ms on
 * ElasticMQ), so a message is hidden for the whole seconds of its wait less this, and the consumer
 * waits out the rest on a timer (at most a second and this).
 */
export const DELAY_LEAD_MS = 250

/**
 * How many seconds to hide a message that has `waitMs` to go (`DelaySeconds`, or a FIFO
 * visibility change): the whole seconds of the wait less {@link DELAY_LEAD_MS}, at most 900 (SQS's
 * limit for `DelaySeconds`; a visibility change caps it at 12 h itself); 0 when less than that
 * is left.
 */
export function delaySecondsFor(waitMs: number): number {
  return Math.max(0, Math.floor((waitMs - DELAY_LEAD_MS) / 1000))
}

/** `DelaySeconds` for a message due at `deliverAt`, or undefined when it needs none (see {@link delaySecondsFor}). */
export function delaySecondsUntil(deliverAt: number | undefined, now: number): number | undefined {
  if (deliverAt === undefined) return undefined
  const seconds = Math.min(MAX_DELAY_SECONDS, delaySecondsFor(deliverAt - now))
  return seconds >= 1 ? seconds : undefined
}
