import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { runWithEventContext } from '../src/backend.ts'
import {
  BufferFullError,
  CapabilityError,
  ConfigurationError,
  compositeExporter,
  filteringExporter,
  jsonLinesExporter,
  loggerExporter,
  MODEL_CALL_TOPIC,
  ObservabilityBus,
  type ObservabilityBusOptions,
  type OmnibusEvent,
  PRIORITY_HEADER,
  silentLogger,
} from '../src/index.ts'
import { recordingExporter, waitUntil } from '../src/testing.ts'
import { createFakeBackend } from './fake-backend.ts'
import { observabilityBuses } from './observability-buses.ts'

const { makeBus, track } = observabilityBuses()

describe('ObservabilityBus emit and flush', () => {
  it('emit returns synchronously and the flusher publishes in batches of batchSize', async () => {
    const { bus, backend } = await makeBus({ batchSize: 10 })
    for (let i = 0; i < 25; i++) expect(bus.emit('tool.start', { i })).toBe(true)
    expect(backend.published).toHaveLength(0)
    await bus.flush()
    expect(backend.published.map((e) => (e.data as { i: number }).i)).toEqual([...Array(25).keys()])
    expect(backend.publishBatchCalls).toBe(3)
    const stats = bus.stats()
    expect(stats).toMatchObject({ emitted: 25, flushed: 25, buffered: 0, batches: 3, droppedTotal: 0 })
    expect(backend.published[0]?.guarantee).toBe('at-most-once')
  })

  it('the background flusher sends without an explicit flush, within the interval', async () => {
    const { bus, backend } = await makeBus({ flushIntervalMs: 10 })
    bus.emit('lifecycle.started', { ok: true })
    await waitUntil(() => backend.published.length === 1, { timeoutMs: 2000 })
    expect(bus.stats().flushed).toBe(1)
  })

  it('a subscriber receives emitted telemetry at-most-once by default', async () => {
    const { bus } = await makeBus()
    const got: OmnibusEvent[] = []
    const sub = await bus.subscribe('metric.*', (e) => {
      got.push(e)
    })
    bus.emitMetric('latency', 42, 'ms', { route: '/x' })
    await waitUntil(() => got.length === 1)
    expect(got[0]?.topic).toBe('metric.latency')
    expect(got[0]?.data).toEqual({ name: 'latency', value: 42, unit: 'ms', tags: { route: '/x' } })
    await bus.close()
    expect(sub.active).toBe(false)
  })

  it('subscribes with the weakest guarantee a backend offers when it has no at-most-once', async () => {
    const { bus, backend } = await makeBus({}, createFakeBackend({ guarantees: ['at-least-once'] }))
    const got: OmnibusEvent[] = []
    const sub = await bus.subscribe('a.*', (e) => void got.push(e))
    bus.emit('a.b', 1)
    await waitUntil(() => got.length === 1)
    await expect(bus.subscribe('a.*', () => {}, { guarantee: 'at-most-once' })).rejects.toBeInstanceOf(
      CapabilityError,
    )
    expect(backend.published).toHaveLength(1)
    await sub.unsubscribe()
  })

  it('never throws: invalid topics and undefined data are counted as invalid', async () => {
    const { bus, backend } = await makeBus()
    expect(bus.emit('bad topic!', 1)).toBe(false)
    expect(bus.emit(42 as unknown as string, 1)).toBe(false)
    expect(bus.emit('ok.topic', undefined)).toBe(true)
    expect(bus.emit('ok.topic', 1)).toBe(true)
    await bus.flush()
    expect(backend.published).toHaveLength(1)
    expect(bus.stats().dropped.invalid).toBe(3)
  })

  it('carries headers, priority and causation from the handled event', async () => {
    const { bus, backend } = await makeBus()
    const parent = { id: 'parent-1', correlationId: 'conv-1' } as OmnibusEvent
    runWithEventContext(parent, () => {
      bus.emit('tool.start', {}, { headers: { traceparent: '00-abc-def-01' }, priority: 'high' })
    })
    await bus.flush()
    const e = backend.published[0]
    expect(e?.headers).toMatchObject({ traceparent: '00-abc-def-01', [PRIORITY_HEADER]: 'high' })
    expect(e?.causationId).toBe('parent-1')
    expect(e?.correlationId).toBe('conv-1')
  })

  it('validates options with messages naming the field', () => {
    const b = createFakeBackend()
    expect(() => new ObservabilityBus(b, { bufferSize: 0 })).toThrow(/bufferSize/)
    expect(() => new ObservabilityBus(b, { overflow: 'nope' as 'block' })).toThrow(/overflow/)
    expect(() => new ObservabilityBus(b, { sampling: { defaultRate: 2 } })).toThrow(ConfigurationError)
    expect(() => new ObservabilityBus(b, { warningThreshold: 0 })).toThrow(/warningThreshold/)
  })
})

describe('ObservabilityBus overflow', () => {
  async function stalled(options: ObservabilityBusOptions) {
    const backend = createFakeBackend()
    let release!: () => void
    backend.stall = new Promise<void>((r) => {
      release = r
    })
    const made = await makeBus({ bufferSize: 10, batchSize: 5, ...options }, backend)
    return { ...made, release }
  }

  it('drop-oldest keeps the newest events and counts the dropped ones', async () => {
    const { bus, backend, release } = await stalled({ overflow: 'drop-oldest', batchSize: 100 })
    for (let i = 0; i < 30; i++) bus.emit('t.x', i)
    expect(bus.stats().buffered).toBe(10)
    expect(bus.stats().dropped['drop-oldest']).toBe(20)
    release()
    await bus.flush()
    expect(backend.published.map((e) => e.data)).toEqual([20, 21, 22, 23, 24, 25, 26, 27, 28, 29])
  })

  it('drop-newest keeps the oldest events', async () => {
    const { bus, backend, release } = await stalled({ overflow: 'drop-newest', batchSize: 100 })
    const results = Array.from({ length: 15 }, (_, i) => bus.emit('t.x', i))
    expect(results.filter(Boolean)).toHaveLength(10)
    expect(bus.stats().dropped['drop-newest']).toBe(5)
    release()
    await bus.flush()
    expect(backend.published.map((e) => e.data)).toEqual([...Array(10).keys()])
  })

  it('reject: emit returns false and emitAsync rejects with BufferFullError', async () => {
    const { bus, release } = await stalled({ overflow: 'reject', batchSize: 100 })
    for (let i = 0; i < 10; i++) expect(bus.emit('t.x', i)).toBe(true)
    expect(bus.emit('t.x', 10)).toBe(false)
    await expect(bus.emitAsync('t.x', 11)).rejects.toBeInstanceOf(BufferFullError)
    expect(bus.stats().dropped.reject).toBe(2)
    bus.configureSampling({ rates: { 'noise.*': 0 } })
    await expect(bus.emitAsync('noise.x', 12)).resolves.toBe(false)
    expect(bus.stats()).toMatchObject({ sampledOut: 1, emitted: 13 })
    expect(bus.stats().dropped.reject).toBe(2)
    release()
  })

  it('block: emitAsync waits for room and loses nothing', async () => {
    const { bus, backend, release } = await stalled({ overflow: 'block' })
    const sends: Promise<boolean>[] = []
    for (let i = 0; i < 40; i++) sends.push(bus.emitAsync('t.x', i))
    let settled = 0
    for (const s of sends) void s.then(() => settled++)
    await waitUntil(() => settled >= 10)
    expect(settled).toBeLessThan(40)
    release()
    expect(await Promise.all(sends)).toEqual(Array(40).fill(true))
    await bus.flush()
    expect(backend.published.map((e) => e.data)).toEqual([...Array(40).keys()])
    expect(bus.stats().droppedTotal).toBe(0)
  })

  it('critical events are kept when the buffer is full', async () => {
    const { bus, backend, release } = await stalled({ overflow: 'drop-newest', batchSize: 100 })
    for (let i = 0; i < 10; i++) bus.emit('t.x', i)
    expect(bus.emit('t.x', 'lost')).toBe(false)
    expect(bus.emit('audit.breach', 'kept', { priority: 'critical' })).toBe(true)
    release()
    await bus.flush()
    expect(backend.published.map((e) => e.data)).toContain('kept')
    expect(backend.published.map((e) => e.data)).not.toContain('lost')
  })

  it('warns once per excursion above the threshold', async () => {
    const warnings: number[] = []
    const { bus, release } = await stalled({
      overflow: 'drop-oldest',
      warningThreshold: 0.5,
      onWarning: (s) => warnings.push(s.buffered),
    })
    for (let i = 0; i < 9; i++) bus.emit('t.x', i)
    expect(warnings).toEqual([5])
    expect(bus.stats().warnings).toBe(1)
    release()
  })

  it('recovers after the backend catches up', async () => {
    const { bus, backend, release } = await stalled({ overflow: 'drop-oldest' })
    for (let i = 0; i < 50; i++) bus.emit('t.x', i)
    release()
    await bus.flush()
    for (let i = 0; i < 5; i++) bus.emit('t.after', i)
    await bus.flush()
    expect(backend.published.filter((e) => e.topic === 't.after')).toHaveLength(5)
  })

  it('a failing backend is counted, never thrown', async () => {
    const { bus, backend } = await makeBus()
    backend.failWith = new Error('broker down')
    bus.emit('t.x', 1)
    bus.emit('t.x', 2)
    await bus.flush()
    expect(bus.stats()).toMatchObject({ flushFailures: 1, flushed: 0 })
    expect(bus.stats().dropped['publish-failed']).toBe(2)
    backend.failWith = undefined
    bus.emit('t.x', 3)
    await bus.flush()
    expect(bus.stats().flushed).toBe(1)
  })

  it('keeps events buffered while the backend is disconnected and sends them once it is back', async () => {
    const { bus, backend } = await makeBus()
    await backend.disconnect()
    bus.emit('t.x', 1)
    expect(await bus.flush()).toBe(false)
    expect(bus.stats().buffered).toBe(1)
    await backend.connect()
    await waitUntil(() => backend.published.length === 1, { timeoutMs: 2000 })
    expect(bus.stats()).toMatchObject({ buffered: 0, flushed: 1, droppedTotal: 0 })
  })

  it('flush and close give up on a stalled backend after their deadline', async () => {
    const backend = createFakeBackend()
    backend.stall = new Promise<void>(() => {})
    const { bus } = await makeBus({ batchSize: 2 }, backend)
    for (let i = 0; i < 5; i++) bus.emit('t.x', i)
    expect(await bus.flush(50)).toBe(false)
    const t0 = Date.now()
    await bus.close({ timeoutMs: 50 })
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(bus.stats().dropped.closed).toBeGreaterThan(0)
  })

  it('emits after close are dropped as closed', async () => {
    const { bus } = await makeBus()
    await bus.close()
    expect(bus.emit('t.x', 1)).toBe(false)
    expect(bus.stats().dropped.closed).toBe(1)
  })
})

describe('ObservabilityBus sampling', () => {
  const seeded = () => {
    let x = 0
    return () => {
      x = (x + 0.37) % 1
      return x
    }
  }

  it('applies the default rate and per-pattern rates, keeping errors and critical events', async () => {
    const original = Math.random
    Math.random = seeded()
    try {
      const { bus, backend } = await makeBus({
        bufferSize: 100_000,
        sampling: { defaultRate: 0.5, rates: { 'metric.**': 0, 'tool.*': 1 } },
      })
      for (let i = 0; i < 1000; i++) {
        bus.emit('metric.tokens', i)
        bus.emit('tool.start', i)
        bus.emit('misc.event', i)
        bus.emit('db.error', i)
        bus.emit('error.timeout', i)
        bus.emit('metric.audit', i, { priority: 'critical' })
      }
      await bus.flush()
      const count = (t: string) => backend.published.filter((e) => e.topic === t).length
      expect(count('metric.tokens')).toBe(0)
      expect(count('tool.start')).toBe(1000)
      expect(count('db.error')).toBe(1000)
      expect(count('error.timeout')).toBe(1000)
      expect(count('metric.audit')).toBe(1000)
      expect(count('misc.event')).toBeGreaterThan(350)
      expect(count('misc.event')).toBeLessThan(650)
      expect(bus.stats().sampledOut).toBe(1000 + (1000 - count('misc.event')))
    } finally {
      Math.random = original
    }
  })

  it('configureSampling replaces the rates', async () => {
    const { bus } = await makeBus()
    bus.configureSampling({ defaultRate: 0 })
    expect(bus.emit('a.b', 1)).toBe(false)
    expect(bus.sampling.defaultRate).toBe(0)
    expect(bus.stats().sampledOut).toBe(1)
  })
})

describe('ObservabilityBus convenience emitters', () => {
  it('emitError, emitLifecycle and tool spans with duration', async () => {
    const { bus, backend } = await makeBus({ sampling: { defaultRate: 0 } })
    bus.emitError(new TypeError('boom'), { step: 3 })
    bus.configureSampling({ defaultRate: 1 })
    bus.emitLifecycle('started', { run: 1 })
    const span = bus.startTool('read_file', { path: '/x' })
    span.end({ bytes: 10 })
    span.end({ bytes: 11 })
    bus.startTool('search').fail(new Error('no index'))
    await bus.flush()
    const [err, life, start, end, start2, end2] = backend.published
    expect(err?.topic).toBe('error.raised')
    expect(err?.data).toMatchObject({ error: { name: 'TypeError', message: 'boom' }, context: { step: 3 } })
    expect(life).toMatchObject({ topic: 'lifecycle.started', data: { name: 'started', run: 1 } })
    expect(start).toMatchObject({ topic: 'tool.start', data: { tool: 'read_file', args: { path: '/x' } } })
    expect(end?.topic).toBe('tool.end')
    expect(end?.data).toMatchObject({ tool: 'read_file', success: true, result: { bytes: 10 } })
    expect(typeof (end as OmnibusEvent<{ durationMs: unknown }>).data.durationMs).toBe('number')
    expect((end as OmnibusEvent<{ callId: string }>).data.callId).toBe(
      (start as OmnibusEvent<{ callId: string }>).data.callId,
    )
    expect(start2?.topic).toBe('tool.start')
    expect(end2?.data).toMatchObject({ tool: 'search', success: false, error: { message: 'no index' } })
    expect(backend.published).toHaveLength(6)
  })
})

describe('ObservabilityBus.emitModelCall', () => {
  it('emits model.call with the documented fields, and nothing else', async () => {
    const { bus, backend } = await makeBus({ source: 'bus-source' })
    expect(
      bus.emitModelCall({
        model: 'gpt-4o-mini',
        provider: 'openai',
        inputTokens: 812,
        outputTokens: 164,
        durationMs: 1430.5,
        timeToFirstTokenMs: 310,
        agent: 'planner',
        session: 'conv-7',
      }),
    ).toBe(true)
    expect(bus.emitModelCall({ model: 'claude-3-5-haiku', inputTokens: 0, outputTokens: 0 })).toBe(true)
    await bus.flush()
    const [full, minimal] = backend.published
    expect(full?.topic).toBe(MODEL_CALL_TOPIC)
    expect(full?.topic).toBe('model.call')
    expect(full?.source).toBe('bus-source')
    expect(full?.data).toStrictEqual({
      model: 'gpt-4o-mini',
      provider: 'openai',
      inputTokens: 812,
      outputTokens: 164,
      durationMs: 1430.5,
      timeToFirstTokenMs: 310,
      agent: 'planner',
      session: 'conv-7',
      success: true,
    })
    expect(full?.headers[PRIORITY_HEADER]).toBeUndefined()
    expect(minimal?.data).toStrictEqual({
      model: 'claude-3-5-haiku',
      inputTokens: 0,
      outputTokens: 0,
      success: true,
    })
  })

  it('a failed call carries the error, priority high, and is kept by sampling like errors', async () => {
    const { bus, backend } = await makeBus({ sampling: { defaultRate: 0 } })
    const limited = Object.assign(new Error('429 Too Many Requests'), { name: 'RateLimitError', code: 429 })
    expect(bus.emitModelCall({ model: 'gpt-4o', inputTokens: 10, outputTokens: 20 })).toBe(false)
    expect(bus.emitModelCall({ model: 'gpt-4o', inputTokens: 10, outputTokens: 0, error: limited })).toBe(
      true,
    )
    expect(bus.emitModelCall({ model: 'gpt-4o', inputTokens: 3, outputTokens: 0, success: false })).toBe(true)
    expect(bus.emitModelCall({ model: 'o3', inputTokens: 1, outputTokens: 0, error: 'timeout' })).toBe(true)
    await bus.flush()
    expect(backend.published.map((e) => e.data)).toStrictEqual([
      {
        model: 'gpt-4o',
        inputTokens: 10,
        outputTokens: 0,
        success: false,
        error: { name: 'RateLimitError', message: '429 Too Many Requests', code: 429 },
      },
      { model: 'gpt-4o', inputTokens: 3, outputTokens: 0, success: false },
      {
        model: 'o3',
        inputTokens: 1,
        outputTokens: 0,
        success: false,
        error: { name: 'string', message: 'timeout' },
      },
    ])
    expect(backend.published.every((e) => e.headers[PRIORITY_HEADER] === 'high')).toBe(true)
    expect(bus.stats()).toMatchObject({ emitted: 4, sampledOut: 1, flushed: 3 })
  })

  it('with keepErrors off, a failed call is sampled like any other', async () => {
    const { bus } = await makeBus({ sampling: { defaultRate: 0, keepErrors: false } })
    expect(
      bus.emitModelCall({ model: 'gpt-4o', inputTokens: 1, outputTokens: 0, error: new Error('x') }),
    ).toBe(false)
    expect(bus.stats().sampledOut).toBe(1)
  })

  it('never throws: invalid calls are counted as dropped invalid and warned about once', async () => {
    const warnings: string[] = []
    const logger = { ...silentLogger, warn: (message: string) => warnings.push(message) }
    const { bus, backend } = await makeBus({ logger })
    const hostile = {
      model: 'gpt-4o',
      outputTokens: 1,
      get inputTokens(): number {
        throw new Error('getter')
      },
    }
    const bad: unknown[] = [
      null,
      undefined,
      42,
      {},
      { model: '', inputTokens: 1, outputTokens: 1 },
      { model: 7, inputTokens: 1, outputTokens: 1 },
      { model: 'm', inputTokens: -1, outputTokens: 1 },
      { model: 'm', inputTokens: Number.NaN, outputTokens: 1 },
      { model: 'm', inputTokens: 1, outputTokens: Number.POSITIVE_INFINITY },
      { model: 'm', inputTokens: '12', outputTokens: 1 },
      { model: 'm', inputTokens: 1, outputTokens: 1, durationMs: -5 },
      { model: 'm', inputTokens: 1, outputTokens: 1, timeToFirstTokenMs: Number.NaN },
      { model: 'm', inputTokens: 1, outputTokens: 1, agent: 3 },
      { model: 'm', inputTokens: 1, outputTokens: 1, success: 'yes' },
      hostile,
    ]
    for (const call of bad) {
      expect(() => bus.emitModelCall(call as Parameters<ObservabilityBus['emitModelCall']>[0])).not.toThrow()
      expect(bus.emitModelCall(call as Parameters<ObservabilityBus['emitModelCall']>[0])).toBe(false)
    }
    expect(bus.emitModelCall({ model: 'm', inputTokens: 1, outputTokens: 1 })).toBe(true)
    await bus.flush()
    expect(backend.published).toHaveLength(1)
    expect(bus.stats()).toMatchObject({ emitted: bad.length * 2 + 1, flushed: 1 })
    expect(bus.stats().dropped.invalid).toBe(bad.length * 2)
    expect(warnings.filter((w) => w.startsWith('model call dropped'))).toHaveLength(1)
  })
})

describe('exporters', () => {
  it('receive every flushed batch; failures are counted per exporter, never thrown', async () => {
    const rec = recordingExporter()
    const broken = {
      name: 'broken',
      export() {
        throw new Error('disk full')
      },
    }
    const { bus } = await makeBus({ exporters: [rec, broken] })
    bus.emit('a.b', 1)
    bus.emit('a.c', 2)
    await bus.flush()
    expect(rec.events.map((e) => e.data)).toEqual([1, 2])
    expect(bus.stats().exporterFailures).toBe(1)
    expect(bus.stats().exporterFailuresByName).toEqual({ broken: 1 })
    expect(bus.prometheus()).toContain('omnibus_telemetry_exporter_failures_total{exporter="broken"} 1')
  })

  it('filteringExporter passes only matching topics; composite runs all and reports failures', async () => {
    const a = recordingExporter()
    const b = recordingExporter()
    const failing = {
      name: 'failing',
      async export() {
        throw new Error('nope')
      },
    }
    const composite = compositeExporter([
      filteringExporter(a, { include: ['tool.*'], exclude: ['tool.end'] }),
      failing,
      b,
    ])
    const { bus } = await makeBus({ exporters: [composite] })
    bus.emit('tool.start', 1)
    bus.emit('tool.end', 2)
    bus.emit('metric.x', 3)
    await bus.flush()
    expect(a.events.map((e) => e.topic)).toEqual(['tool.start'])
    expect(b.events).toHaveLength(3)
    expect(composite.failures).toEqual({ failing: 1 })
    expect(bus.stats().exporterFailures).toBe(1)
  })

  it('jsonLinesExporter writes CloudEvents lines and rotates by size', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-jsonl-'))
    const file = path.join(dir, 'events.jsonl')
    const exporter = jsonLinesExporter({ path: file, maxBytes: 2000, maxFiles: 2 })
    const { bus } = await makeBus({ exporters: [exporter], batchSize: 5 })
    for (let i = 0; i < 60; i++) bus.emit('tool.start', { i, pad: 'x'.repeat(50) })
    await bus.close()
    const files = readdirSync(dir).sort()
    expect(files).toEqual(['events.jsonl', 'events.jsonl.1', 'events.jsonl.2'])
    for (const f of files) {
      const text = readFileSync(path.join(dir, f), 'utf8')
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(2000)
      for (const line of text.trim().split('\n'))
        expect(JSON.parse(line)).toMatchObject({ type: 'tool.start' })
    }
    const last = readFileSync(file, 'utf8').trim().split('\n').at(-1) as string
    expect(JSON.parse(last).data.i).toBe(59)
  })

  it('jsonLinesExporter writes the good events of a batch and counts the one it cannot encode', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-jsonl-'))
    const file = path.join(dir, 'events.jsonl')
    const { bus } = await makeBus({ exporters: [jsonLinesExporter({ path: file })] })
    bus.emit('a.b', { n: 1 })
    bus.emit('a.b', { n: 2n })
    bus.emit('a.b', { n: 3 })
    await bus.flush()
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    expect(lines.map((l) => JSON.parse(l).data.n)).toEqual([1, 3])
    expect(bus.stats().exporterFailures).toBe(1)
  })

  it('loggerExporter speaks pino (fields, msg) and console (msg, fields)', async () => {
    const pinoCalls: unknown[][] = []
    const pinoLike = {
      levels: { values: {} },
      child() {
        return this
      },
      info: (...a: unknown[]) => pinoCalls.push(['info', ...a]),
      error: (...a: unknown[]) => pinoCalls.push(['error', ...a]),
    }
    const consoleCalls: unknown[][] = []
    const consoleLike = { info: (...a: unknown[]) => consoleCalls.push(a) }
    const { bus } = await makeBus({ exporters: [loggerExporter(pinoLike), loggerExporter(consoleLike)] })
    bus.emit('tool.start', { a: 1 })
    bus.emit('db.error', { b: 2 })
    await bus.flush()
    expect(pinoCalls[0]?.[0]).toBe('info')
    expect(pinoCalls[0]?.[1]).toMatchObject({ topic: 'tool.start', data: { a: 1 } })
    expect(pinoCalls[0]?.[2]).toBe('omnibus tool.start')
    expect(pinoCalls[1]?.[0]).toBe('error')
    expect(consoleCalls[0]?.[0]).toBe('[omnibus] tool.start')
    expect(consoleCalls[1]?.[1]).toMatchObject({ topic: 'db.error' })
  })
})

describe('stats and Prometheus text', () => {
  it('reports every counter in exposition format', async () => {
    const { bus } = await makeBus({ sampling: { rates: { 'noise.*': 0 } } })
    bus.emit('noise.a', 1)
    bus.emit('real.a', 1)
    await bus.flush()
    const text = bus.prometheus({ service: 'api' })
    expect(text).toContain('# TYPE omnibus_telemetry_emitted_total counter')
    expect(text).toContain('omnibus_telemetry_emitted_total{service="api"} 2')
    expect(text).toContain('omnibus_telemetry_sampled_out_total{service="api"} 1')
    expect(text).toContain('omnibus_telemetry_flushed_total{service="api"} 1')
    expect(text).toContain('omnibus_telemetry_dropped_total{service="api",reason="drop-oldest"} 0')
    expect(text).toMatch(/omnibus_telemetry_buffered\{service="api"\} 0\n/)
    for (const line of text.trim().split('\n')) {
      expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?\d+(\.\d+)?)$/)
    }
  })
})

describe('ObservabilityBus.connect', () => {
  it('accepts a backend and starts it', async () => {
    const backend = createFakeBackend()
    const bus = await ObservabilityBus.connect(backend, { logger: silentLogger })
    track(bus)
    expect(backend.isConnected).toBe(true)
    await bus.close()
    expect(backend.isConnected).toBe(true)
  })

  it('a bad URL is a ConfigurationError', async () => {
    await expect(ObservabilityBus.connect('nope://x')).rejects.toBeInstanceOf(ConfigurationError)
    expect(CapabilityError).toBeDefined()
  })
})
