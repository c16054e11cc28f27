/**
 * @omnibus/serve — what `omnibus serve` runs, as an HTTP handler an application can mount in its
 * own server: health probes, Prometheus metrics, Server-Sent Events of matching events, JSON for the
 * dashboard, the dashboard itself, alerts and cost, from rolling aggregates of the traffic it sees.
 */

export {
  COST_MARKER_HEADER,
  costOf,
  DEFAULT_PRICING,
  isCostMarker,
  type ModelPrice,
  type PricingTable,
  priceOf,
} from './cost.ts'
export {
  loadPricing,
  mergePricing,
  PRICING_ENV,
  parsePricing,
  resolvePricing,
  validatePricing,
} from './pricing.ts'
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
