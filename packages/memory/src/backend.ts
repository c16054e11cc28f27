/**
 * `createMemoryBackend`: the `EventBackend` over an in-process {@link Bus}. The backend object is
 * a thin shell: publish validates and builds the envelope, the bus routes it, each subscription is
 * a consumer kernel from core fed by its queue (the kernel's adapter: ack, redeliver, release are
 * queue operations), and disconnect closes every kernel with the drain timeout.
 */
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  createEvent,
  type EventBackend,
  type EventDefaults,
  type EventHandler,
  type EventInput,
  GUARANTEES,
  type HealthStatus,
  NotConnectedError,
  type OmnibusEvent,
  type PublishReceipt,
  type SubscribeOptions,
} from '@omnibus/core'
import {
  ConsumerKernel,
  checkDelay,
  checkDrainTimeout,
  checkEnsureGroup,
  encodeEventChecked,
  holdProcess,
  instrumentBackend,
  MAX_TIMER_DELAY_MS,
  type ProcessHold,
  rejectUnknownUrlParams,
  resolveSubscribeOptions,
} from '@omnibus/core/backend'
import { type AdapterHost, MemoryAdapter } from './adapter.ts'
import { Bus, Member, type MemoryMessage, namedBus, type QueueSettings, releaseNamedBus } from './bus.ts'
import {
  MEMORY_URL_PARAMS,
  type MemoryBackendOptions,
  type ResolvedMemoryOptions,
  resolveMemoryOptions,
} from './options.ts'
import { encodedSizeBound } from './size.ts'

/** The memory backend: an `EventBackend` with a few read-only facts about its bus. */
export interface MemoryBackend extends EventBackend {
  readonly name: 'memory'
  /** Name of the shared bus, or undefined for a private one. */
  readonly busName: string | undefined
  /** The resolved options (the logger excluded). */
  readonly options: Omit<ResolvedMemoryOptions, 'logger'>
}

let nextSubscription = 0

/**
 * Creates an in-process backend. It is not connected yet: call `connect()`.
 * Throws `ConfigurationError` for an invalid option, naming the field and the value.
 */
export function createMemoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  const resolved = resolveMemoryOptions(options as Readonly<Record<string, unknown>>)
  const { logger, ...shown } = resolved
  const queueSettings: QueueSettings = {
    queueCapacity: resolved.queueCapacity,
    dedupeTtlMs: resolved.dedupeTtlMs,
    dedupeMaxEntries: resolved.dedupeMaxEntries,
  }
  const capabilities: BackendCapabilities = Object.freeze({
    guarantees: GUARANTEES,
    persistent: false,
    crossProcess: false,
    groups: true,
    orderedPerKey: true,
    replay: false,
    maxPayloadBytes: resolved.validatePayloads ? resolved.maxPayloadBytes : undefined,
    networked: false,
    wildcardDiscoveryMs: 0,
    // Held by the bus until its time (one timer for the earliest held event).
    delay: Object.freeze({ maxDelayMs: MAX_TIMER_DELAY_MS }),
  })
  const defaults: EventDefaults = resolved.source === undefined ? {} : { source: resolved.source }
  const maxPayloadBytes = resolved.maxPayloadBytes
  const validate = resolved.validatePayloads
  // A private bus lives as long as this backend, across reconnects, so leftovers of a group
  // (events whose handler was cut off by a drain timeout) reach the group's next subscriber.
  const privateBus = resolved.name === undefined ? new Bus(undefined) : undefined
  let bus: Bus | undefined
  let connected = false
  let closing: Promise<void> | undefined
  // Like a socket of a network backend: connected means the process stays alive until disconnect().
  let hold: ProcessHold | undefined
  const members = new Set<Member>()
  const host: AdapterHost = { logger, members }

  function prepare(input: EventInput, eventDefaults: EventDefaults): OmnibusEvent {
    const event = createEvent(input, eventDefaults)
    checkDelay(event, capabilities.delay, 'memory')
    // One walk over the data bounds its encoded size; only an event that might pass the limit, or
    // holds something the bound does not model (which is where unencodable values end up), is
    // encoded — and then the codec's own errors name the problem.
    if (validate && encodedSizeBound(event, maxPayloadBytes) > maxPayloadBytes) {
      encodeEventChecked(event, maxPayloadBytes, 'memory')
    }
    return event
  }

  const backend: MemoryBackend = {
    name: 'memory',
    capabilities,
    busName: resolved.name,
    options: Object.freeze(shown),

    get isConnected() {
      return connected
    },

    async connect() {
      if (closing !== undefined) await closing
      if (connected) return
      bus = privateBus ?? namedBus(resolved.name as string)
      bus.attached++
      bus.delayed.logger = logger
      bus.delayed.resume()
      connected = true
      hold = holdProcess()
    },

    disconnect(opts = {}) {
      if (closing !== undefined) return closing
      if (!connected) return Promise.resolve()
      let timeoutMs: number
      try {
        timeoutMs = checkDrainTimeout(opts.drainTimeoutMs ?? resolved.drainTimeoutMs, 'memory')
      } catch (error) {
        return Promise.reject(error)
      }
      // Publishing keeps working while handlers drain (they often publish follow-ups); only new
      // subscriptions are refused.
      const b = bus as Bus
      closing = Promise.all(
        [...members].map((m) => {
          m.leaving = true
          return m.kernel.close(timeoutMs)
        }),
      ).then(() => {
        connected = false
        b.attached--
        // Held events stay with the bus; its timer runs again when a backend attaches.
        if (b.attached === 0) b.delayed.pause()
        releaseNamedBus(b)
        bus = undefined
        closing = undefined
        hold?.release()
        hold = undefined
      })
      return closing
    },

    async healthCheck(): Promise<HealthStatus> {
      const started = performance.now()
      const b = bus
      if (!connected || b === undefined) {
        return { healthy: false, latencyMs: 0, detail: 'not connected: call connect()' }
      }
      let held = 0
      for (const m of members) held += m.queue.depth
      return {
        healthy: true,
        latencyMs: performance.now() - started,
        detail: `${b.name === undefined ? 'private bus' : `bus "${b.name}"`}: ${members.size} subscription(s) here, ${b.subscriptions} on the bus, ${held} event(s) queued or in flight for this backend, ${b.delayed.size} delayed event(s) held by the bus`,
      }
    },

    publish<T>(input: EventInput<T>): Promise<PublishReceipt> {
      if (!connected) return Promise.reject(new NotConnectedError('memory', 'publish'))
      let event: OmnibusEvent
      try {
        event = prepare(input, defaults)
        ;(bus as Bus).refuseIfMailboxFull(event)
      } catch (error) {
        return Promise.reject(error)
      }
      const receipt: PublishReceipt = new Receipt(event.id, event.topic)
      // A delayed event is accepted now and held by the bus until its time.
      if (event.deliverAt !== undefined) {
        ;(bus as Bus).delayed.add(event, event.deliverAt)
        return Promise.resolve(receipt)
      }
      const pending = (bus as Bus).dispatch(event)
      return pending === undefined ? Promise.resolve(receipt) : pending.promise.then(() => receipt)
    },

    publishBatch(inputs: readonly EventInput[]): Promise<BatchReceipt> {
      if (!connected) return Promise.reject(new NotConnectedError('memory', 'publish'))
      if (!Array.isArray(inputs)) {
        return Promise.reject(new ConfigurationError('publishBatch expects an array of events'))
      }
      const b = bus as Bus
      const results: BatchEntryResult[] = new Array(inputs.length)
      let failed = 0
      let waits: Promise<void>[] | undefined
      // One clock read for the whole batch: every event of it was handed over at this instant.
      const batchDefaults: EventDefaults = { ...defaults, time: Date.now() }
      for (let i = 0; i < inputs.length; i++) {
        let event: OmnibusEvent
        try {
          event = prepare(inputs[i] as EventInput, batchDefaults)
          b.refuseIfMailboxFull(event)
        } catch (error) {
          results[i] = { ok: false, index: i, error: error as Error }
          failed++
          continue
        }
        if (event.deliverAt !== undefined) {
          b.delayed.add(event, event.deliverAt)
          results[i] = acceptedEntry(i, event)
          continue
        }
        const pending = b.dispatch(event)
        if (pending !== undefined) {
          if (waits === undefined) waits = []
          waits.push(pending.promise)
        }
        results[i] = acceptedEntry(i, event)
      }
      const receipt: BatchReceipt = { results, succeeded: inputs.length - failed, failed }
      return waits === undefined ? Promise.resolve(receipt) : Promise.all(waits).then(() => receipt)
    },

    async ensureGroup(pattern: string, group: string): Promise<void> {
      checkEnsureGroup(backend, pattern, group)
      if (!connected || closing !== undefined) throw new NotConnectedError('memory', 'ensureGroup')
      ;(bus as Bus).declare(pattern, group, queueSettings)
    },

    async subscribe<T>(pattern: string, handler: EventHandler<T>, opts?: SubscribeOptions) {
      const o = resolveSubscribeOptions(backend, pattern, handler, opts)
      if (!connected || closing !== undefined) throw new NotConnectedError('memory', 'subscribe')
      const b = bus as Bus
      const id = `memory-${++nextSubscription}`
      const member = new Member(id, o, b.queueFor(o, queueSettings))
      member.kernel = new ConsumerKernel<MemoryMessage>({
        adapter: new MemoryAdapter(member, b, host),
        options: o,
        handler: handler as EventHandler,
        subscriptionId: id,
        logger,
        drainTimeoutMs: resolved.drainTimeoutMs,
        memberId: id,
      })
      const subscription = member.kernel.subscription
      // An already aborted signal closed the subscription in the kernel's constructor.
      if (!subscription.active) return subscription
      members.add(member)
      member.added = true
      b.add(member)
      return subscription
    },
  }
  return instrumentBackend(backend)
}

// Receipts and batch entries are made with `new`, not as object literals. V8 tracks how long the
// objects of a literal live in optimized code, and a batch's entries all live as long as the batch:
// a young-generation collection in the first batch after `publishBatch` was optimized found every
// entry made so far alive, and from then on V8 allocated them in the old generation. There they
// died, and while they waited for a full collection they kept the young objects they point to alive
// through every young collection: each of those copied the whole young generation (20 ms instead
// of 0.5) and the heap grew to 1.6 GB. It happened in about one bench process in fifteen and made
// every later memory scenario of that process three times slower. V8 makes no such decision for
// objects made by a constructor.
class Receipt implements PublishReceipt {
  readonly id: string
  readonly topic: string
  constructor(id: string, topic: string) {
    this.id = id
    this.topic = topic
  }
}

class AcceptedEntry {
  readonly ok = true as const
  readonly index: number
  readonly receipt: PublishReceipt
  constructor(index: number, receipt: PublishReceipt) {
    this.index = index
    this.receipt = receipt
  }
}

function acceptedEntry(index: number, event: OmnibusEvent): BatchEntryResult {
  return new AcceptedEntry(index, new Receipt(event.id, event.topic))
}

/**
 * Creates a memory backend from a URL, for `createBackend('memory://')` in core's registry.
 * `memory://` is a private bus; `memory://name` joins the shared bus `name`. Query parameters
 * set options (`memory://jobs?queueCapacity=1000`); `options` win over them. An unknown
 * parameter is a `ConfigurationError`.
 */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): MemoryBackend {
  if (url.protocol !== 'memory:') {
    throw new ConfigurationError(`the memory backend takes memory:// URLs, got ${url.protocol}//`)
  }
  const fromUrl: Record<string, unknown> = {}
  const host = decodeURIComponent(url.hostname)
  if (host !== '') fromUrl.name = host
  if (url.pathname !== '' && url.pathname !== '/') {
    throw new ConfigurationError(
      `memory URL "${url.href}" has a path: name the bus as the host, e.g. memory://my-bus`,
    )
  }
  rejectUnknownUrlParams(url, MEMORY_URL_PARAMS, { backend: 'memory' })
  for (const [key, value] of url.searchParams) fromUrl[key] = value
  return createMemoryBackend({ ...fromUrl, ...options } as MemoryBackendOptions)
}
