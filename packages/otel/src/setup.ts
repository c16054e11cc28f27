/**
 * One call that sends traces, metrics and logs to an OTLP endpoint (HTTP/protobuf, gRPC or
 * HTTP/JSON) with the official SDK, configured by options or the standard `OTEL_*` environment
 * variables (which the SDK's own exporters and resource detectors read).
 */

import { ConfigurationError } from '@omnibus/core'
import { context, metrics, propagation, trace } from '@opentelemetry/api'
import { logs } from '@opentelemetry/api-logs'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPLogExporter as GrpcLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc'
import { OTLPLogExporter as JsonLogExporter } from '@opentelemetry/exporter-logs-otlp-http'
import { OTLPLogExporter as ProtobufLogExporter } from '@opentelemetry/exporter-logs-otlp-proto'
import { OTLPMetricExporter as GrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc'
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http'
import { OTLPMetricExporter as ProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto'
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc'
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as ProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { createEmptyMetadata, type OTLPGRPCExporterConfigNode } from '@opentelemetry/otlp-grpc-exporter-base'
import {
  defaultResource,
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from '@opentelemetry/resources'
import {
  BatchLogRecordProcessor,
  LoggerProvider,
  type LogRecordExporter,
  type LogRecordProcessor,
} from '@opentelemetry/sdk-logs'
import {
  type IMetricReader,
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
} from '@opentelemetry/sdk-metrics'
import {
  BatchSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import { OpenTelemetryExporter, type OpenTelemetryExporterOptions } from './genai-exporter.ts'

/**
 * How OTLP is sent, spelled as `OTEL_EXPORTER_OTLP_PROTOCOL` spells it: protobuf over HTTP
 * (collector port 4318), gRPC (port 4317), or JSON over HTTP (port 4318).
 */
export type OtlpProtocol = 'http/protobuf' | 'grpc' | 'http/json'

const PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'grpc', 'http/json']
const PROTOCOL_LIST = 'http/protobuf, grpc or http/json'

function isProtocol(value: string): value is OtlpProtocol {
  return (PROTOCOLS as readonly string[]).includes(value)
}

/** Options of {@link startOmnibusTelemetry}. Each falls back to its `OTEL_*` variable, then the SDK default. */
export interface OmnibusTelemetryOptions {
  /** `service.name` of the resource. Env: `OTEL_SERVICE_NAME`. @default 'unknown_service:node' (the SDK's) */
  readonly serviceName?: string
  /** More resource attributes; they win over `OTEL_RESOURCE_ATTRIBUTES`. */
  readonly resourceAttributes?: Readonly<Record<string, string | number | boolean>>
  /**
   * OTLP transport of every signal. Env: `OTEL_EXPORTER_OTLP_PROTOCOL` and the per-signal
   * `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_PROTOCOL`, which win over it.
   * @default 'http/protobuf'
   */
  readonly protocol?: OtlpProtocol
  /**
   * The OTLP receiver. Over HTTP, a base URL to which `/v1/traces`, `/v1/metrics` and `/v1/logs`
   * are appended; over gRPC, `http://host:port` (plaintext) or `https://host:port` (TLS), no path.
   * Env: `OTEL_EXPORTER_OTLP_ENDPOINT` and the per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`.
   * @default 'http://localhost:4318' over HTTP, 'http://localhost:4317' over gRPC
   */
  readonly endpoint?: string
  /** Headers (gRPC metadata) sent with every export (API keys). Env: `OTEL_EXPORTER_OTLP_HEADERS`. */
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
  /** The OTLP protocol each signal is exported with; absent for a signal that is not exported. */
  readonly protocols: Readonly<{ traces?: OtlpProtocol; metrics?: OtlpProtocol; logs?: OtlpProtocol }>
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

function endpointUrl(endpoint: string, example: string): URL {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    throw new ConfigurationError(
      `startOmnibusTelemetry endpoint must be an http(s) URL such as ${example}, got ${JSON.stringify(endpoint)}`,
    )
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigurationError(
      `startOmnibusTelemetry endpoint must be an http(s) URL such as ${example}, got ${JSON.stringify(endpoint)}`,
    )
  }
  return url
}

function signalUrl(endpoint: string | undefined, path: string): { url: string } | Record<string, never> {
  if (endpoint === undefined) return {}
  const base = endpointUrl(endpoint, 'http://localhost:4318')
  return { url: `${base.href.replace(/\/+$/, '')}/${path}` }
}

function grpcConfig(
  endpoint: string | undefined,
  headers: Readonly<Record<string, string>> | undefined,
): OTLPGRPCExporterConfigNode {
  const config: { url?: string; metadata?: ReturnType<typeof createEmptyMetadata> } = {}
  if (endpoint !== undefined) {
    const url = endpointUrl(endpoint, 'http://localhost:4317')
    // A gRPC call's path is its service method: the exporter would drop a path given here, so a
    // path means an HTTP endpoint was passed by mistake.
    if (url.pathname !== '/' || url.search !== '') {
      throw new ConfigurationError(
        `startOmnibusTelemetry endpoint over gRPC is scheme://host:port without a path, such as http://localhost:4317, got ${JSON.stringify(endpoint)}`,
      )
    }
    config.url = url.origin
  }
  if (headers !== undefined) {
    const metadata = createEmptyMetadata()
    for (const [key, value] of Object.entries(headers)) metadata.set(key, value)
    config.metadata = metadata
  }
  return config
}

type Signal = 'TRACES' | 'METRICS' | 'LOGS'

/** The option, else the signal's variable, else the general one, else http/protobuf (the spec's default). */
function protocolOf(option: OtlpProtocol | undefined, signal: Signal): OtlpProtocol {
  if (option !== undefined) return option
  for (const name of [`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`, 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const value = process.env[name]?.trim()
    if (value === undefined || value === '') continue
    if (!isProtocol(value)) {
      throw new ConfigurationError(
        `${name}=${value} is not an OTLP protocol startOmnibusTelemetry can export with: set it to ${PROTOCOL_LIST}, or unset it for http/protobuf`,
      )
    }
    return value
  }
  return 'http/protobuf'
}

function checkProtocolOption(option: unknown): void {
  if (option !== undefined && (typeof option !== 'string' || !isProtocol(option))) {
    throw new ConfigurationError(
      `startOmnibusTelemetry protocol must be ${PROTOCOL_LIST}, got ${JSON.stringify(option)}`,
    )
  }
}

interface ExportSettings {
  readonly protocol: OtlpProtocol
  readonly endpoint: string | undefined
  readonly headers: Readonly<Record<string, string>> | undefined
}

function httpConfig(settings: ExportSettings, path: string) {
  return {
    ...signalUrl(settings.endpoint, path),
    ...(settings.headers === undefined ? {} : { headers: { ...settings.headers } }),
  }
}

function spanExporter(settings: ExportSettings): SpanExporter {
  switch (settings.protocol) {
    case 'grpc':
      return new GrpcTraceExporter(grpcConfig(settings.endpoint, settings.headers))
    case 'http/json':
      return new JsonTraceExporter(httpConfig(settings, 'v1/traces'))
    default:
      return new ProtobufTraceExporter(httpConfig(settings, 'v1/traces'))
  }
}

function metricExporter(settings: ExportSettings): PushMetricExporter {
  switch (settings.protocol) {
    case 'grpc':
      return new GrpcMetricExporter(grpcConfig(settings.endpoint, settings.headers))
    case 'http/json':
      return new JsonMetricExporter(httpConfig(settings, 'v1/metrics'))
    default:
      return new ProtobufMetricExporter(httpConfig(settings, 'v1/metrics'))
  }
}

function logExporter(settings: ExportSettings): LogRecordExporter {
  switch (settings.protocol) {
    case 'grpc':
      return new GrpcLogExporter(grpcConfig(settings.endpoint, settings.headers))
    case 'http/json':
      return new JsonLogExporter(httpConfig(settings, 'v1/logs'))
    default:
      return new ProtobufLogExporter(httpConfig(settings, 'v1/logs'))
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
 * Starts OpenTelemetry trace, metric and log pipelines that export OTLP (over HTTP/protobuf unless
 * `protocol` or `OTEL_EXPORTER_OTLP_PROTOCOL` says gRPC or HTTP/JSON), and
 * returns them with an {@link OpenTelemetryExporter} for the ObservabilityBus. Call `shutdown()`
 * before the process exits so the last batches are sent.
 *
 * @example
 * const telemetry = startOmnibusTelemetry({ serviceName: 'planner' })
 * const bus = await ObservabilityBus.connect('sqlite://./events.db', { exporters: [telemetry.exporter] })
 */
export function startOmnibusTelemetry(options: OmnibusTelemetryOptions = {}): OmnibusTelemetry {
  checkProtocolOption(options.protocol)
  const interval = metricInterval(options.metricExportIntervalMs)
  const settings = (signal: Signal): ExportSettings => ({
    protocol: protocolOf(options.protocol, signal),
    endpoint: options.endpoint,
    headers: options.headers,
  })
  const protocols: { traces?: OtlpProtocol; metrics?: OtlpProtocol; logs?: OtlpProtocol } = {}
  // Precedence: the SDK's defaults, then OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, then options.
  let resource = defaultResource().merge(detectResources({ detectors: [envDetector] }))
  const explicit: Record<string, string | number | boolean> = { ...options.resourceAttributes }
  if (options.serviceName !== undefined) explicit[ATTR_SERVICE_NAME] = options.serviceName
  if (Object.keys(explicit).length > 0) resource = resource.merge(resourceFromAttributes(explicit))

  const spanProcessors: SpanProcessor[] = []
  if (options.traces !== false) {
    const s = settings('TRACES')
    protocols.traces = s.protocol
    spanProcessors.push(new BatchSpanProcessor({ exporter: spanExporter(s) }))
  }
  spanProcessors.push(...(options.spanProcessors ?? []))
  const tracerProvider = new TracerProvider({ resource, spanProcessors })

  const readers: IMetricReader[] = []
  if (options.metrics !== false) {
    const s = settings('METRICS')
    protocols.metrics = s.protocol
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: metricExporter(s),
        ...(interval === undefined ? {} : { exportIntervalMillis: interval }),
      }),
    )
  }
  readers.push(...(options.metricReaders ?? []))
  const meterProvider = new MeterProvider({ resource, readers })

  const processors: LogRecordProcessor[] = []
  if (options.logs !== false) {
    const s = settings('LOGS')
    protocols.logs = s.protocol
    processors.push(new BatchLogRecordProcessor({ exporter: logExporter(s) }))
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
    protocols,
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
