import { randomUUID } from 'node:crypto'
import { ConfigurationError, type EventBackend } from '@omnibus/core'
import { createRabbitMQBackend, groupQueueName, SCHEDULE_LEVELS, scheduleLevelName } from '@omnibus/rabbitmq'
import { afterEach, expect, it } from 'vitest'
import {
  type Arrival,
  expectOnTime,
  expectSurvivedRestart,
  lateness,
  recorder,
  restartObserved,
} from '../setup/delay.ts'
import { describeWithService, requireEndpoint, restartHint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { type RawChannel, TEST_QUEUES, withChannel } from './amqp.ts'

/** Deletes the queues and exchanges of the schedule under `prefix`. */
async function deleteSchedule(ch: RawChannel, prefix: string): Promise<void> {
  for (let k = 0; k < SCHEDULE_LEVELS; k++) await ch.deleteQueue(scheduleLevelName(prefix, k))
  for (let k = 0; k < SCHEDULE_LEVELS; k++) await ch.deleteExchange(scheduleLevelName(prefix, k))
}

describeWithService('rabbitmq', 'rabbitmq: delayed events wait in the broker', () => {
  const url = requireEndpoint('rabbitmq')
  const restart = serviceRestart('rabbitmq')
  const backends: EventBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  async function backend(
    extra: { prefix?: string; exchange?: string; publishTimeoutMs?: number } = {},
  ): Promise<EventBackend> {
    const b = createRabbitMQBackend({ ...TEST_QUEUES, url, ...extra })
    backends.push(b)
    await b.connect()
    return b
  }

  it('delays published longest first arrive in due order, each well before the fallback hold (about 900 ms late)', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `delay.${run}.order`
    const b = await backend()
    const got: Arrival[] = []
    await b.subscribe(topic, recorder(got), { group: `order-${run}`, concurrency: 1 })
    // A hold that rounds its wait up to two significant digits (as retry backoff does) would be
    // about 900 ms late with the first: 12,100 ms less the few taken to get there is 13,000.
    const delays = [12_100, 6_100, 2_100]
    for (const delayMs of delays) await b.publish({ topic, data: delayMs, delayMs })
    await b.publish({ topic, data: 0 })
    await eventually('all four events', () => got.length === 4, 20_000)

    expect(got.map((a) => a.event.data)).toEqual([0, 2_100, 6_100, 12_100])
    for (const a of got.slice(1)) expectOnTime(a, 500)
  }, 30_000)

  it('a delayed event waits in the broker, not in the group queue, and reaches one member that joins after the publish', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `delay.${run}.late`
    const group = `late-${run}`
    const publisher = await backend()
    // The group's queue exists and nobody reads it, as when every member is down for a deploy.
    const first = await backend()
    await (await first.subscribe(topic, () => {}, { group })).unsubscribe()
    const { id } = await publisher.publish({ topic, data: 'later', delayMs: 2_500 })

    const { messageCount } = await withChannel(url, (ch) =>
      ch.checkQueue(groupQueueName('omnibus', group, topic)),
    )
    // A queue holding it already would hand it to the next member before its time.
    expect(messageCount).toBe(0)

    const got: Arrival[] = []
    const a = await backend()
    const b = await backend()
    await a.subscribe(topic, recorder(got), { group })
    await b.subscribe(topic, recorder(got), { group })
    await eventually('the delayed event', () => got.length === 1, 10_000)
    // A second copy would be ahead of an event published now in the group's queue.
    await publisher.publish({ topic, data: 'marker' })
    await eventually('the marker', () => got.some((x) => x.event.data === 'marker'))
    expect(got.map((x) => x.event.data)).toEqual(['later', 'marker'])
    const arrival = got[0] as Arrival
    expect(arrival.event.id).toBe(id)
    expectOnTime(arrival)
  }, 30_000)

  it('a schedule declared for another exchange under the same prefix is a ConfigurationError that names the prefix', async () => {
    const run = randomUUID().slice(0, 8)
    const prefix = `omnibus-it-sched-${run}`
    const topic = `delay.${run}.mismatch`
    try {
      const first = await backend({ prefix })
      await first.publish({ topic, data: 1, delayMs: 60_000 })
      const other = await backend({ prefix, exchange: `omnibus-it.other.${run}` })
      const error = await other.publish({ topic, data: 2, delayMs: 60_000 }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(ConfigurationError)
      expect(String((error as Error).message)).toContain(`prefix "${prefix}"`)
    } finally {
      await withChannel(url, async (ch) => {
        await deleteSchedule(ch, prefix)
        await ch.deleteExchange(`omnibus-it.other.${run}`)
      })
    }
  })

  it.skipIf(restart === undefined)(
    `delayed events waiting in a low and a high level of the schedule survive a broker restart: each arrives once, not early, to the group that subscribed before${restart === undefined ? ` (skipped: ${restartHint('rabbitmq')})` : ''}`,
    async () => {
      const run = randomUUID().slice(0, 8)
      // A prefix of its own: the schedule's queues then hold this test's events only.
      const prefix = `omnibus-it-rs-${run}`
      const topic = `delay.${run}.restart`
      const group = `restart-${run}`
      // The short delay falls due while the broker is away; the long one is due after it is back
      // and waits out the restart in level 14 (16,384 ms), the highest of its binary digits.
      const shortMs = 4_000
      const longMs = 25_000
      const longLevel = Math.floor(Math.log2(longMs))
      try {
        const consumer = await backend({ prefix })
        const got: Arrival[] = []
        await consumer.subscribe(topic, recorder(got), { group })
        const publisher = await backend({ prefix, publishTimeoutMs: 60_000 })
        const short = await publisher.publish({ topic, data: 'short', delayMs: shortMs })
        const long = await publisher.publish({ topic, data: 'long', delayMs: longMs })

        const level = await withChannel(url, (ch) => ch.checkQueue(scheduleLevelName(prefix, longLevel)))
        expect(level.messageCount, `the long delay waiting in level ${longLevel}`).toBe(1)

        const { downAt, backAt } = await restartObserved(restart as () => Promise<void>, publisher)
        await eventually('both delayed events after the restart', () => got.length >= 2, 60_000)
        // A second copy of either would be ahead of an undelayed event published now.
        await publisher.publish({ topic, data: 'marker' })
        await eventually('the marker', () => got.some((a) => a.event.data === 'marker'), 20_000)
        expect(got.map((a) => a.event.data)).toEqual(['short', 'long', 'marker'])
        // Nor is a copy left anywhere to come later.
        await withChannel(url, async (ch) => {
          for (let k = 0; k < SCHEDULE_LEVELS; k++) {
            const { messageCount } = await ch.checkQueue(scheduleLevelName(prefix, k))
            expect(messageCount, `messages in level ${k}`).toBe(0)
          }
          expect((await ch.checkQueue(groupQueueName(prefix, group, topic))).messageCount).toBe(0)
        })
        const [s, l] = got as [Arrival, Arrival]
        expect(s.event.id).toBe(short.id)
        expect(l.event.id).toBe(long.id)
        // The long delay's clock kept running while the broker was down: its wait is not started
        // again when the level's queue is recovered.
        expectSurvivedRestart(s, l, { downAt, backAt })
        console.log(
          `rabbitmq down ${backAt - downAt} ms; short delay arrived ${lateness(s)} ms after its time, ${s.at - backAt} ms after the broker was back (the consumer's reconnect backoff); long delay ${lateness(l)} ms late`,
        )
      } finally {
        await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
        await withChannel(url, async (ch) => {
          await deleteSchedule(ch, prefix)
          await ch.deleteQueue(groupQueueName(prefix, group, topic))
        })
      }
    },
    120_000,
  )
})
