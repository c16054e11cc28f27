/**
 * How alert rules plug into the server. The server knows nothing about rules: it hands every event
 * it sees to {@link AlertsHook.observe}, asks {@link AlertsHook.evaluate} for the rules' states on
 * a timer with a fresh snapshot, and shows what it returned in `snapshot().alerts`.
 */
import type { EventBackend, Logger, OmnibusEvent } from '@omnibus/core'
import type { Registry } from 'prom-client'
import type { PricingTable } from './cost.ts'
import type { AlertView, Snapshot } from './snapshot.ts'

/** What the server lends the alerts when it starts them. */
export interface AlertsContext {
  /** The backend the server watches: alerts publish `alert.<name>` events on it. */
  readonly backend: EventBackend
  readonly logger: Logger
  /** The server's clock (a fake one in tests). */
  readonly now: () => number
  /** The server's pricing table, so cost rules and the dashboard price tokens the same. */
  readonly pricing: PricingTable
  /** The server's Prometheus registry (`/metrics`), for the alerts' own metrics. */
  readonly metrics: Registry
}

/**
 * An alert evaluator the server drives. Only `evaluate` is required. The server never calls two
 * `evaluate`s at once, and a throw (or a rejection) is logged and leaves the previous states shown.
 */
export interface AlertsHook {
  /** Called once, after the server subscribed, before the first `evaluate`. */
  start?(ctx: AlertsContext): void | Promise<void>
  /**
   * Every event the server ingests, synchronously and in arrival order (for rules that need more
   * than the snapshot holds). Must be cheap: it runs at the ingest rate. Throws are counted, not fatal.
   */
  observe?(event: OmnibusEvent): void
  /** The rules' states after looking at `snapshot` (whose `alerts` is the previous result). */
  evaluate(snapshot: Snapshot): readonly AlertView[] | Promise<readonly AlertView[]>
  /** Called once by the server's `close()`. */
  close?(): void | Promise<void>
}
