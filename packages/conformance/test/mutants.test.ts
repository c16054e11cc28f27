/**
 * The suite must fail on a broken backend: each test wraps the memory backend with one fault and
 * checks that the case meant to catch it rejects, while the unbroken backend passes the same case.
 */
import { randomUUID } from 'node:crypto'
import type { EventBackend, EventHandler, OmnibusEvent, SubscribeOptions } from '@omnibus/core'
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { describe, expect, it } from 'vitest'
import { ALL_CASES } from '../src/cases/index.ts'
import { createCaseContext, PROBE_HEADER } from '../src/harness.ts'
import { type ConformanceOptions, resolveTimeouts } from '../src/options.ts'

/** Replaces some members of a working backend. */
type Fault = (b: EventBackend) => Partial<EventBackend>

function factory(bus: string, fault?: Fault) {
  return (): EventBackend => {
    const b = createMemoryBackend({ name: bus, maxPayloadBytes: 64 * 1024, logger: silentLogger })
    if (fault === undefined) return b
    const o = fault(b)
    return {
      get name() {
        return b.name
      },
      get capabilities() {
        return o.capabilities ?? b.capabilities
      },
      get isConnected() {
        return b.isConnected
      },
      connect: o.connect ?? (() => b.connect()),
      disconnect: o.disconnect ?? ((x) => b.disconnect(x)),
      healthCheck: o.healthCheck ?? (() => b.healthCheck()),
      publish: o.publish ?? ((e) => b.publish(e)),
      publishBatch: o.publishBatch ?? ((e) => b.publishBatch(e)),
      subscribe: o.subscribe ?? ((p, h, x) => b.subscribe(p, h, x)),
      ensureGroup: o.ensureGroup ?? ((p, g) => b.ensureGroup(p, g)),
    }
  }
}

type Ctx = Parameters<EventHandler>[1]

/** A fault in how handlers are called, applied to real events only (probes pass untouched). */
const onEvents =
  (
    fault: (h: EventHandler, e: OmnibusEvent, ctx: Ctx, n: number, opts?: SubscribeOptions) => unknown,
  ): Fault =>
  (b) => ({
    subscribe: (p, h, opts) => {
      let n = 0
      const handler = h as EventHandler
      return b.subscribe(
        p,
        (e, ctx) =>
          e.headers[PROBE_HEADER] !== undefined ? handler(e, ctx) : fault(handler, e, ctx, n++, opts),
        opts,
      )
    },
  })

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

const faults: Array<[string, string, Fault]> = [
  [
    'loses one event in 13',
    '01-round-trip',
    onEvents((h, e, ctx, n) => (n % 13 === 5 ? undefined : h(e, ctx))),
  ],
  ['drops user headers', '01-round-trip', onEvents((h, e, ctx) => h({ ...e, headers: {} }, ctx))],
  [
    'turns binary data into an array',
    '02-edge-payloads',
    onEvents((h, e, ctx) => h(e.data instanceof Uint8Array ? { ...e, data: [...e.data] } : e, ctx)),
  ],
  [
    'does not enforce its payload limit',
    '03-payload-limit',
    (b) => ({
      publish: async (e) => {
        try {
          return await b.publish(e)
        } catch {
          return { id: e.id ?? 'accepted', topic: e.topic }
        }
      },
    }),
  ],
  [
    'fails a whole batch for one bad entry',
    '08-batch-publish',
    (b) => ({
      publishBatch: async (events) => {
        const r = await b.publishBatch(events)
        if (r.failed > 0) throw new Error('batch rejected')
        return r
      },
    }),
  ],
  [
    'reports the pattern instead of the concrete topic',
    '10-wildcard-concrete-topic',
    onEvents((h, e, ctx) => h({ ...e, topic: ctx.subscription.pattern }, ctx)),
  ],
  [
    'delivers one event in 7 twice',
    '11-overlapping-subscriptions',
    onEvents(async (h, e, ctx, n) => {
      await h(e, ctx)
      if (n % 7 === 3) await h(e, ctx)
    }),
  ],
  [
    'accepts a pattern with a space',
    '13-invalid-topics',
    (b) => ({
      subscribe: (p, h, o) => b.subscribe(p.replaceAll(' ', '_'), h, o),
    }),
  ],
  [
    'ignores groups (every member gets every event)',
    '15-competing-members',
    (b) => ({
      subscribe: (p, h, o) => {
        const { group: _g, ...rest } = o ?? {}
        return b.subscribe(p, h, rest)
      },
    }),
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
    'does not wait for in-flight handlers on disconnect',
    '23-drain-on-disconnect',
    (b) => ({ disconnect: () => b.disconnect({ drainTimeoutMs: 1 }) }),
  ],
  [
    'keeps delivering after unsubscribe',
    '24-unsubscribe-abort',
    (b) => ({
      subscribe: async (p, h, o) => {
        const { signal: _s, ...rest } = o ?? {}
        const sub = await b.subscribe(p, h, rest)
        return {
          id: sub.id,
          pattern: sub.pattern,
          group: sub.group,
          active: true,
          unsubscribe: async () => {},
        }
      },
    }),
  ],
  [
    'retries at-most-once handlers',
    '25-at-most-once',
    onEvents(async (h, e, ctx) => {
      try {
        await h(e, ctx)
      } catch {
        await h(e, { ...ctx, attempt: 2 })
      }
    }),
  ],
  [
    'does not dedupe exactly-once deliveries',
    '26-exactly-once',
    (b) => {
      let duplicated = false
      return onEvents(async (h, e, ctx) => {
        await h(e, ctx)
        if (!duplicated) {
          duplicated = true
          await h(e, ctx)
        }
      })(b)
    },
  ],
  [
    'silently downgrades a guarantee it does not declare',
    '27-undeclared-guarantee',
    (b) => ({
      capabilities: { ...b.capabilities, guarantees: ['at-least-once'] },
    }),
  ],
  [
    'runs one attempt too many before dead-lettering',
    '29-dead-letter',
    onEvents(async (h, e, ctx) => {
      await Promise.resolve(h(e, ctx)).catch(() => undefined)
      await h(e, { ...ctx, attempt: ctx.attempt + 1 })
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
  [
    'keeps no mailbox (ensureGroup does nothing)',
    '50-send-before-subscribe',
    () => ({ ensureGroup: async () => {} }),
  ],
  [
    'declares no group (ensureGroup does nothing)',
    '51-ensure-group',
    () => ({ ensureGroup: async () => {} }),
  ],
]

describe('the suite catches broken backends', () => {
  for (const [what, id, fault] of faults) {
    it(`${id} fails on a backend that ${what}`, async () => {
      const options: ConformanceOptions = { makeBackend: factory(`mutant-${randomUUID()}`, fault), timeouts }
      await expect(runCase(id, options)).rejects.toThrow()
    })
  }
  for (const id of new Set(faults.map(([, id]) => id))) {
    it(`${id} passes on the unbroken memory backend`, async () => {
      await runCase(id, { makeBackend: factory(`control-${randomUUID()}`), timeouts })
    })
  }
})
