/**
 * What each kind of rule measures. An evaluator turns the snapshot (and, for windows the snapshot
 * does not hold, the events it observed) into measurements: one per label set, each saying whether
 * the rule's condition holds. The engine owns the states; evaluators only measure.
 */
import { AGENT_HEADERS, compilePattern, isErrorTopic, type OmnibusEvent } from '@omnibus/core'
import { costOf, type PricingTable } from '../cost.ts'
import type { Snapshot } from '../snapshot.ts'
import { RateWindow } from '../windows.ts'
import { formatDuration, type ResolvedRule } from './config.ts'

/** One reading of a rule for one label set. */
export interface Measurement {
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
  readonly threshold: number
  /** The condition holds. */
  readonly active: boolean
  readonly message: string
}

/** Measures one rule. */
export interface RuleEvaluator {
  readonly rule: ResolvedRule
  /** Whether measurements carry labels (one alert per tool, agent, model, consumer…). */
  readonly split: boolean
  observe?(event: OmnibusEvent, now: number): void
  measure(snapshot: Snapshot, now: number): Measurement[]
}

/** What evaluators share: the engine's start, the pricing table, the consumer lag readings. */
export interface EvaluatorContext {
  readonly startedAt: number
  readonly pricing: PricingTable
  readonly lag: LagStore
  /** Most label sets one rule keeps state for. */
  readonly maxLabelSets: number
}

function round(value: number, digits = 3): string {
  if (Number.isInteger(value)) return String(value)
  return String(Number(value.toPrecision(digits)))
}

function quote(value: string): string {
  return JSON.stringify(value)
}

/** Whether an event reports a failure (see {@link ErrorRateRule}). */
export function isErrorEvent(event: OmnibusEvent): boolean {
  const topic = event.topic
  if (isErrorTopic(topic)) return true
  if (topic === 'tool.end' || topic === 'model.call') {
    const data = event.data as { success?: unknown } | null
    return typeof data === 'object' && data !== null && data.success === false
  }
  return event.headers[AGENT_HEADERS.error] !== undefined
}

// 60 slots make the window's edge move in steps of a sixtieth of it.
function windowOf(windowMs: number): RateWindow {
  return new RateWindow({ slots: 60, slotMs: Math.max(1, Math.ceil(windowMs / 60)) })
}

function errorRate(
  rule: Extract<ResolvedRule, { kind: 'error-rate' }>,
  ctx: EvaluatorContext,
): RuleEvaluator {
  const events = windowOf(rule.windowMs)
  const errors = windowOf(rule.windowMs)
  const matches = rule.topics === '**' ? undefined : compilePattern(rule.topics)
  const scope = rule.topics === '**' ? '' : ` on ${rule.topics}`
  const span = formatDuration(rule.windowMs)
  return {
    rule,
    split: false,
    observe(event, now) {
      if (matches !== undefined && !matches(event.topic)) return
      events.add(now)
      if (isErrorEvent(event)) errors.add(now)
    },
    measure(_snapshot, now) {
      const errorCount = errors.sum(now)
      if (rule.measure === 'per-second') {
        const value = errors.perSecond(now, ctx.startedAt)
        return [
          {
            labels: {},
            value,
            threshold: rule.threshold,
            active: value > rule.threshold,
            message: `${round(value)} errors/s${scope} over ${span} (${errorCount} errors), threshold ${round(rule.threshold)}/s`,
          },
        ]
      }
      const eventCount = events.sum(now)
      const value = eventCount === 0 ? 0 : errorCount / eventCount
      const few = eventCount < rule.minEvents ? `, fewer than the ${rule.minEvents} events needed` : ''
      return [
        {
          labels: {},
          value,
          threshold: rule.threshold,
          active: eventCount >= rule.minEvents && value > rule.threshold,
          message: `error rate ${round(value * 100)}%${scope} over ${span} (${errorCount} errors in ${eventCount} events${few}), threshold ${round(rule.threshold * 100)}%`,
        },
      ]
    },
  }
}

function latency(rule: Extract<ResolvedRule, { kind: 'latency' }>): RuleEvaluator {
  const names = rule.names === undefined ? undefined : new Set(rule.names)
  const describe = (what: string, value: number): string =>
    `${rule.source} ${quote(what)} ${rule.percentile} ${round(value)} ms, threshold ${round(rule.threshold)} ms`
  return {
    rule,
    split: true,
    measure(snapshot) {
      const out: Measurement[] = []
      const add = (label: 'tool' | 'agent', id: string, value: number | undefined): void => {
        if (value === undefined || (names !== undefined && !names.has(id))) return
        out.push({
          labels: { [label]: id },
          value,
          threshold: rule.threshold,
          active: value > rule.threshold,
          message: describe(id, value),
        })
      }
      if (rule.source === 'tool') {
        for (const t of snapshot.tools) add('tool', t.tool, rule.percentile === 'p50' ? t.p50Ms : t.p95Ms)
      } else {
        for (const a of snapshot.agents)
          add('agent', a.agentId, rule.percentile === 'p50' ? a.p50Ms : a.p99Ms)
      }
      return out
    },
  }
}

function periodStart(period: 'hour' | 'day', now: number): number {
  const size = period === 'hour' ? 3_600_000 : 86_400_000
  // Epoch ms count from midnight UTC, so flooring gives UTC hours and days.
  return Math.floor(now / size) * size
}

function cost(rule: Extract<ResolvedRule, { kind: 'cost' }>, ctx: EvaluatorContext): RuleEvaluator {
  const spend = new Map<string, { labels: Record<string, string>; start: number; usd: number }>()
  const scope = `${rule.model === undefined ? '' : ` on ${quote(rule.model)}`}${rule.agent === undefined ? '' : ` by ${quote(rule.agent)}`}`
  const describe = (labels: Record<string, string>, usd: number): string => {
    const who = rule.by === undefined ? 'spent' : `${rule.by} ${quote(labels[rule.by] ?? '')} spent`
    return `${who} $${usd.toFixed(2)}${scope} this ${rule.period} (UTC), budget $${round(rule.budget, 6)}`
  }
  return {
    rule,
    split: rule.by !== undefined,
    observe(event, now) {
      if (event.topic !== 'model.call') return
      const d = event.data as Record<string, unknown> | null
      if (typeof d !== 'object' || d === null || typeof d.model !== 'string') return
      const model = d.model
      const agent = typeof d.agent === 'string' ? d.agent : event.source
      if (
        (rule.model !== undefined && model !== rule.model) ||
        (rule.agent !== undefined && agent !== rule.agent)
      )
        return
      const input = typeof d.inputTokens === 'number' ? d.inputTokens : 0
      const output = typeof d.outputTokens === 'number' ? d.outputTokens : 0
      const usd = costOf(model, input, output, ctx.pricing)
      if (usd === undefined || !(usd > 0)) return
      const labels: Record<string, string> =
        rule.by === undefined ? {} : { [rule.by]: rule.by === 'model' ? model : agent }
      const key = rule.by === undefined ? '' : (labels[rule.by] as string)
      const start = periodStart(rule.period, now)
      const entry = spend.get(key)
      if (entry === undefined) {
        if (spend.size >= ctx.maxLabelSets) return
        spend.set(key, { labels, start, usd })
      } else if (entry.start !== start) {
        entry.start = start
        entry.usd = usd
      } else {
        entry.usd += usd
      }
    },
    measure(_snapshot, now) {
      const start = periodStart(rule.period, now)
      const out: Measurement[] = []
      for (const [key, entry] of spend) {
        if (entry.start !== start) {
          spend.delete(key)
          continue
        }
        out.push({
          labels: entry.labels,
          value: entry.usd,
          threshold: rule.budget,
          active: entry.usd > rule.budget,
          message: describe(entry.labels, entry.usd),
        })
      }
      if (rule.by === undefined && out.length === 0) {
        out.push({ labels: {}, value: 0, threshold: rule.budget, active: false, message: describe({}, 0) })
      }
      return out
    },
  }
}

function deadLetters(rule: Extract<ResolvedRule, { kind: 'dead-letters' }>): RuleEvaluator {
  const window = windowOf(rule.windowMs)
  const span = formatDuration(rule.windowMs)
  return {
    rule,
    split: false,
    observe(event, now) {
      if (event.topic === rule.topic) window.add(now)
    },
    measure(_snapshot, now) {
      const count = window.sum(now)
      return [
        {
          labels: {},
          value: count,
          threshold: rule.threshold,
          active: count > rule.threshold,
          message: `${count} dead letter${count === 1 ? '' : 's'} on ${rule.topic} in the last ${span}, threshold ${rule.threshold}`,
        },
      ]
    },
  }
}

function agentSilent(
  rule: Extract<ResolvedRule, { kind: 'agent-silent' }>,
  ctx: EvaluatorContext,
): RuleEvaluator {
  // Remembered here, not only read from the snapshot: the snapshot keeps the newest agents, so
  // the one that went quiet is exactly the one that may drop out of it.
  const lastSeen = new Map<string, number>()
  const watched = rule.agents === undefined ? undefined : new Set(rule.agents)
  const limit = formatDuration(rule.afterMs)
  return {
    rule,
    split: true,
    measure(snapshot, now) {
      for (const a of snapshot.agents) {
        if (watched !== undefined && !watched.has(a.agentId)) continue
        const prev = lastSeen.get(a.agentId)
        if (prev !== undefined && prev >= a.lastSeen) continue
        // Re-inserted so the map's order is least recently seen first, which is what gets evicted.
        lastSeen.delete(a.agentId)
        lastSeen.set(a.agentId, a.lastSeen)
        if (lastSeen.size > ctx.maxLabelSets) {
          const oldest = lastSeen.keys().next().value
          if (oldest !== undefined) lastSeen.delete(oldest)
        }
      }
      const out: Measurement[] = []
      for (const agent of watched ?? lastSeen.keys()) {
        const seen = lastSeen.get(agent)
        const silence = Math.max(0, now - (seen ?? ctx.startedAt))
        out.push({
          labels: { agent },
          value: silence,
          threshold: rule.afterMs,
          active: silence > rule.afterMs,
          message:
            seen === undefined
              ? `agent ${quote(agent)} not seen since alerting started ${formatDuration(silence)} ago, limit ${limit}`
              : `agent ${quote(agent)} last seen ${formatDuration(silence)} ago, limit ${limit}`,
        })
      }
      return out
    },
  }
}

/** The latest consumer lag reading per label set, from telemetry and lag sources; bounded. */
export class LagStore {
  readonly #readings = new Map<string, { labels: Record<string, string>; lag: number; at: number }>()
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  record(labels: Record<string, string>, lag: number, at: number): void {
    if (!Number.isFinite(lag)) return
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    this.#readings.delete(key)
    this.#readings.set(key, { labels, lag, at })
    if (this.#readings.size > this.#max) {
      const oldest = this.#readings.keys().next().value
      if (oldest !== undefined) this.#readings.delete(oldest)
    }
  }

  /** Takes `metric.consumer_lag` telemetry: `{ value, tags? }`, tags becoming labels. */
  observe(event: OmnibusEvent, now: number): void {
    const d = event.data as { value?: unknown; tags?: unknown } | null
    if (typeof d !== 'object' || d === null || typeof d.value !== 'number') return
    const labels: Record<string, string> = {}
    if (typeof d.tags === 'object' && d.tags !== null) {
      for (const [k, v] of Object.entries(d.tags)) {
        if (typeof v === 'string' || typeof v === 'number') labels[k] = String(v)
      }
    }
    this.record(labels, d.value, now)
  }

  *fresh(now: number, maxAgeMs: number): Iterable<{ labels: Record<string, string>; lag: number }> {
    for (const [key, r] of this.#readings) {
      if (now - r.at > maxAgeMs) {
        // Older than any rule can use is dropped; a rule with a shorter `stale` only skips it.
        if (now - r.at > 24 * 3_600_000) this.#readings.delete(key)
        continue
      }
      yield r
    }
  }
}

function consumerLag(
  rule: Extract<ResolvedRule, { kind: 'consumer-lag' }>,
  ctx: EvaluatorContext,
): RuleEvaluator {
  return {
    rule,
    split: true,
    measure(_snapshot, now) {
      const out: Measurement[] = []
      for (const r of ctx.lag.fresh(now, rule.staleMs)) {
        if (rule.group !== undefined && r.labels.group !== rule.group) continue
        if (rule.topic !== undefined && r.labels.topic !== rule.topic) continue
        const who = Object.entries(r.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')
        out.push({
          labels: r.labels,
          value: r.lag,
          threshold: rule.threshold,
          active: r.lag > rule.threshold,
          message: `consumer lag ${round(r.lag)} messages${who === '' ? '' : ` (${who})`}, threshold ${round(rule.threshold)}`,
        })
      }
      return out
    },
  }
}

/** The evaluator of one rule. */
export function evaluatorFor(rule: ResolvedRule, ctx: EvaluatorContext): RuleEvaluator {
  switch (rule.kind) {
    case 'error-rate':
      return errorRate(rule, ctx)
    case 'latency':
      return latency(rule)
    case 'cost':
      return cost(rule, ctx)
    case 'dead-letters':
      return deadLetters(rule)
    case 'agent-silent':
      return agentSilent(rule, ctx)
    case 'consumer-lag':
      return consumerLag(rule, ctx)
  }
}

/** A short statement of what a rule watches, shown while nothing is wrong. */
export function describeRule(rule: ResolvedRule): string {
  switch (rule.kind) {
    case 'error-rate':
      return rule.measure === 'ratio'
        ? `error rate over ${round(rule.threshold * 100)}% in ${formatDuration(rule.windowMs)}`
        : `over ${round(rule.threshold)} errors/s in ${formatDuration(rule.windowMs)}`
    case 'latency':
      return `${rule.source} ${rule.percentile} over ${round(rule.threshold)} ms`
    case 'cost':
      return `spend over $${round(rule.budget, 6)} per ${rule.period}${rule.by === undefined ? '' : ` per ${rule.by}`}`
    case 'dead-letters':
      return `more than ${rule.threshold} dead letters in ${formatDuration(rule.windowMs)}`
    case 'agent-silent':
      return `an agent silent for over ${formatDuration(rule.afterMs)}`
    case 'consumer-lag':
      return `consumer lag over ${round(rule.threshold)} messages`
  }
}
