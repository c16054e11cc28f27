/**
 * The delivery helpers every backend reuses, one concern per module under `kernel/`; re-exported
 * here for the backends that import them from this module.
 */
export {
  type DeadLetterDiagnostics,
  DLQ_HEADERS,
  deadLetterInput,
  EXPIRED_REASON,
  redriveInput,
} from './kernel/dead-letter.ts'
export { type DedupeStore, MemoryDedupeStore, type ProcessedIdStore } from './kernel/dedupe.ts'
export { KeyedLimiter } from './kernel/limiter.ts'
export { consoleLogger, safeLog, silentLogger } from './kernel/loggers.ts'
export { backoffDelay, decideFailure, type FailureDecision, type HandlerOutcome } from './kernel/outcome.ts'
export { HandlerRunner, type InvokeArgs, invokeHandler, PendingCall } from './kernel/runner.ts'
export {
  DEFAULT_RETRY,
  RETRY_OPTION_NAMES,
  type ResolvedRetryPolicy,
  type ResolvedSubscribeOptions,
  resolveRetryPolicy,
  resolveSubscribeOptions,
  SUBSCRIBE_OPTION_NAMES,
} from './kernel/subscribe-options.ts'
