/**
 * The instrumentation hook: how tracing and metrics (OpenTelemetry, through `@omnibus/otel`) see
 * every publish, delivery and settlement on every backend while core depends on none of them.
 * One hook per process. With none installed, each path pays one read of a module variable.
 *
 * Publishing is seen through {@link instrumentBackend}, which every backend applies to the object
 * it returns; delivery and settlement through the consumer kernel; dead letters through the kernel
 * too, as publishes of their own. A batch is seen once, as the batch, even by a backend that sends
 * it event by event through its own `publish`. The ObservabilityBus asks the hook for the trace
 * context active when telemetry is emitted ({@link Instrumentation.captureTrace}), and marks its
 * own batches as internal so they are counted but not traced.
 */
import { ConfigurationError } from './errors.ts'
import type {
  BatchReceipt,
  EventBackend,
  EventInput,
  Guarantee,
  OmnibusEvent,
  PublishReceipt,
  Subscription,
} from './protocol.ts'

/** What kind of publish an instrumentation sees. */
export type PublishOperation = 'publish' | 'publish-batch' | 'dead-letter'

/** One publish (or batch, or dead letter) about to reach the backend. */
export interface PublishInfo {
  /** The backend's name (`memory`, `sqlite`, `kafka`, …). */
  readonly backend: string
  readonly operation: PublishOperation
  /**
   * The events as the caller gave them, before core fills in ids and defaults. Not to be changed:
   * headers to add are returned by {@link PublishObservation.headersFor}.
   */
  readonly inputs: readonly EventInput[]
  /**
   * The publish is Omnibus's own bookkeeping, not the application's: the ObservabilityBus sending
   * its telemetry batches. A tracing hook records no spans for it (they would be telemetry about
   * telemetry, inside the traces the telemetry describes); counting it is fine.
   */
  readonly internal?: boolean
}

/** What an instrumentation does around one publish. Its methods must not throw. */
export interface PublishObservation {
  /**
   * Headers to add to event `index` of {@link PublishInfo.inputs} (W3C `traceparent`,
   * `tracestate`, `baggage`): they replace the caller's headers of the same names.
   */
  headersFor(index: number): Readonly<Record<string, string>> | undefined
  /** Calls `send` (the backend's own publish) inside the publish's context, returning what it returns. */
  run<R>(send: () => R): R
  /**
   * The publish settled: `receipt` when the backend accepted it (a {@link BatchReceipt} for a
   * batch, `undefined` for a dead letter), else the `error` it failed with.
   */
  end(receipt: PublishReceipt | BatchReceipt | undefined, error?: unknown): void
}

/** One delivery of an event to a handler, about to run. */
export interface DeliveryInfo {
  readonly backend: string
  readonly event: OmnibusEvent
  readonly subscription: Subscription
  /** Delivery number of this event to this subscription or group, 1 for the first. */
  readonly attempt: number
  readonly guarantee: Guarantee
}

/** How a handler's run ended, as the kernel saw it. */
export interface DeliveryOutcome {
  readonly kind: 'ack' | 'retry' | 'dead-letter'
  /** What the handler threw or rejected with, if it did. */
  readonly error?: unknown
}

/** What an instrumentation does around one handler run. Its methods must not throw. */
export interface DeliveryObservation {
  /** Calls `fn(a, b)` (the handler's run) inside the delivery's context, returning what it returns. */
  run<A, B, R>(fn: (a: A, b: B) => R, a: A, b: B): R
  /** The handler's run ended (returned, resolved, threw or asked to retry or dead-letter). */
  end(outcome: DeliveryOutcome): void
}

/** How the kernel settled a message. */
export type SettleOutcome = 'acked' | 'retried' | 'dead-lettered' | 'dropped' | 'expired'

/** One message settled by the kernel. */
export interface SettleInfo {
  readonly backend: string
  /** The event, or the stand-in of an undecodable message. */
  readonly event: OmnibusEvent
  readonly subscription: Subscription
  readonly attempt: number
  readonly outcome: SettleOutcome
}

/**
 * A process-wide observer of Omnibus's publish, delivery and settle paths. `@omnibus/otel`
 * implements it with OpenTelemetry; anything else (a custom tracer, a metrics library) can too.
 * A method that returns `undefined` leaves that publish or delivery alone. Methods must be cheap
 * and never throw; core catches and logs what they throw anyway, once per kind.
 */
export interface Instrumentation {
  /**
   * Whether the hook has anything to do now (its tracer and meter are real, not no-ops). While it
   * returns false, publishes and deliveries go by as if no hook were installed, nothing allocated
   * for it. Leave it out to always be asked.
   */
  isActive?(): boolean
  /**
   * The trace context active now (the span a handler runs in, a user's span), as an opaque value,
   * or `undefined` when there is none. The ObservabilityBus calls it in `emit` for each event it
   * keeps, so it must be about as cheap as reading a variable: the work of turning it into
   * headers is left to {@link traceHeaders}, which the bus's flusher calls later.
   */
  captureTrace?(): unknown
  /**
   * The headers (W3C `traceparent`, `tracestate`, `baggage`) of a value {@link captureTrace}
   * returned, or `undefined`. Telemetry emitted under that context carries them, so its spans
   * are children of the span that was active. A value captured by a hook installed earlier can
   * reach a newer one: return `undefined` for anything not recognised.
   */
  traceHeaders?(captured: unknown): Readonly<Record<string, string>> | undefined
  publish(info: PublishInfo): PublishObservation | undefined
  deliver(info: DeliveryInfo): DeliveryObservation | undefined
  settle(info: SettleInfo): void
}

/** The installed hook; read directly by the kernel on its hot path. */
export let instrumentation: Instrumentation | undefined

/**
 * Installs `hook` for the whole process and returns the function that removes it. Only one hook
 * can be installed: a second call is a `ConfigurationError` until the first is removed.
 */
export function registerInstrumentation(hook: Instrumentation): () => void {
  if (
    hook === null ||
    typeof hook !== 'object' ||
    typeof hook.publish !== 'function' ||
    typeof hook.deliver !== 'function' ||
    typeof hook.settle !== 'function'
  ) {
    throw new ConfigurationError('registerInstrumentation expects an object with publish, deliver and settle')
  }
  if (instrumentation !== undefined) {
    throw new ConfigurationError(
      'an instrumentation is already installed in this process: call the function its registration returned first',
    )
  }
  instrumentation = hook
  reported.clear()
  return () => {
    if (instrumentation === hook) instrumentation = undefined
  }
}

const reported = new Set<string>()

/**
 * The installed hook's {@link Instrumentation.captureTrace}, or `undefined` without an active
 * hook that has one. Called on the ObservabilityBus's `emit` path: one read of a module variable
 * when no hook is installed.
 */
export function captureTrace(): unknown {
  const hook = instrumentation
  if (hook === undefined || hook.captureTrace === undefined || hook.isActive?.() === false) return undefined
  try {
    return hook.captureTrace()
  } catch (error) {
    instrumentationFailed('captureTrace', error)
    return undefined
  }
}

/** The headers of a value {@link captureTrace} returned, from the hook installed now. */
export function traceHeaders(captured: unknown): Readonly<Record<string, string>> | undefined {
  const hook = instrumentation
  if (captured === undefined || hook?.traceHeaders === undefined) return undefined
  try {
    return hook.traceHeaders(captured)
  } catch (error) {
    instrumentationFailed('traceHeaders', error)
    return undefined
  }
}

// Batches core publishes for itself (telemetry), told apart by identity so that the mark cannot
// leak to any other publish, however the calls interleave.
const internalBatches = new WeakSet<readonly EventInput[]>()

/**
 * Marks `inputs` as a batch of Omnibus's own (see {@link PublishInfo.internal}) for the
 * `publishBatch` it is passed to, and returns it.
 */
export function markInternal<T extends readonly EventInput[]>(inputs: T): T {
  internalBatches.add(inputs)
  return inputs
}

/** Reports a throwing hook once per kind on the console: the application's path never sees it. */
export function instrumentationFailed(what: string, error: unknown): void {
  if (reported.has(what)) return
  reported.add(what)
  console.warn(`omnibus: the installed instrumentation threw in ${what}; it is ignored:`, error)
}

/** `input` with `extra` headers on top of its own, or `input` itself when there is nothing to add. */
function withHeaders<T>(
  input: EventInput<T>,
  extra: Readonly<Record<string, string>> | undefined,
): EventInput<T> {
  // A malformed input is passed on as it is: the backend's validation names the problem.
  if (extra === undefined || input === null || typeof input !== 'object') return input
  const own = input.headers
  if (own !== undefined && (own === null || typeof own !== 'object' || Array.isArray(own))) return input
  return { ...input, headers: { ...own, ...extra } }
}

function observePublish(hook: Instrumentation, info: PublishInfo): PublishObservation | undefined {
  try {
    return hook.publish(info)
  } catch (error) {
    instrumentationFailed('publish', error)
    return undefined
  }
}

/**
 * Runs one publish through the installed instrumentation: `send` receives the inputs with the
 * headers the hook adds and is called inside the hook's context; the hook learns the result.
 * Without a hook, `send(inputs)` as it is.
 */
export function instrumentedPublish<R extends PublishReceipt | BatchReceipt | undefined>(
  backend: string,
  operation: PublishOperation,
  inputs: readonly EventInput[],
  send: (inputs: readonly EventInput[]) => Promise<R>,
  internal = false,
): Promise<R> {
  const hook = instrumentation
  if (hook === undefined || hook.isActive?.() === false) return send(inputs)
  const batch = operation === 'publish-batch'
  const obs = observePublish(hook, { backend, operation, inputs, internal })
  if (obs === undefined) return batch ? sendBatchOnce(inputs, send) : send(inputs)
  let sent: EventInput[]
  let promise: Promise<R>
  try {
    sent = inputs.map((input, i) => withHeaders(input, obs.headersFor(i)))
  } catch (error) {
    instrumentationFailed('publish', error)
    sent = [...inputs]
  }
  try {
    promise = obs.run(() => (batch ? sendBatchOnce(sent, send) : send(sent)))
  } catch (error) {
    obs.end(undefined, error)
    throw error
  }
  return promise.then(
    (receipt) => {
      obs.end(receipt)
      return receipt
    },
    (error: unknown) => {
      obs.end(undefined, error)
      throw error
    },
  )
}

// The events of batches being sent. A backend may send a batch through its own `publish`, one
// event at a time (Kafka, RabbitMQ): those events were seen as the batch, and are not seen again
// as publishes of their own (which would double their spans and counts, and trace an internal
// batch after all). Told apart by identity, so no other publish is affected.
const batched = new WeakSet<object>()

function sendBatchOnce<R>(
  inputs: readonly EventInput[],
  send: (inputs: readonly EventInput[]) => Promise<R>,
): Promise<R> {
  for (const input of inputs) if (input !== null && typeof input === 'object') batched.add(input)
  const release = (): void => {
    for (const input of inputs) if (input !== null && typeof input === 'object') batched.delete(input)
  }
  let promise: Promise<R>
  try {
    promise = send(inputs)
  } catch (error) {
    release()
    throw error
  }
  return promise.finally(release)
}

/**
 * Makes `backend.publish` and `backend.publishBatch` go through the installed instrumentation
 * (trace-context headers, a span around the broker call, metrics), and returns `backend`. Every
 * backend calls it once on the object it creates; without a hook it costs one check per call.
 */
export function instrumentBackend<B extends EventBackend>(backend: B): B {
  const publish = backend.publish
  const publishBatch = backend.publishBatch
  const name = backend.name
  const sendOne = (inputs: readonly EventInput[]) => publish.call(backend, inputs[0] as EventInput)
  const sendBatch = (inputs: readonly EventInput[]) => publishBatch.call(backend, inputs as EventInput[])
  Object.defineProperty(backend, 'publish', {
    configurable: true,
    writable: true,
    value<T>(input: EventInput<T>): Promise<PublishReceipt> {
      const hook = instrumentation
      if (hook === undefined || hook.isActive?.() === false || batched.has(input)) {
        return publish.call(backend, input)
      }
      return instrumentedPublish(name, 'publish', [input], sendOne)
    },
  })
  Object.defineProperty(backend, 'publishBatch', {
    configurable: true,
    writable: true,
    value(inputs: EventInput[]): Promise<BatchReceipt> {
      if (instrumentation === undefined || !Array.isArray(inputs)) return publishBatch.call(backend, inputs)
      return instrumentedPublish(name, 'publish-batch', inputs, sendBatch, internalBatches.has(inputs))
    },
  })
  return backend
}
