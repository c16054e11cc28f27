import { AgentMessageBus, type EventBackend, type OmnibusEvent, redriveInput } from '@omnibus/core'
import { registerInstrumentation } from '@omnibus/core/backend'
import { waitUntil } from '@omnibus/core/testing'
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { describe, expect, it } from 'vitest'
import { instrumentOmnibus, OMNIBUS_METRICS } from '../src/index.ts'
import { instrumentedFile } from './instrumented.ts'
import { contextOf, isChildOf, only } from './tracing.ts'

const { sdk, backends, afterTest } = instrumentedFile('omnibus-otel-')

async function connected(make: () => EventBackend): Promise<EventBackend> {
  const b = make()
  await b.connect()
  // As allSettled would: a backend that fails to disconnect does not fail the test.
  afterTest(() => b.disconnect({ drainTimeoutMs: 1000 }).catch(() => {}))
  return b
}

const tracer = () => sdk.tracerProvider.getTracer('test')
const spans = () => sdk.exporter.getFinishedSpans()

async function spansNamed(...names: string[]) {
  return waitUntil(
    () => {
      const all = spans()
      return names.every((n) => all.some((s) => s.name === n)) ? all : undefined
    },
    { timeoutMs: 10_000, description: `spans ${names.join(', ')}` },
  )
}

describe.each(Object.keys(backends))('propagation on %s', (name) => {
  const make = backends[name] as () => EventBackend
  const system = `omnibus_${name}`

  it('publish → deliver → publish in the handler → deliver is one trace of producer and consumer spans', async () => {
    const b = await connected(make)
    const seen: OmnibusEvent[] = []
    await b.subscribe(
      'orders.placed',
      async (e) => {
        seen.push(e)
        await b.publish({ topic: 'orders.billed', data: { of: e.id } })
      },
      { group: 'billing' },
    )
    await b.subscribe('orders.billed', (e) => {
      seen.push(e)
    })
    const root = tracer().startSpan('checkout')
    const receipt = await context.with(trace.setSpan(context.active(), root), () =>
      b.publish({ topic: 'orders.placed', data: { n: 1 }, correlationId: 'conv-1' }),
    )
    root.end()
    const all = await spansNamed('process orders.billed')
    const sendPlaced = only(all, 'send orders.placed')
    const processPlaced = only(all, 'process orders.placed')
    const sendBilled = only(all, 'send orders.billed')
    const processBilled = only(all, 'process orders.billed')
    const rootSpan = only(all, 'checkout')

    expect(isChildOf(sendPlaced, rootSpan)).toBe(true)
    expect(isChildOf(processPlaced, sendPlaced)).toBe(true)
    expect(isChildOf(sendBilled, processPlaced)).toBe(true)
    expect(isChildOf(processBilled, sendBilled)).toBe(true)
    expect(processPlaced.links.map((l) => l.context.spanId)).toEqual([sendPlaced.spanContext().spanId])
    expect(new Set(all.map((s) => s.spanContext().traceId)).size).toBe(1)

    expect(sendPlaced.kind).toBe(SpanKind.PRODUCER)
    expect(processPlaced.kind).toBe(SpanKind.CONSUMER)
    expect(sendPlaced.attributes).toMatchObject({
      'messaging.system': system,
      'messaging.destination.name': 'orders.placed',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.message.id': receipt.id,
      'messaging.message.conversation_id': 'conv-1',
    })
    expect(processPlaced.attributes).toMatchObject({
      'messaging.system': system,
      'messaging.destination.name': 'orders.placed',
      'messaging.destination.subscription.name': 'orders.placed',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.message.id': receipt.id,
      'messaging.consumer.group.name': 'billing',
      'messaging.message.conversation_id': 'conv-1',
      'omnibus.delivery.attempt': 1,
    })
    expect(sendBilled.attributes['messaging.message.conversation_id'], 'inherited correlation').toBe('conv-1')
    expect(processBilled.attributes['messaging.consumer.group.name']).toBeUndefined()

    // What Omnibus wrote is W3C trace context the official propagator reads: each event names
    // the span that published it.
    const placed = seen.find((e) => e.topic === 'orders.placed') as OmnibusEvent
    const billed = seen.find((e) => e.topic === 'orders.billed') as OmnibusEvent
    expect(contextOf(placed.headers)).toMatchObject({
      traceId: sendPlaced.spanContext().traceId,
      spanId: sendPlaced.spanContext().spanId,
    })
    expect(contextOf(billed.headers)).toMatchObject({
      traceId: sendBilled.spanContext().traceId,
      spanId: sendBilled.spanContext().spanId,
    })
    expect(
      await sdk.count(OMNIBUS_METRICS.sent, {
        'messaging.system': system,
        'messaging.destination.name': 'orders.placed',
      }),
    ).toBe(1)
  })

  it('a failed attempt and its retry are consumer spans of the same producer; errors are recorded', async () => {
    const b = await connected(make)
    let runs = 0
    await b.subscribe(
      'jobs.flaky',
      () => {
        runs++
        if (runs === 1) throw new TypeError('first attempt fails')
      },
      { group: 'workers', retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 10 } },
    )
    const before = await sdk.count(OMNIBUS_METRICS.redelivered, {
      'messaging.system': system,
      'messaging.destination.name': 'jobs.flaky',
    })
    await b.publish({ topic: 'jobs.flaky', data: 1 })
    const all = await waitUntil(
      () => {
        const s = spans().filter((x) => x.name === 'process jobs.flaky')
        return s.length === 2 ? spans() : undefined
      },
      { timeoutMs: 10_000, description: 'two process spans' },
    )
    const send = only(all, 'send jobs.flaky')
    const [first, second] = all
      .filter((x) => x.name === 'process jobs.flaky')
      .sort(
        (x, y) =>
          Number(x.attributes['omnibus.delivery.attempt']) - Number(y.attributes['omnibus.delivery.attempt']),
      )
    expect(first?.attributes['omnibus.delivery.attempt']).toBe(1)
    expect(second?.attributes['omnibus.delivery.attempt']).toBe(2)
    expect(first && isChildOf(first, send)).toBe(true)
    expect(second && isChildOf(second, send)).toBe(true)
    expect(first?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'first attempt fails' })
    expect(first?.attributes['error.type']).toBe('TypeError')
    expect(first?.events.map((e) => e.name)).toEqual(['exception'])
    expect(second?.status.code).toBe(SpanStatusCode.UNSET)
    await waitUntil(
      async () =>
        (await sdk.count(OMNIBUS_METRICS.settled, {
          'messaging.system': system,
          'messaging.destination.name': 'jobs.flaky',
          'omnibus.settle.outcome': 'acked',
        })) === 1,
      { description: 'the ack counted' },
    )
    expect(
      await sdk.count(OMNIBUS_METRICS.settled, {
        'messaging.system': system,
        'messaging.destination.name': 'jobs.flaky',
        'omnibus.settle.outcome': 'retried',
      }),
    ).toBe(1)
    expect(
      (await sdk.count(OMNIBUS_METRICS.redelivered, {
        'messaging.system': system,
        'messaging.destination.name': 'jobs.flaky',
      })) - before,
    ).toBe(1)
    expect(
      await sdk.count(OMNIBUS_METRICS.consumed, {
        'messaging.system': system,
        'messaging.destination.name': 'jobs.flaky',
      }),
    ).toBe(2)
    const durations = await sdk.points(OMNIBUS_METRICS.processDuration)
    const failed = durations.find(
      (p) =>
        p.attributes['messaging.system'] === system &&
        p.attributes['messaging.destination.name'] === 'jobs.flaky' &&
        p.attributes['error.type'] === 'TypeError',
    )
    expect((failed?.value as { count: number } | undefined)?.count).toBe(1)
  })

  it('a dead letter, its consumer and its redrive stay in the trace of the original publish', async () => {
    const b = await connected(make)
    const dlq = `dlq.otel-${name}`
    const letters: OmnibusEvent[] = []
    await b.subscribe(
      'jobs.poison',
      () => {
        throw new Error('always fails')
      },
      { group: 'workers', retry: { maxAttempts: 2, initialDelayMs: 5, maxDelayMs: 5 }, deadLetter: dlq },
    )
    await b.subscribe(dlq, (e) => {
      letters.push(e)
    })
    const root = tracer().startSpan('enqueue')
    await context.with(trace.setSpan(context.active(), root), () =>
      b.publish({ topic: 'jobs.poison', data: 1 }),
    )
    root.end()
    const all = await spansNamed(`process ${dlq}`)
    const send = only(all, 'send jobs.poison')
    const deadLetter = only(all, `dead_letter ${dlq}`)
    const processLetter = only(all, `process ${dlq}`)
    expect(isChildOf(deadLetter, send), 'the dead letter continues the trace of the event').toBe(true)
    expect(isChildOf(processLetter, deadLetter)).toBe(true)
    expect(deadLetter.kind).toBe(SpanKind.PRODUCER)
    expect(processLetter.spanContext().traceId).toBe(only(all, 'enqueue').spanContext().traceId)
    await waitUntil(
      async () =>
        (await sdk.count(OMNIBUS_METRICS.deadLettered, {
          'messaging.system': system,
          'messaging.destination.name': 'jobs.poison',
        })) === 1,
      { description: 'the dead letter counted' },
    )

    // The redrive, published outside any span, continues the same trace from the letter's headers.
    sdk.exporter.reset()
    const letter = letters[0] as OmnibusEvent
    await b.publish(redriveInput(letter))
    const again = await spansNamed('send jobs.poison')
    expect(only(again, 'send jobs.poison').spanContext().traceId).toBe(send.spanContext().traceId)
  })

  it('a batch gets a create span per event, injected into it, and one send span linking them', async () => {
    const b = await connected(make)
    const seen: OmnibusEvent[] = []
    await b.subscribe('batch.*', (e) => {
      seen.push(e)
    })
    await b.publishBatch([
      { topic: 'batch.a', data: 1 },
      { topic: 'batch.b', data: 2 },
    ])
    const all = await spansNamed('process batch.a', 'process batch.b')
    const send = only(all, 'send')
    const createA = only(all, 'create batch.a')
    const createB = only(all, 'create batch.b')
    expect(send.attributes['messaging.batch.message_count']).toBe(2)
    expect(send.links.map((l) => l.context.spanId).sort()).toEqual(
      [createA.spanContext().spanId, createB.spanContext().spanId].sort(),
    )
    expect(isChildOf(only(all, 'process batch.a'), createA)).toBe(true)
    expect(isChildOf(only(all, 'process batch.b'), createB)).toBe(true)
    expect(contextOf((seen.find((e) => e.topic === 'batch.a') as OmnibusEvent).headers)?.spanId).toBe(
      createA.spanContext().spanId,
    )
  })

  it('baggage set by the publisher is in the handler’s context', async () => {
    const b = await connected(make)
    const tenants: Array<string | undefined> = []
    await b.subscribe('tenant.work', () => {
      tenants.push(propagation.getBaggage(context.active())?.getEntry('tenant')?.value)
    })
    const bag = propagation.createBaggage({ tenant: { value: 'acme' } })
    await context.with(propagation.setBaggage(context.active(), bag), () =>
      b.publish({ topic: 'tenant.work', data: null }),
    )
    await waitUntil(() => tenants.length === 1, { description: 'the delivery' })
    expect(tenants).toEqual(['acme'])
  })
})

describe('request/reply on the AgentMessageBus', () => {
  it('request, the agent handling it (invoke_agent) and its reply are one trace', async () => {
    const backend = await connected(backends.memory as () => EventBackend)
    const worker = new AgentMessageBus(backend, { agentId: 'worker' })
    const caller = new AgentMessageBus(backend, { agentId: 'caller', requestTimeoutMs: 5000 })
    try {
      await worker.subscribeAgent('worker', async (msg, ctx) => {
        await ctx.reply({ echoed: msg.data })
      })
      await caller.start()
      const root = tracer().startSpan('plan')
      const answer = await context.with(trace.setSpan(context.active(), root), () =>
        caller.request('worker', 'task.summarize', { text: 'hi' }),
      )
      root.end()
      expect(answer).toEqual({ echoed: { text: 'hi' } })
      const all = await waitUntil(
        () => {
          const s = spans()
          return s.filter((x) => x.name.startsWith('process ')).length >= 2 &&
            s.some((x) => x.name === 'plan')
            ? s
            : undefined
        },
        { description: 'the request and reply spans' },
      )
      const plan = only(all, 'plan')
      const sendRequest = only(all, 'send agent.worker.task.summarize')
      const processRequest = only(all, 'process agent.worker.task.summarize')
      const invoke = only(all, 'invoke_agent worker')
      const sends = all.filter((s) => s.kind === SpanKind.PRODUCER && s !== sendRequest)
      expect(sends).toHaveLength(1)
      const sendReply = sends[0] as (typeof all)[number]
      const processReply = all.find(
        (s) => s.kind === SpanKind.CONSUMER && s !== processRequest,
      ) as (typeof all)[number]
      expect(isChildOf(sendRequest, plan)).toBe(true)
      expect(isChildOf(processRequest, sendRequest)).toBe(true)
      expect(isChildOf(invoke, processRequest)).toBe(true)
      expect(invoke.kind).toBe(SpanKind.INTERNAL)
      expect(invoke.attributes).toMatchObject({
        'gen_ai.operation.name': 'invoke_agent',
        'gen_ai.agent.name': 'worker',
      })
      expect(isChildOf(sendReply, invoke), 'the reply is sent from inside the agent span').toBe(true)
      expect(isChildOf(processReply, sendReply)).toBe(true)
      expect(
        all.some((s) => s.name.startsWith('invoke_agent') && s !== invoke),
        'no agent span for the reply',
      ).toBe(false)
      expect(new Set(all.map((s) => s.spanContext().traceId)).size).toBe(1)
    } finally {
      await caller.close()
      await worker.close()
    }
  })
})

describe('the hook', () => {
  it('is installed once per process: a second installation is refused until the first is removed', () => {
    expect(() => instrumentOmnibus()).toThrow(/already installed/)
    expect(() =>
      registerInstrumentation({ publish: () => undefined, deliver: () => undefined, settle: () => {} }),
    ).toThrow(/already installed/)
  })
})
