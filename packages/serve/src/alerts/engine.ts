/**
 * The alert engine: rules measured on every evaluation, a state per rule and label set
 * (inactive → pending → firing → resolved → inactive), and notifications to channels on firing
 * and on resolved. It is what the server drives through {@link AlertsHook}; an application can
 * also drive it itself.
 */
import { ConfigurationError, type EventBackend, type Logger, type OmnibusEvent } from '@omnibus/core'
import type { Registry } from 'prom-client'
import type { AlertsContext, AlertsHook } from '../alerts-hook.ts'
import { DEFAULT_PRICING, type PricingTable } from '../cost.ts'
import type { AlertView, Snapshot } from '../snapshot.ts'
import { busChannel, logChannel, webhookChannel } from './channels.ts'
import { parseDuration, type ResolvedRule, resolveChannelSpec, resolveRules } from './config.ts'
import { registerAlertMetrics } from './metrics.ts'
import { describeRule, evaluatorFor, LagStore, type Measurement, type RuleEvaluator } from './rules.ts'
import type {
  AlertChannel,
  AlertChannelSpec,
  AlertNotification,
  AlertRule,
  ConsumerLagSource,
  Duration,
} from './types.ts'

/** Options of {@link AlertEngine}. */
export interface AlertEngineOptions {
  /** Checked at construction (a {@link ConfigurationError} names the rule and field). */
  readonly rules: readonly AlertRule[]
  /**
   * Channels as objects ({@link webhookChannel}, {@link logChannel}, {@link busChannel}, your own)
   * or as specs like a rules file holds. @default a log channel, and a bus channel when there is a backend
   */
  readonly channels?: readonly (AlertChannel | AlertChannelSpec)[]
  /** Where the bus channel publishes. @default the server's backend, given at start */
  readonly backend?: EventBackend
  /** The log channel's logger, and where delivery failures are reported. @default the server's, else the console */
  readonly logger?: Logger
  /** @default the server's clock, else Date.now */
  readonly now?: () => number
  /** Prices for cost rules. @default DEFAULT_PRICING */
  readonly pricing?: PricingTable
  /** Polled for consumer lag, besides `metric.consumer_lag` telemetry. */
  readonly lagSources?: readonly ConsumerLagSource[]
  /** How long a resolved alert stays shown as resolved before it is inactive. @default '5m' */
  readonly resolvedRetention?: Duration
  /** Most alerts (label sets) one rule tracks at once; more are not tracked, and counted. @default 1000 */
  readonly maxAlertsPerRule?: number
  /** Notifications in delivery on one channel at once; more are dropped, and counted. @default 100 */
  readonly maxInFlightPerChannel?: number
}

/** Delivery counts of one channel. */
export interface AlertChannelStats {
  readonly name: string
  readonly sent: number
  readonly failed: number
  /** Not attempted because too many were in delivery already. */
  readonly dropped: number
  readonly inFlight: number
}

/** Counters for `/metrics`. */
export interface AlertStats {
  readonly evaluations: number
  readonly firing: number
  readonly pending: number
  /** Firing alerts not notified (yet) because of their rule's cooldown. */
  readonly suppressed: number
  /** Label sets not tracked because a rule had `maxAlertsPerRule` already. */
  readonly untracked: number
  readonly lagSourceFailures: number
  readonly channels: readonly AlertChannelStats[]
  /** Firing and pending alerts (label sets) of each rule. */
  readonly rules: ReadonlyArray<{
    readonly name: string
    readonly severity: AlertView['severity']
    readonly firing: number
    readonly pending: number
  }>
}

type State = AlertView['state']

interface Series {
  readonly key: string
  readonly labels: Readonly<Record<string, string>>
  state: State
  since: number
  /** When the condition last became true. */
  startsAt: number
  value: number
  threshold: number
  message: string
  /** A firing notification went out for the current episode. */
  notified: boolean
  suppressedCounted: boolean
  lastNotifiedAt: number | undefined
}

interface ChannelEntry {
  readonly channel: AlertChannel
  sent: number
  failed: number
  dropped: number
  inFlight: number
}

const STATE_ORDER: Readonly<Record<State, number>> = { firing: 0, pending: 1, resolved: 2, inactive: 3 }
const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 } as const

// The console logger of core drops `info`, which is where resolved alerts are logged.
const defaultLogger: Logger = {
  debug() {},
  info: (message, fields) => console.info(`[omnibus] ${message}`, fields ?? ''),
  warn: (message, fields) => console.warn(`[omnibus] ${message}`, fields ?? ''),
  error: (message, fields) => console.error(`[omnibus] ${message}`, fields ?? ''),
}

function labelKey(rule: string, labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels)
  if (entries.length === 0) return rule
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `${rule}{${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`
}

function fill(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([A-Za-z0-9_.-]+)\}/g, (whole, name: string) => values[name] ?? whole)
}

function isChannel(value: AlertChannel | AlertChannelSpec): value is AlertChannel {
  return typeof (value as AlertChannel).send === 'function'
}

/**
 * Evaluates alert rules and notifies channels. Feed it events with {@link observe} (error rate,
 * cost, dead letters, consumer lag count them) and call {@link evaluate} with a snapshot on a
 * timer; it returns every rule's state for the dashboard. Notifications are sent in the
 * background: a slow or failing channel never delays or breaks an evaluation.
 */
export class AlertEngine implements AlertsHook {
  readonly #rules: readonly ResolvedRule[]
  readonly #evaluators: readonly RuleEvaluator[]
  readonly #observers: readonly RuleEvaluator[]
  readonly #series = new Map<string, Map<string, Series>>()
  readonly #lag: LagStore
  readonly #watchesLag: boolean
  readonly #lagSources: ReadonlyArray<{ source: ConsumerLagSource; next: number; busy: boolean }>
  readonly #channelInputs: readonly (AlertChannel | AlertChannelSpec)[] | undefined
  readonly #options: AlertEngineOptions
  readonly #retentionMs: number
  readonly #maxSeries: number
  readonly #maxInFlight: number
  readonly #pending = new Set<Promise<void>>()
  readonly #registries = new WeakSet<Registry>()
  #channels: ChannelEntry[] | undefined
  #backend: EventBackend | undefined
  #logger: Logger
  #now: () => number
  readonly #ctx: {
    startedAt: number
    pricing: PricingTable
    readonly lag: LagStore
    readonly maxLabelSets: number
  }
  #evaluations = 0
  #suppressed = 0
  #untracked = 0
  #lagFailures = 0

  constructor(options: AlertEngineOptions) {
    if (options === null || typeof options !== 'object') {
      throw new ConfigurationError('AlertEngine needs options with a "rules" list')
    }
    this.#options = options
    this.#rules = resolveRules(options.rules)
    this.#backend = options.backend
    this.#logger = options.logger ?? defaultLogger
    this.#now = options.now ?? Date.now
    const retention = parseDuration(options.resolvedRetention ?? 300_000)
    if (retention === undefined) {
      throw new ConfigurationError(
        `AlertEngine: "resolvedRetention" must be a duration, got ${String(options.resolvedRetention)}`,
      )
    }
    this.#retentionMs = retention
    this.#maxSeries = positiveInteger('maxAlertsPerRule', options.maxAlertsPerRule, 1000)
    this.#maxInFlight = positiveInteger('maxInFlightPerChannel', options.maxInFlightPerChannel, 100)
    this.#lag = new LagStore(this.#maxSeries)
    this.#watchesLag = this.#rules.some((r) => r.kind === 'consumer-lag')
    this.#lagSources = (options.lagSources ?? []).map((source) => ({ source, next: 0, busy: false }))
    this.#ctx = {
      startedAt: this.#now(),
      pricing: options.pricing ?? DEFAULT_PRICING,
      lag: this.#lag,
      maxLabelSets: this.#maxSeries,
    }
    this.#evaluators = this.#rules.map((rule) => evaluatorFor(rule, this.#ctx))
    this.#observers = this.#evaluators.filter((e) => e.observe !== undefined)
    if (options.channels !== undefined && !Array.isArray(options.channels)) {
      throw new ConfigurationError(`AlertEngine: "channels" must be a list, got ${typeof options.channels}`)
    }
    // Specs are checked now, so a bad webhook URL fails at construction, not at the first alert.
    this.#channelInputs = options.channels?.map((c, i) => (isChannel(c) ? c : resolveChannelSpec(c, i)))
    const names =
      this.#channelInputs === undefined ? new Set(['log', 'bus']) : channelNames(this.#channelInputs)
    for (const rule of this.#rules) {
      for (const name of rule.channels ?? []) {
        if (!names.has(name)) {
          throw new ConfigurationError(
            `alert rule "${rule.name}": "channels" names "${name}", which is not a channel; the channels are ${[...names].join(', ')}`,
            { code: 'INVALID_ALERT_CONFIG' },
          )
        }
      }
    }
  }

  /** Takes the server's backend, logger and clock where the options did not set them. */
  start(ctx: AlertsContext): void {
    this.#backend = this.#options.backend ?? ctx.backend
    if (this.#options.logger === undefined) this.#logger = ctx.logger
    if (this.#options.now === undefined) this.#now = ctx.now
    // "Since alerting started" is when the server starts the engine, on the server's clock.
    this.#ctx.startedAt = this.#now()
    // Cost rules price tokens as the server does, unless the engine was given its own table.
    if (this.#options.pricing === undefined) this.#ctx.pricing = ctx.pricing
    this.registerMetrics(ctx.metrics)
    this.#channels = undefined
    this.#resolveChannels()
  }

  /** Counts one event for the rules that need more than the snapshot holds. Cheap; never throws. */
  observe(event: OmnibusEvent): void {
    if (this.#observers.length === 0 && !this.#watchesLag) return
    const now = this.#now()
    for (const evaluator of this.#observers) evaluator.observe?.(event, now)
    if (this.#watchesLag && event.topic === 'metric.consumer_lag') this.#lag.observe(event, now)
  }

  /**
   * Measures every rule against `snapshot`, moves the alerts' states, starts the notifications
   * that are due (without waiting for them), and returns every rule's state: firing first.
   */
  evaluate(snapshot: Snapshot): AlertView[] {
    const now = this.#now()
    this.#evaluations++
    this.#pollLag(now)
    const views: AlertView[] = []
    for (const evaluator of this.#evaluators) {
      const rule = evaluator.rule
      let series = this.#series.get(rule.name)
      if (series === undefined) {
        series = new Map()
        this.#series.set(rule.name, series)
      }
      const measurements = evaluator.measure(snapshot, now)
      const seen = new Set<string>()
      let unsplit: Measurement | undefined
      for (const m of measurements) {
        const key = labelKey(rule.name, m.labels)
        seen.add(key)
        if (!evaluator.split) unsplit = m
        let s = series.get(key)
        if (s === undefined) {
          if (!m.active) continue
          if (series.size >= this.#maxSeries) {
            this.#untracked++
            continue
          }
          s = {
            key,
            labels: m.labels,
            state: 'inactive',
            since: now,
            startsAt: now,
            value: m.value,
            threshold: m.threshold,
            message: m.message,
            notified: false,
            suppressedCounted: false,
            lastNotifiedAt: undefined,
          }
          series.set(key, s)
        }
        this.#step(rule, s, m, now)
      }
      for (const [key, s] of series) {
        if (!seen.has(key)) this.#step(rule, s, undefined, now)
        // An inactive alert is forgotten once its cooldown no longer needs remembering.
        if (
          s.state === 'inactive' &&
          (s.lastNotifiedAt === undefined || now - s.lastNotifiedAt >= rule.cooldownMs)
        ) {
          series.delete(key)
        }
      }
      let shown = 0
      for (const s of series.values()) {
        if (s.state === 'inactive') continue
        shown++
        views.push({
          name: rule.name,
          severity: rule.severity,
          state: s.state,
          since: s.since,
          value: s.value,
          message: this.#text(rule, s.labels, s.value, s.threshold, s.message),
          labels: s.labels,
          threshold: s.threshold,
        })
      }
      if (shown === 0) {
        views.push({
          name: rule.name,
          severity: rule.severity,
          state: 'inactive',
          since: this.#ctx.startedAt,
          value: unsplit?.value,
          message: unsplit === undefined ? `OK: no ${describeRule(rule)}` : `OK: ${unsplit.message}`,
          labels: {},
          threshold: unsplit?.threshold,
        })
      }
    }
    views.sort(
      (a, b) =>
        STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
        SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    )
    return views
  }

  /** Delivery and state counters, for `/metrics`. */
  stats(): AlertStats {
    let firing = 0
    let pending = 0
    const rules = this.#rules.map((rule) => {
      let ruleFiring = 0
      let rulePending = 0
      for (const s of this.#series.get(rule.name)?.values() ?? []) {
        if (s.state === 'firing') ruleFiring++
        else if (s.state === 'pending') rulePending++
      }
      firing += ruleFiring
      pending += rulePending
      return { name: rule.name, severity: rule.severity, firing: ruleFiring, pending: rulePending }
    })
    return {
      rules,
      evaluations: this.#evaluations,
      firing,
      pending,
      suppressed: this.#suppressed,
      untracked: this.#untracked,
      lagSourceFailures: this.#lagFailures,
      channels: this.#resolveChannels().map((c) => ({
        name: c.channel.name,
        sent: c.sent,
        failed: c.failed,
        dropped: c.dropped,
        inFlight: c.inFlight,
      })),
    }
  }

  /**
   * Registers the alert metrics in a prom-client registry (the server's `metrics.registry`), read
   * from {@link stats} at each scrape: `omnibus_serve_alerts{rule,severity,state}`,
   * `omnibus_serve_alert_notifications_total{channel,outcome}` (sent, failed, dropped),
   * `omnibus_serve_alert_notifications_held_total` (by cooldown), `omnibus_serve_alert_evaluations_total`.
   */
  registerMetrics(registry: Registry): void {
    // The server registers them when it starts the engine; a second call for the same registry
    // (the application did it too) must not make prom-client refuse a duplicate metric.
    if (this.#registries.has(registry)) return
    this.#registries.add(registry)
    registerAlertMetrics(() => this.stats(), registry)
  }

  /** Resolves when every notification started so far is delivered or has failed. */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
  }

  /** Waits up to `timeoutMs` for notifications in delivery. @param timeoutMs @default 5000 */
  async close(timeoutMs = 5000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
      timer.unref?.()
    })
    await Promise.race([this.flush(), deadline])
    clearTimeout(timer)
  }

  #step(rule: ResolvedRule, s: Series, m: Measurement | undefined, now: number): void {
    if (m !== undefined) {
      s.value = m.value
      s.threshold = m.threshold
      s.message = m.message
    }
    if (m?.active === true) {
      if (s.state === 'inactive' || s.state === 'resolved') {
        s.state = 'pending'
        s.since = now
        s.startsAt = now
        s.notified = false
        s.suppressedCounted = false
      }
      if (s.state === 'pending' && now - s.since >= rule.forMs) {
        s.state = 'firing'
        s.since = now
      }
      if (s.state === 'firing' && !s.notified) {
        if (s.lastNotifiedAt === undefined || now - s.lastNotifiedAt >= rule.cooldownMs) {
          s.notified = true
          s.lastNotifiedAt = now
          this.#notify(rule, s, 'firing', now)
        } else if (!s.suppressedCounted) {
          s.suppressedCounted = true
          this.#suppressed++
        }
      }
      return
    }
    if (s.state === 'pending') {
      s.state = 'inactive'
      s.since = now
    } else if (s.state === 'firing') {
      s.state = 'resolved'
      s.since = now
      if (s.notified) this.#notify(rule, s, 'resolved', now)
    } else if (s.state === 'resolved' && now - s.since >= this.#retentionMs) {
      s.state = 'inactive'
      s.since = now
    }
  }

  #text(
    rule: ResolvedRule,
    labels: Readonly<Record<string, string>>,
    value: number,
    threshold: number,
    generated: string,
  ): string {
    if (rule.message === undefined) return generated
    return fill(rule.message, {
      ...labels,
      rule: rule.name,
      severity: rule.severity,
      value: String(Number.isInteger(value) ? value : Number(value.toPrecision(4))),
      threshold: String(threshold),
    })
  }

  #notify(rule: ResolvedRule, s: Series, status: 'firing' | 'resolved', now: number): void {
    const notification: AlertNotification = {
      status,
      rule: rule.name,
      severity: rule.severity,
      labels: s.labels,
      value: s.value,
      threshold: s.threshold,
      message: this.#text(rule, s.labels, s.value, s.threshold, s.message),
      startsAt: new Date(s.startsAt).toISOString(),
      endsAt: status === 'resolved' ? new Date(now).toISOString() : null,
      key: s.key,
    }
    for (const entry of this.#resolveChannels()) {
      if (rule.channels !== undefined && !rule.channels.includes(entry.channel.name)) continue
      this.#deliver(entry, notification)
    }
  }

  #deliver(entry: ChannelEntry, n: AlertNotification): void {
    if (entry.inFlight >= this.#maxInFlight) {
      entry.dropped++
      this.#logger.warn(
        `alert channel "${entry.channel.name}" has ${entry.inFlight} notifications in delivery; dropped the ${n.status} notification of ${n.key}`,
      )
      return
    }
    entry.inFlight++
    const delivery = Promise.resolve()
      .then(() => entry.channel.send(n))
      .then(
        () => {
          entry.sent++
        },
        (err: unknown) => {
          entry.failed++
          this.#logger.warn(
            `alert channel "${entry.channel.name}" could not deliver the ${n.status} notification of ${n.key}: ${err instanceof Error ? err.message : String(err)}`,
          )
        },
      )
      .finally(() => {
        entry.inFlight--
        this.#pending.delete(delivery)
      })
    this.#pending.add(delivery)
  }

  #resolveChannels(): ChannelEntry[] {
    if (this.#channels !== undefined) return this.#channels
    const inputs: readonly (AlertChannel | AlertChannelSpec)[] =
      this.#channelInputs ??
      (this.#backend === undefined ? [{ type: 'log' }] : [{ type: 'log' }, { type: 'bus' }])
    const names = channelNames(inputs)
    const named = [...names]
    const channels = inputs.map((spec, i): AlertChannel => {
      if (isChannel(spec)) return spec
      const name = named[i] as string
      if (spec.type === 'log') return logChannel(this.#logger, { name })
      if (spec.type === 'webhook') return webhookChannel({ ...spec, name })
      if (this.#backend === undefined) {
        throw new ConfigurationError(
          `alert channel "${name}" publishes on the bus, but there is no backend: pass "backend" to the AlertEngine, or start it from a server`,
          { code: 'INVALID_ALERT_CONFIG' },
        )
      }
      return busChannel(this.#backend, spec.source === undefined ? { name } : { name, source: spec.source })
    })
    this.#channels = channels.map((channel) => ({ channel, sent: 0, failed: 0, dropped: 0, inFlight: 0 }))
    return this.#channels
  }

  #pollLag(now: number): void {
    for (const entry of this.#lagSources) {
      if (entry.busy || now < entry.next) continue
      entry.busy = true
      entry.next = now + (entry.source.intervalMs ?? 15_000)
      const poll = Promise.resolve()
        .then(() => entry.source.read())
        .then(
          (readings) => {
            const at = this.#now()
            for (const r of readings) this.#lag.record({ ...r.labels }, r.lag, at)
          },
          (err: unknown) => {
            this.#lagFailures++
            this.#logger.warn(
              `consumer lag source "${entry.source.name}" failed: ${err instanceof Error ? err.message : String(err)}`,
            )
          },
        )
        .finally(() => {
          entry.busy = false
          this.#pending.delete(poll)
        })
      this.#pending.add(poll)
    }
  }
}

function positiveInteger(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1) {
    throw new ConfigurationError(`AlertEngine: "${field}" must be an integer ≥ 1, got ${String(value)}`)
  }
  return value
}

// Names in order: a spec without one is named after its type (`webhook`, `webhook-2`, …).
function channelNames(inputs: readonly (AlertChannel | AlertChannelSpec)[]): Set<string> {
  const names = new Set<string>()
  inputs.forEach((input, i) => {
    if (input === null || typeof input !== 'object') {
      throw new ConfigurationError(
        `alert channel channels[${i}] must be a channel or a channel spec, got ${String(input)}`,
        {
          code: 'INVALID_ALERT_CONFIG',
        },
      )
    }
    let name = input.name
    if (name === undefined && !isChannel(input)) {
      const type = (input as { type?: unknown }).type
      const base = typeof type === 'string' ? type : 'channel'
      name = base
      for (let n = 2; names.has(name); n++) name = `${base}-${n}`
    }
    if (typeof name !== 'string' || name.length === 0) {
      throw new ConfigurationError(`alert channel channels[${i}] needs a non-empty name`, {
        code: 'INVALID_ALERT_CONFIG',
      })
    }
    if (names.has(name)) {
      throw new ConfigurationError(`two alert channels are named "${name}"; give each a unique name`, {
        code: 'INVALID_ALERT_CONFIG',
      })
    }
    names.add(name)
  })
  return names
}
