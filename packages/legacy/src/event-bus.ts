/**
 * The category/priority `EventBus` of the older API, kept so existing code runs unchanged.
 *
 * `publish` never runs handlers inline: events go into a bounded queue drained on the next turn
 * of the event loop, so a slow or throwing handler never breaks the publisher. Backpressure
 * (`drop-oldest`, `drop-newest`, `block`, `reject`) and sampling apply to every priority except
 * `CRITICAL`, which is never sampled out and never dropped. Handler errors are counted, not thrown.
 */
import {
  ConfigurationError,
  newEventId,
  OmnibusError,
  type OmnibusEvent,
  type TelemetryExporter,
} from '@omnibus/core'

/** Event categories of the legacy API. */
export const EventCategory = {
  TOOL: 'tool',
  STATE: 'state',
  MODEL: 'model',
  ERROR: 'error',
  METRIC: 'metric',
  LIFECYCLE: 'lifecycle',
  AUDIT: 'audit',
  VERTICAL: 'vertical',
  CUSTOM: 'custom',
} as const
/** One of {@link EventCategory}. */
export type EventCategory = (typeof EventCategory)[keyof typeof EventCategory]

/** Priorities, highest first. `CRITICAL` is never sampled out or dropped. */
export const EventPriority = {
  CRITICAL: 'critical',
  HIGH: 'high',
  NORMAL: 'normal',
  LOW: 'low',
} as const
/** One of {@link EventPriority}. */
export type EventPriority = (typeof EventPriority)[keyof typeof EventPriority]

const RANK: Readonly<Record<EventPriority, number>> = { critical: 3, high: 2, normal: 1, low: 0 }
const CATEGORIES = new Set<string>(Object.values(EventCategory))

/** Whether `value` is a legacy category. */
export function isEventCategory(value: unknown): value is EventCategory {
  return typeof value === 'string' && CATEGORIES.has(value)
}

/** Whether `value` is a legacy priority. */
export function isEventPriority(value: unknown): value is EventPriority {
  return typeof value === 'string' && value in RANK
}

/** An event as legacy subscribers receive it. */
export interface LegacyEvent<T = Record<string, unknown>> {
  readonly id: string
  readonly category: EventCategory
  readonly eventType: string
  readonly data: T
  readonly priority: EventPriority
  /** Epoch milliseconds. */
  readonly timestamp: number
  readonly source: string
  readonly sessionId?: string
  readonly traceId?: string
  readonly spanId?: string
  /** Free-form metadata; the adapter marks events it forwarded back from the new buses here. */
  readonly metadata: Readonly<Record<string, string>>
}

/** What `publish` takes. */
export interface PublishInput<T = Record<string, unknown>> {
  readonly category: EventCategory
  readonly eventType: string
  readonly data?: T
  /** @default NORMAL */
  readonly priority?: EventPriority
  readonly source?: string
  readonly sessionId?: string
  readonly metadata?: Readonly<Record<string, string>>
}

/** A legacy subscriber. May be async; errors are counted, never thrown to the publisher. */
export type LegacyHandler = (event: LegacyEvent) => unknown

/** Options of `subscribe`. */
export interface LegacySubscribeOptions {
  /** Only events of this priority or higher. @default LOW (everything) */
  readonly minPriority?: EventPriority
}

/** Backpressure strategies of the legacy API. */
export const BackpressureStrategy = {
  DROP_OLDEST: 'drop-oldest',
  DROP_NEWEST: 'drop-newest',
  BLOCK: 'block',
  REJECT: 'reject',
} as const
/** One of {@link BackpressureStrategy}. */
export type BackpressureStrategy = (typeof BackpressureStrategy)[keyof typeof BackpressureStrategy]

/** Queue bound and overflow behaviour. */
export interface BackpressureConfig {
  /** @default 10000 */
  readonly maxQueueSize?: number
  /** @default DROP_OLDEST */
  readonly strategy?: BackpressureStrategy
  /** Fill ratio at which `stats.backpressureWarnings` grows and `onWarning` runs. @default 0.8 */
  readonly warningThreshold?: number
  readonly onWarning?: (queueDepth: number) => void
}

/** Sampling per category. */
export interface SamplingConfig {
  /** @default 1 */
  readonly defaultRate?: number
  /** e.g. `{ metric: 0.1 }` */
  readonly categoryRates?: Readonly<Partial<Record<EventCategory, number>>>
  /** Keep every ERROR-category event whatever the rates. CRITICAL events are always kept. @default true */
  readonly preserveErrors?: boolean
}

/** Counters of the legacy bus. */
export interface LegacyStats {
  readonly eventsPublished: number
  readonly eventsDelivered: number
  readonly eventsDropped: number
  readonly eventsSampledOut: number
  readonly droppedByReason: Readonly<Record<'drop-oldest' | 'drop-newest' | 'reject', number>>
  readonly handlerErrors: number
  /** Batches whose async handlers had not settled within `handlerTimeoutMs` (delivery moved on). */
  readonly handlerTimeouts: number
  readonly exporterFailures: number
  readonly queueDepth: number
  readonly subscriberCount: number
  readonly backpressureWarnings: number
}

/** `publish` refused an event because the queue is full and the strategy is `REJECT`. */
export class BackpressureError extends OmnibusError {
  constructor(size: number) {
    super(
      `event queue full (${size} events) and the strategy is REJECT: publish less or raise maxQueueSize`,
      {
        code: 'BACKPRESSURE',
        retryable: true,
      },
    )
  }
}

/** Options of an {@link EventBus}. */
export interface EventBusOptions {
  readonly backpressure?: BackpressureConfig
  readonly sampling?: SamplingConfig
  /** @default `legacy:<pid>` */
  readonly source?: string
  readonly sessionId?: string
  /**
   * Longest wait for a batch's async handlers before delivery moves on (counted in
   * `handlerTimeouts`). @default 30000
   */
  readonly handlerTimeoutMs?: number
}

const ALL = '*'

function rate(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new ConfigurationError(`${name} must be a number between 0 and 1, got ${String(value)}`)
  }
  return value
}

function errorInfo(error: unknown): { error_type: string; message: string; stack?: string } {
  if (error instanceof Error) {
    return error.stack === undefined
      ? { error_type: error.name, message: error.message }
      : { error_type: error.name, message: error.message, stack: error.stack }
  }
  return { error_type: typeof error, message: String(error) }
}

/** Topic a legacy event maps to on the new buses: `category.event_type` (made topic-safe). */
export function legacyTopic(category: EventCategory, eventType: string): string {
  const safe = String(eventType)
    .replace(/[^A-Za-z0-9_.-]/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/^\.+|\.+$/g, '')
  return `${category}.${safe.length === 0 ? 'event' : safe}`
}

/** The legacy event as an envelope, so core exporters can write it. */
export function legacyToEnvelope(event: LegacyEvent): OmnibusEvent {
  const headers: Record<string, string> = { 'legacy-priority': event.priority }
  if (event.sessionId !== undefined) headers['legacy-session-id'] = event.sessionId
  if (event.traceId !== undefined) headers['legacy-trace-id'] = event.traceId
  if (event.spanId !== undefined) headers['legacy-span-id'] = event.spanId
  return {
    id: event.id,
    topic: legacyTopic(event.category, event.eventType),
    data: event.data,
    time: event.timestamp,
    source: event.source,
    headers,
    guarantee: 'at-most-once',
  }
}

interface Entry {
  readonly handler: LegacyHandler
  readonly min: number
}

let singleton: EventBus | undefined

/** The category/priority event bus. See the module comment for its semantics. */
export class EventBus {
  readonly #subs = new Map<string, Entry[]>()
  readonly #queue: LegacyEvent[] = []
  #queueHead = 0
  #maxQueue = 10_000
  #strategy: BackpressureStrategy = 'drop-oldest'
  #warnAt = 8000
  #onWarning: ((depth: number) => void) | undefined
  #warned = false
  #defaultRate = 1
  #categoryRates: Partial<Record<EventCategory, number>> = {}
  #preserveErrors = true
  readonly #source: string
  readonly #handlerTimeoutMs: number
  #sessionId: string | undefined
  #traceId: string | undefined
  #spanId: string | undefined
  readonly #exporters: TelemetryExporter[] = []
  #scheduled = false
  #draining: Promise<void> | undefined
  #roomWaiters: Array<() => void> = []
  #idleWaiters: Array<() => void> = []
  readonly #stats = {
    eventsPublished: 0,
    eventsDelivered: 0,
    eventsSampledOut: 0,
    handlerErrors: 0,
    handlerTimeouts: 0,
    exporterFailures: 0,
    backpressureWarnings: 0,
    droppedByReason: { 'drop-oldest': 0, 'drop-newest': 0, reject: 0 },
  }

  /** Validates the options; throws `ConfigurationError` naming a bad field. */
  constructor(options: EventBusOptions = {}) {
    this.#source = options.source ?? `legacy:${process.pid}`
    const timeout = options.handlerTimeoutMs ?? 30_000
    if (typeof timeout !== 'number' || !(timeout > 0)) {
      throw new ConfigurationError(`handlerTimeoutMs must be a number > 0, got ${String(timeout)}`)
    }
    this.#handlerTimeoutMs = timeout
    this.#sessionId = options.sessionId
    if (options.backpressure !== undefined) this.configureBackpressure(options.backpressure)
    if (options.sampling !== undefined) this.configureSampling(options.sampling)
  }

  /** The process-wide bus (created on first use). */
  static getInstance(): EventBus {
    if (singleton === undefined) singleton = new EventBus()
    return singleton
  }

  /** Forgets the process-wide bus (tests). */
  static resetInstance(): void {
    singleton = undefined
  }

  /** Subscribes `handler` to a category (or `'*'` for all). Returns a function that unsubscribes. */
  subscribe(
    category: EventCategory | '*',
    handler: LegacyHandler,
    options: LegacySubscribeOptions = {},
  ): () => void {
    if (category !== ALL && !isEventCategory(category)) {
      throw new ConfigurationError(
        `unknown category "${String(category)}": use one of ${[...CATEGORIES].join(', ')} (EventCategory.*)`,
      )
    }
    if (typeof handler !== 'function') throw new ConfigurationError('subscribe needs a handler function')
    const min = options.minPriority ?? 'low'
    if (!isEventPriority(min)) {
      throw new ConfigurationError(
        `unknown minPriority "${String(min)}": use EventPriority.CRITICAL/HIGH/NORMAL/LOW`,
      )
    }
    const list = this.#subs.get(category) ?? []
    list.push({ handler, min: RANK[min] })
    this.#subs.set(category, list)
    return () => {
      this.unsubscribe(category, handler)
    }
  }

  /** Subscribes one handler to several categories. Returns a function that removes all of them. */
  subscribeMany(
    categories: readonly EventCategory[],
    handler: LegacyHandler,
    options: LegacySubscribeOptions = {},
  ): () => void {
    const offs = categories.map((c) => this.subscribe(c, handler, options))
    return () => {
      for (const off of offs) off()
    }
  }

  /** Subscribes to every category. */
  subscribeAll(handler: LegacyHandler, options: LegacySubscribeOptions = {}): () => void {
    return this.subscribe(ALL, handler, options)
  }

  /** Removes `handler` from `category` (`'*'` for a `subscribeAll`). Returns whether it was subscribed. */
  unsubscribe(category: EventCategory | '*', handler: LegacyHandler): boolean {
    const list = this.#subs.get(category)
    if (list === undefined) return false
    const at = list.findIndex((e) => e.handler === handler)
    if (at < 0) return false
    list.splice(at, 1)
    if (list.length === 0) this.#subs.delete(category)
    return true
  }

  /** Subscribers of `category` (including `subscribeAll` ones), or of every category. */
  getSubscriberCount(category?: EventCategory): number {
    if (category === undefined) {
      let n = 0
      for (const list of this.#subs.values()) n += list.length
      return n
    }
    return (this.#subs.get(category)?.length ?? 0) + (this.#subs.get(ALL)?.length ?? 0)
  }

  /**
   * Queues an event for the subscribers. Returns `false` when it was sampled out or dropped.
   * Throws `BackpressureError` only with the `REJECT` strategy and a full queue, and
   * `ConfigurationError` for an unknown category or priority.
   */
  publish<T = Record<string, unknown>>(input: PublishInput<T>): boolean {
    const event = this.#build(input)
    return this.#accept(event)
  }

  /** Like `publish`, waiting for room with the `BLOCK` strategy instead of dropping. */
  async publishAsync<T = Record<string, unknown>>(input: PublishInput<T>): Promise<boolean> {
    const event = this.#build(input)
    if (this.#strategy === 'block' && event.priority !== 'critical') {
      if (!this.#keep(event)) {
        this.#stats.eventsPublished++
        this.#stats.eventsSampledOut++
        return false
      }
      while (this.#depth() >= this.#maxQueue) {
        await new Promise<void>((resolve) => this.#roomWaiters.push(resolve))
      }
      this.#stats.eventsPublished++
      this.#push(event)
      return true
    }
    return this.#accept(event)
  }

  /** TOOL `tool_start` with `{ tool_name, arguments }`. */
  emitToolStart(toolName: string, args: Record<string, unknown> = {}, priority?: EventPriority): boolean {
    return this.publish({
      category: 'tool',
      eventType: 'tool_start',
      data: { tool_name: toolName, arguments: args },
      ...(priority === undefined ? {} : { priority }),
    })
  }

  /** TOOL `tool_end` with `{ tool_name, result, success, duration }` (duration in seconds, as before). */
  emitToolEnd(
    toolName: string,
    result?: unknown,
    options: {
      readonly success?: boolean
      readonly duration?: number
      readonly priority?: EventPriority
    } = {},
  ): boolean {
    const data: Record<string, unknown> = { tool_name: toolName, success: options.success ?? true }
    if (result !== undefined) data.result = result
    if (options.duration !== undefined) data.duration = options.duration
    return this.publish({
      category: 'tool',
      eventType: 'tool_end',
      data,
      ...(options.priority === undefined ? {} : { priority: options.priority }),
    })
  }

  /** ERROR `error_occurred` with the error's type, message, context and `recoverable`; HIGH by default. */
  emitError(
    error: unknown,
    context: Record<string, unknown> = {},
    options: { readonly recoverable?: boolean; readonly priority?: EventPriority } = {},
  ): boolean {
    return this.publish({
      category: 'error',
      eventType: 'error_occurred',
      data: { ...errorInfo(error), context, recoverable: options.recoverable ?? true },
      priority: options.priority ?? 'high',
    })
  }

  /** METRIC event named `name` with `{ name, value, unit, tags }`. */
  emitMetric(
    name: string,
    value: number,
    options: {
      readonly unit?: string
      readonly tags?: Record<string, string>
      readonly priority?: EventPriority
    } = {},
  ): boolean {
    const data: Record<string, unknown> = { name, value }
    if (options.unit !== undefined) data.unit = options.unit
    if (options.tags !== undefined) data.tags = options.tags
    return this.publish({
      category: 'metric',
      eventType: name,
      data,
      ...(options.priority === undefined ? {} : { priority: options.priority }),
    })
  }

  /** LIFECYCLE event named `name`. */
  emitLifecycleEvent(name: string, data: Record<string, unknown> = {}, priority?: EventPriority): boolean {
    return this.publish({
      category: 'lifecycle',
      eventType: name,
      data,
      ...(priority === undefined ? {} : { priority }),
    })
  }

  /** Trace ids stamped on every following event (`undefined` clears them). */
  setTraceContext(traceId: string | undefined, spanId?: string): void {
    this.#traceId = traceId
    this.#spanId = spanId
  }

  /** The trace ids in effect. */
  getTraceContext(): { traceId: string | undefined; spanId: string | undefined } {
    return { traceId: this.#traceId, spanId: this.#spanId }
  }

  /** Session id stamped on every following event. */
  setSessionId(sessionId: string | undefined): void {
    this.#sessionId = sessionId
  }

  /** Replaces the queue bound and overflow strategy. */
  configureBackpressure(config: BackpressureConfig): void {
    const size = config.maxQueueSize ?? 10_000
    if (!Number.isInteger(size) || size < 1) {
      throw new ConfigurationError(`backpressure.maxQueueSize must be an integer >= 1, got ${String(size)}`)
    }
    const strategy = config.strategy ?? 'drop-oldest'
    if (!Object.values(BackpressureStrategy).includes(strategy)) {
      throw new ConfigurationError(
        `backpressure.strategy must be one of ${Object.values(BackpressureStrategy).join(', ')}, got ${String(strategy)}`,
      )
    }
    const threshold = config.warningThreshold ?? 0.8
    rate('backpressure.warningThreshold', threshold)
    this.#maxQueue = size
    this.#strategy = strategy
    this.#warnAt = Math.max(1, Math.ceil(size * threshold))
    this.#onWarning = config.onWarning
  }

  /** Replaces the sampling configuration. */
  configureSampling(config: SamplingConfig): void {
    const defaultRate = rate('sampling.defaultRate', config.defaultRate ?? 1)
    const rates: Partial<Record<EventCategory, number>> = {}
    for (const [cat, r] of Object.entries(config.categoryRates ?? {})) {
      if (!isEventCategory(cat))
        throw new ConfigurationError(`sampling.categoryRates: unknown category "${cat}"`)
      rates[cat] = rate(`sampling.categoryRates.${cat}`, r)
    }
    this.#defaultRate = defaultRate
    this.#categoryRates = rates
    this.#preserveErrors = config.preserveErrors ?? true
  }

  /** The sampling configuration in effect. */
  getSamplingConfig(): Required<Omit<SamplingConfig, 'categoryRates'>> & {
    categoryRates: Partial<Record<EventCategory, number>>
  } {
    return {
      defaultRate: this.#defaultRate,
      categoryRates: { ...this.#categoryRates },
      preserveErrors: this.#preserveErrors,
    }
  }

  /** Adds an exporter (any core exporter: JSON lines, logger, composite, filtering). */
  addExporter(exporter: TelemetryExporter): void {
    this.#exporters.push(exporter)
  }

  /** Removes an exporter. */
  removeExporter(exporter: TelemetryExporter): boolean {
    const at = this.#exporters.indexOf(exporter)
    if (at >= 0) this.#exporters.splice(at, 1)
    return at >= 0
  }

  /** A snapshot of the counters. */
  getStats(): LegacyStats {
    const d = this.#stats.droppedByReason
    return {
      eventsPublished: this.#stats.eventsPublished,
      eventsDelivered: this.#stats.eventsDelivered,
      eventsDropped: d['drop-oldest'] + d['drop-newest'] + d.reject,
      eventsSampledOut: this.#stats.eventsSampledOut,
      droppedByReason: { ...d },
      handlerErrors: this.#stats.handlerErrors,
      handlerTimeouts: this.#stats.handlerTimeouts,
      exporterFailures: this.#stats.exporterFailures,
      queueDepth: this.#depth(),
      subscriberCount: this.getSubscriberCount(),
      backpressureWarnings: this.#stats.backpressureWarnings,
    }
  }

  /** Resolves once every queued event has been delivered (and handlers' promises settled). */
  flush(): Promise<void> {
    if (this.#depth() === 0 && this.#draining === undefined) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #build<T>(input: PublishInput<T>): LegacyEvent {
    if (input === null || typeof input !== 'object') {
      throw new ConfigurationError('publish expects { category, eventType, data, priority }')
    }
    if (!isEventCategory(input.category)) {
      throw new ConfigurationError(
        `unknown category "${String(input.category)}": use one of ${[...CATEGORIES].join(', ')} (EventCategory.*)`,
      )
    }
    const priority = input.priority ?? 'normal'
    if (!isEventPriority(priority)) {
      throw new ConfigurationError(
        `unknown priority "${String(priority)}": use EventPriority.CRITICAL/HIGH/NORMAL/LOW`,
      )
    }
    if (typeof input.eventType !== 'string' || input.eventType.length === 0) {
      throw new ConfigurationError('publish needs a non-empty eventType string')
    }
    const event: { -readonly [K in keyof LegacyEvent]: LegacyEvent[K] } = {
      id: newEventId(),
      category: input.category,
      eventType: input.eventType,
      data: (input.data ?? {}) as Record<string, unknown>,
      priority,
      timestamp: Date.now(),
      source: input.source ?? this.#source,
      metadata: { ...input.metadata },
    }
    const session = input.sessionId ?? this.#sessionId
    if (session !== undefined) event.sessionId = session
    if (this.#traceId !== undefined) event.traceId = this.#traceId
    if (this.#spanId !== undefined) event.spanId = this.#spanId
    return event
  }

  #keep(event: LegacyEvent): boolean {
    if (event.priority === 'critical') return true
    if (this.#preserveErrors && event.category === 'error') return true
    const r = this.#categoryRates[event.category] ?? this.#defaultRate
    return r >= 1 || Math.random() < r
  }

  #depth(): number {
    return this.#queue.length - this.#queueHead
  }

  #accept(event: LegacyEvent): boolean {
    this.#stats.eventsPublished++
    if (!this.#keep(event)) {
      this.#stats.eventsSampledOut++
      return false
    }
    if (this.#depth() >= this.#maxQueue && event.priority !== 'critical') {
      switch (this.#strategy) {
        case 'drop-oldest': {
          // Critical events are never the ones dropped.
          const at = this.#queue.findIndex((e, i) => i >= this.#queueHead && e.priority !== 'critical')
          if (at < 0) {
            this.#stats.droppedByReason['drop-newest']++
            return false
          }
          this.#queue.splice(at, 1)
          this.#stats.droppedByReason['drop-oldest']++
          break
        }
        case 'drop-newest':
        case 'block':
          this.#stats.droppedByReason['drop-newest']++
          return false
        case 'reject':
          this.#stats.droppedByReason.reject++
          throw new BackpressureError(this.#maxQueue)
      }
    }
    this.#push(event)
    return true
  }

  #push(event: LegacyEvent): void {
    this.#queue.push(event)
    const depth = this.#depth()
    if (depth >= this.#warnAt && !this.#warned) {
      this.#warned = true
      this.#stats.backpressureWarnings++
      try {
        this.#onWarning?.(depth)
      } catch {
        // A warning callback must not break publishing.
      }
    }
    this.#schedule()
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      if (this.#draining !== undefined) return
      this.#draining = this.#drain().finally(() => {
        this.#draining = undefined
        if (this.#depth() > 0) this.#schedule()
        else this.#idle()
      })
    })
  }

  #idle(): void {
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const w of waiters) w()
  }

  async #drain(): Promise<void> {
    while (this.#depth() > 0) {
      const batch = this.#queue.slice(this.#queueHead)
      this.#queue.length = 0
      this.#queueHead = 0
      if (this.#warned && batch.length < this.#warnAt / 2) this.#warned = false
      const waiters = this.#roomWaiters.splice(0)
      for (const w of waiters) w()
      const pending: Promise<unknown>[] = []
      for (const event of batch) this.#dispatch(event, pending)
      if (this.#exporters.length > 0) pending.push(this.#export(batch))
      if (pending.length === 0) continue
      // Async handlers are awaited batch by batch, which is what makes the queue's backpressure
      // mean something; a handler that never settles must not stop delivery for good.
      let timer: NodeJS.Timeout | undefined
      const timedOut = await Promise.race([
        Promise.all(pending).then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), this.#handlerTimeoutMs)
        }),
      ])
      clearTimeout(timer)
      if (timedOut) this.#stats.handlerTimeouts++
    }
  }

  #dispatch(event: LegacyEvent, pending: Promise<unknown>[]): void {
    const rank = RANK[event.priority]
    const lists = [this.#subs.get(event.category), this.#subs.get(ALL)]
    for (const list of lists) {
      if (list === undefined) continue
      for (const entry of [...list]) {
        if (rank < entry.min) continue
        try {
          const result = entry.handler(event)
          this.#stats.eventsDelivered++
          if (result instanceof Promise) {
            pending.push(
              result.catch(() => {
                this.#stats.handlerErrors++
              }),
            )
          }
        } catch {
          this.#stats.handlerErrors++
        }
      }
    }
  }

  async #export(batch: readonly LegacyEvent[]): Promise<void> {
    const envelopes = batch.map(legacyToEnvelope)
    await Promise.all(
      this.#exporters.map(async (e) => {
        try {
          await e.export(envelopes)
        } catch {
          this.#stats.exporterFailures++
        }
      }),
    )
  }
}

/** The process-wide legacy bus (`get_event_bus()` of the old API). */
export function getEventBus(): EventBus {
  return EventBus.getInstance()
}
