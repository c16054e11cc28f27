import {
  AgentMessageBus,
  type EventBackend,
  ObservabilityBus,
  type OmnibusEvent,
  silentLogger,
} from '@omnibus/core'
import { recordingExporter, waitUntil } from '@omnibus/core/testing'
import { createMemoryBackend } from '@omnibus/memory'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BackpressureError,
  BackpressureStrategy,
  EventBus,
  EventBusAdapter,
  EventCategory,
  EventPriority,
  getEventBus,
  LEGACY_HEADERS,
  type LegacyEvent,
} from '../src/index.ts'

describe('legacy EventBus: subscriptions', () => {
  it('delivers by category; subscribeMany, subscribeAll, unsubscribe and subscriber counts', async () => {
    const bus = new EventBus()
    const tools: LegacyEvent[] = []
    const many: LegacyEvent[] = []
    const all: LegacyEvent[] = []
    const onTool = (e: LegacyEvent) => void tools.push(e)
    bus.subscribe(EventCategory.TOOL, onTool)
    const offMany = bus.subscribeMany([EventCategory.STATE, EventCategory.ERROR], (e) => void many.push(e))
    bus.subscribeAll((e) => void all.push(e))
    expect(bus.getSubscriberCount(EventCategory.TOOL)).toBe(2)
    expect(bus.getSubscriberCount(EventCategory.MODEL)).toBe(1)
    expect(bus.getSubscriberCount()).toBe(4)

    bus.emitToolStart('read_file', { path: '/foo/bar.py' })
    bus.publish({ category: EventCategory.STATE, eventType: 'stage_changed', data: { to: 'run' } })
    bus.publish({ category: EventCategory.MODEL, eventType: 'model_request', data: {} })
    await bus.flush()
    expect(tools.map((e) => e.eventType)).toEqual(['tool_start'])
    expect(tools[0]?.data).toEqual({ tool_name: 'read_file', arguments: { path: '/foo/bar.py' } })
    expect(many.map((e) => e.eventType)).toEqual(['stage_changed'])
    expect(all).toHaveLength(3)

    expect(bus.unsubscribe(EventCategory.TOOL, onTool)).toBe(true)
    expect(bus.unsubscribe(EventCategory.TOOL, onTool)).toBe(false)
    offMany()
    bus.emitToolStart('x')
    bus.emitError(new Error('e'))
    await bus.flush()
    expect(tools).toHaveLength(1)
    expect(many).toHaveLength(1)
    expect(all).toHaveLength(5)
  })

  it('minPriority filters lower priorities', async () => {
    const bus = new EventBus()
    const got: string[] = []
    bus.subscribe(EventCategory.CUSTOM, (e) => void got.push(e.priority), { minPriority: EventPriority.HIGH })
    for (const priority of Object.values(EventPriority)) {
      bus.publish({ category: EventCategory.CUSTOM, eventType: 'x', data: {}, priority })
    }
    await bus.flush()
    expect(got.sort()).toEqual(['critical', 'high'])
  })

  it('convenience emitters produce the documented shapes', async () => {
    const bus = new EventBus({ sessionId: 's-1' })
    const got: LegacyEvent[] = []
    bus.subscribeAll((e) => void got.push(e))
    bus.emitToolEnd('read_file', { bytes: 3 }, { success: true, duration: 0.5 })
    bus.emitError(new TypeError('bad'), { context: 'info' }, { recoverable: false })
    bus.emitMetric('latency_ms', 150, { unit: 'ms', tags: { endpoint: '/chat' } })
    bus.emitLifecycleEvent('workflow_started', { workflow_id: 'abc123' })
    await bus.flush()
    expect(got[0]).toMatchObject({
      category: 'tool',
      eventType: 'tool_end',
      data: { tool_name: 'read_file', result: { bytes: 3 }, success: true, duration: 0.5 },
      sessionId: 's-1',
    })
    expect(got[1]).toMatchObject({
      category: 'error',
      eventType: 'error_occurred',
      priority: 'high',
      data: { error_type: 'TypeError', message: 'bad', recoverable: false, context: { context: 'info' } },
    })
    expect(got[2]).toMatchObject({
      category: 'metric',
      eventType: 'latency_ms',
      data: { name: 'latency_ms', value: 150, unit: 'ms', tags: { endpoint: '/chat' } },
    })
    expect(got[3]).toMatchObject({
      category: 'lifecycle',
      eventType: 'workflow_started',
      data: { workflow_id: 'abc123' },
    })
  })

  it('a throwing or rejecting handler is counted and never reaches the publisher or other handlers', async () => {
    const bus = new EventBus()
    const ok: LegacyEvent[] = []
    bus.subscribe(EventCategory.TOOL, () => {
      throw new Error('sync boom')
    })
    bus.subscribe(EventCategory.TOOL, async () => {
      throw new Error('async boom')
    })
    bus.subscribe(EventCategory.TOOL, (e) => void ok.push(e))
    expect(() => bus.emitToolStart('t')).not.toThrow()
    await bus.flush()
    expect(ok).toHaveLength(1)
    expect(bus.getStats().handlerErrors).toBe(2)
  })

  it('a handler that never settles delays delivery by at most handlerTimeoutMs', async () => {
    const bus = new EventBus({ handlerTimeoutMs: 50 })
    const got: string[] = []
    bus.subscribe(EventCategory.TOOL, () => new Promise(() => {}))
    bus.subscribe(EventCategory.TOOL, (e) => void got.push(e.eventType))
    bus.emitToolStart('a')
    await bus.flush()
    bus.emitToolEnd('a')
    await bus.flush()
    expect(got).toEqual(['tool_start', 'tool_end'])
    expect(bus.getStats().handlerTimeouts).toBe(2)
  })

  it('setTraceContext stamps later events', async () => {
    const bus = new EventBus()
    const got: LegacyEvent[] = []
    bus.subscribeAll((e) => void got.push(e))
    bus.setTraceContext('abc123', 'def456')
    bus.emitLifecycleEvent('task_started')
    bus.setTraceContext(undefined)
    bus.emitLifecycleEvent('task_ended')
    await bus.flush()
    expect(got[0]).toMatchObject({ traceId: 'abc123', spanId: 'def456' })
    expect(got[1]?.traceId).toBeUndefined()
  })

  it('rejects unknown categories and priorities with a message saying what to use', () => {
    const bus = new EventBus()
    expect(() => bus.publish({ category: 'nope' as EventCategory, eventType: 'x' })).toThrow(/EventCategory/)
    expect(() =>
      bus.publish({ category: EventCategory.TOOL, eventType: 'x', priority: 'urgent' as EventPriority }),
    ).toThrow(/EventPriority/)
    expect(() => bus.subscribe('nope' as EventCategory, () => {})).toThrow(/unknown category/)
  })

  it('getEventBus returns one process-wide bus', () => {
    expect(getEventBus()).toBe(getEventBus())
    expect(EventBus.getInstance()).toBe(getEventBus())
  })
})

describe('legacy EventBus: backpressure and sampling', () => {
  it('DROP_OLDEST keeps the newest and never drops CRITICAL', async () => {
    const bus = new EventBus({
      backpressure: { maxQueueSize: 5, strategy: BackpressureStrategy.DROP_OLDEST },
    })
    const got: unknown[] = []
    bus.subscribeAll((e) => void got.push(e.data.n))
    bus.publish({ category: 'custom', eventType: 'x', data: { n: 'c' }, priority: EventPriority.CRITICAL })
    for (let n = 0; n < 10; n++) bus.publish({ category: 'custom', eventType: 'x', data: { n } })
    const stats = bus.getStats()
    expect(stats.queueDepth).toBe(5)
    expect(stats.droppedByReason['drop-oldest']).toBe(6)
    await bus.flush()
    expect(got).toEqual(['c', 6, 7, 8, 9])
  })

  it('DROP_NEWEST keeps the oldest; CRITICAL still goes in', async () => {
    const bus = new EventBus({ backpressure: { maxQueueSize: 3, strategy: 'drop-newest' } })
    const got: unknown[] = []
    bus.subscribeAll((e) => void got.push(e.data.n))
    const accepted = [0, 1, 2, 3, 4].map((n) =>
      bus.publish({ category: 'custom', eventType: 'x', data: { n } }),
    )
    expect(accepted).toEqual([true, true, true, false, false])
    expect(bus.publish({ category: 'audit', eventType: 'x', data: { n: 'c' }, priority: 'critical' })).toBe(
      true,
    )
    await bus.flush()
    expect(got).toEqual([0, 1, 2, 'c'])
    expect(bus.getStats().eventsDropped).toBe(2)
  })

  it('REJECT throws BackpressureError; BLOCK waits in publishAsync and loses nothing', async () => {
    const rejecting = new EventBus({ backpressure: { maxQueueSize: 2, strategy: 'reject' } })
    rejecting.emitToolStart('a')
    rejecting.emitToolStart('b')
    expect(() => rejecting.emitToolStart('c')).toThrow(BackpressureError)
    expect(rejecting.getStats().droppedByReason.reject).toBe(1)

    const blocking = new EventBus({ backpressure: { maxQueueSize: 2, strategy: 'block' } })
    const got: unknown[] = []
    blocking.subscribeAll((e) => void got.push(e.data.n))
    const sends = Array.from({ length: 10 }, (_, n) =>
      blocking.publishAsync({ category: 'custom', eventType: 'x', data: { n } }),
    )
    expect(await Promise.all(sends)).toEqual(Array(10).fill(true))
    await blocking.flush()
    expect(got).toEqual([...Array(10).keys()])
  })

  it('warns once when the queue crosses the threshold', () => {
    const depths: number[] = []
    const bus = new EventBus({
      backpressure: { maxQueueSize: 10, warningThreshold: 0.5, onWarning: (d) => depths.push(d) },
    })
    for (let i = 0; i < 8; i++) bus.emitToolStart('t')
    expect(depths).toEqual([5])
    expect(bus.getStats().backpressureWarnings).toBe(1)
  })

  it('samples per category; ERROR (preserveErrors) and CRITICAL are always kept', async () => {
    const bus = new EventBus()
    bus.configureSampling({ defaultRate: 1, categoryRates: { metric: 0, tool: 0 }, preserveErrors: true })
    expect(bus.getSamplingConfig().categoryRates).toEqual({ metric: 0, tool: 0 })
    const got: string[] = []
    bus.subscribeAll((e) => void got.push(`${e.category}:${e.priority}`))
    expect(bus.emitMetric('tokens', 1)).toBe(false)
    expect(bus.emitToolStart('t')).toBe(false)
    expect(bus.emitToolStart('t', {}, EventPriority.CRITICAL)).toBe(true)
    bus.emitError(new Error('x'), {}, { priority: EventPriority.LOW })
    bus.emitLifecycleEvent('kept')
    await bus.flush()
    expect(got).toEqual(['tool:critical', 'error:low', 'lifecycle:normal'])
    expect(bus.getStats().eventsSampledOut).toBe(2)
    expect(() => bus.configureSampling({ defaultRate: 3 })).toThrow(/defaultRate/)
  })
})

describe('legacy EventBus: exporters', () => {
  it('uses core exporters; failures are counted', async () => {
    const bus = new EventBus()
    const rec = recordingExporter()
    bus.addExporter(rec)
    bus.addExporter({
      name: 'broken',
      export() {
        throw new Error('disk full')
      },
    })
    bus.emitToolStart('read_file', { path: 'x' })
    await bus.flush()
    expect(rec.events[0]).toMatchObject({ topic: 'tool.tool_start', data: { tool_name: 'read_file' } })
    expect(bus.getStats().exporterFailures).toBe(1)
  })
})

describe('EventBusAdapter', () => {
  let backend: EventBackend
  let obs: ObservabilityBus
  beforeEach(async () => {
    backend = createMemoryBackend({})
    obs = new ObservabilityBus(backend, { flushIntervalMs: 5, logger: silentLogger })
    await obs.start()
  })
  afterEach(async () => {
    await obs.close()
    await backend.disconnect()
  })

  it('forwards legacy events as category.event_type with priority, session and trace headers', async () => {
    const legacy = new EventBus({ sessionId: 'sess-9' })
    const adapter = new EventBusAdapter(legacy, { observability: obs })
    await adapter.enableForwarding()
    const got: OmnibusEvent[] = []
    await obs.subscribe('**', (e) => void got.push(e))
    legacy.setTraceContext('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7')
    legacy.emitToolStart('read', { file: 'test.py' })
    legacy.publish({
      category: 'custom',
      eventType: 'my custom/event',
      data: { k: 'v' },
      priority: 'critical',
    })
    await legacy.flush()
    await obs.flush()
    await waitUntil(() => got.length === 2)
    const tool = got.find((e) => e.topic === 'tool.tool_start')
    expect(tool?.data).toEqual({ tool_name: 'read', arguments: { file: 'test.py' } })
    expect(tool?.headers).toMatchObject({
      [LEGACY_HEADERS.priority]: 'normal',
      [LEGACY_HEADERS.sessionId]: 'sess-9',
      [LEGACY_HEADERS.traceId]: '4bf92f3577b34da6a3ce929d0e0e4736',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    })
    const custom = got.find((e) => e.topic === 'custom.my_custom_event')
    expect(custom?.headers[LEGACY_HEADERS.priority]).toBe('critical')
    expect(custom?.headers['omnibus-priority']).toBe('critical')
    expect(adapter.getStats().forwarded).toBe(2)
    await adapter.disableForwarding()
    legacy.emitToolStart('after')
    await legacy.flush()
    expect(adapter.getStats().forwarded).toBe(2)
  })

  it('reverse forwarding delivers new-bus events to legacy subscribers, without loops', async () => {
    const legacy = new EventBus()
    const adapter = new EventBusAdapter(legacy, { observability: obs, reverse: { patterns: ['**'] } })
    await adapter.enableForwarding()
    const legacyGot: LegacyEvent[] = []
    legacy.subscribeAll((e) => void legacyGot.push(e))
    const wire: OmnibusEvent[] = []
    await obs.subscribe('**', (e) => void wire.push(e))

    obs.emit('tool.tool_end', { tool_name: 'grep' }, { priority: 'high' })
    obs.emit('billing.invoice', 5)
    legacy.emitLifecycleEvent('from_legacy')
    await waitUntil(() => legacyGot.length >= 3 && wire.length >= 3)
    // Give a loop the chance to show itself, bounded by predicates on the counters.
    await obs.flush()
    await legacy.flush()
    expect(legacyGot.map((e) => `${e.category}.${e.eventType}`).sort()).toEqual([
      'custom.billing.invoice',
      'lifecycle.from_legacy',
      'tool.tool_end',
    ])
    expect(legacyGot.find((e) => e.eventType === 'tool_end')?.priority).toBe('high')
    expect(legacyGot.find((e) => e.eventType === 'billing.invoice')?.data).toEqual({ value: 5 })
    expect(wire.map((e) => e.topic).sort()).toEqual([
      'billing.invoice',
      'lifecycle.from_legacy',
      'tool.tool_end',
    ])
    const stats = adapter.getStats()
    expect(stats.reversed).toBe(2)
    expect(stats.forwarded).toBe(1)
    expect(stats.loopsPrevented).toBe(3)
    await adapter.disableForwarding()
  })

  it('broadcasts chosen categories reliably on the AgentMessageBus', async () => {
    const agents = new AgentMessageBus(backend, { agentId: 'legacy-bridge' })
    const legacy = new EventBus()
    const adapter = new EventBusAdapter(legacy, { observability: obs, agents, toAgents: ['audit'] })
    await adapter.enableForwarding()
    const got: string[] = []
    await agents.subscribeAgent('auditor', (m) => void got.push(m.topic))
    legacy.publish({
      category: 'audit',
      eventType: 'action_logged',
      data: { who: 'x' },
      priority: 'critical',
    })
    legacy.emitToolStart('not-audit')
    await waitUntil(() => got.length === 1)
    expect(got).toEqual(['legacy.audit.action_logged'])
    expect(adapter.getStats().forwardedToAgents).toBe(1)
    await adapter.disableForwarding()
    await agents.close()
  })

  it('accepts an ObservabilityBus alone, as the old API did, and forwards at once', async () => {
    const legacy = new EventBus()
    const adapter = new EventBusAdapter(legacy, obs)
    void adapter.enableForwarding()
    const got: OmnibusEvent[] = []
    await obs.subscribe('tool.*', (e) => void got.push(e))
    legacy.emitToolStart('read', { file: 'test.py' })
    await legacy.flush()
    await obs.flush()
    await waitUntil(() => got.length === 1)
    expect(got[0]?.topic).toBe('tool.tool_start')
    await adapter.disableForwarding()
  })

  it('needs somewhere to forward to', () => {
    expect(() => new EventBusAdapter(new EventBus(), {})).toThrow(/observability/)
  })
})
