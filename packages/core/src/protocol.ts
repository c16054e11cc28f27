/**
 * The `EventBackend` protocol: one object per backend, with the same envelope, topic grammar
 * and delivery guarantees everywhere. Backends are plain objects; shared behaviour lives in
 * core helpers (`delivery.ts`, `codec.ts`, `matcher.ts`) that backends call.
 */

/** How often an event may reach one subscription. */
export type Guarantee = 'at-most-once' | 'at-least-once' | 'exactly-once'

/** All guarantees, weakest first. */
export const GUARANTEES: readonly Guarantee[] = ['at-most-once', 'at-least-once', 'exactly-once']

/** A JSON value as it survives `JSON.stringify`/`JSON.parse` unchanged. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

/** What an event may carry: any JSON value, or bytes (kept byte-exact on every backend). */
export type EventData = JsonValue | Uint8Array

/** The envelope: the same record on every backend. */
export interface OmnibusEvent<T = unknown> {
  /** UUIDv7 by default (time-ordered); the dedupe key. */
  readonly id: string
  /** The concrete topic, never a pattern. */
  readonly topic: string
  /** JSON value or bytes. */
  readonly data: T
  /** Epoch milliseconds at publish. */
  readonly time: number
  /** Producer identity (service name, agent id). */
  readonly source: string
  /** Groups events of one conversation or workflow. */
  readonly correlationId?: string
  /** Id of the event that was being handled when this one was published. */
  readonly causationId?: string
  /** Ordering key: events with one key are delivered in publish order where the backend orders. */
  readonly partitionKey?: string
  /** User headers; `traceparent`/`tracestate` carry W3C trace context. */
  readonly headers: Readonly<Record<string, string>>
  /** Guarantee the producer asked for. */
  readonly guarantee: Guarantee
  /**
   * CloudEvents `subject`: what the event is about, within the context of `source` (a file name,
   * an order id). Kept as written by any CloudEvents producer.
   */
  readonly subject?: string
  /** CloudEvents `dataschema`: an absolute URI of the schema `data` adheres to. */
  readonly dataSchema?: string
  /**
   * CloudEvents `datacontenttype` when it is not the one the data's form implies
   * (`application/json` for JSON values, `application/octet-stream` for bytes), e.g. `text/xml`
   * from a foreign producer, kept so a re-published event says the same.
   */
  readonly dataContentType?: string
  /**
   * Epoch ms before which no handler receives the event (set from `delayMs` or `deliverAt` at
   * publish); absent for an event delivered as soon as it is published.
   */
  readonly deliverAt?: number
  /**
   * Epoch ms from which the event is expired: no handler starts for it (it is dead-lettered with
   * reason `expired`, or dropped), and a running handler's `ctx.signal` aborts (set from `ttlMs`
   * or `expiresAt` at publish).
   */
  readonly expiresAt?: number
}

/** What a caller passes to `publish`: only `topic` and `data` are required. */
export interface EventInput<T = unknown> {
  readonly topic: string
  readonly data: T
  readonly id?: string
  readonly time?: number
  readonly source?: string
  readonly correlationId?: string
  readonly causationId?: string
  readonly partitionKey?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly guarantee?: Guarantee
  /** CloudEvents `subject`: a non-empty string. */
  readonly subject?: string
  /** CloudEvents `dataschema`: an absolute URI. */
  readonly dataSchema?: string
  /** CloudEvents `datacontenttype` of `data` (a media type such as `text/plain`). */
  readonly dataContentType?: string
  /**
   * Hold the event this many milliseconds (a finite number >= 0) before any handler receives it.
   * Not with `deliverAt`. A delay above the backend's `capabilities.delay.maxDelayMs` is a
   * `CapabilityError`.
   */
  readonly delayMs?: number
  /** Hold the event until this time (epoch ms or a `Date`). Not with `delayMs`. */
  readonly deliverAt?: number | Date
  /**
   * The event expires this many milliseconds (a finite number > 0) after it becomes deliverable:
   * after publish, or after `deliverAt` for a delayed event. Not with `expiresAt`.
   */
  readonly ttlMs?: number
  /** The event expires at this time (epoch ms or a `Date`), which must be after `deliverAt`. Not with `ttlMs`. */
  readonly expiresAt?: number | Date
}

/** How long a backend can hold an event before delivering it (`BackendCapabilities.delay`). */
export interface DelayCapability {
  /** The longest delay a publish may ask for, in milliseconds. */
  readonly maxDelayMs: number
}

/** What a backend declares it can do. Asking for more is a `CapabilityError`, never a downgrade. */
export interface BackendCapabilities {
  /** Guarantees a subscription may ask for. */
  readonly guarantees: readonly Guarantee[]
  /** Events survive a restart of the process and of the broker. */
  readonly persistent: boolean
  /** Publishers and subscribers may live in different processes. */
  readonly crossProcess: boolean
  /** Competing consumers (`group`) are supported. */
  readonly groups: boolean
  /** Events with one `partitionKey` are delivered in publish order within a group. */
  readonly orderedPerKey: boolean
  /** A new group can start from the earliest retained event (`from: 'earliest'`). */
  readonly replay: boolean
  /** Largest encoded event accepted, in bytes; `undefined` when the backend sets no limit. */
  readonly maxPayloadBytes: number | undefined
  /** The backend talks to a broker over the network (enables the networked conformance cases). */
  readonly networked: boolean
  /** Upper bound, in ms, on how long a wildcard subscription takes to see a brand-new topic. */
  readonly wildcardDiscoveryMs: number
  /**
   * Delayed delivery (`delayMs`/`deliverAt` on publish) and its longest delay, or `false` where the
   * backend cannot hold events at all. A longer delay is a `CapabilityError` at publish.
   */
  readonly delay: DelayCapability | false
}

/** Result of `healthCheck()`. */
export interface HealthStatus {
  readonly healthy: boolean
  readonly latencyMs: number
  readonly detail?: string
}

/** Result of one accepted publish. */
export interface PublishReceipt {
  readonly id: string
  readonly topic: string
  /** Backend-specific position (offset, stream id, row id), when there is one. */
  readonly position?: string
}

/** One entry of a batch publish result, in input order. */
export type BatchEntryResult =
  | { readonly ok: true; readonly index: number; readonly receipt: PublishReceipt }
  | { readonly ok: false; readonly index: number; readonly error: Error }

/** Result of `publishBatch`: one entry per input event, in input order. */
export interface BatchReceipt {
  readonly results: readonly BatchEntryResult[]
  readonly succeeded: number
  readonly failed: number
}

/** Retry policy for at-least-once and exactly-once subscriptions. */
export interface RetryPolicy {
  /** Total handler runs before dead-lettering, including the first. @default 5 */
  readonly maxAttempts?: number
  /** Delay before the second attempt. @default 100 */
  readonly initialDelayMs?: number
  /** Upper bound of any delay. @default 30000 */
  readonly maxDelayMs?: number
  /** Growth factor between attempts. @default 2 */
  readonly multiplier?: number
  /** Fraction of the delay randomised (0 = none, 1 = full jitter between 0 and the delay). @default 0.2 */
  readonly jitter?: number
}

/** Options of `subscribe`. */
export interface SubscribeOptions {
  /** Competing-consumer group. Absent: broadcast, every subscriber gets every event. */
  readonly group?: string
  /** @default 'at-least-once' */
  readonly guarantee?: Guarantee
  /** Max handlers in flight for this subscription; 1 = strictly ordered. @default 1 */
  readonly concurrency?: number
  /** Where a new group starts on persistent backends. @default 'latest' */
  readonly from?: 'latest' | 'earliest'
  /** Retry policy for failed handlers. */
  readonly retry?: RetryPolicy
  /** Dead-letter topic, or `false` to drop after the last attempt. @default 'omnibus.deadletter' */
  readonly deadLetter?: string | false
  /** Aborting ends the subscription like `unsubscribe()`. */
  readonly signal?: AbortSignal
  /** How long a delivered event stays leased to a consumer before it may be redelivered. */
  readonly visibilityTimeoutMs?: number
  /**
   * What happens to an event that reaches this subscription after its `expiresAt`: no handler
   * runs, and it goes to the dead-letter topic with reason `expired`, or is acknowledged and
   * dropped. @default 'dead-letter'
   */
  readonly expired?: 'dead-letter' | 'drop'
  /** Called once for each expired event this subscription settles without running its handler. */
  readonly onExpired?: (event: OmnibusEvent) => void
}

/** Minimal structured logger; pino, console and most loggers fit it. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

/** A live subscription. */
export interface Subscription {
  readonly id: string
  readonly pattern: string
  readonly group: string | undefined
  /** False once unsubscribed or aborted. */
  readonly active: boolean
  /** Stops delivery; in-flight handlers finish. Idempotent and safe to call concurrently. */
  unsubscribe(): Promise<void>
}

/** What a handler receives beside the event. */
export interface HandlerContext {
  /** 1 for the first delivery, 2 for the first retry, ... */
  readonly attempt: number
  readonly subscription: Subscription
  readonly logger: Logger
  /** Aborted when the subscription closes or the backend disconnects past its drain timeout. */
  readonly signal: AbortSignal
  /** Ask for redelivery after `delayMs` (default: the retry policy's schedule). Return after calling. */
  retry(delayMs?: number): void
  /** Send the event to the dead-letter topic at once. Return after calling. */
  deadLetter(reason: string): void
}

/** A subscriber. Resolving acknowledges; throwing asks for redelivery. */
export type EventHandler<T = unknown> = (event: OmnibusEvent<T>, ctx: HandlerContext) => unknown

/** The contract every backend implements. */
export interface EventBackend {
  readonly name: string
  readonly capabilities: BackendCapabilities
  readonly isConnected: boolean
  /** Idempotent. */
  connect(): Promise<void>
  /** Drains in-flight handlers up to `drainTimeoutMs`, then closes. Idempotent. */
  disconnect(opts?: { readonly drainTimeoutMs?: number }): Promise<void>
  healthCheck(): Promise<HealthStatus>
  /** Resolves when the backend has the event (durably, where the backend is persistent). */
  publish<T = unknown>(event: EventInput<T>): Promise<PublishReceipt>
  /** Per-entry results; one bad entry does not sink the rest. */
  publishBatch(events: readonly EventInput[]): Promise<BatchReceipt>
  subscribe<T = unknown>(
    pattern: string,
    handler: EventHandler<T>,
    opts?: SubscribeOptions,
  ): Promise<Subscription>
  /**
   * Makes the consumer group `group` exist for `pattern` now, if it does not yet, so that events
   * published from now on wait for its first member, as if a member had subscribed at 'latest'
   * and left. A later `subscribe(pattern, handler, { group })` at the default start receives
   * them; another group is not affected (it still starts at 'latest'). Idempotent and cheap to
   * repeat; a group that exists already keeps its position. `pattern` and `group` must be
   * exactly those the subscription will use (on most brokers a group's storage is per pattern).
   * How long the events are kept for a member that never comes is the backend's retention (see
   * its README); the memory backend keeps a bounded in-process mailbox.
   * Throws `InvalidTopicError` for a bad pattern, `ConfigurationError` for a bad group name,
   * `CapabilityError` on a backend without groups, `NotConnectedError` before `connect()`.
   */
  ensureGroup(pattern: string, group: string): Promise<void>
}

/** The dead-letter topic used when a subscription does not name one. */
export const DEFAULT_DEAD_LETTER_TOPIC = 'omnibus.deadletter'

/**
 * The group that keeps dead letters on brokers that drop a message no queue is bound to (RabbitMQ,
 * SQS): a backend that dead-letters to a topic first creates this group's queue on that topic, so
 * letters wait there until an application subscribes to the dead-letter topic with this group.
 */
export const DEAD_LETTER_GROUP = 'omnibus-deadletter'
