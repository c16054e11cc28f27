/**
 * Omnibus's own metrics through an OpenTelemetry meter: what was published, delivered,
 * redelivered, dead-lettered and settled, how long handlers and publishes took, and how long
 * events waited before their first delivery. Names follow the messaging semantic conventions
 * where they have one (`messaging.client.*`, `messaging.process.duration`); the rest are
 * `omnibus.*`.
 */
import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api'
import { ERROR_TYPE, MESSAGING, OMNIBUS } from './propagation-attributes.ts'

/** Bucket bounds in seconds for operation and processing durations (the conventions' advice). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
/** Bucket bounds in seconds for the wait before delivery, which can be minutes on a backlog. */
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]

/** The names of the instruments, for dashboards and tests. */
export const OMNIBUS_METRICS = {
  /** Counter of events a backend accepted (or refused, with `error.type`), per destination. */
  sent: 'messaging.client.sent.messages',
  /** Histogram (s) of publish calls, a batch counting once. */
  operationDuration: 'messaging.client.operation.duration',
  /** Counter of deliveries to handlers, every attempt counting. */
  consumed: 'messaging.client.consumed.messages',
  /** Histogram (s) of handler runs. */
  processDuration: 'messaging.process.duration',
  /** Counter of deliveries after the first (attempt > 1). */
  redelivered: 'omnibus.messages.redelivered',
  /** Counter of events the kernel dead-lettered. */
  deadLettered: 'omnibus.messages.dead_lettered',
  /** Counter of settled messages by `omnibus.settle.outcome`. */
  settled: 'omnibus.messages.settled',
  /**
   * Histogram (s) of the consumer lag as time: from when an event was published (or became due,
   * for a delayed one) to its first delivery. Every backend carries the publish time in the
   * envelope, so it is known everywhere.
   */
  lag: 'omnibus.consumer.lag',
} as const

/** The instruments of one meter. */
export class OmnibusMetrics {
  readonly #sent: Counter
  readonly #operationDuration: Histogram
  readonly #consumed: Counter
  readonly #processDuration: Histogram
  readonly #redelivered: Counter
  readonly #deadLettered: Counter
  readonly #settled: Counter
  readonly #lag: Histogram

  constructor(meter: Meter) {
    this.#sent = meter.createCounter(OMNIBUS_METRICS.sent, {
      description: 'Events a backend accepted or refused at publish',
      unit: '{message}',
    })
    this.#operationDuration = meter.createHistogram(OMNIBUS_METRICS.operationDuration, {
      description: 'Duration of publish calls (a batch counts once)',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    })
    this.#consumed = meter.createCounter(OMNIBUS_METRICS.consumed, {
      description: 'Deliveries of events to handlers, every attempt',
      unit: '{message}',
    })
    this.#processDuration = meter.createHistogram(OMNIBUS_METRICS.processDuration, {
      description: 'Duration of handler runs',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    })
    this.#redelivered = meter.createCounter(OMNIBUS_METRICS.redelivered, {
      description: 'Deliveries after the first (retries and redeliveries after a crash or lost lease)',
      unit: '{message}',
    })
    this.#deadLettered = meter.createCounter(OMNIBUS_METRICS.deadLettered, {
      description: 'Events sent to a dead-letter topic',
      unit: '{message}',
    })
    this.#settled = meter.createCounter(OMNIBUS_METRICS.settled, {
      description: 'Messages settled by the consumer kernel, by outcome',
      unit: '{message}',
    })
    this.#lag = meter.createHistogram(OMNIBUS_METRICS.lag, {
      description: 'Time from publish (or the due time of a delayed event) to first delivery',
      unit: 's',
      advice: { explicitBucketBoundaries: LAG_BUCKETS },
    })
  }

  /** Events of one destination a publish ended with: `ok` accepted, `failed` refused (with their error's type). */
  sent(attrs: Attributes, ok: number, failed: number, errorType?: string): void {
    if (ok > 0) this.#sent.add(ok, attrs)
    if (failed > 0) this.#sent.add(failed, { ...attrs, [ERROR_TYPE]: errorType ?? '_OTHER' })
  }

  /** A publish call (one event or a batch) took `seconds`, failing with `errorType` if it did. */
  publishDuration(attrs: Attributes, seconds: number, errorType?: string): void {
    this.#operationDuration.record(
      seconds,
      errorType === undefined ? attrs : { ...attrs, [ERROR_TYPE]: errorType },
    )
  }

  /** A delivery started: counts it, a redelivery, and the lag of a first delivery. */
  delivered(attrs: Attributes, attempt: number, lagSeconds: number | undefined): void {
    this.#consumed.add(1, attrs)
    if (attempt > 1) this.#redelivered.add(1, attrs)
    else if (lagSeconds !== undefined) this.#lag.record(lagSeconds, attrs)
  }

  /** A handler run ended after `seconds`, failed with `errorType` if it did. */
  processed(attrs: Attributes, seconds: number, errorType: string | undefined): void {
    this.#processDuration.record(
      seconds,
      errorType === undefined ? attrs : { ...attrs, [ERROR_TYPE]: errorType },
    )
  }

  /** The kernel settled a message. */
  settled(attrs: Attributes, outcome: string): void {
    this.#settled.add(1, { ...attrs, [OMNIBUS.outcome]: outcome })
    if (outcome === 'dead-lettered') this.#deadLettered.add(1, attrs)
  }
}

/** The attribute set of metrics about one destination, built once per call site. */
export function metricAttributes(system: string, destination: string, group: string | undefined): Attributes {
  return group === undefined
    ? { [MESSAGING.system]: system, [MESSAGING.destination]: destination }
    : { [MESSAGING.system]: system, [MESSAGING.destination]: destination, [MESSAGING.consumerGroup]: group }
}
