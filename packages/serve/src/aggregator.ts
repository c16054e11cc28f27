/**
 * The aggregator: every event the server sees goes through {@link Aggregator.ingest}, which keeps
 * rolling aggregates in fixed-size structures (rings of time slots, log-bucket histograms, maps
 * capped with least-recently-seen eviction), and {@link Aggregator.snapshot} reads them out as the
 * {@link Snapshot} every view shares. Pure: no I/O, no timers, an injectable clock.
 *
 * What it reads: telemetry (`tool.start`/`tool.end`, `model.call`, error topics), agent traffic
 * (the `omnibus-agent-*` headers of AgentMessageBus envelopes), dead letters and their redrive
 * markers. Every other event counts towards the event rates of its topic and topic family.
 */
import {
  AGENT_HEADERS,
  ConfigurationError,
  DEFAULT_DEAD_LETTER_TOPIC,
  DLQ_HEADERS,
  isErrorTopic,
  type OmnibusEvent,
  validateTopic,
} from '@omnibus/core'
import { optionNames, rejectUnknownOptions } from '@omnibus/core/backend'
import { LRUCache } from 'lru-cache'
import { costOf, DEFAULT_PRICING, isCostMarker, type PricingTable, priceOf } from './cost.ts'
import type {
  AgentView,
  AlertView,
  BackendView,
  CostPoint,
  DeadLetterView,
  ErrorView,
  FamilyRate,
  ModelView,
  Snapshot,
  ToolView,
  TopicView,
  Totals,
} from './snapshot.ts'
import { RateWindow, WindowedHistogram, type WindowShape } from './windows.ts'

/** Name of the bucket that holds what the capped lists leave out. Not a valid topic, so it never collides. */
export const OTHER = '(other)'

/** Header of a redrive marker naming the letter it redrove (`<letter id>@<letter time>`), as `omnibus dlq redrive` writes it. */
export const REDRIVEN_OF_HEADER = 'omnibus-dlq-redriven-of'

/** The topic redrive markers of dead-letter topic `topic` go to, as `omnibus dlq redrive` writes them. */
export function redrivenTopic(topic: string): string {
  return `${topic}.redriven`
}

/** Upper bounds on what the aggregator keeps; each is a count of entries. */
export interface AggregatorLimits {
  /** Topics tracked; the least recently seen is forgotten first. @default 2000 */
  readonly topics?: number
  /** Topic families tracked. @default 200 */
  readonly families?: number
  /** Agents tracked. @default 1000 */
  readonly agents?: number
  /** Tools tracked. @default 500 */
  readonly tools?: number
  /** Models tracked. @default 200 */
  readonly models?: number
  /** Recent errors kept. @default 200 */
  readonly errors?: number
  /** Dead letters kept (with their events, for redrive). @default 1000 */
  readonly deadLetters?: number
  /** Unanswered requests tracked for latency and in-flight counts. @default 100000 */
  readonly pendingRequests?: number
  /** Models and agents named in one cost bucket; the rest add up under `(other)`. @default 20 */
  readonly costKeys?: number
  /** Topics listed in a snapshot, beside the `(other)` remainder. @default 50 */
  readonly snapshotTopics?: number
  /** Agents, tools and models listed in a snapshot. @default 200 */
  readonly snapshotRows?: number
}

/** Options of an {@link Aggregator}. */
export interface AggregatorOptions {
  /** Prices of model calls. @default DEFAULT_PRICING */
  readonly pricing?: PricingTable
  /** The clock, epoch ms. @default Date.now */
  readonly now?: () => number
  /** Where dead letters arrive. @default 'omnibus.deadletter' */
  readonly deadLetterTopic?: string
  /** Window of event rates. @default 10 slots of 1000 ms */
  readonly rateWindow?: WindowShape
  /** Window of latency percentiles and tool error rates. @default 6 slots of 10000 ms */
  readonly latencyWindow?: WindowShape
  /** Width of one cost bucket. @default 60000 */
  readonly costBucketMs?: number
  /** Cost buckets kept (60 × 1 min = the last hour). @default 60 */
  readonly costBuckets?: number
  /** A request with no reply after this long stops counting as in flight and counts as an error. @default 30000 */
  readonly requestTimeoutMs?: number
  readonly limits?: AggregatorLimits
}

/** What the aggregator measured in one event, for a metrics sink that keeps its own histograms. */
export interface AggregatorObserver {
  toolEnd?(tool: string, ok: boolean, durationMs: number | undefined): void
  reply?(agent: string, ok: boolean, latencyMs: number): void
  modelCall?(model: string, agent: string, ok: boolean, durationMs: number | undefined): void
}

/** Kinds of error the aggregator counts, one label of `omnibus_errors_total`. */
export type ErrorKind = 'event' | 'tool' | 'model' | 'reply' | 'timeout'

const OPTION_NAMES = optionNames<AggregatorOptions>({
  pricing: true,
  now: true,
  deadLetterTopic: true,
  rateWindow: true,
  latencyWindow: true,
  costBucketMs: true,
  costBuckets: true,
  requestTimeoutMs: true,
  limits: true,
})

const LIMIT_NAMES = optionNames<AggregatorLimits>({
  topics: true,
  families: true,
  agents: true,
  tools: true,
  models: true,
  errors: true,
  deadLetters: true,
  pendingRequests: true,
  costKeys: true,
  snapshotTopics: true,
  snapshotRows: true,
})

const DEFAULT_LIMITS: Required<AggregatorLimits> = {
  topics: 2000,
  families: 200,
  agents: 1000,
  tools: 500,
  models: 200,
  errors: 200,
  deadLetters: 1000,
  pendingRequests: 100_000,
  costKeys: 20,
  snapshotTopics: 50,
  snapshotRows: 200,
}

const MESSAGE_LIMIT = 500

function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigurationError(`${name} must be an integer >= 1, got ${String(value)}`)
  }
  return value
}

function shape(name: string, value: WindowShape | undefined, fallback: WindowShape): WindowShape {
  if (value === undefined) return fallback
  if (typeof value !== 'object' || value === null) {
    throw new ConfigurationError(`${name} must be { slots, slotMs }, got ${String(value)}`)
  }
  rejectUnknownOptions(`${name} option`, value, ['slots', 'slotMs'])
  return {
    slots: positiveInt(`${name}.slots`, value.slots),
    slotMs: positiveInt(`${name}.slotMs`, value.slotMs),
  }
}

interface TopicEntry {
  total: number
  lastSeen: number
  readonly rate: RateWindow
}

interface FamilyEntry {
  total: number
  readonly rate: RateWindow
}

interface AgentEntry {
  readonly agentId: string
  lastSeen: number
  inFlight: number
  requests: number
  errors: number
  inputTokens: number
  outputTokens: number
  costUsd: number
  latency: WindowedHistogram | undefined
}

interface ToolEntry {
  readonly tool: string
  calls: number
  errors: number
  readonly windowCalls: RateWindow
  readonly windowErrors: RateWindow
  readonly durations: WindowedHistogram
}

interface ModelEntry {
  readonly model: string
  provider: string | undefined
  calls: number
  inputTokens: number
  outputTokens: number
  costUsd: number
  priced: boolean
}

interface PendingRequest {
  readonly to: string
  readonly topic: string
  readonly time: number
  readonly seenAt: number
}

interface CostBucket {
  readonly t: number
  totalUsd: number
  readonly byModel: Map<string, number>
  readonly byAgent: Map<string, number>
}

interface DeadLetterEntry {
  view: DeadLetterView
  readonly event: OmnibusEvent
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
    ? (value as Record<string, unknown>)
    : undefined
}

function clip(message: string): string {
  return message.length > MESSAGE_LIMIT ? `${message.slice(0, MESSAGE_LIMIT - 1)}…` : message
}

function familyOf(topic: string): string {
  const dot = topic.indexOf('.')
  return dot < 0 ? topic : topic.slice(0, dot)
}

function addCapped(map: Map<string, number>, key: string, value: number, cap: number): void {
  const current = map.get(key)
  if (current !== undefined) map.set(key, current + value)
  else if (map.size < cap) map.set(key, value)
  else map.set(OTHER, (map.get(OTHER) ?? 0) + value)
}

/**
 * Rolling aggregates of the traffic, bounded in memory whatever the rate or the number of distinct
 * topics, agents and tools. See the module comment for what it reads.
 */
export class Aggregator {
  readonly #now: () => number
  readonly #pricing: PricingTable
  readonly #dlqTopic: string
  readonly #redrivenTopic: string
  readonly #rateShape: WindowShape
  readonly #latencyShape: WindowShape
  readonly #costBucketMs: number
  readonly #costBuckets: number
  readonly #requestTimeoutMs: number
  readonly #limits: Required<AggregatorLimits>
  readonly #startedAt: number
  #observer: AggregatorObserver | undefined

  readonly #all: RateWindow
  readonly #families: LRUCache<string, FamilyEntry>
  readonly #topics: LRUCache<string, TopicEntry>
  readonly #agents: LRUCache<string, AgentEntry>
  readonly #tools: LRUCache<string, ToolEntry>
  readonly #models: LRUCache<string, ModelEntry>
  readonly #pending = new Map<string, PendingRequest>()
  readonly #cost = new Map<number, CostBucket>()
  #newestCostBucket = Number.NEGATIVE_INFINITY
  readonly #errors: ErrorView[] = []
  #errorsHead = 0
  readonly #deadLetters: LRUCache<string, DeadLetterEntry>
  readonly #errorKinds: Record<ErrorKind, number> = { event: 0, tool: 0, model: 0, reply: 0, timeout: 0 }
  #nextSweep = 0
  #backend: BackendView
  #alerts: readonly AlertView[] = []
  #totals = {
    events: 0,
    errors: 0,
    deadLetters: 0,
    toolCalls: 0,
    toolErrors: 0,
    requests: 0,
    replies: 0,
    modelCalls: 0,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
  }

  /** Throws `ConfigurationError` for an unknown option or a bad value, naming it. */
  constructor(options: AggregatorOptions = {}) {
    rejectUnknownOptions('aggregator option', options, OPTION_NAMES)
    rejectUnknownOptions('aggregator limit', options.limits, LIMIT_NAMES)
    const limits = { ...DEFAULT_LIMITS }
    for (const [key, value] of Object.entries(options.limits ?? {})) {
      if (value !== undefined) limits[key as keyof AggregatorLimits] = positiveInt(`limits.${key}`, value)
    }
    this.#limits = limits
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new ConfigurationError(`now must be a function returning epoch ms, got ${typeof options.now}`)
    }
    this.#now = options.now ?? Date.now
    if (options.pricing !== undefined && (typeof options.pricing !== 'object' || options.pricing === null)) {
      throw new ConfigurationError(`pricing must be a table of model prices, got ${String(options.pricing)}`)
    }
    this.#pricing = options.pricing ?? DEFAULT_PRICING
    this.#dlqTopic = options.deadLetterTopic ?? DEFAULT_DEAD_LETTER_TOPIC
    validateTopic(this.#dlqTopic)
    this.#redrivenTopic = redrivenTopic(this.#dlqTopic)
    this.#rateShape = shape('rateWindow', options.rateWindow, { slots: 10, slotMs: 1000 })
    this.#latencyShape = shape('latencyWindow', options.latencyWindow, { slots: 6, slotMs: 10_000 })
    this.#costBucketMs = positiveInt('costBucketMs', options.costBucketMs ?? 60_000)
    this.#costBuckets = positiveInt('costBuckets', options.costBuckets ?? 60)
    this.#requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs ?? 30_000)
    this.#startedAt = this.#now()
    this.#all = new RateWindow(this.#rateShape)
    this.#families = new LRUCache({ max: limits.families })
    this.#topics = new LRUCache({ max: limits.topics })
    this.#agents = new LRUCache({ max: limits.agents })
    this.#tools = new LRUCache({ max: limits.tools })
    this.#models = new LRUCache({ max: limits.models })
    this.#deadLetters = new LRUCache({ max: limits.deadLetters })
    this.#backend = {
      name: 'unknown',
      healthy: false,
      latencyMs: undefined,
      detail: 'not checked yet',
      checkedAt: 0,
    }
  }

  /** Epoch ms the aggregator was created. */
  get startedAt(): number {
    return this.#startedAt
  }

  /** The clock the aggregator reads. */
  get now(): () => number {
    return this.#now
  }

  /** Sets who is told of each tool duration, reply latency and model call (the metrics). */
  setObserver(observer: AggregatorObserver | undefined): void {
    this.#observer = observer
  }

  /** Records the backend's last health check, shown in `snapshot().backend`. */
  setBackend(view: BackendView): void {
    this.#backend = view
  }

  /** Records the alert rules' current states, shown in `snapshot().alerts`. */
  setAlerts(alerts: readonly AlertView[]): void {
    this.#alerts = alerts
  }

  /** Takes one event into the aggregates. Never throws on odd data: what it cannot read it only counts. */
  ingest(event: OmnibusEvent): void {
    const now = this.#now()
    const topic = event.topic
    this.#totals.events++
    this.#all.add(now)
    const familyName = familyOf(topic)
    let family = this.#families.get(familyName)
    if (family === undefined) {
      family = { total: 0, rate: new RateWindow(this.#rateShape) }
      this.#families.set(familyName, family)
    }
    family.total++
    family.rate.add(now)
    let entry = this.#topics.get(topic)
    if (entry === undefined) {
      entry = { total: 0, lastSeen: 0, rate: new RateWindow(this.#rateShape) }
      this.#topics.set(topic, entry)
    }
    entry.total++
    entry.lastSeen = event.time
    entry.rate.add(now)
    if (now >= this.#nextSweep) this.#sweep(now)

    // A dead letter keeps the headers of what it holds (agent headers included): test the topic first.
    const kind = event.headers[AGENT_HEADERS.kind]
    if (topic === this.#dlqTopic) {
      this.#deadLetter(event)
    } else if (topic === this.#redrivenTopic) {
      this.#redriveMarker(event)
    } else if (kind !== undefined) {
      this.#agentTraffic(event, kind, now)
    } else if (topic === 'tool.end') {
      this.#toolEnd(event, now)
    } else if (topic === 'model.call') {
      this.#modelCall(event, now)
    } else if (isErrorTopic(topic)) {
      this.#errorEvent(event)
    } else if (topic === 'tool.start') {
      this.#touch(this.#attributed(event), event.time)
    }
  }

  #attributed(event: OmnibusEvent): string {
    return text(record(event.data)?.agent) ?? event.source
  }

  #agent(agentId: string, time: number): AgentEntry {
    let agent = this.#agents.get(agentId)
    if (agent === undefined) {
      agent = {
        agentId,
        lastSeen: time,
        inFlight: 0,
        requests: 0,
        errors: 0,
        inputTokens: 0,
        outputTokens: 0,
        costUsd: 0,
        latency: undefined,
      }
      this.#agents.set(agentId, agent)
    }
    return agent
  }

  // An agent is seen when it acts (sends, replies, emits telemetry); being addressed only creates it.
  #touch(agentId: string, time: number): AgentEntry {
    const agent = this.#agent(agentId, time)
    if (time > agent.lastSeen) agent.lastSeen = time
    return agent
  }

  #error(
    kind: ErrorKind,
    event: Pick<OmnibusEvent, 'id' | 'topic' | 'time' | 'source'>,
    name: string | undefined,
    message: string,
  ): void {
    this.#totals.errors++
    this.#errorKinds[kind]++
    const view: ErrorView = {
      id: event.id,
      topic: event.topic,
      time: event.time,
      source: event.source,
      name,
      message: clip(message),
    }
    const cap = this.#limits.errors
    if (this.#errors.length < cap) this.#errors.push(view)
    else {
      this.#errors[this.#errorsHead] = view
      this.#errorsHead = (this.#errorsHead + 1) % cap
    }
  }

  #agentTraffic(event: OmnibusEvent, kind: string, now: number): void {
    const h = event.headers
    const from = h[AGENT_HEADERS.from] ?? event.source
    const sender = this.#touch(from, event.time)
    if (kind === 'request') {
      const to = h[AGENT_HEADERS.to]
      const correlation = h[AGENT_HEADERS.correlationId] ?? event.id
      if (to === undefined || to === '*') return
      const target = this.#agent(to, event.time)
      target.requests++
      this.#totals.requests++
      if (this.#pending.has(correlation)) return
      if (this.#pending.size >= this.#limits.pendingRequests) this.#forgetOldestRequest()
      target.inFlight++
      this.#pending.set(correlation, { to, topic: event.topic, time: event.time, seenAt: now })
    } else if (kind === 'reply') {
      this.#totals.replies++
      const correlation = h[AGENT_HEADERS.correlationId]
      const error = h[AGENT_HEADERS.error]
      if (error !== undefined) {
        sender.errors++
        this.#error('reply', event, 'AgentReplyError', `agent "${from}" replied with an error: ${error}`)
      }
      const pending = correlation === undefined ? undefined : this.#pending.get(correlation)
      if (pending === undefined || correlation === undefined) return
      this.#pending.delete(correlation)
      const target = this.#agents.get(pending.to)
      if (target !== undefined && target.inFlight > 0) target.inFlight--
      const latency = Math.max(0, event.time - pending.time)
      sender.latency ??= new WindowedHistogram(this.#latencyShape)
      sender.latency.record(latency, now)
      this.#observer?.reply?.(from, error === undefined, latency)
    }
  }

  #forgetOldestRequest(): void {
    for (const [correlation, pending] of this.#pending) {
      this.#pending.delete(correlation)
      const target = this.#agents.get(pending.to)
      if (target !== undefined && target.inFlight > 0) target.inFlight--
      return
    }
  }

  // Requests are in arrival order, so expired ones are at the front of the map.
  #sweep(now: number): void {
    this.#nextSweep = now + Math.min(1000, this.#requestTimeoutMs)
    for (const [correlation, pending] of this.#pending) {
      if (now - pending.seenAt < this.#requestTimeoutMs) break
      this.#pending.delete(correlation)
      const target = this.#agents.get(pending.to)
      if (target !== undefined) {
        if (target.inFlight > 0) target.inFlight--
        target.errors++
      }
      this.#error(
        'timeout',
        { id: correlation, topic: pending.topic, time: pending.time, source: pending.to },
        'TimeoutError',
        `no reply from agent "${pending.to}" within ${this.#requestTimeoutMs} ms`,
      )
    }
  }

  #toolEnd(event: OmnibusEvent, now: number): void {
    const data = record(event.data)
    const toolName = text(data?.tool) ?? 'unknown'
    const errorData = record(data?.error)
    const ok = data?.success !== false && errorData === undefined
    const durationMs =
      typeof data?.durationMs === 'number' && data.durationMs >= 0 ? data.durationMs : undefined
    let tool = this.#tools.get(toolName)
    if (tool === undefined) {
      tool = {
        tool: toolName,
        calls: 0,
        errors: 0,
        windowCalls: new RateWindow(this.#latencyShape),
        windowErrors: new RateWindow(this.#latencyShape),
        durations: new WindowedHistogram(this.#latencyShape),
      }
      this.#tools.set(toolName, tool)
    }
    tool.calls++
    tool.windowCalls.add(now)
    this.#totals.toolCalls++
    if (durationMs !== undefined) tool.durations.record(durationMs, now)
    const agent = this.#touch(this.#attributed(event), event.time)
    if (!ok) {
      tool.errors++
      tool.windowErrors.add(now)
      this.#totals.toolErrors++
      agent.errors++
      this.#error(
        'tool',
        event,
        text(errorData?.name),
        text(errorData?.message) ?? `tool "${toolName}" failed`,
      )
    }
    this.#observer?.toolEnd?.(toolName, ok, durationMs)
  }

  #modelCall(event: OmnibusEvent, now: number): void {
    // `omnibus cost` marks where its replay caught up with an event on this topic: not a call.
    if (isCostMarker(event)) return
    const data = record(event.data)
    const modelName = text(data?.model) ?? 'unknown'
    const input = count(data?.inputTokens)
    const output = count(data?.outputTokens)
    const errorData = record(data?.error)
    const ok = data?.success !== false && errorData === undefined
    const agentId = this.#attributed(event)
    let model = this.#models.get(modelName)
    if (model === undefined) {
      model = {
        model: modelName,
        provider: undefined,
        calls: 0,
        inputTokens: 0,
        outputTokens: 0,
        costUsd: 0,
        priced: priceOf(modelName, this.#pricing) !== undefined,
      }
      this.#models.set(modelName, model)
    }
    model.provider = text(data?.provider) ?? model.provider
    const cost = costOf(modelName, input, output, this.#pricing) ?? 0
    model.calls++
    model.inputTokens += input
    model.outputTokens += output
    model.costUsd += cost
    const agent = this.#touch(agentId, event.time)
    agent.inputTokens += input
    agent.outputTokens += output
    agent.costUsd += cost
    const t = this.#totals
    t.modelCalls++
    t.inputTokens += input
    t.outputTokens += output
    t.costUsd += cost
    if (cost > 0) this.#addCost(event.time, modelName, agentId, cost, now)
    if (!ok) {
      agent.errors++
      this.#error(
        'model',
        event,
        text(errorData?.name),
        text(errorData?.message) ?? `call to ${modelName} failed`,
      )
    }
    const durationMs =
      typeof data?.durationMs === 'number' && data.durationMs >= 0 ? data.durationMs : undefined
    this.#observer?.modelCall?.(modelName, agentId, ok, durationMs)
  }

  #addCost(time: number, model: string, agent: string, usd: number, now: number): void {
    const index = Math.floor(time / this.#costBucketMs)
    const newest = Math.max(this.#newestCostBucket, Math.floor(now / this.#costBucketMs), index)
    if (index <= newest - this.#costBuckets) return
    if (newest > this.#newestCostBucket) {
      this.#newestCostBucket = newest
      for (const key of this.#cost.keys()) if (key <= newest - this.#costBuckets) this.#cost.delete(key)
    }
    let bucket = this.#cost.get(index)
    if (bucket === undefined) {
      bucket = { t: index * this.#costBucketMs, totalUsd: 0, byModel: new Map(), byAgent: new Map() }
      this.#cost.set(index, bucket)
    }
    bucket.totalUsd += usd
    addCapped(bucket.byModel, model, usd, this.#limits.costKeys)
    addCapped(bucket.byAgent, agent, usd, this.#limits.costKeys)
  }

  #errorEvent(event: OmnibusEvent): void {
    const data = record(event.data)
    const err = record(data?.error)
    const name = text(err?.name) ?? text(data?.name)
    const message =
      text(err?.message) ??
      text(data?.message) ??
      (typeof data?.error === 'string' ? data.error : event.topic)
    this.#touch(this.#attributed(event), event.time).errors++
    this.#error('event', event, name, message)
  }

  #deadLetter(event: OmnibusEvent): void {
    const h = event.headers
    this.#totals.deadLetters++
    const attempts = Number.parseInt(h[DLQ_HEADERS.attempts] ?? '', 10)
    const errorMessage = h[DLQ_HEADERS.errorMessage]
    this.#deadLetters.set(event.id, {
      event,
      view: {
        id: event.id,
        time: event.time,
        originalTopic: h[DLQ_HEADERS.originalTopic] ?? '',
        originalId: h[DLQ_HEADERS.originalId] ?? '',
        group: h[DLQ_HEADERS.group],
        reason: clip(h[DLQ_HEADERS.reason] ?? errorMessage ?? 'unknown'),
        attempts: Number.isFinite(attempts) ? attempts : undefined,
        state: 'pending',
      },
    })
  }

  #redriveMarker(event: OmnibusEvent): void {
    const key = event.headers[REDRIVEN_OF_HEADER]
    if (key === undefined) return
    const at = key.lastIndexOf('@')
    const id = key.slice(0, at)
    const entry = this.#deadLetters.peek(id)
    if (entry !== undefined && String(entry.view.time) === key.slice(at + 1)) this.markRedriven(id)
  }

  /** The dead letter `id` as it arrived (for redrive), or undefined when it is not (or no longer) kept. */
  deadLetter(id: string): OmnibusEvent | undefined {
    return this.#deadLetters.peek(id)?.event
  }

  /** Marks dead letter `id` redriven; false when it is not kept. */
  markRedriven(id: string): boolean {
    const entry = this.#deadLetters.peek(id)
    if (entry === undefined) return false
    entry.view = { ...entry.view, state: 'redriven' }
    return true
  }

  /** Totals since the aggregator started. */
  totals(): Totals {
    return { ...this.#totals }
  }

  /** Errors counted so far, by kind. */
  errorKinds(): Readonly<Record<ErrorKind, number>> {
    return { ...this.#errorKinds }
  }

  /** Every tracked family, busiest first, with an `(other)` row for forgotten families. */
  families(now = this.#now()): FamilyRate[] {
    const rows: FamilyRate[] = []
    let total = 0
    let rate = 0
    for (const [family, e] of this.#families.entries()) {
      const perSecond = e.rate.perSecond(now, this.#startedAt)
      rows.push({ family, perSecond, total: e.total })
      total += e.total
      rate += perSecond
    }
    rows.sort((a, b) => b.perSecond - a.perSecond || b.total - a.total)
    if (total < this.#totals.events) {
      const perSecond = Math.max(0, this.#all.perSecond(now, this.#startedAt) - rate)
      rows.push({ family: OTHER, perSecond, total: this.#totals.events - total })
    }
    return rows
  }

  /** The `limit` busiest tracked topics, then an `(other)` row for the rest when there is a rest. */
  topics(limit = this.#limits.snapshotTopics, now = this.#now()): TopicView[] {
    const rows: TopicView[] = []
    for (const [topic, e] of this.#topics.entries()) {
      rows.push({
        topic,
        total: e.total,
        perSecond: e.rate.perSecond(now, this.#startedAt),
        lastSeen: e.lastSeen,
      })
    }
    rows.sort((a, b) => b.perSecond - a.perSecond || b.total - a.total)
    const shown = rows.slice(0, limit)
    let total = 0
    let rate = 0
    let lastSeen = 0
    for (const r of shown) {
      total += r.total
      rate += r.perSecond
    }
    for (const r of rows.slice(limit)) if (r.lastSeen > lastSeen) lastSeen = r.lastSeen
    if (total < this.#totals.events) {
      shown.push({
        topic: OTHER,
        total: this.#totals.events - total,
        perSecond: Math.max(0, this.#all.perSecond(now, this.#startedAt) - rate),
        lastSeen,
      })
    }
    return shown
  }

  /** Every tracked agent, most recently seen first. */
  agents(now = this.#now()): AgentView[] {
    const rows: AgentView[] = []
    for (const a of this.#agents.values()) {
      const [p50, p99] =
        a.latency === undefined ? [undefined, undefined] : a.latency.quantiles([0.5, 0.99], now)
      rows.push({
        agentId: a.agentId,
        lastSeen: a.lastSeen,
        inFlight: a.inFlight,
        requests: a.requests,
        errors: a.errors,
        p50Ms: p50,
        p99Ms: p99,
        inputTokens: a.inputTokens,
        outputTokens: a.outputTokens,
        costUsd: a.costUsd,
      })
    }
    return rows.sort((a, b) => b.lastSeen - a.lastSeen || a.agentId.localeCompare(b.agentId))
  }

  /** Every tracked tool, most called first. */
  tools(now = this.#now()): ToolView[] {
    const rows: ToolView[] = []
    for (const t of this.#tools.values()) {
      const [p50, p95] = t.durations.quantiles([0.5, 0.95], now)
      const calls = t.windowCalls.sum(now)
      rows.push({
        tool: t.tool,
        calls: t.calls,
        errors: t.errors,
        errorRate: calls === 0 ? 0 : t.windowErrors.sum(now) / calls,
        p50Ms: p50,
        p95Ms: p95,
      })
    }
    return rows.sort((a, b) => b.calls - a.calls || a.tool.localeCompare(b.tool))
  }

  /** Every tracked model, most expensive first. */
  models(): ModelView[] {
    const rows: ModelView[] = []
    for (const m of this.#models.values()) {
      rows.push({
        model: m.model,
        provider: m.provider,
        calls: m.calls,
        inputTokens: m.inputTokens,
        outputTokens: m.outputTokens,
        costUsd: m.costUsd,
        priced: m.priced,
      })
    }
    return rows.sort((a, b) => b.costUsd - a.costUsd || b.calls - a.calls || a.model.localeCompare(b.model))
  }

  /** Cost per bucket over the kept buckets, oldest first, without gaps; empty until something cost money. */
  cost(now = this.#now()): CostPoint[] {
    if (this.#cost.size === 0) return []
    const newest = Math.max(this.#newestCostBucket, Math.floor(now / this.#costBucketMs))
    let oldest = newest
    for (const key of this.#cost.keys()) if (key < oldest) oldest = key
    oldest = Math.max(oldest, newest - this.#costBuckets + 1)
    const points: CostPoint[] = []
    for (let i = oldest; i <= newest; i++) {
      const b = this.#cost.get(i)
      points.push(
        b === undefined
          ? { t: i * this.#costBucketMs, totalUsd: 0, byModel: {}, byAgent: {} }
          : {
              t: b.t,
              totalUsd: b.totalUsd,
              byModel: Object.fromEntries(b.byModel),
              byAgent: Object.fromEntries(b.byAgent),
            },
      )
    }
    return points
  }

  /** Recent errors, newest first. */
  errors(): ErrorView[] {
    const ordered = [...this.#errors.slice(this.#errorsHead), ...this.#errors.slice(0, this.#errorsHead)]
    return ordered.reverse()
  }

  /** Kept dead letters, newest first. */
  deadLetters(): DeadLetterView[] {
    return [...this.#deadLetters.values()].map((e) => e.view).sort((a, b) => b.time - a.time)
  }

  /** Everything now, lists bounded by the snapshot limits. */
  snapshot(): Snapshot {
    const now = this.#now()
    if (now >= this.#nextSweep) this.#sweep(now)
    const rows = this.#limits.snapshotRows
    return {
      at: now,
      startedAt: this.#startedAt,
      backend: this.#backend,
      totals: this.totals(),
      families: this.families(now),
      topics: this.topics(this.#limits.snapshotTopics, now),
      agents: this.agents(now).slice(0, rows),
      tools: this.tools(now).slice(0, rows),
      models: this.models().slice(0, rows),
      cost: this.cost(now),
      errors: this.errors(),
      deadLetters: this.deadLetters(),
      alerts: this.#alerts,
    }
  }
}
