import { describe, expect, it } from 'vitest'
import { runWithEventContext } from '../src/backend.ts'
import {
  type BatchEntryResult,
  ConnectionError,
  type EventInput,
  type Logger,
  type OmnibusEvent,
  type TelemetryExporter,
} from '../src/index.ts'
import { recordingExporter, waitUntil } from '../src/testing.ts'
import { createFakeBackend } from './fake-backend.ts'
import { observabilityBuses } from './observability-buses.ts'

const { makeBus } = observabilityBuses({ timeoutMs: 200 })

function recordingLogger(): Logger & { readonly lines: Array<[string, string]> } {
  const lines: Array<[string, string]> = []
  return {
    lines,
    debug() {},
    info: (m) => void lines.push(['info', m]),
    warn: (m) => void lines.push(['warn', m]),
    error: (m) => void lines.push(['error', m]),
  }
}

const hung: TelemetryExporter = { name: 'hung', export: () => new Promise<void>(() => {}) }

describe('ObservabilityBus exporters are isolated from the backend', () => {
  it('an exporter that never settles neither stops publishing nor goes uncounted', async () => {
    const healthy = recordingExporter()
    const { bus, backend } = await makeBus({
      bufferSize: 100,
      batchSize: 10,
      exporterTimeoutMs: 50,
      exporters: [hung, healthy],
    })
    for (let chunk = 1; chunk <= 6; chunk++) {
      for (let i = 0; i < 50; i++) bus.emit('t.x', chunk * 100 + i)
      await waitUntil(() => backend.published.length === chunk * 50, {
        timeoutMs: 2000,
        description: `${chunk * 50} events published`,
      })
    }
    expect(bus.stats()).toMatchObject({ flushed: 300, droppedTotal: 0, buffered: 0 })
    expect(healthy.events).toHaveLength(300)
    await waitUntil(() => bus.stats().exporterTimeouts === 1, { timeoutMs: 2000 })
    const s = bus.stats()
    expect(s.exporterFailures).toBe(1)
    expect(s.exporterFailuresByName).toEqual({ hung: 1 })
    // The hung exporter got the first batch; 100 events (one buffer) wait for it; the rest gave way.
    expect(s.exporterDropped).toBe(190)
    expect(bus.health()).toMatchObject({ status: 'degraded', healthy: true, stuckExporters: ['hung'] })
    const t0 = Date.now()
    expect(await bus.flush(1000)).toBe(true)
    expect(Date.now() - t0).toBeLessThan(500)
  })

  it('close ends within its deadline when an exporter hangs in close', async () => {
    const { bus } = await makeBus({
      exporterTimeoutMs: 50,
      exporters: [{ name: 'stuck-close', export() {}, close: () => new Promise<void>(() => {}) }],
    })
    bus.emit('t.x', 1)
    const t0 = Date.now()
    await bus.close()
    expect(Date.now() - t0).toBeLessThan(1000)
  })

  it('a slow exporter gets every batch in order, one call at a time', async () => {
    const calls: number[][] = []
    let running = 0
    let overlap = false
    const slow: TelemetryExporter = {
      name: 'slow',
      async export(events) {
        if (running++ > 0) overlap = true
        await new Promise((r) => setTimeout(r, 5))
        calls.push(events.map((e) => e.data as number))
        running--
      },
    }
    const { bus, backend } = await makeBus({ batchSize: 5, exporters: [slow] })
    for (let i = 0; i < 40; i++) bus.emit('t.x', i)
    expect(await bus.flush(5000)).toBe(true)
    expect(backend.published).toHaveLength(40)
    expect(calls.flat()).toEqual([...Array(40).keys()])
    expect(overlap).toBe(false)
  })
})

describe('ObservabilityBus publish failures', () => {
  it('retries a retryable failure with backoff and loses nothing while the buffer has room', async () => {
    const { bus, backend } = await makeBus({ maxRetryDelayMs: 40 })
    backend.failWith = new ConnectionError('broker restarting')
    for (let i = 0; i < 20; i++) bus.emit('t.x', i)
    await waitUntil(() => bus.stats().flushFailures >= 3, { timeoutMs: 3000 })
    expect(bus.stats().dropped['publish-failed']).toBe(0)
    expect(bus.stats().buffered).toBe(20)
    expect(bus.health()).toMatchObject({ status: 'degraded', lastPublishError: 'broker restarting' })
    // Backing off: a few attempts, not a hot loop.
    const calls = backend.publishBatchCalls
    expect(calls).toBeLessThan(20)
    backend.failWith = undefined
    await waitUntil(() => backend.published.length === 20, { timeoutMs: 3000 })
    expect(backend.published.map((e) => e.data)).toEqual([...Array(20).keys()])
    const s = bus.stats()
    expect(s.droppedTotal).toBe(0)
    expect(s.retried).toBeGreaterThanOrEqual(60)
    expect(bus.health().status).toBe('ok')
  })

  it('events emitted while retrying keep their place behind the retried ones; overflow is bounded', async () => {
    const { bus, backend } = await makeBus({ bufferSize: 10, batchSize: 10, maxRetryDelayMs: 20 })
    backend.failWith = new ConnectionError('down')
    for (let i = 0; i < 6; i++) bus.emit('t.x', i)
    await waitUntil(() => bus.stats().flushFailures >= 1)
    for (let i = 6; i < 14; i++) bus.emit('t.x', i)
    const s = bus.stats()
    expect(s.buffered).toBe(10)
    expect(s.dropped['drop-oldest']).toBe(4)
    backend.failWith = undefined
    expect(await bus.flush(3000)).toBe(true)
    expect(backend.published.map((e) => e.data)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
  })

  it('a non-retryable failure drops the batch as publish-failed, counted', async () => {
    const { bus, backend } = await makeBus()
    backend.failWith = new Error('schema rejected')
    for (let i = 0; i < 5; i++) bus.emit('t.x', i)
    await bus.flush(1000)
    expect(bus.stats()).toMatchObject({ flushFailures: 1, retried: 0, buffered: 0 })
    expect(bus.stats().dropped['publish-failed']).toBe(5)
  })

  it('events a batch refused one by one are retried when retryable and counted as a failed flush', async () => {
    const backend = createFakeBackend()
    const accept = backend.publishBatch.bind(backend)
    let refuse = true
    backend.publishBatch = async (inputs: readonly EventInput[]) => {
      if (!refuse) return accept(inputs)
      refuse = false
      // Odd entries refused: a retryable lock for some, a permanent refusal for one.
      const ok = inputs.filter((_, i) => i % 2 === 0)
      const receipt = await accept(ok)
      const results: BatchEntryResult[] = inputs.map((_, index) =>
        index % 2 === 0
          ? { ok: true, index, receipt: { id: String(index), topic: 't.x' } }
          : {
              ok: false,
              index,
              error: index === 1 ? new Error('too large') : new ConnectionError('database is locked'),
            },
      )
      return { results, succeeded: receipt.succeeded, failed: inputs.length - ok.length }
    }
    const { bus } = await makeBus({}, backend)
    for (let i = 0; i < 6; i++) bus.emit('t.x', i)
    expect(await bus.flush(3000)).toBe(true)
    expect(backend.published.map((e) => e.data)).toEqual([0, 2, 4, 3, 5])
    expect(bus.stats()).toMatchObject({ flushFailures: 1, retried: 2, flushed: 5 })
    expect(bus.stats().dropped['publish-failed']).toBe(1)
  })
})

describe('ObservabilityBus backend disconnected', () => {
  it('is visible in stats and health and warned about once, not silent until close', async () => {
    const logger = recordingLogger()
    const { bus, backend } = await makeBus({ logger })
    expect(bus.stats().backendConnected).toBe(true)
    expect(bus.health()).toMatchObject({ status: 'ok', healthy: true, problems: [] })
    await backend.disconnect()
    for (let i = 0; i < 3; i++) bus.emit('t.x', i)
    await waitUntil(() => logger.lines.some(([level]) => level === 'warn'), { timeoutMs: 2000 })
    // Several flusher turns later, still one warning.
    const turns = Date.now() + 60
    await waitUntil(() => Date.now() >= turns)
    expect(logger.lines.filter(([level]) => level === 'warn')).toEqual([
      ['warn', 'telemetry backend disconnected: events wait in the buffer until it is back'],
    ])
    expect(bus.stats()).toMatchObject({ backendConnected: false, buffered: 3 })
    expect(bus.prometheus()).toContain('omnibus_telemetry_backend_connected 0\n')
    const h = bus.health()
    expect(h).toMatchObject({ status: 'down', healthy: false, backendConnected: false })
    expect(typeof h.disconnectedSince).toBe('number')
    expect(h.problems[0]).toMatch(/fake backend is disconnected; events wait in the buffer \(3\/10000\)/)
    await backend.connect()
    await waitUntil(() => backend.published.length === 3, { timeoutMs: 2000 })
    expect(logger.lines.at(-1)).toEqual(['info', 'telemetry backend connected again'])
    expect(bus.health()).toMatchObject({ status: 'ok', backendConnected: true })
    expect(bus.health().disconnectedSince).toBeUndefined()
  })

  it('a batch refused because the backend went away mid-flush is kept for when it is back', async () => {
    const { bus, backend } = await makeBus({ maxRetryDelayMs: 20 })
    const accept = backend.publishBatch.bind(backend)
    let first = true
    backend.publishBatch = async (inputs: readonly EventInput[]) => {
      if (first) {
        first = false
        await backend.disconnect()
        const { NotConnectedError } = await import('../src/errors.ts')
        throw new NotConnectedError('fake', 'publishBatch')
      }
      return accept(inputs)
    }
    bus.emit('t.x', 1)
    await waitUntil(() => bus.stats().flushFailures === 1)
    expect(bus.stats()).toMatchObject({ buffered: 1, backendConnected: false })
    await backend.connect()
    await waitUntil(() => backend.published.length === 1, { timeoutMs: 2000 })
    expect(bus.stats().droppedTotal).toBe(0)
  })
})

describe('ObservabilityBus sampling keeps tool calls whole', () => {
  it('tool.start and tool.end of one call are kept or sampled out together', async () => {
    const original = Math.random
    let x = 0
    Math.random = () => {
      x = (x + 0.37) % 1
      return x
    }
    try {
      const { bus, backend } = await makeBus({ bufferSize: 10_000, sampling: { rates: { 'tool.*': 0.5 } } })
      for (let i = 0; i < 200; i++) bus.startTool('search', { i }).end({ ok: i })
      await bus.flush()
      const starts = new Set<string>()
      const ends = new Set<string>()
      for (const e of backend.published as OmnibusEvent<{ callId: string }>[]) {
        ;(e.topic === 'tool.start' ? starts : ends).add(e.data.callId)
      }
      expect(starts.size).toBeGreaterThan(50)
      expect(starts.size).toBeLessThan(150)
      expect([...ends].sort()).toEqual([...starts].sort())
      expect(bus.stats().sampledOut).toBe(2 * (200 - starts.size))
    } finally {
      Math.random = original
    }
  })

  it('the failed end of a call whose start was sampled out is kept while sampling keeps errors', async () => {
    const { bus, backend } = await makeBus({ sampling: { rates: { 'tool.*': 0 } } })
    bus.startTool('search').end('fine')
    bus.startTool('search').fail(new Error('index missing'))
    await bus.flush()
    expect(backend.published.map((e) => e.topic)).toEqual(['tool.end'])
    expect(backend.published[0]?.data).toMatchObject({ success: false, error: { message: 'index missing' } })
    const end = backend.published[0] as OmnibusEvent<{ durationMs?: number }>
    expect(typeof end.data.durationMs).toBe('number')
  })
})

describe('ObservabilityBus trace context', () => {
  it('telemetry emitted while an event is handled carries that event trace context', async () => {
    const { bus, backend } = await makeBus()
    const parent = {
      id: 'p-1',
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'k=v' },
    } as unknown as OmnibusEvent
    runWithEventContext(parent, () => {
      bus.emit('tool.start', { tool: 'x' })
      bus.emit('tool.start', { tool: 'y' }, { headers: { traceparent: 'own' } })
    })
    await bus.flush()
    expect(backend.published[0]?.headers).toEqual(parent.headers)
    expect(backend.published[1]?.headers).toEqual({ traceparent: 'own' })
  })
})
