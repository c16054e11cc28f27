/**
 * Processed-id records for exactly-once subscriptions, kept in Kafka itself: a compacted topic
 * (`__omnibus_processed` by default) whose records are keyed `group NUL id`. Every backend reads it
 * from the beginning into memory and appends to it when a handler succeeded, before the event's
 * offset is committed — so a member that takes over a partition after a crash or rebalance skips
 * what another process already handled. Names starting with `__` are never matched by wildcard
 * subscriptions.
 */
import { randomUUID } from 'node:crypto'
import type { ProcessedIdStore as DedupeStore } from '@omnibus/core/backend'
import type { ConsumerHandle, KafkaClient } from './client.ts'

/** Settings of {@link createKafkaDedupeStore}. */
export interface KafkaDedupeSettings {
  readonly client: KafkaClient
  readonly topic: string
  readonly ttlMs: number
  readonly maxEntries: number
  readonly replicationFactor: number
  readonly groupIdPrefix: string
  /** Produces one record through the backend's batching producer (concurrent adds share requests). */
  readonly produce: (topic: string, key: string, value: string) => Promise<void>
}

/** A {@link DedupeStore} over a compacted Kafka topic; `close()` stops its reader. */
export interface KafkaDedupeStore extends DedupeStore {
  close(): Promise<void>
}

/** How stale the known end of the records topic may be before `has` asks the broker again. */
const END_REFRESH_MS = 200
const CATCH_UP_TIMEOUT_MS = 10_000

/** Builds the store; the reader starts lazily on first use. */
export function createKafkaDedupeStore(s: KafkaDedupeSettings): KafkaDedupeStore {
  const seen = new Map<string, number>()
  /** Next offset to read, per partition, as far as the reader got. */
  const position = new Map<number, bigint>()
  let reader: ConsumerHandle | undefined
  let starting: Promise<void> | undefined
  let ends: { at: number; offsets: Map<number, bigint> } | undefined
  let endsLoading: Promise<Map<number, bigint>> | undefined
  let progress: Array<() => void> = []

  const remember = (key: string, at: number): void => {
    seen.delete(key)
    seen.set(key, at)
    while (seen.size > s.maxEntries) seen.delete(seen.keys().next().value as string)
  }

  const start = (): Promise<void> => {
    starting ??= (async () => {
      await s.client.createTopics([s.topic], 1, s.replicationFactor, {
        'cleanup.policy': 'compact,delete',
        'retention.ms': String(s.ttlMs),
      })
      const handle = s.client.createConsumer({
        groupId: `${s.groupIdPrefix}omnibus-dedupe-${randomUUID()}`,
        partitionsConsumedConcurrently: 1,
        onBatch: async (batch, control) => {
          for (const m of batch.messages) {
            if (m.key != null && m.value != null) {
              const at = Number(m.value.toString())
              if (Number.isFinite(at) && Date.now() - at < s.ttlMs) remember(m.key.toString(), at)
            }
          }
          const last = batch.messages[batch.messages.length - 1]
          if (last !== undefined) {
            control.markDone(last.offset)
            position.set(batch.partition, BigInt(last.offset) + 1n)
          }
          const waiters = progress
          progress = []
          for (const w of waiters) w()
        },
      })
      await handle.start([{ topic: s.topic, fromBeginning: true }])
      reader = handle
    })()
    return starting
  }

  const endOffsets = async (): Promise<Map<number, bigint>> => {
    if (ends !== undefined && Date.now() - ends.at < END_REFRESH_MS) return ends.offsets
    endsLoading ??= s.client
      .endOffsets(s.topic)
      .then((list) => {
        const offsets = new Map(list.map((p) => [p.partition, BigInt(p.offset)]))
        ends = { at: Date.now(), offsets }
        return offsets
      })
      .finally(() => {
        endsLoading = undefined
      })
    return endsLoading
  }

  /** Waits until the reader has read every record that existed a moment ago. */
  const catchUp = async (): Promise<void> => {
    await start()
    const target = await endOffsets()
    const deadline = Date.now() + CATCH_UP_TIMEOUT_MS
    const behind = (): boolean => [...target].some(([p, end]) => end > 0n && (position.get(p) ?? 0n) < end)
    while (behind()) {
      if (Date.now() > deadline) {
        throw new Error(
          `the processed-id records on ${s.topic} could not be read within ${CATCH_UP_TIMEOUT_MS} ms`,
        )
      }
      await new Promise<void>((resolve) => {
        progress.push(resolve)
        setTimeout(resolve, 100).unref()
      })
    }
  }

  return {
    async has(group, id) {
      const key = `${group}\u0000${id}`
      if (seen.has(key)) return true
      await catchUp()
      const at = seen.get(key)
      return at !== undefined && Date.now() - at < s.ttlMs
    },
    async add(group, id) {
      await start()
      const key = `${group}\u0000${id}`
      const at = Date.now()
      await s.produce(s.topic, key, String(at))
      remember(key, at)
    },
    async close() {
      const r = reader
      reader = undefined
      starting = undefined
      await r?.disconnect().catch(() => {})
    },
  }
}
