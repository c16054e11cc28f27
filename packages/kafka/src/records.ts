/**
 * The backend's records topic: one compacted, single-partition Kafka topic (`dedupeTopic`,
 * `__omnibus_processed` by default) that every process of the cluster appends to and reads from
 * the beginning. One partition gives every record a place in one total order, so every reader
 * applies the same records in the same order and reaches the same state: that is what makes an
 * exactly-once claim atomic across processes (see `dedupe.ts`) and lets delivery counts outlive a
 * consumer that died (see `attempts.ts`). Names starting with `__` are never matched by wildcards.
 */
import { randomUUID } from 'node:crypto'
import type { ConsumerHandle, KafkaClient } from './client.ts'

/** Settings of {@link createRecordLog}. */
export interface RecordLogSettings {
  readonly client: KafkaClient
  readonly topic: string
  /** Retention of the topic (records older than this are deleted). */
  readonly ttlMs: number
  readonly replicationFactor: number
  readonly groupIdPrefix: string
  /** Produces one record (acks=all) through the backend's batching producer. */
  readonly produce: (key: string, value: string) => Promise<void>
}

/**
 * Applies one record, in log order. `value` is the record's text; `json` is its parsed value when
 * the text is a JSON object (the records of claims and delivery counts), else `undefined`. What it
 * returns is handed to the {@link RecordLog.appendSeen} call that wrote this record, if any.
 */
export type RecordApplier = (key: string, value: string, json: RecordValue | undefined) => unknown

/** A structured record: `t` names its kind, `q` is the writer's nonce (see `appendSeen`). */
export interface RecordValue {
  readonly t: string
  readonly q?: string
  readonly [field: string]: unknown
}

/** The records topic as the backend uses it. */
export interface RecordLog {
  /** Registers the applier of records whose key starts with `prefix`; `''` takes every other key. */
  on(prefix: string, apply: RecordApplier): void
  /** Creates the topic if needed and starts reading it (idempotent). */
  start(): Promise<void>
  /** Appends a record, resolving once the broker has it. */
  append(key: string, value: string): Promise<void>
  /**
   * Appends a record without reading the topic (creating it if need be): for writers that never
   * read, which then need no group join of their own.
   */
  write(key: string, value: string): Promise<void>
  /**
   * Appends a record and resolves, with what its applier returned, once this reader has applied
   * it: every record before it in the log has been applied too.
   */
  appendSeen(key: string, value: RecordValue): Promise<unknown>
  /** Resolves once every record that was in the topic when called has been applied. */
  catchUp(): Promise<void>
  close(): Promise<void>
}

/** How stale the known end of the topic may be before `catchUp` asks the broker again. */
const END_REFRESH_MS = 200
const CATCH_UP_TIMEOUT_MS = 10_000

/** Builds the log; its reader starts on the first `start()` (or any use). */
export function createRecordLog(s: RecordLogSettings): RecordLog {
  const appliers: Array<{ prefix: string; apply: RecordApplier }> = []
  /** The applier of keys no prefix claims (registered with prefix ''). */
  let fallback: RecordApplier | undefined
  /** Next offset to read, per partition, as far as the reader got. */
  const position = new Map<number, bigint>()
  /** Writers waiting for their own record, by nonce. */
  const seen = new Map<string, { resolve: (r: unknown) => void; reject: (e: Error) => void }>()
  let reader: ConsumerHandle | undefined
  let starting: Promise<void> | undefined
  let ends: { at: number; offsets: Map<number, bigint> } | undefined
  let endsLoading: Promise<Map<number, bigint>> | undefined
  let progress: Array<() => void> = []

  const apply = (key: string, value: string): void => {
    let json: RecordValue | undefined
    if (value.charCodeAt(0) === 123 /* { */) {
      try {
        json = JSON.parse(value) as RecordValue
      } catch {
        json = undefined
      }
    }
    let result: unknown
    let applied = false
    for (const a of appliers) {
      if (a.prefix !== '' && key.startsWith(a.prefix)) {
        result = a.apply(key, value, json)
        applied = true
        break
      }
    }
    if (!applied && fallback !== undefined) result = fallback(key, value, json)
    const nonce = json?.q
    if (nonce !== undefined) {
      const waiter = seen.get(nonce)
      if (waiter !== undefined) {
        seen.delete(nonce)
        waiter.resolve(result)
      }
    }
  }

  let created: Promise<void> | undefined
  const createTopic = (): Promise<void> => {
    created ??= s.client.createTopics([s.topic], 1, s.replicationFactor, {
      'cleanup.policy': 'compact,delete',
      'retention.ms': String(s.ttlMs),
    })
    created.catch(() => {
      created = undefined
    })
    return created
  }

  const start = (): Promise<void> => {
    starting ??= (async () => {
      await createTopic()
      const handle = s.client.createConsumer({
        groupId: `${s.groupIdPrefix}omnibus-dedupe-${randomUUID()}`,
        partitionsConsumedConcurrently: 1,
        onBatch: async (batch, control) => {
          for (const m of batch.messages) {
            if (m.key != null && m.value != null) apply(m.key.toString(), m.value.toString())
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
    starting.catch(() => {
      starting = undefined
    })
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

  const waitProgress = (): Promise<void> =>
    new Promise<void>((resolve) => {
      progress.push(resolve)
      setTimeout(resolve, 100).unref()
    })

  return {
    on(prefix, applier) {
      if (prefix === '') fallback = applier
      else appliers.push({ prefix, apply: applier })
    },
    start,
    async append(key, value) {
      await start()
      await s.produce(key, value)
    },
    async write(key, value) {
      await createTopic()
      await s.produce(key, value)
    },
    async appendSeen(key, value) {
      await start()
      const nonce = randomUUID()
      const result = new Promise<unknown>((resolve, reject) => seen.set(nonce, { resolve, reject }))
      const timer = setTimeout(() => {
        const waiter = seen.get(nonce)
        seen.delete(nonce)
        waiter?.reject(
          new Error(`the record was not read back from ${s.topic} within ${CATCH_UP_TIMEOUT_MS} ms`),
        )
      }, CATCH_UP_TIMEOUT_MS)
      timer.unref()
      try {
        await s.produce(key, JSON.stringify({ ...value, q: nonce }))
        return await result
      } catch (error) {
        seen.delete(nonce)
        throw error
      } finally {
        clearTimeout(timer)
      }
    },
    async catchUp() {
      await start()
      const target = await endOffsets()
      const deadline = Date.now() + CATCH_UP_TIMEOUT_MS
      const behind = (): boolean => [...target].some(([p, end]) => end > 0n && (position.get(p) ?? 0n) < end)
      while (behind()) {
        if (Date.now() > deadline) {
          throw new Error(`the records on ${s.topic} could not be read within ${CATCH_UP_TIMEOUT_MS} ms`)
        }
        await waitProgress()
      }
    },
    async close() {
      const r = reader
      reader = undefined
      starting = undefined
      for (const w of seen.values()) w.reject(new Error('the records reader is closed'))
      seen.clear()
      await r?.disconnect().catch(() => {})
    },
  }
}
