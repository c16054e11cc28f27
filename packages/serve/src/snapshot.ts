/**
 * The shape of what `omnibus serve` knows at one moment: the rolling aggregates the dashboard
 * draws, `omnibus top` prints, `/api/snapshot` returns and alert rules read. Every list is bounded
 * (the newest or the busiest entries), so a snapshot stays small whatever the traffic.
 */

/** The backend the server watches, as its last health check saw it. */
export interface BackendView {
  readonly name: string
  readonly healthy: boolean
  readonly latencyMs: number | undefined
  /** Why it is unhealthy, or what the check saw. */
  readonly detail: string | undefined
  /** Epoch ms of the last health check. */
  readonly checkedAt: number
}

/** Totals since the server started. */
export interface Totals {
  readonly events: number
  readonly errors: number
  readonly deadLetters: number
  readonly toolCalls: number
  readonly toolErrors: number
  readonly requests: number
  readonly replies: number
  readonly modelCalls: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number
}

/** Traffic of one topic family (the first segment of a topic: `tool`, `agent`, `metric`, …). */
export interface FamilyRate {
  readonly family: string
  /** Events per second over the last rate window. */
  readonly perSecond: number
  readonly total: number
}

/** One concrete topic. */
export interface TopicView {
  readonly topic: string
  readonly total: number
  readonly perSecond: number
  readonly lastSeen: number
}

/** An agent seen in the traffic (as sender, recipient, source of telemetry, or by presence). */
export interface AgentView {
  readonly agentId: string
  readonly lastSeen: number
  /** Requests to this agent not answered yet (bounded by the request timeout the server assumes). */
  readonly inFlight: number
  readonly requests: number
  readonly errors: number
  /** Request → reply latency of requests this agent answered, over the latency window. */
  readonly p50Ms: number | undefined
  readonly p99Ms: number | undefined
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number
}

/** One tool, from `tool.start`/`tool.end` telemetry. */
export interface ToolView {
  readonly tool: string
  readonly calls: number
  readonly errors: number
  /** errors / calls over the window, 0 when there were no calls. */
  readonly errorRate: number
  readonly p50Ms: number | undefined
  readonly p95Ms: number | undefined
}

/** One model, from model-call telemetry. */
export interface ModelView {
  readonly model: string
  readonly provider: string | undefined
  readonly calls: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number
  /** False when the pricing table has no price for the model (its cost counts as 0). */
  readonly priced: boolean
}

/** Cost spent in one time bucket, by model and by agent. */
export interface CostPoint {
  /** Start of the bucket, epoch ms. */
  readonly t: number
  readonly totalUsd: number
  readonly byModel: Readonly<Record<string, number>>
  readonly byAgent: Readonly<Record<string, number>>
}

/** A recent error event. */
export interface ErrorView {
  readonly id: string
  readonly topic: string
  readonly time: number
  readonly source: string
  readonly name: string | undefined
  readonly message: string
}

/** A dead letter the server has seen on the dead-letter topic. */
export interface DeadLetterView {
  readonly id: string
  readonly time: number
  readonly originalTopic: string
  readonly originalId: string
  readonly group: string | undefined
  readonly reason: string
  readonly attempts: number | undefined
  readonly state: 'pending' | 'redriven'
}

/** An alert rule's current state. */
export interface AlertView {
  readonly name: string
  readonly severity: 'info' | 'warning' | 'critical'
  readonly state: 'inactive' | 'pending' | 'firing' | 'resolved'
  /** Epoch ms the rule entered its current state. */
  readonly since: number
  /** The value the rule last measured, when it measures one. */
  readonly value: number | undefined
  readonly message: string
  /** What this alert is about, for rules with one alert per tool, agent, model or consumer (`{ tool: 'search' }`). */
  readonly labels?: Readonly<Record<string, string>>
  /** The rule's threshold, in the unit of `value`. */
  readonly threshold?: number | undefined
}

/** Everything the server knows now. */
export interface Snapshot {
  /** Epoch ms the snapshot was taken. */
  readonly at: number
  readonly startedAt: number
  readonly backend: BackendView
  readonly totals: Totals
  readonly families: readonly FamilyRate[]
  readonly topics: readonly TopicView[]
  readonly agents: readonly AgentView[]
  readonly tools: readonly ToolView[]
  readonly models: readonly ModelView[]
  readonly cost: readonly CostPoint[]
  readonly errors: readonly ErrorView[]
  readonly deadLetters: readonly DeadLetterView[]
  readonly alerts: readonly AlertView[]
}
