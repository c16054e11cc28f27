/**
 * Trace-context propagation through every backend, on core's instrumentation hook:
 *
 * - publish: a PRODUCER `send {topic}` span around the backend's publish, ended when the broker
 *   accepted the event or failed; its context goes into the event's headers (W3C `traceparent`,
 *   `tracestate`, `baggage`). A batch gets one PRODUCER `create {topic}` span per event (each
 *   event's own creation context, injected into it) and one `send` span for the whole call that
 *   links to them, as the messaging conventions describe for batch publishing.
 * - deliver: a CONSUMER `process {topic}` span per handler run whose parent is the producer's
 *   context from the headers, which is also added as a link (the conventions require the link;
 *   the parent is their option for single-message processing, and what makes one trace). A
 *   request or message of the AgentMessageBus gets an INTERNAL `invoke_agent {agent}` span
 *   under it (GenAI conventions), in which the agent's handler runs.
 * - settle: counted by outcome.
 * - telemetry: the ObservabilityBus keeps the context active at each `emit` and writes it into
 *   the event's headers at flush, so the spans the OpenTelemetryExporter makes of it are children
 *   of the span that was active (a consumer span, `invoke_agent`, the application's own). Its
 *   batches are internal publishes: counted, with no spans.
 *
 * The parent of a publish is the active span; without one (no context manager registered, or a
 * publish outside any span) the traceparent the caller put in the headers, then the trace context
 * of the event being handled. So a dead letter, a redrive and a publish inside a handler stay in
 * the trace of the event they come from.
 */

import {
  AGENT_HEADERS,
  type BatchReceipt,
  currentEvent,
  type EventInput,
  type PublishReceipt,
} from '@omnibus/core'
import {
  type DeliveryInfo,
  type DeliveryObservation,
  type DeliveryOutcome,
  type Instrumentation,
  type PublishInfo,
  type PublishObservation,
  registerInstrumentation,
  type SettleInfo,
} from '@omnibus/core/backend'
import {
  type Attributes,
  type Context,
  context,
  createNoopMeter,
  defaultTextMapGetter,
  defaultTextMapSetter,
  type Exception,
  isSpanContextValid,
  type Link,
  type MeterProvider,
  metrics,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapPropagator,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core'
import { metricAttributes, OmnibusMetrics } from './metrics.ts'
import { ERROR_TYPE, GEN_AI, MESSAGING, messagingSystemOf, OMNIBUS } from './propagation-attributes.ts'

/** The instrumentation scope name of Omnibus's spans and metrics. */
export const INSTRUMENTATION_SCOPE = '@omnibus/otel'
const SCOPE_VERSION = '0.1.0'

/** Options of {@link instrumentOmnibus}. */
export interface InstrumentOmnibusOptions {
  /**
   * Where spans go. @default the global tracer provider (`trace.getTracerProvider()`), looked up
   * at each span so a provider registered later is used.
   */
  readonly tracerProvider?: TracerProvider
  /** Where Omnibus's metrics go. @default the global meter provider (`metrics.getMeterProvider()`) */
  readonly meterProvider?: MeterProvider
  /**
   * How a context is written into and read from event headers.
   * @default W3C trace context and W3C baggage
   */
  readonly propagator?: TextMapPropagator
}

/** The handle {@link instrumentOmnibus} returns. */
export interface OmnibusInstrumentation {
  /** Removes the hook: publishes and deliveries are no longer traced or counted. Idempotent. */
  unregister(): void
}

/**
 * Installs OpenTelemetry tracing and metrics on every Omnibus backend of this process, and
 * returns the handle that removes it. One installation per process (a second one is a
 * `ConfigurationError` until the first is removed). Register the SDK's context manager (any
 * `NodeSDK` or `AsyncLocalStorageContextManager`) so spans started inside handlers nest under
 * their consumer span.
 */
export function instrumentOmnibus(options: InstrumentOmnibusOptions = {}): OmnibusInstrumentation {
  const hook = new PropagationHook(options)
  const unregister = registerInstrumentation(hook)
  let done = false
  return {
    unregister() {
      if (done) return
      done = true
      unregister()
    },
  }
}

/** What the global tracer provider delegates to while no SDK is registered. */
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate()
const NoopMeter = createNoopMeter().constructor

const DEFAULT_PROPAGATOR = new CompositePropagator({
  propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
})

type Headers = Readonly<Record<string, string>>

function isHeaders(value: unknown): value is Headers {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function carriesContext(headers: Headers): boolean {
  return headers.traceparent !== undefined || headers.baggage !== undefined
}

function errorType(error: unknown): string {
  if (error instanceof Error) return error.name
  return typeof error === 'string' ? 'Error' : '_OTHER'
}

function fail(span: Span, error: unknown, fallback: string): void {
  if (error instanceof Error || typeof error === 'string') span.recordException(error as Exception)
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : fallback
  span.setStatus({ code: SpanStatusCode.ERROR, message })
  span.setAttribute(ERROR_TYPE, error === undefined ? fallback : errorType(error))
}

/** core's instrumentation hook implemented with the OpenTelemetry API. */
class PropagationHook implements Instrumentation {
  readonly #tracer: Tracer
  readonly #metrics: OmnibusMetrics
  readonly #propagator: TextMapPropagator
  /**
   * The API's global proxy when no SDK was registered at installation: registering one later
   * sets its delegate, which is checked per publish and delivery (one property read).
   */
  readonly #proxy: ProxyTracerProvider | undefined
  /** The meter is a real one (not the API's no-op, as while no metrics SDK is registered). */
  readonly #metered: boolean

  constructor(options: InstrumentOmnibusOptions) {
    const provider = options.tracerProvider ?? trace.getTracerProvider()
    this.#proxy = provider instanceof ProxyTracerProvider ? provider : undefined
    this.#tracer = provider.getTracer(INSTRUMENTATION_SCOPE, SCOPE_VERSION)
    const meterProvider = options.meterProvider ?? metrics.getMeterProvider()
    const meter = meterProvider.getMeter(INSTRUMENTATION_SCOPE, SCOPE_VERSION)
    this.#metered = !(meter instanceof NoopMeter)
    this.#metrics = new OmnibusMetrics(meter)
    this.#propagator = options.propagator ?? DEFAULT_PROPAGATOR
  }

  /**
   * Whether this publish or delivery records spans. With neither spans nor metrics to record,
   * the hook steps aside: the trace context events carry still goes on through core's
   * inheritance, at no cost.
   */
  isActive(): boolean {
    return this.#metered || this.#tracing()
  }

  #tracing(): boolean {
    const proxy = this.#proxy
    return proxy === undefined || proxy.getDelegate() !== NOOP_TRACER_PROVIDER
  }

  // ---- telemetry's trace context ----

  /** The active context when it holds a span: kept as it is, since `emit` must stay cheap. */
  captureTrace(): unknown {
    const active = context.active()
    return trace.getSpan(active) === undefined ? undefined : active
  }

  /** The headers of a context {@link captureTrace} returned, written by the propagator. */
  traceHeaders(captured: unknown): Readonly<Record<string, string>> | undefined {
    if (captured === null || typeof captured !== 'object') return undefined
    if (typeof (captured as Partial<Context>).getValue !== 'function') return undefined
    const ctx = captured as Context
    const span = trace.getSpanContext(ctx)
    if (span === undefined || !isSpanContextValid(span)) return undefined
    return this.#inject(ctx)
  }

  // ---- publish ----

  publish(info: PublishInfo): PublishObservation | undefined {
    const inputs = info.inputs
    if (inputs.length === 0) return undefined
    // Omnibus's own batches (telemetry) are counted, never traced: their spans would sit inside
    // the very traces the telemetry describes.
    if (info.internal === true || !this.#tracing()) return this.#metered ? this.#countOnly(info) : undefined
    const active = context.active()
    if (inputs.length === 1) {
      const input = inputs[0]
      if (input === null || typeof input !== 'object') return undefined
      return this.#sendOne(info, input, active)
    }
    return this.#sendBatch(info, active)
  }

  /** The parent of a publish: the active span, else the caller's headers, else the handled event. */
  #producerParent(input: EventInput, active: Context): Context {
    if (trace.getSpan(active) !== undefined) return active
    const own = input.headers
    if (isHeaders(own) && carriesContext(own))
      return this.#propagator.extract(active, own, defaultTextMapGetter)
    const handled = currentEvent()
    if (handled !== undefined && carriesContext(handled.headers)) {
      return this.#propagator.extract(active, handled.headers, defaultTextMapGetter)
    }
    return active
  }

  #inject(ctx: Context): Record<string, string> | undefined {
    const carrier: Record<string, string> = {}
    this.#propagator.inject(ctx, carrier, defaultTextMapSetter)
    for (const _ in carrier) return carrier
    return undefined
  }

  #sendOne(info: PublishInfo, input: EventInput, active: Context): PublishObservation {
    const system = messagingSystemOf(info.backend)
    const topic = String(input.topic)
    const operation = info.operation === 'dead-letter' ? 'dead_letter' : 'send'
    const attributes: Attributes = {
      [MESSAGING.system]: system,
      [MESSAGING.destination]: topic,
      [MESSAGING.operationType]: 'send',
      [MESSAGING.operationName]: operation,
    }
    if (typeof input.id === 'string') attributes[MESSAGING.messageId] = input.id
    const conversation = input.correlationId ?? currentEvent()?.correlationId ?? currentEvent()?.id
    if (conversation !== undefined) attributes[MESSAGING.conversationId] = conversation
    const parent = this.#producerParent(input, active)
    const span = this.#tracer.startSpan(
      `${operation} ${topic}`,
      { kind: SpanKind.PRODUCER, attributes },
      parent,
    )
    const ctx = trace.setSpan(parent, span)
    const headers = this.#inject(ctx)
    const started = performance.now()
    const metricAttrs = metricAttributes(system, topic, undefined)
    const observer = this.#metrics
    return {
      headersFor: () => headers,
      run: (send) => context.with(ctx, send),
      end(receipt, error) {
        const seconds = (performance.now() - started) / 1000
        if (error === undefined) {
          const id = (receipt as PublishReceipt | undefined)?.id
          if (typeof id === 'string') span.setAttribute(MESSAGING.messageId, id)
          observer.sent(metricAttrs, 1, 0)
          observer.publishDuration(metricAttrs, seconds)
        } else {
          const type = errorType(error)
          fail(span, error, 'publish failed')
          observer.sent(metricAttrs, 0, 1, type)
          observer.publishDuration(metricAttrs, seconds, type)
        }
        span.end()
      },
    }
  }

  /** A publish observed for metrics only (no spans to record). */
  #countOnly(info: PublishInfo): PublishObservation {
    const system = messagingSystemOf(info.backend)
    const inputs = info.inputs
    const started = performance.now()
    const observer = this.#metrics
    return {
      headersFor: () => undefined,
      run: (send) => send(),
      end(receipt, error) {
        const seconds = (performance.now() - started) / 1000
        const type = error === undefined ? undefined : errorType(error)
        if (info.operation === 'publish-batch') {
          countBatch(observer, system, inputs, receipt as BatchReceipt | undefined, type)
        } else {
          const input = inputs[0]
          const topic = input !== null && typeof input === 'object' ? String(input.topic) : 'invalid'
          observer.sent(
            metricAttributes(system, topic, undefined),
            type === undefined ? 1 : 0,
            type === undefined ? 0 : 1,
            type,
          )
        }
        const first = inputs[0]
        const topic = first !== null && typeof first === 'object' ? String(first.topic) : 'invalid'
        observer.publishDuration(metricAttributes(system, topic, undefined), seconds, type)
      },
    }
  }

  #sendBatch(info: PublishInfo, active: Context): PublishObservation {
    const system = messagingSystemOf(info.backend)
    const inputs = info.inputs
    const headers: Array<Record<string, string> | undefined> = new Array(inputs.length)
    const links: Link[] = []
    let topic: string | undefined
    let mixed = false
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]
      if (input === null || typeof input !== 'object') continue
      const t = String(input.topic)
      if (topic === undefined) topic = t
      else if (topic !== t) mixed = true
      const attributes: Attributes = {
        [MESSAGING.system]: system,
        [MESSAGING.destination]: t,
        [MESSAGING.operationType]: 'create',
        [MESSAGING.operationName]: 'create',
      }
      if (typeof input.id === 'string') attributes[MESSAGING.messageId] = input.id
      if (input.correlationId !== undefined) attributes[MESSAGING.conversationId] = input.correlationId
      const parent = this.#producerParent(input, active)
      const create = this.#tracer.startSpan(`create ${t}`, { kind: SpanKind.PRODUCER, attributes }, parent)
      headers[i] = this.#inject(trace.setSpan(parent, create))
      const linked = create.spanContext()
      if (isSpanContextValid(linked)) links.push({ context: linked })
      create.end()
    }
    const destination = mixed || topic === undefined ? undefined : topic
    const attributes: Attributes = {
      [MESSAGING.system]: system,
      [MESSAGING.operationType]: 'send',
      [MESSAGING.operationName]: 'send',
      [MESSAGING.batchCount]: inputs.length,
    }
    if (destination !== undefined) attributes[MESSAGING.destination] = destination
    const span = this.#tracer.startSpan(destination === undefined ? 'send' : `send ${destination}`, {
      kind: SpanKind.PRODUCER,
      attributes,
      links,
    })
    const ctx = trace.setSpan(active, span)
    const started = performance.now()
    const observer = this.#metrics
    const durationAttrs: Attributes =
      destination === undefined
        ? { [MESSAGING.system]: system }
        : metricAttributes(system, destination, undefined)
    return {
      headersFor: (index) => headers[index],
      run: (send) => context.with(ctx, send),
      end(receipt, error) {
        const seconds = (performance.now() - started) / 1000
        const batch = receipt as BatchReceipt | undefined
        if (error !== undefined || batch === undefined) {
          const type = errorType(error)
          fail(span, error, 'publish failed')
          countBatch(observer, system, inputs, undefined, type)
          observer.publishDuration(durationAttrs, seconds, type)
        } else {
          if (batch.failed > 0) {
            const first = batch.results.find((r) => !r.ok)
            const firstError = first !== undefined && !first.ok ? first.error : undefined
            span.setStatus({
              code: SpanStatusCode.ERROR,
              message: `${batch.failed} of ${inputs.length} events were refused`,
            })
            span.setAttribute(ERROR_TYPE, errorType(firstError))
          }
          countBatch(observer, system, inputs, batch, undefined)
          observer.publishDuration(durationAttrs, seconds)
        }
        span.end()
      },
    }
  }

  // ---- deliver ----

  deliver(info: DeliveryInfo): DeliveryObservation | undefined {
    if (!this.#tracing()) return this.#metered ? this.#measureOnly(info) : undefined
    const event = info.event
    const headers = event.headers
    // The producer's context, never whatever happens to be active where the broker was read
    // (an in-process backend delivers inside the publisher's call).
    const parent = carriesContext(headers)
      ? this.#propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter)
      : ROOT_CONTEXT
    const producer = trace.getSpanContext(parent)
    const group = info.subscription.group
    const system = messagingSystemOf(info.backend)
    const attributes: Attributes = {
      [MESSAGING.system]: system,
      [MESSAGING.destination]: event.topic,
      [MESSAGING.subscription]: info.subscription.pattern,
      [MESSAGING.operationType]: 'process',
      [MESSAGING.operationName]: 'process',
      [MESSAGING.messageId]: event.id,
      [OMNIBUS.attempt]: info.attempt,
    }
    if (group !== undefined) attributes[MESSAGING.consumerGroup] = group
    if (event.correlationId !== undefined) attributes[MESSAGING.conversationId] = event.correlationId
    const span = this.#tracer.startSpan(
      `process ${event.topic}`,
      {
        kind: SpanKind.CONSUMER,
        attributes,
        ...(producer !== undefined && isSpanContextValid(producer) ? { links: [{ context: producer }] } : {}),
      },
      parent,
    )
    let ctx = trace.setSpan(parent, span)
    let agentSpan: Span | undefined
    const agent = headers[AGENT_HEADERS.to]
    const kind = headers[AGENT_HEADERS.kind]
    if (agent !== undefined && agent !== '*' && kind !== 'reply' && kind !== 'broadcast') {
      const agentAttributes: Attributes = {
        [GEN_AI.operationName]: 'invoke_agent',
        [GEN_AI.agentName]: agent,
      }
      if (event.correlationId !== undefined) agentAttributes[GEN_AI.conversationId] = event.correlationId
      agentSpan = this.#tracer.startSpan(
        `invoke_agent ${agent}`,
        { kind: SpanKind.INTERNAL, attributes: agentAttributes },
        ctx,
      )
      ctx = trace.setSpan(ctx, agentSpan)
    }
    const metricAttrs = metricAttributes(system, event.topic, group)
    const lag = (Date.now() - Math.max(event.time, event.deliverAt ?? 0)) / 1000
    this.#metrics.delivered(metricAttrs, info.attempt, Math.max(lag, 0))
    const started = performance.now()
    const observer = this.#metrics
    const runInContext =
      span.isRecording() || isSpanContextValid(span.spanContext()) || carriesContext(headers)
    return {
      run: runInContext ? (fn, a, b) => context.with(ctx, fn, undefined, a, b) : (fn, a, b) => fn(a, b),
      end(outcome: DeliveryOutcome) {
        const seconds = (performance.now() - started) / 1000
        let type: string | undefined
        if (outcome.kind !== 'ack') {
          const fallback = outcome.kind === 'retry' ? 'retry requested' : 'dead-letter requested'
          type = outcome.error === undefined ? fallback : errorType(outcome.error)
          if (agentSpan !== undefined) fail(agentSpan, outcome.error, fallback)
          fail(span, outcome.error, fallback)
        }
        agentSpan?.end()
        span.end()
        observer.processed(metricAttrs, seconds, type)
      },
    }
  }

  /** A delivery observed for metrics only (no spans to record). */
  #measureOnly(info: DeliveryInfo): DeliveryObservation {
    const event = info.event
    const metricAttrs = metricAttributes(
      messagingSystemOf(info.backend),
      event.topic,
      info.subscription.group,
    )
    const lag = (Date.now() - Math.max(event.time, event.deliverAt ?? 0)) / 1000
    this.#metrics.delivered(metricAttrs, info.attempt, Math.max(lag, 0))
    const started = performance.now()
    const observer = this.#metrics
    return {
      run: (fn, a, b) => fn(a, b),
      end(outcome: DeliveryOutcome) {
        const type =
          outcome.kind === 'ack'
            ? undefined
            : outcome.error === undefined
              ? `${outcome.kind} requested`
              : errorType(outcome.error)
        observer.processed(metricAttrs, (performance.now() - started) / 1000, type)
      },
    }
  }

  // ---- settle ----

  settle(info: SettleInfo): void {
    if (!this.#metered) return
    this.#metrics.settled(
      metricAttributes(messagingSystemOf(info.backend), info.event.topic, info.subscription.group),
      info.outcome,
    )
  }
}

/** Counts a batch's events per destination: accepted, and refused with their error's type. */
function countBatch(
  observer: OmnibusMetrics,
  system: string,
  inputs: readonly EventInput[],
  batch: BatchReceipt | undefined,
  error: string | undefined,
): void {
  const per = new Map<string, { ok: number; failed: number; type: string | undefined }>()
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]
    const topic = input !== null && typeof input === 'object' ? String(input.topic) : 'invalid'
    let entry = per.get(topic)
    if (entry === undefined) {
      entry = { ok: 0, failed: 0, type: undefined }
      per.set(topic, entry)
    }
    const result = batch?.results[i]
    if (result?.ok === true) entry.ok++
    else {
      entry.failed++
      entry.type ??= result !== undefined && !result.ok ? errorType(result.error) : (error ?? '_OTHER')
    }
  }
  for (const [topic, entry] of per) {
    observer.sent(metricAttributes(system, topic, undefined), entry.ok, entry.failed, entry.type)
  }
}
