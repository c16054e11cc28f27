/**
 * The vocabulary of alerting: rules as a user declares them (in code or in a JSON/YAML file), the
 * notification every channel receives, and the channel interface.
 */

/** How bad a firing alert is. */
export type AlertSeverity = 'info' | 'warning' | 'critical'

/** A length of time: milliseconds as a number, or a string such as `"250ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"1d"`. */
export type Duration = number | string

/** Fields every rule has, whatever its kind. */
export interface AlertRuleBase {
  /** Unique among the rules; names the alert in notifications and the `alert.<name>` topic. */
  readonly name: string
  /** @default 'warning' */
  readonly severity?: AlertSeverity
  /** How long the condition must hold before the alert fires (pending until then). @default 0 */
  readonly for?: Duration
  /**
   * Least time between two firing notifications of the same rule and labels: an alert that
   * resolves and fires again sooner is shown firing but notified only once the cooldown has passed
   * (and only if it is still firing then). @default '5m'
   */
  readonly cooldown?: Duration
  /**
   * The notification text instead of the generated one. `{value}`, `{threshold}`, `{rule}`,
   * `{severity}` and every label (`{agent}`, `{tool}`, …) are replaced.
   */
  readonly message?: string
  /** Names of the channels that receive this rule's notifications. @default every channel */
  readonly channels?: readonly string[]
}

/**
 * Errors over a sliding window. An event is an error when its topic is an error topic
 * (`error`, `error.*`, `*.error`), when it is a `tool.end` or `model.call` with `success: false`,
 * or when it is an agent reply carrying the error header.
 */
export interface ErrorRateRule extends AlertRuleBase {
  readonly kind: 'error-rate'
  /** `ratio`: errors ÷ events (0.05 = 5 %); `per-second`: errors per second. @default 'ratio' */
  readonly measure?: 'ratio' | 'per-second'
  /** Fires when the measure is above this. */
  readonly threshold: number
  /** @default '5m' */
  readonly window?: Duration
  /** Pattern of the topics counted at all (errors and events alike), e.g. `tool.end`. @default '**' */
  readonly topics?: string
  /** With `ratio`: fewer events than this in the window never fire (one error in one event is not 100 %). @default 10 */
  readonly minEvents?: number
}

/** A latency percentile from the snapshot over a threshold, one alert per tool or agent. */
export interface LatencyRule extends AlertRuleBase {
  readonly kind: 'latency'
  /** `tool`: tool call durations (p50, p95); `agent`: request → reply latency of the agent (p50, p99). */
  readonly source: 'tool' | 'agent'
  readonly percentile: 'p50' | 'p95' | 'p99'
  /** Milliseconds; fires when the percentile is above it. */
  readonly threshold: number
  /** Only these tools or agents. @default all */
  readonly names?: readonly string[]
}

/** Spend in the current UTC hour or day over a budget, from `model.call` telemetry and the pricing table. */
export interface CostRule extends AlertRuleBase {
  readonly kind: 'cost'
  /** US dollars; fires when the period's spend is above it. */
  readonly budget: number
  readonly period: 'hour' | 'day'
  /** One alert (and one budget) per model or per agent. @default one total */
  readonly by?: 'model' | 'agent'
  /** Only calls of this model. */
  readonly model?: string
  /** Only calls made by this agent (`data.agent`, else the event's source). */
  readonly agent?: string
}

/** Dead letters seen on the dead-letter topic within a window. */
export interface DeadLetterRule extends AlertRuleBase {
  readonly kind: 'dead-letters'
  /** Fires when more than this many arrived within the window; 0 = any dead letter. @default 0 */
  readonly threshold?: number
  /** @default '5m' */
  readonly window?: Duration
  /** @default 'omnibus.deadletter' */
  readonly topic?: string
}

/** An agent not seen for longer than `after`. */
export interface AgentSilentRule extends AlertRuleBase {
  readonly kind: 'agent-silent'
  readonly after: Duration
  /**
   * Agents that must be present: each one that is silent (or was never seen since the server
   * started) fires. Without it, every agent seen at least once is watched.
   */
  readonly agents?: readonly string[]
}

/**
 * Consumer lag above a threshold, from `metric.consumer_lag` gauges in the telemetry
 * (`value` = messages behind; tags such as `group` and `topic` become labels) or from a
 * {@link ConsumerLagSource} given to the engine.
 */
export interface ConsumerLagRule extends AlertRuleBase {
  readonly kind: 'consumer-lag'
  /** Messages; fires when the lag is above it. */
  readonly threshold: number
  /** Only this consumer group. */
  readonly group?: string
  /** Only this topic. */
  readonly topic?: string
  /** A reading older than this is ignored (the consumer stopped reporting). @default '5m' */
  readonly stale?: Duration
}

/** Any alert rule. */
export type AlertRule =
  | ErrorRateRule
  | LatencyRule
  | CostRule
  | DeadLetterRule
  | AgentSilentRule
  | ConsumerLagRule

/** The kinds of rule. */
export type AlertRuleKind = AlertRule['kind']

/**
 * What a channel is told when an alert fires or resolves. The webhook's generic format posts it as
 * it is; the bus publishes it as the data of `alert.<name>`.
 */
export interface AlertNotification {
  readonly status: 'firing' | 'resolved'
  readonly rule: string
  readonly severity: AlertSeverity
  readonly labels: Readonly<Record<string, string>>
  /** What the rule measured (for `resolved`, the last value measured while it was true). */
  readonly value: number
  readonly threshold: number
  readonly message: string
  /** ISO 8601: when the condition became true. */
  readonly startsAt: string
  /** ISO 8601 when resolved, null while firing. */
  readonly endsAt: string | null
  /** The de-duplication key (rule and labels): the same for the firing and the resolved notification. */
  readonly key: string
}

/** Where notifications go. `send` may reject: the engine counts the failure and moves on. */
export interface AlertChannel {
  /** Unique among the engine's channels; rules route by it. */
  readonly name: string
  send(notification: AlertNotification): Promise<void>
}

/** A webhook channel as declared in a rules file. */
export interface WebhookChannelSpec {
  readonly type: 'webhook'
  /** @default 'webhook', then 'webhook-2', … */
  readonly name?: string
  /** `${VAR}` is replaced by the environment variable (keep secret URLs out of the file). */
  readonly url: string
  /** `json`: the {@link AlertNotification}; `slack`: a Slack incoming-webhook message. @default 'json' */
  readonly format?: 'json' | 'slack'
  /** Per attempt. @default '5s' */
  readonly timeout?: Duration
  /** Attempts after the first on a network error, a 429 or a 5xx. @default 2 */
  readonly retries?: number
  /** Extra request headers (`${VAR}` is replaced as in `url`). */
  readonly headers?: Readonly<Record<string, string>>
}

/** The log channel as declared in a rules file: the server's logger. */
export interface LogChannelSpec {
  readonly type: 'log'
  /** @default 'log' */
  readonly name?: string
}

/** The bus channel as declared in a rules file: `alert.<name>` on the watched backend. */
export interface BusChannelSpec {
  readonly type: 'bus'
  /** @default 'bus' */
  readonly name?: string
  /** The events' `source`. @default 'omnibus-serve' */
  readonly source?: string
}

/** A channel declared as data (in a file, or in code). */
export type AlertChannelSpec = WebhookChannelSpec | LogChannelSpec | BusChannelSpec

/** Rules and channels, as a rules file holds them. */
export interface AlertConfig {
  readonly rules: readonly AlertRule[]
  /** @default a log channel and a bus channel */
  readonly channels?: readonly AlertChannelSpec[]
}

/** One consumer lag reading. */
export interface ConsumerLagReading {
  /** Messages behind. */
  readonly lag: number
  /** Identify the consumer: usually `group` and `topic`. */
  readonly labels: Readonly<Record<string, string>>
}

/**
 * Something that can tell consumer lag (a backend's admin API). The engine polls it at most every
 * `intervalMs`, without waiting for it inside an evaluation.
 */
export interface ConsumerLagSource {
  readonly name: string
  /** @default 15000 */
  readonly intervalMs?: number
  read(): Promise<readonly ConsumerLagReading[]>
}
