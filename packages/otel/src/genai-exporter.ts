/**
 * The ObservabilityBus's telemetry as OpenTelemetry signals, after the GenAI semantic conventions:
 * `tool.start`/`tool.end` become `execute_tool {tool}` spans, `model.call` becomes a
 * `chat {model}` span with token usage and the `gen_ai.client.*` histograms, `metric.*` events
 * become metric instruments, `lifecycle.*` and `error.*` events become log records. It runs as an
 * ObservabilityBus exporter, in the bus's flusher: nothing of this is on the `emit` path.
 */

import type { ModelCallData, OmnibusEvent, TelemetryExporter } from '@omnibus/core'
import { ConfigurationError, MODEL_CALL_TOPIC } from '@omnibus/core'
import {
  type Attributes,
  type Context,
  type Counter,
  context,
  type Gauge,
  type Histogram,
  type Meter,
  type MeterProvider,
  metrics,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api'
import { type LoggerProvider, logs, type Logger as OtelLogger, SeverityNumber } from '@opentelemetry/api-logs'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import {
  ATTR_ERROR_TYPE,
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_TYPE,
} from '@opentelemetry/semantic-conventions'
import {
  ATTR_GEN_AI_AGENT_NAME,
  ATTR_GEN_AI_CONVERSATION_ID,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
  ATTR_GEN_AI_TOKEN_TYPE,
  ATTR_GEN_AI_TOOL_CALL_ARGUMENTS,
  ATTR_GEN_AI_TOOL_CALL_ID,
  ATTR_GEN_AI_TOOL_CALL_RESULT,
  ATTR_GEN_AI_TOOL_NAME,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  GEN_AI_OPERATION_NAME_VALUE_CHAT,
  GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
  GEN_AI_TOKEN_TYPE_VALUE_INPUT,
  GEN_AI_TOKEN_TYPE_VALUE_OUTPUT,
  METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
  METRIC_GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
  METRIC_GEN_AI_CLIENT_TOKEN_USAGE,
} from '@opentelemetry/semantic-conventions/incubating'

/** Instrumentation scope of everything this exporter records. */
export const GENAI_SCOPE = '@omnibus/otel/genai'

/** Bucket boundaries the GenAI conventions advise for `gen_ai.client.token.usage`. */
export const TOKEN_USAGE_BUCKETS: readonly number[] = [
  1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
]

/** Bucket boundaries (seconds) the GenAI conventions advise for `gen_ai.client.operation.duration`. */
export const OPERATION_DURATION_BUCKETS: readonly number[] = [
  0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
]

/** Attribute set on a tool span whose `tool.end` never came (evicted or still open at shutdown). */
export const ATTR_TOOL_UNFINISHED = 'omnibus.tool.unfinished'

/** How a `metric.*` event is recorded. */
export type MetricKind = 'counter' | 'histogram' | 'gauge'

/** Options of {@link OpenTelemetryExporter}. */
export interface OpenTelemetryExporterOptions {
  /** @default the global tracer provider */
  readonly tracerProvider?: TracerProvider
  /** @default the global meter provider */
  readonly meterProvider?: MeterProvider
  /** @default the global logger provider */
  readonly loggerProvider?: LoggerProvider
  /** Exporter name in the bus's stats. @default 'opentelemetry' */
  readonly name?: string
  /**
   * Record tool arguments and results (`gen_ai.tool.call.arguments`/`result`, as JSON). They may
   * hold personal or secret data, so the conventions make them opt-in. @default false
   */
  readonly recordToolContent?: boolean
  /** Tool spans kept open waiting for their `tool.end`; the oldest is ended as unfinished beyond. @default 10000 */
  readonly maxOpenToolSpans?: number
  /** Distinct `metric.*` instruments; further names are counted in {@link stats} and skipped. @default 1000 */
  readonly maxInstruments?: number
  /**
   * Chooses the instrument for a `metric.*` event. @default {@link defaultMetricKind}: the event's
   * own `kind` field, else by unit
   */
  readonly metricKind?: (
    name: string,
    unit: string | undefined,
    data: Readonly<Record<string, unknown>>,
  ) => MetricKind
}

/** Counters of an {@link OpenTelemetryExporter}. */
export interface OpenTelemetryExporterStats {
  readonly toolSpans: number
  readonly modelSpans: number
  readonly metricPoints: number
  readonly logRecords: number
  /** Tool spans ended without their `tool.end` (evicted, or open at close). */
  readonly unfinishedToolSpans: number
  /** Events skipped: malformed data, or a metric name past `maxInstruments`. */
  readonly skipped: number
  readonly openToolSpans: number
}

const DURATION_UNITS = new Set(['ns', 'us', 'μs', 'ms', 's', 'min', 'h'])
const SIZE_UNITS = new Set(['By', 'kBy', 'KiBy', 'MBy', 'MiBy', 'bytes', 'B', 'KB', 'MB'])

/**
 * The instrument a `metric.*` event becomes when no `metricKind` option is given: the event's own
 * `kind` (`counter`, `histogram`, `gauge`) when it has one; a histogram for durations and sizes
 * (`ms`, `s`, `By`, …); a counter for counts (`1`, `{token}`-style annotations, a unit ending
 * in `_total` or named `count`) whose value is >= 0; a gauge otherwise (`%`, no unit, …).
 */
export function defaultMetricKind(
  _name: string,
  unit: string | undefined,
  data: Readonly<Record<string, unknown>>,
): MetricKind {
  const kind = data.kind
  if (kind === 'counter' || kind === 'histogram' || kind === 'gauge') return kind
  if (unit === undefined) return 'gauge'
  if (DURATION_UNITS.has(unit) || SIZE_UNITS.has(unit)) return 'histogram'
  const value = data.value
  const countLike = unit === '1' || unit === 'count' || /^\{[^}]+\}$/.test(unit) || unit.endsWith('_total')
  if (countLike && typeof value === 'number' && value >= 0) return 'counter'
  return 'gauge'
}

interface OpenTool {
  readonly span: Span
  readonly start: number
}

type MetricInstrument =
  | { readonly kind: 'counter'; readonly instrument: Counter }
  | { readonly kind: 'histogram'; readonly instrument: Histogram }
  | { readonly kind: 'gauge'; readonly instrument: Gauge }

const propagator = new W3CTraceContextPropagator()
const headerGetter = {
  get: (carrier: Record<string, string>, key: string): string | undefined => carrier[key],
  keys: (carrier: Record<string, string>): string[] => Object.keys(carrier),
}

function record(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined
}

function json(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * An ObservabilityBus exporter that turns the bus's telemetry into OpenTelemetry spans, metrics
 * and log records (GenAI semantic conventions). Spans are children of the trace context the event
 * carries (`traceparent`: with `instrumentOmnibus()` installed, the span active when the telemetry
 * was emitted, such as the consumer span of the message being handled; without it, the context of
 * the event being handled), so a tool call made while handling a message sits under its consumer.
 *
 * @example
 * const bus = new ObservabilityBus(backend, { exporters: [new OpenTelemetryExporter()] })
 */
export class OpenTelemetryExporter implements TelemetryExporter {
  readonly name: string
  readonly #tracer: Tracer
  readonly #meter: Meter
  readonly #logger: OtelLogger
  readonly #recordToolContent: boolean
  readonly #maxOpen: number
  readonly #maxInstruments: number
  readonly #metricKind: NonNullable<OpenTelemetryExporterOptions['metricKind']>
  readonly #open = new Map<string, OpenTool>()
  readonly #instruments = new Map<string, MetricInstrument>()
  readonly #tokenUsage: Histogram
  readonly #duration: Histogram
  readonly #timeToFirstChunk: Histogram
  #toolSpans = 0
  #modelSpans = 0
  #metricPoints = 0
  #logRecords = 0
  #unfinished = 0
  #skipped = 0

  /** Throws `ConfigurationError` for a bad limit. */
  constructor(options: OpenTelemetryExporterOptions = {}) {
    this.name = options.name ?? 'opentelemetry'
    this.#tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(GENAI_SCOPE)
    this.#meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(GENAI_SCOPE)
    this.#logger = (options.loggerProvider ?? logs.getLoggerProvider()).getLogger(GENAI_SCOPE)
    this.#recordToolContent = options.recordToolContent ?? false
    this.#maxOpen = limit('maxOpenToolSpans', options.maxOpenToolSpans, 10_000)
    this.#maxInstruments = limit('maxInstruments', options.maxInstruments, 1000)
    this.#metricKind = options.metricKind ?? defaultMetricKind
    this.#tokenUsage = this.#meter.createHistogram(METRIC_GEN_AI_CLIENT_TOKEN_USAGE, {
      unit: '{token}',
      description: 'Number of input and output tokens used.',
      advice: { explicitBucketBoundaries: [...TOKEN_USAGE_BUCKETS] },
    })
    this.#duration = this.#meter.createHistogram(METRIC_GEN_AI_CLIENT_OPERATION_DURATION, {
      unit: 's',
      description: 'GenAI operation duration.',
      advice: { explicitBucketBoundaries: [...OPERATION_DURATION_BUCKETS] },
    })
    this.#timeToFirstChunk = this.#meter.createHistogram(METRIC_GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, {
      unit: 's',
      description: 'Time to receive the first chunk of a streamed response.',
      advice: { explicitBucketBoundaries: [...OPERATION_DURATION_BUCKETS] },
    })
  }

  /** A snapshot of the counters. */
  stats(): OpenTelemetryExporterStats {
    return {
      toolSpans: this.#toolSpans,
      modelSpans: this.#modelSpans,
      metricPoints: this.#metricPoints,
      logRecords: this.#logRecords,
      unfinishedToolSpans: this.#unfinished,
      skipped: this.#skipped,
      openToolSpans: this.#open.size,
    }
  }

  /** Maps one batch; called by the bus's flusher. Never throws for malformed events: it skips them. */
  export(events: readonly OmnibusEvent[]): void {
    for (const event of events) {
      try {
        this.#one(event)
      } catch {
        this.#skipped++
      }
    }
  }

  /** Ends the tool spans still waiting for their `tool.end`, marked unfinished. */
  close(): void {
    const now = Date.now()
    for (const [id, open] of this.#open) {
      this.#open.delete(id)
      this.#endUnfinished(open, now)
    }
  }

  #one(event: OmnibusEvent): void {
    const topic = event.topic
    if (topic === 'tool.start') this.#toolStart(event)
    else if (topic === 'tool.end') this.#toolEnd(event)
    else if (topic === MODEL_CALL_TOPIC) this.#modelCall(event)
    else if (topic.startsWith('metric.')) this.#metric(event)
    else if (topic.startsWith('lifecycle.')) this.#log(event, SeverityNumber.INFO, 'INFO')
    else if (topic === 'error' || topic.startsWith('error.') || topic.endsWith('.error')) {
      this.#log(event, SeverityNumber.ERROR, 'ERROR')
    }
  }

  #parent(event: OmnibusEvent): Context {
    const headers = event.headers
    if (headers === undefined || headers.traceparent === undefined) return ROOT_CONTEXT
    return propagator.extract(ROOT_CONTEXT, headers, headerGetter)
  }

  #toolAttributes(data: Record<string, unknown>, tool: string): Attributes {
    const attributes: Attributes = {
      [ATTR_GEN_AI_OPERATION_NAME]: GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL,
      [ATTR_GEN_AI_TOOL_NAME]: tool,
    }
    const callId = str(data.callId)
    if (callId !== undefined) attributes[ATTR_GEN_AI_TOOL_CALL_ID] = callId
    return attributes
  }

  #toolStart(event: OmnibusEvent): void {
    const data = record(event.data)
    const tool = str(data?.tool)
    const callId = str(data?.callId)
    if (data === undefined || tool === undefined || callId === undefined) {
      this.#skipped++
      return
    }
    const attributes = this.#toolAttributes(data, tool)
    if (this.#recordToolContent && data.args !== undefined) {
      attributes[ATTR_GEN_AI_TOOL_CALL_ARGUMENTS] = json(data.args)
    }
    const span = this.#tracer.startSpan(
      `${GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL} ${tool}`,
      { kind: SpanKind.INTERNAL, startTime: event.time, attributes },
      this.#parent(event),
    )
    if (this.#open.size >= this.#maxOpen) {
      const oldest = this.#open.entries().next().value
      if (oldest !== undefined) {
        this.#open.delete(oldest[0])
        this.#endUnfinished(oldest[1], event.time)
      }
    }
    this.#open.set(callId, { span, start: event.time })
  }

  #endUnfinished(open: OpenTool, at: number): void {
    open.span.setAttribute(ATTR_TOOL_UNFINISHED, true)
    open.span.end(Math.max(open.start, at))
    this.#unfinished++
    this.#toolSpans++
  }

  #toolEnd(event: OmnibusEvent): void {
    const data = record(event.data)
    const tool = str(data?.tool)
    if (data === undefined || tool === undefined) {
      this.#skipped++
      return
    }
    const callId = str(data.callId)
    const durationMs = num(data.durationMs)
    const open = callId === undefined ? undefined : this.#open.get(callId)
    let span: Span
    let end: number
    if (open !== undefined) {
      this.#open.delete(callId as string)
      span = open.span
      // The measured duration is finer than the envelopes' millisecond times.
      end = durationMs === undefined ? Math.max(open.start, event.time) : open.start + durationMs
    } else {
      end = event.time
      const start = durationMs === undefined ? end : end - durationMs
      span = this.#tracer.startSpan(
        `${GEN_AI_OPERATION_NAME_VALUE_EXECUTE_TOOL} ${tool}`,
        { kind: SpanKind.INTERNAL, startTime: start, attributes: this.#toolAttributes(data, tool) },
        this.#parent(event),
      )
    }
    if (this.#recordToolContent && data.result !== undefined) {
      span.setAttribute(ATTR_GEN_AI_TOOL_CALL_RESULT, json(data.result))
    }
    if (data.success === false) this.#fail(span, record(data.error), end)
    span.end(end)
    this.#toolSpans++
  }

  #fail(span: Span, error: Record<string, unknown> | undefined, at: number): string {
    const type = str(error?.code) ?? str(error?.name) ?? (num(error?.code)?.toString() || '_OTHER')
    const message = str(error?.message)
    span.setStatus(
      message === undefined ? { code: SpanStatusCode.ERROR } : { code: SpanStatusCode.ERROR, message },
    )
    span.setAttribute(ATTR_ERROR_TYPE, type)
    const exception: { name: string; message?: string; stack?: string } = { name: str(error?.name) ?? type }
    if (message !== undefined) exception.message = message
    const stack = str(error?.stack)
    if (stack !== undefined) exception.stack = stack
    span.recordException(exception, at)
    return type
  }

  #modelCall(event: OmnibusEvent): void {
    const data = record(event.data) as (Record<string, unknown> & Partial<ModelCallData>) | undefined
    const model = str(data?.model)
    if (data === undefined || model === undefined) {
      this.#skipped++
      return
    }
    const end = event.time
    const durationMs = num(data.durationMs)
    const start = durationMs === undefined ? end : end - durationMs
    const metricAttributes: Attributes = {
      [ATTR_GEN_AI_OPERATION_NAME]: GEN_AI_OPERATION_NAME_VALUE_CHAT,
      [ATTR_GEN_AI_REQUEST_MODEL]: model,
    }
    const provider = str(data.provider)
    if (provider !== undefined) metricAttributes[ATTR_GEN_AI_PROVIDER_NAME] = provider
    const attributes: Attributes = { ...metricAttributes }
    const input = num(data.inputTokens)
    const output = num(data.outputTokens)
    if (input !== undefined) attributes[ATTR_GEN_AI_USAGE_INPUT_TOKENS] = input
    if (output !== undefined) attributes[ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = output
    const ttft = num(data.timeToFirstTokenMs)
    if (ttft !== undefined) attributes[ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttft / 1000
    const agent = str(data.agent)
    if (agent !== undefined) attributes[ATTR_GEN_AI_AGENT_NAME] = agent
    const session = str(data.session)
    if (session !== undefined) attributes[ATTR_GEN_AI_CONVERSATION_ID] = session
    const span = this.#tracer.startSpan(
      `${GEN_AI_OPERATION_NAME_VALUE_CHAT} ${model}`,
      { kind: SpanKind.CLIENT, startTime: start, attributes },
      this.#parent(event),
    )
    const durationAttributes: Attributes = { ...metricAttributes }
    if (data.success === false)
      durationAttributes[ATTR_ERROR_TYPE] = this.#fail(span, record(data.error), end)
    span.end(end)
    this.#modelSpans++
    // Metrics are recorded in the span's context, so exemplars (where enabled) point at it.
    const spanContext = trace.setSpan(context.active(), span)
    if (input !== undefined) {
      this.#tokenUsage.record(
        input,
        { ...metricAttributes, [ATTR_GEN_AI_TOKEN_TYPE]: GEN_AI_TOKEN_TYPE_VALUE_INPUT },
        spanContext,
      )
    }
    if (output !== undefined) {
      this.#tokenUsage.record(
        output,
        { ...metricAttributes, [ATTR_GEN_AI_TOKEN_TYPE]: GEN_AI_TOKEN_TYPE_VALUE_OUTPUT },
        spanContext,
      )
    }
    if (durationMs !== undefined) this.#duration.record(durationMs / 1000, durationAttributes, spanContext)
    if (ttft !== undefined) this.#timeToFirstChunk.record(ttft / 1000, metricAttributes, spanContext)
  }

  #metric(event: OmnibusEvent): void {
    const data = record(event.data)
    const value = num(data?.value)
    const name = str(data?.name) ?? event.topic.slice('metric.'.length)
    if (data === undefined || value === undefined) {
      this.#skipped++
      return
    }
    const unit = str(data.unit)
    const kind = this.#metricKind(name, unit, data)
    const key = `${kind}\u0000${name}\u0000${unit ?? ''}`
    let entry = this.#instruments.get(key)
    if (entry === undefined) {
      if (this.#instruments.size >= this.#maxInstruments) {
        this.#skipped++
        return
      }
      const options = unit === undefined ? {} : { unit }
      entry =
        kind === 'counter'
          ? { kind, instrument: this.#meter.createCounter(name, options) }
          : kind === 'histogram'
            ? { kind, instrument: this.#meter.createHistogram(name, options) }
            : { kind, instrument: this.#meter.createGauge(name, options) }
      this.#instruments.set(key, entry)
    }
    const attributes: Attributes = {}
    const tags = record(data.tags)
    if (tags !== undefined) {
      for (const [k, v] of Object.entries(tags)) {
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') attributes[k] = v
      }
    }
    if (entry.kind === 'counter') {
      if (value < 0) {
        this.#skipped++
        return
      }
      entry.instrument.add(value, attributes)
    } else entry.instrument.record(value, attributes)
    this.#metricPoints++
  }

  #log(event: OmnibusEvent, severityNumber: SeverityNumber, severityText: string): void {
    const data = record(event.data)
    const attributes: Record<string, string | number | boolean> = {
      'omnibus.event.id': event.id,
      'omnibus.event.source': event.source,
    }
    const error = record(data?.error)
    if (error !== undefined) {
      const type = str(error.name)
      const message = str(error.message)
      if (type !== undefined) attributes[ATTR_EXCEPTION_TYPE] = type
      if (message !== undefined) attributes[ATTR_EXCEPTION_MESSAGE] = message
    }
    this.#logger.emit({
      eventName: event.topic,
      timestamp: event.time,
      severityNumber,
      severityText,
      body: json(event.data),
      attributes,
      context: this.#parent(event),
    })
    this.#logRecords++
  }
}

function limit(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isInteger(v) || v < 1) {
    throw new ConfigurationError(
      `OpenTelemetryExporter ${name} must be an integer >= 1, got ${String(value)}`,
    )
  }
  return v
}
