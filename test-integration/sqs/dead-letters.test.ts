import { randomUUID } from 'node:crypto'
import {
  DEAD_LETTER_GROUP,
  DEFAULT_DEAD_LETTER_TOPIC,
  DLQ_HEADERS,
  type EventBackend,
  type OmnibusEvent,
} from '@omnibus/core'
import { afterEach, expect, it } from 'vitest'
import { captureLogger, type LogLine } from '../setup/capture-logger.ts'
import { describeWithService } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'
import { runQueues } from './cleanup.ts'

describeWithService('sqs', 'sqs: dead letters nobody subscribes to yet', () => {
  // A prefix of its own: no queue of this run is subscribed to omnibus.deadletter.
  runQueues('dl')
  const backends: EventBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  for (const fifo of [false, true]) {
    it(`${fifo ? 'FIFO' : 'standard'} queues: a foreign message dead-lettered to ${DEFAULT_DEAD_LETTER_TOPIC} is kept until a subscriber of group ${DEAD_LETTER_GROUP} reads it`, async () => {
      const run = randomUUID().slice(0, 8)
      const logs: LogLine[] = []
      const consumer = makeBackend({ fifo, logger: captureLogger(logs) })
      backends.push(consumer)
      await consumer.connect()
      const topic = `dl.${run}.orders`
      const handled: OmnibusEvent[] = []
      await consumer.subscribe(topic, (e) => void handled.push(e), { group: `dl-${run}` })

      const writer = makeBackend({ fifo })
      backends.push(writer)
      await writer.connect()
      expect(await writer.publishRaw(topic, `not json ${run} {`), 'queues the raw message went to').toBe(1)
      await eventually('the consumer to log the dead letter', () =>
        logs.some((l) => l.message.includes('dead-lettered')),
      )
      const line = logs.find((l) => l.message.includes('dead-lettered')) as LogLine
      expect(String(line.fields.reason)).toMatch(/JSON|envelope/i)

      const reader = makeBackend({ fifo })
      backends.push(reader)
      await reader.connect()
      const letters: OmnibusEvent[] = []
      await reader.subscribe(DEFAULT_DEAD_LETTER_TOPIC, (e) => void letters.push(e), {
        group: DEAD_LETTER_GROUP,
      })
      await eventually(
        'the dead letter kept while nobody subscribed',
        () => letters.some((l) => l.headers[DLQ_HEADERS.originalTopic] === topic),
        15_000,
      )
      const letter = letters.find((l) => l.headers[DLQ_HEADERS.originalTopic] === topic) as OmnibusEvent
      expect(letter.topic).toBe(DEFAULT_DEAD_LETTER_TOPIC)
      expect(letter.headers[DLQ_HEADERS.reason]).toMatch(/JSON|envelope/i)
      expect(Buffer.from(letter.data as Uint8Array).toString('utf8')).toBe(`not json ${run} {`)
      expect(handled).toEqual([])
    })
  }
})
