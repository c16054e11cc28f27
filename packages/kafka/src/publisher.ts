/**
 * Produce-side batching and topic bookkeeping. Concurrent publishes are queued and sent together:
 * everything queued while one produce request is in flight goes out in the next request, grouped
 * per topic (the client splits per partition and broker), so throughput does not depend on the
 * caller batching and no event costs one awaited round trip of its own.
 */
import { PublishError } from '@omnibus/core'
import type { KafkaClient, OutgoingMessage } from './client.ts'
import { classifyError } from './errors.ts'

interface Pending {
  readonly topic: string
  readonly message: OutgoingMessage
  readonly bytes: number
  readonly resolve: () => void
  readonly reject: (error: unknown) => void
}

/** Settings of {@link createTopicRegistry}. */
export interface TopicRegistrySettings {
  readonly client: KafkaClient
  readonly autoCreateTopics: boolean
  readonly numPartitions: number
  readonly replicationFactor: number
  readonly endpoint: string
  /** Called with topics this process just created, so local wildcard subscriptions see them at once. */
  readonly onCreated: (topics: readonly string[]) => void
}

/** Which topics exist, and creating the missing ones (once, even under concurrent callers). */
export interface TopicRegistry {
  /** Topics known to exist. */
  readonly known: ReadonlySet<string>
  /** Replaces the known set with a fresh listing (internal `__` topics excluded). */
  refresh(): Promise<readonly string[]>
  /** Resolves when every topic exists; rejects with a `PublishError` naming a topic that cannot. */
  ensure(topics: readonly string[]): Promise<void>
}

/** Topics whose names start with `__` belong to Kafka itself (offsets, transactions). */
export function isInternalTopic(topic: string): boolean {
  return topic.startsWith('__')
}

/** Builds the {@link TopicRegistry}. */
export function createTopicRegistry(s: TopicRegistrySettings): TopicRegistry {
  const known = new Set<string>()
  const inFlight = new Map<string, Promise<void>>()

  const refresh = async (): Promise<readonly string[]> => {
    const topics = (await s.client.listTopics()).filter((t) => !isInternalTopic(t))
    for (const t of topics) known.add(t)
    return topics
  }

  const create = async (topics: readonly string[]): Promise<void> => {
    // A listing first: another process may have created them, and then their settings win.
    await refresh()
    const missing = topics.filter((t) => !known.has(t))
    if (missing.length === 0) return
    if (!s.autoCreateTopics) {
      throw new PublishError(
        `Kafka topic "${missing[0]}" does not exist and autoCreateTopics is off: create it on the cluster ` +
          '(or enable autoCreateTopics / OMNIBUS_KAFKA_AUTO_CREATE_TOPICS)',
        { backend: 'kafka', code: 'TOPIC_NOT_FOUND', retryable: false },
      )
    }
    try {
      await s.client.createTopics(missing, s.numPartitions, s.replicationFactor)
    } catch (error) {
      const classified = classifyError(error, 'admin', s.endpoint)
      throw new PublishError(
        `cannot create Kafka topic "${missing[0]}" (${missing.length} missing): ${classified.message}. ` +
          'The cluster may forbid topic creation: create the topics up front or grant CreateTopics',
        { backend: 'kafka', code: classified.code, retryable: classified.retryable, cause: error },
      )
    }
    for (const t of missing) known.add(t)
    s.onCreated(missing)
  }

  return {
    known,
    refresh,
    async ensure(topics) {
      const missing = topics.filter((t) => !known.has(t))
      if (missing.length === 0) return
      const waits: Promise<void>[] = []
      const toCreate: string[] = []
      for (const t of missing) {
        const running = inFlight.get(t)
        if (running !== undefined) waits.push(running)
        else toCreate.push(t)
      }
      if (toCreate.length > 0) {
        const p = create(toCreate).finally(() => {
          for (const t of toCreate) inFlight.delete(t)
        })
        for (const t of toCreate) inFlight.set(t, p)
        waits.push(p)
      }
      await Promise.all(waits)
    },
  }
}

/** Settings of {@link createPublisher}. */
export interface PublisherSettings {
  readonly client: KafkaClient
  readonly topics: TopicRegistry
  /** Bytes per topic in one produce request. */
  readonly maxBatchBytes: number
  readonly endpoint: string
}

/** The batching producer. */
export interface Publisher {
  /** Queues one message; resolves when the brokers acknowledged it (acks=all). */
  send(topic: string, message: OutgoingMessage, bytes: number): Promise<void>
  /** Resolves once everything queued so far was settled. */
  idle(): Promise<void>
  /** Messages queued or in flight. */
  readonly pending: number
}

const MAX_MESSAGES_PER_REQUEST = 20_000

/** Builds the {@link Publisher}. */
export function createPublisher(s: PublisherSettings): Publisher {
  let queue: Pending[] = []
  let inFlight = 0
  let pumping = false
  let idleWaiters: Array<() => void> = []

  const take = (): Pending[] => {
    const chunk: Pending[] = []
    const rest: Pending[] = []
    const bytesPerTopic = new Map<string, number>()
    const full = new Set<string>()
    for (const p of queue) {
      if (chunk.length >= MAX_MESSAGES_PER_REQUEST || full.has(p.topic)) {
        rest.push(p)
        continue
      }
      const used = bytesPerTopic.get(p.topic) ?? 0
      if (used > 0 && used + p.bytes > s.maxBatchBytes) {
        // Per-topic order is kept: once a topic is full, its later messages wait for the next request.
        full.add(p.topic)
        rest.push(p)
        continue
      }
      bytesPerTopic.set(p.topic, used + p.bytes)
      chunk.push(p)
    }
    queue = rest
    return chunk
  }

  const sendChunk = async (chunk: Pending[]): Promise<void> => {
    const byTopic = new Map<string, Pending[]>()
    for (const p of chunk) {
      const list = byTopic.get(p.topic)
      if (list === undefined) byTopic.set(p.topic, [p])
      else list.push(p)
    }
    const ready: Array<[string, Pending[]]> = []
    const missing = [...byTopic.keys()].filter((t) => !s.topics.known.has(t))
    if (missing.length > 0) {
      const results = await Promise.allSettled(missing.map((t) => s.topics.ensure([t])))
      results.forEach((r, i) => {
        if (r.status === 'rejected') {
          const topic = missing[i] as string
          for (const p of byTopic.get(topic) ?? []) p.reject(r.reason)
          byTopic.delete(topic)
        }
      })
    }
    for (const entry of byTopic) ready.push(entry)
    if (ready.length === 0) return
    try {
      await s.client.send(ready.map(([topic, list]) => ({ topic, messages: list.map((p) => p.message) })))
      for (const [, list] of ready) for (const p of list) p.resolve()
    } catch (error) {
      const e = classifyError(error, 'publish', s.endpoint)
      for (const [, list] of ready) for (const p of list) p.reject(e)
    }
  }

  const pump = async (): Promise<void> => {
    try {
      while (queue.length > 0) {
        const chunk = take()
        await sendChunk(chunk)
        inFlight -= chunk.length
      }
    } finally {
      pumping = false
      if (queue.length === 0 && inFlight === 0) {
        const waiters = idleWaiters
        idleWaiters = []
        for (const w of waiters) w()
      } else if (queue.length > 0) {
        schedule()
      }
    }
  }

  const schedule = (): void => {
    if (pumping) return
    pumping = true
    // One macrotask of delay gathers everything published in the same turn (and while the previous
    // request was in flight) into one request.
    setImmediate(() => void pump())
  }

  return {
    send(topic, message, bytes) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ topic, message, bytes, resolve, reject })
        inFlight++
        schedule()
      })
    },
    idle() {
      if (queue.length === 0 && inFlight === 0) return Promise.resolve()
      return new Promise((resolve) => idleWaiters.push(resolve))
    },
    get pending() {
      return inFlight
    },
  }
}
