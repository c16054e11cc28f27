/**
 * `createKafkaBackend`: the `EventBackend` over Apache Kafka. Topics map one to one onto Kafka
 * topics; subscriptions are consumer-group members; wildcard subscriptions discover new topics by
 * polling the topic list (and at once for topics this process creates).
 */
import { randomUUID } from 'node:crypto'
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  createEvent,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  NotConnectedError,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
} from '@omnibus/core'
import {
  checkDelay,
  checkDrainTimeout,
  checkEnsureGroup,
  DEFAULT_DRAIN_TIMEOUT_MS,
  type DedupeStore,
  encodeEventChecked,
  holdProcess,
  instrumentBackend,
  isLiteralPattern,
  type ProcessHold,
  rejectUnknownUrlParams,
  resolveSubscribeOptions,
  timedHealthCheck,
} from '@omnibus/core/backend'
import { type AttemptBook, createAttemptBook } from './attempts.ts'
import { createKafkaClient, type KafkaClient } from './client.ts'
import { createKafkaDedupeStore } from './dedupe.ts'
import { createForwarder, delayTopicFor, type Forwarder } from './delay.ts'
import { classifyError } from './errors.ts'
import { createGroupStarts, type GroupStarts } from './group-starts.ts'
import {
  KAFKA_URL_PARAMS,
  type KafkaBackendOptions,
  type ResolvedKafkaOptions,
  resolveKafkaOptions,
} from './options.ts'
import { createPublisher, createTopicRegistry, type Publisher, type TopicRegistry } from './publisher.ts'
import { createRecordLog, type RecordLog } from './records.ts'
import { KafkaSubscription, type SubscriptionHost } from './subscription.ts'

/**
 * How long past the drain timeout `disconnect` waits for the delay forwarder to leave its group
 * (ms): within the close allowance, leaving room for the producer and the client to close.
 */
const FORWARDER_LEAVE_MS = 1_000

/** The Kafka backend: an `EventBackend` plus a secret-free description of its configuration. */
export interface KafkaBackend extends EventBackend {
  /** Brokers, client id, group prefix and topic settings; never credentials. */
  describe(): Readonly<Record<string, unknown>>
}

/** Capabilities for a set of resolved options. */
export function kafkaCapabilities(o: ResolvedKafkaOptions): BackendCapabilities {
  return {
    guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
    persistent: true,
    crossProcess: true,
    groups: true,
    orderedPerKey: true,
    replay: true,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: true,
    // One refresh period to see the topic, then a rejoin: the other members notice the rebalance
    // at their next heartbeat and the join/sync round trips complete within a few seconds.
    wildcardDiscoveryMs: o.topicRefreshMs + 2 * o.heartbeatIntervalMs + 5000,
    // Held in the delay topics and forwarded when due (delay.ts): each hop waits at most one tier,
    // so no limit of its own beyond what a Date can hold.
    delay: { maxDelayMs: Number.MAX_SAFE_INTEGER },
  }
}

/**
 * Creates a Kafka backend. Options resolve explicit → environment (`OMNIBUS_KAFKA_*`) → default
 * and are validated here; nothing connects until `connect()`.
 */
export function createKafkaBackend(options: KafkaBackendOptions = {}): KafkaBackend {
  const o = resolveKafkaOptions(options)
  const endpoint = o.kafka === undefined ? o.brokers.join(',') : 'the given Kafka instance'
  const capabilities = kafkaCapabilities(o)
  /** The records topic, its exactly-once store and delivery counts: created on first use. */
  let records:
    | {
        log: RecordLog
        dedupe: DedupeStore | undefined
        attempts: AttemptBook | undefined
        starts: GroupStarts
      }
    | undefined
  const subs = new Set<KafkaSubscription>()
  /** Groups this instance has declared (`ensureGroup`), as `group id NUL pattern`. */
  const declaredGroups = new Set<string>()

  let client: KafkaClient | undefined
  let topics: TopicRegistry | undefined
  let publisher: Publisher | undefined
  let forwarder: Forwarder | undefined
  let connected = false
  let connecting: Promise<void> | undefined
  let refreshTimer: NodeJS.Timeout | undefined
  // Keeps the process alive from connect() to disconnect(), whatever kafkajs does with its
  // sockets and timers meanwhile (see holdProcess in core).
  let hold: ProcessHold | undefined
  let refreshing = false

  const offerAll = (list: Iterable<string>): void => {
    const arr = [...list]
    for (const s of subs) s.offer(arr)
  }

  const refreshTopics = async (): Promise<void> => {
    if (refreshing || topics === undefined) return
    // Listing the cluster's topics costs the broker and this process more the more topics there
    // are: only a wildcard subscription needs it (a literal one has its topic from the start).
    let wanted = false
    for (const s of subs) if (s.active && s.discovers) wanted = true
    if (!wanted) return
    refreshing = true
    try {
      offerAll(await topics.refresh())
    } catch (error) {
      o.logger.debug('kafka topic refresh failed', { error: classifyError(error, 'admin', endpoint).message })
    } finally {
      refreshing = false
    }
  }

  const requireConnected = (
    action: string,
  ): { publisher: Publisher; topics: TopicRegistry; client: KafkaClient } => {
    if (!connected || publisher === undefined || topics === undefined || client === undefined) {
      throw new NotConnectedError('kafka', action)
    }
    return { publisher, topics, client }
  }

  const publishOne = async (input: EventInput): Promise<PublishReceipt> => {
    const { publisher: p } = requireConnected('publish')
    const event = createEvent(input, o.source === undefined ? {} : { source: o.source })
    checkDelay(event, capabilities.delay, 'kafka')
    const { json, bytes } = encodeEventChecked(event, o.maxPayloadBytes, 'kafka')
    const rest = event.deliverAt === undefined ? 0 : event.deliverAt - Date.now()
    if (rest > 0 && forwarder !== undefined) {
      // Not due: into the delay topics, forwarded to its topic when due (see delay.ts).
      await forwarder.ensureTopics()
      await p.send(delayTopicFor(rest), { key: event.partitionKey ?? null, value: json }, bytes)
      forwarder.published()
      return { id: event.id, topic: event.topic }
    }
    await p.send(event.topic, { key: event.partitionKey ?? null, value: json }, bytes)
    return { id: event.id, topic: event.topic }
  }

  const recordsOf = (c: KafkaClient, p: Publisher): NonNullable<typeof records> => {
    if (records === undefined) {
      const topic = o.dedupeTopic
      const log = createRecordLog({
        client: c,
        topic,
        ttlMs: o.dedupeTtlMs,
        replicationFactor: o.replicationFactor,
        groupIdPrefix: o.groupIdPrefix,
        produce: (key, value) => p.send(topic, { key, value }, key.length + value.length + 64),
      })
      records = { log, dedupe: undefined, attempts: undefined, starts: createGroupStarts(log) }
    }
    return records
  }

  const host = (): SubscriptionHost => {
    const { client: c, topics: t, publisher: p } = requireConnected('subscribe')
    return {
      client: c,
      logger: o.logger,
      dedupe() {
        if (o.dedupeStore !== undefined) return o.dedupeStore
        const r = recordsOf(c, p)
        r.dedupe ??= createKafkaDedupeStore({ log: r.log, ttlMs: o.dedupeTtlMs, maxEntries: 1_000_000 })
        // Reading the records takes a group join: start it beside the subscription's own.
        void r.log.start().catch(() => {})
        return r.dedupe
      },
      attempts() {
        const r = recordsOf(c, p)
        r.attempts ??= createAttemptBook(r.log, o.dedupeTtlMs)
        void r.log.start().catch(() => {})
        return r.attempts
      },
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      groupJoinTimeoutMs: o.groupJoinTimeoutMs,
      endpoint,
      publishDeadLetter: publishOne,
      declaredStart: (groupId, pattern) => recordsOf(c, p).starts.startOf(groupId, pattern),
      ensureTopic: (topic) => t.ensure([topic]),
      forget: (sub) => subs.delete(sub),
    }
  }

  const backend: KafkaBackend = {
    name: 'kafka',
    capabilities,
    get isConnected() {
      return connected
    },

    connect() {
      if (connected) return Promise.resolve()
      if (connecting !== undefined) return connecting
      connecting = (async () => {
        const c = createKafkaClient(o)
        try {
          await c.connect()
        } catch (error) {
          throw classifyError(error, 'connect', endpoint)
        }
        const registry = createTopicRegistry({
          client: c,
          autoCreateTopics: o.autoCreateTopics,
          numPartitions: o.numPartitions,
          replicationFactor: o.replicationFactor,
          endpoint,
          onCreated: (created) => offerAll(created),
        })
        try {
          await registry.refresh()
        } catch (error) {
          await c.disconnect()
          throw classifyError(error, 'connect', endpoint)
        }
        client = c
        topics = registry
        publisher = createPublisher({ client: c, topics: registry, maxBatchBytes: o.maxBatchBytes, endpoint })
        forwarder = createForwarder({
          client: c,
          topics: registry,
          publisher,
          logger: o.logger,
          numPartitions: o.numPartitions,
          replicationFactor: o.replicationFactor,
          endpoint,
        })
        connected = true
        hold = holdProcess()
        refreshTimer = setInterval(() => void refreshTopics(), o.topicRefreshMs)
        refreshTimer.unref()
      })().finally(() => {
        connecting = undefined
      })
      return connecting
    },

    async disconnect(opts) {
      const drain = checkDrainTimeout(opts?.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, 'kafka')
      if (connecting !== undefined) await connecting.catch(() => {})
      if (!connected) return
      connected = false
      if (refreshTimer !== undefined) clearInterval(refreshTimer)
      try {
        // The forwarder leaves beside the drain, within it plus part of the close allowance: a
        // leave held up by a rebalance goes on in the background (its records are committed or
        // forwarded again by the group's next member).
        const forwarderStopped = forwarder?.stop(drain + FORWARDER_LEAVE_MS)
        await Promise.allSettled([...subs].map((s) => s.kernel.close(drain)))
        await forwarderStopped
        forwarder = undefined
        // Everything accepted by publish() before disconnect is sent before the producer closes.
        await publisher?.idle()
        await records?.log.close()
        records = undefined
        const c = client
        client = undefined
        topics = undefined
        publisher = undefined
        await c?.disconnect()
      } finally {
        hold?.release()
        hold = undefined
      }
    },

    healthCheck(): Promise<HealthStatus> {
      const c = client
      if (!connected || c === undefined) {
        return Promise.resolve({ healthy: false, latencyMs: 0, detail: 'not connected' })
      }
      return timedHealthCheck(
        'kafka',
        async () => {
          try {
            await c.ping()
          } catch (error) {
            throw classifyError(error, 'admin', endpoint)
          }
          return `brokers ${endpoint}`
        },
        o.healthTimeoutMs,
      )
    },

    publish<T>(input: EventInput<T>): Promise<PublishReceipt> {
      try {
        return publishOne(input as EventInput)
      } catch (error) {
        return Promise.reject(error)
      }
    },

    async publishBatch(inputs: readonly EventInput[]): Promise<BatchReceipt> {
      requireConnected('publishBatch')
      if (!Array.isArray(inputs)) throw new ConfigurationError('publishBatch expects an array of events')
      const settled = await Promise.allSettled(inputs.map((input) => backend.publish(input)))
      const results: BatchEntryResult[] = settled.map((r, index) =>
        r.status === 'fulfilled'
          ? { ok: true, index, receipt: r.value }
          : { ok: false, index, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) },
      )
      const succeeded = results.filter((r) => r.ok).length
      return { results, succeeded, failed: results.length - succeeded }
    },

    async ensureGroup(pattern: string, group: string): Promise<void> {
      checkEnsureGroup(backend, pattern, group)
      const { client: c, topics: t, publisher: p } = requireConnected('ensureGroup')
      const groupId = `${o.groupIdPrefix}${group}`
      const key = `${groupId}\u0000${pattern}`
      if (declaredGroups.has(key)) return
      try {
        // Declared before the topic exists, so the first message on it is after the declared time.
        await recordsOf(c, p).starts.declare(groupId, pattern, Date.now())
        if (isLiteralPattern(pattern)) await t.ensure([pattern])
      } catch (error) {
        throw classifyError(error, 'subscribe', endpoint)
      }
      declaredGroups.add(key)
    },

    async subscribe<T>(
      pattern: string,
      handler: EventHandler<T>,
      opts?: SubscribeOptions,
    ): Promise<Subscription> {
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      const h = host()
      // Every instance that subscribes may forward delayed events: it watches the delay topics'
      // backlog and joins the forwarder group only when nobody forwards (see delay.ts).
      forwarder?.watch()
      const id = randomUUID()
      const privateGroup = resolved.group === undefined
      const groupId = `${o.groupIdPrefix}${resolved.group ?? `omnibus-broadcast-${id}`}`
      const sub = new KafkaSubscription(
        {
          id,
          groupId,
          privateGroup,
          options: resolved,
          handler: handler as EventHandler,
          literal: isLiteralPattern(pattern),
        },
        h,
      )
      // An already aborted signal closed the subscription in the kernel's constructor.
      if (!sub.kernel.subscription.active) return sub.kernel.subscription
      subs.add(sub)
      try {
        await sub.start([...(topics?.known ?? [])])
      } catch (error) {
        await sub.kernel.close(0)
        throw classifyError(error, 'subscribe', endpoint)
      }
      return sub.kernel.subscription
    },

    describe() {
      return {
        backend: 'kafka',
        brokers: o.kafka === undefined ? [...o.brokers] : 'provided Kafka instance',
        clientId: o.clientId,
        ssl: o.ssl !== false,
        sasl: o.sasl === undefined ? 'none' : `${o.sasl.mechanism} as ${o.sasl.username}`,
        groupIdPrefix: o.groupIdPrefix,
        autoCreateTopics: o.autoCreateTopics,
        numPartitions: o.numPartitions,
        replicationFactor: o.replicationFactor,
        topicRefreshMs: o.topicRefreshMs,
        maxPayloadBytes: o.maxPayloadBytes,
      }
    },
  }
  return instrumentBackend(backend)
}

/**
 * Builds a backend from a `kafka://host:port[,host:port]` URL (used by `createBackend`). Query
 * parameters: `clientId`, `groupIdPrefix`, `partitions`, `replicationFactor`, `ssl=true`,
 * `sasl=plain|scram-sha-256|scram-sha-512` with the user and password from the URL. Any other
 * parameter is a `ConfigurationError`.
 */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): KafkaBackend {
  if (url.protocol !== 'kafka:') {
    throw new ConfigurationError(`backendFromUrl expects a kafka:// URL, got ${url.protocol}//`)
  }
  rejectUnknownUrlParams(url, KAFKA_URL_PARAMS, { backend: 'kafka' })
  const hosts = decodeURIComponent(url.host || url.pathname.replace(/^\/\//, ''))
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h.length > 0)
  const merged: Record<string, unknown> = { ...options }
  if (hosts.length > 0) merged.brokers = hosts.map((h) => (h.includes(':') ? h : `${h}:9092`))
  const q = url.searchParams
  // Several brokers do not fit a URL authority: kafka://b1:9092?brokers=b1:9092,b2:9092
  if (q.has('brokers')) merged.brokers = q.get('brokers')
  if (q.has('clientId')) merged.clientId = q.get('clientId')
  if (q.has('groupIdPrefix')) merged.groupIdPrefix = q.get('groupIdPrefix')
  if (q.has('partitions')) merged.numPartitions = Number(q.get('partitions'))
  if (q.has('replicationFactor')) merged.replicationFactor = Number(q.get('replicationFactor'))
  if (q.has('ssl')) merged.ssl = q.get('ssl') === 'true'
  const mechanism = q.get('sasl')
  if (mechanism !== null) {
    merged.sasl = {
      mechanism,
      username: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
    }
  }
  return createKafkaBackend(merged as KafkaBackendOptions)
}
