/**
 * `/metrics`: the aggregates in the Prometheus text exposition format, through a prom-client
 * `Registry`. Counters and gauges are read from the aggregator when scraped (nothing is done per
 * event for them); latency histograms are fed per observation, since a histogram cannot be rebuilt
 * from percentiles. Label values are bounded: topic family rather than topic (topics only for the
 * busiest tracked ones), and every other label (tool, agent, model) admits a fixed number of
 * distinct values, after which new ones share the `(other)` value.
 */
import { ConfigurationError } from '@omnibus/core'
import { optionNames, rejectUnknownOptions } from '@omnibus/core/backend'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { type Aggregator, type AggregatorObserver, type ErrorKind, OTHER } from './aggregator.ts'

/** Numbers of the server itself, read at each scrape. */
export interface ServerStats {
  /** SSE connections open now, by stream (`events`, `live`). */
  readonly sseClients: Readonly<Record<string, number>>
  /** Events not sent to a slow SSE client (its buffer was full). */
  readonly sseDropped: number
  /** 1 when the last health check found the backend healthy. */
  readonly backendUp: number
  /** Alert evaluations that threw. */
  readonly alertFailures: number
  /** Handler throws while ingesting (aggregator, alerts' observe, SSE fan-out). */
  readonly ingestFailures: number
}

/** Options of {@link ServeMetrics}. */
export interface ServeMetricsOptions {
  /** Registry to register in (an application's own). @default a new Registry */
  readonly registry?: Registry
  /** Also export prom-client's process metrics (CPU, memory, event loop lag, GC). @default true */
  readonly defaultMetrics?: boolean
  /** Distinct values each of the `tool`, `agent` and `model` labels may take. @default 200 */
  readonly labelValues?: number
  /** Busiest tracked topics exported with their own `topic` label. @default 1000 */
  readonly topics?: number
  /** Extra exposition text appended to the registry's, e.g. an ObservabilityBus's `prometheus()`. */
  readonly extraText?: () => string | Promise<string>
}

const OPTION_NAMES = optionNames<ServeMetricsOptions>({
  registry: true,
  defaultMetrics: true,
  labelValues: true,
  topics: true,
  extraText: true,
})

// Seconds: from 1 ms tool calls to multi-minute model calls and agent requests.
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** Admits the first `limit` distinct values of a label; later ones map onto `(other)`. */
class LabelCap {
  readonly #seen = new Set<string>()
  readonly #limit: number
  constructor(limit: number) {
    this.#limit = limit
  }
  value(v: string): string {
    if (this.#seen.has(v)) return v
    if (this.#seen.size >= this.#limit) return OTHER
    this.#seen.add(v)
    return v
  }
}

function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigurationError(`${name} must be an integer >= 1, got ${String(value)}`)
  }
  return value
}

/** The server's Prometheus registry and the observer that feeds its histograms. */
export class ServeMetrics {
  /** The prom-client registry holding every Omnibus metric of this server. */
  readonly registry: Registry
  /** Feeds the latency histograms; set on the aggregator with `setObserver`. */
  readonly observer: AggregatorObserver
  readonly #httpDuration: Histogram<'route' | 'method' | 'status'>
  readonly #extraText: (() => string | Promise<string>) | undefined

  constructor(aggregator: Aggregator, stats: () => ServerStats, options: ServeMetricsOptions = {}) {
    rejectUnknownOptions('metrics option', options, OPTION_NAMES)
    const registry = options.registry ?? new Registry()
    this.registry = registry
    this.#extraText = options.extraText
    const cap = positiveInt('metrics.labelValues', options.labelValues ?? 200)
    const topicLimit = positiveInt('metrics.topics', options.topics ?? 1000)
    const tools = new LabelCap(cap)
    const agents = new LabelCap(cap)
    const models = new LabelCap(cap)
    const registers = [registry]

    // Counters whose value is read from the aggregator at scrape time: reset, then set.
    const scraped = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      fill: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void,
    ): void => {
      new Counter<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          fill((labels, value) => {
            if (value > 0 && Number.isFinite(value)) this.inc(labels, value)
          })
        },
      })
    }
    const gauge = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      fill: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void,
      combine: (a: number, b: number) => number = (a, b) => a + b,
    ): void => {
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset()
          // Several names may share the (other) label value: combine them rather than overwrite.
          const values = new Map<string, { labels: Partial<Record<L, string>>; value: number }>()
          fill((labels, value) => {
            const v = Number.isFinite(value) ? value : 0
            const key = JSON.stringify(labels)
            const seen = values.get(key)
            values.set(key, { labels, value: seen === undefined ? v : combine(seen.value, v) })
          })
          for (const { labels, value } of values.values()) this.set(labels, value)
        },
      })
    }

    scraped(
      'omnibus_events_total',
      'Events seen, by topic family (first topic segment).',
      ['family'],
      (set) => {
        for (const f of aggregator.families()) set({ family: f.family }, f.total)
      },
    )
    scraped(
      'omnibus_topic_events_total',
      `Events seen on the busiest tracked topics (at most ${topicLimit}; the rest under topic="${OTHER}").`,
      ['topic'],
      (set) => {
        for (const t of aggregator.topics(topicLimit)) set({ topic: t.topic }, t.total)
      },
    )
    gauge(
      'omnibus_events_per_second',
      'Events per second over the rate window, by topic family.',
      ['family'],
      (set) => {
        for (const f of aggregator.families()) set({ family: f.family }, f.perSecond)
      },
    )
    scraped(
      'omnibus_tool_calls_total',
      'Tool calls ended (tool.end), by tool and outcome.',
      ['tool', 'outcome'],
      (set) => {
        for (const t of aggregator.tools()) {
          const tool = tools.value(t.tool)
          set({ tool, outcome: 'success' }, t.calls - t.errors)
          set({ tool, outcome: 'error' }, t.errors)
        }
      },
    )
    scraped('omnibus_agent_requests_total', 'Requests addressed to an agent.', ['agent'], (set) => {
      for (const a of aggregator.agents()) set({ agent: agents.value(a.agentId) }, a.requests)
    })
    scraped('omnibus_agent_errors_total', 'Errors attributed to an agent.', ['agent'], (set) => {
      for (const a of aggregator.agents()) set({ agent: agents.value(a.agentId) }, a.errors)
    })
    gauge('omnibus_agent_in_flight_requests', 'Requests to an agent not answered yet.', ['agent'], (set) => {
      for (const a of aggregator.agents()) set({ agent: agents.value(a.agentId) }, a.inFlight)
    })
    gauge(
      'omnibus_agent_last_seen_seconds',
      'When an agent last acted, Unix seconds.',
      ['agent'],
      (set) => {
        for (const a of aggregator.agents()) set({ agent: agents.value(a.agentId) }, a.lastSeen / 1000)
      },
      Math.max,
    )
    scraped(
      'omnibus_agent_tokens_total',
      'Model tokens used by an agent, by direction (input, output).',
      ['agent', 'direction'],
      (set) => {
        for (const a of aggregator.agents()) {
          const agent = agents.value(a.agentId)
          set({ agent, direction: 'input' }, a.inputTokens)
          set({ agent, direction: 'output' }, a.outputTokens)
        }
      },
    )
    scraped('omnibus_agent_cost_usd_total', 'Model cost of an agent, US dollars.', ['agent'], (set) => {
      for (const a of aggregator.agents()) set({ agent: agents.value(a.agentId) }, a.costUsd)
    })
    scraped('omnibus_model_calls_total', 'Model calls (model.call).', ['model'], (set) => {
      for (const m of aggregator.models()) set({ model: models.value(m.model) }, m.calls)
    })
    scraped(
      'omnibus_model_tokens_total',
      'Tokens by model and direction (input, output).',
      ['model', 'direction'],
      (set) => {
        for (const m of aggregator.models()) {
          const model = models.value(m.model)
          set({ model, direction: 'input' }, m.inputTokens)
          set({ model, direction: 'output' }, m.outputTokens)
        }
      },
    )
    scraped(
      'omnibus_model_cost_usd_total',
      'Model cost by the pricing table, US dollars.',
      ['model'],
      (set) => {
        for (const m of aggregator.models()) set({ model: models.value(m.model) }, m.costUsd)
      },
    )
    scraped('omnibus_dead_letters_total', 'Dead letters seen on the dead-letter topic.', [], (set) => {
      set({}, aggregator.totals().deadLetters)
    })
    gauge('omnibus_dead_letters_pending', 'Kept dead letters not redriven yet.', [], (set) => {
      set({}, aggregator.deadLetters().filter((d) => d.state === 'pending').length)
    })
    scraped(
      'omnibus_errors_total',
      'Errors seen: error events, failed tool calls and model calls, error replies, request timeouts.',
      ['kind'],
      (set) => {
        const kinds = aggregator.errorKinds()
        for (const kind of Object.keys(kinds) as ErrorKind[]) set({ kind }, kinds[kind])
      },
    )
    gauge(
      'omnibus_serve_sse_clients',
      'Server-Sent Events connections open, by stream.',
      ['stream'],
      (set) => {
        for (const [stream, n] of Object.entries(stats().sseClients)) set({ stream }, n)
      },
    )
    scraped('omnibus_serve_sse_dropped_total', 'Events not sent to a slow SSE client.', [], (set) => {
      set({}, stats().sseDropped)
    })
    gauge(
      'omnibus_serve_backend_up',
      '1 when the last health check found the backend healthy.',
      [],
      (set) => {
        set({}, stats().backendUp)
      },
    )
    scraped('omnibus_serve_alert_failures_total', 'Alert evaluations that threw.', [], (set) => {
      set({}, stats().alertFailures)
    })
    scraped('omnibus_serve_ingest_failures_total', 'Throws while ingesting an event.', [], (set) => {
      set({}, stats().ingestFailures)
    })

    const toolDuration = new Histogram<'tool' | 'outcome'>({
      name: 'omnibus_tool_duration_seconds',
      help: 'Tool call duration (tool.end durationMs), by tool and outcome.',
      labelNames: ['tool', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    const requestDuration = new Histogram<'agent' | 'outcome'>({
      name: 'omnibus_agent_request_duration_seconds',
      help: 'Agent request to reply latency, by the replying agent and outcome.',
      labelNames: ['agent', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    const modelDuration = new Histogram<'model' | 'outcome'>({
      name: 'omnibus_model_call_duration_seconds',
      help: 'Model call duration (model.call durationMs), by model and outcome.',
      labelNames: ['model', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.#httpDuration = new Histogram<'route' | 'method' | 'status'>({
      name: 'omnibus_serve_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (to the first byte for streams), by route.',
      labelNames: ['route', 'method', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    const outcome = (ok: boolean): string => (ok ? 'success' : 'error')
    this.observer = {
      toolEnd(tool, ok, durationMs) {
        if (durationMs !== undefined)
          toolDuration.observe({ tool: tools.value(tool), outcome: outcome(ok) }, durationMs / 1000)
      },
      reply(agent, ok, latencyMs) {
        requestDuration.observe({ agent: agents.value(agent), outcome: outcome(ok) }, latencyMs / 1000)
      },
      modelCall(model, _agent, ok, durationMs) {
        if (durationMs !== undefined)
          modelDuration.observe({ model: models.value(model), outcome: outcome(ok) }, durationMs / 1000)
      },
    }
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry })
  }

  /** Records the time one HTTP request took; `route` is a route name, never a raw path. */
  observeHttp(route: string, method: string, status: number, seconds: number): void {
    this.#httpDuration.observe({ route, method, status: String(status) }, seconds)
  }

  /** The content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType
  }

  /** The exposition text: the registry's, then the extra text. */
  async text(): Promise<string> {
    const own = await this.registry.metrics()
    if (this.#extraText === undefined) return own
    const extra = await this.#extraText()
    if (extra.length === 0) return own
    return `${own.endsWith('\n') ? own : `${own}\n`}${extra.endsWith('\n') ? extra : `${extra}\n`}`
  }
}
