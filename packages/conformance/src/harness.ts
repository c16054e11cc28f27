import type {
  BackendCapabilities,
  EventBackend,
  EventHandler,
  EventInput,
  HandlerContext,
  OmnibusEvent,
  SubscribeOptions,
  Subscription,
} from '@omnibus/core'
import type { ConformanceOptions, ResolvedTimeouts } from './options.ts'
import { newRunId } from './run-id.ts'
import { waitFor, withDeadline } from './wait.ts'

function describeStep(fn: () => unknown): string {
  return fn.toString().replace(/\s+/g, ' ').slice(0, 80)
}

/** Header that marks the suite's readiness probes; inboxes count them apart from real events. */
export const PROBE_HEADER = 'x-conformance-probe'

/** One handler run as an inbox saw it. */
export interface Delivery {
  readonly event: OmnibusEvent
  readonly attempt: number
  readonly at: number
  readonly pattern: string
}

/**
 * What one subscription received: every handler run (`deliveries`), and the events whose handler
 * resolved (`acked`). Probes are counted apart and never appear in either list.
 */
export class Inbox {
  readonly label: string
  readonly deliveries: Delivery[] = []
  readonly acked: OmnibusEvent[] = []
  probes = 0
  inFlight = 0
  maxInFlight = 0

  constructor(label: string) {
    this.label = label
  }

  /** Distinct ids whose handler resolved. */
  ackedIds(): Set<string> {
    return new Set(this.acked.map((e) => e.id))
  }

  /** Handler runs for `id`. */
  runs(id: string): Delivery[] {
    return this.deliveries.filter((d) => d.event.id === id)
  }

  /** How many times the handler resolved for each id. */
  ackCounts(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const e of this.acked) counts.set(e.id, (counts.get(e.id) ?? 0) + 1)
    return counts
  }

  /** Ids acknowledged more than once. */
  duplicateAcks(): string[] {
    return [...this.ackCounts()].filter(([, n]) => n > 1).map(([id]) => id)
  }

  /** Ids among `ids` not yet acknowledged. */
  missing(ids: Iterable<string>): string[] {
    const got = this.ackedIds()
    return [...ids].filter((id) => !got.has(id))
  }
}

/** What a case's handler may do beside being recorded. */
export type Behaviour = (event: OmnibusEvent, ctx: HandlerContext) => unknown

/** The per-test toolkit every case receives. */
export interface CaseContext {
  /** Fresh id of this test run; part of every topic, group and payload. */
  readonly runId: string
  /** Capabilities of the backend under test. */
  readonly caps: BackendCapabilities
  readonly timeouts: ResolvedTimeouts
  readonly options: ConformanceOptions
  /** A new connected backend instance, disconnected when the test ends. */
  backend(): Promise<EventBackend>
  /** A topic unique to this run: `conf.<runId>.<parts>`. */
  topic(...parts: string[]): string
  /** A group name unique to this run. */
  group(name: string): string
  /**
   * Subscribes with a recording handler; `behaviour` (optional) runs after recording and decides
   * the outcome (throw → retry). The subscription is closed when the test ends.
   */
  subscribe(
    backend: EventBackend,
    pattern: string,
    inbox: Inbox,
    opts?: SubscribeOptions,
    behaviour?: Behaviour,
  ): Promise<Subscription>
  /**
   * Publishes probes on `topic` until each inbox has seen at least one (bounded by `groupJoinMs`),
   * so a case never publishes before its subscriptions are really receiving.
   */
  settle(publisher: EventBackend, topic: string, inboxes: readonly Inbox[]): Promise<void>
  /** Waits until `inbox` acknowledged every id in `ids` (deadline `deliveryMs` unless given). */
  waitAcked(inbox: Inbox, ids: Iterable<string>, timeoutMs?: number): Promise<void>
  /** Publishes every input concurrently; resolves with the accepted ids in input order. Bounded. */
  publishAll(backend: EventBackend, inputs: readonly EventInput[]): Promise<string[]>
  /** Publishes one after another (publish order = input order); resolves with the ids. Bounded. */
  publishInOrder(backend: EventBackend, inputs: readonly EventInput[]): Promise<string[]>
  /** Registers a cleanup step run (in reverse order) when the test ends. */
  defer(fn: () => unknown): void
  /** Awaits a backend operation with a deadline of `groupJoinMs`, failing with `what` if it hangs. */
  within<T>(promise: Promise<T>, what: string): Promise<T>
}

/** Builds the toolkit for one test; `close()` runs the cleanups. */
export function createCaseContext(
  options: ConformanceOptions,
  timeouts: ResolvedTimeouts,
  caps: BackendCapabilities,
  first: EventBackend | undefined,
): CaseContext & { close(): Promise<void> } {
  const runId = newRunId()
  const cleanups: Array<() => unknown> = []
  let spare = first
  const ctx = {
    runId,
    caps,
    timeouts,
    options,
    async backend() {
      let b: EventBackend
      if (spare !== undefined) {
        b = spare
        spare = undefined
      } else {
        b = await options.makeBackend()
      }
      cleanups.push(() => b.disconnect({ drainTimeoutMs: 1000 }))
      await withDeadline(b.connect(), timeouts.groupJoinMs, `connect() of a new ${b.name} backend`)
      return b
    },
    topic(...parts: string[]) {
      return ['conf', runId, ...parts].join('.')
    },
    group(name: string) {
      return `conf-${runId}-${name}`
    },
    async subscribe(
      backend: EventBackend,
      pattern: string,
      inbox: Inbox,
      opts?: SubscribeOptions,
      behaviour?: Behaviour,
    ) {
      const handler: EventHandler = async (event, hctx) => {
        if (event.headers[PROBE_HEADER] !== undefined) {
          inbox.probes++
          return
        }
        inbox.deliveries.push({ event, attempt: hctx.attempt, at: Date.now(), pattern })
        inbox.inFlight++
        inbox.maxInFlight = Math.max(inbox.maxInFlight, inbox.inFlight)
        try {
          if (behaviour !== undefined) await behaviour(event, hctx)
        } finally {
          inbox.inFlight--
        }
        inbox.acked.push(event)
      }
      const sub = await withDeadline(
        backend.subscribe(pattern, handler, opts),
        timeouts.groupJoinMs * 2,
        `subscribe("${pattern}")${opts?.group === undefined ? '' : ` in group ${opts.group}`}`,
      )
      cleanups.push(() => sub.unsubscribe())
      return sub
    },
    async settle(publisher: EventBackend, topic: string, inboxes: readonly Inbox[]) {
      const deadline = Date.now() + timeouts.groupJoinMs
      const before = inboxes.map((i) => i.probes)
      const seen = () => inboxes.every((inbox, k) => inbox.probes > (before[k] ?? 0))
      let n = 0
      while (!seen()) {
        if (Date.now() > deadline) {
          const late = inboxes.filter((_, k) => !(inboxes[k]!.probes > (before[k] ?? 0))).map((i) => i.label)
          throw new Error(
            `subscriptions [${late.join(', ')}] received none of ${n} probes on "${topic}" within ` +
              `timeouts.groupJoinMs = ${timeouts.groupJoinMs} ms`,
          )
        }
        await publisher.publish(probe(topic, runId, n++))
        try {
          await waitFor(seen, {
            timeoutMs: Math.min(500, Math.max(1, deadline - Date.now())),
            message: 'probe',
          })
        } catch {
          // Not there yet: publish another probe (a consumer that joined late misses earlier ones).
        }
      }
    },
    async waitAcked(inbox: Inbox, ids: Iterable<string>, timeoutMs?: number) {
      const wanted = [...ids]
      await waitFor(() => inbox.missing(wanted).length === 0, {
        timeoutMs: timeoutMs ?? timeouts.deliveryMs,
        message: () => {
          const missing = inbox.missing(wanted)
          return (
            `${inbox.label}: ${missing.length} of ${wanted.length} events not handled ` +
            `(first missing: ${missing.slice(0, 5).join(', ')}; handler runs so far: ${inbox.deliveries.length})`
          )
        },
      })
    },
    publishAll(backend: EventBackend, inputs: readonly EventInput[]) {
      return withDeadline(
        publishAll(backend, inputs),
        timeouts.deliveryMs + timeouts.groupJoinMs,
        `publishing ${inputs.length} events`,
      )
    },
    publishInOrder(backend: EventBackend, inputs: readonly EventInput[]) {
      return withDeadline(
        publishInOrder(backend, inputs),
        timeouts.deliveryMs + timeouts.groupJoinMs,
        `publishing ${inputs.length} events in order`,
      )
    },
    defer(fn: () => unknown) {
      cleanups.push(fn)
    },
    within<T>(promise: Promise<T>, what: string) {
      return withDeadline(promise, timeouts.groupJoinMs, what)
    },
    async close() {
      const errors: unknown[] = []
      for (const fn of cleanups.reverse()) {
        try {
          // A cleanup step that hangs must fail the test with its name, not time the test out.
          await withDeadline(
            Promise.resolve().then(fn),
            timeouts.deliveryMs * 2,
            `cleanup step: ${describeStep(fn)}`,
          )
        } catch (error) {
          errors.push(error)
        }
      }
      if (spare !== undefined) await spare.disconnect().catch(() => {})
      if (errors.length > 0) {
        throw new AggregateError(errors, `conformance cleanup failed: ${String(errors[0])}`)
      }
    },
  }
  return ctx
}

function probe(topic: string, runId: string, n: number): EventInput {
  return { topic, data: { probe: n, runId }, headers: { [PROBE_HEADER]: String(n) } }
}

/** `count` distinct events for `topic`, each carrying the run id and its index. */
export function makeEvents(
  topic: string,
  runId: string,
  count: number,
  extra: Partial<EventInput> = {},
): EventInput[] {
  return Array.from({ length: count }, (_, i) => ({
    ...extra,
    topic,
    data: { runId, i },
  }))
}

/** Publishes every input (concurrently) and returns the ids the backend accepted, in input order. */
export async function publishAll(backend: EventBackend, inputs: readonly EventInput[]): Promise<string[]> {
  const receipts = await Promise.all(inputs.map((e) => backend.publish(e)))
  return receipts.map((r) => r.id)
}

/** Publishes one after another (publish order = input order) and returns the accepted ids. */
export async function publishInOrder(
  backend: EventBackend,
  inputs: readonly EventInput[],
): Promise<string[]> {
  const ids: string[] = []
  for (const e of inputs) ids.push((await backend.publish(e)).id)
  return ids
}

/** Whether `error` is an instance of `cls`, also across duplicate copies of `@omnibus/core`. */
export function isErrorOf(error: unknown, cls: abstract new (...args: never[]) => Error): boolean {
  return error instanceof cls || (error instanceof Error && error.name === cls.name)
}

/** Runs `fn` and returns what it threw (sync or async); fails when it did not throw. */
export async function caught(fn: () => unknown, what: string): Promise<Error> {
  try {
    await fn()
  } catch (error) {
    if (error instanceof Error) return error
    throw new Error(`${what} threw a non-Error value: ${String(error)}`)
  }
  throw new Error(`${what} was expected to fail but succeeded`)
}
