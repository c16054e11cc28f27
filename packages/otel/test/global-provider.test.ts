import { type OmnibusEvent, silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { createMemoryBackend } from '@omnibus/memory'
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { afterAll, expect, it } from 'vitest'
import { instrumentOmnibus } from '../src/index.ts'
import { contextOf, isChildOf, only } from './tracing.ts'

const handle = instrumentOmnibus()
afterAll(() => {
  handle.unregister()
  trace.disable()
  context.disable()
})

it('with no SDK registered the hook steps aside, the trace context still flows, and an SDK registered later is used', async () => {
  const backend = createMemoryBackend({ logger: silentLogger })
  await backend.connect()
  const seen: OmnibusEvent[] = []
  await backend.subscribe('a.*', async (e) => {
    seen.push(e)
    if (e.topic === 'a.first') await backend.publish({ topic: 'a.second', data: null })
  })
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  await backend.publish({ topic: 'a.first', data: null, headers: { traceparent } })
  await waitUntil(() => seen.length === 2, { description: 'both deliveries' })
  // No-op tracer: Omnibus writes no span of its own, and core carries the caller's context on.
  expect(seen.map((e) => e.headers.traceparent)).toEqual([traceparent, traceparent])

  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  const exporter = new InMemorySpanExporter()
  trace.setGlobalTracerProvider(
    new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }),
  )
  seen.length = 0
  await backend.publish({ topic: 'a.first', data: null, headers: { traceparent } })
  await waitUntil(() => seen.length === 2, { description: 'both deliveries' })
  const spans = await waitUntil(
    () => (exporter.getFinishedSpans().length >= 4 ? exporter.getFinishedSpans() : undefined),
    { description: 'the spans of the SDK registered after installation' },
  )
  const send = only(spans, 'send a.first')
  expect(send.parentSpanContext?.spanId, 'the caller-given traceparent is the parent').toBe(
    '00f067aa0ba902b7',
  )
  expect(isChildOf(only(spans, 'process a.first'), send)).toBe(true)
  expect(isChildOf(only(spans, 'send a.second'), only(spans, 'process a.first'))).toBe(true)
  expect(contextOf(seen[1]?.headers ?? {})?.spanId).toBe(only(spans, 'send a.second').spanContext().spanId)
  await backend.disconnect()
})
