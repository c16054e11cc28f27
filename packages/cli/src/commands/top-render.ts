/**
 * The screen of `omnibus top`, drawn from a {@link Snapshot}: a header with the backend and the
 * totals, then tables of agents, tools, models, topic families, firing alerts and recent errors,
 * cut to fit the terminal. Pure functions of the snapshot and the terminal size, so the layout is
 * tested without a terminal.
 */
import { styleText } from 'node:util'
import type { Snapshot } from '@omnibus/serve'

type Style = Parameters<typeof styleText>[0]

/** What the screen is drawn for. */
export interface TopView {
  /** Terminal width in columns; every line is cut to it. */
  readonly columns: number
  /** Terminal height in rows; sections are shortened to fit. `Infinity` prints everything. */
  readonly rows: number
  /** Whether to emit ANSI colours. */
  readonly color: boolean
  /** The backend URL as shown (already redacted). */
  readonly url: string
  /** Refresh interval, shown in the footer. */
  readonly intervalMs: number
  /** Whether the footer says how to quit (only when keys are read). */
  readonly keys: boolean
}

/** Compact count: 999, 1.2k, 34k, 1.2M. */
export function count(n: number): string {
  if (n < 1000) return String(Math.round(n))
  if (n < 10_000) return `${(n / 1000).toFixed(1)}k`
  if (n < 1_000_000) return `${Math.round(n / 1000)}k`
  if (n < 10_000_000) return `${(n / 1_000_000).toFixed(1)}M`
  return `${Math.round(n / 1_000_000)}M`
}

/** Dollars: four decimals below a dollar (model calls cost fractions of a cent), two above. */
export function usd(n: number): string {
  return n < 1 ? `$${n.toFixed(4)}` : `$${n.toFixed(2)}`
}

/** Milliseconds, or a dash when nothing was measured. */
export function ms(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-'
  return n < 100 ? n.toFixed(1) : String(Math.round(n))
}

/** How long ago, in the largest unit that keeps it short. */
export function ago(ms: number): string {
  const s = Math.max(0, ms) / 1000
  if (s < 10) return `${s.toFixed(1)}s`
  if (s < 120) return `${Math.round(s)}s`
  if (s < 7200) return `${Math.round(s / 60)}m`
  return `${Math.round(s / 3600)}h`
}

function rate(n: number): string {
  return n < 100 ? n.toFixed(1) : String(Math.round(n))
}

function clock(t: number): string {
  return new Date(t).toISOString().slice(11, 19)
}

/** Cuts `text` to `width` characters, marking the cut with an ellipsis. */
function fit(text: string, width: number): string {
  if (width <= 0) return ''
  if (text.length <= width) return text
  return width === 1 ? '…' : `${text.slice(0, width - 1)}…`
}

interface Column<Row> {
  readonly title: string
  readonly align: 'left' | 'right'
  /** Columns are dropped from the highest number down when the terminal is too narrow. */
  readonly drop: number
  readonly cell: (row: Row) => string
  readonly style?: (row: Row) => Style | undefined
}

interface Section {
  readonly title: string
  /** Column header line, when the section is a table. */
  readonly head: string | undefined
  readonly lines: readonly string[]
  /** Lines kept however small the terminal (a title, plus this many rows). */
  readonly minRows: number
}

/**
 * Lays out a table: the first column takes what the others leave (up to its longest cell);
 * when even a short first column does not fit, the droppable columns go first.
 */
function table<Row>(
  title: string,
  rows: readonly Row[],
  columns: readonly Column<Row>[],
  view: TopView,
  paint: (style: Style | undefined, text: string) => string,
): Section {
  const [first, ...rest] = columns
  if (first === undefined) return { title, head: undefined, lines: [], minRows: 0 }
  const cells = rows.map((r) => columns.map((c) => c.cell(r)))
  let kept = rest.map((c, i) => ({ c, i: i + 1 }))
  const widthOf = (i: number, c: Column<Row>): number =>
    Math.max(c.title.length, ...cells.map((row) => (row[i] ?? '').length))
  const firstMax = Math.max(first.title.length, ...cells.map((row) => (row[0] ?? '').length))
  const firstMin = Math.min(firstMax, 12)
  const restWidth = (): number => kept.reduce((n, k) => n + 2 + widthOf(k.i, k.c), 0)
  while (kept.length > 0 && firstMin + restWidth() > view.columns) {
    const worst = kept.reduce((a, b) => (b.c.drop > a.c.drop ? b : a))
    if (worst.c.drop === 0) break
    kept = kept.filter((k) => k !== worst)
  }
  // A terminal narrower than the columns that are never dropped still gets whole columns.
  while (kept.length > 0 && 1 + restWidth() > view.columns) kept = kept.slice(0, -1)
  const firstWidth = Math.max(1, Math.min(firstMax, view.columns - restWidth()))
  const line = (parts: readonly { text: string; style: Style | undefined }[]): string =>
    parts.map((p) => paint(p.style, p.text)).join('')
  const pad = (text: string, width: number, align: 'left' | 'right'): string =>
    align === 'left' ? fit(text, width).padEnd(width) : fit(text, width).padStart(width)
  const head = line([
    { text: pad(first.title, firstWidth, 'left'), style: 'bold' },
    ...kept.map((k) => ({
      text: `  ${pad(k.c.title, widthOf(k.i, k.c), k.c.align)}`,
      style: 'bold' as Style,
    })),
  ])
  const lines = rows.map((r, n) =>
    line([
      { text: pad(cells[n]?.[0] ?? '', firstWidth, 'left'), style: first.style?.(r) },
      ...kept.map((k) => ({
        text: `  ${pad(cells[n]?.[k.i] ?? '', widthOf(k.i, k.c), k.c.align)}`,
        style: k.c.style?.(r),
      })),
    ]),
  )
  return { title, head, lines, minRows: 1 }
}

/**
 * The lines of one frame, each at most `view.columns` characters wide (before colour codes) and
 * at most `view.rows` of them.
 */
export function renderTop(snap: Snapshot, view: TopView): string[] {
  const paint = (style: Style | undefined, text: string): string =>
    view.color && style !== undefined && text !== ''
      ? styleText(style, text, { validateStream: false })
      : text
  const redIf = (bad: boolean): Style | undefined => (bad ? 'red' : undefined)
  const t = snap.totals
  const b = snap.backend

  const state = b.healthy ? paint('green', 'healthy') : paint('red', 'UNHEALTHY')
  const latency = b.latencyMs === undefined ? '' : ` ${ms(b.latencyMs)} ms`
  const up = ago(snap.at - snap.startedAt)
  const eventsPerSecond = snap.families.reduce((n, f) => n + f.perSecond, 0)
  // The first header line is cut before it is coloured, so only its plain parts are measured.
  const headPlain = `omnibus top  ${b.name} ${view.url}`
  const headTail = `  up ${up}  ${clock(snap.at)}`
  const stateWidth = (b.healthy ? 'healthy' : 'UNHEALTHY').length + latency.length + 1
  const headRoom = Math.max(0, view.columns - stateWidth - headTail.length)
  const header1 =
    headRoom >= 20
      ? `${paint('bold', fit(headPlain, headRoom))} ${state}${latency}${headTail}`
      : fit(`${headPlain} ${b.healthy ? 'healthy' : 'UNHEALTHY'}`, view.columns)
  const totals: Array<[string, string, Style | undefined]> = [
    ['events', `${count(t.events)} (${rate(eventsPerSecond)}/s)`, undefined],
    ['errors', count(t.errors), redIf(t.errors > 0)],
    ['dead letters', count(t.deadLetters), redIf(t.deadLetters > 0)],
    ['tool calls', `${count(t.toolCalls)} (${count(t.toolErrors)} failed)`, redIf(t.toolErrors > 0)],
    ['requests', `${count(t.requests)} (${count(t.replies)} replied)`, undefined],
    ['tokens', `${count(t.inputTokens)} in ${count(t.outputTokens)} out`, undefined],
    ['cost', usd(t.costUsd), undefined],
  ]
  // Totals wrap onto as many lines as the width needs, never cut mid-item.
  const totalLines: string[] = []
  let plain = ''
  let painted = ''
  for (const [label, value, style] of totals) {
    const item = `${label} ${value}`
    if (plain !== '' && plain.length + 2 + item.length > view.columns) {
      totalLines.push(painted)
      plain = ''
      painted = ''
    }
    const sep = plain === '' ? '' : '  '
    plain += sep + item
    painted += item.length > view.columns ? fit(item, view.columns) : `${sep}${label} ${paint(style, value)}`
  }
  if (plain !== '') totalLines.push(painted)

  const sections: Section[] = []
  const firing = snap.alerts.filter((a) => a.state === 'firing' || a.state === 'pending')
  if (firing.length > 0) {
    sections.push(
      table(
        'ALERTS',
        firing,
        [
          {
            title: 'ALERT',
            align: 'left',
            drop: 0,
            cell: (a) => a.name,
            style: (a) => (a.state === 'firing' ? (a.severity === 'critical' ? 'red' : 'yellow') : undefined),
          },
          { title: 'STATE', align: 'left', drop: 0, cell: (a) => a.state },
          { title: 'SEVERITY', align: 'left', drop: 2, cell: (a) => a.severity },
          { title: 'FOR', align: 'right', drop: 3, cell: (a) => ago(snap.at - a.since) },
          { title: 'MESSAGE', align: 'left', drop: 1, cell: (a) => fit(a.message, 60) },
        ],
        view,
        paint,
      ),
    )
  }
  if (snap.agents.length > 0) {
    sections.push(
      table(
        `AGENTS (${snap.agents.length})`,
        snap.agents,
        [
          { title: 'AGENT', align: 'left', drop: 0, cell: (a) => a.agentId, style: () => 'cyan' },
          { title: 'SEEN', align: 'right', drop: 6, cell: (a) => ago(snap.at - a.lastSeen) },
          { title: 'IN-FLIGHT', align: 'right', drop: 5, cell: (a) => String(a.inFlight) },
          { title: 'REQS', align: 'right', drop: 0, cell: (a) => count(a.requests) },
          {
            title: 'ERRS',
            align: 'right',
            drop: 0,
            cell: (a) => count(a.errors),
            style: (a) => redIf(a.errors > 0),
          },
          { title: 'P50 ms', align: 'right', drop: 2, cell: (a) => ms(a.p50Ms) },
          { title: 'P99 ms', align: 'right', drop: 3, cell: (a) => ms(a.p99Ms) },
          { title: 'TOKENS', align: 'right', drop: 4, cell: (a) => count(a.inputTokens + a.outputTokens) },
          { title: 'COST', align: 'right', drop: 1, cell: (a) => usd(a.costUsd) },
        ],
        view,
        paint,
      ),
    )
  }
  if (snap.tools.length > 0) {
    sections.push(
      table(
        `TOOLS (${snap.tools.length})`,
        snap.tools,
        [
          { title: 'TOOL', align: 'left', drop: 0, cell: (x) => x.tool, style: () => 'cyan' },
          { title: 'CALLS', align: 'right', drop: 0, cell: (x) => count(x.calls) },
          {
            title: 'ERRS',
            align: 'right',
            drop: 0,
            cell: (x) => count(x.errors),
            style: (x) => redIf(x.errors > 0),
          },
          {
            title: 'ERR%',
            align: 'right',
            drop: 3,
            cell: (x) => `${(x.errorRate * 100).toFixed(1)}%`,
            style: (x) => redIf(x.errorRate > 0),
          },
          { title: 'P50 ms', align: 'right', drop: 2, cell: (x) => ms(x.p50Ms) },
          { title: 'P95 ms', align: 'right', drop: 1, cell: (x) => ms(x.p95Ms) },
        ],
        view,
        paint,
      ),
    )
  }
  if (snap.errors.length > 0) {
    const errors = snap.errors.map((e) => {
      const what = e.name === undefined ? e.message : `${e.name}: ${e.message}`
      const plainLine = `${clock(e.time)} ${e.topic} ${e.source} ${what}`
      const cut = fit(plainLine, view.columns)
      // Colour only the part of the line that survived the cut.
      const stamp = cut.slice(0, 8)
      return `${paint('gray', stamp)}${paint('red', cut.slice(8, 9 + e.topic.length))}${cut.slice(9 + e.topic.length)}`
    })
    sections.push({
      title: `RECENT ERRORS (${snap.errors.length})`,
      head: undefined,
      lines: errors,
      minRows: 1,
    })
  }

  if (snap.models.length > 0) {
    sections.push(
      table(
        `MODELS (${snap.models.length})`,
        snap.models,
        [
          {
            title: 'MODEL',
            align: 'left',
            drop: 0,
            cell: (m) => (m.provider === undefined ? m.model : `${m.model} (${m.provider})`),
            style: () => 'cyan',
          },
          { title: 'CALLS', align: 'right', drop: 2, cell: (m) => count(m.calls) },
          { title: 'IN', align: 'right', drop: 3, cell: (m) => count(m.inputTokens) },
          { title: 'OUT', align: 'right', drop: 3, cell: (m) => count(m.outputTokens) },
          { title: 'COST', align: 'right', drop: 0, cell: (m) => (m.priced ? usd(m.costUsd) : 'no price') },
        ],
        view,
        paint,
      ),
    )
  }
  if (snap.families.length > 0) {
    sections.push(
      table(
        'TOPIC FAMILIES',
        snap.families,
        [
          { title: 'FAMILY', align: 'left', drop: 0, cell: (f) => f.family },
          { title: 'EVENTS/S', align: 'right', drop: 0, cell: (f) => rate(f.perSecond) },
          { title: 'TOTAL', align: 'right', drop: 1, cell: (f) => count(f.total) },
        ],
        view,
        paint,
      ),
    )
  }
  const footerParts = [
    `every ${view.intervalMs >= 1000 ? `${view.intervalMs / 1000}s` : `${view.intervalMs}ms`}`,
  ]
  if (view.keys) footerParts.unshift('q quit')
  const footer = paint('dim', fit(footerParts.join(' · '), view.columns))

  const top = [header1, ...totalLines]
  if (sections.length === 0) {
    const waiting = fit(
      `waiting for events on ${b.name}… (telemetry, agent messages, dead letters)`,
      view.columns,
    )
    return cutRows([...top, '', paint('dim', waiting)], footer, view.rows)
  }
  // Each section: a blank line, its title, its column header, its rows. When they do not fit,
  // the longest are shortened to a few rows, then sections are dropped from the last (the least
  // telling) up, then the rest shortened to their minimum, and dropped ones come back shortened
  // where that left room.
  const budget = view.rows - top.length - 1
  const shown = sections.map((s) => s.lines.length)
  const height = (i: number): number => {
    const s = sections[i] as Section
    return 2 + (s.head === undefined ? 0 : 1) + (shown[i] as number)
  }
  let included = sections.length
  const used = (): number => Array.from({ length: included }, (_, i) => height(i)).reduce((a, b) => a + b, 0)
  const shortenTo = (floor: (s: Section) => number): void => {
    while (used() > budget) {
      let longest = -1
      for (let i = 0; i < included; i++) {
        const n = shown[i] as number
        if (n > floor(sections[i] as Section) && (longest < 0 || n > (shown[longest] as number))) longest = i
      }
      if (longest < 0) return
      shown[longest] = (shown[longest] as number) - 1
    }
  }
  shortenTo((s) => Math.min(3, s.lines.length))
  while (used() > budget && included > 1) included--
  shortenTo((s) => s.minRows)
  // Room left after dropping: the next sections come back at their minimum.
  while (included < sections.length) {
    const s = sections[included] as Section
    shown[included] = s.minRows
    included++
    if (used() > budget) {
      included--
      break
    }
  }
  if (used() > budget) included = 0
  const body: string[] = []
  for (let i = 0; i < included; i++) {
    const s = sections[i] as Section
    const n = shown[i] as number
    const more = s.lines.length - n
    body.push('', paint('bold', fit(more > 0 ? `${s.title}, ${more} more not shown` : s.title, view.columns)))
    if (s.head !== undefined) body.push(s.head)
    body.push(...s.lines.slice(0, n))
  }
  return cutRows([...top, ...body], footer, view.rows)
}

/** Keeps the footer on the last row, the rest cut to the rows above it. */
function cutRows(lines: string[], footer: string, rows: number): string[] {
  if (!Number.isFinite(rows)) return [...lines, '', footer]
  if (rows <= 1) return [footer].slice(0, Math.max(0, rows))
  const room = rows - 1
  const body = lines.slice(0, room)
  while (body.length < room) body.push('')
  return [...body, footer]
}
