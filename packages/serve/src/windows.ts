/**
 * Fixed-size rolling windows: an event-rate counter and a latency histogram, each a ring of time
 * slots. Memory per window is set at construction and never grows with traffic, which is what
 * keeps the aggregator bounded over hours at tens of thousands of events per second.
 */

/** Growth factor between histogram bucket bounds: any quantile is off by at most ~5%. */
const GAMMA = 1.1
const LOG_GAMMA = Math.log(GAMMA)
/** Smallest positive value with its own bucket (1 µs when values are milliseconds). */
const MIN_VALUE = 0.001
/** Values at or above ~10^7 (2.8 h in ms) share the last bucket. */
const BUCKETS = Math.ceil(Math.log(1e7 / MIN_VALUE) / LOG_GAMMA) + 2

function bucketOf(value: number): number {
  if (!(value >= MIN_VALUE)) return 0
  const i = 1 + Math.floor(Math.log(value / MIN_VALUE) / LOG_GAMMA)
  return i < BUCKETS ? i : BUCKETS - 1
}

function bucketValue(index: number): number {
  if (index === 0) return 0
  // Geometric middle of [MIN·γ^(i-1), MIN·γ^i).
  return MIN_VALUE * GAMMA ** (index - 0.5)
}

/**
 * A histogram of non-negative values in fixed logarithmic buckets (relative error ≤ ~5%),
 * about 1 KB whatever the number of samples.
 */
export class LogHistogram {
  readonly counts = new Uint32Array(BUCKETS)
  count = 0
  min = Number.POSITIVE_INFINITY
  max = Number.NEGATIVE_INFINITY

  /** Adds one value; NaN and negative values count as 0. */
  record(value: number): void {
    const v = Number.isNaN(value) || value < 0 ? 0 : value
    const i = bucketOf(v)
    this.counts[i] = (this.counts[i] ?? 0) + 1
    this.count++
    if (v < this.min) this.min = v
    if (v > this.max) this.max = v
  }

  /** Adds every sample of `other`. */
  merge(other: LogHistogram): void {
    if (other.count === 0) return
    const c = this.counts
    const o = other.counts
    for (let i = 0; i < BUCKETS; i++) c[i] = (c[i] ?? 0) + (o[i] ?? 0)
    this.count += other.count
    if (other.min < this.min) this.min = other.min
    if (other.max > this.max) this.max = other.max
  }

  reset(): void {
    this.counts.fill(0)
    this.count = 0
    this.min = Number.POSITIVE_INFINITY
    this.max = Number.NEGATIVE_INFINITY
  }

  /** The `q` quantile (0..1), clamped to the smallest and largest value seen; undefined when empty. */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined
    if (q >= 1) return this.max
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, bucketValue(i)))
    }
    return this.max
  }
}

/** Shape of a window: `slots` slots of `slotMs` each; the window spans `slots × slotMs`. */
export interface WindowShape {
  readonly slots: number
  readonly slotMs: number
}

/**
 * A latency histogram over the last `slots × slotMs` milliseconds: one {@link LogHistogram} per
 * slot, allocated on first use and recycled as the ring turns.
 */
export class WindowedHistogram {
  readonly #shape: WindowShape
  readonly #ring: Array<LogHistogram | undefined>
  readonly #epochs: Float64Array

  constructor(shape: WindowShape) {
    this.#shape = shape
    this.#ring = new Array<LogHistogram | undefined>(shape.slots).fill(undefined)
    this.#epochs = new Float64Array(shape.slots).fill(-1)
  }

  record(value: number, now: number): void {
    const epoch = Math.floor(now / this.#shape.slotMs)
    const i = epoch % this.#shape.slots
    let h = this.#ring[i]
    if (h === undefined) {
      h = new LogHistogram()
      this.#ring[i] = h
    } else if (this.#epochs[i] !== epoch) {
      h.reset()
    }
    this.#epochs[i] = epoch
    h.record(value)
  }

  /** The slots still inside the window at `now`, merged into one histogram. */
  merged(now: number): LogHistogram {
    const epoch = Math.floor(now / this.#shape.slotMs)
    const out = new LogHistogram()
    for (let i = 0; i < this.#shape.slots; i++) {
      const h = this.#ring[i]
      const e = this.#epochs[i] ?? -1
      if (h !== undefined && e > epoch - this.#shape.slots && e <= epoch) out.merge(h)
    }
    return out
  }

  /** Quantiles over the window, in the order asked. */
  quantiles(qs: readonly number[], now: number): Array<number | undefined> {
    const h = this.merged(now)
    return qs.map((q) => h.quantile(q))
  }
}

/**
 * A count of occurrences over the last `slots × slotMs` milliseconds (a ring of slot counters),
 * for events per second and windowed error rates.
 */
export class RateWindow {
  readonly #shape: WindowShape
  readonly #counts: Float64Array
  readonly #epochs: Float64Array

  constructor(shape: WindowShape) {
    this.#shape = shape
    this.#counts = new Float64Array(shape.slots)
    this.#epochs = new Float64Array(shape.slots).fill(-1)
  }

  add(now: number, n = 1): void {
    const epoch = Math.floor(now / this.#shape.slotMs)
    const i = epoch % this.#shape.slots
    if (this.#epochs[i] !== epoch) {
      this.#epochs[i] = epoch
      this.#counts[i] = n
    } else {
      this.#counts[i] = (this.#counts[i] ?? 0) + n
    }
  }

  /** Occurrences inside the window at `now`. */
  sum(now: number): number {
    const epoch = Math.floor(now / this.#shape.slotMs)
    let total = 0
    for (let i = 0; i < this.#shape.slots; i++) {
      const e = this.#epochs[i] ?? -1
      if (e > epoch - this.#shape.slots && e <= epoch) total += this.#counts[i] ?? 0
    }
    return total
  }

  /**
   * Occurrences per second over the window, or over the time since `since` when that is shorter
   * (so a counter started a second ago does not report a tenth of its rate).
   */
  perSecond(now: number, since: number): number {
    const windowMs = this.#shape.slots * this.#shape.slotMs
    // The window really covers the full past slots plus the elapsed part of the current one.
    const covered = (this.#shape.slots - 1) * this.#shape.slotMs + (now % this.#shape.slotMs)
    const span = Math.min(windowMs, covered, Math.max(now - since, 1))
    return (this.sum(now) * 1000) / Math.max(span, 1)
  }
}
