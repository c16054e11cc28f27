/**
 * Helpers for testing code that uses the buses: wait on a predicate with a deadline (never a fixed
 * sleep), spy on handlers, wait for a message on the wire, record exported telemetry, catch the
 * `ConfigurationError` that bad options must throw.
 */
import { AgentMessageBus } from './agent-bus.ts'
import { ConfigurationError, TimeoutError } from './errors.ts'
import type { TelemetryExporter } from './exporters.ts'
import type { EventBackend, OmnibusEvent } from './protocol.ts'

/** Deadline options of the helpers. */
export interface WaitOptions {
  /** Give up after this long. @default 5000 */
  readonly timeoutMs?: number
  /** Polling interval of {@link waitUntil}. @default 5 */
  readonly intervalMs?: number
  /** Describes what was awaited, for the timeout message. */
  readonly description?: string
}

/** Resolves with the predicate's first truthy value; rejects with `TimeoutError` at the deadline. */
export async function waitUntil<T>(
  predicate: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 5000
  const interval = options.intervalMs ?? 5
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value as NonNullable<T>
    if (Date.now() >= deadline) {
      throw new TimeoutError(
        `timed out after ${timeoutMs} ms waiting for ${options.description ?? 'a condition'}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}

/**
 * Calls `fn` and returns the `ConfigurationError` it throws, for assertions on its code and message.
 * Throws (failing the test) when `fn` returns, or throws anything else.
 */
export function expectConfigurationError(fn: () => unknown): ConfigurationError {
  try {
    fn()
  } catch (error) {
    if (error instanceof ConfigurationError) return error
    throw new Error(`expected a ConfigurationError, got ${String(error)}`, { cause: error })
  }
  throw new Error('expected a ConfigurationError, but the call returned')
}

/** A recorded call of a {@link HandlerSpy}. */
export interface SpyCall<A extends unknown[]> {
  readonly args: A
  readonly at: number
  /** Set when the wrapped implementation threw or rejected. */
  readonly error?: unknown
}

/** A handler that records its calls and can be awaited. */
export interface HandlerSpy<A extends unknown[], R> {
  (...args: A): Promise<Awaited<R> | undefined>
  /** Completed calls, in completion order. */
  readonly calls: ReadonlyArray<SpyCall<A>>
  readonly count: number
  /** Resolves with the first completed call whose first argument matches, past or future. */
  waitFor(predicate?: (first: A[0], call: SpyCall<A>) => boolean, options?: WaitOptions): Promise<SpyCall<A>>
  /** Resolves once `n` calls have completed. */
  waitForCount(n: number, options?: WaitOptions): Promise<ReadonlyArray<SpyCall<A>>>
  /** Forgets recorded calls. */
  reset(): void
}

/**
 * Wraps a handler (or nothing) so tests can await "a message matching X was handled". Errors of
 * the implementation are recorded and rethrown, so delivery semantics are unchanged.
 */
export function handlerSpy<A extends unknown[] = unknown[], R = unknown>(
  impl?: (...args: A) => R,
): HandlerSpy<A, R> {
  const calls: SpyCall<A>[] = []
  const waiters = new Set<(call: SpyCall<A>) => void>()
  const record = (call: SpyCall<A>): void => {
    calls.push(call)
    for (const w of [...waiters]) w(call)
  }
  const spy = (async (...args: A) => {
    try {
      const result = impl === undefined ? undefined : await impl(...args)
      record({ args, at: Date.now() })
      return result
    } catch (error) {
      record({ args, at: Date.now(), error })
      throw error
    }
  }) as HandlerSpy<A, R>
  const waitOn = <V>(
    check: (call: SpyCall<A> | undefined) => V | undefined,
    options: WaitOptions,
    what: string,
  ): Promise<V> => {
    const now = check(undefined)
    if (now !== undefined) return Promise.resolve(now)
    const timeoutMs = options.timeoutMs ?? 5000
    return new Promise<V>((resolve, reject) => {
      const waiter = (call: SpyCall<A>): void => {
        const v = check(call)
        if (v === undefined) return
        waiters.delete(waiter)
        clearTimeout(timer)
        resolve(v)
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(
          new TimeoutError(
            `timed out after ${timeoutMs} ms waiting for ${options.description ?? what} (${calls.length} call(s) so far)`,
          ),
        )
      }, timeoutMs)
      waiters.add(waiter)
    })
  }
  Object.defineProperties(spy, {
    calls: { get: () => calls },
    count: { get: () => calls.length },
  })
  spy.waitFor = (predicate, options = {}) =>
    waitOn(
      (call) => {
        const list = call === undefined ? calls : [call]
        return list.find((c) => predicate === undefined || predicate(c.args[0], c))
      },
      options,
      'a matching handler call',
    )
  spy.waitForCount = (n, options = {}) =>
    waitOn(() => (calls.length >= n ? calls.slice() : undefined), options, `${n} handler call(s)`)
  spy.reset = () => {
    calls.length = 0
  }
  return spy
}

/**
 * Subscribes (at-most-once, its own subscription) and resolves with the first event on `pattern`
 * that matches `predicate`, then unsubscribes. For an {@link AgentMessageBus} the default pattern
 * is all agent traffic. Subscribe before the action that sends the message.
 */
export async function waitForMessage<T = unknown>(
  target: EventBackend | AgentMessageBus,
  predicate: (event: OmnibusEvent<T>) => boolean = () => true,
  options: WaitOptions & { readonly pattern?: string } = {},
): Promise<OmnibusEvent<T>> {
  const backend = target instanceof AgentMessageBus ? target.backend : target
  const pattern = options.pattern ?? (target instanceof AgentMessageBus ? 'agent.**' : '**')
  const timeoutMs = options.timeoutMs ?? 5000
  let settle: ((event: OmnibusEvent<T>) => void) | undefined
  const found = new Promise<OmnibusEvent<T>>((resolve) => {
    settle = resolve
  })
  const sub = await backend.subscribe<T>(
    pattern,
    (event) => {
      if (predicate(event)) settle?.(event)
    },
    { guarantee: 'at-most-once' },
  )
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new TimeoutError(
            `timed out after ${timeoutMs} ms waiting for ${options.description ?? `a matching message on "${pattern}"`}`,
          ),
        ),
      timeoutMs,
    )
  })
  try {
    return await Promise.race([found, timeout])
  } finally {
    clearTimeout(timer)
    await sub.unsubscribe()
  }
}

/** A telemetry exporter that keeps what it receives, for assertions. */
export interface RecordingExporter extends TelemetryExporter {
  readonly events: readonly OmnibusEvent[]
  /** Resolves with the first recorded event matching `predicate`, past or future. */
  waitFor(predicate: (event: OmnibusEvent) => boolean, options?: WaitOptions): Promise<OmnibusEvent>
  clear(): void
}

/** Records every exported event (bounded to the last `limit`, default 100000). */
export function recordingExporter(limit = 100_000): RecordingExporter {
  const events: OmnibusEvent[] = []
  return {
    name: 'recording',
    events,
    export(batch) {
      events.push(...batch)
      if (events.length > limit) events.splice(0, events.length - limit)
    },
    waitFor(predicate, options = {}) {
      return waitUntil(() => events.find(predicate), {
        description: 'a matching exported event',
        ...options,
      })
    },
    clear() {
      events.length = 0
    },
  }
}

/**
 * The reference topic matcher (micromatch with `.` as the separator), for property tests that
 * check a backend's own matching against it.
 */
export { oracleMatch } from './matcher.ts'
