import { randomUUID } from 'node:crypto'
import { DLQ_HEADERS, type OmnibusEvent } from '@omnibus/core'
import type { RedisBackend } from '@omnibus/redis'
import { afterEach, expect, it } from 'vitest'
import { captureLogger, type LogLine } from '../setup/capture-logger.ts'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

describeWithService('redis', 'redis: dead letters nobody subscribes to yet', () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const backends: RedisBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  it('a foreign entry is dead-lettered with its reason in the log, and kept for a later subscriber', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `dl.${run}.orders`
    const dlq = `dl.${run}.dead`
    const logs: LogLine[] = []
    const consumer = makeBackend({ logger: captureLogger(logs) })
    backends.push(consumer)
    await consumer.connect()
    const handled: OmnibusEvent[] = []
    await consumer.subscribe(topic, (e) => void handled.push(e), { group: `dl-${run}`, deadLetter: dlq })

    await consumer
      .commandClient()
      .xadd(`${IT_PREFIX}stream:${topic}`, '*', 'event', Buffer.from(`not json ${run} {`))
    await eventually('the consumer to log the dead letter', () =>
      logs.some((l) => l.message.includes('dead-lettered')),
    )
    const line = logs.find((l) => l.message.includes('dead-lettered')) as LogLine
    expect(line.level).toBe('warn')
    expect(String(line.fields.reason)).toMatch(/JSON|envelope/i)
    expect(line.fields.deadLetter).toBe(dlq)
    expect(line.fields.topic).toBe(topic)

    const reader = makeBackend()
    backends.push(reader)
    await reader.connect()
    const letters: OmnibusEvent[] = []
    await reader.subscribe(dlq, (e) => void letters.push(e), { group: `dl-read-${run}`, from: 'earliest' })
    await eventually('the dead letter, read after the fact', () => letters.length > 0)
    expect(letters[0]?.headers[DLQ_HEADERS.reason]).toMatch(/JSON|envelope/i)
    expect(handled).toEqual([])
  })
})
