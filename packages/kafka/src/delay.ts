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
 * - The forwarder, a member of the group `__omnibus_delay_forwarder`, reads the delay topics. Every
 *   instance that subscribes is a candidate and joins only while it is needed (see `checkOnce`), so
 *   instances coming and going do not keep the group rebalancing. It forwards a due record to the
 *   next tier for the rest of the delay, or to its destination topic once `deliverAt` has passed,
 *   then commits its offset. At a record not due yet it pauses that partition (other partitions go
 *   on) and resumes it when the record is due; the record is read again then.
 * - A forwarder that dies is replaced by the group's next member (or, once the group is empty, the
 *   next candidate that looks), from the last committed offset:
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

/** The group of the forwarders on the cluster (one copy of each delayed event goes on). */
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

/** How often an instance that subscribes looks at the delay topics' backlog (ms, ± a quarter). */
export const FORWARDER_CHECK_MS = 1_000
/** A running forwarder with no backlog for this long leaves the group (ms). */
export const FORWARDER_IDLE_MS = 5_000
/**
 * A record due this long ago and not forwarded means the group's members are not forwarding
 * (stuck in a rebalance, hung, or dead and not yet expired): an instance then joins anyway (ms).
 */
export const FORWARDER_OVERDUE_MS = 4_000

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
  /**
   * Makes this instance a forwarder candidate (idempotent): from now on it looks at the backlog
   * periodically and joins the forwarder group when it must.
   */
  watch(): void
  /** This instance published a delayed event: look at the backlog now rather than at the next period. */
  published(): void
  /**
   * Stops watching and leaves the group, waiting at most `budgetMs`; a leave that takes longer
   * (the group is rebalancing) goes on in the background.
   */
  stop(budgetMs: number): Promise<void>
}

interface Running {
  readonly handle: ConsumerHandle
  readonly ready: Promise<void>
}

/** Builds the {@link Forwarder}. */
export function createForwarder(s: ForwarderSettings): Forwarder {
  let topicsReady: Promise<void> | undefined
  let running: Running | undefined
  let leaving: Promise<void> | undefined
  let watching = false
  let stopped = false
  let checkTimer: NodeJS.Timeout | undefined
  let checking: Promise<void> | undefined
  let checkAgain = false
  let idleSince: number | undefined
  /** Ends the wait of {@link nap} early. */
  let napping: (() => void) | undefined
  const resumes = new Set<NodeJS.Timeout>()
  const names = DELAY_TIERS.map((t) => t.topic)

  const ensureTopics = (): Promise<void> => {
    topicsReady ??= (async () => {
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

  const join = (): void => {
    if (stopped || running !== undefined || leaving !== undefined) return
    idleSince = undefined
    const handle: ConsumerHandle = s.client.createConsumer({
      groupId: FORWARDER_GROUP,
      partitionsConsumedConcurrently: DELAY_TIERS.length * Math.max(1, s.numPartitions),
      onBatch,
      onCrash: (error, restarting) => {
        s.logger.warn('kafka delay forwarder crashed', {
          restarting,
          error: classifyError(error, 'subscribe', s.endpoint).message,
        })
        // A consumer the client does not restart is gone: the next check may join again.
        if (!restarting && running?.handle === handle) running = undefined
      },
    })
    const ready = handle
      .start(names.map((topic) => ({ topic, fromBeginning: true })))
      .catch((error: unknown) => {
        if (running?.handle === handle) running = undefined
        void handle.disconnect().catch(() => {})
        s.logger.warn('kafka delay forwarder could not start; delayed events wait in the delay topics', {
          error: classifyError(error, 'subscribe', s.endpoint).message,
        })
      })
    running = { handle, ready }
  }

  const leave = (): Promise<void> => {
    const r = running
    running = undefined
    if (r === undefined) return leaving ?? Promise.resolve()
    for (const t of resumes) clearTimeout(t)
    resumes.clear()
    leaving = (async () => {
      await r.ready
      await r.handle.stop().catch(() => {})
      await r.handle.disconnect().catch(() => {})
    })().finally(() => {
      leaving = undefined
    })
    return leaving
  }

  /**
   * One look at the delay topics: the forwarder group's committed offsets against the topics' end
   * offsets (the group's lag). With a backlog and nobody in the group, or a record overdue, this
   * instance joins; a forwarder without backlog for a while leaves. So only instances that are
   * needed are members, and instances coming and going elsewhere do not rebalance the forwarders.
   */
  const checkOnce = async (): Promise<void> => {
    await ensureTopics()
    if (stopped) return
    const [committed, ranges] = await Promise.all([
      s.client.groupOffsetsOf(FORWARDER_GROUP, names),
      Promise.all(names.map((topic) => s.client.offsetRange(topic))),
    ])
    /** Per topic, the partitions with records not forwarded yet and where the group stands on them. */
    const backlog: { topic: string; positions: Map<number, bigint> }[] = []
    names.forEach((topic, i) => {
      const positions = new Map<number, bigint>()
      const done = new Map((committed.get(topic) ?? []).map((p) => [p.partition, BigInt(p.offset)]))
      for (const r of ranges[i] ?? []) {
        const at = done.get(r.partition) ?? -1n
        const low = BigInt(r.low)
        const position = at > low ? at : low
        if (BigInt(r.high) > position) positions.set(r.partition, position)
      }
      if (positions.size > 0) backlog.push({ topic, positions })
    })
    if (stopped) return
    if (running !== undefined) {
      if (backlog.length > 0) idleSince = undefined
      else if (idleSince === undefined) idleSince = Date.now()
      else if (Date.now() - idleSince >= FORWARDER_IDLE_MS) void leave()
      return
    }
    if (backlog.length === 0 || leaving !== undefined) return
    const group = await s.client.describeGroup(FORWARDER_GROUP)
    if (group.members.length === 0) return join()
    // Members exist: join only if they leave a record unforwarded well past its time while the
    // group is stable. In a rebalance nobody forwards until it ends, and one more member is one
    // more to wait for: every candidate that looked then would join and rebalance it again.
    if (group.state !== 'Stable') return
    const now = Date.now()
    for (const { topic, positions } of backlog) {
      const dueBefore = now - (TIER_MS.get(topic) ?? 0) - FORWARDER_OVERDUE_MS
      for (const p of await s.client.offsetsAt(topic, dueBefore)) {
        const position = positions.get(p.partition)
        if (position !== undefined && BigInt(p.offset) > position) {
          return joinUnlessJoined(group.members, topic, p.partition)
        }
      }
    }
  }

  /**
   * Joins for an overdue record after a random part of a check period, unless the group has
   * changed meanwhile (another candidate joined first, or a rebalance started): candidates that
   * saw the same overdue record join one at a time rather than all at once.
   */
  const joinUnlessJoined = async (seen: readonly string[], topic: string, partition: number) => {
    await nap(FORWARDER_CHECK_MS * Math.random())
    if (stopped || running !== undefined || leaving !== undefined) return
    const group = await s.client.describeGroup(FORWARDER_GROUP)
    if (group.state !== 'Stable' || group.members.some((m) => !seen.includes(m))) return
    s.logger.debug('kafka delay forwarder joins: a delayed event is overdue', { topic, partition })
    join()
  }

  /** Waits `ms`, or less if the forwarder stops meanwhile. */
  const nap = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        napping = undefined
        resolve()
      }, ms)
      timer.unref()
      napping = () => {
        clearTimeout(timer)
        napping = undefined
        resolve()
      }
    })

  const check = (): void => {
    if (stopped) return
    if (checking !== undefined) {
      checkAgain = true
      return
    }
    checking = checkOnce()
      .catch((error: unknown) => {
        s.logger.debug('kafka delay backlog check failed', {
          error: classifyError(error, 'admin', s.endpoint).message,
        })
      })
      .finally(() => {
        checking = undefined
        if (checkAgain) {
          checkAgain = false
          check()
        }
      })
  }

  const schedule = (): void => {
    if (stopped) return
    // Jittered, so instances started together do not all look (and join) at once.
    checkTimer = setTimeout(
      () => {
        check()
        schedule()
      },
      FORWARDER_CHECK_MS * (0.75 + Math.random() / 2),
    )
    checkTimer.unref()
  }

  return {
    ensureTopics,
    watch() {
      if (watching || stopped) return
      watching = true
      check()
      schedule()
    },
    published() {
      if (watching) check()
    },
    async stop(budgetMs) {
      stopped = true
      if (checkTimer !== undefined) clearTimeout(checkTimer)
      napping?.()
      const left = leave()
      let timer: NodeJS.Timeout | undefined
      const late = await Promise.race([
        left.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), Math.max(0, budgetMs))
        }),
      ])
      clearTimeout(timer)
      if (late) {
        s.logger.debug(
          'kafka delay forwarder still leaving its group (a rebalance is under way); it goes on in the background',
        )
      }
      await checking
    },
  }
}
