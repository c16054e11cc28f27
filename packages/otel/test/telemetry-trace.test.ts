import { AgentMessageBus, type EventBackend, ObservabilityBus, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { context, SpanKind, trace } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace'
import { describe, expect, it } from 'vitest'
import { OpenTelemetryExporter } from '../src/index.ts'
import { instrumentedFile } from './instrumented.ts'
import { isChildOf, only } from './tracing.ts'

const { sdk, backends, afterTest } = instrumentedFile('omnibus-otel-telemetry-')

/** A connected backend and an ObservabilityBus on it exporting to the test SDK. */
async function busOn(make: () => EventBackend): Promise<{ backend: EventBackend; bus: ObservabilityBus }> {
  const backend = make()
  await backend.connect()
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    flushIntervalMs: 5,
    exporters: [new OpenTelemetryExporter({ tracerProvider: sdk.tracerProvider })],
  })
  await bus.start()
  afterTest(async () => {
    await bus.close()
    await backend.disconnect({ drainTimeoutMs: 1000 })
  })
  return { backend, bus }
}

const tracer = () => sdk.tracerProvider.getTracer('test')

async function spansNamed(...names: string[]): Promise<ReadableSpan[]> {
  return waitUntil(
    () => {
      const all = sdk.exporter.getFinishedSpans()
      return names.every((n) => all.some((s) => s.name === n)) ? all : undefined
    },
    { timeoutMs: 10_000, description: `spans ${names.join(', ')}` },
  )
}

/** Spans about the telemetry's own transport: producer or consumer spans of its topics. */
const telemetryTopics = new Set(['tool.start', 'tool.end', 'model.call', 'lifecycle.step'])
function transportOfTelemetry(all: readonly ReadableSpan[]): string[] {
  return all
    .filter(
      (s) =>
        (s.kind === SpanKind.PRODUCER || s.kind === SpanKind.CONSUMER) &&
        (telemetryTopics.has(String(s.attributes['messaging.destination.name'])) ||
          s.attributes['messaging.batch.message_count'] !== undefined),
    )
    .map((s) => s.name)
}

const modelCall = { model: 'm-1', provider: 'openai', inputTokens: 10, outputTokens: 2, durationMs: 40 }

describe.each(Object.keys(backends))('telemetry emitted in a handler on %s', (name) => {
  const make = backends[name] as () => EventBackend

  it('tool and model spans are children of the consumer span, and the bus makes no producer spans', async () => {
    const { backend, bus } = await busOn(make)
    await backend.subscribe(
      'orders.placed',
      async () => {
        const tool = bus.startTool('lookup', { id: 1 })
        tool.end({ found: true })
        bus.emitModelCall(modelCall)
        bus.emitLifecycle('step', { n: 1 })
        await bus.flush()
      },
      { group: 'billing' },
    )
    const root = tracer().startSpan('checkout')
    await context.with(trace.setSpan(context.active(), root), () =>
      backend.publish({ topic: 'orders.placed', data: { n: 1 } }),
    )
    root.end()
    const all = await spansNamed('execute_tool lookup', 'chat m-1', 'process orders.placed')
    const send = only(all, 'send orders.placed')
    const processed = only(all, 'process orders.placed')
    const tool = only(all, 'execute_tool lookup')
    const chat = only(all, 'chat m-1')
    expect(isChildOf(processed, send)).toBe(true)
    expect(tool.parentSpanContext?.spanId, 'the tool span sits under the consumer span').toBe(
      processed.spanContext().spanId,
    )
    expect(isChildOf(chat, processed), 'the model span sits under the consumer span').toBe(true)
    expect(transportOfTelemetry(all), 'no spans of the telemetry batches').toEqual([])
  })
})

describe('telemetry and the spans around it', () => {
  it("a tool run inside the application's own span is that span's child", async () => {
    const { backend, bus } = await busOn(backends.memory as () => EventBackend)
    await backend.subscribe('orders.placed', async () => {
      const step = tracer().startSpan('enrich')
      context.with(trace.setSpan(context.active(), step), () => bus.startTool('geocode').end())
      step.end()
    })
    await backend.publish({ topic: 'orders.placed', data: null })
    await bus.flush()
    const all = await spansNamed('execute_tool geocode', 'enrich')
    expect(isChildOf(only(all, 'execute_tool geocode'), only(all, 'enrich'))).toBe(true)
    expect(isChildOf(only(all, 'enrich'), only(all, 'process orders.placed'))).toBe(true)
  })

  it('an agent handling a request: its tool span is a child of invoke_agent', async () => {
    const { backend, bus } = await busOn(backends.memory as () => EventBackend)
    const worker = new AgentMessageBus(backend, { agentId: 'worker' })
    const caller = new AgentMessageBus(backend, { agentId: 'caller', requestTimeoutMs: 5000 })
    afterTest(async () => {
      await caller.close()
      await worker.close()
    })
    await worker.subscribeAgent('worker', async (msg, ctx) => {
      bus.startTool('summarize').end()
      await ctx.reply({ ok: msg.id })
    })
    await caller.start()
    await caller.request('worker', 'task.summarize', { text: 'hi' })
    await bus.flush()
    const all = await spansNamed('execute_tool summarize', 'invoke_agent worker')
    expect(isChildOf(only(all, 'execute_tool summarize'), only(all, 'invoke_agent worker'))).toBe(true)
  })

  it('outside any span, telemetry starts no trace of transport spans and its tool span is a root', async () => {
    const { bus } = await busOn(backends.memory as () => EventBackend)
    bus.startTool('idle').end()
    await bus.flush()
    const all = await spansNamed('execute_tool idle')
    expect(only(all, 'execute_tool idle').parentSpanContext).toBeUndefined()
    expect(transportOfTelemetry(all)).toEqual([])
  })

  it("the bus's batches are still counted; the application's batches keep their spans", async () => {
    const { backend, bus } = await busOn(backends.memory as () => EventBackend)
    const before = await sdk.count('messaging.client.sent.messages', {
      'messaging.destination.name': 'tool.start',
    })
    const root = tracer().startSpan('work')
    context.with(trace.setSpan(context.active(), root), () => bus.startTool('count-me').end())
    await bus.flush()
    await context.with(trace.setSpan(context.active(), root), () =>
      backend.publishBatch([
        { topic: 'jobs.queued', data: 1 },
        { topic: 'jobs.queued', data: 2 },
      ]),
    )
    root.end()
    const all = await spansNamed('execute_tool count-me', 'send jobs.queued', 'work')
    expect(
      await sdk.count('messaging.client.sent.messages', { 'messaging.destination.name': 'tool.start' }),
    ).toBe(before + 1)
    const creates = all.filter((s) => s.name === 'create jobs.queued')
    expect(creates).toHaveLength(2)
    expect(isChildOf(only(all, 'send jobs.queued'), only(all, 'work'))).toBe(true)
    expect(isChildOf(only(all, 'execute_tool count-me'), only(all, 'work'))).toBe(true)
    expect(
      all.filter((s) => s.kind === SpanKind.PRODUCER).map((s) => s.name),
      'producer spans: only the application batch',
    ).toEqual(expect.arrayContaining(['send jobs.queued']))
    expect(all.filter((s) => s.kind === SpanKind.PRODUCER)).toHaveLength(3)
  })
})
