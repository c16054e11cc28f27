/**
 * The pipeline the end-to-end tests stand on: a span exported by the official OpenTelemetry SDK
 * over OTLP/HTTP protobuf passes through a real collector and reaches the test's receiver with its
 * trace id, parentage, kind, attributes, status and resource intact.
 */
import { SpanKind as ApiSpanKind, context, SpanStatusCode, trace } from '@opentelemetry/api'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { describeWithTool, toolPath } from '../setup/services.ts'
import { type Collector, SpanKind, startCollector } from './collector.ts'

describeWithTool('otelcol', 'OpenTelemetry Collector pipeline', () => {
  let collector: Collector
  beforeAll(async () => {
    collector = await startCollector(toolPath('otelcol') as string)
  })
  afterAll(async () => {
    await collector?.stop()
  })

  it('forwards spans exported with the SDK over OTLP/HTTP protobuf to the receiver, intact', async () => {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'pipeline-check' }),
      spanProcessors: [
        new SimpleSpanProcessor({
          exporter: new OTLPTraceExporter({ url: `${collector.endpoint}/v1/traces` }),
        }),
      ],
    })
    const tracer = provider.getTracer('omnibus-it')
    const run = Math.random().toString(36).slice(2, 10)
    const parent = tracer.startSpan(`parent ${run}`, { kind: ApiSpanKind.PRODUCER })
    const child = tracer.startSpan(
      `child ${run}`,
      { kind: ApiSpanKind.CONSUMER, attributes: { 'it.run': run, 'it.count': 3, 'it.ok': true } },
      trace.setSpan(context.active(), parent),
    )
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'on purpose' })
    child.end()
    parent.end()
    await provider.forceFlush()
    await provider.shutdown()

    const spans = await collector.waitForSpans(
      `both spans of run ${run} at the receiver`,
      (all) => all.filter((s) => s.name.endsWith(run)).length >= 2,
    )
    const p = spans.find((s) => s.name === `parent ${run}`)
    const c = spans.find((s) => s.name === `child ${run}`)
    expect(p?.traceId).toBe(parent.spanContext().traceId)
    expect(p?.spanId).toBe(parent.spanContext().spanId)
    expect(p?.parentSpanId).toBe('')
    expect(p?.kind).toBe(SpanKind.producer)
    expect(c?.traceId).toBe(p?.traceId)
    expect(c?.parentSpanId).toBe(p?.spanId)
    expect(c?.kind).toBe(SpanKind.consumer)
    expect(c?.attributes).toEqual({ 'it.run': run, 'it.count': 3, 'it.ok': true })
    expect(c?.statusCode).toBe(2)
    expect(c?.resource['service.name']).toBe('pipeline-check')
    expect(c?.scope).toBe('omnibus-it')
    expect(c && c.endTimeUnixNano >= c.startTimeUnixNano).toBe(true)
  })
})
