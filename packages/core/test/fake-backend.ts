// A small in-process EventBackend for unit tests of the buses, where the unit under test is the
// bus and not a broker. Cross-process behaviour is tested with the real SQLite backend elsewhere.

import {
  decideFailure,
  holdProcess,
  invokeHandler,
  type ProcessHold,
  type ResolvedSubscribeOptions,
  resolveSubscribeOptions,
} from '../src/backend.ts'
import {
  type BackendCapabilities,
  type BatchEntryResult,
  createEvent,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type Guarantee,
  MatcherIndex,
  type OmnibusEvent,
  type Subscription,
  silentLogger,
} from '../src/index.ts'

interface Sub {
  readonly subscription: Subscription & { active: boolean }
  readonly handler: EventHandler
  readonly opts: ResolvedSubscribeOptions
}

export interface FakeBackend extends EventBackend {
  /** Every event accepted, in order. */
  readonly published: OmnibusEvent[]
  /** When set, publishBatch waits for this promise before accepting (a stalled broker). */
  stall: Promise<void> | undefined
  /** When set, publish/publishBatch reject with it. */
  failWith: Error | undefined
  publishBatchCalls: number
  /** When set, publish resolves after this many ms (a slow broker). */
  publishDelayMs: number
  /** Every `ensureGroup` call, in order (the fake keeps no mailbox). */
  readonly ensuredGroups: Array<{ readonly pattern: string; readonly group: string }>
}

export function createFakeBackend(
  options: { guarantees?: readonly Guarantee[]; groups?: boolean; name?: string } = {},
): FakeBackend {
  const capabilities: BackendCapabilities = {
    guarantees: options.guarantees ?? ['at-most-once', 'at-least-once'],
    persistent: false,
    crossProcess: false,
    groups: options.groups ?? true,
    orderedPerKey: true,
    replay: false,
    maxPayloadBytes: undefined,
    networked: false,
    wildcardDiscoveryMs: 0,
    delay: false,
  }
  const index = new MatcherIndex<Sub>()
  const rr = new Map<string, number>()
  let connected = false
  // Like every real backend: connected holds the process (the buses' own timers are unreferenced).
  let hold: ProcessHold | undefined
  let nextId = 0

  async function deliver(sub: Sub, event: OmnibusEvent, attempt: number): Promise<void> {
    if (!sub.subscription.active) return
    const outcome = await invokeHandler({
      handler: sub.handler,
      event,
      attempt,
      subscription: sub.subscription,
      logger: silentLogger,
      signal: new AbortController().signal,
    })
    if (outcome.kind === 'ack') return
    const decision = decideFailure(sub.opts, attempt, outcome)
    if (decision.action === 'retry') {
      setTimeout(() => void deliver(sub, event, attempt + 1), Math.min(decision.delayMs, 5))
    }
  }

  function dispatch(event: OmnibusEvent): void {
    const byGroup = new Map<string, Sub[]>()
    for (const sub of index.match(event.topic)) {
      if (!sub.subscription.active) continue
      if (sub.opts.group === undefined) {
        setImmediate(() => void deliver(sub, event, 1))
        continue
      }
      const key = `${sub.opts.group}\u0000${sub.opts.pattern}`
      const list = byGroup.get(key) ?? []
      list.push(sub)
      byGroup.set(key, list)
    }
    for (const [key, members] of byGroup) {
      const n = rr.get(key) ?? 0
      rr.set(key, n + 1)
      const chosen = members[n % members.length] as Sub
      setImmediate(() => void deliver(chosen, event, 1))
    }
  }

  const backend: FakeBackend = {
    name: options.name ?? 'fake',
    capabilities,
    published: [],
    stall: undefined,
    failWith: undefined,
    publishBatchCalls: 0,
    publishDelayMs: 0,
    ensuredGroups: [],
    get isConnected() {
      return connected
    },
    async connect() {
      connected = true
      hold ??= holdProcess()
    },
    async disconnect() {
      connected = false
      hold?.release()
      hold = undefined
    },
    async healthCheck() {
      return { healthy: connected, latencyMs: 0 }
    },
    async publish<T>(input: EventInput<T>) {
      if (backend.publishDelayMs > 0) await new Promise((r) => setTimeout(r, backend.publishDelayMs))
      if (backend.failWith) throw backend.failWith
      const event = createEvent(input)
      backend.published.push(event)
      dispatch(event)
      return { id: event.id, topic: event.topic }
    },
    async publishBatch(inputs: readonly EventInput[]) {
      backend.publishBatchCalls++
      if (backend.stall) await backend.stall
      if (backend.failWith) throw backend.failWith
      const results: BatchEntryResult[] = inputs.map((input, index) => {
        try {
          const event = createEvent(input)
          backend.published.push(event)
          dispatch(event)
          return { ok: true as const, index, receipt: { id: event.id, topic: event.topic } }
        } catch (error) {
          return { ok: false as const, index, error: error as Error }
        }
      })
      const succeeded = results.filter((r) => r.ok).length
      return { results, succeeded, failed: results.length - succeeded }
    },
    async ensureGroup(pattern: string, group: string) {
      backend.ensuredGroups.push({ pattern, group })
    },
    async subscribe<T>(pattern: string, handler: EventHandler<T>, opts = {}) {
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      let remove = (): void => {}
      const subscription = {
        id: `sub-${++nextId}`,
        pattern,
        group: resolved.group,
        active: true,
        async unsubscribe() {
          subscription.active = false
          remove()
        },
      }
      remove = index.add(pattern, { subscription, handler: handler as EventHandler, opts: resolved })
      return subscription
    },
  }
  return backend
}
