/**
 * What tracing costs per event: publish + deliver on the memory backend, one handler, with and
 * without Omnibus's OpenTelemetry instrumentation. Run from the repository root:
 *   node --conditions=@omnibus/source packages/otel/bench/propagation.ts [events] [rounds]
 *
 * Sides, measured in the same process with rounds interleaved (best round of each reported):
 * - no hook: Omnibus as it is without @omnibus/otel;
 * - no-op tracer: instrumentOmnibus() with no SDK registered (the API's no-op tracer and meter),
 *   which is what a library user who has not set up OpenTelemetry pays;
 * - SDK traces only / metrics only: each half of the next side alone;
 * - SDK: the real trace SDK sampling every span into a BatchSpanProcessor whose exporter drops
 *   them, the AsyncLocalStorage context manager, and the metrics SDK with a reader; every event
 *   makes a producer and a consumer span and carries a traceparent.
 */
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import {
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  SpanKind,
  trace,
} from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  CompositePropagator,
  ExportResultCode,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from '@opentelemetry/core'
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { BatchSpanProcessor, type SpanExporter, TracerProvider } from '@opentelemetry/sdk-trace'
import { instrumentOmnibus, type OmnibusInstrumentation } from '../src/index.ts'

const events = Number(process.argv[2] ?? 100_000)
const rounds = Number(process.argv[3] ?? 7)

let exported = 0
const dropAll: SpanExporter = {
  export(spans, done) {
    exported += spans.length
    done({ code: ExportResultCode.SUCCESS })
  },
  async shutdown() {},
}

class QuietReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const contextManager = new AsyncLocalStorageContextManager()
const tracerProvider = new TracerProvider({
  spanProcessors: [
    new BatchSpanProcessor({ exporter: dropAll, maxQueueSize: 65_536, maxExportBatchSize: 4096 }),
  ],
})
const meterProvider = new MeterProvider({ readers: [new QuietReader()] })

const backend = createMemoryBackend({ logger: silentLogger, queueCapacity: events + 1 })
await backend.connect()
let handled = 0
let done: (() => void) | undefined
await backend.subscribe('bench.*', () => {
  if (++handled === events) done?.()
})

/** Publishes `events` events (awaiting every 1000) and waits until the handler saw them all. */
async function run(): Promise<number> {
  handled = 0
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  const started = performance.now()
  let pending: Array<Promise<unknown>> = []
  for (let i = 0; i < events; i++) {
    pending.push(backend.publish({ topic: 'bench.propagation', data: { i } }))
    if (pending.length === 1000) {
      await Promise.all(pending)
      pending = []
    }
  }
  await Promise.all(pending)
  if (handled < events) await finished
  return ((performance.now() - started) * 1e6) / events
}

type Side = { readonly name: string; setUp(): void; tearDown(): Promise<void> | void }
let handle: OmnibusInstrumentation | undefined
const sides: Side[] = [
  { name: 'no hook', setUp() {}, tearDown() {} },
  {
    name: 'hook, no-op tracer and meter',
    setUp() {
      handle = instrumentOmnibus()
    },
    tearDown() {
      handle?.unregister()
    },
  },
  {
    name: 'hook, SDK traces only',
    setUp() {
      context.setGlobalContextManager(contextManager.enable())
      handle = instrumentOmnibus({ tracerProvider })
    },
    async tearDown() {
      handle?.unregister()
      await tracerProvider.forceFlush()
      context.disable()
    },
  },
  {
    name: 'hook, SDK metrics only',
    setUp() {
      handle = instrumentOmnibus({ meterProvider })
    },
    tearDown() {
      handle?.unregister()
    },
  },
  {
    name: 'hook, SDK + BatchSpanProcessor',
    setUp() {
      context.setGlobalContextManager(contextManager.enable())
      handle = instrumentOmnibus({ tracerProvider, meterProvider })
    },
    async tearDown() {
      handle?.unregister()
      await tracerProvider.forceFlush()
      context.disable()
    },
  },
]

/**
 * The SDK's own price for what the SDK side does per event, without Omnibus: a producer span
 * with its attributes, injected into a header map, then extracted, a consumer span with its
 * attributes and link, and a call inside its context.
 */
async function sdkAlone(): Promise<number> {
  const tracer = tracerProvider.getTracer('bench')
  const propagator = new CompositePropagator({
    propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
  })
  let calls = 0
  const started = performance.now()
  for (let i = 0; i < events; i++) {
    const producer = tracer.startSpan(
      'send bench.propagation',
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'omnibus_memory',
          'messaging.destination.name': 'bench.propagation',
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'send',
        },
      },
      context.active(),
    )
    const headers: Record<string, string> = {}
    propagator.inject(trace.setSpan(context.active(), producer), headers, defaultTextMapSetter)
    producer.end()
    const parent = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter)
    const link = trace.getSpanContext(parent)
    const consumer = tracer.startSpan(
      'process bench.propagation',
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'omnibus_memory',
          'messaging.destination.name': 'bench.propagation',
          'messaging.destination.subscription.name': 'bench.*',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.message.id': String(i),
          'omnibus.delivery.attempt': 1,
        },
        ...(link === undefined ? {} : { links: [{ context: link }] }),
      },
      parent,
    )
    context.with(trace.setSpan(parent, consumer), () => {
      calls++
    })
    consumer.end()
  }
  if (calls !== events) throw new Error('the calibration loop lost calls')
  return ((performance.now() - started) * 1e6) / events
}

const best = new Map<string, number[]>()
// One warm-up round per side, not counted.
for (let r = 0; r <= rounds; r++) {
  for (const side of sides) {
    side.setUp()
    const ns = await run()
    await side.tearDown()
    if (r > 0) best.set(side.name, [...(best.get(side.name) ?? []), ns])
  }
}
await backend.disconnect()
context.setGlobalContextManager(contextManager.enable())
const alone: number[] = []
for (let r = 0; r <= rounds; r++) {
  const ns = await sdkAlone()
  if (r > 0) alone.push(ns)
}
await tracerProvider.forceFlush()
context.disable()
alone.sort((a, b) => a - b)

const base = Math.min(...(best.get('no hook') ?? [Number.NaN]))
console.log(
  `propagation bench: ${events} events publish + deliver on memory, best and median of ${rounds} rounds, ns per event (Node ${process.version})`,
)
for (const side of sides) {
  const all = (best.get(side.name) ?? []).sort((a, b) => a - b)
  const min = all[0] ?? Number.NaN
  const median = all[Math.floor(all.length / 2)] ?? Number.NaN
  const vs = side.name === 'no hook' ? '' : `  (${(((min - base) / base) * 100).toFixed(1)}% vs no hook)`
  console.log(
    `  ${side.name.padEnd(34)} best ${min.toFixed(0).padStart(6)}  median ${median.toFixed(0).padStart(6)}${vs}`,
  )
}
console.log(
  `  ${'SDK alone, same spans, no Omnibus'.padEnd(34)} best ${(alone[0] ?? Number.NaN).toFixed(0).padStart(6)}  median ${(alone[Math.floor(alone.length / 2)] ?? Number.NaN).toFixed(0).padStart(6)}`,
)
console.log(`  spans exported: ${exported}`)
