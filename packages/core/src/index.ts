/**
 * @omnibus/core — what applications use: the `EventBackend` protocol and its types, the envelope,
 * `createBackend` and the backend registry, the ObservabilityBus and AgentMessageBus with their
 * exporters, sampling and Prometheus text, the error taxonomy, topic validation and matching, and
 * dead-letter redrive.
 *
 * Backend authors also import `@omnibus/core/backend` (codec, option resolution, handler runner,
 * dedupe); tests import `@omnibus/core/testing` (waiting with deadlines, spies, recorders).
 */

export {
  AgentQuorumError,
  AgentReplyError,
  type AgentReplyErrorCode,
  type AgentReplyErrorDetails,
  AgentUnavailableError,
} from './agent/errors.ts'
export type {
  AgentPresence,
  AgentStatus,
  PresenceEvent,
  PresenceOptions,
  PresenceReason,
} from './agent/presence.ts'
export type { RequestAllResult } from './agent/request-all.ts'
export {
  AGENT_HEADERS,
  type AgentBusStats,
  type AgentContext,
  type AgentHandler,
  type AgentMessage,
  AgentMessageBus,
  type AgentMessageBusOptions,
  type AgentMessageKind,
  type AgentSubscription,
  type RequestAllOptions,
  type RequestOptions,
  type SendOptions,
  type SubscribeAgentOptions,
} from './agent-bus.ts'
export {
  consoleLogger,
  DLQ_HEADERS,
  EXPIRED_REASON,
  redriveInput,
  silentLogger,
} from './delivery.ts'
export {
  createEvent,
  currentEvent,
  type EventDefaults,
  newEventId,
} from './envelope.ts'
export {
  CapabilityError,
  ConfigurationError,
  ConnectionError,
  InvalidTopicError,
  isRetryable,
  NotConnectedError,
  OmnibusError,
  type OmnibusErrorOptions,
  PayloadTooLargeError,
  PublishError,
  SerializationError,
  SubscriptionError,
  TimeoutError,
} from './errors.ts'
export {
  compositeExporter,
  type ExportLogger,
  type FilteringExporterOptions,
  filteringExporter,
  type JsonLinesExporterOptions,
  jsonLinesExporter,
  type LoggerExporterOptions,
  loggerExporter,
  type TelemetryExporter,
} from './exporters.ts'
export {
  compilePattern,
  MatcherIndex,
  matchTopic,
} from './matcher.ts'
export {
  BufferFullError,
  type DropReason,
  type EmitOptions,
  MODEL_CALL_TOPIC,
  type ModelCall,
  type ModelCallData,
  ObservabilityBus,
  type ObservabilityBusOptions,
  type ObservabilityHealth,
  type ObservabilityStats,
  type OverflowStrategy,
  PRIORITY_HEADER,
  type TelemetryPriority,
  type ToolSpan,
} from './observability-bus.ts'
export { agentPrometheusText, PrometheusWriter, prometheusText } from './prometheus.ts'
export {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  DEAD_LETTER_GROUP,
  DEFAULT_DEAD_LETTER_TOPIC,
  type DelayCapability,
  type EventBackend,
  type EventData,
  type EventHandler,
  type EventInput,
  GUARANTEES,
  type Guarantee,
  type HandlerContext,
  type HealthStatus,
  type JsonValue,
  type Logger,
  type OmnibusEvent,
  type PublishReceipt,
  type RetryPolicy,
  type SubscribeOptions,
  type Subscription,
} from './protocol.ts'
export {
  type BackendLoader,
  BUILTIN_SCHEMES,
  createBackend,
  parseBackendUrl,
  redactUrl,
  registerBackend,
  registeredSchemes,
} from './registry.ts'
export { INVALID_TOPIC_RATE, isErrorTopic, Sampler, type SamplingOptions } from './sampling.ts'
export {
  isValidTopic,
  MAX_TOPIC_LENGTH,
  validatePattern,
  validateTopic,
} from './topic.ts'
