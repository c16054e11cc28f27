/**
 * The process-lifetime rule on the network backends, checked in child processes: a connected
 * backend keeps the process alive until it is disconnected (also with no subscription), and a
 * script that closes both buses exits by itself with every telemetry event on the broker. The
 * events are read back from the broker: replayed from the earliest offset where the backend can,
 * otherwise by a subscriber in this process started before the child.
 */
import { newRunId, runLifetimeChild } from '@omnibus/conformance'
import { createBackend, type EventBackend, type OmnibusEvent } from '@omnibus/core'
import { afterAll, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'

const EVENTS = 50

function lifetimeTests(url: () => string, bounds: { readonly exitWithinMs: number }): void {
  const opened: EventBackend[] = []
  afterAll(async () => {
    await Promise.allSettled(opened.map((b) => b.disconnect()))
  })
  const connect = async (): Promise<EventBackend> => {
    const b = await createBackend(url())
    opened.push(b)
    await b.connect()
    return b
  }

  it('a script that closes both buses exits by itself, every telemetry event on the broker', async () => {
    const run = newRunId()
    const topic = `lifetime.${run}`
    const got: OmnibusEvent[] = []
    const reader = await connect()
    const replay = reader.capabilities.replay
    if (!replay) await reader.subscribe(topic, (e) => void got.push(e))
    const result = await runLifetimeChild({
      url: url(),
      mode: 'close',
      run,
      events: EVENTS,
      exitWithinMs: bounds.exitWithinMs,
    })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.reply).toEqual({ echoed: { run } })
    expect(result.report?.telemetry).toMatchObject({
      emitted: EVENTS,
      flushed: EVENTS,
      droppedTotal: 0,
      buffered: 0,
    })
    expect(result.exitedByItself).toBe(true)
    expect(result.code).toBe(0)
    if (replay) {
      await reader.subscribe(topic, (e) => void got.push(e), { group: `reader-${run}`, from: 'earliest' })
    }
    await eventually(
      `${EVENTS} telemetry events on ${topic} (got ${got.length})`,
      () => got.length >= EVENTS,
      30_000,
    )
    expect(got.map((e) => (e.data as { i: number }).i).sort((a, b) => a - b)).toEqual([
      ...Array(EVENTS).keys(),
    ])
  })

  it('a script that does not close its buses stays alive (the connected backends hold it)', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({ url: url(), mode: 'open', run, aliveForMs: 2000 })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.reply).toEqual({ echoed: { run } })
    expect(result.exitedByItself).toBe(false)
  })

  it('a connected backend with no subscription keeps the process alive until disconnect()', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({ url: url(), mode: 'idle', run, aliveForMs: 2000 })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.mode).toBe('idle')
    expect(result.exitedByItself).toBe(false)
  })
}

describeWithService('redis', 'process lifetime on Redis', () => {
  lifetimeTests(() => requireEndpoint('redis'), { exitWithinMs: 10_000 })
})

describeWithService('rabbitmq', 'process lifetime on RabbitMQ', () => {
  lifetimeTests(() => requireEndpoint('rabbitmq'), { exitWithinMs: 10_000 })
})

describeWithService('kafka', 'process lifetime on Kafka', () => {
  lifetimeTests(() => `kafka://${requireEndpoint('kafka').split(',')[0]}`, { exitWithinMs: 30_000 })
})

describeWithService('sqs', 'process lifetime on SQS', () => {
  lifetimeTests(() => `sqs://${new URL(requireEndpoint('sqs')).host}`, { exitWithinMs: 30_000 })
})
