/**
 * @omnibus/serve — what `omnibus serve` runs, as an HTTP handler an application can mount in its
 * own server: health probes, Prometheus metrics, Server-Sent Events of matching events, JSON for the
 * dashboard, the dashboard itself, alerts and cost, from rolling aggregates of the traffic it sees.
 */

export {
  Aggregator,
  type AggregatorLimits,
  type AggregatorObserver,
  type AggregatorOptions,
  type ErrorKind,
  OTHER,
  REDRIVEN_OF_HEADER,
  redrivenTopic,
} from './aggregator.ts'
export {
  alertTopic,
  type BusChannelOptions,
  busChannel,
  logChannel,
  slackPayload,
  type WebhookChannelOptions,
  WebhookDeliveryError,
  webhookChannel,
} from './alerts/channels.ts'
export { loadAlertConfig, parseAlertConfig, parseDuration } from './alerts/config.ts'
export {
  type AlertChannelStats,
  AlertEngine,
  type AlertEngineOptions,
  type AlertStats,
} from './alerts/engine.ts'
export type {
  AgentSilentRule,
  AlertChannel,
  AlertChannelSpec,
  AlertConfig,
  AlertNotification,
  AlertRule,
  AlertRuleBase,
  AlertRuleKind,
  AlertSeverity,
  BusChannelSpec,
  ConsumerLagReading,
  ConsumerLagRule,
  ConsumerLagSource,
  CostRule,
  DeadLetterRule,
  Duration,
  ErrorRateRule,
  LatencyRule,
  LogChannelSpec,
  WebhookChannelSpec,
} from './alerts/types.ts'
export type { AlertsContext, AlertsHook } from './alerts-hook.ts'
export {
  COST_MARKER_HEADER,
  costOf,
  DEFAULT_PRICING,
  isCostMarker,
  type ModelPrice,
  type PricingTable,
  priceOf,
} from './cost.ts'
export { ServeMetrics, type ServeMetricsOptions, type ServerStats } from './metrics.ts'
export {
  loadPricing,
  mergePricing,
  PRICING_ENV,
  parsePricing,
  resolvePricing,
  validatePricing,
} from './pricing.ts'
export {
  createServeHandler,
  type OmnibusServe,
  type Readiness,
  type RunningServer,
  type ServeOptions,
  type StartServerOptions,
  startServer,
} from './server.ts'
export type {
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
export {
  type EventStreamOptions,
  type LiveStreamOptions,
  type StreamedEvent,
  streamedEvent,
} from './sse.ts'
export { LogHistogram, RateWindow, WindowedHistogram, type WindowShape } from './windows.ts'
