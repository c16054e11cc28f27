/**
 * One call that sends traces, metrics and logs to an OTLP endpoint over HTTP/protobuf with the
 * official SDK, configured by options or the standard `OTEL_*` environment variables (which the
 * SDK's own exporters and resource detectors read).
 */

import { ConfigurationError } from '@omnibus/core'
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { logs } from '@opentelemetry/api-logs'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-proto'
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import {
  defaultResource,
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from '@opentelemetry/resources'
import { BatchLogRecordProcessor, LoggerProvider, type LogRecordProcessor } from '@opentelemetry/sdk-logs'
import { type IMetricReader, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { BatchSpanProcessor, type SpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import { OpenTelemetryExporter, type OpenTelemetryExporterOptions } from './genai-exporter.ts'

/** Options of {@link startOmnibusTelemetry}. Each falls back to its `OTEL_*` variable, then the SDK default. */
export interface OmnibusTelemetryOptions {
  /** `service.name` of the resource. Env: `OTEL_SERVICE_NAME`. @default 'unknown_service:node' (the SDK's) */
  readonly serviceName?: string
  /** More resource attributes; they win over `OTEL_RESOURCE_ATTRIBUTES`. */
  readonly resourceAttributes?: Readonly<Record<string, string | number | boolean>>
  /**
   * Base URL of the OTLP/HTTP receiver (`/v1/traces`, `/v1/metrics`, `/v1/logs` are appended).
   * Env: `OTEL_EXPORTER_OTLP_ENDPOINT` and the per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`.
   * @default 'http://localhost:4318'
   */
  readonly endpoint?: string
  /** Headers sent with every export (API keys). Env: `OTEL_EXPORTER_OTLP_HEADERS`. */
  readonly headers?: Readonly<Record<string, string>>
  /** Interval between metric exports. Env: `OTEL_METRIC_EXPORT_INTERVAL`. @default 60000 */
  readonly metricExportIntervalMs?: number
  /** Send traces / metrics / logs over OTLP. @default true each */
  readonly traces?: boolean
  readonly metrics?: boolean
  readonly logs?: boolean
  /** Span processors added after the OTLP batch processor (or alone with `traces: false`). */
  readonly spanProcessors?: readonly SpanProcessor[]
  /** Metric readers added to the periodic OTLP reader (or alone with `metrics: false`). */
  readonly metricReaders?: readonly IMetricReader[]
  /** Log record processors added after the OTLP batch processor (or alone with `logs: false`). */
  readonly logRecordProcessors?: readonly LogRecordProcessor[]
  /**
   * Register the providers, an AsyncLocalStorage context manager and the W3C trace-context and
   * baggage propagators as the process's globals, so `@opentelemetry/api` users (and
   * instrumentations) find them. @default true
   */
  readonly registerGlobals?: boolean
  /** Options of the {@link OpenTelemetryExporter} made for the ObservabilityBus. */
  readonly exporter?: Omit<
    OpenTelemetryExporterOptions,
    'tracerProvider' | 'meterProvider' | 'loggerProvider'
  >
}

/** What {@link startOmnibusTelemetry} started. */
export interface OmnibusTelemetry {
  readonly resource: Resource
  readonly tracerProvider: TracerProvider
  readonly meterProvider: MeterProvider
  readonly loggerProvider: LoggerProvider
  /** An ObservabilityBus exporter writing to these providers: pass it in the bus's `exporters`. */
  readonly exporter: OpenTelemetryExporter
  /** Sends everything recorded so far. */
  forceFlush(): Promise<void>
  /** Flushes, stops the providers and, when they were registered, unregisters the globals. Idempotent. */
  shutdown(): Promise<void>
}

function signalUrl(endpoint: string | undefined, path: string): { url: string } | Record<string, never> {
  if (endpoint === undefined) return {}
  let base: URL
  try {
    base = new URL(endpoint)
  } catch {
    throw new ConfigurationError(
      `startOmnibusTelemetry endpoint must be an http(s) URL such as http://localhost:4318, got ${JSON.stringify(endpoint)}`,
    )
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ConfigurationError(
      `startOmnibusTelemetry endpoint must be an http(s) URL (OTLP/HTTP), got ${JSON.stringify(endpoint)}`,
    )
  }
  return { url: `${base.href.replace(/\/+$/, '')}/${path}` }
}

function checkProtocol(): void {
  for (const name of [
    'OTEL_EXPORTER_OTLP_PROTOCOL',
    'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
    'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
    'OTEL_EXPORTER_OTLP_LOGS_PROTOCOL',
  ]) {
    const value = process.env[name]?.trim()
    if (value !== undefined && value !== '' && value !== 'http/protobuf') {
      throw new ConfigurationError(
        `${name}=${value} is not supported by startOmnibusTelemetry, which exports OTLP over http/protobuf: ` +
          'unset it or set it to http/protobuf (port 4318 on a collector)',
      )
    }
  }
}

function metricInterval(option: number | undefined): number | undefined {
  if (option === undefined) return undefined
  if (!Number.isInteger(option) || option < 1) {
    throw new ConfigurationError(
      `startOmnibusTelemetry metricExportIntervalMs must be an integer >= 1, got ${String(option)}`,
    )
  }
  return option
}

/**
 * Starts OpenTelemetry trace, metric and log pipelines that export OTLP over HTTP/protobuf, and
 * returns them with an {@link OpenTelemetryExporter} for the ObservabilityBus. Call `shutdown()`
 * before the process exits so the last batches are sent.
 *
 * @example
 * const telemetry = startOmnibusTelemetry({ serviceName: 'planner' })
 * const bus = await ObservabilityBus.connect('sqlite://./events.db', { exporters: [telemetry.exporter] })
 */
export function startOmnibusTelemetry(options: OmnibusTelemetryOptions = {}): OmnibusTelemetry {
  checkProtocol()
  const interval = metricInterval(options.metricExportIntervalMs)
  const headers = options.headers === undefined ? {} : { headers: { ...options.headers } }
  // Precedence: the SDK's defaults, then OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, then options.
  let resource = defaultResource().merge(detectResources({ detectors: [envDetector] }))
  const explicit: Record<string, string | number | boolean> = { ...options.resourceAttributes }
  if (options.serviceName !== undefined) explicit[ATTR_SERVICE_NAME] = options.serviceName
  if (Object.keys(explicit).length > 0) resource = resource.merge(resourceFromAttributes(explicit))

  const spanProcessors: SpanProcessor[] = []
  if (options.traces !== false) {
    spanProcessors.push(
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ ...signalUrl(options.endpoint, 'v1/traces'), ...headers }),
      }),
    )
  }
  spanProcessors.push(...(options.spanProcessors ?? []))
  const tracerProvider = new TracerProvider({ resource, spanProcessors })

  const readers: IMetricReader[] = []
  if (options.metrics !== false) {
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ ...signalUrl(options.endpoint, 'v1/metrics'), ...headers }),
        ...(interval === undefined ? {} : { exportIntervalMillis: interval }),
      }),
    )
  }
  readers.push(...(options.metricReaders ?? []))
  const meterProvider = new MeterProvider({ resource, readers })

  const processors: LogRecordProcessor[] = []
  if (options.logs !== false) {
    processors.push(
      new BatchLogRecordProcessor({
        exporter: new OTLPLogExporter({ ...signalUrl(options.endpoint, 'v1/logs'), ...headers }),
      }),
    )
  }
  processors.push(...(options.logRecordProcessors ?? []))
  const loggerProvider = new LoggerProvider({ resource, processors })

  const register = options.registerGlobals ?? true
  if (register) {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
    propagation.setGlobalPropagator(
      new CompositePropagator({
        propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
      }),
    )
    trace.setGlobalTracerProvider(tracerProvider)
    metrics.setGlobalMeterProvider(meterProvider)
    logs.setGlobalLoggerProvider(loggerProvider)
  }
  const exporter = new OpenTelemetryExporter({
    ...options.exporter,
    tracerProvider,
    meterProvider,
    loggerProvider,
  })

  let stopping: Promise<void> | undefined
  return {
    resource,
    tracerProvider,
    meterProvider,
    loggerProvider,
    exporter,
    async forceFlush() {
      await Promise.all([
        tracerProvider.forceFlush(),
        meterProvider.forceFlush(),
        loggerProvider.forceFlush(),
      ])
    },
    shutdown() {
      stopping ??= (async () => {
        exporter.close()
        await Promise.allSettled([
          tracerProvider.shutdown(),
          meterProvider.shutdown(),
          loggerProvider.shutdown(),
        ])
        if (register) {
          trace.disable()
          metrics.disable()
          logs.disable()
          propagation.disable()
          context.disable()
        }
      })()
      return stopping
    },
  }
}
