/**
 * Delayed events on Kafka: delay topics with a forwarder (the shape of Kafka's retry topics).
 *
 * Kafka cannot hide a record until a time, and holding a delayed event in the consumer (a timer or
 * a paused partition of the destination topic) would stop the committed offset at it: everything
 * after it on the partition would be read again after a crash, and a long delay would pin the
 * group. So a delayed event is not produced to its topic until it is due:
 *
 * - It is produced, envelope and key unchanged, to one of the delay topics {@link DELAY_TIERS}
 *   (`__omnibus_delay_<tier>`): the longest tier not longer than what remains of its delay (the
 *   shortest one below that). In one tier every record waits the tier's length after its
 *   timestamp, so records are due in log order, except in the shortest tier, where a record is due
 *   at its own `deliverAt` (at most one tier length after its timestamp).
 * - The forwarder, a member of the group `__omnibus_delay_forwarder` in every instance that
 *   subscribes, reads the delay topics. It forwards a due record to the next tier for the rest of
 *   the delay, or to its destination topic once `deliverAt` has passed, then commits its offset.
 *   At a record not due yet it pauses that partition (other partitions go on) and resumes it when
 *   the record is due; the record is read again then.
 * - A forwarder that dies is replaced by the group's next member, from the last committed offset:
 *   nothing is lost, and a record it forwarded but had not committed is forwarded again (the copy
 *   has the same event id, so exactly-once subscriptions run it once).
 * - Order per key: a delayed event joins its key's partition when it is due, after the events of
 *   that key published meanwhile; events of one key with the same delay keep their order.
 */
import type { Logger } from '@omnibus/core'
import { decodeEvent } from '@omnibus/core/backend'
import type { BatchControl, ConsumerHandle, InboundBatch, KafkaClient } from './client.ts'
import { classifyError } from './errors.ts'
import type { Publisher, TopicRegistry } from './publisher.ts'

/** Tier lengths (ms) and the delay topic of each. */
export const DELAY_TIERS: readonly { readonly ms: number; readonly topic: string }[] = [
  { ms: 1_000, topic: '__omnibus_delay_1s' },
  { ms: 10_000, topic: '__omnibus_delay_10s' },
  { ms: 60_000, topic: '__omnibus_delay_1m' },
  { ms: 600_000, topic: '__omnibus_delay_10m' },
  { ms: 3_600_000, topic: '__omnibus_delay_1h' },
  { ms: 21_600_000, topic: '__omnibus_delay_6h' },
]

/** The group of every forwarder on the cluster (one copy of each delayed event goes on). */
export const FORWARDER_GROUP = '__omnibus_delay_forwarder'

/**
 * Retention of the delay topics: a record waits at most its tier's length while a forwarder runs,
 * so this bounds only how long every forwarder may be down before delayed events are lost.
 */
export const DELAY_RETENTION_MS = 7 * 24 * 3_600_000

const TIER_MS = new Map(DELAY_TIERS.map((t) => [t.topic, t.ms]))

/** The delay topic for a remaining delay of `remainingMs` (> 0). */
export function delayTopicFor(remainingMs: number): string {
  let topic = (DELAY_TIERS[0] as (typeof DELAY_TIERS)[number]).topic
  for (const t of DELAY_TIERS) if (t.ms <= remainingMs) topic = t.topic
  return topic
}

/** Settings of {@link createForwarder}. */
export interface ForwarderSettings {
  readonly client: KafkaClient
  readonly topics: TopicRegistry
  readonly publisher: Publisher
  readonly logger: Logger
  readonly numPartitions: number
  readonly replicationFactor: number
  readonly endpoint: string
}

/** The delay topics and their forwarder, for one backend instance. */
export interface Forwarder {
  /** Creates the delay topics if needed (idempotent). */
  ensureTopics(): Promise<void>
  /** Joins the forwarder group (idempotent). */
  start(): Promise<void>
  stop(): Promise<void>
}

/** Builds the {@link Forwarder}. */
export function createForwarder(s: ForwarderSettings): Forwarder {
  let topicsReady: Promise<void> | undefined
  let consumer: ConsumerHandle | undefined
  let starting: Promise<void> | undefined
  let stopped = false
  const resumes = new Set<NodeJS.Timeout>()

  const ensureTopics = (): Promise<void> => {
    topicsReady ??= (async () => {
      const names = DELAY_TIERS.map((t) => t.topic)
      await s.client.createTopics(names, s.numPartitions, s.replicationFactor, {
        'retention.ms': String(DELAY_RETENTION_MS),
      })
      await s.topics.ensure(names)
    })().catch((error: unknown) => {
      topicsReady = undefined
      throw classifyError(error, 'admin', s.endpoint)
    })
    return topicsReady
  }

  const onBatch = async (batch: InboundBatch, control: BatchControl): Promise<void> => {
    const tierMs = TIER_MS.get(batch.topic) ?? 0
    let last: string | undefined
    for (const m of batch.messages) {
      if (!control.isActive() || stopped) break
      let deliverAt = 0
      let destination: string | undefined
      try {
        const event = decodeEvent(m.value ?? new Uint8Array(0))
        deliverAt = event.deliverAt ?? 0
        destination = event.topic
      } catch (error) {
        // Only Omnibus writes these topics; a record that is not an envelope cannot be routed.
        s.logger.warn('kafka delay topic record is not an event; skipped', {
          topic: batch.topic,
          partition: batch.partition,
          offset: m.offset,
          error: (error as Error).message,
        })
      }
      if (destination !== undefined) {
        const stamped = Number(m.timestamp)
        const due = Math.min(deliverAt, Number.isFinite(stamped) ? stamped + tierMs : deliverAt)
        const wait = due - Date.now()
        if (wait > 0) {
          // Not due: this partition waits (the record is read again on resume); the others go on.
          const resume = control.pause()
          const timer = setTimeout(() => {
            resumes.delete(timer)
            resume()
          }, wait)
          timer.unref()
          resumes.add(timer)
          break
        }
        const rest = deliverAt - Date.now()
        const to = rest > 0 ? delayTopicFor(rest) : destination
        const value = m.value as Buffer
        await s.publisher.send(to, { key: m.key?.toString() ?? null, value }, value.length + 64)
      }
      control.markDone(m.offset)
      last = m.offset
    }
    if (last !== undefined) await control.commit(String(BigInt(last) + 1n))
  }

  return {
    ensureTopics,
    start() {
      if (stopped) return Promise.resolve()
      starting ??= (async () => {
        await ensureTopics()
        consumer = s.client.createConsumer({
          groupId: FORWARDER_GROUP,
          partitionsConsumedConcurrently: DELAY_TIERS.length * Math.max(1, s.numPartitions),
          onBatch,
          onCrash: (error, restarting) =>
            s.logger.warn('kafka delay forwarder crashed', {
              restarting,
              error: classifyError(error, 'subscribe', s.endpoint).message,
            }),
        })
        await consumer.start(DELAY_TIERS.map((t) => ({ topic: t.topic, fromBeginning: true })))
      })().catch((error: unknown) => {
        starting = undefined
        s.logger.warn('kafka delay forwarder could not start; delayed events wait in the delay topics', {
          error: classifyError(error, 'subscribe', s.endpoint).message,
        })
      })
      return starting
    },
    async stop() {
      stopped = true
      for (const t of resumes) clearTimeout(t)
      resumes.clear()
      await starting
      const c = consumer
      consumer = undefined
      if (c !== undefined) {
        await c.stop().catch(() => {})
        await c.disconnect().catch(() => {})
      }
    },
  }
}
