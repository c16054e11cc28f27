import { ObservabilityBus, type OmnibusEvent, silentLogger } from '@omnibus/core'
import { runWithEventContext } from '@omnibus/core/backend'
import { createMemoryBackend } from '@omnibus/memory'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { hrTimeToMilliseconds } from '@opentelemetry/core'
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs'
import {
  AggregationTemporality,
  DataPointType,
  type HistogramMetricData,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions'
import {
  ATTR_GEN_AI_AGENT_NAME,
  ATTR_GEN_AI_CONVERSATION_ID,
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
  ATTR_GEN_AI_TOKEN_TYPE,
  ATTR_GEN_AI_TOOL_CALL_ARGUMENTS,
  ATTR_GEN_AI_TOOL_CALL_ID,
  ATTR_GEN_AI_TOOL_NAME,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
  METRIC_GEN_AI_CLIENT_TOKEN_USAGE,
} from '@opentelemetry/semantic-conventions/incubating'
import { afterEach, describe, expect, it } from 'vitest'
import {
  ATTR_TOOL_UNFINISHED,
  OPERATION_DURATION_BUCKETS,
  OpenTelemetryExporter,
  type OpenTelemetryExporterOptions,
  TOKEN_USAGE_BUCKETS,
} from '../src/genai-exporter.ts'

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const PARENT_SPAN = 'b7ad6b7169203331'
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_SPAN}-01`

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function setup(options: Omit<OpenTelemetryExporterOptions, 'tracerProvider'> = {}) {
  const spans = new InMemorySpanExporter()
  const tracerProvider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter: spans })],
  })
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    exportIntervalMillis: 3_600_000,
  })
  const meterProvider = new MeterProvider({ readers: [reader] })
  const logExporter = new InMemoryLogRecordExporter()
  const loggerProvider = new LoggerProvider({
    processors: [new SimpleLogRecordProcessor({ exporter: logExporter })],
  })
  const exporter = new OpenTelemetryExporter({ tracerProvider, meterProvider, loggerProvider, ...options })
  const backend = createMemoryBackend()
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    flushIntervalMs: 5,
    exporters: [exporter],
  })
  await bus.start()
  cleanups.push(async () => {
    await bus.close()
    await backend.disconnect()
    await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown(), loggerProvider.shutdown()])
  })
  const metricsNow = async (): Promise<MetricData[]> => {
    await reader.forceFlush()
    return (
      metricExporter
        .getMetrics()
        .at(-1)
        ?.scopeMetrics.flatMap((s) => s.metrics) ?? []
    )
  }
  return { bus, exporter, spans, logExporter, metricsNow }
}

const handled = (headers: Record<string, string>) =>
  ({ id: 'handled-1', topic: 'agent.planner.task', headers }) as unknown as OmnibusEvent

describe('tool calls become execute_tool spans', () => {
  it('with the real start and end times, the GenAI attributes, under the handled event trace', async () => {
    const { bus, spans } = await setup({ recordToolContent: true })
    let started = 0
    runWithEventContext(handled({ traceparent: TRACEPARENT }), () => {
      started = Date.now()
      const tool = bus.startTool('read_file', { path: '/etc/hosts' })
      const until = performance.now() + 30
      while (performance.now() < until) {
        // A tool that takes about 30 ms.
      }
      tool.end({ bytes: 12 })
    })
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    expect(spans.getFinishedSpans()).toHaveLength(1)
    if (span === undefined) throw new Error('no span')
    expect(span.name).toBe('execute_tool read_file')
    expect(span.kind).toBe(SpanKind.INTERNAL)
    expect(span.spanContext().traceId).toBe(TRACE_ID)
    expect(span.parentSpanContext?.spanId).toBe(PARENT_SPAN)
    expect(span.attributes).toMatchObject({
      [ATTR_GEN_AI_OPERATION_NAME]: 'execute_tool',
      [ATTR_GEN_AI_TOOL_NAME]: 'read_file',
      [ATTR_GEN_AI_TOOL_CALL_ARGUMENTS]: '{"path":"/etc/hosts"}',
    })
    expect(typeof span.attributes[ATTR_GEN_AI_TOOL_CALL_ID]).toBe('string')
    const startEvent = hrTimeToMilliseconds(span.startTime)
    expect(Math.abs(startEvent - started)).toBeLessThanOrEqual(5)
    const duration = hrTimeToMilliseconds(span.endTime) - startEvent
    expect(duration).toBeGreaterThanOrEqual(29)
    expect(duration).toBeLessThan(200)
    expect(span.status.code).toBe(SpanStatusCode.UNSET)
  })

  it('tool arguments are not recorded unless asked for; a span is a root without trace context', async () => {
    const { bus, spans } = await setup()
    bus.startTool('search', { q: 'secret' }).end('ok')
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    expect(span?.attributes[ATTR_GEN_AI_TOOL_CALL_ARGUMENTS]).toBeUndefined()
    expect(span?.parentSpanContext).toBeUndefined()
  })

  it('a failed tool sets status ERROR, error.type and records the exception', async () => {
    const { bus, spans } = await setup()
    const err = Object.assign(new Error('no such index'), { code: 'ENOINDEX' })
    bus.startTool('search').fail(err)
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'no such index' })
    expect(span?.attributes[ATTR_ERROR_TYPE]).toBe('ENOINDEX')
    const exception = span?.events.find((e) => e.name === 'exception')
    expect(exception?.attributes).toMatchObject({
      'exception.type': 'Error',
      'exception.message': 'no such index',
    })
  })

  it('an end without its start (start sampled out, end kept as a failure) makes a span from its duration', async () => {
    const { bus, spans } = await setup()
    bus.configureSampling({ rates: { 'tool.*': 0 } })
    bus.emitToolEnd('fetch', { durationMs: 250, error: new Error('timeout') })
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    expect(span?.name).toBe('execute_tool fetch')
    if (span === undefined) throw new Error('no span')
    expect(hrTimeToMilliseconds(span.endTime) - hrTimeToMilliseconds(span.startTime)).toBeCloseTo(250, 0)
    expect(span.status.code).toBe(SpanStatusCode.ERROR)
  })

  it('starts waiting for their end are bounded: the oldest is ended as unfinished', async () => {
    const { bus, spans, exporter } = await setup({ maxOpenToolSpans: 2 })
    bus.emitToolStart('a')
    bus.emitToolStart('b')
    const c = bus.emitToolStart('c')
    await bus.flush()
    expect(spans.getFinishedSpans().map((s) => [s.name, s.attributes[ATTR_TOOL_UNFINISHED]])).toEqual([
      ['execute_tool a', true],
    ])
    bus.emitToolEnd('c', { callId: c })
    await bus.flush()
    expect(spans.getFinishedSpans().map((s) => s.name)).toEqual(['execute_tool a', 'execute_tool c'])
    expect(exporter.stats()).toMatchObject({ openToolSpans: 1, unfinishedToolSpans: 1, toolSpans: 2 })
  })
})

describe('model calls become chat spans and GenAI client metrics', () => {
  it('span name, kind, times, usage attributes and the histograms with the advised buckets', async () => {
    const { bus, spans, metricsNow } = await setup()
    runWithEventContext(handled({ traceparent: TRACEPARENT }), () => {
      bus.emitModelCall({
        model: 'gpt-4o-mini',
        provider: 'openai',
        inputTokens: 812,
        outputTokens: 164,
        durationMs: 1430,
        timeToFirstTokenMs: 310,
        agent: 'planner',
        session: 'conv-7',
      })
    })
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    if (span === undefined) throw new Error('no span')
    expect(span.name).toBe('chat gpt-4o-mini')
    expect(span.kind).toBe(SpanKind.CLIENT)
    expect(span.spanContext().traceId).toBe(TRACE_ID)
    expect(span.attributes).toEqual({
      [ATTR_GEN_AI_OPERATION_NAME]: 'chat',
      [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-4o-mini',
      [ATTR_GEN_AI_PROVIDER_NAME]: 'openai',
      [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 812,
      [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: 164,
      [ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]: 0.31,
      [ATTR_GEN_AI_AGENT_NAME]: 'planner',
      [ATTR_GEN_AI_CONVERSATION_ID]: 'conv-7',
    })
    expect(hrTimeToMilliseconds(span.endTime) - hrTimeToMilliseconds(span.startTime)).toBeCloseTo(1430, 0)

    const all = await metricsNow()
    const usage = all.find(
      (m) => m.descriptor.name === METRIC_GEN_AI_CLIENT_TOKEN_USAGE,
    ) as HistogramMetricData
    expect(usage.dataPointType).toBe(DataPointType.HISTOGRAM)
    expect(usage.descriptor.unit).toBe('{token}')
    const byType = Object.fromEntries(usage.dataPoints.map((p) => [p.attributes[ATTR_GEN_AI_TOKEN_TYPE], p]))
    expect(byType.input?.value.sum).toBe(812)
    expect(byType.output?.value.sum).toBe(164)
    expect(byType.input?.attributes).toEqual({
      [ATTR_GEN_AI_OPERATION_NAME]: 'chat',
      [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-4o-mini',
      [ATTR_GEN_AI_PROVIDER_NAME]: 'openai',
      [ATTR_GEN_AI_TOKEN_TYPE]: 'input',
    })
    expect(byType.input?.value.buckets.boundaries).toEqual(TOKEN_USAGE_BUCKETS)
    const duration = all.find(
      (m) => m.descriptor.name === METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
    ) as HistogramMetricData
    expect(duration.descriptor.unit).toBe('s')
    expect(duration.dataPoints[0]?.value.sum).toBeCloseTo(1.43, 5)
    expect(duration.dataPoints[0]?.value.buckets.boundaries).toEqual(OPERATION_DURATION_BUCKETS)
  })

  it('a failed call sets status ERROR, records the exception and tags the duration with error.type', async () => {
    const { bus, spans, metricsNow } = await setup()
    bus.emitModelCall({
      model: 'claude-3-5-haiku',
      provider: 'anthropic',
      inputTokens: 10,
      outputTokens: 0,
      durationMs: 50,
      error: Object.assign(new Error('overloaded'), { name: 'APIError' }),
    })
    await bus.flush()
    const [span] = spans.getFinishedSpans()
    expect(span?.status.code).toBe(SpanStatusCode.ERROR)
    expect(span?.attributes[ATTR_ERROR_TYPE]).toBe('APIError')
    expect(span?.events.map((e) => e.name)).toEqual(['exception'])
    const duration = (await metricsNow()).find(
      (m) => m.descriptor.name === METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
    ) as HistogramMetricData
    expect(duration.dataPoints[0]?.attributes[ATTR_ERROR_TYPE]).toBe('APIError')
  })
})

describe('metric, lifecycle and error events', () => {
  it('metric.* events become a counter, a histogram or a gauge by unit or kind, with tags as attributes', async () => {
    const { bus, metricsNow } = await setup()
    bus.emitMetric('requests', 2, '{request}', { route: '/a' })
    bus.emitMetric('requests', 3, '{request}', { route: '/a' })
    bus.emitMetric('latency', 40, 'ms')
    bus.emitMetric('latency', 60, 'ms')
    bus.emitMetric('queue_depth', 7)
    bus.emitMetric('queue_depth', 4)
    bus.emit('metric.cache_hits', { name: 'cache_hits', value: 5, kind: 'counter' })
    await bus.flush()
    const all = await metricsNow()
    const find = (name: string) => all.find((m) => m.descriptor.name === name)
    expect(find('requests')?.dataPointType).toBe(DataPointType.SUM)
    expect(find('requests')?.dataPoints[0]).toMatchObject({ value: 5, attributes: { route: '/a' } })
    expect(find('latency')?.dataPointType).toBe(DataPointType.HISTOGRAM)
    expect((find('latency') as HistogramMetricData).dataPoints[0]?.value).toMatchObject({
      sum: 100,
      count: 2,
    })
    expect(find('queue_depth')?.dataPointType).toBe(DataPointType.GAUGE)
    expect(find('queue_depth')?.dataPoints[0]?.value).toBe(4)
    expect(find('cache_hits')?.dataPointType).toBe(DataPointType.SUM)
  })

  it('lifecycle events are INFO log records and error events ERROR log records, in the trace', async () => {
    const { bus, logExporter } = await setup()
    runWithEventContext(handled({ traceparent: TRACEPARENT }), () => {
      bus.emitLifecycle('agent_started', { agent: 'planner' })
      bus.emitError(new TypeError('bad plan'))
    })
    await bus.flush()
    const records = logExporter.getFinishedLogRecords()
    expect(records.map((r) => [r.eventName, r.severityText])).toEqual([
      ['lifecycle.agent_started', 'INFO'],
      ['error.raised', 'ERROR'],
    ])
    expect(records[0]?.spanContext?.traceId).toBe(TRACE_ID)
    expect(JSON.parse(records[0]?.body as string)).toEqual({ name: 'agent_started', agent: 'planner' })
    expect(records[1]?.attributes).toMatchObject({
      'exception.type': 'TypeError',
      'exception.message': 'bad plan',
    })
  })

  it('malformed events are skipped and counted, never thrown', async () => {
    const { bus, exporter, spans } = await setup()
    bus.emit('tool.start', { nothing: true })
    bus.emit('model.call', 'not an object')
    bus.emit('metric.x', { value: 'NaN' })
    await bus.flush()
    expect(spans.getFinishedSpans()).toHaveLength(0)
    expect(exporter.stats().skipped).toBe(3)
    expect(bus.stats().exporterFailures).toBe(0)
  })
})
