/**
 * `omnibus cost`: tokens and money spent on model calls in a time window, by model, agent or
 * session, from the `model.call` events a backend retains.
 *
 * The events are replayed from the earliest retained one by a fresh broadcast subscription, which
 * consumes nothing. Where the replay ends is decided by a marker, not by a silence: once
 * subscribed, the command publishes one event of its own on `model.call` (header
 * {@link COST_MARKER_HEADER}, no `model` in its data) and reads until that event comes back. On
 * SQLite and Redis a topic is one ordered log, so every call published before the command started
 * has been read by then. On Kafka a topic has several partitions and the marker lands on one of
 * them, so after the marker the command also waits until no call from before its start has
 * arrived for `idleMs` (calls published while it runs are after the window and never hold it up).
 */
import { randomUUID } from 'node:crypto'
import {
  type EventBackend,
  MODEL_CALL_TOPIC,
  type OmnibusEvent,
  redactUrl,
  type Subscription,
} from '@omnibus/core'
import { COST_MARKER_HEADER, costOf, type PricingTable, priceOf, resolvePricing } from '@omnibus/serve'
import { CliError, describe, EXIT } from '../backend.ts'
import { type CommandIo, outputClosed } from '../io.ts'

/** What the totals are grouped by. */
export type CostGrouping = 'model' | 'agent' | 'session'

/** The groupings `--by` accepts. */
export const COST_GROUPINGS: readonly CostGrouping[] = ['model', 'agent', 'session']

/** Row key of calls without a session. */
export const NO_SESSION = '(no session)'

/** Options of `omnibus cost`. */
export interface CostOptions {
  /** Start of the window, epoch ms (inclusive). */
  readonly from: number
  /** End of the window, epoch ms (inclusive): when the command started. */
  readonly until: number
  readonly by: CostGrouping
  readonly pricing: PricingTable
  readonly json: boolean
  /** After the marker, how long no call from before `until` must arrive before the replay ends. */
  readonly idleMs: number
  /** The command fails when the replay makes no progress (no event, no marker) for this long. */
  readonly stallMs: number
}

/** Totals of one row (or of all rows). */
export interface CostTotals {
  calls: number
  failedCalls: number
  inputTokens: number
  outputTokens: number
  /** US dollars, priced calls only. */
  costUsd: number
  /** Calls whose model has no price: their cost counts as 0. */
  unpricedCalls: number
  readonly unpricedModels: Set<string>
}

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

/**
 * The start of the window `--since` names, as epoch ms: a duration back from `now` (`90s`, `30m`,
 * `24h`, `7d`, `2w`, `1h30m`) or a date (`2026-12-01`, `2026-12-01T08:00:00Z`). Throws a usage
 * {@link CliError} for anything else.
 */
export function parseSince(text: string, now: number): number {
  const trimmed = text.trim()
  if (/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(trimmed)) {
    let total = 0
    for (const [, n, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
      total += Number(n) * (UNITS[unit as string] as number)
    }
    if (total > 0) return now - total
  } else if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(trimmed)) {
    const at = Date.parse(trimmed)
    if (Number.isFinite(at)) {
      if (at > now) throw new CliError(`--since ${text} is in the future`, EXIT.usage)
      return at
    }
  }
  throw new CliError(
    `--since must be a duration such as 90s, 30m, 24h, 7d or 1h30m, or a date such as 2026-12-01T08:00:00Z, got "${text}"`,
    EXIT.usage,
  )
}

/**
 * The prices in effect: `file` (`--pricing`), else the file `OMNIBUS_PRICING` names, laid over the
 * default table. A file that cannot be read or holds a malformed price is a usage error (exit 2).
 */
export async function costPricing(file: string | undefined): Promise<PricingTable> {
  try {
    return await resolvePricing(file)
  } catch (error) {
    throw new CliError(describe(error), EXIT.usage, { cause: error })
  }
}

/**
 * Refuses (exit 2), before connecting, a backend that cannot replay `model.call` from its first
 * retained event: one in-process bus is empty, and a queue broker would hand the events out once.
 */
export function requireCostReplay(backend: EventBackend, url: string): void {
  if (backend.capabilities.crossProcess && backend.capabilities.replay) return
  const why = backend.capabilities.crossProcess
    ? 'cannot replay a topic (a message leaves its queue when it is read)'
    : 'only holds the events of its own process, where nothing else ran'
  throw new CliError(
    `cost adds up the model.call events a backend retains, and needs a backend that can replay them: the ` +
      `${backend.name} backend (${redactUrl(url)}) ${why}; use sqlite://, redis:// or kafka://`,
    EXIT.usage,
  )
}

interface Call {
  readonly model: string
  readonly inputTokens: number
  readonly outputTokens: number
  readonly success: boolean
  readonly agent: string
  readonly session: string
}

function count(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
}

/** The model call an event records, or undefined when its data is not one. */
function readCall(event: OmnibusEvent): Call | undefined {
  const d = event.data as Record<string, unknown> | null
  if (d === null || typeof d !== 'object' || Array.isArray(d)) return undefined
  if (typeof d.model !== 'string' || d.model === '' || !count(d.inputTokens) || !count(d.outputTokens)) {
    return undefined
  }
  return {
    model: d.model,
    inputTokens: d.inputTokens,
    outputTokens: d.outputTokens,
    success: d.success !== false,
    agent: typeof d.agent === 'string' && d.agent !== '' ? d.agent : event.source,
    session: typeof d.session === 'string' && d.session !== '' ? d.session : NO_SESSION,
  }
}

function emptyTotals(): CostTotals {
  return {
    calls: 0,
    failedCalls: 0,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    unpricedCalls: 0,
    unpricedModels: new Set(),
  }
}

function add(t: CostTotals, call: Call, cost: number | undefined): void {
  t.calls++
  if (!call.success) t.failedCalls++
  t.inputTokens += call.inputTokens
  t.outputTokens += call.outputTokens
  if (cost === undefined) {
    t.unpricedCalls++
    t.unpricedModels.add(call.model)
  } else t.costUsd += cost
}

/** What the replay found. */
interface Replayed {
  readonly rows: Map<string, CostTotals>
  readonly total: CostTotals
  /** `model.call` events whose data is not a model call. */
  readonly malformed: number
}

async function replay(backend: EventBackend, opts: CostOptions, io: CommandIo): Promise<Replayed> {
  const rows = new Map<string, CostTotals>()
  const total = emptyTotals()
  const seen = new Set<string>()
  const marker = randomUUID()
  let malformed = 0
  let markerSeen = false
  let lastEarlier = 0
  let lastProgress = Date.now()

  const onEvent = (event: OmnibusEvent): void => {
    lastProgress = Date.now()
    const mark = event.headers[COST_MARKER_HEADER]
    if (mark !== undefined) {
      if (mark === marker && !markerSeen) {
        markerSeen = true
        // Other partitions get idleMs from here even when none of them has sent anything yet.
        lastEarlier = Math.max(lastEarlier, lastProgress)
      }
      return
    }
    if (event.time > opts.until) return
    lastEarlier = lastProgress
    // A broker may hold one publish twice (a producer retry); one id is one call.
    if (event.time < opts.from || seen.has(event.id)) return
    seen.add(event.id)
    const call = readCall(event)
    if (call === undefined) {
      malformed++
      return
    }
    const cost = costOf(call.model, call.inputTokens, call.outputTokens, opts.pricing)
    const key = call[opts.by]
    let row = rows.get(key)
    if (row === undefined) {
      row = emptyTotals()
      rows.set(key, row)
    }
    add(row, call, cost)
    add(total, call, cost)
  }

  let sub: Subscription
  try {
    sub = await backend.subscribe(MODEL_CALL_TOPIC, onEvent, { guarantee: 'at-most-once', from: 'earliest' })
  } catch (error) {
    throw new CliError(`cannot read ${MODEL_CALL_TOPIC} on ${backend.name}: ${describe(error)}`, EXIT.failure)
  }
  try {
    try {
      await backend.publish({
        topic: MODEL_CALL_TOPIC,
        id: marker,
        source: 'omnibus-cli',
        data: { marker },
        headers: { [COST_MARKER_HEADER]: marker },
      })
    } catch (error) {
      throw new CliError(
        `cannot publish the marker that ends the replay on ${backend.name}: ${describe(error)}`,
        EXIT.failure,
      )
    }
    lastProgress = Date.now()
    while (!io.signal.aborted) {
      const now = Date.now()
      if (markerSeen && now - lastEarlier >= opts.idleMs) break
      if (now - lastProgress >= opts.stallMs) {
        throw new CliError(
          `the replay of ${MODEL_CALL_TOPIC} on ${backend.name} made no progress for ${opts.stallMs} ms ` +
            '(its own marker never came back): try again, or raise --timeout',
          EXIT.failure,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  } finally {
    await sub.unsubscribe().catch(() => undefined)
  }
  return { rows, total, malformed }
}

/** US dollars with precision where it matters: small sums keep their fractions of a cent. */
export function formatUsd(usd: number): string {
  const digits = usd >= 100 ? 2 : usd >= 1 ? 4 : 6
  return `$${usd.toFixed(digits)}`
}

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

function note(t: CostTotals, by: CostGrouping): string {
  if (t.unpricedCalls === 0) return ''
  if (by === 'model') return 'unpriced'
  return `unpriced: ${t.unpricedCalls} call(s) of ${[...t.unpricedModels].sort().join(', ')}`
}

function sortedRows(rows: Map<string, CostTotals>): Array<[string, CostTotals]> {
  return [...rows.entries()].sort(([ka, a], [kb, b]) => b.costUsd - a.costUsd || ka.localeCompare(kb))
}

function table(r: Replayed, by: CostGrouping): string[] {
  const head = [by.toUpperCase(), 'CALLS', 'FAILED', 'INPUT TOKENS', 'OUTPUT TOKENS', 'COST (USD)', '']
  const body = sortedRows(r.rows).map(([key, t]) => [
    key,
    int(t.calls),
    int(t.failedCalls),
    int(t.inputTokens),
    int(t.outputTokens),
    formatUsd(t.costUsd),
    note(t, by),
  ])
  const t = r.total
  const foot = [
    'TOTAL',
    int(t.calls),
    int(t.failedCalls),
    int(t.inputTokens),
    int(t.outputTokens),
    formatUsd(t.costUsd),
    t.unpricedCalls === 0 ? '' : `${t.unpricedCalls} unpriced call(s)`,
  ]
  const lines = [head, ...body, foot]
  const widths = head.map((_, i) => Math.max(...lines.map((l) => (l[i] as string).length)))
  return lines.map((cells) =>
    cells
      .map((cell, i) =>
        i === 0 || i === cells.length - 1
          ? cell.padEnd(widths[i] as number)
          : cell.padStart(widths[i] as number),
      )
      .join('  ')
      .trimEnd(),
  )
}

function totalsJson(t: CostTotals): Record<string, unknown> {
  return {
    calls: t.calls,
    failedCalls: t.failedCalls,
    inputTokens: t.inputTokens,
    outputTokens: t.outputTokens,
    costUsd: t.costUsd,
    unpricedCalls: t.unpricedCalls,
    unpricedModels: [...t.unpricedModels].sort(),
  }
}

function reportJson(r: Replayed, opts: CostOptions): string {
  return JSON.stringify({
    from: new Date(opts.from).toISOString(),
    until: new Date(opts.until).toISOString(),
    by: opts.by,
    currency: 'USD',
    rows: sortedRows(r.rows).map(([key, t]) => ({
      key,
      ...totalsJson(t),
      ...(opts.by === 'model' ? { price: priceOf(key, opts.pricing) ?? null } : {}),
    })),
    total: totalsJson(r.total),
    malformedEvents: r.malformed,
  })
}

/**
 * Replays `model.call` from the earliest retained event and prints tokens and cost in the window
 * by model, agent or session: a table, or one JSON document with `json`. Models without a price
 * count 0 and are flagged `unpriced`.
 */
export async function cost(backend: EventBackend, opts: CostOptions, io: CommandIo): Promise<number> {
  const r = await replay(backend, opts, io)
  if (io.signal.aborted && !outputClosed(io.signal)) return EXIT.interrupted
  if (opts.json) io.out(reportJson(r, opts))
  else for (const line of table(r, opts.by)) io.out(line)
  // A write to a pipe whose reader left fails in the background: wait until standard output has
  // taken (or refused) everything written, then one more turn for its error to reach io.signal, so
  // `omnibus cost | head -1` ends without the notes below however loaded the machine is.
  await outputSettled(io.stdout)
  await new Promise((resolve) => setImmediate(resolve))
  if (outputClosed(io.signal)) return EXIT.ok
  if (!opts.json) {
    io.err(
      `${r.total.calls} model call(s) from ${new Date(opts.from).toISOString()} to ${new Date(opts.until).toISOString()} on ${backend.name}`,
    )
  }
  if (r.total.unpricedCalls > 0) {
    io.err(
      `unpriced: ${[...r.total.unpricedModels].sort().join(', ')} (no price in the table, counted as $0): ` +
        'add them with --pricing FILE',
    )
  }
  if (r.malformed > 0) {
    io.err(`${r.malformed} ${MODEL_CALL_TOPIC} event(s) skipped: their data has no model or token counts`)
  }
  return EXIT.ok
}

/** Resolves once `stream` has handled every chunk written before, or failed. */
function outputSettled(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    try {
      stream.write('', () => resolve())
    } catch {
      resolve()
    }
  })
}
