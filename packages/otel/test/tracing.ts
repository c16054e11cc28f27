/**
 * The OpenTelemetry SDK as tests use it: an in-memory span exporter, a metric reader collected on
 * demand, the AsyncLocalStorage context manager, and helpers to read spans by name and parentage.
 */
import { context, type SpanContext, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import {
  AggregationTemporality,
  type DataPoint,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics'
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace'

class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** The SDK pieces of one test file. */
export interface TestSdk {
  readonly exporter: InMemorySpanExporter
  readonly tracerProvider: TracerProvider
  readonly meterProvider: MeterProvider
  /** Every data point of metric `name`, with its attributes. */
  points(name: string): Promise<Array<DataPoint<unknown>>>
  /** The sum of a counter's points whose attributes include `where`. */
  count(name: string, where?: Record<string, unknown>): Promise<number>
  shutdown(): Promise<void>
}

/** Sets up the SDK with in-memory exporters and the global context manager. */
export function testSdk(): TestSdk {
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  const exporter = new InMemorySpanExporter()
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] })
  const reader = new OnDemandReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  const points = async (name: string): Promise<Array<DataPoint<unknown>>> => {
    const { resourceMetrics } = (await reader.collect()) as { resourceMetrics: ResourceMetrics }
    const out: Array<DataPoint<unknown>> = []
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        if (metric.descriptor.name === name) out.push(...(metric.dataPoints as Array<DataPoint<unknown>>))
      }
    }
    return out
  }
  return {
    exporter,
    tracerProvider,
    meterProvider,
    points,
    async count(name, where = {}) {
      let sum = 0
      for (const p of await points(name)) {
        if (Object.entries(where).every(([k, v]) => p.attributes[k] === v)) sum += p.value as number
      }
      return sum
    },
    async shutdown() {
      await tracerProvider.shutdown()
      await meterProvider.shutdown()
      context.disable()
    },
  }
}

/** The one finished span called `name` (fails when there are none or several). */
export function only(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name)
  if (found.length !== 1) {
    throw new Error(
      `expected one span "${name}", found ${found.length} among: ${spans.map((s) => s.name).join(', ')}`,
    )
  }
  return found[0] as ReadableSpan
}

/** Whether `child`'s parent is `parent`. */
export function isChildOf(child: ReadableSpan, parent: ReadableSpan): boolean {
  return (
    child.parentSpanContext?.spanId === parent.spanContext().spanId &&
    child.spanContext().traceId === parent.spanContext().traceId
  )
}

/** The span context a W3C `traceparent` header names, read with the official propagator. */
export function contextOf(headers: Readonly<Record<string, string>>): SpanContext | undefined {
  const ctx = new W3CTraceContextPropagator().extract(context.active(), headers, {
    get: (carrier, key) => (carrier as Record<string, string>)[key],
    keys: (carrier) => Object.keys(carrier as object),
  })
  return trace.getSpanContext(ctx)
}
