/**
 * `startOmnibusTelemetry` over OTLP/gRPC: spans and metrics sent to a real collector's gRPC
 * endpoint (chosen by the standard variables, then by options) reach the test's receiver. The
 * code under test is given only the gRPC port, so whatever arrives came over gRPC.
 */
import { waitFor } from '@omnibus/conformance'
import { startOmnibusTelemetry } from '@omnibus/otel'
import { SpanKind as ApiSpanKind, context, trace } from '@opentelemetry/api'
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest'
import { describeWithTool, toolPath } from '../setup/services.ts'
import { type Collector, type ReceivedMetric, SpanKind, startCollector } from './collector.ts'

describeWithTool('otelcol', 'startOmnibusTelemetry over OTLP/gRPC', () => {
  let collector: Collector
  beforeAll(async () => {
    collector = await startCollector(toolPath('otelcol') as string)
  })
  afterAll(async () => {
    await collector?.stop()
  })
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  function pointOf(metric: ReceivedMetric | undefined, run: string): Record<string, unknown> | undefined {
    return metric?.dataPoints.find((p) =>
      (p.attributes as Array<{ key: string; value: { stringValue?: string } }> | undefined)?.some(
        (a) => a.key === 'it.run' && a.value.stringValue === run,
      ),
    )
  }

  async function sendAndCheck(telemetry: ReturnType<typeof startOmnibusTelemetry>, service: string) {
    const run = Math.random().toString(36).slice(2, 10)
    const tracer = telemetry.tracerProvider.getTracer('omnibus-it')
    const parent = tracer.startSpan(`send ${run}`, { kind: ApiSpanKind.PRODUCER })
    tracer
      .startSpan(
        `process ${run}`,
        { kind: ApiSpanKind.CONSUMER, attributes: { 'it.run': run } },
        trace.setSpan(context.active(), parent),
      )
      .end()
    parent.end()
    const counter = telemetry.meterProvider.getMeter('omnibus-it').createCounter('it.grpc.jobs')
    counter.add(2, { 'it.run': run })
    counter.add(1, { 'it.run': run })
    await telemetry.forceFlush()

    const spans = await collector.waitForSpans(
      `both spans of run ${run} over gRPC`,
      (all) => all.filter((s) => s.name.endsWith(run)).length >= 2,
    )
    const p = spans.find((s) => s.name === `send ${run}`)
    const c = spans.find((s) => s.name === `process ${run}`)
    expect(p?.traceId).toBe(parent.spanContext().traceId)
    expect(p?.spanId).toBe(parent.spanContext().spanId)
    expect(p?.kind).toBe(SpanKind.producer)
    expect(c?.traceId).toBe(p?.traceId)
    expect(c?.parentSpanId).toBe(p?.spanId)
    expect(c?.kind).toBe(SpanKind.consumer)
    expect(c?.attributes['it.run']).toBe(run)
    expect(c?.resource['service.name']).toBe(service)

    await waitFor(
      () => collector.metrics().some((m) => m.name === 'it.grpc.jobs' && pointOf(m, run) !== undefined),
      { timeoutMs: 20_000, message: `the it.grpc.jobs point of run ${run} over gRPC`, intervalMs: 25 },
    )
    const metric = collector.metrics().find((m) => m.name === 'it.grpc.jobs' && pointOf(m, run) !== undefined)
    expect(metric?.kind).toBe('sum')
    expect(metric?.resource['service.name']).toBe(service)
    // A counter made without a value type records doubles.
    expect(pointOf(metric, run)?.asDouble).toBe(3)
  }

  it('sends spans and metrics to the gRPC endpoint named by OTEL_EXPORTER_OTLP_PROTOCOL=grpc', async () => {
    vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc')
    vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', collector.grpcEndpoint)
    vi.stubEnv('OTEL_SERVICE_NAME', 'grpc-from-env')
    const telemetry = startOmnibusTelemetry({ registerGlobals: false, logs: false })
    try {
      expect(telemetry.protocols).toEqual({ traces: 'grpc', metrics: 'grpc' })
      await sendAndCheck(telemetry, 'grpc-from-env')
    } finally {
      await telemetry.shutdown()
    }
  })

  it('sends spans and metrics over gRPC when the options say so', async () => {
    const telemetry = startOmnibusTelemetry({
      registerGlobals: false,
      serviceName: 'grpc-from-options',
      protocol: 'grpc',
      endpoint: collector.grpcEndpoint,
      // Sent as gRPC metadata; the collector does not pass it on, so only its setup is exercised.
      headers: { 'x-api-key': 'it-key' },
      logs: false,
    })
    try {
      expect(telemetry.protocols).toEqual({ traces: 'grpc', metrics: 'grpc' })
      await sendAndCheck(telemetry, 'grpc-from-options')
    } finally {
      await telemetry.shutdown()
    }
  })
})
