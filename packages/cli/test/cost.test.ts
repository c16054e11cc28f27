import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { createBackend, type EventInput } from '@omnibus/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../src/cli.ts'
import type { CommandIo } from '../src/io.ts'
import { runOmnibus, runOmnibusIntoHead } from './process.ts'

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the command in this process (fast); `runOmnibus` runs the real executable. */
async function omnibus(args: string[]): Promise<Result> {
  const out: string[] = []
  const err: string[] = []
  const io: CommandIo = {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    stdout: new PassThrough(),
    stdin: new PassThrough(),
    signal: new AbortController().signal,
  }
  const code = await main(args, io)
  return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.map((l) => `${l}\n`).join('') }
}

// The test's own copy of the list prices (USD per million tokens, input/output), so the expected
// totals do not come from the code under test.
const PRICE: Readonly<Record<string, readonly [number, number]>> = {
  'gpt-4o-mini': [0.15, 0.6],
  'claude-3-5-haiku-20241022': [0.8, 4],
}

interface Sent {
  readonly model: string
  readonly input: number
  readonly output: number
  readonly agent: string
  /** Whether `agent` is carried in data (else only as the event source). */
  readonly agentInData: boolean
  readonly session?: string
  readonly hoursAgo: number
  readonly failed?: boolean
}

const NOW = Date.now()
const CALLS: readonly Sent[] = [
  {
    model: 'gpt-4o-mini',
    input: 1200,
    output: 300,
    agent: 'planner',
    agentInData: true,
    session: 's1',
    hoursAgo: 1,
  },
  {
    model: 'gpt-4o-mini',
    input: 800,
    output: 150,
    agent: 'planner',
    agentInData: true,
    session: 's2',
    hoursAgo: 3,
  },
  {
    model: 'claude-3-5-haiku-20241022',
    input: 5000,
    output: 1000,
    agent: 'coder',
    agentInData: false,
    session: 's1',
    hoursAgo: 2,
  },
  {
    model: 'claude-3-5-haiku-20241022',
    input: 2500,
    output: 0,
    agent: 'coder',
    agentInData: false,
    hoursAgo: 5,
    failed: true,
  },
  {
    model: 'gpt-4o-mini',
    input: 700,
    output: 90,
    agent: 'coder',
    agentInData: true,
    session: 's2',
    hoursAgo: 20,
  },
  // Outside the 24 h window.
  { model: 'gpt-4o-mini', input: 99_999, output: 99_999, agent: 'planner', agentInData: true, hoursAgo: 30 },
  {
    model: 'claude-3-5-haiku-20241022',
    input: 77_777,
    output: 7,
    agent: 'coder',
    agentInData: false,
    hoursAgo: 48,
  },
  // No price in the default table.
  {
    model: 'mystery-model',
    input: 1000,
    output: 1000,
    agent: 'planner',
    agentInData: true,
    session: 's1',
    hoursAgo: 4,
  },
]

function input(c: Sent, i: number): EventInput {
  return {
    topic: 'model.call',
    id: `call-${i}`,
    source: c.agentInData ? 'some-process' : c.agent,
    time: NOW - c.hoursAgo * 3_600_000,
    data: {
      model: c.model,
      provider: c.model.startsWith('gpt') ? 'openai' : 'anthropic',
      inputTokens: c.input,
      outputTokens: c.output,
      durationMs: 900,
      success: c.failed !== true,
      ...(c.agentInData ? { agent: c.agent } : {}),
      ...(c.session === undefined ? {} : { session: c.session }),
      ...(c.failed === true ? { error: { name: 'RateLimitError', message: '429' } } : {}),
    },
  }
}

interface Expected {
  calls: number
  failedCalls: number
  inputTokens: number
  outputTokens: number
  costUsd: number
  unpricedCalls: number
}

function expected(withinHours: number, key: (c: Sent) => string): Map<string, Expected> {
  const rows = new Map<string, Expected>()
  for (const c of CALLS) {
    if (c.hoursAgo > withinHours) continue
    const k = key(c)
    const row = rows.get(k) ?? {
      calls: 0,
      failedCalls: 0,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: 0,
      unpricedCalls: 0,
    }
    row.calls++
    if (c.failed === true) row.failedCalls++
    row.inputTokens += c.input
    row.outputTokens += c.output
    const price = PRICE[c.model]
    if (price === undefined) row.unpricedCalls++
    else row.costUsd += (c.input * price[0] + c.output * price[1]) / 1e6
    rows.set(k, row)
  }
  return rows
}

interface Row extends Expected {
  key: string
  unpricedModels: string[]
}

function check(rows: Row[], want: Map<string, Expected>): void {
  expect(rows.map((r) => r.key).sort()).toEqual([...want.keys()].sort())
  for (const row of rows) {
    const w = want.get(row.key) as Expected
    expect({ ...row, costUsd: 0 }).toMatchObject({ ...w, costUsd: 0 })
    expect(row.costUsd).toBeCloseTo(w.costUsd, 12)
  }
}

let dir: string
let url: string
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'omnibus-cost-'))
  url = `sqlite://${path.join(dir, 'calls.db')}`
  const b = await createBackend(url)
  await b.connect()
  await b.publishBatch(CALLS.map(input))
  // The same call held twice (a producer retry) counts once; an event with no model is skipped.
  await b.publish(input(CALLS[0] as Sent, 0))
  await b.publish({ topic: 'model.call', data: { tokens: 5 }, time: NOW - 3_600_000 })
  await b.disconnect()
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('omnibus cost on SQLite', () => {
  it('--json by model: exact totals of the calls inside the window, unpriced models flagged', async () => {
    const r = await omnibus(['cost', '--backend', url, '--since', '24h', '--json'])
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout)
    expect(report.by).toBe('model')
    expect(report.currency).toBe('USD')
    check(
      report.rows,
      expected(24, (c) => c.model),
    )
    const mystery = report.rows.find((row: Row) => row.key === 'mystery-model')
    expect(mystery).toMatchObject({
      costUsd: 0,
      unpricedCalls: 1,
      unpricedModels: ['mystery-model'],
      price: null,
    })
    expect(report.rows.find((row: Row) => row.key === 'gpt-4o-mini').price).toEqual({
      inputPerMTok: 0.15,
      outputPerMTok: 0.6,
    })
    const all = expected(24, () => 'all').get('all') as Expected
    expect(report.total).toMatchObject({
      ...all,
      costUsd: report.total.costUsd,
      unpricedModels: ['mystery-model'],
    })
    expect(report.total.costUsd).toBeCloseTo(all.costUsd, 12)
    expect(report.total.costUsd).toBeGreaterThan(0)
    expect(report.malformedEvents).toBe(1)
    expect(r.stderr).toContain('unpriced: mystery-model')
    expect(r.stderr).toContain('1 model.call event(s) skipped')
  })

  it('--by agent (data.agent, else the source) and --by session', async () => {
    const agents = await omnibus(['cost', '--backend', url, '--by', 'agent', '--json'])
    expect(agents.code).toBe(0)
    check(
      JSON.parse(agents.stdout).rows,
      expected(24, (c) => c.agent),
    )
    const sessions = await omnibus(['cost', '--backend', url, '--by', 'session', '--json'])
    check(
      JSON.parse(sessions.stdout).rows,
      expected(24, (c) => c.session ?? '(no session)'),
    )
  })

  it('--since narrows the window; a date works too', async () => {
    const r = await omnibus(['cost', '--backend', url, '--since', '2h30m', '--json'])
    check(
      JSON.parse(r.stdout).rows,
      expected(2.5, (c) => c.model),
    )
    const wide = await omnibus([
      'cost',
      '--backend',
      url,
      '--since',
      new Date(NOW - 72 * 3_600_000).toISOString(),
      '--json',
    ])
    check(
      JSON.parse(wide.stdout).rows,
      expected(72, (c) => c.model),
    )
  })

  it('prints a table with a total row and the unpriced flag', async () => {
    const r = await omnibus(['cost', '--backend', url])
    expect(r.code).toBe(0)
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^MODEL\s+CALLS\s+FAILED\s+INPUT TOKENS\s+OUTPUT TOKENS\s+COST \(USD\)$/)
    const all = expected(24, () => 'all').get('all') as Expected
    const haiku = expected(24, (c) => c.model).get('claude-3-5-haiku-20241022') as Expected
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^claude-3-5-haiku-20241022\\s+2\\s+1\\s+7,500\\s+1,000\\s+\\$${haiku.costUsd.toFixed(6)}$`,
        ),
      ),
    )
    expect(lines).toContainEqual(
      expect.stringMatching(/^mystery-model\s+1\s+0\s+1,000\s+1,000\s+\$0\.000000\s+unpriced$/),
    )
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^TOTAL\\s+${all.calls}\\s+1\\s+[\\d,]+\\s+[\\d,]+\\s+\\$${all.costUsd.toFixed(6)}\\s+1 unpriced call\\(s\\)$`,
      ),
    )
    expect(r.stderr).toMatch(/^6 model call\(s\) from .* on sqlite$/m)
  })

  it('--pricing prices an unknown model and overrides a default, from YAML', async () => {
    const file = path.join(dir, 'prices.yaml')
    writeFileSync(
      file,
      'mystery-model: { inputPerMTok: 10, outputPerMTok: 20 }\ngpt-4o-mini: { inputPerMTok: 1, outputPerMTok: 2 }\n',
    )
    const r = await omnibus(['cost', '--backend', url, '--pricing', file, '--json'])
    expect(r.code).toBe(0)
    const rows: Row[] = JSON.parse(r.stdout).rows
    // 1000 × $10/M + 1000 × $20/M
    expect(rows.find((row) => row.key === 'mystery-model')?.costUsd).toBeCloseTo(0.03, 12)
    // (1200 + 800 + 700) × $1/M + (300 + 150 + 90) × $2/M
    expect(rows.find((row) => row.key === 'gpt-4o-mini')?.costUsd).toBeCloseTo(0.00378, 12)
    expect(r.stderr).not.toContain('unpriced')
  })

  it('bad input is a usage error (2) that says what to fix, before connecting', async () => {
    const bad = path.join(dir, 'bad.json')
    writeFileSync(bad, '{"gpt-4o": {"inputPerMTok": "2.5", "outputPerMTok": 10}}')
    const pricing = await omnibus(['cost', '--backend', url, '--pricing', bad])
    expect(pricing.code).toBe(2)
    expect(pricing.stderr).toContain(`${bad}: model "gpt-4o" field "inputPerMTok" must be a number >= 0`)
    const since = await omnibus(['cost', '--backend', url, '--since', 'yesterday'])
    expect(since.code).toBe(2)
    expect(since.stderr).toContain('--since must be a duration such as 90s, 30m, 24h')
    const by = await omnibus(['cost', '--backend', url, '--by', 'tool'])
    expect(by.code).toBe(2)
    expect(by.stderr).toContain('--by must be model, agent, session, got "tool"')
  })
})

describe('omnibus cost refuses backends that cannot replay', () => {
  it('memory:// exits 2 with one line saying it needs a backend that can replay', async () => {
    const r = await omnibus(['cost', '--backend', 'memory://'])
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toMatch(
      /^omnibus: cost .*needs a backend that can replay them: the memory backend .*; use sqlite:\/\/, redis:\/\/ or kafka:\/\/$/,
    )
  })

  it('RabbitMQ and SQS exit 2 before connecting', async () => {
    // Port 1: nothing listens there; the refusal comes before any connection attempt.
    for (const backend of ['amqp://guest:secret@127.0.0.1:1', 'sqs://127.0.0.1:1']) {
      const r = await omnibus(['cost', '--backend', backend, '--timeout', '2000'])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/needs a backend that can replay them: .* cannot replay a topic/)
      expect(r.stderr).not.toContain('secret')
    }
  })
})

describe('omnibus cost as a process', () => {
  it('| head -1 prints the header and ends quietly with exit 0, also when the pipe closes mid-table', async () => {
    // 4000 sessions: far more table than a pipe buffers, so writes fail after head has exited.
    const many = `sqlite://${path.join(dir, 'many.db')}`
    const b = await createBackend(many)
    await b.connect()
    await b.publishBatch(
      Array.from({ length: 4000 }, (_, i) => ({
        topic: 'model.call',
        data: {
          model: 'gpt-4o-mini',
          inputTokens: 10,
          outputTokens: 1,
          session: `session-${i}`,
          success: true,
        },
      })),
    )
    await b.disconnect()
    const r = await runOmnibusIntoHead(['cost', '--by', 'session', '--backend', many], 1)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^SESSION\s+CALLS/)
    expect(r.stdout.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toBe('')
  })

  it('after the demo, shows its models, its workers and a cost above $0', async () => {
    const demoUrl = `sqlite://${path.join(dir, 'demo.db')}`
    const demo = await runOmnibus(['demo', '--workers', '2', '--tasks', '12', '--backend', demoUrl])
    expect(demo.stderr).toBe('')
    expect(demo.code).toBe(0)
    const byModel = await omnibus(['cost', '--backend', demoUrl, '--json'])
    expect(byModel.code).toBe(0)
    const report = JSON.parse(byModel.stdout)
    const models = report.rows.map((r: Row) => r.key)
    expect(models).toContainEqual(expect.stringMatching(/^gpt-4o-mini/))
    expect(models).toContainEqual(expect.stringMatching(/^claude-3-5-haiku/))
    expect(report.total.costUsd).toBeGreaterThan(0)
    expect(report.total.unpricedCalls).toBe(0)
    // Every task makes at least one successful call.
    expect(report.total.calls - report.total.failedCalls).toBeGreaterThanOrEqual(12)
    const byAgent = await omnibus(['cost', '--backend', demoUrl, '--by', 'agent', '--json'])
    expect(
      JSON.parse(byAgent.stdout)
        .rows.map((r: Row) => r.key)
        .sort(),
    ).toEqual(['worker-1', 'worker-2'])
  }, 60_000)
})
