import { fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { silentLogger } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { createSqliteBackend } from '@omnibus/sqlite'
import { context, SpanKind, trace } from '@opentelemetry/api'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { instrumentOmnibus, type OmnibusInstrumentation } from '../src/index.ts'
import { isChildOf, only, type TestSdk, testSdk } from './tracing.ts'

interface ChildSpan {
  readonly name: string
  readonly kind: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly attributes: Record<string, unknown>
}

const worker = fileURLToPath(new URL('./fixtures/sqlite-worker.ts', import.meta.url))
let sdk: TestSdk
let handle: OmnibusInstrumentation
let dir: string

beforeAll(() => {
  sdk = testSdk()
  handle = instrumentOmnibus({ tracerProvider: sdk.tracerProvider, meterProvider: sdk.meterProvider })
  dir = mkdtempSync(join(tmpdir(), 'omnibus-otel-xp-'))
})

afterAll(async () => {
  handle.unregister()
  await sdk.shutdown()
  rmSync(dir, { recursive: true, force: true })
})

it('one trace across two processes on SQLite: producer here, consumer and its publish there, consumer here', async () => {
  const file = join(dir, 'events.db')
  const backend = createSqliteBackend({ path: file, logger: silentLogger, pollIntervalMs: 5 })
  await backend.connect()
  const child = fork(worker, [file, 'xp.task', 'xp.done'], {
    execArgv: ['--conditions=@omnibus/source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const messages: Array<{ type: string; spans?: ChildSpan[] }> = []
  child.on('message', (m) => messages.push(m as { type: string }))
  try {
    await waitUntil(() => messages.some((m) => m.type === 'ready'), {
      timeoutMs: 20_000,
      description: 'the worker process to subscribe',
    })
    const replies: string[] = []
    await backend.subscribe('xp.done', (e) => {
      replies.push(e.id)
    })
    const root = sdk.tracerProvider.getTracer('test').startSpan('request')
    await context.with(trace.setSpan(context.active(), root), () =>
      backend.publish({ topic: 'xp.task', data: { n: 1 } }),
    )
    root.end()
    await waitUntil(() => replies.length === 1, {
      timeoutMs: 20_000,
      description: 'the reply from the worker',
    })
    const here = await waitUntil(
      () => {
        const s = sdk.exporter.getFinishedSpans()
        return s.some((x) => x.name === 'process xp.done') ? s : undefined
      },
      { description: 'the reply consumer span' },
    )
    child.send({ type: 'report' })
    const report = await waitUntil(() => messages.find((m) => m.type === 'spans'), {
      timeoutMs: 20_000,
      description: "the worker's spans",
    })
    const there = report.spans as ChildSpan[]
    const sendTask = only(here, 'send xp.task')
    const processDone = only(here, 'process xp.done')
    const processTask = there.find((s) => s.name === 'process xp.task') as ChildSpan
    const sendDone = there.find((s) => s.name === 'send xp.done') as ChildSpan
    expect(processTask, 'the worker traced its delivery').toBeDefined()
    expect(sendDone, 'the worker traced its publish').toBeDefined()

    const traceId = only(here, 'request').spanContext().traceId
    expect(new Set([...here.map((s) => s.spanContext().traceId), ...there.map((s) => s.traceId)])).toEqual(
      new Set([traceId]),
    )
    expect(isChildOf(sendTask, only(here, 'request'))).toBe(true)
    expect(processTask.parentSpanId, 'consumer there under the producer here').toBe(
      sendTask.spanContext().spanId,
    )
    expect(processTask.kind).toBe(SpanKind[SpanKind.CONSUMER])
    expect(processTask.attributes['messaging.consumer.group.name']).toBe('workers')
    expect(sendDone.parentSpanId, 'its publish under its consumer span').toBe(processTask.spanId)
    expect(processDone.parentSpanContext?.spanId, 'the reply consumed here under the publish there').toBe(
      sendDone.spanId,
    )
  } finally {
    if (child.exitCode === null) child.kill()
    await backend.disconnect()
  }
})
