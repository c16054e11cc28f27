/**
 * The dashboard as a person sees it: the real server (`startServer` from @omnibus/serve) watching
 * an in-memory backend, Debian's Chromium driven by playwright-core, and events published by the
 * test through the buses an application uses. Where there is no Chromium the block is skipped with
 * a title saying how to install it; `OMNIBUS_IT_REQUIRE=chromium` makes that a failure.
 *
 * The last test fills the page with a few seconds of a small agent system and takes the
 * screenshot the README shows: `OMNIBUS_UPDATE_SCREENSHOT=1` writes it to
 * packages/serve/dashboard.png, otherwise to omnibus-dashboard.png in the temporary folder.
 */
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { AgentMessageBus, type EventBackend, ObservabilityBus, type OmnibusEvent } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { AlertEngine, type RunningServer, startServer } from '@omnibus/serve'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { describeWithTool, toolPath } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { CHROMIUM_ARGS } from './browser.ts'

const SCREENSHOT = path.join(import.meta.dirname, '../../packages/serve/dashboard.png')

/** Polls an asynchronous check (a question to the page) until it holds. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A deterministic pseudo-random sequence, so the screenshot's traffic is the same every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describeWithTool('chromium', 'dashboard in Chromium', () => {
  let backend: EventBackend
  let server: RunningServer
  let browser: Browser
  let page: Page
  let telemetry: ObservabilityBus
  const buses: AgentMessageBus[] = []
  const problems: string[] = []

  async function agent(agentId: string): Promise<AgentMessageBus> {
    const bus = new AgentMessageBus(backend, { agentId, requestTimeoutMs: 10_000 })
    buses.push(bus)
    return bus
  }

  /** The text of cell `column` (1-based) in the row of `key` in table `table`, or undefined without that row. */
  async function cell(table: string, key: string, column: number): Promise<string | undefined> {
    const td = page.locator(`#${table} tbody tr[data-key="${key}"] td:nth-child(${column})`)
    return (await td.count()) === 0 ? undefined : ((await td.textContent()) ?? undefined)
  }

  async function text(selector: string): Promise<string> {
    return (await page.locator(selector).textContent()) ?? ''
  }

  /** Topics of the lines the live tail shows. */
  async function tailTopics(): Promise<string[]> {
    return page.locator('#tail li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-topic') ?? ''))
  }

  beforeAll(async () => {
    backend = createMemoryBackend()
    await backend.connect()
    const alerts = new AlertEngine({
      rules: [
        { kind: 'dead-letters', name: 'dead-letters', severity: 'critical', window: '10m' },
        { kind: 'error-rate', name: 'tool-errors', topics: 'tool.end', threshold: 0.2, minEvents: 5 },
      ],
      channels: [{ type: 'bus' }],
    })
    server = await startServer({
      backend,
      port: 0,
      alerts,
      alertIntervalMs: 200,
      // Short cost buckets, so the few seconds of the screenshot's traffic draw a line.
      aggregator: { costBucketMs: 2000 },
    })
    telemetry = new ObservabilityBus(backend, { source: 'researcher', flushIntervalMs: 10 })
    await telemetry.start()
    browser = await chromium.launch({
      executablePath: toolPath('chromium') as string,
      args: [...CHROMIUM_ARGS],
    })
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 } })
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`)
    })
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
    await page.goto(server.url)
  })

  afterEach(() => {
    expect(problems, 'errors in the browser console').toEqual([])
  })

  afterAll(async () => {
    // The browser goes first, so its streams close before the server does.
    await browser?.close()
    await telemetry?.close()
    await Promise.allSettled(buses.map((b) => b.close()))
    await server?.close()
    await backend?.disconnect()
  })

  it('shows the backend, then agents, tool calls and cost moving as events are published', async () => {
    await until('the live feed', async () => (await page.getAttribute('#live', 'data-state')) === 'live')
    await until('the backend name', async () => (await text('#backend-name')) === 'memory')
    expect(await text('#backend-detail')).toMatch(/^healthy/)
    expect(await text('[data-total="costUsd"]')).toBe('$0.00')

    // An agent answers a request: its row appears with the request and its latency.
    const planner = await agent('planner')
    const researcher = await agent('researcher')
    await researcher.subscribeAgent('researcher', async (_m, ctx) => {
      if (ctx.canReply) await ctx.reply({ found: 3 })
    })
    expect(await cell('agents', 'researcher', 1)).toBeUndefined()
    await planner.request('researcher', 'search', { query: 'event buses' }, { timeoutMs: 5000 })
    await until(
      'a row for researcher with one request',
      async () => (await cell('agents', 'researcher', 4)) === '1',
    )
    expect(await cell('agents', 'researcher', 2)).toMatch(/^\d+ s ago$/)
    expect(await cell('agents', 'researcher', 5)).toMatch(/ms$/)

    // Tool calls: the count goes from N to N + 3, one of them failed.
    const before = Number((await cell('tools', 'web_search', 2)) ?? '0')
    for (let i = 0; i < 3; i++) {
      const callId = telemetry.emitToolStart('web_search', { query: `q${i}` })
      telemetry.emitToolEnd('web_search', {
        callId,
        durationMs: 40 + i * 10,
        ...(i === 2 ? { error: new Error('rate limited') } : {}),
      })
    }
    await until(
      `web_search calls going from ${before} to ${before + 3}`,
      async () => (await cell('tools', 'web_search', 2)) === String(before + 3),
    )
    expect(await cell('tools', 'web_search', 5)).toBe('1')
    expect(await cell('tools', 'web_search', 4)).toMatch(/ms$/)

    // A model call costs what the pricing table says: 1,200 × $3/M + 300 × $15/M = $0.0081.
    telemetry.emitModelCall({
      model: 'claude-sonnet-4',
      provider: 'anthropic',
      inputTokens: 1200,
      outputTokens: 300,
      durationMs: 900,
      agent: 'researcher',
    })
    await until('the cost total', async () => (await text('[data-total="costUsd"]')) === '$0.0081')
    expect(await cell('models', 'claude-sonnet-4', 5)).toBe('$0.0081')
    expect(await cell('models', 'claude-sonnet-4', 3)).toBe('1,200')
    await until(
      'the researcher row with its cost',
      async () => (await cell('agents', 'researcher', 9)) === '$0.0081',
    )
  })

  it('narrows the live tail to the pattern typed into its filter', async () => {
    const planner = await agent('planner-tail')
    // With the default pattern (**) the tail shows agent traffic and tool telemetry alike.
    await planner.send('researcher', 'note', { text: 'before the filter' })
    telemetry.emitToolEnd('read_file', { durationMs: 3 })
    await until('agent and tool lines in the tail', async () => {
      const topics = await tailTopics()
      return topics.some((t) => t.startsWith('agent.')) && topics.some((t) => t.startsWith('tool.'))
    })

    await page.fill('#tail-pattern', 'tool.*')
    await until(
      'the tail reconnected with the new pattern',
      async () => (await text('#tail-status')) === '0 received',
    )
    expect(await tailTopics()).toEqual([])
    // The agent message goes first; once the tool event after it shows, it would have shown too.
    await planner.send('researcher', 'note', { text: 'after the filter' })
    const callId = telemetry.emitToolStart('sentinel_tool')
    telemetry.emitToolEnd('sentinel_tool', { callId, durationMs: 1 })
    await until('the tool events published after the agent message', async () => {
      const lines = await page.locator('#tail li', { hasText: 'sentinel_tool' }).count()
      return lines === 2
    })
    const topics = await tailTopics()
    expect(topics.length).toBeGreaterThanOrEqual(2)
    for (const t of topics) expect(t).toMatch(/^tool\.[^.]+$/)

    await page.fill('#tail-pattern', '**')
    await until('the tail back on every topic', async () => (await text('#tail-status')) === '0 received')
  })

  it('redrives a dead letter from its row and shows the firing dead-letter alert', async () => {
    const topic = 'orders.created'
    let failures = 0
    await backend.subscribe(
      topic,
      async () => {
        if (failures++ === 0) throw new Error('payment service unavailable')
      },
      { group: 'billing', retry: { maxAttempts: 1 } },
    )
    const received: OmnibusEvent[] = []
    await backend.subscribe(topic, async (event) => {
      received.push(event)
    })
    const receipt = await backend.publish({ topic, data: { order: 42 }, source: 'shop' })
    await eventually('the order delivered once', () => received.length === 1)

    const row = page.locator('#deadletters tbody tr', { hasText: topic })
    await until('the dead letter on the page', async () => (await row.count()) === 1)
    expect(await row.locator('td').nth(2).textContent()).toMatch(/payment service unavailable/)
    await until('the dead-letter alert firing', async () => {
      return (
        (await page.locator('#alerts').isVisible()) && (await text('#alert-list')).includes('dead-letters')
      )
    })

    await row.getByRole('button', { name: 'Redrive' }).click()
    await eventually('the redriven order received', () => received.length === 2)
    const redriven = received[1] as OmnibusEvent
    expect(redriven.topic).toBe(topic)
    expect(redriven.id).toBe(receipt.id)
    expect(redriven.data).toEqual({ order: 42 })
    await until('the row showing redriven', async () =>
      row.locator('.badge', { hasText: 'redriven' }).isVisible(),
    )
    expect(await row.getByRole('button', { name: 'Redrive' }).isVisible()).toBe(false)
    await eventually('the billing group handled the redriven order', () => failures === 2)
  })

  it('draws a busy agent system (the README screenshot)', async () => {
    const random = prng(13)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T
    const workers = ['analyst', 'coder', 'reviewer', 'summarizer']
    const tools = ['web_search', 'read_file', 'run_tests', 'write_file', 'fetch_url']
    const models = [
      { model: 'claude-sonnet-4', provider: 'anthropic' },
      { model: 'gpt-4o-mini', provider: 'openai' },
      { model: 'gpt-4.1', provider: 'openai' },
    ]
    const coordinator = await agent('coordinator')
    for (const name of workers) {
      const bus = await agent(name)
      await bus.subscribeAgent(name, async (_m, ctx) => {
        // Simulated work: a worker takes its time, as a model-backed agent would.
        await new Promise((r) => setTimeout(r, 20 + random() * (name === 'coder' ? 400 : 150)))
        if (random() < 0.04) await ctx.replyError(new Error('context window exceeded'))
        else await ctx.reply({ ok: true })
      })
    }
    // A mailer that keeps failing leaves dead letters to redrive.
    await backend.subscribe(
      'invoices.send',
      async () => {
        throw new Error('SMTP 421: service not available, try again later')
      },
      { group: 'mailer', retry: { maxAttempts: 2, initialDelayMs: 10 } },
    )
    const inFlight = new Set<Promise<unknown>>()
    const end = Date.now() + 12_000
    for (let tick = 0; Date.now() < end; tick++) {
      const worker = pick(workers)
      const p = coordinator.request(worker, 'task', { step: tick }, { timeoutMs: 5000 }).catch(() => {})
      inFlight.add(p)
      void p.finally(() => inFlight.delete(p))
      for (let i = 0; i < 3; i++) {
        const tool = pick(tools)
        const callId = telemetry.emitToolStart(tool, undefined, { source: worker })
        const failed = random() < (tool === 'run_tests' ? 0.15 : 0.02)
        telemetry.emitToolEnd(
          tool,
          {
            callId,
            durationMs: Math.round(5 + random() * (tool === 'run_tests' ? 900 : 120)),
            ...(failed ? { error: new Error(`${tool} failed`) } : {}),
          },
          { source: worker },
        )
      }
      if (tick % 2 === 0) {
        const m = pick(models)
        telemetry.emitModelCall({
          ...m,
          inputTokens: Math.round(400 + random() * 3000),
          outputTokens: Math.round(50 + random() * 600),
          durationMs: Math.round(300 + random() * 2000),
          agent: worker,
        })
      }
      if (random() < 0.03)
        telemetry.emitError(new Error('upstream returned 503'), { worker }, { source: worker })
      telemetry.emitMetric('queue_depth', Math.round(random() * 20), 'messages')
      if (tick % 60 === 30)
        await backend.publish({ topic: 'invoices.send', data: { invoice: tick }, source: 'billing' })
      await new Promise((r) => setTimeout(r, 50))
    }
    await Promise.allSettled([...inFlight])
    await until('every worker on the page', async () => (await page.locator('#agents tbody tr').count()) >= 5)
    await until('the charts drawn', async () => (await page.locator('.uplot canvas').count()) === 3)
    await until(
      'the mailer dead letters',
      async () => (await page.locator('#deadletters .redrive:visible').count()) >= 2,
    )
    const legend = await text('#chart-rate .u-legend')
    expect(legend).toContain('tool')
    expect(legend).toContain('agent')

    const shot = await page.screenshot({ fullPage: true })
    expect(shot.subarray(1, 4).toString('latin1')).toBe('PNG')
    expect(shot.readUInt32BE(16), 'image width').toBe(1440)
    const file =
      process.env.OMNIBUS_UPDATE_SCREENSHOT === '1'
        ? SCREENSHOT
        : path.join(tmpdir(), 'omnibus-dashboard.png')
    writeFileSync(file, shot)
    console.log(`[dashboard] screenshot: ${file}`)
  })
})
