import { consoleLogger } from '@omnibus/core'
import type { Redis } from 'ioredis'
import { describe, expect, it, vi } from 'vitest'
import { entryMessage, RedisAdapter, type RedisMessage } from '../src/adapter.ts'

/** A command connection that records what it is sent; XCLAIM claims what it is asked for. */
function fakeClient() {
  const sent: (string | number)[][] = []
  const client = {
    call: (...args: (string | number)[]) => {
      sent.push(args)
      return Promise.resolve(args[0] === 'XCLAIM' ? [args[5]] : 1)
    },
    pipeline: () => {
      const p = {
        call: (...args: (string | number)[]) => {
          sent.push(args)
          return p
        },
        exec: () => Promise.resolve([]),
      }
      return p
    },
  }
  return { client: client as unknown as Redis, sent }
}

function adapterOn(client: Redis, delivered: RedisMessage[] = []): RedisAdapter {
  return new RedisAdapter({
    command: () => client,
    logger: consoleLogger,
    group: 'g',
    consumer: 'me',
    pending: true,
    leaseMs: 3_000,
    dedupe: undefined,
    publish: async () => {},
    deliver: (m) => void delivered.push(m),
    stop: () => {},
    dispose: async () => {},
    onSettled: () => {},
  })
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('stream entries as kernel messages', () => {
  it('hands over the event field, names the entry and reads its time from the id', () => {
    const m = entryMessage('p:stream:a.b', '1700000000123-4', 'a.b', ['event', '{"x":1}'], 2)
    expect(m.body).toBe('{"x":1}')
    expect(m.event).toBeUndefined()
    expect(m.nativeId).toBe('a.b:1700000000123-4')
    expect(m.time).toBe(1_700_000_000_123)
    expect(m.deliveryCount).toBe(2)
    expect(entryMessage('k', '1-0', 't', ['other', 'v', 'event', 'doc'], 1).body).toBe('doc')
  })

  it('gives an entry without an event field as the JSON array of its fields, which no envelope decodes', () => {
    expect(entryMessage('k', '1-0', 't', ['a', '1', 'b', '2'], 1).body).toBe('["a","1","b","2"]')
  })
})

describe('the adapter on the server', () => {
  it('acknowledges the entries of one tick with one XACK per stream', async () => {
    const { client, sent } = fakeClient()
    const a = adapterOn(client)
    for (const id of ['1-0', '2-0']) a.ack(entryMessage('s1', id, 't1', ['event', '{}'], 1))
    a.ack(entryMessage('s2', '3-0', 't2', ['event', '{}'], 1))
    expect(sent).toEqual([])
    await tick()
    expect(sent).toEqual([
      ['XACK', 's1', 'g', '1-0', '2-0'],
      ['XACK', 's2', 'g', '3-0'],
    ])
  })

  it('hands back an unstarted entry with its count kept, and a started one with that delivery counted', async () => {
    const { client, sent } = fakeClient()
    const a = adapterOn(client)
    // The reclaim of a handed-back entry adds one to what RETRYCOUNT sets.
    a.release(entryMessage('s', '1-0', 't', ['event', '{}'], 2), false)
    a.release(entryMessage('s', '2-0', 't', ['event', '{}'], 2), true)
    await tick()
    expect(sent).toEqual([
      ['XCLAIM', 's', 'g', 'me', 0, '1-0', 'IDLE', 2 ** 31, 'RETRYCOUNT', 1, 'JUSTID'],
      ['XCLAIM', 's', 'g', 'me', 0, '2-0', 'IDLE', 2 ** 31, 'RETRYCOUNT', 2, 'JUSTID'],
    ])
  })

  it('writes the count of a retry into the pending entry, only if it is still this member’s, then delivers it', async () => {
    const { client, sent } = fakeClient()
    const delivered: RedisMessage[] = []
    const a = adapterOn(client, delivered)
    const msg = entryMessage('s', '1-0', 't', ['event', '{}'], 1)
    vi.useFakeTimers()
    try {
      a.redeliver(msg, 1_500, 2)
      await vi.advanceTimersByTimeAsync(1_499)
      expect(sent).toEqual([])
      await vi.advanceTimersByTimeAsync(1)
    } finally {
      vi.useRealTimers()
    }
    // Idle for less than the delay less a third of the lease: another member took it meanwhile.
    expect(sent).toEqual([['XCLAIM', 's', 'g', 'me', 500, '1-0', 'RETRYCOUNT', 2, 'JUSTID']])
    expect(delivered.map((m) => [m.id, m.deliveryCount])).toEqual([['1-0', 2]])
  })

  it('renews the lease of every entry it holds', async () => {
    const { client, sent } = fakeClient()
    const a = adapterOn(client)
    for (const id of ['1-0', '2-0']) a.held.add(entryMessage('s', id, 't', ['event', '{}'], 1))
    await a.extend()
    expect(sent).toEqual([['XCLAIM', 's', 'g', 'me', 0, '1-0', '2-0', 'JUSTID']])
  })
})
