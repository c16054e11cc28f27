/**
 * The backend's own small Kafka client layer: the only module that imports kafkajs. Everything
 * else talks to the {@link KafkaClient} and {@link ConsumerHandle} interfaces below, so kafkajs
 * (no longer actively maintained) can be replaced by another client by rewriting this file alone.
 */
import type { Logger } from '@omnibus/core'
import type {
  Admin,
  Assigner,
  Consumer,
  ConsumerConfig,
  EachBatchPayload,
  Kafka,
  KafkaConfig,
  LogEntry,
  PartitionAssigner,
  Producer,
  SASLOptions,
} from 'kafkajs'
import kafkajs from 'kafkajs'
import type { ResolvedKafkaOptions } from './options.ts'

const { Kafka: KafkaCtor, AssignerProtocol, logLevel: LogLevel, CompressionTypes, Partitioners } = kafkajs

/** One message to produce. */
export interface OutgoingMessage {
  readonly key: string | null
  readonly value: string | Buffer
}

/** Messages for one topic, produced in one request together with the other topics of the call. */
export interface OutgoingTopicBatch {
  readonly topic: string
  readonly messages: readonly OutgoingMessage[]
}

/** One consumed message. */
export interface InboundMessage {
  readonly offset: string
  readonly key?: Buffer | null
  readonly value: Buffer | null
  /** When the broker (or producer) stamped it, epoch ms as a string. */
  readonly timestamp?: string
}

/** Consumed messages of one partition, in offset order. */
export interface InboundBatch {
  readonly topic: string
  readonly partition: number
  readonly messages: readonly InboundMessage[]
}

/** What a batch handler may do with the consumer while it runs. */
export interface BatchControl {
  /** False once the consumer stops or the partition was revoked/seeked: stop starting new work. */
  isActive(): boolean
  /** Keeps the group membership alive during slow handlers; throws when a rebalance started. */
  heartbeat(): Promise<void>
  /** Marks everything up to `offset` (inclusive) as done so a later fetch does not return it. */
  markDone(offset: string): void
  /** Commits `nextOffset` (the first offset not yet done) for the batch's partition. */
  commit(nextOffset: string): Promise<void>
  /**
   * Stops fetching the batch's partition; the returned function resumes it. Messages not marked
   * done are fetched again after the resume.
   */
  pause(): () => void
}

/** A topic to consume and where a group without a committed offset starts on it. */
export interface TopicStart {
  readonly topic: string
  readonly fromBeginning: boolean
}

/** Settings of one group member. */
export interface ConsumerSpec {
  readonly groupId: string
  readonly partitionsConsumedConcurrently: number
  readonly onBatch: (batch: InboundBatch, control: BatchControl) => Promise<void>
  /** Called after each join with this member's partitions and its member id in the group. */
  readonly onJoin?: (assignment: Readonly<Record<string, readonly number[]>>, memberId: string) => void
  /** Called when the consumer crashed; `restarting` tells whether the client restarts it itself. */
  readonly onCrash?: (error: unknown, restarting: boolean) => void
}

/** One group member. `start` may be called again with more topics: the member then rejoins. */
export interface ConsumerHandle {
  /** Subscribes `topics` (added to the ones already subscribed) and runs; restarts when running. */
  start(topics: readonly TopicStart[]): Promise<void>
  /**
   * Moves this member's position on an assigned partition to `offset` and commits it, so the
   * group has a position even before anything was consumed there.
   */
  seekAndCommit(topic: string, partition: number, offset: string): Promise<void>
  /** Stops fetching and leaves the group after the running batch handlers return. */
  stop(): Promise<void>
  /** Stops and closes the connections. */
  disconnect(): Promise<void>
}

/** Offsets of one partition. */
export interface PartitionOffset {
  readonly partition: number
  /** For end offsets, the next offset to be written; for group offsets, -1 when none is committed. */
  readonly offset: string
}

/** The operations the backend needs from a Kafka client. */
export interface KafkaClient {
  connect(): Promise<void>
  disconnect(): Promise<void>
  /** A cheap round trip to the cluster. */
  ping(): Promise<void>
  listTopics(): Promise<string[]>
  /** Creates the topics that do not exist yet; existing ones are not an error. */
  createTopics(
    topics: readonly string[],
    numPartitions: number,
    replicationFactor: number,
    configs?: Readonly<Record<string, string>>,
  ): Promise<void>
  /** Produces all batches (one request per broker), acknowledged by all in-sync replicas. */
  send(batches: readonly OutgoingTopicBatch[]): Promise<void>
  endOffsets(topic: string): Promise<PartitionOffset[]>
  /**
   * Per partition, the offset of the first message whose timestamp is at or after `timestampMs`,
   * or the end offset where there is none.
   */
  offsetsAt(topic: string, timestampMs: number): Promise<PartitionOffset[]>
  groupOffsets(groupId: string, topic: string): Promise<PartitionOffset[]>
  /** A group's committed offsets on several topics in one request, by topic. */
  groupOffsetsOf(groupId: string, topics: readonly string[]): Promise<Map<string, PartitionOffset[]>>
  /** Per partition, the first offset still held (`low`) and the next offset to be written (`high`). */
  offsetRange(topic: string): Promise<{ partition: number; low: string; high: string }[]>
  deleteGroup(groupId: string): Promise<void>
  /** The member ids of a group's current members. */
  groupMembers(groupId: string): Promise<string[]>
  /**
   * A group's state as its coordinator reports it (`Stable`, `PreparingRebalance`,
   * `CompletingRebalance`, `Empty`, `Dead`) and its members' ids.
   */
  describeGroup(groupId: string): Promise<{ state: string; members: string[] }>
  createConsumer(spec: ConsumerSpec): ConsumerHandle
}

/** Produce errors that mean the idempotent producer session is out of step with the broker. */
const SEQUENCE_ERRORS = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'DUPLICATE_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
])

const LEVEL_NAMES = { nothing: 0, error: 1, warn: 2, info: 4, debug: 5 } as const

function routeLogs(
  logger: Logger,
  level: ResolvedKafkaOptions['clientLogLevel'],
): NonNullable<KafkaConfig['logCreator']> {
  const max = LEVEL_NAMES[level]
  return () =>
    ({ level: entryLevel, label, log }: LogEntry) => {
      if (entryLevel > max || max === 0) return
      const { message, ...fields } = log
      const text = `kafkajs ${label}: ${message}`
      if (entryLevel === LogLevel.ERROR) logger.error(text, fields)
      else if (entryLevel === LogLevel.WARN) logger.warn(text, fields)
      else if (entryLevel === LogLevel.INFO) logger.info(text, fields)
      else logger.debug(text, fields)
    }
}

/** The kafkajs `Kafka` configuration built from resolved options (exported for the benchmarks). */
export function kafkaConfig(o: ResolvedKafkaOptions): KafkaConfig {
  const config: KafkaConfig = {
    clientId: o.clientId,
    brokers: [...o.brokers],
    connectionTimeout: o.connectionTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    retry: { retries: o.retries, initialRetryTime: 100, maxRetryTime: 2000 },
    logLevel: LevelOf(o.clientLogLevel),
    logCreator: routeLogs(o.logger, o.clientLogLevel),
  }
  if (o.ssl !== false) config.ssl = o.ssl
  if (o.sasl !== undefined) config.sasl = { ...o.sasl } as SASLOptions
  return config
}

function LevelOf(level: ResolvedKafkaOptions['clientLogLevel']): number {
  return LEVEL_NAMES[level]
}

/**
 * Assigns each partition only to members that subscribed its topic, round-robin among them.
 * kafkajs' own assigner hands the leader's topics to every member; with wildcard subscriptions
 * members discover new topics at slightly different times, and a member handed a topic it has not
 * subscribed yet drops it, leaving that partition unconsumed until the next rebalance.
 */
const subscriptionAwareAssigner: PartitionAssigner = ({ cluster }) => {
  const assigner: Assigner = {
    name: 'OmnibusSubscriptionAware',
    version: 1,
    protocol({ topics }) {
      return {
        name: assigner.name,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }),
      }
    },
    async assign({ members, topics }) {
      const wanted = new Map<string, Set<string>>()
      for (const m of members) {
        const meta = AssignerProtocol.MemberMetadata.decode(m.memberMetadata)
        wanted.set(m.memberId, new Set(meta?.topics ?? topics))
      }
      const result = new Map<string, Record<string, number[]>>()
      for (const m of members) result.set(m.memberId, {})
      const sorted = members.map((m) => m.memberId).sort()
      let turn = 0
      for (const topic of [...topics].sort()) {
        const takers = sorted.filter((id) => wanted.get(id)?.has(topic))
        if (takers.length === 0) continue
        const partitions = cluster
          .findTopicPartitionMetadata(topic)
          .map((p) => p.partitionId)
          .sort((a, b) => a - b)
        for (const partition of partitions) {
          const memberId = takers[turn++ % takers.length] as string
          const own = result.get(memberId) as Record<string, number[]>
          if (own[topic] === undefined) own[topic] = []
          own[topic].push(partition)
        }
      }
      return members.map((m) => ({
        memberId: m.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: result.get(m.memberId) ?? {},
          userData: Buffer.alloc(0),
        }),
      }))
    },
  }
  return assigner
}

/**
 * kafkajs' admin does not retry some transient answers (`NOT_COORDINATOR`,
 * `COORDINATOR_LOAD_IN_PROGRESS` while `__consumer_offsets` is created or moves, a topic whose
 * metadata is still propagating): retry those.
 */
async function retrying<R>(fn: () => Promise<R>, attempts = 8): Promise<R> {
  for (let i = 1; ; i++) {
    try {
      return await fn()
    } catch (error) {
      // kafkajs' admin also fails with a TypeError when a new topic's metadata is still incomplete
      // on this client (its ListOffsets parser assumes the topic is in the answer).
      const retriable = (error as { retriable?: unknown }).retriable === true || error instanceof TypeError
      if (!retriable || i >= attempts) throw error
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** i)))
    }
  }
}

/** Builds the {@link KafkaClient} over kafkajs. */
export function createKafkaClient(o: ResolvedKafkaOptions): KafkaClient {
  const kafka: Kafka = o.kafka ?? new KafkaCtor(kafkaConfig(o))
  let admin: Admin | undefined
  let producer: Producer | undefined

  /** Set after a failed produce: the idempotent sequence numbers may be out of step now. */
  let producerSuspect = false
  /**
   * After a produce failed (broker restart, timeout, a partition refused), kafkajs keeps the old
   * producer id and sequence numbers and the broker refuses every later batch as out of order:
   * a new producer session starts clean.
   */
  const renewProducer = async (): Promise<void> => {
    const fresh = newProducer()
    await fresh.connect()
    const old = producer
    producer = fresh
    producerSuspect = false
    await old?.disconnect().catch(() => {})
  }
  const newProducer = (): Producer =>
    kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // kafkajs 2's default (murmur2 over the key, like the Java client), named to skip its warning.
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
      retry: { retries: Math.max(o.retries, 5), initialRetryTime: 100, maxRetryTime: 2000 },
    })

  const needAdmin = (): Admin => {
    if (admin === undefined) throw new Error('Kafka client is not connected')
    return admin
  }

  const client: KafkaClient = {
    async connect() {
      const a = kafka.admin({ retry: { retries: o.retries, initialRetryTime: 100, maxRetryTime: 2000 } })
      const p = newProducer()
      try {
        await a.connect()
        await p.connect()
      } catch (error) {
        await Promise.allSettled([a.disconnect(), p.disconnect()])
        throw error
      }
      admin = a
      producer = p
    },
    async disconnect() {
      const a = admin
      const p = producer
      admin = undefined
      producer = undefined
      await Promise.allSettled([p?.disconnect(), a?.disconnect()])
    },
    async ping() {
      await needAdmin().describeCluster()
    },
    async listTopics() {
      return needAdmin().listTopics()
    },
    async createTopics(topics, numPartitions, replicationFactor, configs) {
      const configEntries = Object.entries(configs ?? {}).map(([name, value]) => ({ name, value }))
      if (topics.length === 0) return
      try {
        // kafkajs' own waitForLeaders gives up when the metadata of a new topic lags (it treats
        // UNKNOWN_TOPIC_OR_PARTITION as final); the wait below retries until leaders exist.
        await needAdmin().createTopics({
          waitForLeaders: false,
          topics: topics.map((topic) => ({ topic, numPartitions, replicationFactor, configEntries })),
        })
      } catch (error) {
        // Another process may have created some of them between our listing and this call.
        const e = error as { type?: string; errors?: Array<{ type?: string }> }
        const errors = e.errors ?? [e]
        if (!errors.every((x) => x.type === 'TOPIC_ALREADY_EXISTS')) throw error
      }
      await retrying(async () => {
        const { topics: meta } = await needAdmin().fetchTopicMetadata({ topics: [...topics] })
        const leaderless = meta.find(
          (t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0),
        )
        if (leaderless !== undefined) {
          throw Object.assign(new Error(`topic ${leaderless.name} has no leader yet`), { retriable: true })
        }
        // The leader answering ListOffsets means it has loaded the partitions: a first produce
        // then does not meet NOT_LEADER_OR_FOLLOWER (which kafkajs' idempotent resend mishandles).
        for (const topic of topics) {
          try {
            await needAdmin().fetchTopicOffsets(topic)
          } catch (error) {
            // kafkajs can even fail with a TypeError while the new topic's metadata is incomplete.
            throw Object.assign(new Error(`topic ${topic} is not ready yet: ${(error as Error).message}`), {
              retriable: true,
              cause: error,
            })
          }
        }
      }, 12)
    },
    async send(batches) {
      if (producer === undefined) throw new Error('Kafka client is not connected')
      const request = {
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: batches.map((b) => ({ topic: b.topic, messages: b.messages as OutgoingMessage[] })),
      }
      for (let attempt = 1; ; attempt++) {
        if (producerSuspect) await renewProducer()
        try {
          await (producer as Producer).sendBatch(request)
          return
        } catch (error) {
          producerSuspect = true
          // kafkajs loses track of its idempotent sequence numbers when a request fails part-way
          // (one partition refused, the others written); the broker then refuses the resend as
          // out of order. One resend from a new producer session gets the events written; the
          // partitions that had succeeded may then hold a second copy (at-least-once).
          const type = (error as { type?: unknown }).type
          if (attempt === 1 && typeof type === 'string' && SEQUENCE_ERRORS.has(type)) continue
          throw error
        }
      }
    },
    async endOffsets(topic) {
      const offsets = await retrying(() => needAdmin().fetchTopicOffsets(topic))
      return offsets.map((p) => ({ partition: p.partition, offset: p.high }))
    },
    async offsetsAt(topic, timestampMs) {
      const offsets = await retrying(() => needAdmin().fetchTopicOffsetsByTimestamp(topic, timestampMs))
      return offsets.map((p) => ({ partition: p.partition, offset: p.offset }))
    },
    async groupOffsets(groupId, topic) {
      const res = await retrying(() => needAdmin().fetchOffsets({ groupId, topics: [topic] }))
      return (res[0]?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset }))
    },
    async groupOffsetsOf(groupId, topics) {
      const res = await retrying(() => needAdmin().fetchOffsets({ groupId, topics: [...topics] }))
      return new Map(
        res.map((t) => [t.topic, t.partitions.map((p) => ({ partition: p.partition, offset: p.offset }))]),
      )
    },
    async offsetRange(topic) {
      const offsets = await retrying(() => needAdmin().fetchTopicOffsets(topic))
      return offsets.map((p) => ({ partition: p.partition, low: p.low, high: p.high }))
    },
    async deleteGroup(groupId) {
      await retrying(() => needAdmin().deleteGroups([groupId]), 3)
    },
    async groupMembers(groupId) {
      return (await client.describeGroup(groupId)).members
    },
    async describeGroup(groupId) {
      const { groups } = await retrying(() => needAdmin().describeGroups([groupId]))
      const group = groups[0]
      return { state: group?.state ?? 'Dead', members: (group?.members ?? []).map((m) => m.memberId) }
    },
    createConsumer(spec) {
      return createConsumerHandle(kafka, o, spec, (groupId, topic) => client.groupOffsets(groupId, topic))
    },
  }
  return client
}

/**
 * The kafkajs consumer settings of every group member (exported for the benchmarks, so a raw
 * consumer there fetches exactly like the backend's).
 */
export function consumerConfig(o: ResolvedKafkaOptions, groupId: string): ConsumerConfig {
  return {
    groupId,
    partitionAssigners: [subscriptionAwareAssigner],
    sessionTimeout: o.sessionTimeoutMs,
    heartbeatInterval: o.heartbeatIntervalMs,
    rebalanceTimeout: o.rebalanceTimeoutMs,
    // minBytes 1 + a short maxWait: a fetch returns as soon as any partition has data, and an idle
    // partition costs at most maxWaitTimeMs of polling, not of delivery latency.
    minBytes: 1,
    maxWaitTimeInMs: o.maxWaitTimeMs,
    maxBytesPerPartition: Math.max(1_048_576, o.maxPayloadBytes * 2),
    allowAutoTopicCreation: false,
    // Metadata is refreshed by the backend's own topic discovery; this only bounds staleness.
    metadataMaxAge: 30_000,
    retry: { retries: Math.max(o.retries, 5), initialRetryTime: 200, maxRetryTime: 3000 },
  }
}

function createConsumerHandle(
  kafka: Kafka,
  o: ResolvedKafkaOptions,
  spec: ConsumerSpec,
  readCommitted: (groupId: string, topic: string) => Promise<PartitionOffset[]>,
): ConsumerHandle {
  const consumer: Consumer = kafka.consumer(consumerConfig(o, spec.groupId))
  consumer.on(consumer.events.GROUP_JOIN, (e) =>
    spec.onJoin?.(e.payload.memberAssignment, e.payload.memberId),
  )
  let connected = false
  let running = false
  consumer.on(consumer.events.CRASH, (e) => {
    // kafkajs disconnects a crashed consumer; without its own restart the handle starts over.
    if (!e.payload.restart) {
      connected = false
      running = false
    }
    spec.onCrash?.(e.payload.error, e.payload.restart)
  })

  const eachBatch = async (payload: EachBatchPayload): Promise<void> => {
    const { batch } = payload
    const control: BatchControl = {
      isActive: () => payload.isRunning() && !payload.isStale(),
      heartbeat: () => payload.heartbeat(),
      markDone: (offset) => payload.resolveOffset(offset),
      commit: async (nextOffset) => {
        await payload.commitOffsetsIfNecessary({
          topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: nextOffset }] }],
        })
      },
      pause: () => payload.pause(),
    }
    // kafkajs messages already have the InboundMessage shape (offset, key, value): passed as they
    // are, no copy per message.
    await spec.onBatch(
      {
        topic: batch.topic,
        partition: batch.partition,
        messages: batch.messages as readonly InboundMessage[],
      },
      control,
    )
  }

  return {
    async start(topics) {
      if (!connected) {
        await consumer.connect()
        connected = true
      }
      if (running) {
        await consumer.stop()
        running = false
      }
      const fromStart = topics.filter((t) => t.fromBeginning).map((t) => t.topic)
      const fromEnd = topics.filter((t) => !t.fromBeginning).map((t) => t.topic)
      if (fromStart.length > 0) await consumer.subscribe({ topics: fromStart, fromBeginning: true })
      if (fromEnd.length > 0) await consumer.subscribe({ topics: fromEnd, fromBeginning: false })
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: spec.partitionsConsumedConcurrently,
        eachBatch,
      })
      running = true
    },
    async seekAndCommit(topic, partition, offset) {
      consumer.seek({ topic, partition, offset })
      // kafkajs silently drops commits issued before its runner is up, and the join event fires
      // earlier: commit until the group's offset reads back (bounded).
      for (let i = 0; i < 50; i++) {
        await consumer.commitOffsets([{ topic, partition, offset }])
        const committed = await readCommitted(spec.groupId, topic)
        if (committed.find((c) => c.partition === partition)?.offset !== '-1') return
        await new Promise((r) => setTimeout(r, 100))
      }
      throw new Error(`could not commit the start offset of ${topic}[${partition}] for group ${spec.groupId}`)
    },
    async stop() {
      if (!running) return
      running = false
      await consumer.stop()
    },
    async disconnect() {
      running = false
      if (!connected) return
      connected = false
      await consumer.disconnect()
    },
  }
}
