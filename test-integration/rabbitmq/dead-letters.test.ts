import { randomUUID } from 'node:crypto'
import {
  DEAD_LETTER_GROUP,
  DEFAULT_DEAD_LETTER_TOPIC,
  DLQ_HEADERS,
  type EventBackend,
  type OmnibusEvent,
} from '@omnibus/core'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { afterEach, expect, it } from 'vitest'
import { captureLogger, type LogLine } from '../setup/capture-logger.ts'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { injectRaw, TEST_QUEUES } from './amqp.ts'

describeWithService('rabbitmq', 'rabbitmq: dead letters nobody subscribes to yet', () => {
  const url = requireEndpoint('rabbitmq')
  const backends: EventBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  it(`a foreign message dead-lettered to ${DEFAULT_DEAD_LETTER_TOPIC} is kept until a subscriber of group ${DEAD_LETTER_GROUP} reads it`, async () => {
    // An exchange and queue prefix of its own: its omnibus.deadletter has no binding but ours.
    const run = randomUUID().slice(0, 8)
    const opts = { ...TEST_QUEUES, url, exchange: `omnibus-it.dl.${run}`, prefix: `omnibus-it-dl-${run}` }
    const logs: LogLine[] = []
    const consumer = createRabbitMQBackend({ ...opts, logger: captureLogger(logs) })
    backends.push(consumer)
    await consumer.connect()
    const topic = `dl.${run}.orders`
    const handled: OmnibusEvent[] = []
    await consumer.subscribe(topic, (e) => void handled.push(e), { group: `dl-${run}` })

    await injectRaw(url, topic, new TextEncoder().encode(`not json ${run} {`), opts.exchange)
    await eventually('the consumer to log the dead letter', () =>
      logs.some((l) => l.message.includes('dead-lettered')),
    )
    const line = logs.find((l) => l.message.includes('dead-lettered')) as LogLine
    expect(line.level).toBe('warn')
    expect(String(line.fields.reason)).toMatch(/JSON|envelope/i)
    expect(line.fields.deadLetter).toBe(DEFAULT_DEAD_LETTER_TOPIC)

    const reader = createRabbitMQBackend(opts)
    backends.push(reader)
    await reader.connect()
    const letters: OmnibusEvent[] = []
    await reader.subscribe(DEFAULT_DEAD_LETTER_TOPIC, (e) => void letters.push(e), {
      group: DEAD_LETTER_GROUP,
    })
    await eventually('the dead letter kept while nobody subscribed', () => letters.length > 0)
    const letter = letters[0] as OmnibusEvent
    expect(letter.topic).toBe(DEFAULT_DEAD_LETTER_TOPIC)
    expect(letter.headers[DLQ_HEADERS.originalTopic]).toBe(topic)
    expect(letter.headers[DLQ_HEADERS.reason]).toMatch(/JSON|envelope/i)
    expect(Buffer.from(letter.data as Uint8Array).toString('utf8')).toBe(`not json ${run} {`)
    expect(handled).toEqual([])
  })
})
