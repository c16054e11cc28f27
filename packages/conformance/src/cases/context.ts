import type { OmnibusEvent } from '@omnibus/core'
import { expect } from 'vitest'
import { Inbox } from '../harness.ts'
import { waitFor } from '../wait.ts'
import type { ConformanceCase } from './types.ts'

const traceContext: ConformanceCase = {
  id: '36-trace-and-causation',
  title:
    'traceparent/tracestate arrive with the event; events published in a handler carry causation and correlation',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const parentTopic = h.topic('ctx', 'parent')
    const childTopic = h.topic('ctx', 'child')
    const parents = new Inbox('parents')
    const children = new Inbox('children')
    await h.subscribe(b, childTopic, children)
    await h.subscribe(b, parentTopic, parents, {}, async (e) => {
      await b.publish({ topic: childTopic, data: { runId: h.runId, of: e.id } })
    })
    await h.settle(b, parentTopic, [parents])
    await h.settle(b, childTopic, [children])
    const traceparent = `00-${'4bf92f3577b34da6a3ce929d0e0e4736'}-${'00f067aa0ba902b7'}-01`
    const tracestate = `conf=${h.runId},other=1`
    const withCorr = await b.publish({
      topic: parentTopic,
      data: { runId: h.runId, n: 1 },
      correlationId: `corr-${h.runId}`,
      headers: { traceparent, tracestate },
    })
    const withoutCorr = await b.publish({ topic: parentTopic, data: { runId: h.runId, n: 2 } })
    await h.waitAcked(parents, [withCorr.id, withoutCorr.id])
    const p1 = parents.acked.find((e) => e.id === withCorr.id) as OmnibusEvent
    expect(p1.headers.traceparent).toBe(traceparent)
    expect(p1.headers.tracestate).toBe(tracestate)
    const childOf = (id: string) => children.acked.find((c) => (c.data as { of?: string }).of === id)
    await waitFor(() => childOf(withCorr.id) !== undefined && childOf(withoutCorr.id) !== undefined, {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the events published inside the handler',
    })
    const c1 = childOf(withCorr.id) as OmnibusEvent
    const c2 = childOf(withoutCorr.id) as OmnibusEvent
    expect(c1.causationId).toBe(withCorr.id)
    expect(c1.correlationId).toBe(`corr-${h.runId}`)
    expect(c2.causationId).toBe(withoutCorr.id)
    expect(c2.correlationId, 'correlation of a child whose parent had none = the parent id').toBe(
      withoutCorr.id,
    )
  },
}

/** Context case 36. */
export const contextCases: readonly ConformanceCase[] = [traceContext]
