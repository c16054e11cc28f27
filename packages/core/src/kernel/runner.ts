/**
 * The handler runner: calls one subscription's handler inside the event's causation scope, with
 * its context, and turns what it did into a {@link HandlerOutcome}.
 */
import { callWithEventContextSync, runWithEventContext2 } from '../envelope.ts'
import type { EventHandler, HandlerContext, Logger, OmnibusEvent, Subscription } from '../protocol.ts'
import type { HandlerOutcome } from './outcome.ts'

/** Arguments of {@link invokeHandler}. */
export interface InvokeArgs<T> {
  readonly handler: EventHandler<T>
  readonly event: OmnibusEvent<T>
  readonly attempt: number
  readonly subscription: Subscription
  readonly logger: Logger
  readonly signal: AbortSignal
}

/**
 * Where a handler's context gets its signal when that signal is made only on the first read (an
 * expiring event's, see the kernel's deadlines).
 */
export interface SignalSource {
  readonly signal: AbortSignal
}

/** The outcome of every successful run: one shared object, so a caller may compare by identity. */
export const ACK: HandlerOutcome = Object.freeze({ kind: 'ack' })

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
  readonly #signal: AbortSignal | SignalSource
  readonly #runner: HandlerRunner<never>

  constructor(runner: HandlerRunner<never>, attempt: number, signal: AbortSignal | SignalSource) {
    this.#runner = runner
    this.attempt = attempt
    this.#signal = signal
  }

  // Read through the runner: one object is made per handler call, and two fields fewer in it are
  // less for the collector to sweep on every consumer's hot path.
  get subscription(): Subscription {
    return this.#runner.subscription
  }

  get logger(): Logger {
    return this.#runner.logger
  }

  // A getter: an expiring event's signal (its AbortController) is made only if the handler reads it.
  get signal(): AbortSignal {
    const signal = this.#signal
    return signal instanceof AbortSignal ? signal : signal.signal
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

  /**
   * Runs the handler for `event` (delivery number `attempt`, 1 for the first). `signal` is the
   * context's signal: the runner's own unless this call has one of its own (an expiring event's),
   * given as is or as a {@link SignalSource} read only when the handler reads `ctx.signal`.
   */
  run(
    event: OmnibusEvent<T>,
    attempt: number,
    signal?: AbortSignal | SignalSource,
  ): HandlerOutcome | Promise<HandlerOutcome> {
    const ctx = new RunContext(this as HandlerRunner<never>, attempt, signal ?? this.signal)
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

  /**
   * Like {@link run}, for a caller that settles by callback: a handler that returned synchronously
   * gets its outcome as the value; for one that returned a promise, a {@link PendingCall} is
   * returned and `settle(outcome, pending.owner)` is called once it settles. That is one promise
   * reaction per call where `run(...).then(...)` takes two (and a microtask turn less per event).
   * `settle` must not throw.
   */
  runThen<A>(
    event: OmnibusEvent<T>,
    attempt: number,
    signal: AbortSignal | SignalSource | undefined,
    settle: (outcome: HandlerOutcome, owner: A) => void,
  ): HandlerOutcome | PendingCall<A> {
    const ctx = new RunContext(this as HandlerRunner<never>, attempt, signal ?? this.signal)
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
    return pendingCall(ctx, result, settle)
  }
}

// Out of runThen, so that stays small enough to be inlined into a backend's delivery loop.
function pendingCall<A>(
  ctx: RunContext,
  result: PromiseLike<unknown>,
  settle: (outcome: HandlerOutcome, owner: A) => void,
): PendingCall<A> {
  const pending = new PendingCall<A>()
  const promise = result instanceof Promise ? result : Promise.resolve(result)
  promise.then(
    () => settle(ctx.decision ?? ACK, pending.owner as A),
    (error: unknown) =>
      settle(ctx.decision ?? { kind: 'retry', delayMs: undefined, error }, pending.owner as A),
  )
  return pending
}

/**
 * A handler call whose promise is still pending (see {@link HandlerRunner.runThen}). The caller
 * sets `owner` right after the call returns it; the settle callback receives it with the outcome.
 */
export class PendingCall<A = unknown> {
  /** What the settle callback receives beside the outcome. */
  owner: A | undefined = undefined
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
