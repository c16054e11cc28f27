/**
 * The instrumentation hook as the ObservabilityBus and instrumented backends use it: the trace
 * context telemetry carries (captured at emit, written at flush), the bus's batches marked as
 * internal, and a batch observed once even when the backend sends it event by event.
 */
import { afterEach, describe, expect, it } from 'vitest'
import {
  type Instrumentation,
  instrumentBackend,
  type PublishInfo,
  registerInstrumentation,
  runWithEventContext,
} from '../src/backend.ts'
import {
  type BatchReceipt,
  type EventBackend,
  type EventInput,
  ObservabilityBus,
  type OmnibusEvent,
  type PublishReceipt,
  silentLogger,
} from '../src/index.ts'
import { createFakeBackend, type FakeBackend } from './fake-backend.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const traceparent = (span: string) => `00-${TRACE}-${span}-01`

/** A hook whose "active span" is a variable the test sets, recording what it is asked. */
class RecordingHook implements Instrumentation {
  active: string | undefined
  enabled = true
  captures = 0
  readonly publishes: PublishInfo[] = []
  isActive(): boolean {
    return this.enabled
  }
  captureTrace(): unknown {
    this.captures++
    return this.active === undefined ? undefined : { span: this.active }
  }
  traceHeaders(captured: unknown): Readonly<Record<string, string>> | undefined {
    const span = (captured as { span?: unknown }).span
    return typeof span === 'string' ? { traceparent: traceparent(span), tracestate: 'hook=1' } : undefined
  }
  publish(info: PublishInfo) {
    this.publishes.push(info)
    return undefined
  }
  deliver() {
    return undefined
  }
  settle() {}
}

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function install(hook: Instrumentation): void {
  cleanups.push(registerInstrumentation(hook))
}

async function busOver(
  backend: FakeBackend = instrumentBackend(createFakeBackend()),
  sampling?: { rates: Record<string, number> },
): Promise<{ bus: ObservabilityBus; backend: FakeBackend }> {
  const bus = new ObservabilityBus(backend, {
    logger: silentLogger,
    flushIntervalMs: 5,
    ...(sampling === undefined ? {} : { sampling }),
  })
  cleanups.push(() => bus.close())
  await bus.start()
  return { bus, backend }
}

const handled = (headers: Record<string, string>) =>
  ({ id: 'handled-1', topic: 'orders.placed', headers }) as unknown as OmnibusEvent

const headersOf = (backend: FakeBackend, topic: string) =>
  backend.published.find((e) => e.topic === topic)?.headers

describe('the trace context of telemetry', () => {
  it('is the context active at emit, not at flush, and only kept events ask for it', async () => {
    const hook = new RecordingHook()
    install(hook)
    const { bus, backend } = await busOver(undefined, { rates: { 'noise.**': 0 } })
    hook.active = 'aaaaaaaaaaaaaaaa'
    bus.emit('work.step', { n: 1 })
    bus.emit('noise.tick', { n: 2 })
    hook.active = 'bbbbbbbbbbbbbbbb'
    await bus.flush()
    expect(headersOf(backend, 'work.step')).toMatchObject({
      traceparent: traceparent('aaaaaaaaaaaaaaaa'),
      tracestate: 'hook=1',
    })
    expect(hook.captures, 'the sampled-out emit asked nothing').toBe(1)
  })

  it("the hook's context wins over the handled event's; without one, the handled event's is used", async () => {
    const hook = new RecordingHook()
    install(hook)
    const { bus, backend } = await busOver()
    const producer = handled({ traceparent: traceparent('1111111111111111'), tracestate: 'p=1' })
    runWithEventContext(producer, () => {
      hook.active = 'cccccccccccccccc'
      bus.emit('inside.span', {})
      hook.active = undefined
      bus.emit('inside.nospan', {})
      hook.enabled = false
      hook.active = 'dddddddddddddddd'
      bus.emit('inside.inactive', {})
      hook.enabled = true
      bus.emit('inside.own', {}, { headers: { traceparent: traceparent('2222222222222222') } })
    })
    await bus.flush()
    expect(headersOf(backend, 'inside.span')).toMatchObject({ traceparent: traceparent('cccccccccccccccc') })
    expect(headersOf(backend, 'inside.nospan')).toMatchObject({
      traceparent: traceparent('1111111111111111'),
      tracestate: 'p=1',
    })
    expect(headersOf(backend, 'inside.inactive')).toMatchObject({
      traceparent: traceparent('1111111111111111'),
    })
    expect(headersOf(backend, 'inside.own')?.traceparent, "the caller's traceparent wins").toBe(
      traceparent('2222222222222222'),
    )
    expect(backend.published.find((e) => e.topic === 'inside.span')?.causationId).toBe('handled-1')
  })

  it('without a hook, telemetry inherits the trace context of the event being handled', async () => {
    const { bus, backend } = await busOver()
    runWithEventContext(handled({ traceparent: traceparent('3333333333333333') }), () => {
      bus.emit('plain.step', {})
    })
    await bus.flush()
    expect(headersOf(backend, 'plain.step')?.traceparent).toBe(traceparent('3333333333333333'))
  })

  it('a hook that throws in captureTrace or traceHeaders never reaches emit; the event is still sent', async () => {
    const hook = new RecordingHook()
    let calls = 0
    hook.captureTrace = () => {
      if (++calls === 1) throw new Error('capture broke')
      return { span: 'eeeeeeeeeeeeeeee' }
    }
    hook.traceHeaders = () => {
      throw new Error('headers broke')
    }
    install(hook)
    const warn = console.warn
    const warnings: unknown[] = []
    console.warn = (...args: unknown[]) => void warnings.push(args[0])
    cleanups.push(() => {
      console.warn = warn
    })
    const { bus, backend } = await busOver()
    expect(bus.emit('capture.broke', {})).toBe(true)
    expect(bus.emit('headers.broke', {})).toBe(true)
    await bus.flush()
    expect(headersOf(backend, 'capture.broke')?.traceparent).toBeUndefined()
    expect(headersOf(backend, 'headers.broke')?.traceparent).toBeUndefined()
    expect(warnings).toHaveLength(2)
  })
})

describe("the ObservabilityBus's batches", () => {
  it('are internal publishes; an application batch on the same backend is not', async () => {
    const hook = new RecordingHook()
    install(hook)
    const { bus, backend } = await busOver()
    bus.emit('telemetry.step', {})
    await bus.flush()
    await backend.publishBatch([{ topic: 'jobs.queued', data: 1 }])
    expect(hook.publishes.map((p) => [p.operation, p.inputs[0]?.topic, p.internal])).toEqual([
      ['publish-batch', 'telemetry.step', true],
      ['publish-batch', 'jobs.queued', false],
    ])
  })
})

describe('a batch sent event by event through the backend’s own publish', () => {
  /** A backend like Kafka's or RabbitMQ's: publishBatch calls `backend.publish` for each event. */
  function perEventBackend(): EventBackend & { readonly sent: EventInput[] } {
    const sent: EventInput[] = []
    const fake = createFakeBackend()
    const backend = {
      name: 'per-event',
      capabilities: fake.capabilities,
      isConnected: true,
      sent,
      connect: async () => {},
      disconnect: async () => {},
      healthCheck: async () => ({ healthy: true, latencyMs: 0, detail: '' }),
      async publish(input: EventInput): Promise<PublishReceipt> {
        sent.push(input)
        return { id: `id-${sent.length}`, topic: input.topic } as PublishReceipt
      },
      async publishBatch(inputs: readonly EventInput[]): Promise<BatchReceipt> {
        const receipts = await Promise.all(inputs.map((input) => backend.publish(input)))
        return {
          results: receipts.map((receipt, index) => ({ ok: true as const, index, receipt })),
          succeeded: receipts.length,
          failed: 0,
        }
      },
      subscribe: fake.subscribe.bind(fake),
    }
    return instrumentBackend(backend as unknown as EventBackend & { readonly sent: EventInput[] })
  }

  it('is observed once, as the batch; its events published alone afterwards are observed again', async () => {
    const hook = new RecordingHook()
    install(hook)
    const backend = perEventBackend()
    const a: EventInput = { topic: 'jobs.a', data: 1 }
    const b: EventInput = { topic: 'jobs.b', data: 2 }
    await backend.publishBatch([a, b])
    expect(backend.sent).toHaveLength(2)
    expect(hook.publishes.map((p) => p.operation)).toEqual(['publish-batch'])
    await backend.publish(a)
    expect(hook.publishes.map((p) => p.operation)).toEqual(['publish-batch', 'publish'])
  })
})
