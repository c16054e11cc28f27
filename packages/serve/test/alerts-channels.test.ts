import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { EventBackend, Logger, OmnibusEvent } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { createMemoryBackend } from '@omnibus/memory'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AlertEngine,
  type AlertNotification,
  alertTopic,
  busChannel,
  DEFAULT_PRICING,
  logChannel,
  webhookChannel,
} from '../src/index.ts'
import { event, FakeClock, recorder, snapshot, T0, tool } from './alerts-fixtures.ts'

interface Received {
  readonly method: string | undefined
  readonly path: string | undefined
  readonly headers: IncomingMessage['headers']
  readonly body: unknown
}

/** A real HTTP receiver; `respond` decides each answer (default 200). */
class Receiver {
  readonly received: Received[] = []
  readonly #server: Server
  readonly #open = new Set<ServerResponse>()
  respond: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end('ok')

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        this.received.push({
          method: req.method,
          path: req.url,
          headers: req.headers,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
        })
        this.#open.add(res)
        res.on('close', () => this.#open.delete(res))
        this.respond(req, res)
      })
    })
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  async close(): Promise<void> {
    for (const res of this.#open) res.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

const receivers: Receiver[] = []
const backends: EventBackend[] = []
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()))
  await Promise.all(backends.splice(0).map((b) => b.disconnect()))
})

async function receiver(): Promise<{ r: Receiver; url: string }> {
  const r = new Receiver()
  receivers.push(r)
  return { r, url: await r.listen() }
}

/** A logger that keeps its warnings, for asserting on what delivery failures say. */
function quietLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = []
  return { warnings, debug() {}, info() {}, warn: (message) => warnings.push(message), error() {} }
}

const slowTool = {
  name: 'slow-search',
  kind: 'latency',
  source: 'tool',
  percentile: 'p95',
  threshold: 1000,
} as const
const high = snapshot({ tools: [tool('search', 1500)] })
const low = snapshot({ tools: [tool('search', 200)] })

describe('webhook channel', () => {
  it('POSTs the generic JSON payload on firing and on resolved', async () => {
    const { r, url } = await receiver()
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      rules: [{ ...slowTool, severity: 'critical' }],
      channels: [
        webhookChannel({ url: `${url}/hooks/alerts?token=s3cret`, headers: { authorization: 'Bearer t' } }),
      ],
    })
    engine.evaluate(high)
    await waitUntil(() => r.received.length === 1, { description: 'the firing webhook' })
    clock.advance(90_000)
    engine.evaluate(low)
    await waitUntil(() => r.received.length === 2, { description: 'the resolved webhook' })

    const [firing, resolved] = r.received
    expect(firing?.method).toBe('POST')
    expect(firing?.path).toBe('/hooks/alerts?token=s3cret')
    expect(firing?.headers['content-type']).toBe('application/json')
    expect(firing?.headers.authorization).toBe('Bearer t')
    expect(firing?.body).toEqual({
      status: 'firing',
      rule: 'slow-search',
      severity: 'critical',
      labels: { tool: 'search' },
      value: 1500,
      threshold: 1000,
      message: 'tool "search" p95 1500 ms, threshold 1000 ms',
      startsAt: new Date(T0).toISOString(),
      endsAt: null,
      key: 'slow-search{tool="search"}',
    })
    expect(resolved?.body).toEqual({
      status: 'resolved',
      rule: 'slow-search',
      severity: 'critical',
      labels: { tool: 'search' },
      value: 200,
      threshold: 1000,
      message: 'tool "search" p95 200 ms, threshold 1000 ms',
      startsAt: new Date(T0).toISOString(),
      endsAt: new Date(T0 + 90_000).toISOString(),
      key: 'slow-search{tool="search"}',
    })
    await engine.flush()
    expect(engine.stats().channels).toEqual([
      { name: 'webhook', sent: 2, failed: 0, dropped: 0, inFlight: 0 },
    ])
  })

  it('posts a Slack incoming-webhook message with format slack', async () => {
    const { r, url } = await receiver()
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      rules: [{ ...slowTool, name: 'slow <search> & co' }],
      channels: [{ type: 'webhook', name: 'slack', url, format: 'slack' }],
    })
    engine.evaluate(high)
    await waitUntil(() => r.received.length === 1)
    clock.advance(60_000)
    engine.evaluate(low)
    await waitUntil(() => r.received.length === 2)

    const key = 'slow <search> & co{tool="search"}'
    expect(r.received[0]?.body).toEqual({
      text: ':warning: [FIRING] slow &lt;search&gt; &amp; co (warning): tool "search" p95 1500 ms, threshold 1000 ms',
      blocks: [
        { type: 'header', text: { type: 'plain_text', text: 'FIRING: slow <search> & co' } },
        {
          type: 'section',
          text: { type: 'mrkdwn', text: 'tool "search" p95 1500 ms, threshold 1000 ms' },
          fields: [
            { type: 'mrkdwn', text: '*Severity*\nwarning' },
            { type: 'mrkdwn', text: '*Value*\n1500' },
            { type: 'mrkdwn', text: '*Threshold*\n1000' },
            { type: 'mrkdwn', text: '*tool*\nsearch' },
          ],
        },
        {
          type: 'context',
          elements: [
            {
              type: 'mrkdwn',
              text: `since ${new Date(T0).toISOString()} · key \`${key.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')}\``,
            },
          ],
        },
      ],
    })
    const resolved = r.received[1]?.body as { text: string; blocks: Array<{ text?: { text: string } }> }
    expect(resolved.text).toBe(
      ':white_check_mark: [RESOLVED] slow &lt;search&gt; &amp; co (warning): tool "search" p95 200 ms, threshold 1000 ms',
    )
    expect(resolved.blocks[0]?.text?.text).toBe('RESOLVED: slow <search> & co')
  })

  it('retries a 5xx, then succeeds', async () => {
    const { r, url } = await receiver()
    r.respond = (_req, res) => {
      res.statusCode = r.received.length < 3 ? 503 : 204
      res.end()
    }
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      rules: [slowTool],
      channels: [webhookChannel({ url, retries: 2, retryDelayMs: 10 })],
    })
    engine.evaluate(high)
    await engine.flush()
    expect(r.received).toHaveLength(3)
    expect(engine.stats().channels[0]).toMatchObject({ sent: 1, failed: 0 })
  })

  it('does not retry a 4xx, and counts the failure without the URL in the log', async () => {
    const { r, url } = await receiver()
    r.respond = (_req, res) => {
      res.statusCode = 404
      res.end()
    }
    const logger = quietLogger()
    const engine = new AlertEngine({
      now: new FakeClock().now,
      logger,
      rules: [slowTool],
      channels: [webhookChannel({ url: `${url}/T000/B000/secret-token`, retryDelayMs: 10 })],
    })
    engine.evaluate(high)
    await engine.flush()
    expect(r.received).toHaveLength(1)
    expect(engine.stats().channels[0]).toMatchObject({ sent: 0, failed: 1 })
    expect(logger.warnings).toEqual([
      `alert channel "webhook" could not deliver the firing notification of slow-search{tool="search"}: webhook ${url} answered 404`,
    ])
    expect(logger.warnings.join()).not.toContain('secret-token')
  })

  it('a receiver that is down never blocks evaluation; the failure is counted after the retries', async () => {
    const { r, url } = await receiver()
    await r.close() // nothing listens on the port any more
    receivers.length = 0
    const clock = new FakeClock()
    const logger = quietLogger()
    const engine = new AlertEngine({
      now: clock.now,
      logger,
      rules: [slowTool],
      channels: [webhookChannel({ url, retries: 2, retryDelayMs: 20 }), recorder('other')],
    })
    const started = performance.now()
    const views = engine.evaluate(high)
    expect(performance.now() - started).toBeLessThan(50)
    expect(views).toMatchObject([{ state: 'firing' }])
    await engine.flush()
    const [webhook, other] = engine.stats().channels
    expect(webhook).toMatchObject({ name: 'webhook', sent: 0, failed: 1, inFlight: 0 })
    expect(other).toMatchObject({ name: 'other', sent: 1, failed: 0 })
    expect(logger.warnings[0]).toMatch(
      /webhook http:\/\/127\.0\.0\.1:\d+ could not be reached \(.*\) after 3 attempts/,
    )
  })

  it('a slow receiver times out; evaluations go on meanwhile, and deliveries over the in-flight limit are dropped', async () => {
    const { r, url } = await receiver()
    r.respond = () => {} // never answers
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      logger: quietLogger(),
      maxInFlightPerChannel: 2,
      rules: [slowTool],
      channels: [webhookChannel({ url, timeout: '300ms', retries: 0 })],
    })
    const tools = ['a', 'b', 'c'].map((name) => tool(name, 5000))
    const started = performance.now()
    engine.evaluate(snapshot({ tools }))
    for (let i = 0; i < 20; i++) {
      clock.advance(1000)
      expect(engine.evaluate(snapshot({ tools }))).toHaveLength(3)
    }
    expect(performance.now() - started).toBeLessThan(200)
    await waitUntil(() => r.received.length === 2, { description: 'two requests in flight' })
    expect(engine.stats().channels[0]).toMatchObject({ inFlight: 2, dropped: 1 })
    await engine.flush()
    expect(performance.now() - started).toBeGreaterThanOrEqual(300)
    expect(engine.stats().channels[0]).toMatchObject({ sent: 0, failed: 2, dropped: 1, inFlight: 0 })
  })
})

describe('bus channel', () => {
  it('publishes alert.<name> with the notification, which a subscriber receives', async () => {
    const backend = createMemoryBackend()
    backends.push(backend)
    await backend.connect()
    const got: OmnibusEvent[] = []
    await backend.subscribe('alert.*', async (e) => {
      got.push(e)
    })
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      rules: [{ name: 'dead letters.any', kind: 'dead-letters' }],
      channels: [busChannel(backend)],
    })
    engine.observe(event('omnibus.deadletter'))
    engine.evaluate(snapshot())
    const e = await waitUntil(() => got[0], { description: 'the alert event' })
    expect(e.topic).toBe('alert.dead_letters_any')
    expect(e.source).toBe('omnibus-serve')
    expect(e.data).toEqual({
      status: 'firing',
      rule: 'dead letters.any',
      severity: 'warning',
      labels: {},
      value: 1,
      threshold: 0,
      message: '1 dead letter on omnibus.deadletter in the last 5m, threshold 0',
      startsAt: new Date(T0).toISOString(),
      endsAt: null,
      key: 'dead letters.any',
    } satisfies AlertNotification)
  })

  it('is a default channel, with the log, when the server starts the engine', async () => {
    const backend = createMemoryBackend()
    backends.push(backend)
    await backend.connect()
    const got: OmnibusEvent[] = []
    await backend.subscribe('alert.**', async (e) => {
      got.push(e)
    })
    const logged: Array<[string, Record<string, unknown> | undefined]> = []
    const logger: Logger = {
      debug() {},
      info() {},
      warn() {},
      error: (message, fields) => logged.push([message, fields]),
    }
    const clock = new FakeClock()
    const engine = new AlertEngine({ rules: [{ ...slowTool, severity: 'critical' }] })
    engine.start({ backend, logger, now: clock.now, pricing: DEFAULT_PRICING, metrics: new Registry() })
    engine.evaluate(high)
    await waitUntil(() => got.length === 1)
    expect(got[0]?.topic).toBe('alert.slow-search')
    expect(logged).toEqual([
      [
        'alert firing: slow-search: tool "search" p95 1500 ms, threshold 1000 ms',
        {
          rule: 'slow-search',
          severity: 'critical',
          labels: { tool: 'search' },
          value: 1500,
          threshold: 1000,
          startsAt: new Date(T0).toISOString(),
          endsAt: null,
        },
      ],
    ])
    expect(engine.stats().channels.map((c) => c.name)).toEqual(['log', 'bus'])
  })

  it('a publish that fails is counted, not thrown', async () => {
    const backend = createMemoryBackend()
    // never connected: publish rejects
    const engine = new AlertEngine({
      now: new FakeClock().now,
      logger: quietLogger(),
      rules: [slowTool],
      channels: [busChannel(backend), logChannel(quietLogger())],
    })
    expect(() => engine.evaluate(high)).not.toThrow()
    await engine.flush()
    expect(engine.stats().channels).toMatchObject([
      { name: 'bus', failed: 1 },
      { name: 'log', sent: 1 },
    ])
  })
})

describe('log channel', () => {
  it('logs firing by severity and resolved at warn (info for an info rule)', async () => {
    const lines: string[] = []
    const logger: Logger = {
      debug: (m) => lines.push(`debug ${m}`),
      info: (m) => lines.push(`info ${m}`),
      warn: (m) => lines.push(`warn ${m}`),
      error: (m) => lines.push(`error ${m}`),
    }
    const clock = new FakeClock()
    const engine = new AlertEngine({
      now: clock.now,
      rules: [
        { ...slowTool, name: 'crit', severity: 'critical' },
        { ...slowTool, name: 'warn', severity: 'warning' },
        { ...slowTool, name: 'info', severity: 'info' },
      ],
      channels: [logChannel(logger)],
    })
    engine.evaluate(high)
    await engine.flush()
    clock.advance(1000)
    engine.evaluate(low)
    await engine.flush()
    expect(lines.map((l) => l.replace(/: tool .*/, '')).sort()).toEqual([
      'error alert firing: crit',
      'info alert firing: info',
      'info alert resolved: info',
      'warn alert firing: warn',
      'warn alert resolved: crit',
      'warn alert resolved: warn',
    ])
  })
})

describe('alertTopic', () => {
  it('makes any rule name one valid topic segment after alert.', () => {
    expect(alertTopic('tool-errors')).toBe('alert.tool-errors')
    expect(alertTopic('p99 > 2s')).toBe('alert.p99___2s')
    expect(alertTopic('a.b')).toBe('alert.a_b')
    expect(alertTopic('')).toBe('alert._')
    expect(alertTopic('x'.repeat(400))).toHaveLength(249)
  })
})
