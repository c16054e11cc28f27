/**
 * @omnibus/core/backend — what a backend author needs to implement the `EventBackend` protocol:
 * the consumer kernel and its adapter contract, the CloudEvents codec, subscribe-option resolution
 * and the option resolver, the handler runner
 * and failure decisions, dead-letter envelopes, dedupe stores for exactly-once, the keyed
 * concurrency limiter, the process hold and the event-context scope handlers run in.
 *
 * Applications import `@omnibus/core`; the protocol types and the error classes a backend
 * implements and throws are there too, and backends import them from it.
 */

export {
  assertEncodable,
  DELIVER_AT_EXTENSION,
  decodeEvent,
  EXPIRES_AT_EXTENSION,
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
export { callWithEventContextSync, runWithEventContext } from './envelope.ts'
export { setHeader } from './headers.ts'
export {
  type DeliveryInfo,
  type DeliveryObservation,
  type DeliveryOutcome,
  type Instrumentation,
  instrumentBackend,
  type PublishInfo,
  type PublishObservation,
  type PublishOperation,
  registerInstrumentation,
  type SettleInfo,
  type SettleOutcome,
} from './instrumentation.ts'
export { type DeadLetterDiagnostics, deadLetterInput } from './kernel/dead-letter.ts'
export {
  type ClaimResult,
  type DedupeStore,
  MemoryDedupeStore,
  type MemoryDedupeStoreOptions,
  type ProcessedIdStore,
} from './kernel/dedupe.ts'
export { checkDrainTimeout, DEFAULT_DRAIN_TIMEOUT_MS, settlesWithin } from './kernel/drain.ts'
export {
  FOREIGN_HEADERS,
  FOREIGN_TOPIC,
  type ForeignMessage,
  foreignEvent,
  foreignReason,
} from './kernel/foreign.ts'
export { DEFAULT_HEALTH_TIMEOUT_MS, timedHealthCheck } from './kernel/health.ts'
export {
  ConsumerKernel,
  type KernelAdapter,
  type KernelMessage,
  type KernelOptions,
} from './kernel/kernel.ts'
export { KeyedLimiter } from './kernel/limiter.ts'
export { safeLog } from './kernel/loggers.ts'
export {
  backoffDelay,
  decideFailure,
  describeError,
  type FailureDecision,
  type HandlerOutcome,
} from './kernel/outcome.ts'
export {
  HandlerRunner,
  type InvokeArgs,
  invokeHandler,
  PendingCall,
  type SignalSource,
} from './kernel/runner.ts'
export {
  checkEnsureGroup,
  DEFAULT_RETRY,
  RETRY_OPTION_NAMES,
  type ResolvedRetryPolicy,
  type ResolvedSubscribeOptions,
  resolveRetryPolicy,
  resolveSubscribeOptions,
  SUBSCRIBE_OPTION_NAMES,
} from './kernel/subscribe-options.ts'
export { holdProcess, type ProcessHold } from './lifetime.ts'
export {
  FALSE_WORDS,
  type NumberBounds,
  OptionResolver,
  optionError,
  parseBoolean,
  type StringCheck,
  TRUE_WORDS,
} from './option-resolver.ts'
export {
  closestName,
  optionNames,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
  type UnknownNameContext,
} from './options.ts'
export { type BackendModule, importBackendPackage } from './registry.ts'
export { checkDelay, MAX_TIMER_DELAY_MS } from './schedule.ts'
export { isLiteralPattern, type PatternSegment, parsePattern } from './topic.ts'
