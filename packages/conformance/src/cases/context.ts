import type { OmnibusEvent } from '@omnibus/core'
import { expect } from 'vitest'
import { Inbox, PROBE_HEADER } from '../harness.ts'
import { waitFor } from '../wait.ts'
import type { ConformanceCase } from './types.ts'

const traceContext: ConformanceCase = {
  id: '36-trace-and-causation',
  title:
    'traceparent/tracestate arrive with the event; events published in a handler carry causation, correlation and its trace context',
  stress: true,
  async run(h) {
    const b = await h.backend()
    const parentTopic = h.topic('ctx', 'parent')
    const childTopic = h.topic('ctx', 'child')
    const parents = new Inbox('parents')
    const children = new Inbox('children')
    await h.subscribe(b, childTopic, children)
    const ownTraceparent = `00-${'0af7651916cd43dd8448eb211c80319c'}-${'b7ad6b7169203331'}-01`
    await h.subscribe(b, parentTopic, parents, {}, async (e) => {
      // The third parent's handler sets a trace context of its own, which wins over the inherited one.
      const own = (e.data as { n?: number }).n === 3 ? { headers: { traceparent: ownTraceparent } } : {}
      await b.publish({ topic: childTopic, data: { runId: h.runId, of: e.id }, ...own })
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
    const ownTrace = await b.publish({
      topic: parentTopic,
      data: { runId: h.runId, n: 3 },
      headers: { traceparent, tracestate },
    })
    await h.waitAcked(parents, [withCorr.id, withoutCorr.id, ownTrace.id])
    const p1 = parents.acked.find((e) => e.id === withCorr.id) as OmnibusEvent
    expect(p1.headers.traceparent).toBe(traceparent)
    expect(p1.headers.tracestate).toBe(tracestate)
    const childOf = (id: string) => children.acked.find((c) => (c.data as { of?: string }).of === id)
    await waitFor(
      () =>
        childOf(withCorr.id) !== undefined &&
        childOf(withoutCorr.id) !== undefined &&
        childOf(ownTrace.id) !== undefined,
      { timeoutMs: h.timeouts.deliveryMs, message: 'the events published inside the handler' },
    )
    const c1 = childOf(withCorr.id) as OmnibusEvent
    const c2 = childOf(withoutCorr.id) as OmnibusEvent
    const c3 = childOf(ownTrace.id) as OmnibusEvent
    expect(
      c1.headers.traceparent,
      'the traceparent of the handled event goes on to what its handler publishes',
    ).toBe(traceparent)
    expect(c1.headers.tracestate).toBe(tracestate)
    expect(c2.headers.traceparent, 'no trace context to inherit').toBeUndefined()
    expect(c2.headers.tracestate).toBeUndefined()
    expect(c3.headers.traceparent, 'a traceparent set by the handler is kept').toBe(ownTraceparent)
    expect(c3.headers.tracestate, 'the tracestate of another trace is not inherited').toBeUndefined()
    expect(c1.causationId).toBe(withCorr.id)
    expect(c1.correlationId).toBe(`corr-${h.runId}`)
    expect(c2.causationId).toBe(withoutCorr.id)
    expect(c2.correlationId, 'correlation of a child whose parent had none = the parent id').toBe(
      withoutCorr.id,
    )

    // A plain function that returns no promise: after a few calls it runs in the cheaper
    // synchronous causation scope, and what it publishes before returning keeps causation there.
    const plainTopic = h.topic('ctx', 'plain')
    const plainChildTopic = h.topic('ctx', 'plainchild')
    const plainParents = new Inbox('plain-function parents')
    const plainChildren = new Inbox('children of the plain function')
    const published: Array<Promise<unknown>> = []
    await h.subscribe(b, plainChildTopic, plainChildren)
    const plain = await h.within(
      b.subscribe(plainTopic, (e) => {
        if (e.headers[PROBE_HEADER] !== undefined) {
          plainParents.probes++
          return
        }
        plainParents.acked.push(e)
        published.push(
          b.publish({ topic: plainChildTopic, data: { runId: h.runId, of: e.id } }).catch((error) => error),
        )
      }),
      `subscribe("${plainTopic}") with a plain function`,
    )
    h.defer(() => plain.unsubscribe())
    await h.settle(b, plainTopic, [plainParents])
    await h.settle(b, plainChildTopic, [plainChildren])
    const plainIds = await h.publishInOrder(
      b,
      Array.from({ length: 40 }, (_, n) => ({ topic: plainTopic, data: { runId: h.runId, n } })),
    )
    await h.waitAcked(plainParents, plainIds)
    const failures = (await Promise.all(published)).filter((r) => r instanceof Error)
    expect(failures, 'publishes from the plain-function handler').toEqual([])
    const plainChildOf = (id: string) =>
      plainChildren.acked.find((c) => (c.data as { of?: string }).of === id)
    await waitFor(() => plainIds.every((id) => plainChildOf(id) !== undefined), {
      timeoutMs: h.timeouts.deliveryMs,
      message: 'the events published by the plain-function handler',
    })
    expect(plainIds.map((id) => plainChildOf(id)?.causationId)).toEqual(plainIds)
    expect(plainIds.map((id) => plainChildOf(id)?.correlationId)).toEqual(plainIds)
  },
}

/** Context case 36. */
export const contextCases: readonly ConformanceCase[] = [traceContext]
