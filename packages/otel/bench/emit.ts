/**
 * ObservabilityBus `emit` with the OpenTelemetryExporter attached against without it, in one run.
 * Run from the repository root:
 *   node --conditions=@omnibus/source packages/otel/bench/emit.ts [--quick]
 *
 * Three cases, each without the exporter, with it (spans to a no-op in-memory processor, metrics
 * to an idle reader), and traced: with it, `instrumentOmnibus()` installed and every emit inside
 * an active span (as in a handler), so each kept event also captures the trace context: a
 * sampled-out topic (rate 0), tool start/end pairs that are kept, and model calls that are kept.
 * Only time inside emit calls counts; the flusher (where the exporter runs) gets the event loop
 * between chunks, as it would in an application.
 */
import { ObservabilityBus, silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics'
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace'
import { OpenTelemetryExporter } from '../src/genai-exporter.ts'
import { instrumentOmnibus } from '../src/propagation.ts'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

type Mode = 'without exporter' | 'with exporter' | 'traced'
const MODES: readonly Mode[] = ['without exporter', 'with exporter', 'traced']

const quick = process.argv.includes('--quick')
const n = quick ? 2_000_000 : 10_000_000
const yieldLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

async function run(label: string, mode: Mode, calls: number, body: (bus: ObservabilityBus) => void) {
  const withExporter = mode !== 'without exporter'
  const spans = new InMemorySpanExporter()
  const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter: spans })] })
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new InMemoryMetricExporter(0),
        exportIntervalMillis: 3_600_000,
      }),
    ],
  })
  const backend = createMemoryBackend()
  const exporters = withExporter ? [new OpenTelemetryExporter({ tracerProvider, meterProvider })] : []
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    bufferSize: 50_000,
    batchSize: 5000,
    exporters,
    sampling: { rates: { 'bench.**': 0 } },
  })
  const hook = mode === 'traced' ? instrumentOmnibus({ tracerProvider, meterProvider }) : undefined
  const span = tracerProvider.getTracer('bench').startSpan('handler')
  const active = mode === 'traced' ? trace.setSpan(context.active(), span) : context.active()
  const chunk = (): void => {
    for (let i = 0; i < 5000; i++) body(bus)
  }
  await bus.start()
  let spent = 0
  for (let done = 0; done < calls; done += 5000) {
    const t0 = performance.now()
    context.with(active, chunk)
    spent += performance.now() - t0
    await yieldLoop()
    while (bus.stats().buffered > 20_000) await yieldLoop()
  }
  await bus.flush()
  const s = bus.stats()
  const perSec = (calls / spent) * 1000
  console.log(
    `${label.padEnd(34)} ${mode.padEnd(16)} ${(perSec / 1e6).toFixed(2)}M calls/s ` +
      `(${((spent / calls) * 1e6).toFixed(0)} ns/call; flushed ${s.flushed}, sampled out ${s.sampledOut}, ` +
      `dropped ${s.droppedTotal}, exporter failures ${s.exporterFailures})`,
  )
  await bus.close()
  span.end()
  hook?.unregister()
  await backend.disconnect()
  await tracerProvider.shutdown()
  await meterProvider.shutdown()
}

const payload = { v: 1 }
const call = {
  model: 'gpt-4o-mini',
  provider: 'openai',
  inputTokens: 800,
  outputTokens: 160,
  durationMs: 1400,
}
for (let round = 1; round <= 2; round++) {
  console.log(`round ${round}`)
  for (const mode of MODES) {
    await run('emit, sampled out (rate 0)', mode, n, (bus) => bus.emit('bench.metric', payload))
  }
  for (const mode of MODES) {
    await run('tool start + end (kept)', mode, n / 20, (bus) => bus.startTool('search').end())
  }
  for (const mode of MODES) {
    await run('emitModelCall (kept)', mode, n / 20, (bus) => bus.emitModelCall(call))
  }
}
process.exit(0)
