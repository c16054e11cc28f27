import type { EventInput, OmnibusEvent } from '@omnibus/core'
import { expect } from 'vitest'
import { Inbox } from '../harness.ts'
import { waitFor } from '../wait.ts'
import type { ConformanceCase } from './types.ts'

/**
 * Header names that trip up a naive mapping onto CloudEvents extensions: case, punctuation,
 * unicode, names of `Object.prototype` members, of CloudEvents attributes and of the extensions
 * Omnibus writes for envelope fields. `traceparent` and `tracestate` are the trace context and
 * map onto the extensions of the same name on purpose.
 */
const TRICKY_NAMES = [
  'tenant',
  'Tenant',
  'TENANT',
  'x-tenant',
  'X-Tenant',
  'x.tenant',
  'x_tenant',
  'two words',
  ' ',
  'ünïcødé',
  '日本語',
  '👩‍👩‍👧',
  '__proto__',
  'constructor',
  'toString',
  'type',
  'id',
  'source',
  'specversion',
  'time',
  'data',
  'data_base64',
  'subject',
  'datacontenttype',
  'guarantee',
  'partitionkey',
  'correlationid',
  'omnibusheaders',
  'hdr_x',
  'a'.repeat(21),
  'line\nbreak',
  '"quoted"',
]

function trickyHeaders(runId: string): Record<string, string> {
  const headers: Record<string, string> = {}
  TRICKY_NAMES.forEach((name, i) => {
    // defineProperty: `headers['__proto__'] = v` would set the prototype, not a header.
    Object.defineProperty(headers, name, {
      value: `${runId}:${i} "${name}" é`,
      enumerable: true,
      writable: true,
      configurable: true,
    })
  })
  headers.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  headers.tracestate = `conf=${runId}`
  return headers
}

function attributesOf(e: OmnibusEvent): Record<string, unknown> {
  return { subject: e.subject, dataSchema: e.dataSchema, dataContentType: e.dataContentType }
}

const headerNames: ConformanceCase = {
  id: '39-header-names',
  title:
    'header names of any case and character (dashes, dots, spaces, unicode, __proto__, CloudEvents attribute names) and subject/dataschema/datacontenttype arrive exactly, also when a handler re-publishes the event',
  async run(h) {
    const b = await h.backend()
    const topic = h.topic('hdr', 'in')
    const again = h.topic('hdr', 'again')
    const inbox = new Inbox('header names')
    const republished = new Inbox('re-published events')
    await h.subscribe(b, again, republished)
    await h.subscribe(b, topic, inbox, {}, async (e) => {
      // What a forwarding handler does: the received event, as it is, to another topic.
      await b.publish({ ...e, topic: again, id: `${e.id}.again` })
    })
    await h.settle(b, topic, [inbox])
    await h.settle(b, again, [republished])
    const headers = trickyHeaders(h.runId)
    const sent: EventInput[] = [
      {
        topic,
        id: `${h.runId}-hdr-json`,
        data: { runId: h.runId },
        headers,
        subject: 'order-7',
        dataSchema: 'https://example.com/schemas/order.json',
      },
      {
        topic,
        id: `${h.runId}-hdr-text`,
        data: `<order run="${h.runId}"/>`,
        headers,
        dataContentType: 'application/xml',
      },
      {
        topic,
        id: `${h.runId}-hdr-bytes`,
        data: new Uint8Array([0, 1, 2, 127, 128, 254, 255]),
        headers,
        subject: 'frame 1',
        dataContentType: 'image/png',
      },
    ]
    const ids = await h.publishAll(b, sent)
    await h.waitAcked(inbox, ids)
    const againIds = ids.map((id) => `${id}.again`)
    await waitFor(() => againIds.every((id) => republished.acked.some((e) => e.id === id)), {
      timeoutMs: h.timeouts.deliveryMs,
      message: 're-published events',
    })
    for (const [i, s] of sent.entries()) {
      const id = ids[i] as string
      const expected = {
        subject: s.subject,
        dataSchema: s.dataSchema,
        dataContentType: s.dataContentType,
      }
      for (const [label, got] of [
        ['received', inbox.acked.find((e) => e.id === id)],
        ['re-published', republished.acked.find((e) => e.id === `${id}.again`)],
      ] as const) {
        expect(got, `${label} ${id}`).toBeDefined()
        const e = got as OmnibusEvent
        expect(e.headers, `${label} ${id} headers`).toEqual(headers)
        expect(Object.keys(e.headers).sort(), `${label} ${id} header names`).toEqual(
          Object.keys(headers).sort(),
        )
        expect(Object.hasOwn(e.headers, '__proto__'), `${label} ${id}: __proto__ is an own header`).toBe(true)
        expect(attributesOf(e), `${label} ${id} attributes`).toEqual(expected)
        if (s.data instanceof Uint8Array) expect(Array.from(e.data as Uint8Array)).toEqual(Array.from(s.data))
        else expect(e.data).toEqual(s.data)
      }
    }
  },
}

/** Cases about headers and CloudEvents attributes. */
export const headerCases: readonly ConformanceCase[] = [headerNames]
