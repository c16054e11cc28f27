import { AgentMessageBus, ObservabilityBus, silentLogger, TimeoutError } from '@omnibus/core'
import { expect } from 'vitest'
import { caught, Inbox, isErrorOf } from '../harness.ts'
import { waitFor, withDeadline } from '../wait.ts'
import { atLeastOnce, type ConformanceCase } from './types.ts'

const requestReply: ConformanceCase = {
  id: '37-agent-request-reply',
  title:
    'AgentMessageBus request/reply: the reply arrives; no responder times out in time; a late reply is discarded',
  gate: atLeastOnce,
  async run(h) {
    const prefix = h.topic('agent')
    const requester = new AgentMessageBus(await h.backend(), {
      agentId: 'requester',
      prefix,
      logger: silentLogger,
    })
    const responder = new AgentMessageBus(await h.backend(), {
      agentId: 'responder',
      prefix,
      logger: silentLogger,
    })
    h.defer(() => requester.close())
    h.defer(() => responder.close())
    await requester.start()
    await responder.start()
    let releaseSlow: () => void = () => {}
    const slowGate = new Promise<void>((resolve) => {
      releaseSlow = resolve
    })
    const slowReplied: string[] = []
    await responder.subscribeAgent('responder', async (msg, ctx) => {
      if (msg.topic === 'echo') await ctx.reply({ echo: msg.data, from: 'responder' })
      else if (msg.topic === 'slow') {
        await slowGate
        await ctx.reply({ late: true })
        slowReplied.push(msg.id)
      }
    })
    // Warm-up: the first successful echo proves both subscriptions (request and reply inbox) are live.
    await waitFor(
      async () => {
        try {
          await requester.request('responder', 'echo', { warmup: true }, { timeoutMs: 1000 })
          return true
        } catch {
          return false
        }
      },
      { timeoutMs: h.timeouts.groupJoinMs + 2000, message: 'a first reply from the responder agent' },
    )
    const reply = await requester.request(
      'responder',
      'echo',
      { runId: h.runId, n: 7 },
      {
        timeoutMs: h.timeouts.deliveryMs,
      },
    )
    expect(reply).toEqual({ echo: { runId: h.runId, n: 7 }, from: 'responder' })
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        requester.request('responder', 'echo', { i }, { timeoutMs: h.timeouts.deliveryMs }),
      ),
    )
    expect(replies).toEqual(Array.from({ length: 10 }, (_, i) => ({ echo: { i }, from: 'responder' })))

    const t0 = Date.now()
    const noOne = await caught(
      () => requester.request('nobody-home', 'echo', {}, { timeoutMs: 300 }),
      'a request to an agent nobody serves',
    )
    const took = Date.now() - t0
    expect(isErrorOf(noOne, TimeoutError), `expected TimeoutError, got ${noOne.name}: ${noOne.message}`).toBe(
      true,
    )
    expect(took).toBeGreaterThanOrEqual(290)
    expect(took).toBeLessThan(300 + h.timeouts.retrySlackMs)

    // A late reply needs a handler that started before the request's deadline (an expired request
    // is not started at all): the timeout leaves time for delivery, and the handler replies only
    // after the requester has given up.
    const lateBefore = requester.stats().lateReplies
    const late = await caught(
      () => requester.request('responder', 'slow', {}, { timeoutMs: h.timeouts.deliveryMs }),
      'a request whose reply comes after its timeout',
    )
    expect(isErrorOf(late, TimeoutError)).toBe(true)
    releaseSlow()
    await waitFor(() => slowReplied.length > 0 && requester.stats().lateReplies > lateBefore, {
      timeoutMs: h.timeouts.deliveryMs + h.caps.wildcardDiscoveryMs,
      message: () =>
        `the late reply to be received and discarded (lateReplies = ${requester.stats().lateReplies})`,
    })
    // The bus still works after the late reply.
    expect(
      await requester.request('responder', 'echo', 'after', { timeoutMs: h.timeouts.deliveryMs }),
    ).toEqual({
      echo: 'after',
      from: 'responder',
    })
    expect(requester.stats().pendingRequests).toBe(0)
  },
}

const telemetry: ConformanceCase = {
  id: '38-observability-slow-consumer',
  title:
    'ObservabilityBus: emit never blocks under a slow consumer; overflow drops by policy and counts; it recovers',
  async run(h) {
    const topic = h.topic('obs', 'metric')
    const consumerBackend = await h.backend()
    const inbox = new Inbox('slow telemetry consumer')
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const guarantee = h.caps.guarantees.includes('at-most-once') ? 'at-most-once' : h.caps.guarantees[0]
    await h.subscribe(consumerBackend, topic, inbox, guarantee === undefined ? {} : { guarantee }, () => gate)
    const bus = new ObservabilityBus(await h.backend(), {
      bufferSize: 100,
      batchSize: 20,
      flushIntervalMs: 5,
      overflow: 'drop-oldest',
      logger: silentLogger,
    })
    h.defer(() => bus.close())
    await withDeadline(bus.start(), h.timeouts.groupJoinMs, 'ObservabilityBus.start()')
    await h.settle(bus.backend, topic, [inbox])

    // A burst far larger than the buffer, emitted synchronously while the consumer is stuck.
    const burst = 5000
    let slowest = 0
    const t0 = performance.now()
    for (let i = 0; i < burst; i++) {
      const s = performance.now()
      bus.emit(topic, { runId: h.runId, phase: 'burst', i })
      slowest = Math.max(slowest, performance.now() - s)
    }
    const total = performance.now() - t0
    expect(slowest, 'slowest single emit (ms)').toBeLessThan(50)
    expect(total, `${burst} emits (ms)`).toBeLessThan(1000)
    const during = bus.stats()
    expect(during.emitted).toBe(burst)
    expect(during.buffered).toBeLessThanOrEqual(during.bufferCapacity)
    expect(during.dropped['drop-oldest'], 'events dropped by drop-oldest').toBeGreaterThanOrEqual(burst - 100)

    // More emits while the consumer is still stuck and the flusher is running: still immediate.
    for (let i = 0; i < 200; i++) {
      const s = performance.now()
      bus.emit(topic, { runId: h.runId, phase: 'stuck', i })
      slowest = Math.max(slowest, performance.now() - s)
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    expect(slowest, 'slowest emit while the consumer is stuck (ms)').toBeLessThan(50)

    // The consumer catches up: what was flushed arrives, and new telemetry flows again without loss.
    release()
    await withDeadline(
      bus.flush(),
      h.timeouts.deliveryMs * 2,
      'ObservabilityBus.flush() after the consumer caught up',
    )
    const beforeRecovery = bus.stats()
    expect(beforeRecovery.flushed + beforeRecovery.droppedTotal + beforeRecovery.sampledOut).toBe(
      beforeRecovery.emitted - beforeRecovery.buffered,
    )
    for (let i = 0; i < 50; i++) bus.emit(topic, { runId: h.runId, phase: 'recovered', i })
    await withDeadline(bus.flush(), h.timeouts.deliveryMs * 2, 'ObservabilityBus.flush() of 50 new events')
    const after = bus.stats()
    expect(after.droppedTotal, 'drops after the consumer caught up').toBe(beforeRecovery.droppedTotal)
    // Distinct indexes: a backend may deliver a telemetry event twice, never lose one here.
    const recovered = () =>
      new Set(
        inbox.acked
          .map((e) => e.data as { phase?: string; i?: number })
          .filter((d) => d.phase === 'recovered')
          .map((d) => d.i),
      ).size
    // drop-oldest keeps the newest: the last event emitted before the release was still buffered
    // when flush() ran, so it must arrive (in any order).
    const newest = () =>
      inbox.acked.some((e) => {
        const d = e.data as { phase?: string; i?: number }
        return d.phase === 'stuck' && d.i === 199
      })
    await waitFor(() => recovered() === 50 && newest(), {
      timeoutMs: h.timeouts.deliveryMs * 2,
      message: () =>
        `50 telemetry events after recovery (got ${recovered()}) and the newest event emitted while ` +
        `the consumer was stuck (${newest() ? 'arrived' : 'missing: drop-oldest must keep it'})`,
    })
  },
}

/** Bus cases 37–38. */
export const busCases: readonly ConformanceCase[] = [requestReply, telemetry]
