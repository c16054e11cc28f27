/**
 * Delivery helpers every backend reuses, so retries, dead letters, dedupe, concurrency and the
 * handler context behave the same on every broker:
 * - {@link resolveSubscribeOptions}: validation and defaults, `CapabilityError` for what is not offered;
 * - {@link invokeHandler}: runs a handler with its context and turns the result into an outcome;
 * - {@link decideFailure} / {@link backoffDelay}: retry schedule and when to dead-letter;
 * - {@link deadLetterInput} / {@link redriveInput}: the dead-letter envelope and its way back;
 * - {@link MemoryDedupeStore}: processed-id records for exactly-once;
 * - {@link KeyedLimiter}: per-subscription concurrency that keeps per-key order.
 */
import { asSource } from './codec.ts'
import { callWithEventContextSync, runWithEventContext2 } from './envelope.ts'
import { CapabilityError, ConfigurationError } from './errors.ts'
import { setHeader } from './headers.ts'
import { optionNames, rejectUnknownOptions } from './options.ts'
import {
  type BackendCapabilities,
  DEFAULT_DEAD_LETTER_TOPIC,
  type EventHandler,
  type EventInput,
  type Guarantee,
  type HandlerContext,
  type Logger,
  type OmnibusEvent,
  type RetryPolicy,
  type SubscribeOptions,
  type Subscription,
} from './protocol.ts'
import { validatePattern, validateTopic } from './topic.ts'

/** A retry policy with every field filled. */
export interface ResolvedRetryPolicy {
  readonly maxAttempts: number
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly multiplier: number
  readonly jitter: number
}

/** The default retry policy. */
export const DEFAULT_RETRY: ResolvedRetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 100,
  maxDelayMs: 30_000,
  multiplier: 2,
  jitter: 0.2,
}

/** Subscribe options after validation, with defaults applied. */
export interface ResolvedSubscribeOptions {
  readonly pattern: string
  readonly group: string | undefined
  readonly guarantee: Guarantee
  readonly concurrency: number
  readonly from: 'latest' | 'earliest'
  readonly retry: ResolvedRetryPolicy
  readonly deadLetter: string | false
  readonly signal: AbortSignal | undefined
  readonly visibilityTimeoutMs: number | undefined
}

const GROUP_NAME = /^[A-Za-z0-9_.-]{1,200}$/

/** The keys of {@link SubscribeOptions}; any other key is a `ConfigurationError` at `subscribe`. */
export const SUBSCRIBE_OPTION_NAMES: readonly string[] = optionNames<SubscribeOptions>({
  group: true,
  guarantee: true,
  concurrency: true,
  from: true,
  retry: true,
  deadLetter: true,
  signal: true,
  visibilityTimeoutMs: true,
})

/** The keys of {@link RetryPolicy}; any other key is a `ConfigurationError`. */
export const RETRY_OPTION_NAMES: readonly string[] = optionNames<RetryPolicy>({
  maxAttempts: true,
  initialDelayMs: true,
  maxDelayMs: true,
  multiplier: true,
  jitter: true,
})

function positiveInt(name: string, value: unknown, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new ConfigurationError(`${name} must be an integer >= ${min}, got ${String(value)}`)
  }
  return value
}

function nonNegative(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ConfigurationError(`${name} must be a number >= 0, got ${String(value)}`)
  }
  return value
}

/** Fills and validates a retry policy. */
export function resolveRetryPolicy(policy: RetryPolicy | undefined): ResolvedRetryPolicy {
  if (policy === undefined) return DEFAULT_RETRY
  rejectUnknownOptions('retry option', policy, RETRY_OPTION_NAMES)
  const r = { ...DEFAULT_RETRY, ...policy }
  positiveInt('retry.maxAttempts', r.maxAttempts)
  nonNegative('retry.initialDelayMs', r.initialDelayMs)
  nonNegative('retry.maxDelayMs', r.maxDelayMs)
  if (typeof r.multiplier !== 'number' || !(r.multiplier >= 1)) {
    throw new ConfigurationError(`retry.multiplier must be >= 1, got ${String(r.multiplier)}`)
  }
  if (typeof r.jitter !== 'number' || !(r.jitter >= 0 && r.jitter <= 1)) {
    throw new ConfigurationError(`retry.jitter must be between 0 and 1, got ${String(r.jitter)}`)
  }
  return r
}

/**
 * Validates `subscribe` arguments against the backend's capabilities and fills defaults.
 * Throws `InvalidTopicError` for a bad pattern, `ConfigurationError` for bad options (an unknown
 * key included) and `CapabilityError` for a guarantee, group or replay the backend does not offer.
 * Every backend's `subscribe` calls it first, so the rules are the same everywhere.
 */
export function resolveSubscribeOptions(
  backend: { readonly name: string; readonly capabilities: BackendCapabilities },
  pattern: string,
  handler: unknown,
  opts: SubscribeOptions = {},
): ResolvedSubscribeOptions {
  validatePattern(pattern)
  if (typeof handler !== 'function') {
    throw new ConfigurationError(`subscribe("${pattern}") needs a handler function, got ${typeof handler}`)
  }
  rejectUnknownOptions('subscribe option', opts, SUBSCRIBE_OPTION_NAMES, { backend: backend.name })
  const caps = backend.capabilities
  const guarantee = opts.guarantee ?? 'at-least-once'
  if (!caps.guarantees.includes(guarantee)) {
    throw new CapabilityError(
      `the ${backend.name} backend does not offer ${guarantee} delivery (it offers ${caps.guarantees.join(', ')}); ` +
        'choose one of those or another backend',
      { backend: backend.name },
    )
  }
  if (opts.group !== undefined) {
    if (typeof opts.group !== 'string' || !GROUP_NAME.test(opts.group)) {
      throw new ConfigurationError(
        `group "${String(opts.group)}" is invalid: use 1-200 letters, digits, '_', '-' or '.'`,
        { backend: backend.name },
      )
    }
    if (!caps.groups) {
      throw new CapabilityError(`the ${backend.name} backend does not support consumer groups`, {
        backend: backend.name,
      })
    }
  }
  const from = opts.from ?? 'latest'
  if (from !== 'latest' && from !== 'earliest') {
    throw new ConfigurationError(`from must be 'latest' or 'earliest', got ${String(from)}`)
  }
  if (from === 'earliest' && !caps.replay) {
    throw new CapabilityError(`the ${backend.name} backend cannot replay history (from: 'earliest')`, {
      backend: backend.name,
    })
  }
  const deadLetter = opts.deadLetter ?? DEFAULT_DEAD_LETTER_TOPIC
  if (deadLetter !== false) validateTopic(deadLetter)
  return {
    pattern,
    group: opts.group,
    guarantee,
    concurrency: opts.concurrency === undefined ? 1 : positiveInt('concurrency', opts.concurrency),
    from,
    retry: resolveRetryPolicy(opts.retry),
    deadLetter,
    signal: opts.signal,
    visibilityTimeoutMs:
      opts.visibilityTimeoutMs === undefined
        ? undefined
        : positiveInt('visibilityTimeoutMs', opts.visibilityTimeoutMs),
  }
}

/**
 * Delay before attempt `attempt + 1`, after `attempt` failed runs (attempt >= 1):
 * `initialDelayMs * multiplier^(attempt-1)`, capped at `maxDelayMs`, then reduced by up to
 * `jitter` of itself at random.
 */
export function backoffDelay(
  policy: ResolvedRetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(
    policy.maxDelayMs,
    policy.initialDelayMs * policy.multiplier ** Math.max(0, attempt - 1),
  )
  return Math.max(0, Math.round(base * (1 - policy.jitter * random())))
}

/** What the handler's run asked for. */
export type HandlerOutcome =
  | { readonly kind: 'ack' }
  | { readonly kind: 'retry'; readonly delayMs: number | undefined; readonly error: unknown }
  | { readonly kind: 'dead-letter'; readonly reason: string; readonly error: unknown }

/** What the backend should do after a failed run. */
export type FailureDecision =
  | { readonly action: 'retry'; readonly delayMs: number }
  | { readonly action: 'dead-letter'; readonly reason: string }
  | { readonly action: 'drop'; readonly reason: string }

/**
 * Decides what follows a failed run (`outcome` not `ack`) of attempt number `attempt`:
 * retry after the backoff (or the handler's requested delay), or dead-letter once
 * `maxAttempts` runs have failed (or at once when the handler asked), or drop when the
 * subscription has `deadLetter: false`, or for at-most-once.
 */
export function decideFailure(
  opts: Pick<ResolvedSubscribeOptions, 'retry' | 'deadLetter' | 'guarantee'>,
  attempt: number,
  outcome: Exclude<HandlerOutcome, { kind: 'ack' }>,
  random?: () => number,
): FailureDecision {
  if (opts.guarantee === 'at-most-once') return { action: 'drop', reason: 'at-most-once: not redelivered' }
  if (outcome.kind === 'retry' && attempt < opts.retry.maxAttempts) {
    return { action: 'retry', delayMs: outcome.delayMs ?? backoffDelay(opts.retry, attempt, random) }
  }
  const reason =
    outcome.kind === 'dead-letter'
      ? outcome.reason
      : `failed ${attempt} of ${opts.retry.maxAttempts} attempts: ${describeError(outcome.error)}`
  if (opts.deadLetter === false) return { action: 'drop', reason }
  return { action: 'dead-letter', reason }
}

function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`
  return String(error)
}

/** Diagnostics recorded on a dead-lettered event. */
export interface DeadLetterDiagnostics {
  readonly reason: string
  readonly group: string | undefined
  readonly attempts: number
  readonly firstFailureAt: number
  readonly lastFailureAt: number
  readonly error?: unknown
  readonly backend: string
}

/** Header names of the dead-letter diagnostics. */
export const DLQ_HEADERS = {
  originalTopic: 'omnibus-dlq-original-topic',
  originalId: 'omnibus-dlq-original-id',
  group: 'omnibus-dlq-group',
  attempts: 'omnibus-dlq-attempts',
  firstFailure: 'omnibus-dlq-first-failure',
  lastFailure: 'omnibus-dlq-last-failure',
  errorName: 'omnibus-dlq-error-name',
  errorMessage: 'omnibus-dlq-error-message',
  reason: 'omnibus-dlq-reason',
  backend: 'omnibus-dlq-backend',
} as const

/**
 * The event to publish on the dead-letter topic: the original data, headers, key and correlation,
 * plus diagnostics headers. It gets an id derived from the original so a re-sent dead letter
 * dedupes, and `causationId` = the original id.
 */
export function deadLetterInput(
  event: OmnibusEvent,
  deadLetterTopic: string,
  d: DeadLetterDiagnostics,
): EventInput {
  const err = d.error
  const headers: Record<string, string> = {
    ...event.headers,
    [DLQ_HEADERS.originalTopic]: event.topic,
    [DLQ_HEADERS.originalId]: event.id,
    [DLQ_HEADERS.attempts]: String(d.attempts),
    [DLQ_HEADERS.firstFailure]: new Date(d.firstFailureAt).toISOString(),
    [DLQ_HEADERS.lastFailure]: new Date(d.lastFailureAt).toISOString(),
    [DLQ_HEADERS.reason]: d.reason.slice(0, 2000),
    [DLQ_HEADERS.backend]: d.backend,
  }
  if (d.group !== undefined) headers[DLQ_HEADERS.group] = d.group
  if (err instanceof Error) {
    headers[DLQ_HEADERS.errorName] = err.name
    headers[DLQ_HEADERS.errorMessage] = err.message.slice(0, 2000)
  } else if (err !== undefined) {
    headers[DLQ_HEADERS.errorName] = typeof err
    headers[DLQ_HEADERS.errorMessage] = String(err).slice(0, 2000)
  }
  const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
    topic: deadLetterTopic,
    data: event.data,
    id: `${event.id}.dlq.${d.group ?? 'broadcast'}`,
    time: Date.now(),
    source: asSource(event.source),
    headers,
    causationId: event.id,
    guarantee: 'at-least-once',
  }
  if (event.correlationId !== undefined) input.correlationId = event.correlationId
  if (event.partitionKey !== undefined) input.partitionKey = event.partitionKey
  copyAttributes(event, input)
  return input
}

// The CloudEvents attributes describe the data, which a dead letter and a redrive carry as is.
function copyAttributes(from: OmnibusEvent, to: { -readonly [K in keyof EventInput]: EventInput[K] }): void {
  if (from.subject !== undefined) to.subject = from.subject
  if (from.dataSchema !== undefined) to.dataSchema = from.dataSchema
  if (from.dataContentType !== undefined) to.dataContentType = from.dataContentType
}

/**
 * The event that re-publishes a dead letter to its original topic: original id, data and user
 * headers, diagnostics stripped. Throws `ConfigurationError` if `dlq` is not a dead letter.
 */
export function redriveInput(dlq: OmnibusEvent): EventInput {
  const topic = dlq.headers[DLQ_HEADERS.originalTopic]
  const id = dlq.headers[DLQ_HEADERS.originalId]
  if (topic === undefined || id === undefined) {
    throw new ConfigurationError(
      `event ${dlq.id} on "${dlq.topic}" has no dead-letter headers: nothing to redrive`,
    )
  }
  const dlqNames = new Set<string>(Object.values(DLQ_HEADERS))
  const headers: Record<string, string> = {}
  for (const [k, v] of Object.entries(dlq.headers)) if (!dlqNames.has(k)) setHeader(headers, k, v)
  const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
    topic,
    data: dlq.data,
    id,
    source: asSource(dlq.source),
    headers,
    guarantee: 'at-least-once',
  }
  if (dlq.correlationId !== undefined) input.correlationId = dlq.correlationId
  if (dlq.partitionKey !== undefined) input.partitionKey = dlq.partitionKey
  copyAttributes(dlq, input)
  return input
}

/** A logger that discards everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
}

/** A logger that writes warnings and errors to the console, and nothing below. */
export const consoleLogger: Logger = {
  debug() {},
  info() {},
  warn(message, fields) {
    console.warn(`[omnibus] ${message}`, fields ?? '')
  },
  error(message, fields) {
    console.error(`[omnibus] ${message}`, fields ?? '')
  },
}

/** Arguments of {@link invokeHandler}. */
export interface InvokeArgs<T> {
  readonly handler: EventHandler<T>
  readonly event: OmnibusEvent<T>
  readonly attempt: number
  readonly subscription: Subscription
  readonly logger: Logger
  readonly signal: AbortSignal
}

const ACK: HandlerOutcome = Object.freeze({ kind: 'ack' })

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

// How a runner scopes its handler. An async function always runs in a full async context, so
// events it publishes after an `await` still inherit causation. Any other function starts there
// too and, after WARMUP calls in a row that all returned a non-promise, moves to the synchronous
// scope (`callWithEventContextSync`: a few nanoseconds instead of hundreds per event); a promise
// returned later moves it back for good.
const MODE_ASYNC = 0
const MODE_WARMUP = 1
const MODE_SYNC = 2
const WARMUP = 16
const AsyncFunction = (async () => {}).constructor

/** The context a handler receives: one small object per call, its two actions bound on first use. */
class RunContext implements HandlerContext {
  decision: HandlerOutcome | undefined = undefined
  readonly attempt: number
  readonly subscription: Subscription
  readonly logger: Logger
  readonly signal: AbortSignal
  readonly #runner: HandlerRunner<never>

  constructor(runner: HandlerRunner<never>, attempt: number) {
    this.#runner = runner
    this.attempt = attempt
    this.subscription = runner.subscription
    this.logger = runner.logger
    this.signal = runner.signal
  }

  // Getters returning bound functions: `const { retry } = ctx; retry()` works, and a handler that
  // never asks pays nothing for them.
  get retry(): (delayMs?: number) => void {
    return (delayMs?: number) => {
      this.decision = { kind: 'retry', delayMs, error: new Error('handler asked for a retry') }
    }
  }

  get deadLetter(): (reason: string) => void {
    return (reason: string) => {
      this.decision = { kind: 'dead-letter', reason, error: undefined }
    }
  }

  /** Calls the handler; shaped for the event-context helpers, so no closure per call. */
  static call(event: OmnibusEvent, ctx: RunContext): unknown {
    return ctx.#runner.handler(event as never, ctx)
  }
}

/**
 * Runs one subscription's handler, event after event: each call inside the event's causation
 * scope, its result turned into an outcome — `ack` when it returned or resolved, `retry` when it
 * threw, rejected or called `ctx.retry`, `dead-letter` when it called `ctx.deadLetter`. Never
 * throws, never rejects.
 *
 * A handler that returned synchronously (anything but a promise or thenable) gets its outcome as a
 * plain value, so a backend's hot path need not wait a microtask per event; `await` is right for
 * both. Handlers that are not `async` functions and keep returning synchronously move to a cheaper
 * synchronous causation scope after a few calls: events they publish before returning inherit
 * causation as always, while callbacks they schedule without returning them (an un-awaited
 * `setTimeout`) do not. A handler that returns a promise keeps the full async scope.
 */
export class HandlerRunner<T = unknown> {
  readonly handler: EventHandler<T>
  readonly subscription: Subscription
  readonly logger: Logger
  readonly signal: AbortSignal
  #mode: number
  #syncCalls = 0

  constructor(handler: EventHandler<T>, subscription: Subscription, logger: Logger, signal: AbortSignal) {
    this.handler = handler
    this.subscription = subscription
    this.logger = logger
    this.signal = signal
    this.#mode = handler instanceof AsyncFunction ? MODE_ASYNC : MODE_WARMUP
  }

  /** Whether calls now take the synchronous causation scope (after the warm-up). */
  get synchronousScope(): boolean {
    return this.#mode === MODE_SYNC
  }

  /** Runs the handler for `event` (delivery number `attempt`, 1 for the first). */
  run(event: OmnibusEvent<T>, attempt: number): HandlerOutcome | Promise<HandlerOutcome> {
    const ctx = new RunContext(this as HandlerRunner<never>, attempt)
    let result: unknown
    try {
      result =
        this.#mode === MODE_SYNC
          ? callWithEventContextSync(event, RunContext.call, ctx)
          : runWithEventContext2(event, RunContext.call, event, ctx)
    } catch (error) {
      return ctx.decision ?? { kind: 'retry', delayMs: undefined, error }
    }
    if (!isThenable(result)) {
      if (this.#mode === MODE_WARMUP && ++this.#syncCalls >= WARMUP) this.#mode = MODE_SYNC
      return ctx.decision ?? ACK
    }
    this.#mode = MODE_ASYNC
    return Promise.resolve(result).then(
      () => ctx.decision ?? ACK,
      (error: unknown) => ctx.decision ?? { kind: 'retry', delayMs: undefined, error },
    )
  }
}

/**
 * Runs a handler once with its context inside the event's causation scope; see
 * {@link HandlerRunner}, which backends keep per subscription for the cheaper scope of
 * synchronous handlers. Never throws, never rejects.
 */
export function invokeHandler<T>(args: InvokeArgs<T>): HandlerOutcome | Promise<HandlerOutcome> {
  return new HandlerRunner(args.handler, args.subscription, args.logger, args.signal).run(
    args.event,
    args.attempt,
  )
}

/** Processed-id records for exactly-once delivery. */
export interface DedupeStore {
  /** Whether `id` was processed by `group` within the retention window. */
  has(group: string, id: string): boolean | Promise<boolean>
  /** Records `id` as processed by `group`. */
  add(group: string, id: string): void | Promise<void>
}

/** In-process {@link DedupeStore}: bounded, with a time-to-live per record. */
export class MemoryDedupeStore implements DedupeStore {
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #seen = new Map<string, number>()

  constructor(options: { readonly ttlMs?: number; readonly maxEntries?: number } = {}) {
    this.#ttlMs = options.ttlMs ?? 24 * 3600_000
    this.#maxEntries = options.maxEntries ?? 1_000_000
  }

  has(group: string, id: string): boolean {
    const key = `${group}\u0000${id}`
    const at = this.#seen.get(key)
    if (at === undefined) return false
    if (Date.now() - at > this.#ttlMs) {
      this.#seen.delete(key)
      return false
    }
    return true
  }

  add(group: string, id: string): void {
    const key = `${group}\u0000${id}`
    this.#seen.delete(key)
    this.#seen.set(key, Date.now())
    // Map iteration is insertion order: the first keys are the oldest.
    while (this.#seen.size > this.#maxEntries) {
      const oldest = this.#seen.keys().next().value as string
      this.#seen.delete(oldest)
    }
  }

  /** Number of records held. */
  get size(): number {
    return this.#seen.size
  }
}

/**
 * Runs tasks with at most `concurrency` in flight; tasks with the same key run one after another
 * in submission order (per-key order), tasks without a key only share the overall limit.
 */
export class KeyedLimiter {
  readonly #concurrency: number
  #running = 0
  readonly #waiting: Array<{ key: string | undefined; run: () => void }> = []
  readonly #busyKeys = new Set<string>()
  #idleWaiters: Array<() => void> = []

  constructor(concurrency: number) {
    this.#concurrency = positiveInt('concurrency', concurrency)
  }

  /** Tasks running now. */
  get running(): number {
    return this.#running
  }

  /** Tasks queued and not yet started. */
  get pending(): number {
    return this.#waiting.length
  }

  /** Queues `task`; resolves or rejects with its result. */
  run<R>(key: string | undefined, task: () => Promise<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({
        key,
        run: () => {
          // A task that throws synchronously or returns a plain value must still settle and
          // release its slot and key; otherwise the limiter would stall for good.
          let result: Promise<R>
          try {
            result = Promise.resolve(task())
          } catch (error) {
            result = Promise.reject(error)
          }
          result.then(resolve, reject).finally(() => this.#done(key))
        },
      })
      this.#pump()
    })
  }

  /** Resolves when nothing is running or queued. */
  onIdle(): Promise<void> {
    if (this.#running === 0 && this.#waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #done(key: string | undefined): void {
    this.#running--
    if (key !== undefined) this.#busyKeys.delete(key)
    this.#pump()
    if (this.#running === 0 && this.#waiting.length === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  #pump(): void {
    for (let i = 0; i < this.#waiting.length && this.#running < this.#concurrency; ) {
      const item = this.#waiting[i] as { key: string | undefined; run: () => void }
      if (item.key !== undefined && this.#busyKeys.has(item.key)) {
        i++
        continue
      }
      this.#waiting.splice(i, 1)
      this.#running++
      if (item.key !== undefined) this.#busyKeys.add(item.key)
      item.run()
    }
  }
}
