/**
 * The ObservabilityBus: high-volume telemetry, lossy by choice, never in the caller's way.
 *
 * `emit()` is synchronous: it samples, then puts a small record into a bounded ring buffer and
 * returns. A background flusher turns records into envelopes and sends them with `publishBatch`
 * (at most one batch in flight), and copies each batch to the exporters. When the buffer is full
 * the overflow strategy decides what is lost, and every loss is counted by reason. Nothing on this
 * path throws into the application. Agent traffic never goes through this buffer.
 */
import { createEvent, currentEvent } from './envelope.ts'
import { ConfigurationError, isRetryable, OmnibusError } from './errors.ts'
import type { TelemetryExporter } from './exporters.ts'
import { captureTrace, markInternal, traceHeaders } from './instrumentation.ts'
import { backoffDelay } from './kernel/outcome.ts'
import { optionNames, rejectUnknownOptions } from './options.ts'
import { prometheusText } from './prometheus.ts'
import type {
  EventBackend,
  EventHandler,
  EventInput,
  Logger,
  OmnibusEvent,
  SubscribeOptions,
  Subscription,
} from './protocol.ts'
import { createBackend } from './registry.ts'
import { INVALID_TOPIC_RATE, Sampler, type SamplingOptions } from './sampling.ts'

/** What happens to an event emitted while the buffer is full. */
export type OverflowStrategy = 'drop-oldest' | 'drop-newest' | 'block' | 'reject'

/** Telemetry priority; `critical` is never sampled out. */
export type TelemetryPriority = 'critical' | 'high' | 'normal' | 'low'

/** Why an event was not delivered to the backend. */
export type DropReason =
  | 'drop-oldest'
  | 'drop-newest'
  | 'reject'
  | 'block-full'
  | 'invalid'
  | 'publish-failed'
  | 'closed'

/** Header carrying the telemetry priority. */
export const PRIORITY_HEADER = 'omnibus-priority'

/** Options of one `emit`. */
export interface EmitOptions {
  /** Headers of the envelope (`traceparent`/`tracestate` for trace context). */
  readonly headers?: Readonly<Record<string, string>>
  /** `critical` events are never sampled out and get a reserved lane when the buffer is full. */
  readonly priority?: TelemetryPriority
  readonly partitionKey?: string
  readonly correlationId?: string
  /** Overrides the bus's `source` for this event. */
  readonly source?: string
}

/** Options of an {@link ObservabilityBus}. */
export interface ObservabilityBusOptions {
  /** Events held before the overflow strategy applies. @default 10000 */
  readonly bufferSize?: number
  /** Largest batch handed to `publishBatch`. @default 500 */
  readonly batchSize?: number
  /** Longest time an event waits in the buffer while the buffer holds less than a batch. @default 50 */
  readonly flushIntervalMs?: number
  /** @default 'drop-oldest' */
  readonly overflow?: OverflowStrategy
  /** Fill ratio (0–1) at which a warning is logged and counted, once per excursion. @default 0.8 */
  readonly warningThreshold?: number
  /** Sampling rates; errors and critical events are always kept. @default keep everything */
  readonly sampling?: SamplingOptions
  /** Exporters that receive every flushed batch. */
  readonly exporters?: readonly TelemetryExporter[]
  /**
   * Longest wait for one exporter call. A call still pending then counts as an exporter failure
   * and a timeout, and that exporter gets no further batch until the call settles (batches for it
   * queue, bounded by `bufferSize` events, the oldest dropped and counted). Exporters never hold
   * up publishing to the backend. @default 10000
   */
  readonly exporterTimeoutMs?: number
  /**
   * Longest pause between attempts to publish a batch the backend refused with a retryable error
   * (a locked SQLite file, a lost connection). The pause starts at `flushIntervalMs` and doubles.
   * @default 5000
   */
  readonly maxRetryDelayMs?: number
  /** `source` of emitted envelopes. @default `omnibus:<pid>` */
  readonly source?: string
  /** Receives the bus's own warnings (buffer high, flush and exporter failures). @default console warnings */
  readonly logger?: Logger
  /** Called when the buffer crosses `warningThreshold`. */
  readonly onWarning?: (stats: ObservabilityStats) => void
}

/** Counters of an {@link ObservabilityBus}; all cumulative except `buffered` and `highWaterMark`. */
export interface ObservabilityStats {
  /** Calls to `emit`/`emitAsync` (and the convenience emitters). */
  readonly emitted: number
  readonly sampledOut: number
  /** Events lost, by reason. */
  readonly dropped: Readonly<Record<DropReason, number>>
  readonly droppedTotal: number
  /** Events waiting in the buffer now. */
  readonly buffered: number
  readonly bufferCapacity: number
  /** Largest `buffered` seen. */
  readonly highWaterMark: number
  /** Events the backend accepted. */
  readonly flushed: number
  /** Batches sent. */
  readonly batches: number
  /**
   * Batches the backend did not take whole: `publishBatch` threw or rejected, or refused some of
   * the events. Events refused with a retryable error go back to the buffer (see `retried`); the
   * others count as dropped `publish-failed`.
   */
  readonly flushFailures: number
  /** Events put back in the buffer after a retryable publish failure, counted per attempt. */
  readonly retried: number
  /** Exporter calls that threw, rejected or timed out. */
  readonly exporterFailures: number
  readonly exporterFailuresByName: Readonly<Record<string, number>>
  /** Exporter calls still pending after `exporterTimeoutMs` (also counted in `exporterFailures`). */
  readonly exporterTimeouts: number
  /** Events an exporter never received because its queue was full while a call of it hung. */
  readonly exporterDropped: number
  /** Whether the backend reports itself connected now. */
  readonly backendConnected: boolean
  /** Times the buffer crossed the warning threshold. */
  readonly warnings: number
}

/** What {@link ObservabilityBus.health} reports. */
export interface ObservabilityHealth {
  /**
   * `down`: telemetry cannot reach the backend (not started, closed, backend disconnected);
   * `degraded`: it gets there with trouble (publish failures being retried, a hung exporter,
   * the buffer above its warning threshold); `ok` otherwise.
   */
  readonly status: 'ok' | 'degraded' | 'down'
  /** `status !== 'down'`. */
  readonly healthy: boolean
  readonly backendConnected: boolean
  /** Epoch ms at which the bus first found the backend disconnected, while it still is. */
  readonly disconnectedSince?: number
  /** Message of the last failed publish, while publish failures are being retried. */
  readonly lastPublishError?: string
  /** Names of exporters with a call pending past `exporterTimeoutMs`. */
  readonly stuckExporters: readonly string[]
  /** One sentence per problem, for logs and probes. */
  readonly problems: readonly string[]
}

/** `emitAsync` was refused because the buffer is full and the strategy is `reject`. */
export class BufferFullError extends OmnibusError {
  constructor(capacity: number) {
    super(
      `telemetry buffer full (${capacity} events) and overflow is 'reject': emit less, raise bufferSize, or choose another overflow strategy`,
      { code: 'BUFFER_FULL', retryable: true },
    )
  }
}

interface PendingRecord {
  readonly topic: string
  readonly data: unknown
  readonly time: number
  readonly opts: EmitOptions | undefined
  readonly parent: OmnibusEvent | undefined
  /** The trace context active at emit, from the instrumentation hook (see captureTrace). */
  readonly trace: unknown
}

/** An event the backend refused with a retryable error, back in the buffer in its built form. */
class RetryRecord {
  readonly input: EventInput
  constructor(input: EventInput) {
    this.input = input
  }
}

type BufferedRecord = PendingRecord | RetryRecord

/** Where one exporter's batches wait, so a slow or hung exporter holds up no one else. */
interface ExporterLane {
  readonly exporter: TelemetryExporter
  readonly queue: Array<readonly OmnibusEvent[]>
  queuedEvents: number
  running: boolean
  /** Calls abandoned at the timeout that have not settled yet. */
  stuck: number
}

const RETRY_POLICY = { maxAttempts: Number.POSITIVE_INFINITY, multiplier: 2, jitter: 0.2 }

/** Whether a refused publish may succeed later: the error says so, or the backend is away. */
function retryablePublishError(error: unknown): boolean {
  return isRetryable(error) || (error instanceof OmnibusError && error.code === 'NOT_CONNECTED')
}

/** Topic of the events {@link ObservabilityBus.emitModelCall} emits. */
export const MODEL_CALL_TOPIC = 'model.call'

/**
 * One call to a language model, as given to {@link ObservabilityBus.emitModelCall}. Token counts
 * are what the provider reported (or billed); durations are wall-clock milliseconds.
 */
export interface ModelCall {
  /** Model name as the provider spells it (`gpt-4o-mini`, `claude-3-5-haiku-20241022`). */
  readonly model: string
  /** `openai`, `anthropic`, … */
  readonly provider?: string
  readonly inputTokens: number
  readonly outputTokens: number
  /** From request to last token. */
  readonly durationMs?: number
  /** From request to the first streamed token. */
  readonly timeToFirstTokenMs?: number
  /** The agent that made the call; readers fall back to the event's `source`. */
  readonly agent?: string
  /** Conversation or run the call belongs to, for cost by session. */
  readonly session?: string
  /** @default true unless `error` is given */
  readonly success?: boolean
  /** Why the call failed; an `Error` or anything else (recorded as `{ name, message }`). */
  readonly error?: unknown
}

/** The `data` of a `model.call` event. */
export interface ModelCallData {
  readonly model: string
  readonly provider?: string
  readonly inputTokens: number
  readonly outputTokens: number
  readonly durationMs?: number
  readonly timeToFirstTokenMs?: number
  readonly agent?: string
  readonly session?: string
  readonly success: boolean
  readonly error?: { readonly name: string; readonly message: string; readonly code?: string | number }
}

/** A running tool call from {@link ObservabilityBus.startTool}. */
export interface ToolSpan {
  readonly tool: string
  readonly callId: string
  /** Emits `tool.end` with the duration; later calls do nothing. */
  end(result?: unknown, extra?: { readonly success?: boolean }): void
  /** Emits `tool.end` with `success: false` and the error; later calls do nothing. */
  fail(error: unknown): void
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  const v = value ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new ConfigurationError(`ObservabilityBus ${name} must be an integer >= 1, got ${String(value)}`)
  }
  return v
}

const STRATEGIES: readonly OverflowStrategy[] = ['drop-oldest', 'drop-newest', 'block', 'reject']

const BUS_OPTION_NAMES = optionNames<ObservabilityBusOptions>({
  bufferSize: true,
  batchSize: true,
  flushIntervalMs: true,
  overflow: true,
  warningThreshold: true,
  sampling: true,
  exporters: true,
  exporterTimeoutMs: true,
  maxRetryDelayMs: true,
  source: true,
  logger: true,
  onWarning: true,
})

function segmentSafe(name: string): string {
  const cleaned = String(name)
    .replace(/[^A-Za-z0-9_.-]/g, '_')
    .replace(/\.{2,}/g, '.')
    .replace(/^\.|\.$/g, '')
  return cleaned.length === 0 ? 'unnamed' : cleaned
}

function errorFields(error: unknown): Record<string, unknown> {
  if (error instanceof Error) {
    const out: Record<string, unknown> = { name: error.name, message: error.message }
    if (error.stack !== undefined) out.stack = error.stack
    const code = (error as { code?: unknown }).code
    if (typeof code === 'string' || typeof code === 'number') out.code = code
    return out
  }
  return { name: typeof error, message: String(error) }
}

function isCount(value: unknown): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
}

/** Why `call` cannot be recorded, or undefined when it can. Cheap: a few type checks. */
function modelCallProblem(call: ModelCall): string | undefined {
  if (call === null || typeof call !== 'object') return 'the call must be an object'
  if (typeof call.model !== 'string' || call.model === '') return 'model must be a non-empty string'
  if (!isCount(call.inputTokens))
    return `inputTokens must be a finite number >= 0, got ${String(call.inputTokens)}`
  if (!isCount(call.outputTokens))
    return `outputTokens must be a finite number >= 0, got ${String(call.outputTokens)}`
  if (call.durationMs !== undefined && !isCount(call.durationMs))
    return `durationMs must be a finite number >= 0, got ${String(call.durationMs)}`
  if (call.timeToFirstTokenMs !== undefined && !isCount(call.timeToFirstTokenMs))
    return `timeToFirstTokenMs must be a finite number >= 0, got ${String(call.timeToFirstTokenMs)}`
  for (const field of ['provider', 'agent', 'session'] as const) {
    if (call[field] !== undefined && typeof call[field] !== 'string') return `${field} must be a string`
  }
  if (call.success !== undefined && typeof call.success !== 'boolean') return 'success must be a boolean'
  return undefined
}

let toolCallCounter = 0
// Sampling modes of ObservabilityBus#emit.
const SAMPLE = 0
const FAILURE = 1
const KEEP = 2
const CLOCK_REUSE = 64

/** High-volume telemetry over any backend. See the module comment for the guarantees. */
export class ObservabilityBus {
  readonly #backend: EventBackend
  #ownsBackend = false
  readonly #capacity: number
  readonly #batchSize: number
  readonly #intervalMs: number
  readonly #overflow: OverflowStrategy
  readonly #warnAt: number
  readonly #source: string | undefined
  readonly #logger: Logger
  readonly #onWarning: ((stats: ObservabilityStats) => void) | undefined
  #sampler: Sampler
  readonly #lanes: ExporterLane[] = []
  readonly #exporterTimeoutMs: number
  readonly #maxRetryDelayMs: number

  // Ring buffer of records; critical records that find it full wait in their own bounded lane.
  readonly #ring: Array<BufferedRecord | undefined>
  #head = 0
  #length = 0
  readonly #critical: PendingRecord[] = []

  #emitted = 0
  #sampledOut = 0
  readonly #dropped: Record<DropReason, number> = {
    'drop-oldest': 0,
    'drop-newest': 0,
    reject: 0,
    'block-full': 0,
    invalid: 0,
    'publish-failed': 0,
    closed: 0,
  }
  #highWater = 0
  #flushed = 0
  #batches = 0
  #flushFailures = 0
  #retried = 0
  // Publish attempts failed in a row with a retryable error; the flusher backs off meanwhile.
  #failedInRow = 0
  #retryAt = 0
  #lastPublishError: string | undefined
  #exporterFailures = 0
  #exporterTimeouts = 0
  #exporterDropped = 0
  readonly #exporterFailuresByName: Record<string, number> = {}
  readonly #laneWaiters: Array<() => void> = []
  #disconnectedSince: number | undefined
  #warnings = 0
  #warned = false
  #warnedModelCall = false

  #started = false
  #closed = false
  #closing: Promise<void> | undefined
  #scheduled = false
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  #inflight: Promise<void> | undefined
  #roomWaiters: Array<() => void> = []
  // Start time of each running tool call, negated when sampling left its `tool.start` out.
  readonly #toolStarts = new Map<string, number>()
  #lastTrace: unknown
  #lastTraceHeaders: Readonly<Record<string, string>> | undefined
  readonly #subscriptions = new Set<Subscription>()
  #clock = 0
  #clockUses = 0
  #clockQueued = false

  /**
   * Creates a bus over `backend` (not connected by the bus: call {@link start}, or use
   * {@link ObservabilityBus.connect}). Throws `ConfigurationError` for invalid options.
   */
  constructor(backend: EventBackend, options: ObservabilityBusOptions = {}) {
    if (backend === null || typeof backend !== 'object' || typeof backend.publishBatch !== 'function') {
      throw new ConfigurationError(
        'ObservabilityBus needs an EventBackend (from createBackend(url) or a factory)',
      )
    }
    rejectUnknownOptions('ObservabilityBus option', options, BUS_OPTION_NAMES)
    this.#backend = backend
    this.#capacity = positiveInt('bufferSize', options.bufferSize, 10_000)
    this.#batchSize = positiveInt('batchSize', options.batchSize, 500)
    this.#intervalMs = positiveInt('flushIntervalMs', options.flushIntervalMs, 50)
    const overflow = options.overflow ?? 'drop-oldest'
    if (!STRATEGIES.includes(overflow)) {
      throw new ConfigurationError(
        `ObservabilityBus overflow must be one of ${STRATEGIES.join(', ')}, got ${String(overflow)}`,
      )
    }
    this.#overflow = overflow
    const threshold = options.warningThreshold ?? 0.8
    if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) {
      throw new ConfigurationError(
        `ObservabilityBus warningThreshold must be a number in (0, 1], got ${String(threshold)}`,
      )
    }
    this.#warnAt = Math.max(1, Math.ceil(this.#capacity * threshold))
    this.#source = options.source
    this.#logger = options.logger ?? {
      debug() {},
      info() {},
      warn(message, fields) {
        console.warn(`[omnibus] ${message}`, fields ?? '')
      },
      error(message, fields) {
        console.error(`[omnibus] ${message}`, fields ?? '')
      },
    }
    this.#onWarning = options.onWarning
    this.#sampler = new Sampler(options.sampling)
    this.#exporterTimeoutMs = positiveInt('exporterTimeoutMs', options.exporterTimeoutMs, 10_000)
    this.#maxRetryDelayMs = positiveInt('maxRetryDelayMs', options.maxRetryDelayMs, 5000)
    for (const e of options.exporters ?? []) this.addExporter(e)
    this.#ring = new Array(this.#capacity)
  }

  /**
   * Creates the backend from a URL (or takes a backend), connects it and starts the bus. A bus
   * made from a URL owns its backend: `close()` disconnects it.
   */
  static async connect(
    target: string | URL | EventBackend,
    options: ObservabilityBusOptions = {},
  ): Promise<ObservabilityBus> {
    const owns = typeof target === 'string' || target instanceof URL
    const backend = owns ? await createBackend(target) : target
    const bus = new ObservabilityBus(backend, options)
    bus.#ownsBackend = owns
    await bus.start()
    return bus
  }

  /** The backend the bus publishes to. */
  get backend(): EventBackend {
    return this.#backend
  }

  /** Connects the backend (idempotent) and starts the background flusher. */
  async start(): Promise<void> {
    if (this.#closed) throw new ConfigurationError('this ObservabilityBus is closed; create a new one')
    await this.#backend.connect()
    this.#started = true
    if (this.#length + this.#critical.length > 0) this.#schedule()
  }

  /**
   * Records an event. Synchronous, never throws, never waits for I/O. Returns `true` when the
   * event was buffered, `false` when it was sampled out or dropped (see {@link stats}).
   */
  emit(topic: string, data: unknown, opts?: EmitOptions): boolean {
    return this.#emit(topic, data, opts, SAMPLE)
  }

  // `mode`: SAMPLE as the rates say; FAILURE for an event that reports a failure on a topic that
  // is not an error topic (a failed model call), kept by sampling as error topics are; KEEP for
  // the second event of a pair whose first event sampling kept.
  #emit(topic: string, data: unknown, opts: EmitOptions | undefined, mode: number): boolean {
    this.#emitted++
    try {
      const rate = this.#sampler.rateFor(topic)
      if (rate < 1) {
        if (rate === INVALID_TOPIC_RATE) return this.#invalid(topic)
        if (
          opts?.priority !== 'critical' &&
          mode !== KEEP &&
          !(mode === FAILURE && this.#sampler.keepsErrors) &&
          (rate === 0 || Math.random() >= rate)
        ) {
          this.#sampledOut++
          return false
        }
      }
      if (this.#closed) {
        this.#dropped.closed++
        return false
      }
      return this.#enqueueHere(topic, data, opts)
    } catch {
      this.#dropped.invalid++
      return false
    }
  }

  /**
   * Like {@link emit}, for callers that can wait: with `block` it waits for room in the buffer
   * (which the flusher makes once the bus is started); with `reject` it rejects with
   * {@link BufferFullError} when the buffer is full. Resolves
   * `true` when buffered, `false` when sampled out or dropped.
   */
  async emitAsync(topic: string, data: unknown, opts?: EmitOptions): Promise<boolean> {
    const critical = opts?.priority === 'critical'
    const rate = this.#sampler.rateFor(topic)
    // Sampling decides first, so an event that would be sampled out is never rejected or waited for.
    if (rate === INVALID_TOPIC_RATE) {
      this.#emitted++
      return this.#invalid(topic)
    }
    if (!critical && rate < 1 && (rate === 0 || Math.random() >= rate)) {
      this.#emitted++
      this.#sampledOut++
      return false
    }
    if (!critical && this.#full() && !this.#closed) {
      if (this.#overflow === 'reject') {
        this.#emitted++
        this.#dropped.reject++
        throw new BufferFullError(this.#capacity)
      }
      if (this.#overflow === 'block') {
        while (this.#full() && !this.#closed) {
          if (!this.#scheduled && this.#started) this.#schedule()
          await new Promise<void>((resolve) => this.#roomWaiters.push(resolve))
        }
      }
    }
    this.#emitted++
    if (this.#closed) {
      this.#dropped.closed++
      return false
    }
    try {
      return this.#enqueueHere(topic, data, opts)
    } catch {
      this.#dropped.invalid++
      return false
    }
  }

  /** Emits an error on `error.<kind>` (default `error.raised`): always kept by sampling. */
  emitError(
    error: unknown,
    context?: Record<string, unknown>,
    opts?: EmitOptions & { readonly kind?: string },
  ): boolean {
    const data: Record<string, unknown> = { error: errorFields(error) }
    if (context !== undefined) data.context = context
    const kind = opts?.kind === undefined ? 'raised' : segmentSafe(opts.kind)
    return this.emit(`error.${kind}`, data, { priority: 'high', ...opts })
  }

  /** Emits a metric on `metric.<name>` with `{ name, value, unit, tags }`. */
  emitMetric(
    name: string,
    value: number,
    unit?: string,
    tags?: Record<string, string>,
    opts?: EmitOptions,
  ): boolean {
    const data: Record<string, unknown> = { name, value }
    if (unit !== undefined) data.unit = unit
    if (tags !== undefined) data.tags = tags
    return this.emit(`metric.${segmentSafe(name)}`, data, opts)
  }

  /** Emits a lifecycle event on `lifecycle.<name>`. */
  emitLifecycle(name: string, data: Record<string, unknown> = {}, opts?: EmitOptions): boolean {
    return this.emit(`lifecycle.${segmentSafe(name)}`, { name, ...data }, opts)
  }

  /**
   * Emits `tool.start` and returns the call id to pass to {@link emitToolEnd}. Sampling decides
   * once per tool call: the `tool.end` of this call id is kept exactly when this `tool.start` was
   * (a failed end is kept anyway while sampling keeps errors).
   */
  emitToolStart(tool: string, args?: unknown, opts?: EmitOptions): string {
    const callId = `${process.pid.toString(36)}-${(++toolCallCounter).toString(36)}`
    const data: Record<string, unknown> = { tool, callId }
    if (args !== undefined) data.args = args
    if (this.#toolStarts.size > 10_000) this.#toolStarts.clear()
    const sampledBefore = this.#sampledOut
    const started = performance.now()
    this.emit('tool.start', data, opts)
    this.#toolStarts.set(callId, this.#sampledOut === sampledBefore ? started : -1 - started)
    return callId
  }

  /**
   * Emits `tool.end` with `durationMs` (measured from {@link emitToolStart} when `callId` is
   * given, or taken from `durationMs`), `success` (default true) and `result` or `error`.
   */
  emitToolEnd(
    tool: string,
    info: {
      readonly callId?: string
      readonly result?: unknown
      readonly success?: boolean
      readonly durationMs?: number
      readonly error?: unknown
    } = {},
    opts?: EmitOptions,
  ): boolean {
    let durationMs = info.durationMs
    // Whether this call's tool.start was kept by sampling; undefined for an unknown call.
    let startKept: boolean | undefined
    if (info.callId !== undefined) {
      const mark = this.#toolStarts.get(info.callId)
      this.#toolStarts.delete(info.callId)
      if (mark !== undefined) {
        startKept = mark >= 0
        const started = mark >= 0 ? mark : -1 - mark
        durationMs ??= performance.now() - started
      }
    }
    const success = info.success ?? info.error === undefined
    const data: Record<string, unknown> = { tool, success }
    if (info.callId !== undefined) data.callId = info.callId
    if (durationMs !== undefined) data.durationMs = Math.round(durationMs * 1000) / 1000
    if (info.result !== undefined) data.result = info.result
    if (info.error !== undefined) data.error = errorFields(info.error)
    if (startKept === true) return this.#emit('tool.end', data, opts, KEEP)
    if (startKept === false && (success || !this.#sampler.keepsErrors)) {
      this.#emitted++
      this.#sampledOut++
      return false
    }
    return this.#emit('tool.end', data, opts, success ? SAMPLE : FAILURE)
  }

  /** Starts a tool call: emits `tool.start` now and `tool.end` with the duration when ended. */
  startTool(tool: string, args?: unknown, opts?: EmitOptions): ToolSpan {
    const callId = this.emitToolStart(tool, args, opts)
    let done = false
    return {
      tool,
      callId,
      end: (result, extra) => {
        if (done) return
        done = true
        const info: { callId: string; result?: unknown; success?: boolean } = { callId }
        if (result !== undefined) info.result = result
        if (extra?.success !== undefined) info.success = extra.success
        this.emitToolEnd(tool, info, opts)
      },
      fail: (error) => {
        if (done) return
        done = true
        this.emitToolEnd(tool, { callId, error, success: false }, opts)
      },
    }
  }

  /**
   * Emits one language-model call on `model.call` (see {@link ModelCallData}), from which token
   * usage and cost are counted by model, agent and session. Like {@link emit} it never throws:
   * a call without a model name, or with a token count or duration that is not a finite number
   * >= 0, is counted as dropped `invalid` and `false` is returned. A failed call (`error` given,
   * or `success: false`) is emitted with priority `high` and, like an error event, is never
   * sampled out while sampling keeps errors.
   *
   * @example
   * bus.emitModelCall({ model: 'gpt-4o-mini', provider: 'openai', inputTokens: 812,
   *   outputTokens: 164, durationMs: 1430, timeToFirstTokenMs: 310, agent: 'planner' })
   */
  emitModelCall(call: ModelCall, opts?: EmitOptions): boolean {
    let data: ModelCallData
    try {
      const problem = modelCallProblem(call)
      if (problem !== undefined) return this.#invalidModelCall(problem)
      const success = call.success ?? call.error === undefined
      const out: { -readonly [K in keyof ModelCallData]: ModelCallData[K] } = {
        model: call.model,
        inputTokens: call.inputTokens,
        outputTokens: call.outputTokens,
        success,
      }
      if (call.provider !== undefined) out.provider = call.provider
      if (call.durationMs !== undefined) out.durationMs = call.durationMs
      if (call.timeToFirstTokenMs !== undefined) out.timeToFirstTokenMs = call.timeToFirstTokenMs
      if (call.agent !== undefined) out.agent = call.agent
      if (call.session !== undefined) out.session = call.session
      if (call.error !== undefined) {
        const { name, message, code } = errorFields(call.error)
        out.error = {
          name: String(name),
          message: String(message),
          ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
        }
      }
      data = out
    } catch {
      // A getter that throws, a revoked proxy: still nothing thrown into the application.
      return this.#invalidModelCall('the call could not be read')
    }
    if (data.success) return this.#emit(MODEL_CALL_TOPIC, data, opts, SAMPLE)
    return this.#emit(MODEL_CALL_TOPIC, data, { priority: 'high', ...opts }, FAILURE)
  }

  /**
   * Subscribes through the backend. Telemetry subscriptions default to `at-most-once`, or to the
   * weakest guarantee a backend offers when it has no at-most-once; pass `guarantee` to choose.
   */
  async subscribe<T = unknown>(
    pattern: string,
    handler: EventHandler<T>,
    opts: SubscribeOptions = {},
  ): Promise<Subscription> {
    const offered = this.#backend.capabilities.guarantees
    const weakest = offered.includes('at-most-once') ? 'at-most-once' : (offered[0] ?? 'at-most-once')
    const sub = await this.#backend.subscribe(pattern, handler, { guarantee: weakest, ...opts })
    this.#subscriptions.add(sub)
    return sub
  }

  /** Adds an exporter for the following batches. */
  addExporter(exporter: TelemetryExporter): void {
    if (exporter === null || typeof exporter !== 'object' || typeof exporter.export !== 'function') {
      throw new ConfigurationError('an ObservabilityBus exporter needs a name and an export(events) method')
    }
    this.#lanes.push({ exporter, queue: [], queuedEvents: 0, running: false, stuck: 0 })
  }

  /** Replaces the sampling configuration. Throws `ConfigurationError` for a bad rate or pattern. */
  configureSampling(sampling: SamplingOptions): void {
    this.#sampler = new Sampler(sampling)
  }

  /** The sampling configuration in effect. */
  get sampling(): { defaultRate: number; rates: Record<string, number>; keepErrors: boolean } {
    return this.#sampler.config
  }

  /**
   * Sends everything buffered now; resolves `true` when the backend has it and every exporter has
   * been called with it (each waited for up to `exporterTimeoutMs`), `false` when `timeoutMs`
   * passed first (a stalled backend, publish failures still being retried) or the backend is not
   * connected.
   */
  async flush(timeoutMs?: number): Promise<boolean> {
    return this.#flushWithin(timeoutMs)
  }

  async #flushWithin(timeoutMs: number | undefined, onEmpty?: () => void): Promise<boolean> {
    if (timeoutMs === undefined) return this.#flushAll(onEmpty)
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    try {
      return await Promise.race([this.#flushAll(onEmpty), expired])
    } finally {
      clearTimeout(timer)
    }
  }

  // `onEmpty` runs in the same turn as the check that found the buffer empty, so close() can shut
  // the buffer before any other code gets a chance to emit into it.
  async #flushAll(onEmpty?: () => void): Promise<boolean> {
    for (;;) {
      if (this.#inflight !== undefined) {
        await this.#inflight
        continue
      }
      if (this.#length + this.#critical.length === 0) {
        onEmpty?.()
        await this.#exportersSettled()
        return true
      }
      if (!this.#backend.isConnected || this.#closed) return false
      const wait = this.#retryAt - Date.now()
      if (wait > 0) {
        await new Promise((resolve) => setTimeout(resolve, wait))
        continue
      }
      await this.#runBatch()
    }
  }

  // Resolves when every exporter lane has nothing queued and no call running, or is blocked by a
  // call abandoned at its timeout (which flush must not wait for).
  async #exportersSettled(): Promise<void> {
    while (this.#lanes.some((l) => l.running || (l.queue.length > 0 && l.stuck === 0))) {
      await new Promise<void>((resolve) => this.#laneWaiters.push(resolve))
    }
  }

  /**
   * Flushes every event emitted before the call (waiting at most `timeoutMs`, default 5000, for a
   * stalled backend), stops the flusher, ends the subscriptions made with {@link subscribe} and
   * closes the exporters. Every emitted event ends up either flushed or counted in
   * `stats().dropped`: those still buffered when the deadline passes, and later emits, count as
   * `closed`. Disconnects the backend only when the bus created it
   * ({@link ObservabilityBus.connect} with a URL), which lets the process exit (see the core
   * README, "Process lifetime"). Idempotent: every call resolves when the first one is done.
   */
  close(options: { readonly timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.timeoutMs ?? 5000)
    return this.#closing
  }

  async #close(timeoutMs: number): Promise<void> {
    if (this.#closed) return
    try {
      await this.#flushWithin(timeoutMs, () => {
        this.#closed = true
      })
    } finally {
      this.#closed = true
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer as NodeJS.Timeout)
        clearImmediate(this.#timer as NodeJS.Immediate)
        this.#timer = undefined
      }
      this.#wakeWaiters(Number.POSITIVE_INFINITY)
      const left = this.#length + this.#critical.length
      if (left > 0) {
        this.#dropped.closed += left
        this.#ring.fill(undefined)
        this.#length = 0
        this.#critical.length = 0
      }
      await Promise.allSettled(this.#lanes.map((l) => this.#withTimeout(async () => l.exporter.close?.())))
      const subs = [...this.#subscriptions]
      this.#subscriptions.clear()
      await Promise.allSettled(subs.map((sub) => sub.unsubscribe()))
      if (this.#ownsBackend) await this.#backend.disconnect({ drainTimeoutMs: timeoutMs })
    }
  }

  /** A snapshot of the counters. */
  stats(): ObservabilityStats {
    let droppedTotal = 0
    for (const k in this.#dropped) droppedTotal += this.#dropped[k as DropReason]
    return {
      emitted: this.#emitted,
      sampledOut: this.#sampledOut,
      dropped: { ...this.#dropped },
      droppedTotal,
      buffered: this.#length + this.#critical.length,
      bufferCapacity: this.#capacity,
      highWaterMark: this.#highWater,
      flushed: this.#flushed,
      batches: this.#batches,
      flushFailures: this.#flushFailures,
      retried: this.#retried,
      exporterFailures: this.#exporterFailures,
      exporterFailuresByName: { ...this.#exporterFailuresByName },
      exporterTimeouts: this.#exporterTimeouts,
      exporterDropped: this.#exporterDropped,
      warnings: this.#warnings,
      backendConnected: this.#backend.isConnected,
    }
  }

  /**
   * Whether telemetry is getting to the backend, and what is wrong when it is not: cheap and
   * synchronous, for readiness probes and dashboards.
   */
  health(): ObservabilityHealth {
    const connected = this.#backend.isConnected
    const problems: string[] = []
    let down = false
    if (this.#closed) {
      down = true
      problems.push('the bus is closed')
    } else if (!this.#started) {
      down = true
      problems.push('the bus is not started: call start()')
    }
    if (!connected) {
      down = true
      this.#noteDisconnected()
      problems.push(
        `the ${this.#backend.name} backend is disconnected; events wait in the buffer (${this.#length + this.#critical.length}/${this.#capacity})`,
      )
    } else if (this.#disconnectedSince !== undefined) {
      // Seen connected again before the flusher ran: the disconnection is over.
      this.#disconnectedSince = undefined
    }
    if (this.#failedInRow > 0) {
      problems.push(`publishing is failing and being retried: ${this.#lastPublishError ?? 'unknown error'}`)
    }
    const stuck = this.#lanes.filter((l) => l.stuck > 0).map((l) => l.exporter.name)
    for (const name of stuck) {
      problems.push(`exporter ${name} has a call pending past ${this.#exporterTimeoutMs} ms`)
    }
    if (this.#length >= this.#warnAt) {
      problems.push(`the buffer is above its warning threshold (${this.#length}/${this.#capacity})`)
    }
    const status = down ? 'down' : problems.length > 0 ? 'degraded' : 'ok'
    const out: { -readonly [K in keyof ObservabilityHealth]: ObservabilityHealth[K] } = {
      status,
      healthy: !down,
      backendConnected: connected,
      stuckExporters: stuck,
      problems,
    }
    if (!connected && this.#disconnectedSince !== undefined) {
      out.disconnectedSince = this.#disconnectedSince
    }
    if (this.#failedInRow > 0 && this.#lastPublishError !== undefined) {
      out.lastPublishError = this.#lastPublishError
    }
    return out
  }

  /** The counters in Prometheus text exposition format (`omnibus_telemetry_*`). */
  prometheus(labels: Readonly<Record<string, string>> = {}): string {
    return prometheusText(this.stats(), labels)
  }

  // Reading the clock is the largest part of an emit. The value is reused for up to
  // CLOCK_REUSE emits within one synchronous run (refreshed at the next microtask), so a
  // timestamp is never staler than that run of emits.
  #now(): number {
    if (this.#clockUses > 0) {
      this.#clockUses--
      return this.#clock
    }
    this.#clockUses = CLOCK_REUSE
    if (!this.#clockQueued) {
      this.#clockQueued = true
      queueMicrotask(this.#expireClock)
    }
    this.#clock = Date.now()
    return this.#clock
  }

  readonly #expireClock = (): void => {
    this.#clockUses = 0
    this.#clockQueued = false
  }

  #full(): boolean {
    return this.#length >= this.#capacity
  }

  #invalid(topic: unknown): boolean {
    if (this.#dropped.invalid++ === 0) {
      this.#logger.warn('telemetry event dropped: invalid topic (further ones are only counted)', {
        topic: String(topic),
      })
    }
    return false
  }

  #invalidModelCall(problem: string): boolean {
    this.#emitted++
    this.#dropped.invalid++
    if (!this.#warnedModelCall) {
      this.#warnedModelCall = true
      this.#logger.warn('model call dropped: invalid (further ones are only counted)', { problem })
    }
    return false
  }

  /** Buffers an emit with the event being handled and the trace active where it was called. */
  #enqueueHere(topic: string, data: unknown, opts: EmitOptions | undefined): boolean {
    return this.#enqueue({
      topic,
      data,
      time: this.#now(),
      opts,
      parent: currentEvent(),
      trace: captureTrace(),
    })
  }

  #enqueue(record: PendingRecord): boolean {
    if (this.#length >= this.#capacity) {
      if (record.opts?.priority === 'critical' && this.#critical.length < this.#capacity) {
        this.#critical.push(record)
        if (!this.#scheduled) this.#schedule()
        return true
      }
      switch (this.#overflow) {
        case 'drop-oldest':
          this.#ring[this.#head] = undefined
          this.#head = (this.#head + 1) % this.#capacity
          this.#length--
          this.#dropped['drop-oldest']++
          break
        case 'drop-newest':
          this.#dropped['drop-newest']++
          return false
        case 'block':
          this.#dropped['block-full']++
          return false
        case 'reject':
          this.#dropped.reject++
          return false
      }
    }
    let tail = this.#head + this.#length
    if (tail >= this.#capacity) tail -= this.#capacity
    this.#ring[tail] = record
    const length = ++this.#length
    if (length > this.#highWater) {
      this.#highWater = length
    }
    if (length >= this.#warnAt && !this.#warned) this.#warn()
    if (!this.#scheduled) this.#schedule()
    return true
  }

  #warn(): void {
    this.#warned = true
    this.#warnings++
    this.#logger.warn('telemetry buffer above its warning threshold', {
      buffered: this.#length,
      capacity: this.#capacity,
      overflow: this.#overflow,
    })
    try {
      this.#onWarning?.(this.stats())
    } catch {
      // A warning callback must not break telemetry.
    }
  }

  #schedule(): void {
    if (!this.#started || this.#closed || this.#scheduled) return
    this.#scheduled = true
    const run = (): void => {
      this.#timer = undefined
      this.#scheduled = false
      if (this.#inflight !== undefined) return
      if (!this.#backend.isConnected) {
        // Keep trying while the backend reconnects; records stay bounded by the buffer.
        this.#noteDisconnected()
        this.#scheduleLater()
        return
      }
      if (this.#disconnectedSince !== undefined) this.#noteReconnected()
      void this.#runBatch().then(() => {
        if (this.#length + this.#critical.length > 0) this.#schedule()
      })
    }
    const backoff = this.#retryAt - Date.now()
    if (backoff > 0) {
      this.#timer = setTimeout(run, backoff).unref()
      return
    }
    if (this.#length + this.#critical.length >= this.#batchSize) {
      // Not unreferenced: Node lets the loop sleep in its poll phase while only unreferenced
      // immediates are due, which would delay the batch until unrelated I/O wakes it.
      this.#timer = setImmediate(run)
      return
    }
    // The connected backend is what keeps a process alive (see lifetime.ts), not buffered
    // telemetry: close() flushes what is left.
    this.#timer = setTimeout(run, this.#intervalMs).unref()
  }

  #scheduleLater(): void {
    if (this.#closed || this.#scheduled) return
    this.#scheduled = true
    this.#timer = setTimeout(() => {
      this.#scheduled = false
      this.#timer = undefined
      this.#schedule()
    }, this.#intervalMs)
    this.#timer.unref()
  }

  #noteDisconnected(): void {
    if (this.#disconnectedSince !== undefined) return
    this.#disconnectedSince = Date.now()
    this.#logger.warn('telemetry backend disconnected: events wait in the buffer until it is back', {
      backend: this.#backend.name,
      buffered: this.#length + this.#critical.length,
      capacity: this.#capacity,
      overflow: this.#overflow,
    })
  }

  #noteReconnected(): void {
    const since = this.#disconnectedSince
    this.#disconnectedSince = undefined
    this.#logger.info('telemetry backend connected again', {
      backend: this.#backend.name,
      disconnectedMs: since === undefined ? undefined : Date.now() - since,
    })
  }

  #take(max: number): BufferedRecord[] {
    const out: BufferedRecord[] = []
    while (out.length < max && this.#critical.length > 0) out.push(this.#critical.shift() as PendingRecord)
    while (out.length < max && this.#length > 0) {
      out.push(this.#ring[this.#head] as BufferedRecord)
      this.#ring[this.#head] = undefined
      this.#head = this.#head + 1 === this.#capacity ? 0 : this.#head + 1
      this.#length--
    }
    return out
  }

  #wakeWaiters(n: number): void {
    if (this.#roomWaiters.length === 0) return
    const woken = this.#roomWaiters.splice(0, Math.min(n, this.#roomWaiters.length))
    for (const w of woken) w()
  }

  #toInput(r: PendingRecord): EventInput {
    const o = r.opts
    const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
      topic: r.topic,
      data: r.data,
      time: r.time,
      guarantee: 'at-most-once',
    }
    if (o === undefined) return this.#withSource(input, r)
    if (o.priority !== undefined) input.headers = { ...o.headers, [PRIORITY_HEADER]: o.priority }
    else if (o.headers !== undefined) input.headers = o.headers
    if (o.source !== undefined) input.source = o.source
    if (o.partitionKey !== undefined) input.partitionKey = o.partitionKey
    if (o.correlationId !== undefined) input.correlationId = o.correlationId
    return this.#withSource(input, r)
  }

  #withSource(input: { -readonly [K in keyof EventInput]: EventInput[K] }, r: PendingRecord): EventInput {
    if (input.source === undefined && this.#source !== undefined) input.source = this.#source
    const parent = r.parent
    if (parent !== undefined) {
      if (input.correlationId === undefined) input.correlationId = parent.correlationId ?? parent.id
      input.causationId = parent.id
    }
    // Telemetry belongs to the trace it was recorded in, under the span active then (a handler's
    // consumer span, an agent's span, the application's own); without a hook that knows it, to
    // the trace of the event being handled. A traceparent the caller gave wins.
    if (input.headers?.traceparent !== undefined) return input
    const active = r.trace === undefined ? undefined : this.#traceHeaders(r.trace)
    if (active !== undefined) input.headers = { ...input.headers, ...active }
    if (parent !== undefined && input.headers?.traceparent === undefined) {
      const headers = parent.headers as OmnibusEvent['headers'] | undefined
      const traceparent = headers?.traceparent
      if (traceparent !== undefined) {
        const tracestate = headers?.tracestate
        input.headers =
          tracestate === undefined
            ? { ...input.headers, traceparent }
            : { ...input.headers, traceparent, tracestate }
      }
    }
    return input
  }

  // Events emitted in one span share its context object: its headers are written once per batch.
  #traceHeaders(captured: unknown): Readonly<Record<string, string>> | undefined {
    if (captured !== this.#lastTrace) {
      this.#lastTrace = captured
      this.#lastTraceHeaders = traceHeaders(captured)
    }
    return this.#lastTraceHeaders
  }

  #runBatch(): Promise<void> {
    const p = this.#sendBatch().finally(() => {
      this.#inflight = undefined
    })
    this.#inflight = p
    return p
  }

  async #sendBatch(): Promise<void> {
    const records = this.#take(this.#batchSize)
    this.#lastTrace = undefined
    if (this.#warned && this.#length < this.#warnAt / 2) this.#warned = false
    this.#wakeWaiters(records.length)
    if (records.length === 0) return
    const inputs: EventInput[] = []
    if (this.#lanes.length === 0) {
      // No exporter needs the envelopes: the backend builds them (ids, validation) exactly once.
      for (const r of records) {
        if (r instanceof RetryRecord) inputs.push(r.input)
        else if (r.data === undefined) this.#invalid(r.topic)
        else inputs.push(this.#toInput(r))
      }
    } else {
      const fresh: OmnibusEvent[] = []
      for (const r of records) {
        if (r instanceof RetryRecord) {
          inputs.push(r.input)
          continue
        }
        try {
          const event = createEvent(this.#toInput(r))
          fresh.push(event)
          inputs.push(event)
        } catch (error) {
          this.#invalid(r.topic)
          this.#logger.debug('telemetry event dropped', { topic: r.topic, error: String(error) })
        }
      }
      // Exporters get each event once, when it is first flushed, whatever the backend does with it.
      if (fresh.length > 0) for (const lane of this.#lanes) this.#offer(lane, fresh)
    }
    if (inputs.length === 0) return
    this.#batches++
    await this.#publish(inputs)
  }

  async #publish(inputs: readonly EventInput[]): Promise<void> {
    let retry: EventInput[] | undefined
    let lost = 0
    let failure: unknown
    try {
      // Marked internal: the hook counts the batch but makes no spans of telemetry about telemetry.
      const receipt = await this.#backend.publishBatch(markInternal(inputs))
      this.#flushed += receipt.succeeded
      if (receipt.failed > 0) {
        for (const r of receipt.results) {
          if (r.ok) continue
          failure ??= r.error
          const input = inputs[r.index]
          if (input !== undefined && retryablePublishError(r.error)) {
            retry ??= []
            retry.push(input)
          } else lost++
        }
      }
    } catch (error) {
      failure = error
      if (retryablePublishError(error)) retry = [...inputs]
      else lost = inputs.length
    }
    if (failure === undefined) {
      this.#failedInRow = 0
      this.#retryAt = 0
      this.#lastPublishError = undefined
      return
    }
    this.#flushFailures++
    this.#dropped['publish-failed'] += lost
    const message = failure instanceof Error ? failure.message : String(failure)
    let kept = 0
    if (retry !== undefined) {
      kept = this.#requeue(retry)
      this.#dropped['publish-failed'] += retry.length - kept
      this.#retried += kept
    }
    if (kept > 0) {
      this.#failedInRow++
      this.#lastPublishError = message
      this.#retryAt =
        Date.now() +
        backoffDelay(
          { ...RETRY_POLICY, initialDelayMs: this.#intervalMs, maxDelayMs: this.#maxRetryDelayMs },
          this.#failedInRow,
        )
    }
    if (this.#flushFailures === 1 || this.#flushFailures % 100 === 0) {
      this.#logger.warn(
        kept > 0
          ? 'telemetry batch could not be published; retrying (further failures are logged every 100th)'
          : 'telemetry batch could not be published (further failures are logged every 100th)',
        {
          events: inputs.length,
          retrying: kept,
          dropped: inputs.length - kept,
          failures: this.#flushFailures,
          error: message,
        },
      )
    }
  }

  // Puts refused events back at the front of the buffer, in their order, as far as there is room
  // (events emitted meanwhile keep their place). Returns how many went back.
  #requeue(inputs: readonly EventInput[]): number {
    const room = Math.min(inputs.length, this.#capacity - this.#length)
    for (let i = room - 1; i >= 0; i--) {
      this.#head = this.#head === 0 ? this.#capacity - 1 : this.#head - 1
      this.#ring[this.#head] = new RetryRecord(inputs[i] as EventInput)
      this.#length++
    }
    if (this.#length > this.#highWater) this.#highWater = this.#length
    return room
  }

  // Queues a batch for one exporter. The queue is bounded by the buffer's capacity in events, so
  // a hung exporter costs at most one buffer of memory; the oldest batches give way.
  #offer(lane: ExporterLane, events: readonly OmnibusEvent[]): void {
    lane.queue.push(events)
    lane.queuedEvents += events.length
    while (lane.queuedEvents > this.#capacity && lane.queue.length > 1) {
      const old = lane.queue.shift() as readonly OmnibusEvent[]
      lane.queuedEvents -= old.length
      this.#exporterDropped += old.length
    }
    this.#pump(lane)
  }

  #pump(lane: ExporterLane): void {
    while (!lane.running && lane.stuck === 0) {
      const batch = lane.queue.shift()
      if (batch === undefined) break
      lane.queuedEvents -= batch.length
      let result: void | Promise<void>
      try {
        result = lane.exporter.export(batch)
      } catch (error) {
        this.#exporterFailed(lane, error)
        continue
      }
      if (result === undefined || typeof (result as Promise<void>).then !== 'function') continue
      lane.running = true
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        lane.stuck++
        lane.running = false
        this.#exporterTimeouts++
        this.#exporterFailed(
          lane,
          new Error(`export did not settle within ${this.#exporterTimeoutMs} ms (exporterTimeoutMs)`),
        )
        this.#laneChanged()
      }, this.#exporterTimeoutMs)
      timer.unref()
      ;(result as Promise<void>).then(
        () => {
          clearTimeout(timer)
          this.#exportDone(lane, timedOut)
        },
        (error: unknown) => {
          clearTimeout(timer)
          if (!timedOut) this.#exporterFailed(lane, error)
          this.#exportDone(lane, timedOut)
        },
      )
    }
    this.#laneChanged()
  }

  #exportDone(lane: ExporterLane, timedOut: boolean): void {
    if (timedOut) lane.stuck--
    else lane.running = false
    this.#pump(lane)
  }

  #laneChanged(): void {
    if (this.#laneWaiters.length === 0) return
    for (const w of this.#laneWaiters.splice(0)) w()
  }

  #exporterFailed(lane: ExporterLane, error: unknown): void {
    this.#exporterFailures++
    const name = lane.exporter.name
    const n = (this.#exporterFailuresByName[name] ?? 0) + 1
    this.#exporterFailuresByName[name] = n
    if (n === 1) {
      this.#logger.warn('telemetry exporter failed (further failures are only counted)', {
        exporter: name,
        error: error instanceof Error ? error.message : String(error),
      })
    }
  }

  // Runs `fn` for at most the exporter timeout (close() must end even when an exporter hangs).
  async #withTimeout(fn: () => Promise<unknown>): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      fn(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#exporterTimeoutMs)
      }),
    ]).finally(() => clearTimeout(timer))
  }
}
