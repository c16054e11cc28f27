import type { Channel, ConsumeMessage } from 'amqplib'
import { describe, expect, it } from 'vitest'
import { AckBatcher } from '../src/acks.ts'

function fakeChannel() {
  const calls: string[] = []
  let closed = false
  const ch = {
    ack(msg: ConsumeMessage, multiple = false) {
      if (closed) throw new Error('Channel closed')
      calls.push(`ack ${msg.fields.deliveryTag}${multiple ? ' multiple' : ''}`)
    },
    nack(msg: ConsumeMessage, multiple = false, requeue = true) {
      if (closed) throw new Error('Channel closed')
      calls.push(`nack ${msg.fields.deliveryTag}${multiple ? ' multiple' : ''}${requeue ? ' requeue' : ''}`)
    },
  }
  return {
    channel: ch as unknown as Channel,
    calls,
    close() {
      closed = true
    },
  }
}

function msg(tag: number): ConsumeMessage {
  return { fields: { deliveryTag: tag } } as unknown as ConsumeMessage
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

describe('AckBatcher', () => {
  it('acks a settled run from the oldest delivery as one multiple ack, at the end of the turn', async () => {
    const f = fakeChannel()
    const a = new AckBatcher(f.channel)
    const m = [1, 2, 3, 4].map(msg)
    for (const x of m) a.track(x)
    a.ack(m[1] as ConsumeMessage)
    a.ack(m[0] as ConsumeMessage)
    a.ack(m[2] as ConsumeMessage)
    expect(f.calls).toEqual([])
    await turn()
    expect(f.calls).toEqual(['ack 3 multiple'])
    a.ack(m[3] as ConsumeMessage)
    await turn()
    expect(f.calls).toEqual(['ack 3 multiple', 'ack 4 multiple'])
  })

  it('does not hold acks back behind a slow delivery: later ones go one by one', async () => {
    const f = fakeChannel()
    const a = new AckBatcher(f.channel)
    const m = [10, 11, 12].map(msg)
    for (const x of m) a.track(x)
    a.ack(m[1] as ConsumeMessage)
    a.ack(m[2] as ConsumeMessage)
    await turn()
    expect(f.calls).toEqual(['ack 11', 'ack 12'])
    // The slow one finishes: a multiple ack up to it only covers itself now.
    a.ack(m[0] as ConsumeMessage)
    await turn()
    expect(f.calls).toEqual(['ack 11', 'ack 12', 'ack 10 multiple'])
  })

  it('never acks twice, nor acks what was nacked', async () => {
    const f = fakeChannel()
    const a = new AckBatcher(f.channel)
    const m = [1, 2, 3].map(msg)
    for (const x of m) a.track(x)
    a.nack(m[0] as ConsumeMessage)
    a.ack(m[0] as ConsumeMessage)
    a.ack(m[1] as ConsumeMessage)
    a.ack(m[1] as ConsumeMessage)
    a.flush()
    a.ack(m[1] as ConsumeMessage)
    a.nack(m[1] as ConsumeMessage)
    await turn()
    expect(f.calls).toEqual(['nack 1 requeue', 'ack 2 multiple'])
  })

  it('swallows a closed channel: the broker redelivers', async () => {
    const f = fakeChannel()
    const a = new AckBatcher(f.channel)
    const x = msg(1)
    a.track(x)
    f.close()
    a.ack(x)
    expect(() => a.flush()).not.toThrow()
    const y = msg(2)
    a.track(y)
    expect(() => a.nack(y)).not.toThrow()
  })
})
