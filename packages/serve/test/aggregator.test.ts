import {
  AGENT_HEADERS,
  ConfigurationError,
  createEvent,
  type EventInput,
  type OmnibusEvent,
} from '@omnibus/core'
import { deadLetterInput } from '@omnibus/core/backend'
import { describe, expect, it } from 'vitest'
import { Aggregator, OTHER, REDRIVEN_OF_HEADER } from '../src/aggregator.ts'
import { COST_MARKER_HEADER } from '../src/cost.ts'
import { LogHistogram } from '../src/windows.ts'

function clock(start = 1_700_000_000_000): {
  now: () => number
  advance: (ms: number) => void
  t: () => number
} {
  let t = start
  return { now: () => t, advance: (ms) => (t += ms), t: () => t }
}

function ev(input: EventInput, time: number): OmnibusEvent {
  return createEvent({ source: 'test', ...input, time })
}

function agentEvent(
  kind: 'request' | 'reply' | 'message',
  from: string,
  to: string,
  correlationId: string | undefined,
  time: number,
  extra: Record<string, string> = {},
): OmnibusEvent {
  const headers: Record<string, string> = {
    [AGENT_HEADERS.from]: from,
    [AGENT_HEADERS.to]: to,
    [AGENT_HEADERS.kind]: kind,
    ...extra,
  }
  if (correlationId !== undefined) headers[AGENT_HEADERS.correlationId] = correlationId
  const topic = kind === 'reply' ? 'agent._inbox.p1' : `agent.${to}.task`
  return ev({ topic, data: {}, headers, source: from }, time)
}

describe('LogHistogram', () => {
  it('estimates quantiles within 5% whatever the number of samples', () => {
    const h = new LogHistogram()
    for (let i = 1; i <= 10_000; i++) h.record(i / 10)
    expect(h.count).toBe(10_000)
    expect(h.quantile(0.5)).toBeGreaterThan(500 * 0.95)
    expect(h.quantile(0.5)).toBeLessThan(500 * 1.05)
    expect(h.quantile(0.99)).toBeGreaterThan(990 * 0.95)
    expect(h.quantile(0.99)).toBeLessThan(990 * 1.05)
    expect(h.quantile(1)).toBe(1000)
    expect(new LogHistogram().quantile(0.5)).toBeUndefined()
  })
})

describe('Aggregator', () => {
  it('counts tool calls, errors and p50/p95 duration from tool.end, and forgets durations outside the window', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now })
    for (let i = 1; i <= 100; i++) {
      agg.ingest(
        ev({ topic: 'tool.end', data: { tool: 'search', success: i % 10 !== 0, durationMs: i } }, c.t()),
      )
    }
    const [tool] = agg.snapshot().tools
    expect(tool).toMatchObject({ tool: 'search', calls: 100, errors: 10, errorRate: 0.1 })
    expect(tool?.p50Ms).toBeGreaterThan(47)
    expect(tool?.p50Ms).toBeLessThan(53)
    expect(tool?.p95Ms).toBeGreaterThan(90)
    expect(tool?.p95Ms).toBeLessThan(100)
    const s = agg.snapshot()
    expect(s.totals).toMatchObject({ toolCalls: 100, toolErrors: 10, errors: 10 })
    expect(s.errors).toHaveLength(10)
    expect(s.errors[0]?.message).toBe('tool "search" failed')
    c.advance(61_000)
    const later = agg.snapshot().tools[0]
    expect(later).toMatchObject({ calls: 100, errors: 10, errorRate: 0, p50Ms: undefined })
  })

  it('matches replies to requests: latency by the replying agent, in-flight, request count', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now })
    agg.ingest(agentEvent('request', 'planner', 'researcher', 'r1', c.t()))
    agg.ingest(agentEvent('request', 'planner', 'researcher', 'r2', c.t()))
    let researcher = agg.snapshot().agents.find((a) => a.agentId === 'researcher')
    expect(researcher).toMatchObject({ inFlight: 2, requests: 2, p50Ms: undefined })
    agg.ingest(agentEvent('reply', 'researcher', 'planner', 'r1', c.t() + 120))
    agg.ingest(
      agentEvent('reply', 'researcher', 'planner', 'r2', c.t() + 400, {
        [AGENT_HEADERS.error]: 'no sources',
      }),
    )
    researcher = agg.snapshot().agents.find((a) => a.agentId === 'researcher')
    expect(researcher?.inFlight).toBe(0)
    expect(researcher?.errors).toBe(1)
    expect(researcher?.p50Ms).toBeGreaterThan(114)
    expect(researcher?.p50Ms).toBeLessThan(126)
    expect(researcher?.p99Ms).toBeGreaterThan(380)
    expect(researcher?.p99Ms).toBeLessThan(420)
    const s = agg.snapshot()
    expect(s.totals).toMatchObject({ requests: 2, replies: 2, errors: 1 })
    expect(s.errors[0]).toMatchObject({ name: 'AgentReplyError', source: 'researcher' })
    expect(s.agents.map((a) => a.agentId).sort()).toEqual(['planner', 'researcher'])
  })

  it('a request without a reply stops counting as in flight after the request timeout, and counts as an error', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now, requestTimeoutMs: 5000 })
    agg.ingest(agentEvent('request', 'planner', 'coder', 'r9', c.t()))
    expect(agg.snapshot().agents.find((a) => a.agentId === 'coder')?.inFlight).toBe(1)
    c.advance(5001)
    const s = agg.snapshot()
    expect(s.agents.find((a) => a.agentId === 'coder')).toMatchObject({ inFlight: 0, errors: 1 })
    expect(s.errors[0]).toMatchObject({ name: 'TimeoutError', topic: 'agent.coder.task' })
    expect(agg.errorKinds().timeout).toBe(1)
  })

  it('prices model calls with the table, by model and by the agent in data.agent (else the source), over time', () => {
    const c = clock(1_700_000_040_000)
    const agg = new Aggregator({ now: c.now, pricing: { 'm-1': { inputPerMTok: 2, outputPerMTok: 10 } } })
    agg.ingest(
      ev(
        {
          topic: 'model.call',
          data: {
            model: 'm-1-2025',
            inputTokens: 1_000_000,
            outputTokens: 100_000,
            agent: 'writer',
            success: true,
          },
        },
        c.t(),
      ),
    )
    agg.ingest(
      ev(
        {
          topic: 'model.call',
          data: { model: 'unknown-x', inputTokens: 10, outputTokens: 5, success: true },
          source: 'svc',
        },
        c.t(),
      ),
    )
    const s = agg.snapshot()
    expect(s.totals.costUsd).toBeCloseTo(3, 10)
    expect(s.totals).toMatchObject({ modelCalls: 2, inputTokens: 1_000_010, outputTokens: 100_005 })
    expect(s.models.find((m) => m.model === 'm-1-2025')).toMatchObject({ costUsd: 3, priced: true })
    expect(s.models.find((m) => m.model === 'unknown-x')).toMatchObject({ costUsd: 0, priced: false })
    expect(s.agents.find((a) => a.agentId === 'writer')).toMatchObject({ inputTokens: 1_000_000, costUsd: 3 })
    expect(s.agents.find((a) => a.agentId === 'svc')).toMatchObject({ inputTokens: 10, costUsd: 0 })
    expect(s.cost).toHaveLength(1)
    expect(s.cost[0]).toMatchObject({
      t: 1_700_000_040_000 - (1_700_000_040_000 % 60_000),
      totalUsd: 3,
      byModel: { 'm-1-2025': 3 },
      byAgent: { writer: 3 },
    })
    c.advance(180_000)
    const later = agg.snapshot().cost
    expect(later).toHaveLength(4)
    expect(later.slice(1).every((p) => p.totalUsd === 0)).toBe(true)
  })

  it('does not count the marker omnibus cost publishes on model.call as a model call', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now })
    agg.ingest(ev({ topic: 'model.call', data: {}, headers: { [COST_MARKER_HEADER]: 'run-1' } }, c.t()))
    agg.ingest(
      ev(
        { topic: 'model.call', data: { model: 'gpt-4o', inputTokens: 1, outputTokens: 1, success: true } },
        c.t(),
      ),
    )
    const s = agg.snapshot()
    expect(s.totals.modelCalls).toBe(1)
    expect(s.models.map((m) => m.model)).toEqual(['gpt-4o'])
  })

  it('keeps at most limits.topics topics and puts the rest in (other), whatever the number of distinct topics', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now, limits: { topics: 100, snapshotTopics: 5 } })
    // 20,000 one-off topics, with 10 busy topics seen between every 20 of them.
    for (let i = 0; i < 20_000; i++) {
      agg.ingest(ev({ topic: `cold.t${i}`, data: i }, c.t()))
      if (i % 20 === 0) for (let k = 0; k < 10; k++) agg.ingest(ev({ topic: `hot.t${k}`, data: k }, c.t()))
    }
    expect(agg.topics(1_000_000).length).toBeLessThanOrEqual(101)
    const topics = agg.snapshot().topics
    expect(topics).toHaveLength(6)
    expect(topics.slice(0, 5).every((t) => t.topic.startsWith('hot.') && t.total === 1000)).toBe(true)
    expect(topics[5]).toMatchObject({ topic: OTHER, total: 30_000 - 5 * 1000 })
    const families = agg.snapshot().families
    expect(families.find((f) => f.family === 'cold')?.total).toBe(20_000)
  })

  it('reports events per second over the rate window', () => {
    const c = clock(1_700_000_000_000)
    const agg = new Aggregator({ now: c.now })
    c.advance(20_000)
    for (let s = 0; s < 20; s++) {
      for (let i = 0; i < 50; i++) agg.ingest(ev({ topic: 'metric.cpu', data: i }, c.t()))
      c.advance(1000)
    }
    const family = agg.snapshot().families.find((f) => f.family === 'metric')
    expect(family?.total).toBe(1000)
    expect(family?.perSecond).toBeGreaterThan(45)
    expect(family?.perSecond).toBeLessThan(56)
  })

  it('keeps the newest errors, bounded, newest first, from error topics', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now, limits: { errors: 10 } })
    for (let i = 0; i < 25; i++) {
      agg.ingest(
        ev(
          { topic: 'error.raised', data: { error: { name: 'TypeError', message: `boom ${i}` } } },
          c.t() + i,
        ),
      )
    }
    const errors = agg.snapshot().errors
    expect(errors).toHaveLength(10)
    expect(errors.map((e) => e.message)).toEqual(Array.from({ length: 10 }, (_, i) => `boom ${24 - i}`))
    expect(agg.snapshot().totals.errors).toBe(25)
  })

  it('keeps dead letters (an agent message too) and marks one redriven by a redrive marker', () => {
    const c = clock()
    const agg = new Aggregator({ now: c.now })
    const original = agentEvent('request', 'planner', 'coder', 'r1', c.t())
    const letter = createEvent(
      deadLetterInput(original, 'omnibus.deadletter', {
        reason: 'handler threw 5 times',
        group: 'agent.coder',
        attempts: 5,
        firstFailureAt: c.t(),
        lastFailureAt: c.t(),
        backend: 'memory',
        error: new Error('nope'),
      }),
    )
    agg.ingest(letter)
    let [view] = agg.snapshot().deadLetters
    expect(view).toMatchObject({
      id: letter.id,
      originalTopic: 'agent.coder.task',
      originalId: original.id,
      group: 'agent.coder',
      attempts: 5,
      reason: 'handler threw 5 times',
      state: 'pending',
    })
    expect(agg.snapshot().totals).toMatchObject({ deadLetters: 1, requests: 0 })
    expect(agg.deadLetter(letter.id)).toBe(letter)
    agg.ingest(
      ev(
        {
          topic: 'omnibus.deadletter.redriven',
          data: {},
          headers: { [REDRIVEN_OF_HEADER]: `${letter.id}@${letter.time + 1}` },
        },
        c.t(),
      ),
    )
    expect(agg.snapshot().deadLetters[0]?.state).toBe('pending')
    agg.ingest(
      ev(
        {
          topic: 'omnibus.deadletter.redriven',
          data: {},
          headers: { [REDRIVEN_OF_HEADER]: `${letter.id}@${letter.time}` },
        },
        c.t(),
      ),
    )
    ;[view] = agg.snapshot().deadLetters
    expect(view?.state).toBe('redriven')
  })

  it('refuses unknown options and bad limits with a ConfigurationError naming them', () => {
    expect(() => new Aggregator({ limts: {} } as never)).toThrow(ConfigurationError)
    expect(() => new Aggregator({ limits: { topics: 0 } })).toThrow(
      /limits.topics must be an integer >= 1, got 0/,
    )
    expect(() => new Aggregator({ rateWindow: { slots: 10, slotMs: -1 } })).toThrow(/rateWindow.slotMs/)
  })

  it('never throws on odd data', () => {
    const agg = new Aggregator()
    for (const data of [
      null,
      'x',
      42,
      [1],
      new Uint8Array([1, 2]),
      { tool: 7, durationMs: 'slow' },
      { model: null },
    ]) {
      for (const topic of ['tool.end', 'model.call', 'error.raised', 'tool.start'])
        agg.ingest(ev({ topic, data }, Date.now()))
    }
    expect(agg.snapshot().totals.events).toBe(28)
  })
})
