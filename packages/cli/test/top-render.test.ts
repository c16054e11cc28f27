import { stripVTControlCharacters } from 'node:util'
import type { Snapshot } from '@omnibus/serve'
import { describe, expect, it } from 'vitest'
import { frame } from '../src/commands/top.ts'
import { ago, count, ms, renderTop, type TopView, usd } from '../src/commands/top-render.ts'
import { fixtureSnapshot } from './fixtures/snapshot.ts'

const view = (columns: number, rows: number, color = false): TopView => ({
  columns,
  rows,
  color,
  url: 'sqlite:///tmp/omnibus-demo.db',
  intervalMs: 1000,
  keys: true,
})

/** A snapshot with more of everything than any terminal shows. */
function crowded(): Snapshot {
  const base = fixtureSnapshot()
  const agent = base.agents[0]
  const tool = base.tools[0]
  const error = base.errors[0]
  if (agent === undefined || tool === undefined || error === undefined) throw new Error('fixture is empty')
  return {
    ...base,
    agents: Array.from({ length: 100 }, (_, i) => ({ ...agent, agentId: `agent-with-a-long-name-${i}` })),
    tools: Array.from({ length: 40 }, (_, i) => ({ ...tool, tool: `tool_${i}` })),
    errors: Array.from({ length: 30 }, (_, i) => ({ ...error, id: `e${i}`, message: 'x'.repeat(300) })),
  }
}

describe('omnibus top screen', () => {
  it('shows agents, tools, models, totals, the firing alert and the recent error', () => {
    const text = renderTop(fixtureSnapshot(), view(120, 40)).join('\n')
    for (const s of [
      'worker-1',
      'worker-2',
      'coordinator',
      'read_file',
      'web_fetch',
      'gpt-4o-mini (openai)',
      'no price',
      'tool-errors',
      'read_file hit a rate limit',
      'cost $0.0321',
      'tool calls 60 (6 failed)',
      'requests 60 (58 replied)',
      'healthy 0.4 ms',
    ]) {
      expect(text).toContain(s)
    }
    // The worker-1 row: requests, errors, p50, p99, tokens, cost in their columns.
    expect(text).toMatch(/worker-1\s+0\.2s\s+1\s+20\s+2\s+31\.2\s+48\.9\s+22k\s+\$0\.0107/)
    expect(text).toMatch(/read_file\s+12\s+2\s+16\.7%\s+22\.0\s+47\.5/)
  })

  it('fits every terminal size: no line wider than the columns, no more lines than the rows', () => {
    for (const snap of [fixtureSnapshot(), crowded()]) {
      for (const columns of [12, 20, 40, 60, 80, 100, 132, 200]) {
        for (const rows of [3, 6, 10, 24, 40, 60]) {
          const lines = renderTop(snap, view(columns, rows, true))
          expect(lines.length, `${columns}x${rows}`).toBeLessThanOrEqual(rows)
          for (const line of lines) {
            expect(stripVTControlCharacters(line).length, `${columns}x${rows}: ${line}`).toBeLessThanOrEqual(
              columns,
            )
          }
          // The footer keeps the last row.
          expect(stripVTControlCharacters(lines.at(-1) ?? '')).toMatch(/^(q( quit.*)?|q…|)$|every/)
        }
      }
    }
  })

  it('says how many rows it left out, and keeps the sections at a few rows each before dropping one', () => {
    const lines = renderTop(crowded(), view(100, 40)).map(stripVTControlCharacters)
    expect(lines.some((l) => /^AGENTS \(100\), \d+ more not shown$/.test(l))).toBe(true)
    expect(lines.some((l) => l.startsWith('TOOLS (40)'))).toBe(true)
    expect(lines.some((l) => l.startsWith('RECENT ERRORS (30)'))).toBe(true)
    expect(lines.filter((l) => l.startsWith('agent-with-a-long-name-')).length).toBeGreaterThanOrEqual(3)
  })

  it('prints everything, with no footer cut, when there is no height limit (batch mode)', () => {
    const lines = renderTop(crowded(), view(100, Number.POSITIVE_INFINITY)).map(stripVTControlCharacters)
    expect(lines.filter((l) => l.startsWith('agent-with-a-long-name-'))).toHaveLength(100)
    expect(lines.some((l) => l.includes('more not shown'))).toBe(false)
  })

  it('says it is waiting when nothing was seen yet', () => {
    const empty: Snapshot = {
      ...fixtureSnapshot(),
      families: [],
      topics: [],
      agents: [],
      tools: [],
      models: [],
      errors: [],
      alerts: [],
    }
    expect(renderTop(empty, view(80, 24)).join('\n')).toContain('waiting for events on sqlite')
  })

  it('colours only when asked', () => {
    expect(renderTop(fixtureSnapshot(), view(120, 40, false)).join('')).not.toContain('\x1b[')
    expect(renderTop(fixtureSnapshot(), view(120, 40, true)).join('')).toContain('\x1b[31m')
  })

  it('draws a frame in place: home, erase to end of each line and below, never a full clear', () => {
    const f = frame(['a', 'b'])
    expect(f).toBe('\x1b[Ha\x1b[K\r\nb\x1b[K\x1b[J')
    expect(f).not.toContain('\x1b[2J')
  })

  it('formats numbers compactly', () => {
    expect([count(999), count(1234), count(56_789), count(1_234_567)]).toEqual(['999', '1.2k', '57k', '1.2M'])
    expect([usd(0.01234), usd(12.3456)]).toEqual(['$0.0123', '$12.35'])
    expect([ms(undefined), ms(3.14), ms(1234.5)]).toEqual(['-', '3.1', '1235'])
    expect([ago(200), ago(15_000), ago(600_000), ago(7_200_000)]).toEqual(['0.2s', '15s', '10m', '2h'])
  })
})
