import { ConfigurationError, silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { AlertEngine, type AlertRule, type ConsumerLagReading, DEFAULT_PRICING } from '../src/index.ts'
import {
  agent,
  event,
  FakeClock,
  failedReply,
  recorder,
  snapshot,
  T0,
  tool,
  toolEnd,
} from './alerts-fixtures.ts'

function engineWith(rules: AlertRule[], clock = new FakeClock()) {
  const channel = recorder()
  const engine = new AlertEngine({ rules, channels: [channel], now: clock.now })
  return { engine, channel, clock }
}

const s = snapshot()

describe('alert states', () => {
  it('waits `for` in pending, fires once, resolves, then goes inactive after the retention', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'dlq', kind: 'dead-letters', for: '30s', window: '1m', severity: 'critical' },
    ])
    expect(engine.evaluate(s)).toMatchObject([{ name: 'dlq', state: 'inactive', value: 0 }])

    engine.observe(event('omnibus.deadletter'))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'pending', since: T0, value: 1 }])
    clock.advance(29_000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'pending', since: T0 }])
    await engine.flush()
    expect(channel.sent).toHaveLength(0)

    clock.advance(1000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', since: T0 + 30_000, severity: 'critical' }])
    clock.advance(10_000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', since: T0 + 30_000 }])
    await engine.flush()
    expect(channel.sent).toHaveLength(1)
    expect(channel.sent[0]).toMatchObject({
      status: 'firing',
      rule: 'dlq',
      severity: 'critical',
      value: 1,
      threshold: 0,
      startsAt: new Date(T0).toISOString(),
      endsAt: null,
      key: 'dlq',
    })

    // The dead letter leaves the one-minute window.
    clock.advance(25_000)
    const resolvedAt = clock.t
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', since: resolvedAt, value: 0 }])
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved'])
    expect(channel.sent[1]).toMatchObject({ endsAt: new Date(resolvedAt).toISOString(), value: 0 })

    clock.advance(5 * 60_000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive' }])
    await engine.flush()
    expect(channel.sent).toHaveLength(2)
  })

  it('a condition that clears while pending never notifies', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'slow', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100, for: '1m' },
    ])
    expect(engine.evaluate(snapshot({ tools: [tool('search', 500)] }))).toMatchObject([{ state: 'pending' }])
    clock.advance(30_000)
    expect(engine.evaluate(snapshot({ tools: [tool('search', 50)] }))).toMatchObject([{ state: 'inactive' }])
    clock.advance(60_000)
    expect(engine.evaluate(snapshot({ tools: [tool('search', 50)] }))).toMatchObject([{ state: 'inactive' }])
    await engine.flush()
    expect(channel.sent).toEqual([])
  })

  it('cooldown holds back a re-fire of the same alert, and sends it once the cooldown passed if still firing', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'slow', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100, cooldown: '10m' },
    ])
    const high = snapshot({ tools: [tool('search', 500)] })
    const low = snapshot({ tools: [tool('search', 50)] })
    expect(engine.evaluate(high)).toMatchObject([{ state: 'firing' }])
    clock.advance(60_000)
    expect(engine.evaluate(low)).toMatchObject([{ state: 'resolved' }])
    clock.advance(60_000)
    expect(engine.evaluate(high)).toMatchObject([{ state: 'firing' }])
    clock.advance(60_000)
    engine.evaluate(high)
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved'])
    expect(engine.stats().suppressed).toBe(1)

    clock.advance(7 * 60_000) // 10 minutes after the first notification
    expect(engine.evaluate(high)).toMatchObject([{ state: 'firing' }])
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved', 'firing'])
    expect(channel.sent[2]?.startsAt).toBe(new Date(T0 + 120_000).toISOString())
  })

  it('a held-back firing that resolves within the cooldown sends nothing at all', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'slow', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100, cooldown: '10m' },
    ])
    const high = snapshot({ tools: [tool('search', 500)] })
    const low = snapshot({ tools: [tool('search', 50)] })
    engine.evaluate(high)
    clock.advance(1000)
    engine.evaluate(low)
    clock.advance(1000)
    engine.evaluate(high)
    clock.advance(1000)
    expect(engine.evaluate(low)).toMatchObject([{ state: 'resolved' }])
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved'])
  })

  it('de-duplicates by rule and labels: one notification per alert, however many evaluations', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'slow-tools', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100 },
    ])
    const both = snapshot({ tools: [tool('search', 500), tool('fetch', 300), tool('sum', 5)] })
    for (let i = 0; i < 5; i++) {
      engine.evaluate(both)
      clock.advance(10_000)
    }
    await engine.flush()
    expect(channel.sent.map((n) => n.key).sort()).toEqual([
      'slow-tools{tool="fetch"}',
      'slow-tools{tool="search"}',
    ])
    expect(channel.sent.find((n) => n.labels.tool === 'search')).toMatchObject({ value: 500, threshold: 100 })

    const views = engine.evaluate(
      snapshot({ tools: [tool('search', 500), tool('fetch', 30), tool('sum', 5)] }),
    )
    expect(views.map((v) => [v.labels?.tool, v.state])).toEqual([
      ['search', 'firing'],
      ['fetch', 'resolved'],
    ])
    await engine.flush()
    expect(channel.sent.map((n) => `${n.status} ${n.labels.tool}`).slice(2)).toEqual(['resolved fetch'])
    expect(engine.stats()).toMatchObject({ firing: 1, pending: 0 })
  })

  it('lists firing alerts first, critical before warning, and an inactive entry for a quiet rule', () => {
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      channels: [recorder()],
      rules: [
        { name: 'a-quiet', kind: 'dead-letters' },
        { name: 'b-warn', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100 },
        {
          name: 'c-crit',
          kind: 'latency',
          source: 'tool',
          percentile: 'p50',
          threshold: 100,
          severity: 'critical',
        },
      ],
    })
    const views = engine.evaluate(snapshot({ tools: [tool('search', 500, 200)] }))
    expect(views.map((v) => `${v.name}:${v.state}`)).toEqual([
      'c-crit:firing',
      'b-warn:firing',
      'a-quiet:inactive',
    ])
    expect(views[2]?.message).toMatch(/^OK: 0 dead letters/)
  })

  it('fills a message template with the value, threshold and labels', async () => {
    const { engine, channel } = engineWith([
      {
        name: 'slow',
        kind: 'latency',
        source: 'tool',
        percentile: 'p95',
        threshold: 100,
        message: '{tool} is slow: {value} ms > {threshold} ms ({rule}, {severity}) {unknown}',
      },
    ])
    const [view] = engine.evaluate(snapshot({ tools: [tool('search', 512.345)] }))
    expect(view?.message).toBe('search is slow: 512.3 ms > 100 ms (slow, warning) {unknown}')
    await engine.flush()
    expect(channel.sent[0]?.message).toBe(view?.message)
  })

  it('routes a rule to the channels it names only', async () => {
    const clock = new FakeClock()
    const pager = recorder('pager')
    const chat = recorder('chat')
    const engine = new AlertEngine({
      now: clock.now,
      channels: [pager, chat],
      rules: [
        { name: 'dlq', kind: 'dead-letters', channels: ['chat'] },
        { name: 'slow', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 1 },
      ],
    })
    engine.observe(event('omnibus.deadletter'))
    engine.evaluate(snapshot({ tools: [tool('t', 5)] }))
    await engine.flush()
    expect(pager.sent.map((n) => n.rule)).toEqual(['slow'])
    expect(chat.sent.map((n) => n.rule).sort()).toEqual(['dlq', 'slow'])
    expect(
      () =>
        new AlertEngine({
          channels: [pager],
          rules: [{ name: 'x', kind: 'dead-letters', channels: ['pagr'] }],
        }),
    ).toThrow(/alert rule "x": "channels" names "pagr", which is not a channel; the channels are pager/)
  })

  it('keeps memory bounded: alerts over maxAlertsPerRule are not tracked, and counted', () => {
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      channels: [recorder()],
      maxAlertsPerRule: 3,
      rules: [{ name: 'slow', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 1 }],
    })
    const tools = Array.from({ length: 10 }, (_, i) => tool(`t${i}`, 100))
    expect(engine.evaluate(snapshot({ tools }))).toHaveLength(3)
    expect(engine.stats().untracked).toBe(7)
  })
})

describe('alert metrics', () => {
  it('exposes states, notification outcomes, held notifications and evaluations to a prom-client registry', async () => {
    const clock = new FakeClock()
    const ok = recorder('ok')
    const engine = new AlertEngine({
      now: clock.now,
      logger: { debug() {}, info() {}, warn() {}, error() {} },
      rules: [
        {
          name: 'slow',
          kind: 'latency',
          source: 'tool',
          percentile: 'p95',
          threshold: 100,
          severity: 'critical',
        },
        { name: 'slower', kind: 'latency', source: 'tool', percentile: 'p95', threshold: 100, for: '1m' },
      ],
      channels: [
        ok,
        {
          name: 'broken',
          send: async () => {
            throw new Error('down')
          },
        },
      ],
    })
    const registry = new Registry()
    engine.registerMetrics(registry)
    engine.evaluate(snapshot({ tools: [tool('a', 500), tool('b', 500)] }))
    clock.advance(1000)
    engine.evaluate(snapshot({ tools: [tool('a', 50), tool('b', 500)] }))
    clock.advance(1000)
    engine.evaluate(snapshot({ tools: [tool('a', 500), tool('b', 500)] })) // a again, within the cooldown
    await engine.flush()

    const families = parsePrometheusTextFormat(await registry.metrics())
    const family = (name: string) => families.find((f) => f.name === name)
    const values = (name: string) =>
      Object.fromEntries(
        (family(name)?.metrics ?? []).map((m) => [JSON.stringify(m.labels ?? {}), Number(m.value)]),
      )
    expect(family('omnibus_serve_alerts')?.type).toBe('GAUGE')
    expect(values('omnibus_serve_alerts')).toEqual({
      '{"rule":"slow","severity":"critical","state":"firing"}': 2,
      '{"rule":"slow","severity":"critical","state":"pending"}': 0,
      '{"rule":"slower","severity":"warning","state":"firing"}': 0,
      '{"rule":"slower","severity":"warning","state":"pending"}': 2,
    })
    expect(family('omnibus_serve_alert_notifications_total')?.type).toBe('COUNTER')
    // firing a, firing b, resolved a — to each channel.
    expect(values('omnibus_serve_alert_notifications_total')).toEqual({
      '{"channel":"ok","outcome":"sent"}': 3,
      '{"channel":"ok","outcome":"failed"}': 0,
      '{"channel":"ok","outcome":"dropped"}': 0,
      '{"channel":"broken","outcome":"sent"}': 0,
      '{"channel":"broken","outcome":"failed"}': 3,
      '{"channel":"broken","outcome":"dropped"}': 0,
    })
    expect(values('omnibus_serve_alert_notifications_held_total')).toEqual({ '{}': 1 })
    expect(values('omnibus_serve_alert_evaluations_total')).toEqual({ '{}': 3 })
  })
})

describe('alert rules', () => {
  it('error-rate (ratio): errors among the events of the window, with minEvents', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'errors', kind: 'error-rate', threshold: 0.05, window: '1m' },
    ])
    // Few events: 1 error in 2 is 50 %, but under minEvents (10).
    engine.observe(event('error.raised', { error: { name: 'Error', message: 'boom' } }))
    engine.observe(toolEnd(true))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive', value: 0.5 }])

    for (let i = 0; i < 80; i++) engine.observe(toolEnd(true))
    engine.observe(toolEnd(false))
    engine.observe(event('model.call', { model: 'gpt-4o', inputTokens: 1, outputTokens: 1, success: false }))
    engine.observe(failedReply())
    engine.observe(event('db.error', { message: 'lost connection' }))
    // 5 errors in 86 events: 5.8 %
    const [view] = engine.evaluate(s)
    expect(view).toMatchObject({ state: 'firing' })
    expect(view?.value).toBeCloseTo(5 / 86, 6)
    expect(view?.message).toBe('error rate 5.81% over 1m (5 errors in 86 events), threshold 5%')

    clock.advance(61_000)
    for (let i = 0; i < 20; i++) engine.observe(toolEnd(true))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', value: 0 }])
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved'])
  })

  it('error-rate counts only the topics it is given', () => {
    const { engine } = engineWith([
      { name: 'tool-errors', kind: 'error-rate', threshold: 0.2, topics: 'tool.end', minEvents: 4 },
    ])
    for (let i = 0; i < 50; i++) engine.observe(event('metric.cpu', { name: 'cpu', value: 1 }))
    engine.observe(event('error.raised', {}))
    engine.observe(toolEnd(true))
    engine.observe(toolEnd(true))
    engine.observe(toolEnd(true))
    engine.observe(toolEnd(false))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', value: 0.25 }])
  })

  it('error-rate per second', () => {
    const { engine, clock } = engineWith([
      { name: 'eps', kind: 'error-rate', measure: 'per-second', threshold: 1, window: '10s' },
    ])
    clock.advance(10_000)
    for (let i = 0; i < 15; i++) engine.observe(event('error.raised', {}))
    const [view] = engine.evaluate(s)
    expect(view).toMatchObject({ state: 'firing' })
    expect(view?.value).toBeCloseTo(1.5, 1)
    clock.advance(11_000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', value: 0 }])
  })

  it('latency of agents (p99), limited to named agents', () => {
    const { engine } = engineWith([
      {
        name: 'slow-agents',
        kind: 'latency',
        source: 'agent',
        percentile: 'p99',
        threshold: 2000,
        names: ['planner'],
      },
    ])
    const views = engine.evaluate(
      snapshot({ agents: [agent('planner', T0, 2500), agent('coder', T0, 9000), agent('idle', T0)] }),
    )
    expect(views).toMatchObject([
      {
        state: 'firing',
        labels: { agent: 'planner' },
        value: 2500,
        message: 'agent "planner" p99 2500 ms, threshold 2000 ms',
      },
    ])
  })

  it('cost over a budget per UTC hour, resolved when the next hour starts', async () => {
    const { engine, channel, clock } = engineWith([
      { name: 'spend', kind: 'cost', budget: 2, period: 'hour' },
    ])
    // gpt-4o: $2.5 per million input tokens, $10 per million output tokens.
    engine.observe(
      event('model.call', { model: 'gpt-4o', inputTokens: 400_000, outputTokens: 0, success: true }),
    )
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive', value: 1 }])
    engine.observe(
      event('model.call', {
        model: 'gpt-4o-2024-08-06',
        inputTokens: 0,
        outputTokens: 150_000,
        success: true,
      }),
    )
    engine.observe(
      event('model.call', {
        model: 'no-such-model',
        inputTokens: 10_000_000,
        outputTokens: 0,
        success: true,
      }),
    )
    const [firing] = engine.evaluate(s)
    expect(firing).toMatchObject({ state: 'firing', message: 'spent $2.50 this hour (UTC), budget $2' })
    expect(firing?.value).toBeCloseTo(2.5, 9)

    clock.advance(59 * 60_000) // 10:59
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing' }])
    clock.advance(60_000) // 11:00
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', value: 0 }])
    await engine.flush()
    expect(channel.sent.map((n) => n.status)).toEqual(['firing', 'resolved'])
  })

  it('cost per agent (data.agent, else the source) and for one model', () => {
    const { engine } = engineWith([
      { name: 'agent-spend', kind: 'cost', budget: 1, period: 'day', by: 'agent', model: 'claude-sonnet-4' },
    ])
    // claude-sonnet-4: $3 / $15 per million tokens.
    engine.observe(
      event('model.call', {
        model: 'claude-sonnet-4',
        inputTokens: 500_000,
        outputTokens: 0,
        agent: 'planner',
      }),
    )
    engine.observe(
      event(
        'model.call',
        { model: 'claude-sonnet-4', inputTokens: 400_000, outputTokens: 0 },
        { source: 'coder' },
      ),
    )
    engine.observe(
      event('model.call', {
        model: 'claude-sonnet-4',
        inputTokens: 100_000,
        outputTokens: 0,
        agent: 'tester',
      }),
    )
    engine.observe(
      event('model.call', { model: 'gpt-4o', inputTokens: 5_000_000, outputTokens: 0, agent: 'tester' }),
    )
    const views = engine.evaluate(s)
    const seen = views.map((v) => [v.labels?.agent, v.state, Number(v.value?.toFixed(6))])
    expect(seen.sort()).toEqual([
      ['coder', 'firing', 1.2],
      ['planner', 'firing', 1.5],
    ])
  })

  it('dead-letters over a threshold within the window', () => {
    const { engine, clock } = engineWith([
      { name: 'dlq-burst', kind: 'dead-letters', threshold: 2, window: '1m' },
    ])
    engine.observe(event('omnibus.deadletter'))
    engine.observe(event('omnibus.deadletter'))
    engine.observe(event('orders.created'))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive', value: 2 }])
    clock.advance(30_000)
    engine.observe(event('omnibus.deadletter'))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', value: 3 }])
    clock.advance(31_000)
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', value: 1 }])
  })

  it('agent-silent: agents seen once, remembered after they leave the snapshot', async () => {
    const { engine, channel, clock } = engineWith([{ name: 'silent', kind: 'agent-silent', after: '60s' }])
    engine.evaluate(snapshot({ agents: [agent('planner', T0), agent('coder', T0)] }))
    clock.advance(45_000)
    expect(engine.evaluate(snapshot({ agents: [agent('coder', T0 + 40_000)] }))).toMatchObject([
      { state: 'inactive' },
    ])
    clock.advance(20_000) // planner silent 65 s, coder 25 s; planner is not in the snapshot any more
    const views = engine.evaluate(snapshot({ agents: [agent('coder', T0 + 40_000)] }))
    expect(views).toMatchObject([
      {
        state: 'firing',
        labels: { agent: 'planner' },
        value: 65_000,
        message: 'agent "planner" last seen 1m5s ago, limit 1m',
      },
    ])
    clock.advance(1000)
    expect(engine.evaluate(snapshot({ agents: [agent('planner', clock.t - 500)] }))).toMatchObject([
      { state: 'resolved', labels: { agent: 'planner' } },
    ])
    await engine.flush()
    expect(channel.sent.map((n) => `${n.status} ${n.labels.agent}`)).toEqual([
      'firing planner',
      'resolved planner',
    ])
  })

  it('agent-silent with a named list: an agent never seen fires too', () => {
    const { engine, clock } = engineWith([
      { name: 'must-run', kind: 'agent-silent', after: '30s', agents: ['billing', 'planner'] },
    ])
    expect(engine.evaluate(snapshot({ agents: [agent('planner', T0)] }))).toMatchObject([
      { state: 'inactive' },
    ])
    clock.advance(31_000)
    const views = engine.evaluate(
      snapshot({ agents: [agent('planner', clock.t - 1000), agent('other', T0)] }),
    )
    expect(views).toMatchObject([
      {
        state: 'firing',
        labels: { agent: 'billing' },
        message: 'agent "billing" not seen since alerting started 31s ago, limit 30s',
      },
    ])
  })

  it('agent-silent counts a never-seen agent from when the server started the engine, on its clock', async () => {
    const clock = new FakeClock()
    const engine = new AlertEngine({
      rules: [{ name: 'must-run', kind: 'agent-silent', after: '30s', agents: ['billing'] }],
      channels: [recorder()],
    })
    const backend = createMemoryBackend()
    engine.start({
      backend,
      logger: silentLogger,
      now: clock.now,
      pricing: DEFAULT_PRICING,
      metrics: new Registry(),
    })
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive' }])
    clock.advance(31_000)
    expect(engine.evaluate(s)).toMatchObject([
      { state: 'firing', value: 31_000, labels: { agent: 'billing' } },
    ])
  })

  it('consumer-lag from metric.consumer_lag telemetry, per group and topic, ignoring stale readings', () => {
    const { engine, clock } = engineWith([
      { name: 'lag', kind: 'consumer-lag', threshold: 1000, stale: '2m', group: 'billing' },
    ])
    const lag = (value: number, group: string, topic: string) =>
      event('metric.consumer_lag', { name: 'consumer_lag', value, unit: 'messages', tags: { group, topic } })
    engine.observe(lag(1500, 'billing', 'orders'))
    engine.observe(lag(10, 'billing', 'refunds'))
    engine.observe(lag(9000, 'search', 'orders'))
    expect(engine.evaluate(s)).toMatchObject([
      {
        state: 'firing',
        labels: { group: 'billing', topic: 'orders' },
        value: 1500,
        message: 'consumer lag 1500 messages (group=billing, topic=orders), threshold 1000',
      },
    ])
    clock.advance(60_000)
    engine.observe(lag(200, 'billing', 'orders'))
    expect(engine.evaluate(s)).toMatchObject([{ state: 'resolved', value: 200 }])
    clock.advance(10 * 60_000)
    engine.observe(lag(5000, 'billing', 'refunds'))
    // The orders reading is stale now and no longer shown; refunds fires.
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', labels: { topic: 'refunds' } }])
  })

  it('consumer-lag from a lag source, polled in the background; a failing source is counted', async () => {
    const clock = new FakeClock()
    let reads = 0
    let fail = false
    const engine = new AlertEngine({
      now: clock.now,
      channels: [recorder()],
      rules: [{ name: 'lag', kind: 'consumer-lag', threshold: 100 }],
      lagSources: [
        {
          name: 'broker',
          intervalMs: 10_000,
          async read(): Promise<ConsumerLagReading[]> {
            reads++
            if (fail) throw new Error('admin API down')
            return [{ lag: 250, labels: { group: 'g', topic: 't' } }]
          },
        },
      ],
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    })
    expect(engine.evaluate(s)).toMatchObject([{ state: 'inactive' }])
    await engine.flush()
    expect(engine.evaluate(s)).toMatchObject([{ state: 'firing', value: 250, labels: { group: 'g' } }])
    expect(reads).toBe(1) // not polled again within its interval
    fail = true
    clock.advance(10_000)
    engine.evaluate(s)
    await engine.flush()
    expect(reads).toBe(2)
    expect(engine.stats().lagSourceFailures).toBe(1)
  })
})

describe('alert rules in code are checked like a file', () => {
  it('names the rule and the field', () => {
    expect(
      () =>
        new AlertEngine({
          rules: [{ name: 'x', kind: 'latency', source: 'tool', percentile: 'p99', threshold: 5 }],
        }),
    ).toThrow('alert rule "x" (rules[0]): "percentile" must be one of "p50", "p95", got "p99"')
    expect(
      () =>
        new AlertEngine({ rules: [{ name: 'y', kind: 'dead-letters', window: '5 minutes' } as AlertRule] }),
    ).toThrow(
      /alert rule "y" \(rules\[0\]\): "window" must be a duration such as "30s", "5m", "1h" or a number of milliseconds, got "5 minutes"/,
    )
    expect(
      () =>
        new AlertEngine({
          rules: [{ name: 'z', kind: 'error-rate', treshold: 0.1 } as unknown as AlertRule],
        }),
    ).toThrow(/alert rule "z" \(rules\[0\]\): unknown field "treshold" \(did you mean "threshold"\?\)/)
    expect(() => new AlertEngine({ rules: [{ name: 'r', kind: 'error-rate', threshold: 5 }] })).toThrow(
      /"threshold" must be below 1 with measure "ratio"/,
    )
    expect(
      () => new AlertEngine({ rules: [{ name: 'd', kind: 'dead-letters', topic: 'omnibus.*' }] }),
    ).toThrow(/alert rule "d" \(rules\[0\]\): "topic" is not a valid topic: .*wildcards/)
    expect(
      () =>
        new AlertEngine({
          rules: [
            { name: 'same', kind: 'dead-letters' },
            { name: 'same', kind: 'dead-letters' },
          ],
        }),
    ).toThrow(/two rules are named "same"/)
    try {
      new AlertEngine({ rules: [{ kind: 'dead-letters' } as AlertRule] })
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigurationError)
      expect((err as Error).message).toBe(
        'alert rule rules[0]: "name" must be a non-empty string, got undefined',
      )
    }
  })
})
