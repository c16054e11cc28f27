import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { createEvent, type EventBackend } from '@omnibus/core'
import { encodeEvent } from '@omnibus/core/backend'
import { groupQueueName, type SqsBackendOptions } from '@omnibus/sqs'
import { afterEach, expect, it } from 'vitest'
import {
  type Arrival,
  expectOnTime,
  expectSurvivedRestart,
  lateness,
  recorder,
  restartObserved,
} from '../setup/delay.ts'
import { describeWithService, restartHint, serviceRestart } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'
import { runQueues } from './cleanup.ts'

// The test project does not depend on the AWS SDK itself: it is loaded from the backend package.
const sdk = createRequire(new URL('../../packages/sqs/package.json', import.meta.url))(
  '@aws-sdk/client-sqs',
) as {
  SQSClient: new (
    config: Record<string, unknown>,
  ) => { send(command: unknown): Promise<{ QueueUrl?: string; Attributes?: Record<string, string> }> }
  GetQueueUrlCommand: new (input: Record<string, unknown>) => unknown
  GetQueueAttributesCommand: new (input: Record<string, unknown>) => unknown
}

/** How many messages of a queue wait hidden by their delay, and how many are held by consumers. */
async function queueCounts(endpoint: string, name: string): Promise<{ delayed: number; inFlight: number }> {
  const client = new sdk.SQSClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
  })
  const { QueueUrl } = await client.send(new sdk.GetQueueUrlCommand({ QueueName: name }))
  const { Attributes } = await client.send(
    new sdk.GetQueueAttributesCommand({
      QueueUrl,
      AttributeNames: ['ApproximateNumberOfMessagesDelayed', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  )
  return {
    delayed: Number(Attributes?.ApproximateNumberOfMessagesDelayed),
    inFlight: Number(Attributes?.ApproximateNumberOfMessagesNotVisible),
  }
}

describeWithService('sqs', 'sqs: delayed events wait in the queue', () => {
  const { endpoint, prefix } = runQueues('dy')
  const restart = serviceRestart('sqs')
  const backends: EventBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  async function backend(extra: SqsBackendOptions = {}) {
    const b = makeBackend(extra)
    backends.push(b)
    await b.connect()
    return b
  }

  /** Polls the counts of `queue` every 100 ms until they are `want`. */
  async function queueReaches(
    what: string,
    queue: string,
    want: { delayed: number; inFlight: number },
    timeoutMs?: number,
  ): Promise<void> {
    let counts = { delayed: -1, inFlight: -1 }
    const poll = setInterval(() => {
      queueCounts(endpoint, queue).then(
        (c) => {
          counts = c
        },
        () => {},
      )
    }, 100)
    try {
      await eventually(
        what,
        () => counts.delayed === want.delayed && counts.inFlight === want.inFlight,
        timeoutMs,
      )
    } finally {
      clearInterval(poll)
    }
  }

  /**
   * A member that joins `group` after the first left (`early` recorded the first one's runs): the
   * delayed event reaches it once, as its first attempt (SQS counts every receive: one before its
   * time would make this the second), and not before its time; the first member never ran it.
   */
  async function laterMemberGets(topic: string, group: string, early: Arrival[]): Promise<Arrival> {
    const got: Arrival[] = []
    const second = await backend()
    await second.subscribe(topic, recorder(got), { group })
    await eventually('the delayed event', () => got.length === 1, 15_000)
    expect(early).toEqual([])
    const arrival = got[0] as Arrival
    expectOnTime(arrival)
    return arrival
  }

  it('delays published longest first arrive in due order, each within a few hundred milliseconds', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `delay.${run}.order`
    const consumer = await backend()
    const got: Arrival[] = []
    await consumer.subscribe(topic, recorder(got), { group: `order-${run}`, concurrency: 1 })
    const publisher = await backend()
    // Half a second past whole seconds: a hold of whole seconds rounded up is late by about that.
    for (const delayMs of [4_500, 2_500]) await publisher.publish({ topic, data: delayMs, delayMs })
    await publisher.publish({ topic, data: 0 })
    await eventually('all three events', () => got.length === 3, 20_000)

    expect(got.map((a) => a.event.data)).toEqual([0, 2_500, 4_500])
    for (const a of got.slice(1)) expectOnTime(a, 450)
  }, 30_000)

  it('a delayed event is not received before its time: a member that joins later runs it as the first attempt', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `delay.${run}.restart`
    const group = `restart-${run}`
    // A short long poll: a poll cut by unsubscribe still waits on the server until it ends.
    const first = await backend({ waitTimeSeconds: 1 })
    const early: Arrival[] = []
    const sub = await first.subscribe(topic, recorder(early), { group })
    const publisher = await backend()
    const { id } = await publisher.publish({ topic, data: 'later', delayMs: 4_000 })
    await sub.unsubscribe()

    const arrival = await laterMemberGets(topic, group, early)
    expect(arrival.event.id).toBe(id)
  }, 30_000)

  it('a delayed event written without DelaySeconds is sent again to wait, not held by the consumer that received it', async () => {
    const run = randomUUID().slice(0, 8)
    const topic = `delay.${run}.raw`
    const group = `raw-${run}`
    const first = await backend({ waitTimeSeconds: 1 })
    const early: Arrival[] = []
    const sub = await first.subscribe(topic, recorder(early), { group })
    const writer = await backend()
    // As a producer that knows the envelope but not SQS delays would write it.
    const event = createEvent({ topic, data: 'raw later', delayMs: 3_500 })
    expect(await writer.publishRaw(topic, encodeEvent(event))).toBe(1)
    // The first member receives it at once and sends it back to wait as a delayed message (not
    // one it holds); then it leaves.
    const queue = groupQueueName(prefix, group, topic, false)
    await queueReaches('the message waiting delayed in the queue', queue, { delayed: 1, inFlight: 0 })
    await sub.unsubscribe()

    const arrival = await laterMemberGets(topic, group, early)
    expect(arrival.event.id).toBe(event.id)
    expect(lateness(arrival)).toBeLessThan(1_000)
  }, 30_000)

  it.skipIf(restart === undefined)(
    `delayed events waiting in the queue survive a restart of the server (persistent ElasticMQ): each arrives once, not early, to the group that subscribed before${restart === undefined ? ` (skipped: ${restartHint('sqs')})` : ''}`,
    async () => {
      const run = randomUUID().slice(0, 8)
      const topic = `delay.${run}.restart`
      const group = `restart-${run}`
      const SHORT_MS = 6_000
      const consumer = await backend()
      const got: Arrival[] = []
      await consumer.subscribe(topic, recorder(got), { group })
      const publisher = await backend()
      // The short delay is sent with DelaySeconds and falls due while the server is away. The long
      // one is written without DelaySeconds, so the consumer sends it back to wait (the way a delay
      // longer than 900 s waits out each stretch) and it is due after the server is back.
      const long = createEvent({ topic, data: 'long', delayMs: 30_000 })
      expect(await publisher.publishRaw(topic, encodeEvent(long))).toBe(1)
      const queue = groupQueueName(prefix, group, topic, false)
      await queueReaches('the long one waiting delayed in the queue, not held by the consumer', queue, {
        delayed: 1,
        inFlight: 0,
      })
      const short = await publisher.publish({ topic, data: 'short', delayMs: SHORT_MS })

      const { downAt, backAt } = await restartObserved(restart as () => Promise<void>, publisher)
      const arrived = (data: string) => got.some((a) => a.event.data === data)
      await eventually(
        'both delayed events after the restart',
        () => arrived('short') && arrived('long'),
        60_000,
      )
      // A second copy of either would be ahead of an undelayed event published now.
      await publisher.publish({ topic, data: 'marker' })
      await eventually('the marker', () => got.some((a) => a.event.data === 'marker'), 20_000)
      expect(
        got.map((a) => a.event.data),
        `arrivals (ms after the server was seen down, attempt): ${JSON.stringify(got.map((a) => [a.event.data, a.at - downAt, a.attempt]))}; back after ${backAt - downAt} ms`,
      ).toEqual(['short', 'long', 'marker'])
      const [s, l] = got as [Arrival, Arrival]
      expect(s.event.id).toBe(short.id)
      expect(l.event.id).toBe(long.id)
      // The backend sends a delay with DelaySeconds = its whole seconds less 250 ms (5 s here) and
      // the consumer waits out the rest: the short one must have been hidden in the server, not
      // held by the consumer, when the server went down.
      const visibleAt = s.event.time + Math.floor((SHORT_MS - 250) / 1000) * 1000
      expect(
        visibleAt,
        'the short delay still hidden in the queue when the server went down',
      ).toBeGreaterThan(downAt)
      // Each arrived as attempt 1: SQS counts every receive, one before its time would make it the
      // second. The wait of the long one is not started again when the server reloads it.
      expectSurvivedRestart(s, l, { downAt, backAt })
      await queueReaches('an empty queue: no copy left to come later', queue, { delayed: 0, inFlight: 0 })
      console.log(
        `sqs down ${backAt - downAt} ms; short delay arrived ${lateness(s)} ms after its time, ${s.at - backAt} ms after the server was back; long delay ${lateness(l)} ms late`,
      )
    },
    120_000,
  )
})
