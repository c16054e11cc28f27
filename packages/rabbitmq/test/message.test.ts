import type { Channel, ConsumeMessage } from 'amqplib'
import { describe, expect, it } from 'vitest'
import { AckBatcher } from '../src/acks.ts'
import { DELIVERY_COUNT_HEADER, RabbitMessage, RETRY_HEADERS } from '../src/message.ts'

const acks = new AckBatcher({} as Channel)

function delivery(tag: number, headers?: Record<string, unknown>): ConsumeMessage {
  return {
    content: Buffer.from('{}'),
    fields: {
      deliveryTag: tag,
      routingKey: 'orders.created',
      exchange: 'omnibus.events',
      redelivered: false,
    },
    properties: { headers },
  } as unknown as ConsumeMessage
}

describe('an AMQP delivery as a kernel message', () => {
  it('a first publish is delivery 1; quorum redeliveries and retry copies add up', () => {
    expect(new RabbitMessage(delivery(1), acks, 'r').deliveryCount).toBe(1)
    expect(new RabbitMessage(delivery(1, {}), acks, 'r').deliveryCount).toBe(1)
    // Handed out twice before without an ack (a quorum queue's count).
    expect(new RabbitMessage(delivery(1, { [DELIVERY_COUNT_HEADER]: 2 }), acks, 'r').deliveryCount).toBe(3)
    // A retry copy published as delivery 3, handed out once more after a crash.
    const copy = { [RETRY_HEADERS.attempt]: 3, [DELIVERY_COUNT_HEADER]: 1 }
    expect(new RabbitMessage(delivery(1, copy), acks, 'r').deliveryCount).toBe(4)
    // Headers from elsewhere that are not counts are ignored.
    const junk = { [RETRY_HEADERS.attempt]: 'x', [DELIVERY_COUNT_HEADER]: -1 }
    expect(new RabbitMessage(delivery(1, junk), acks, 'r').deliveryCount).toBe(1)
  })

  it('the native id is the reader and delivery tag, carried unchanged by retry copies', () => {
    const first = new RabbitMessage(delivery(7), acks, 'abc.1')
    expect(first.nativeId).toBe('abc.1-7')
    const copy = new RabbitMessage(delivery(2, { [RETRY_HEADERS.nativeId]: first.nativeId }), acks, 'xyz.3')
    expect(copy.nativeId).toBe('abc.1-7')
    expect(first.topic).toBe('orders.created')
    expect(first.counted).toBe(false)
    expect(new RabbitMessage(delivery(1, { [DELIVERY_COUNT_HEADER]: 1 }), acks, 'r').counted).toBe(true)
  })
})
