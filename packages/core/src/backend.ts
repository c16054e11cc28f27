/**
 * @omnibus/core/backend — what a backend author needs to implement the `EventBackend` protocol:
 * the CloudEvents codec, subscribe-option resolution and the option helpers, the handler runner
 * and failure decisions, dead-letter envelopes, dedupe stores for exactly-once, the keyed
 * concurrency limiter, the process hold and the event-context scope handlers run in.
 *
 * Applications import `@omnibus/core`; the protocol types and the error classes a backend
 * implements and throws are there too, and backends import them from it.
 */

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
  DEFAULT_RETRY,
  type DeadLetterDiagnostics,
  type DedupeStore,
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
  resolveRetryPolicy,
  resolveSubscribeOptions,
  SUBSCRIBE_OPTION_NAMES,
} from './delivery.ts'
export { callWithEventContextSync, runWithEventContext } from './envelope.ts'
export { setHeader } from './headers.ts'
export { holdProcess, type ProcessHold } from './lifetime.ts'
export {
  closestName,
  optionNames,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
  type UnknownNameContext,
} from './options.ts'
export { type BackendModule, importBackendPackage } from './registry.ts'
export { isLiteralPattern, type PatternSegment, parsePattern } from './topic.ts'
