/**
 * @omnibus/otel — OpenTelemetry for Omnibus: W3C trace-context and baggage propagation through
 * every backend, a PRODUCER span per publish and a CONSUMER span per delivery with the messaging
 * semantic conventions, and Omnibus's own metrics through the OpenTelemetry meter. It plugs into
 * core's instrumentation hook; core itself never imports OpenTelemetry.
 */

export {
  ATTR_TOOL_UNFINISHED,
  defaultMetricKind,
  GENAI_SCOPE,
  type MetricKind,
  OPERATION_DURATION_BUCKETS,
  OpenTelemetryExporter,
  type OpenTelemetryExporterOptions,
  type OpenTelemetryExporterStats,
  TOKEN_USAGE_BUCKETS,
} from './genai-exporter.ts'
export { OMNIBUS_METRICS } from './metrics.ts'
export {
  INSTRUMENTATION_SCOPE,
  type InstrumentOmnibusOptions,
  instrumentOmnibus,
  type OmnibusInstrumentation,
} from './propagation.ts'
export { messagingSystemOf } from './propagation-attributes.ts'
export {
  type OmnibusTelemetry,
  type OmnibusTelemetryOptions,
  type OtlpProtocol,
  startOmnibusTelemetry,
} from './setup.ts'
