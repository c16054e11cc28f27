import { CloudEvent } from 'cloudevents'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { asSource, decodeEvent, encodeEvent } from '../src/codec.ts'
import { deadLetterInput, redriveInput } from '../src/delivery.ts'
import { createEvent } from '../src/envelope.ts'
import { ConfigurationError } from '../src/errors.ts'
import { uriProblem } from '../src/uri.ts'

/** Whether the official SDK's strict mode accepts an event with this source and dataschema. */
function sdkAccepts(attributes: { source: string; dataschema?: string }): boolean {
  try {
    new CloudEvent({ id: '1', type: 't.x', specversion: '1.0', data: null, ...attributes }, true)
    return true
  } catch {
    return false
  }
}

// Characters that matter to URI syntax, plus a few that never belong in one.
const URI_ALPHABET = [...'aZ09-._~!$&\'()*+,;=:@/?#%[] <>"{}|\\^`é']
const uriLike = fc
  .array(fc.constantFrom(...URI_ALPHABET, 'http', '//', '%41', '%zz', ':80', 'urn:'), {
    minLength: 1,
    maxLength: 12,
  })
  .map((parts) => parts.join(''))

describe('URI checks of source and dataschema', () => {
  it('accept only what the CloudEvents SDK accepts in strict mode', () => {
    fc.assert(
      fc.property(uriLike, (value) => {
        if (uriProblem(value, false) === undefined)
          expect({ value, sdk: sdkAccepts({ source: value }) }).toEqual({ value, sdk: true })
        if (uriProblem(value, true) === undefined) {
          expect({ value, sdk: sdkAccepts({ source: 'a', dataschema: value }) }).toEqual({ value, sdk: true })
        }
      }),
      { numRuns: 5000 },
    )
  })

  it('accept the sources people use and refuse what is not a URI reference', () => {
    const good = [
      'planner-1',
      'omnibus:1234',
      'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66',
      'https://github.com/cloudevents',
      'https://user@example.com:8080/a?b=c#d',
      'mailto:cncf-wg-serverless@lists.cncf.io',
      '/sensors/tn-1234567/alerts',
      'cloudevents/spec/pull/123',
      '1-555-123-4567',
      'caf%C3%A9',
    ]
    for (const value of good)
      expect({ value, problem: uriProblem(value, false) }).toEqual({ value, problem: undefined })
    // Refused here; the SDK is laxer about some (a quote, a colon in a first segment, a bad port).
    const bad = [
      'my service',
      'a"b',
      '1:abc',
      'a{b}',
      'x#y#z',
      '%zz',
      'http://h:port/',
      'http://a@b@c/',
      'tab\there',
    ]
    for (const value of bad)
      expect({ value, problem: typeof uriProblem(value, false) }).toEqual({ value, problem: 'string' })
    for (const value of ['my service', 'a{b}', 'x#y#z', '%zz', 'tab\there']) {
      expect({ value, sdk: sdkAccepts({ source: value }) }).toEqual({ value, sdk: false })
    }
  })

  it('make publishing with a source that is not a URI reference a ConfigurationError saying what to use', () => {
    expect(() => createEvent({ topic: 'a.b', data: 1, source: 'my service' })).toThrow(ConfigurationError)
    expect(() => createEvent({ topic: 'a.b', data: 1, source: 'my service' })).toThrow(
      /source must be a URI reference such as "planner-1".*"my service"/,
    )
    expect(createEvent({ topic: 'a.b', data: 1, source: 'planner-1' }).source).toBe('planner-1')
  })

  it('let a dead letter and a redrive of a foreign event with a bad source be written valid', () => {
    const foreign = JSON.stringify({
      specversion: '1.0',
      id: 'f-1',
      source: 'legacy system #1 #2',
      type: 'a.b',
      data: {},
    })
    const event = decodeEvent(Buffer.from(foreign))
    expect(event.source).toBe('legacy system #1 #2')
    const letter = createEvent(
      deadLetterInput(event, 'omnibus.deadletter', {
        reason: 'x',
        group: 'g',
        attempts: 1,
        firstFailureAt: 0,
        lastFailureAt: 0,
        backend: 'memory',
      }),
    )
    expect(letter.source).toBe(asSource('legacy system #1 #2'))
    expect(decodeURIComponent(letter.source)).toBe('legacy system #1 #2')
    expect(sdkAccepts({ source: letter.source })).toBe(true)
    new CloudEvent(JSON.parse(encodeEvent(letter).toString()) as Record<string, unknown>, true)
    expect(createEvent(redriveInput(letter)).source).toBe(letter.source)
  })
})
