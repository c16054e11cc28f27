/**
 * The memory backend's kernel adapter: how core's consumer kernel talks to the bus. Acking frees
 * the event's partition key in its queue, redelivering is a timer, releasing puts the event back
 * at the front of its group's queue, and dead letters are published on the bus. One class for all
 * members, so the kernel's calls into it have one target each and stay cheap on the hot path.
 */
import type { EventInput, Logger, OmnibusEvent } from '@omnibus/core'
import type { KernelAdapter, MemoryDedupeStore } from '@omnibus/core/backend'
import { safeLog } from '@omnibus/core/backend'
import { type Bus, type DeliveryQueue, firstMessage, type Member, type MemoryMessage } from './bus.ts'

/** What the adapters of one backend share. */
export interface AdapterHost {
  readonly logger: Logger
  /** The backend's live members; a member leaves it when its subscription is closed. */
  readonly members: Set<Member>
}

/** The adapter of one member (subscription). */
export class MemoryAdapter implements KernelAdapter<MemoryMessage> {
  readonly backend = 'memory'
  readonly dedupe: MemoryDedupeStore | undefined
  readonly #member: Member
  readonly #queue: DeliveryQueue
  readonly #bus: Bus
  readonly #host: AdapterHost

  constructor(member: Member, bus: Bus, host: AdapterHost) {
    this.#member = member
    this.#queue = member.queue
    this.#bus = bus
    this.#host = host
    this.dedupe = member.opts.guarantee === 'exactly-once' ? member.queue.dedupe : undefined
  }

  ack(msg: MemoryMessage): void {
    this.#queue.acked(msg)
  }

  // Queues hold published events as they are: the kernel makes a message only for a delivery it keeps.
  firstDelivery(event: OmnibusEvent): MemoryMessage {
    return firstMessage(event)
  }

  ackFirst(event: OmnibusEvent): void {
    this.#queue.ackedFirst(event)
  }

  redeliver(msg: MemoryMessage, delayMs: number, deliveryCount: number): void {
    this.#queue.redeliver(msg, delayMs, deliveryCount)
  }

  release(msg: MemoryMessage, started: boolean): void {
    this.#queue.handBack(msg, started)
  }

  onSettled(): void {
    this.#queue.settled()
  }

  publishDeadLetter(input: EventInput): void {
    this.#bus.publishInternal(input, this.#host.logger)
  }

  stop(): Promise<void> | undefined {
    const member = this.#member
    const queue = this.#queue
    if (!member.added) return undefined
    this.#bus.remove(member)
    // The last member of a group that leaves with its backend delivers what the group holds
    // before it goes (nobody else could); any other member only finishes its own handlers.
    const finishQueue = member.leaving && queue.members.length === 1 && queue.members[0] === member
    if (!finishQueue) {
      queue.removeMember(member)
      return undefined
    }
    queue.schedule()
    return queue.whenIdle(
      () =>
        queue.queued === 0 &&
        queue.retrying === 0 &&
        queue.overflowLength === 0 &&
        member.kernel.draining === 0,
    )
  }

  dispose(): void {
    const member = this.#member
    const queue = this.#queue
    if (member.added) {
      queue.removeMember(member)
      if (queue.group === undefined) {
        const dropped = queue.discard()
        if (dropped > 0) {
          safeLog(
            this.#host.logger,
            'warn',
            `${dropped} queued event(s) of a closed subscription were dropped`,
            {
              subscription: member.id,
              pattern: member.pattern,
            },
          )
        }
      } else this.#bus.forgetGroupIfIdle(queue)
    }
    this.#host.members.delete(member)
    member.onClose?.()
  }
}
