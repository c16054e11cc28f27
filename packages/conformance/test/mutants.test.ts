/**
 * The suite must fail on a broken backend: each test wraps the memory backend with one fault and
 * checks that the case meant to catch it rejects, while the unbroken backend passes the same case.
 */
import { randomUUID } from 'node:crypto'
import type { EventBackend, EventHandler, OmnibusEvent } from '@omnibus/core'
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { describe, expect, it } from 'vitest'
import { ALL_CASES } from '../src/cases/index.ts'
import { createCaseContext, PROBE_HEADER } from '../src/harness.ts'
import { type ConformanceOptions, resolveTimeouts } from '../src/options.ts'

type Tweak = (handler: EventHandler) => EventHandler

function backendFactory(bus: string, tweak?: Tweak, publishTweak?: (e: OmnibusEvent) => unknown) {
  return (): EventBackend => {
    const b = createMemoryBackend({ name: bus, maxPayloadBytes: 64 * 1024, logger: silentLogger })
    if (tweak === undefined && publishTweak === undefined) return b
    return {
      get name() {
        return b.name
      },
      get capabilities() {
        return b.capabilities
      },
      get isConnected() {
        return b.isConnected
      },
      connect: () => b.connect(),
      disconnect: (o) => b.disconnect(o),
      healthCheck: () => b.healthCheck(),
      publish: (e) => b.publish(e),
      publishBatch: (e) => b.publishBatch(e),
      subscribe: (p, h, o) => b.subscribe(p, tweak === undefined ? h : tweak(h as EventHandler), o),
    }
  }
}

/** Applies `fault` to real events only: probes pass untouched so readiness still works. */
const onEvents =
  (
    fault: (h: EventHandler, e: OmnibusEvent, ctx: Parameters<EventHandler>[1], n: number) => unknown,
  ): Tweak =>
  (h) => {
    let n = 0
    return (e, ctx) => (e.headers[PROBE_HEADER] !== undefined ? h(e, ctx) : fault(h, e, ctx, n++))
  }

async function runCase(id: string, options: ConformanceOptions): Promise<void> {
  const c = ALL_CASES.find((x) => x.id === id)
  if (c === undefined) throw new Error(`no case ${id}`)
  const first = await options.makeBackend()
  const h = createCaseContext(options, resolveTimeouts(options.timeouts), first.capabilities, first)
  try {
    await c.run(h)
  } finally {
    await h.close()
  }
}

const timeouts = { deliveryMs: 400, groupJoinMs: 1000, visibilityMs: 100, retrySlackMs: 300 }

const faults: Array<[string, string, Tweak]> = [
  [
    'loses one event in 13',
    '01-round-trip',
    onEvents((h, e, ctx, n) => (n % 13 === 5 ? undefined : h(e, ctx))),
  ],
  [
    'delivers one event in 7 twice',
    '11-overlapping-subscriptions',
    onEvents(async (h, e, ctx, n) => {
      await h(e, ctx)
      if (n % 7 === 3) await h(e, ctx)
    }),
  ],
  ['drops user headers', '01-round-trip', onEvents((h, e, ctx) => h({ ...e, headers: {} }, ctx))],
  [
    'turns binary data into an array',
    '02-edge-payloads',
    onEvents((h, e, ctx) => h(e.data instanceof Uint8Array ? { ...e, data: [...e.data] } : e, ctx)),
  ],
  [
    'reports the pattern instead of the concrete topic',
    '10-wildcard-concrete-topic',
    onEvents((h, e, ctx) => h({ ...e, topic: ctx.subscription.pattern }, ctx)),
  ],
  [
    'swallows handler errors (no retry)',
    '18-retry-until-success',
    onEvents(async (h, e, ctx) => {
      try {
        await h(e, ctx)
      } catch {
        // acknowledged anyway
      }
    }),
  ],
  [
    'retries one time too many before dead-lettering',
    '29-dead-letter',
    onEvents(async (h, e, ctx) => {
      await Promise.resolve(h(e, ctx)).catch(() => undefined)
      if (ctx.attempt >= 1) await h(e, { ...ctx, attempt: ctx.attempt + 1 })
    }),
  ],
  [
    'drops trace context headers',
    '36-trace-and-causation',
    onEvents((h, e, ctx) => {
      const { traceparent: _p, tracestate: _s, ...rest } = e.headers
      return h({ ...e, headers: rest }, ctx)
    }),
  ],
  ['delivers every event to every group member', '15-competing-members', (h) => h],
]

describe('the suite catches broken backends', () => {
  for (const [what, id, tweak] of faults) {
    it(`${id} fails on a backend that ${what}`, async () => {
      const bus = `mutant-${randomUUID()}`
      const options: ConformanceOptions = {
        makeBackend:
          what === 'delivers every event to every group member' ? groupless(bus) : backendFactory(bus, tweak),
        timeouts,
      }
      await expect(runCase(id, options)).rejects.toThrow()
    })
    it(`${id} passes on the unbroken memory backend`, async () => {
      await runCase(id, { makeBackend: backendFactory(`control-${randomUUID()}`), timeouts })
    })
  }
})

/** A backend that ignores `group`: every member receives every event (broadcast). */
function groupless(bus: string) {
  const make = backendFactory(bus)
  return (): EventBackend => {
    const b = make()
    return Object.assign(Object.create(null), {
      get name() {
        return b.name
      },
      get capabilities() {
        return b.capabilities
      },
      get isConnected() {
        return b.isConnected
      },
      connect: () => b.connect(),
      disconnect: (o: { drainTimeoutMs?: number }) => b.disconnect(o),
      healthCheck: () => b.healthCheck(),
      publish: b.publish.bind(b),
      publishBatch: b.publishBatch.bind(b),
      subscribe: (p: string, h: EventHandler, o?: Record<string, unknown>) => {
        const { group: _g, ...rest } = o ?? {}
        return b.subscribe(p, h, rest)
      },
    }) as EventBackend
  }
}
