/**
 * One trace across processes and brokers, as an OTLP backend receives it through a real
 * OpenTelemetry Collector. This process starts a trace and publishes a task; an agent in another
 * process (the same process on the in-process memory backend) handles it, runs a tool, calls a
 * model and publishes a reply that this process handles. Each process exports with the official
 * SDK over OTLP/HTTP protobuf; the collector forwards everything to a receiver here. What must
 * arrive, on every backend: one trace id, the producer span under the trace's root, the consumer
 * span of the other process under the producer span, the agent's `execute_tool` and `chat` spans
 * under that consumer span (they are recorded from the ObservabilityBus, whose events carry the
 * context active when they were emitted), the reply's producer span under the consumer span and
 * its consumer span back here, with the messaging and GenAI attributes, no spans of the bus's own
 * telemetry batches, and the GenAI token-usage metric.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  createBackend,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  silentLogger,
} from '@omnibus/core'
import { context, type SpanContext, trace } from '@opentelemetry/api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { describeWithService, describeWithTool, requireEndpoint, toolPath } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { type Collector, type ReceivedSpan, SpanKind, startCollector } from './collector.ts'
import { modelCall, names, serveOneTask, startTelemetry, type TaskSeen, TOOL } from './scenario.ts'

const CHILD = fileURLToPath(new URL('./consumer-child.ts', import.meta.url))
const PRODUCER_SERVICE = 'omnibus-it-producer'
const CONSUMER_SERVICE = 'omnibus-it-consumer'

describeWithTool('otelcol', 'OpenTelemetry end to end through a collector', () => {
  let collector: Collector
  let otel: ReturnType<typeof startTelemetry>
  const backends: EventBackend[] = []
  const children: ChildProcess[] = []

  beforeAll(async () => {
    collector = await startCollector(toolPath('otelcol') as string)
    otel = startTelemetry(PRODUCER_SERVICE, collector.endpoint)
  })
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await Promise.allSettled(backends.map((b) => b.disconnect()))
    await otel?.stop()
    await collector?.stop()
  })

  async function connect(url: string): Promise<EventBackend> {
    const backend = await createBackend(url)
    backends.push(backend)
    await backend.connect()
    return backend
  }

  /** Subscribes to the run's reply topic in a group of its own, from the earliest event. */
  async function awaitReply(backend: EventBackend, run: string): Promise<OmnibusEvent[]> {
    const { done, group } = names(run)
    const replies: OmnibusEvent[] = []
    await backend.subscribe(done, (e) => void replies.push(e), {
      group: `${group}-reply`,
      ...(backend.capabilities.replay ? { from: 'earliest' as const } : {}),
    })
    return replies
  }

  /** Starts a root span and publishes the run's task inside it. */
  async function publishTask(backend: EventBackend, run: string): Promise<{ root: SpanContext; id: string }> {
    const root = otel.telemetry.tracerProvider.getTracer('omnibus-it').startSpan(`e2e ${run}`)
    try {
      const receipt = await context.with(trace.setSpan(context.active(), root), () =>
        backend.publish({
          topic: names(run).task,
          data: { question: 'where' },
          correlationId: `conv-${run}`,
        }),
      )
      return { root: root.spanContext(), id: receipt.id }
    } finally {
      root.end()
    }
  }

  function startConsumer(url: string, run: string): { ready: Promise<void>; seen: Promise<TaskSeen> } {
    const child = spawn(
      process.execPath,
      ['--conditions=@omnibus/source', CHILD, url, run, collector.endpoint],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    children.push(child)
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const ready = Promise.race([
      eventually(`the consumer process (run ${run}) to subscribe`, () => out.startsWith('ready\n'), 60_000),
      exited.then((code) => {
        throw new Error(`the consumer process exited with ${code} before subscribing:\n${err}`)
      }),
    ])
    const seen = exited.then((code) => {
      if (code !== 0) throw new Error(`the consumer process exited with ${code}:\n${out}\n${err}`)
      const last = out.trim().split('\n').at(-1) as string
      return JSON.parse(last) as TaskSeen
    })
    return { ready, seen }
  }

  interface Expected {
    readonly run: string
    readonly root: SpanContext
    readonly taskId: string
    readonly system: string
    /** Whether the agent ran in another process (so in another service's resource). */
    readonly twoProcesses: boolean
    readonly seen: TaskSeen
  }

  /** Waits for the whole trace at the receiver, then checks every span of it that matters. */
  async function expectTrace(x: Expected): Promise<void> {
    const { task, done, group } = names(x.run)
    const model = modelCall(x.run)
    const traceId = x.root.traceId
    const dest = (s: ReceivedSpan) => s.attributes['messaging.destination.name']
    const isSend = (topic: string) => (s: ReceivedSpan) =>
      s.kind === SpanKind.producer && dest(s) === topic && s.attributes['messaging.operation.type'] === 'send'
    const isProcess = (topic: string) => (s: ReceivedSpan) =>
      s.kind === SpanKind.consumer && dest(s) === topic
    const isTool = (s: ReceivedSpan) => s.name === `execute_tool ${TOOL}`
    const isChat = (s: ReceivedSpan) => s.name === `chat ${model.model}`
    const wanted = [isSend(task), isProcess(task), isTool, isChat, isSend(done), isProcess(done)]
    await otel.telemetry.forceFlush()
    const spans = await collector.waitForSpans(`the spans of run ${x.run} in trace ${traceId}`, (all) => {
      const inTrace = all.filter((s) => s.traceId === traceId)
      return inTrace.some((s) => s.spanId === x.root.spanId) && wanted.every((w) => inTrace.some(w))
    })
    const inTrace = spans.filter((s) => s.traceId === traceId)
    const one = (what: string, predicate: (s: ReceivedSpan) => boolean): ReceivedSpan => {
      const found = inTrace.filter(predicate)
      expect(
        found.map((s) => s.name),
        what,
      ).toHaveLength(1)
      return found[0] as ReceivedSpan
    }
    const consumerService = x.twoProcesses ? CONSUMER_SERVICE : PRODUCER_SERVICE
    // Span ids from `span` up to the trace's root, following each parent within the trace.
    const ancestry = (span: ReceivedSpan): string[] => {
      const chain: string[] = []
      for (let at = span.parentSpanId; at !== '' && chain.length < 20; ) {
        chain.push(at)
        at = inTrace.find((s) => s.spanId === at)?.parentSpanId ?? ''
      }
      return chain
    }
    const nameOf = (spanId: string) => inTrace.find((s) => s.spanId === spanId)?.name

    const root = one('the root span', (s) => s.spanId === x.root.spanId)
    expect(root.parentSpanId).toBe('')
    expect(root.resource['service.name']).toBe(PRODUCER_SERVICE)

    const send = one(`the producer span of ${task}`, isSend(task))
    expect(send.name).toBe(`send ${task}`)
    expect(send.parentSpanId).toBe(root.spanId)
    expect(send.resource['service.name']).toBe(PRODUCER_SERVICE)
    expect(send.attributes).toMatchObject({
      'messaging.system': x.system,
      'messaging.operation.name': 'send',
      'messaging.message.id': x.taskId,
      'messaging.message.conversation_id': `conv-${x.run}`,
    })
    // What travelled in the envelope is the producer span's context.
    expect(x.seen).toEqual({
      id: x.taskId,
      correlationId: `conv-${x.run}`,
      traceparent: `00-${traceId}-${send.spanId}-01`,
    })

    const processed = one(`the consumer span of ${task}`, isProcess(task))
    expect(processed.name).toBe(`process ${task}`)
    expect(processed.parentSpanId).toBe(send.spanId)
    expect(processed.links).toContainEqual({ traceId, spanId: send.spanId })
    expect(processed.resource['service.name']).toBe(consumerService)
    expect(processed.attributes).toMatchObject({
      'messaging.system': x.system,
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.consumer.group.name': group,
      'messaging.message.id': x.taskId,
      'messaging.message.conversation_id': `conv-${x.run}`,
      'omnibus.delivery.attempt': 1,
    })
    expect(processed.startTimeUnixNano).toBeGreaterThanOrEqual(send.startTimeUnixNano)

    const tool = one(`the execute_tool span of ${TOOL}`, isTool)
    // The handler (a plain subscription, no agent span) runs in the consumer span: the tool it ran
    // is that span's child, not a sibling of it under the producer span.
    expect(nameOf(tool.parentSpanId), "the tool span's parent").toBe(processed.name)
    expect(tool.parentSpanId).toBe(processed.spanId)
    expect(ancestry(tool)).toEqual([processed.spanId, send.spanId, root.spanId])
    expect(tool.kind).toBe(SpanKind.internal)
    expect(tool.resource['service.name']).toBe(consumerService)
    expect(tool.attributes).toMatchObject({
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': TOOL,
    })
    expect(tool.attributes['gen_ai.tool.call.id']).toEqual(expect.any(String))
    // The tool slept 20 ms: its span has its real duration, not the flusher's timing.
    expect(tool.endTimeUnixNano - tool.startTimeUnixNano).toBeGreaterThanOrEqual(15_000_000n)
    expect(tool.endTimeUnixNano - tool.startTimeUnixNano).toBeLessThan(5_000_000_000n)

    const chat = one(`the chat span of ${model.model}`, isChat)
    expect(nameOf(chat.parentSpanId), "the model span's parent").toBe(processed.name)
    expect(chat.parentSpanId).toBe(processed.spanId)
    expect(chat.kind).toBe(SpanKind.client)
    expect(chat.resource['service.name']).toBe(consumerService)
    expect(chat.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': model.model,
      'gen_ai.provider.name': model.provider,
      'gen_ai.usage.input_tokens': model.inputTokens,
      'gen_ai.usage.output_tokens': model.outputTokens,
      'gen_ai.agent.name': model.agent,
      'gen_ai.conversation.id': x.run,
    })
    expect(chat.endTimeUnixNano - chat.startTimeUnixNano).toBe(BigInt(model.durationMs) * 1_000_000n)

    const reply = one(`the producer span of ${done}`, isSend(done))
    expect(reply.parentSpanId, 'a publish inside the handler is a child of its consumer span').toBe(
      processed.spanId,
    )
    expect(reply.resource['service.name']).toBe(consumerService)
    expect(reply.attributes).toMatchObject({
      'messaging.system': x.system,
      'messaging.message.conversation_id': `conv-${x.run}`,
    })
    const replied = one(`the consumer span of ${done}`, isProcess(done))
    expect(replied.parentSpanId).toBe(reply.spanId)
    expect(replied.resource['service.name']).toBe(PRODUCER_SERVICE)

    // The ObservabilityBus's flushes are Omnibus's own: no `create tool.start`, `send` batch or
    // other producer span of telemetry in the user's trace; only the task and its reply.
    expect(
      inTrace
        .filter((s) => s.kind === SpanKind.producer)
        .map((s) => s.name)
        .sort(),
      'the producer spans of the trace',
    ).toEqual([`send ${done}`, `send ${task}`].sort())

    if (x.twoProcesses) {
      expect(new Set(inTrace.map((s) => s.resource['service.name']))).toEqual(
        new Set([PRODUCER_SERVICE, CONSUMER_SERVICE]),
      )
    }
  }

  /** Waits for the run's token-usage histogram points (input and output) at the receiver. */
  async function expectTokenUsage(run: string, service: string): Promise<void> {
    const model = modelCall(run).model
    type Attr = { key: string; value: { stringValue?: string } }
    const attr = (p: Record<string, unknown>, key: string) =>
      (p.attributes as Attr[] | undefined)?.find((a) => a.key === key)?.value.stringValue
    const points = () =>
      collector
        .metrics()
        .filter((m) => m.name === 'gen_ai.client.token.usage' && m.resource['service.name'] === service)
        .flatMap((m) => m.dataPoints.map((p) => ({ kind: m.kind, unit: m.unit, ...p })))
        .filter((p) => attr(p, 'gen_ai.request.model') === model)
    await otel.telemetry.forceFlush()
    await eventually(
      `gen_ai.client.token.usage of ${model} from ${service}`,
      () => points().length >= 2,
      20_000,
    )
    const byType = new Map(points().map((p) => [attr(p, 'gen_ai.token.type'), p]))
    expect(byType.get('input')).toMatchObject({ kind: 'histogram', unit: '{token}', sum: 812 })
    expect(byType.get('output')).toMatchObject({ kind: 'histogram', unit: '{token}', sum: 164 })
  }

  /** Registers the two-process test for the backend at `url()`. */
  function acrossProcesses(url: () => string, system: string): void {
    it("a trace started here holds the other process's consumer span under this process's producer span, and the agent's tool and model spans under that consumer span", async () => {
      const run = Math.random().toString(36).slice(2, 10)
      const backend = await connect(url())
      const replies = await awaitReply(backend, run)
      const consumer = startConsumer(url(), run)
      await consumer.ready
      const { root, id } = await publishTask(backend, run)
      const seen = await consumer.seen
      await eventually(`the reply of run ${run}`, () => replies.length >= 1, 30_000)
      await expectTrace({ run, root, taskId: id, system, twoProcesses: true, seen })
      await expectTokenUsage(run, CONSUMER_SERVICE)
    })
  }

  describe('memory (one process: the in-process backend)', () => {
    it('a trace holds the consumer span under the producer span, and the tool and model spans under the consumer span', async () => {
      const run = Math.random().toString(36).slice(2, 10)
      const backend = await connect('memory://')
      const bus = new ObservabilityBus(backend, {
        source: 'researcher',
        logger: silentLogger,
        flushIntervalMs: 10,
        exporters: [otel.telemetry.exporter],
      })
      await bus.start()
      try {
        const replies = await awaitReply(backend, run)
        const { handled } = await serveOneTask(backend, bus, run)
        const { root, id } = await publishTask(backend, run)
        const seen = await handled
        await eventually(`the reply of run ${run}`, () => replies.length >= 1)
        await bus.flush()
        await expectTrace({ run, root, taskId: id, system: 'omnibus_memory', twoProcesses: false, seen })
        await expectTokenUsage(run, PRODUCER_SERVICE)
      } finally {
        await bus.close()
      }
    })
  })

  describe('sqlite (two processes on one database file)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-otel-'))
    afterAll(() => rmSync(dir, { recursive: true, force: true }))
    acrossProcesses(() => `sqlite://${path.join(dir, 'events.db')}`, 'omnibus_sqlite')
  })

  describeWithService('redis', 'redis (two processes)', () => {
    acrossProcesses(() => requireEndpoint('redis'), 'redis')
  })

  describeWithService('rabbitmq', 'rabbitmq (two processes)', () => {
    acrossProcesses(() => requireEndpoint('rabbitmq'), 'rabbitmq')
  })

  describeWithService('kafka', 'kafka (two processes)', () => {
    acrossProcesses(() => `kafka://${requireEndpoint('kafka').split(',')[0]}`, 'kafka')
  })

  describeWithService('sqs', 'sqs (two processes)', () => {
    acrossProcesses(() => `sqs://${new URL(requireEndpoint('sqs')).host}`, 'aws_sqs')
  })
})
