import { AsyncLocalStorage } from 'node:async_hooks'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  callWithEventContextSync,
  createEvent,
  currentEvent,
  newEventId,
  runWithEventContext,
} from '../src/envelope.ts'
import { ConfigurationError, InvalidTopicError, SerializationError } from '../src/errors.ts'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

function msOf(id: string): number {
  return Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16)
}

afterEach(() => {
  vi.useRealTimers()
})

describe('event ids', () => {
  it('are UUIDv7 with the current millisecond in the first 48 bits', () => {
    const before = Date.now()
    const id = newEventId()
    const after = Date.now()
    expect(id).toMatch(UUID_V7)
    expect(msOf(id)).toBeGreaterThanOrEqual(before)
    expect(msOf(id)).toBeLessThanOrEqual(after)
  })

  it('are unique and strictly increasing, within a millisecond and across many', () => {
    const ids = Array.from({ length: 50_000 }, () => newEventId())
    expect(new Set(ids).size).toBe(ids.length)
    for (let i = 1; i < ids.length; i++) expect((ids[i - 1] as string) < (ids[i] as string)).toBe(true)
    expect(ids.every((id) => UUID_V7.test(id))).toBe(true)
  })

  it('embed the time of createEvent, which reads the clock once', () => {
    const event = createEvent({ topic: 'a', data: 1 })
    expect(msOf(event.id)).toBe(event.time)
  })

  // Runs last: the generator never goes back, so ids stay ahead of a clock that stepped back.
  it('follow the clock forward and stay increasing when it steps back', () => {
    vi.useFakeTimers()
    vi.setSystemTime(Date.UTC(2030, 0, 1))
    const a = newEventId()
    vi.setSystemTime(Date.UTC(2030, 0, 2))
    const b = newEventId()
    expect(msOf(b)).toBe(Date.UTC(2030, 0, 2))
    expect(a < b).toBe(true)
    vi.setSystemTime(Date.UTC(2029, 0, 1))
    const c = newEventId()
    expect(b < c).toBe(true)
    expect(c).toMatch(UUID_V7)
  })
})

describe('createEvent', () => {
  it('fills id, time, source and guarantee, and keeps what the caller set', () => {
    const e = createEvent({ topic: 'a.b', data: { x: 1 } })
    expect(e).toMatchObject({ topic: 'a.b', data: { x: 1 }, headers: {}, guarantee: 'at-least-once' })
    expect(e.source).toBe(`omnibus:${process.pid}`)
    expect(e.id).toMatch(UUID_V7)
    expect(Math.abs(e.time - Date.now())).toBeLessThan(1000)
    const set = createEvent(
      {
        topic: 'a',
        data: null,
        id: 'mine',
        time: 5,
        source: 'me',
        guarantee: 'at-most-once',
        partitionKey: 'k',
      },
      { source: 'default', guarantee: 'exactly-once', time: 9 },
    )
    expect(set).toMatchObject({
      id: 'mine',
      time: 5,
      source: 'me',
      guarantee: 'at-most-once',
      partitionKey: 'k',
    })
    expect(
      createEvent({ topic: 'a', data: 1 }, { source: 'svc', guarantee: 'exactly-once', time: 9 }),
    ).toMatchObject({
      source: 'svc',
      guarantee: 'exactly-once',
      time: 9,
    })
  })

  it('rejects what is not an event with an error that says what to do', () => {
    expect(() => createEvent({ topic: 'a b', data: 1 })).toThrow(InvalidTopicError)
    expect(() => createEvent({ topic: 'a.*', data: 1 })).toThrow(/wildcards belong in subscribe patterns/)
    expect(() => createEvent({ topic: 'a', data: undefined })).toThrow(SerializationError)
    expect(() => createEvent({ topic: 'a', data: 1, headers: { n: 5 as unknown as string } })).toThrow(
      /event header "n" must be a string, got number/,
    )
    expect(() => createEvent({ topic: 'a', data: 1, guarantee: 'twice' as 'at-most-once' })).toThrow(
      /unknown guarantee "twice"/,
    )
    expect(() => createEvent({ topic: 'a', data: 1, id: '' })).toThrow(ConfigurationError)
    expect(() => createEvent({ topic: 'a', data: 1, time: Number.NaN })).toThrow(/epoch milliseconds/)
    expect(() => createEvent(null as unknown as { topic: string; data: null })).toThrow(
      /expects an event object/,
    )
  })
})

describe('causation and correlation', () => {
  const parent = createEvent({ topic: 'p', data: 1, correlationId: 'conversation-1' })
  const root = createEvent({ topic: 'root', data: 1 })

  it('events created while handling one inherit its id as causation and its correlation', async () => {
    await runWithEventContext(parent, async () => {
      const early = createEvent({ topic: 'c', data: 1 })
      await new Promise((r) => setTimeout(r, 1))
      const late = createEvent({ topic: 'c', data: 2 })
      for (const child of [early, late]) {
        expect(child.causationId).toBe(parent.id)
        expect(child.correlationId).toBe('conversation-1')
      }
      expect(currentEvent()).toBe(parent)
    })
    // Without a correlation of its own, the parent starts one with its id.
    const child = runWithEventContext(root, () => createEvent({ topic: 'c', data: 1 }))
    expect(child.correlationId).toBe(root.id)
    expect(child.causationId).toBe(root.id)
  })

  it('explicit values win, and nothing leaks outside the scope', () => {
    const child = runWithEventContext(parent, () =>
      createEvent({ topic: 'c', data: 1, causationId: 'x', correlationId: 'y' }),
    )
    expect(child).toMatchObject({ causationId: 'x', correlationId: 'y' })
    const outside = createEvent({ topic: 'c', data: 1 })
    expect(outside.causationId).toBeUndefined()
    expect(outside.correlationId).toBeUndefined()
    expect(currentEvent()).toBeUndefined()
  })

  it('the synchronous scope gives the same inheritance, nests with the async one and always unwinds', () => {
    const child = callWithEventContextSync(
      parent,
      (e, topic: string) => createEvent({ topic, data: e.id }),
      'c',
    )
    expect(child).toMatchObject({ causationId: parent.id, correlationId: 'conversation-1', data: parent.id })
    const inner = callWithEventContextSync(parent, () => runWithEventContext(root, () => currentEvent()), 0)
    expect(inner).toBe(root)
    const back = runWithEventContext(root, () => callWithEventContextSync(parent, () => currentEvent(), 0))
    expect(back).toBe(parent)
    expect(() =>
      callWithEventContextSync(
        parent,
        () => {
          throw new Error('handler failed')
        },
        0,
      ),
    ).toThrow('handler failed')
    expect(currentEvent()).toBeUndefined()
  })

  it("overlapping scopes keep their own event across awaits, see the caller's other async-local values and give the caller its context back", async () => {
    const tenant = new AsyncLocalStorage<string>()
    const second = createEvent({ topic: 'q', data: 2 })
    const seen: Array<[string, string | undefined, string | undefined]> = []
    const handle = async (label: string, ms: number): Promise<void> => {
      seen.push([label, currentEvent()?.id, tenant.getStore()])
      await new Promise((r) => setTimeout(r, ms))
      seen.push([label, createEvent({ topic: 'c', data: 0 }).causationId, tenant.getStore()])
    }
    await tenant.run('acme', async () => {
      const first = runWithEventContext(parent, () => handle('first', 20))
      // The caller's own context is back as it was between and after the calls.
      expect(currentEvent()).toBeUndefined()
      expect(tenant.getStore()).toBe('acme')
      const next = runWithEventContext(second, () => handle('second', 1))
      expect(() =>
        runWithEventContext(root, () => {
          throw new Error('handler failed')
        }),
      ).toThrow('handler failed')
      expect(currentEvent()).toBeUndefined()
      await Promise.all([first, next])
      expect(currentEvent()).toBeUndefined()
      expect(tenant.getStore()).toBe('acme')
    })
    expect(seen).toEqual([
      ['first', parent.id, 'acme'],
      ['second', second.id, 'acme'],
      ['second', second.id, 'acme'],
      ['first', parent.id, 'acme'],
    ])
    // A scope opened inside another sees its own event, and the outer one's comes back after it.
    await runWithEventContext(parent, async () => {
      await runWithEventContext(root, async () => {
        await new Promise((r) => setTimeout(r, 1))
        expect(currentEvent()).toBe(root)
      })
      expect(currentEvent()).toBe(parent)
    })
  })
})
