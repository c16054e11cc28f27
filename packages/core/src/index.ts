/**
 * @omnibus/core — the envelope, the `EventBackend` protocol and capabilities, the topic grammar
 * and matcher index, the CloudEvents codec, the error taxonomy, the backend registry and the
 * delivery helpers every backend shares.
 */

export {
  AGENT_HEADERS,
  type AgentBusStats,
  type AgentContext,
  type AgentHandler,
  type AgentMessage,
  AgentMessageBus,
  type AgentMessageBusOptions,
  type AgentMessageKind,
  AgentReplyError,
  type AgentSubscription,
  type RequestOptions,
  type SendOptions,
  type SubscribeAgentOptions,
} from './agent-bus.ts'
export {
  assertEncodable,
  decodeEvent,
  encodeEvent,
  encodeEventChecked,
  fromCloudEvent,
  HEADER_PREFIX,
  HEADERS_EXTENSION,
  headerExtensionName,
  InvalidEnvelopeError,
  MAX_EXTENSION_NAME_LENGTH,
  RESERVED_EXTENSION_NAMES,
  toCloudEvent,
} from './codec.ts'
export {
  backoffDelay,
  consoleLogger,
  DEFAULT_RETRY,
  type DeadLetterDiagnostics,
  type DedupeStore,
  DLQ_HEADERS,
  deadLetterInput,
  decideFailure,
  type FailureDecision,
  type HandlerOutcome,
  HandlerRunner,
  type InvokeArgs,
  invokeHandler,
  KeyedLimiter,
  MemoryDedupeStore,
  RETRY_OPTION_NAMES,
  type ResolvedRetryPolicy,
  type ResolvedSubscribeOptions,
  redriveInput,
  resolveRetryPolicy,
  resolveSubscribeOptions,
  SUBSCRIBE_OPTION_NAMES,
  silentLogger,
} from './delivery.ts'
export {
  callWithEventContextSync,
  createEvent,
  currentEvent,
  type EventDefaults,
  newEventId,
  runWithEventContext,
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
export { setHeader } from './headers.ts'
export { holdProcess, type ProcessHold } from './lifetime.ts'
export { compilePattern, MatcherIndex, matchTopic, oracleMatch } from './matcher.ts'
export {
  BufferFullError,
  type DropReason,
  type EmitOptions,
  MODEL_CALL_TOPIC,
  type ModelCall,
  type ModelCallData,
  ObservabilityBus,
  type ObservabilityBusOptions,
  type ObservabilityStats,
  type OverflowStrategy,
  PRIORITY_HEADER,
  type TelemetryPriority,
  type ToolSpan,
} from './observability-bus.ts'
export {
  closestName,
  optionNames,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
  type UnknownNameContext,
} from './options.ts'
export { agentPrometheusText, PrometheusWriter, prometheusText } from './prometheus.ts'
export {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  DEFAULT_DEAD_LETTER_TOPIC,
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
  type BackendModule,
  BUILTIN_SCHEMES,
  createBackend,
  importBackendPackage,
  parseBackendUrl,
  redactUrl,
  registerBackend,
  registeredSchemes,
} from './registry.ts'
export { INVALID_TOPIC_RATE, isErrorTopic, Sampler, type SamplingOptions } from './sampling.ts'
export {
  type HandlerSpy,
  handlerSpy,
  type RecordingExporter,
  recordingExporter,
  type SpyCall,
  type WaitOptions,
  waitForMessage,
  waitUntil,
} from './testing.ts'
export {
  isLiteralPattern,
  isValidTopic,
  MAX_TOPIC_LENGTH,
  type PatternSegment,
  parsePattern,
  validatePattern,
  validateTopic,
} from './topic.ts'
