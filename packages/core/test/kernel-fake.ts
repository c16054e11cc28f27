/**
 * A fake broker for kernel tests: it keeps messages, delivers them to one or more members (each a
 * ConsumerKernel over a FakeAdapter) and records every primitive the kernel calls. Redelivery is a
 * timer that hands the message (with the count the kernel asked for) to the next member in turn.
 */
import { afterEach } from 'vitest'
import { createEvent } from '../src/envelope.ts'
import type { DedupeStore } from '../src/kernel/dedupe.ts'
import {
  ConsumerKernel,
  type KernelAdapter,
  type KernelMessage,
  type KernelOptions,
} from '../src/kernel/kernel.ts'
import { resolveSubscribeOptions } from '../src/kernel/subscribe-options.ts'
import type {
  BackendCapabilities,
  EventHandler,
  EventInput,
  Logger,
  OmnibusEvent,
  SubscribeOptions,
} from '../src/protocol.ts'

export const CAPS: BackendCapabilities = {
  guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
  persistent: true,
  crossProcess: true,
  groups: true,
  orderedPerKey: true,
  replay: true,
  maxPayloadBytes: undefined,
  networked: false,
  wildcardDiscoveryMs: 0,
  delay: false,
}

export interface FakeMessage extends KernelMessage {
  deliveryCount: number
}

let seq = 0

export function message(
  input: EventInput | { body: string | Uint8Array; topic: string },
  deliveryCount = 1,
  nativeId = `n${++seq}`,
): FakeMessage {
  if ('body' in input) {
    return { nativeId, topic: input.topic, deliveryCount, event: undefined, body: input.body }
  }
  const event = createEvent(input)
  return { nativeId, topic: event.topic, deliveryCount, event }
}

export interface LogLine {
  readonly level: string
  readonly message: string
  readonly fields: Record<string, unknown> | undefined
}

export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = []
  const at =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, message, fields })
    }
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

/** One group (or broadcast subscription) on the fake broker, with its members. */
export class FakeBroker {
  readonly members: Array<ConsumerKernel<FakeMessage>> = []
  readonly acked: FakeMessage[] = []
  readonly redelivered: Array<{ msg: FakeMessage; delayMs: number; deliveryCount: number }> = []
  readonly released: FakeMessage[] = []
  /** For each release: whether the message's handler had started. */
  readonly releasedStarted: boolean[] = []
  /** onSettled calls. */
  settled = 0
  readonly extended: FakeMessage[][] = []
  readonly deadLetters: EventInput[] = []
  /** Make the next dead-letter publishes fail. */
  failDeadLetters = 0
  /** Redeliver to members at all (off: only record). */
  redeliver = true
  #next = 0
  readonly timers = new Set<ReturnType<typeof setTimeout>>()

  adapter(name: string, extra: Partial<KernelAdapter<FakeMessage>> = {}): KernelAdapter<FakeMessage> {
    const broker = this
    return {
      backend: 'fake',
      ack(msg) {
        broker.acked.push(msg)
      },
      redeliver(msg, delayMs, deliveryCount) {
        broker.redelivered.push({ msg, delayMs, deliveryCount })
        if (!broker.redeliver) return
        const timer = setTimeout(() => {
          broker.timers.delete(timer)
          broker.deliver({ ...msg, deliveryCount })
        }, delayMs)
        broker.timers.add(timer)
      },
      release(msg, started) {
        broker.released.push(msg)
        broker.releasedStarted.push(started)
      },
      onSettled() {
        broker.settled++
      },
      publishDeadLetter(input) {
        if (broker.failDeadLetters > 0) {
          broker.failDeadLetters--
          throw new Error(`dead-letter topic unavailable (${name})`)
        }
        broker.deadLetters.push(input)
      },
      ...extra,
    }
  }

  /** Creates a member (a kernel) of this group. */
  member(
    handler: EventHandler,
    opts: SubscribeOptions & { pattern?: string } = {},
    k: Partial<Omit<KernelOptions<FakeMessage>, 'adapter' | 'options' | 'handler'>> & {
      adapter?: Partial<KernelAdapter<FakeMessage>>
      dedupe?: DedupeStore
    } = {},
  ): ConsumerKernel<FakeMessage> {
    const { pattern = 'a.**', ...subscribeOptions } = opts
    const name = `m${this.members.length + 1}`
    const adapterExtra = { ...k.adapter, ...(k.dedupe === undefined ? {} : { dedupe: k.dedupe }) }
    const kernel = new ConsumerKernel<FakeMessage>({
      adapter: this.adapter(name, adapterExtra),
      options: resolveSubscribeOptions(
        { name: 'fake', capabilities: CAPS },
        pattern,
        handler,
        subscribeOptions,
      ),
      handler,
      subscriptionId: k.subscriptionId ?? `fake-${name}`,
      logger: k.logger ?? recordingLogger(),
      ...(k.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: k.drainTimeoutMs }),
      ...(k.leaseMs === undefined ? {} : { leaseMs: k.leaseMs }),
      ...(k.memberId === undefined ? {} : { memberId: k.memberId }),
      random: k.random ?? (() => 0),
    })
    this.members.push(kernel)
    return kernel
  }

  /** Hands `msg` to the next member in turn (round-robin), as a broker's group would. */
  deliver(msg: FakeMessage): void {
    const member = this.members[this.#next++ % this.members.length]
    member?.deliver(msg)
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }
}

export function ids(msgs: readonly { event?: OmnibusEvent | undefined }[]): Array<string | undefined> {
  return msgs.map((m) => m.event?.id)
}

/** A promise with its resolve function, for handlers a test releases by hand. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/** Call at the top of a test file: the returned function makes a FakeBroker, stopped after the test. */
export function fakeBrokers(): () => FakeBroker {
  const made: FakeBroker[] = []
  afterEach(() => {
    for (const b of made.splice(0)) b.stop()
  })
  return () => {
    const b = new FakeBroker()
    made.push(b)
    return b
  }
}
