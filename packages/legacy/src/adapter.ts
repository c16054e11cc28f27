/**
 * `EventBusAdapter` bridges the legacy bus and the new buses during a migration.
 *
 * Forward: every legacy event becomes `observability.emit('<category>.<event_type>', data)` with
 * priority, session and trace ids in headers (and a W3C `traceparent` when the ids are W3C-shaped).
 * Categories listed in `toAgents` are also broadcast on the AgentMessageBus (reliable delivery).
 * Reverse (optional): events on the new bus matching `reverse.patterns` are published to legacy
 * subscribers. Loop protection: forwarded events carry the adapter's id in a header and reversed
 * events are marked in their metadata, so nothing is forwarded back where it came from.
 */
import {
  type AgentMessageBus,
  ConfigurationError,
  ObservabilityBus,
  type OmnibusEvent,
  type Subscription,
  type TelemetryPriority,
} from '@omnibus/core'
import {
  type EventBus,
  type EventCategory,
  type EventPriority,
  isEventCategory,
  isEventPriority,
  type LegacyEvent,
  legacyTopic,
} from './event-bus.ts'

/** Headers the adapter writes on forwarded events. */
export const LEGACY_HEADERS = {
  priority: 'legacy-priority',
  sessionId: 'legacy-session-id',
  traceId: 'legacy-trace-id',
  spanId: 'legacy-span-id',
  category: 'legacy-category',
  eventType: 'legacy-event-type',
  /** Id of the adapter that forwarded the event (loop protection). */
  origin: 'legacy-adapter-origin',
} as const

/** Metadata key marking legacy events that came from the new buses. */
export const REVERSED_FROM = 'omnibus.reversedFrom'

/** Options of an {@link EventBusAdapter}. */
export interface EventBusAdapterOptions {
  /** Receives every forwarded legacy event. */
  readonly observability?: ObservabilityBus
  /** Receives broadcasts of the categories in `toAgents`. */
  readonly agents?: AgentMessageBus
  /** Categories also broadcast on `agents` as `legacy.<category>.<event_type>`. @default none */
  readonly toAgents?: readonly EventCategory[]
  /**
   * Forward new-bus events back to legacy subscribers: the patterns to subscribe on the
   * observability bus. A topic whose first segment is a legacy category keeps it; others become
   * CUSTOM with the whole topic as event type.
   */
  readonly reverse?: { readonly patterns: readonly string[] }
  /** Identifies this adapter in the origin header. @default random */
  readonly id?: string
}

/** Counters of an adapter. */
export interface AdapterStats {
  readonly forwarded: number
  readonly forwardedToAgents: number
  readonly reversed: number
  /** Events not forwarded because they would loop. */
  readonly loopsPrevented: number
  readonly failures: number
}

const W3C_TRACE = /^[0-9a-f]{32}$/
const W3C_SPAN = /^[0-9a-f]{16}$/

function toTelemetryPriority(p: EventPriority): TelemetryPriority {
  return p
}

/** Bridges a legacy {@link EventBus} to an ObservabilityBus (and optionally an AgentMessageBus). */
export class EventBusAdapter {
  readonly #legacy: EventBus
  readonly #observability: ObservabilityBus | undefined
  readonly #agents: AgentMessageBus | undefined
  readonly #toAgents: ReadonlySet<string>
  readonly #reverse: readonly string[]
  readonly #id: string
  #off: (() => void) | undefined
  #reverseSubs: Subscription[] = []
  readonly #stats = { forwarded: 0, forwardedToAgents: 0, reversed: 0, loopsPrevented: 0, failures: 0 }

  /**
   * `options` may also be an ObservabilityBus alone (`new EventBusAdapter(legacy, bus)`, as in the
   * old API). Throws `ConfigurationError` when there is nothing to forward to.
   */
  constructor(legacy: EventBus, target: EventBusAdapterOptions | ObservabilityBus) {
    const options: EventBusAdapterOptions =
      target instanceof ObservabilityBus ? { observability: target } : target
    if (options.observability === undefined && options.agents === undefined) {
      throw new ConfigurationError('EventBusAdapter needs { observability } and/or { agents } to forward to')
    }
    if (options.reverse !== undefined && options.observability === undefined) {
      throw new ConfigurationError(
        'reverse forwarding subscribes on the ObservabilityBus: pass { observability }',
      )
    }
    if ((options.toAgents?.length ?? 0) > 0 && options.agents === undefined) {
      throw new ConfigurationError('toAgents needs { agents } (an AgentMessageBus)')
    }
    this.#legacy = legacy
    this.#observability = options.observability
    this.#agents = options.agents
    this.#toAgents = new Set(options.toAgents ?? [])
    this.#reverse = options.reverse?.patterns ?? []
    this.#id = options.id ?? `adapter-${Math.random().toString(36).slice(2, 10)}`
  }

  /** This adapter's id (the value of the origin header). */
  get id(): string {
    return this.#id
  }

  /** Whether forwarding is on. */
  get forwarding(): boolean {
    return this.#off !== undefined
  }

  /**
   * Starts forwarding. Legacy events are forwarded from the moment this is called (the returned
   * promise need not be awaited for that); it resolves once the reverse subscriptions, if any, are
   * live. Idempotent.
   */
  async enableForwarding(): Promise<void> {
    if (this.#off !== undefined) return
    this.#off = this.#legacy.subscribeAll((event) => this.#forward(event))
    const obs = this.#observability
    if (obs !== undefined) {
      try {
        for (const pattern of this.#reverse) {
          this.#reverseSubs.push(await obs.subscribe(pattern, (event) => this.#back(event)))
        }
      } catch (error) {
        await this.disableForwarding()
        throw error
      }
    }
  }

  /** Stops forwarding in both directions. Idempotent. */
  async disableForwarding(): Promise<void> {
    this.#off?.()
    this.#off = undefined
    const subs = this.#reverseSubs
    this.#reverseSubs = []
    await Promise.allSettled(subs.map((s) => s.unsubscribe()))
  }

  /** A snapshot of the counters. */
  getStats(): AdapterStats {
    return { ...this.#stats }
  }

  #headers(event: LegacyEvent): Record<string, string> {
    const h: Record<string, string> = {
      [LEGACY_HEADERS.priority]: event.priority,
      [LEGACY_HEADERS.category]: event.category,
      [LEGACY_HEADERS.eventType]: event.eventType,
      [LEGACY_HEADERS.origin]: this.#id,
    }
    if (event.sessionId !== undefined) h[LEGACY_HEADERS.sessionId] = event.sessionId
    if (event.traceId !== undefined) h[LEGACY_HEADERS.traceId] = event.traceId
    if (event.spanId !== undefined) h[LEGACY_HEADERS.spanId] = event.spanId
    if (event.traceId !== undefined && event.spanId !== undefined) {
      const t = event.traceId.toLowerCase()
      const s = event.spanId.toLowerCase()
      if (W3C_TRACE.test(t) && W3C_SPAN.test(s)) h.traceparent = `00-${t}-${s}-01`
    }
    return h
  }

  async #forward(event: LegacyEvent): Promise<void> {
    if (event.metadata[REVERSED_FROM] !== undefined) {
      this.#stats.loopsPrevented++
      return
    }
    const topic = legacyTopic(event.category, event.eventType)
    const headers = this.#headers(event)
    if (this.#observability !== undefined) {
      const ok = this.#observability.emit(topic, event.data, {
        headers,
        priority: toTelemetryPriority(event.priority),
        ...(event.sessionId === undefined ? {} : { correlationId: event.sessionId }),
        source: event.source,
      })
      if (ok) this.#stats.forwarded++
    }
    if (this.#agents !== undefined && this.#toAgents.has(event.category)) {
      try {
        await this.#agents.broadcast(`legacy.${topic}`, event.data as never, { headers })
        this.#stats.forwardedToAgents++
      } catch {
        this.#stats.failures++
      }
    }
  }

  #back(event: OmnibusEvent): void {
    if (event.headers[LEGACY_HEADERS.origin] === this.#id) {
      // This adapter forwarded it from the legacy bus: delivering it there again would duplicate it.
      // Events forwarded by other adapters (other processes) are delivered; they come back marked
      // as reversed, so they are never forwarded again.
      this.#stats.loopsPrevented++
      return
    }
    const dot = event.topic.indexOf('.')
    const first = dot < 0 ? event.topic : event.topic.slice(0, dot)
    const category = isEventCategory(first) ? first : 'custom'
    const eventType = category === first && dot >= 0 ? event.topic.slice(dot + 1) : event.topic
    const p = event.headers['omnibus-priority'] ?? event.headers[LEGACY_HEADERS.priority]
    const data =
      event.data !== null && typeof event.data === 'object' && !(event.data instanceof Uint8Array)
        ? (event.data as Record<string, unknown>)
        : { value: event.data }
    try {
      this.#legacy.publish({
        category,
        eventType,
        data,
        priority: isEventPriority(p) ? p : 'normal',
        source: event.source,
        metadata: { [REVERSED_FROM]: event.id },
      })
      this.#stats.reversed++
    } catch {
      this.#stats.failures++
    }
  }
}
