/**
 * `KafkaBackendOptions` and their resolution by core's `OptionResolver`: explicit option →
 * environment variable → default, validated once at construction, with core's one boolean
 * spelling and one error format (`kafka backend option <field> must be ..., got ...`).
 */
import type { ConnectionOptions } from 'node:tls'
import { type Logger, silentLogger } from '@omnibus/core'
import {
  type DedupeStore,
  OptionResolver,
  optionError,
  optionNames,
  rejectUnknownOptions,
} from '@omnibus/core/backend'
import type { Kafka } from 'kafkajs'

/** SASL credentials. The password never appears in logs, errors or `describe()` output. */
export interface KafkaSaslOptions {
  readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'
  readonly username: string
  readonly password: string
}

/** Log levels of the Kafka client itself; its lines go to the Omnibus `logger`. */
export type KafkaClientLogLevel = 'nothing' | 'error' | 'warn' | 'info' | 'debug'

/** Options of {@link createKafkaBackend}. */
export interface KafkaBackendOptions {
  /**
   * Broker list (`host:port`), or a comma-separated string.
   * @default ['127.0.0.1:9092'] — env `OMNIBUS_KAFKA_BROKERS`
   */
  readonly brokers?: readonly string[] | string
  /**
   * A ready kafkajs `Kafka` instance; when given, `brokers`, `ssl`, `sasl`, `clientId` and the
   * connection timeouts are the instance's own and are ignored here.
   */
  readonly kafka?: Kafka
  /** Client id sent to the brokers. @default 'omnibus' — env `OMNIBUS_KAFKA_CLIENT_ID` */
  readonly clientId?: string
  /** TLS: `true` for the system CAs, or Node TLS options. @default false — env `OMNIBUS_KAFKA_SSL` (`true`/`false`) */
  readonly ssl?: boolean | ConnectionOptions
  /**
   * SASL credentials.
   * @default none — env `OMNIBUS_KAFKA_SASL_MECHANISM`, `OMNIBUS_KAFKA_SASL_USERNAME`, `OMNIBUS_KAFKA_SASL_PASSWORD`
   */
  readonly sasl?: KafkaSaslOptions
  /** Prefix of every Kafka consumer group id (Omnibus group `billing` → `<prefix>billing`). @default '' — env `OMNIBUS_KAFKA_GROUP_PREFIX` */
  readonly groupIdPrefix?: string
  /**
   * Create missing topics on publish and on subscribe to a literal topic. When false, or when the
   * cluster refuses, a publish to a missing topic fails with a `PublishError` saying so.
   * @default true — env `OMNIBUS_KAFKA_AUTO_CREATE_TOPICS`
   */
  readonly autoCreateTopics?: boolean
  /** Partitions of topics this backend creates. @default 3 — env `OMNIBUS_KAFKA_PARTITIONS` */
  readonly numPartitions?: number
  /** Replication factor of topics this backend creates; -1 = the broker's `default.replication.factor`. @default -1 — env `OMNIBUS_KAFKA_REPLICATION_FACTOR` */
  readonly replicationFactor?: number
  /** How often wildcard subscriptions look for new topics. @default 1000 — env `OMNIBUS_KAFKA_TOPIC_REFRESH_MS` */
  readonly topicRefreshMs?: number
  /** Consumer session timeout: a member silent this long is replaced. @default 10000 — env `OMNIBUS_KAFKA_SESSION_TIMEOUT_MS` */
  readonly sessionTimeoutMs?: number
  /** Heartbeat interval of consumers (also while a slow handler runs). @default 1000 — env `OMNIBUS_KAFKA_HEARTBEAT_MS` */
  readonly heartbeatIntervalMs?: number
  /** How long the coordinator waits for members to rejoin during a rebalance. @default 30000 — env `OMNIBUS_KAFKA_REBALANCE_TIMEOUT_MS` */
  readonly rebalanceTimeoutMs?: number
  /** Longest a fetch waits for data on idle partitions. @default 100 — env `OMNIBUS_KAFKA_MAX_WAIT_MS` */
  readonly maxWaitTimeMs?: number
  /** How long `subscribe` waits for the consumer to join its group. @default 30000 — env `OMNIBUS_KAFKA_GROUP_JOIN_TIMEOUT_MS` */
  readonly groupJoinTimeoutMs?: number
  /** Largest encoded event accepted by `publish`, in bytes (keep under the broker's `message.max.bytes`). @default 1000000 — env `OMNIBUS_KAFKA_MAX_PAYLOAD_BYTES` */
  readonly maxPayloadBytes?: number
  /** Largest produce request per topic, in bytes; bigger bursts are split. @default 900000 — env `OMNIBUS_KAFKA_MAX_BATCH_BYTES` */
  readonly maxBatchBytes?: number
  /** TCP connect timeout. @default 3000 — env `OMNIBUS_KAFKA_CONNECTION_TIMEOUT_MS` */
  readonly connectionTimeoutMs?: number
  /** Request timeout. @default 30000 — env `OMNIBUS_KAFKA_REQUEST_TIMEOUT_MS` */
  readonly requestTimeoutMs?: number
  /** Client-level retries of a failed request before the call fails. @default 5 — env `OMNIBUS_KAFKA_RETRIES` */
  readonly retries?: number
  /** `healthCheck` answers unhealthy when the broker takes longer than this. @default 3000 — env `OMNIBUS_KAFKA_HEALTH_TIMEOUT_MS` */
  readonly healthTimeoutMs?: number
  /** Producer identity written as `source`. @default `omnibus:<pid>` — env `OMNIBUS_SOURCE` */
  readonly source?: string
  /** Where the backend (and the Kafka client, see `clientLogLevel`) log. @default silent */
  readonly logger?: Logger
  /** Verbosity of the Kafka client's own log lines, routed to `logger`. @default 'nothing' — env `OMNIBUS_KAFKA_LOG_LEVEL` */
  readonly clientLogLevel?: KafkaClientLogLevel
  /**
   * The exactly-once store (core's `DedupeStore` claim protocol: `claim`, `commit`, `release`);
   * it must be atomic across every process of a group.
   * @default claims and processed-id records in the compacted Kafka topic `dedupeTopic`, shared by every process
   */
  readonly dedupeStore?: DedupeStore
  /** Compacted topic of exactly-once claims, processed-id records and delivery counts (never matched by wildcards: it starts with `__`). @default '__omnibus_processed' — env `OMNIBUS_KAFKA_DEDUPE_TOPIC` */
  readonly dedupeTopic?: string
  /** How long a processed id is remembered. @default 86400000 (24 h) — env `OMNIBUS_KAFKA_DEDUPE_TTL_MS` */
  readonly dedupeTtlMs?: number
}

/** Options after resolution. */
export interface ResolvedKafkaOptions {
  readonly brokers: readonly string[]
  readonly kafka: Kafka | undefined
  readonly clientId: string
  readonly ssl: boolean | ConnectionOptions
  readonly sasl: KafkaSaslOptions | undefined
  readonly groupIdPrefix: string
  readonly autoCreateTopics: boolean
  readonly numPartitions: number
  readonly replicationFactor: number
  readonly topicRefreshMs: number
  readonly sessionTimeoutMs: number
  readonly heartbeatIntervalMs: number
  readonly rebalanceTimeoutMs: number
  readonly maxWaitTimeMs: number
  readonly groupJoinTimeoutMs: number
  readonly maxPayloadBytes: number
  readonly maxBatchBytes: number
  readonly connectionTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly retries: number
  readonly healthTimeoutMs: number
  readonly source: string | undefined
  readonly logger: Logger
  readonly clientLogLevel: KafkaClientLogLevel
  readonly dedupeStore: DedupeStore | undefined
  readonly dedupeTopic: string
  readonly dedupeTtlMs: number
}

type Env = Readonly<Record<string, string | undefined>>

/** The keys of {@link KafkaBackendOptions}; any other key is a `ConfigurationError`. */
export const KAFKA_OPTION_NAMES: readonly string[] = optionNames<KafkaBackendOptions>({
  brokers: true,
  kafka: true,
  clientId: true,
  ssl: true,
  sasl: true,
  groupIdPrefix: true,
  autoCreateTopics: true,
  numPartitions: true,
  replicationFactor: true,
  topicRefreshMs: true,
  sessionTimeoutMs: true,
  heartbeatIntervalMs: true,
  rebalanceTimeoutMs: true,
  maxWaitTimeMs: true,
  groupJoinTimeoutMs: true,
  maxPayloadBytes: true,
  maxBatchBytes: true,
  connectionTimeoutMs: true,
  requestTimeoutMs: true,
  retries: true,
  healthTimeoutMs: true,
  source: true,
  logger: true,
  clientLogLevel: true,
  dedupeStore: true,
  dedupeTopic: true,
  dedupeTtlMs: true,
})

const SASL_OPTION_NAMES = optionNames<KafkaSaslOptions>({ mechanism: true, username: true, password: true })

/**
 * Query parameters of a `kafka://` URL (see `backendFromUrl`); any other is a
 * `ConfigurationError`.
 */
export const KAFKA_URL_PARAMS: readonly string[] = [
  'brokers',
  'clientId',
  'groupIdPrefix',
  'partitions',
  'replicationFactor',
  'ssl',
  'sasl',
]

const CLIENT_ID = {
  test: (v: string) => /^[A-Za-z0-9._:-]{1,200}$/.test(v),
  expected: "1-200 letters, digits, '.', '_', ':' or '-'",
}
const GROUP_PREFIX = {
  test: (v: string) => /^[A-Za-z0-9._-]{0,100}$/.test(v),
  expected: "up to 100 letters, digits, '.', '_' or '-'",
}
const TOPIC_NAME = {
  test: (v: string) => /^[A-Za-z0-9._-]{1,249}$/.test(v),
  expected: "a Kafka topic name: 1-249 letters, digits, '.', '_' or '-'",
}
const BROKER = /^[A-Za-z0-9._-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/

const MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const
const LOG_LEVELS: readonly KafkaClientLogLevel[] = ['nothing', 'error', 'warn', 'info', 'debug']

function brokers(r: OptionResolver, explicit: unknown): readonly string[] {
  const list = r.raw('brokers', 'OMNIBUS_KAFKA_BROKERS')
  if (list === undefined) return ['127.0.0.1:9092']
  const items = typeof list === 'string' ? list.split(',').map((b) => b.trim()) : list
  const fail = (): never =>
    r.fail(
      'brokers',
      'OMNIBUS_KAFKA_BROKERS',
      { value: list, fromEnv: explicit === undefined },
      'a non-empty list of host:port, e.g. 127.0.0.1:9092',
    )
  if (!Array.isArray(items) || items.length === 0) fail()
  for (const b of items as unknown[]) if (typeof b !== 'string' || !BROKER.test(b)) fail()
  return items as string[]
}

function sasl(value: KafkaSaslOptions | undefined, env: Env): KafkaSaslOptions | undefined {
  let s: Partial<KafkaSaslOptions> | undefined = value
  let fromEnv = false
  if (s === undefined && env.OMNIBUS_KAFKA_SASL_MECHANISM) {
    fromEnv = true
    s = {
      mechanism: env.OMNIBUS_KAFKA_SASL_MECHANISM.toLowerCase() as KafkaSaslOptions['mechanism'],
      username: env.OMNIBUS_KAFKA_SASL_USERNAME ?? '',
      password: env.OMNIBUS_KAFKA_SASL_PASSWORD ?? '',
    }
  }
  if (s === undefined) return undefined
  const bad = (field: string, v: unknown, expected: string, envVar: string): never => {
    throw optionError('kafka', field, v, expected, fromEnv ? envVar : undefined)
  }
  if (typeof s !== 'object' || s === null) bad('sasl', s, '{ mechanism, username, password }', '')
  rejectUnknownOptions('kafka sasl option', s, SASL_OPTION_NAMES, { backend: 'kafka' })
  if (!MECHANISMS.includes(s.mechanism as (typeof MECHANISMS)[number])) {
    bad(
      'sasl.mechanism',
      s.mechanism,
      `one of ${MECHANISMS.map((m) => `'${m}'`).join(', ')}`,
      'OMNIBUS_KAFKA_SASL_MECHANISM',
    )
  }
  if (typeof s.username !== 'string' || s.username.length === 0) {
    bad('sasl.username', s.username, 'a non-empty string', 'OMNIBUS_KAFKA_SASL_USERNAME')
  }
  if (typeof s.password !== 'string') {
    // The value is a secret: name the field, never echo it.
    bad('sasl.password', '[redacted]', 'a string', 'OMNIBUS_KAFKA_SASL_PASSWORD')
  }
  return s as KafkaSaslOptions
}

/** Resolves and validates options (explicit → env → default). Throws `ConfigurationError`. */
export function resolveKafkaOptions(
  options: KafkaBackendOptions = {},
  env: Env = process.env,
): ResolvedKafkaOptions {
  if (options === null || typeof options !== 'object') {
    throw optionError('kafka', 'options', options, 'an object')
  }
  rejectUnknownOptions('kafka backend option', options, KAFKA_OPTION_NAMES, { backend: 'kafka' })
  const r = new OptionResolver('kafka', options as Readonly<Record<string, unknown>>, env)
  const int = (field: string, envVar: string, fallback: number, min: number): number =>
    r.integer(field, envVar, fallback, { min })
  const ssl =
    typeof options.ssl === 'object' && options.ssl !== null
      ? options.ssl
      : r.boolean('ssl', 'OMNIBUS_KAFKA_SSL', false)
  const replicationFactor = int('replicationFactor', 'OMNIBUS_KAFKA_REPLICATION_FACTOR', -1, -1)
  if (replicationFactor === 0) {
    r.fail(
      'replicationFactor',
      'OMNIBUS_KAFKA_REPLICATION_FACTOR',
      { value: 0, fromEnv: options.replicationFactor === undefined },
      '-1 (broker default) or an integer >= 1',
    )
  }
  const sessionTimeoutMs = int('sessionTimeoutMs', 'OMNIBUS_KAFKA_SESSION_TIMEOUT_MS', 10_000, 1000)
  const heartbeatIntervalMs = int('heartbeatIntervalMs', 'OMNIBUS_KAFKA_HEARTBEAT_MS', 1000, 100)
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    r.fail(
      'heartbeatIntervalMs',
      'OMNIBUS_KAFKA_HEARTBEAT_MS',
      { value: heartbeatIntervalMs, fromEnv: options.heartbeatIntervalMs === undefined },
      `less than sessionTimeoutMs (${sessionTimeoutMs})`,
    )
  }
  const maxPayloadBytes = int('maxPayloadBytes', 'OMNIBUS_KAFKA_MAX_PAYLOAD_BYTES', 1_000_000, 1024)
  const maxBatchBytes = int('maxBatchBytes', 'OMNIBUS_KAFKA_MAX_BATCH_BYTES', 900_000, 1024)
  const dedupeStore = r.raw('dedupeStore', undefined) as DedupeStore | undefined
  if (dedupeStore !== undefined && typeof dedupeStore?.claim !== 'function') {
    r.fail(
      'dedupeStore',
      undefined,
      { value: dedupeStore, fromEnv: false },
      'a DedupeStore: an object with claim, commit and release',
    )
  }
  const logger = r.raw('logger', undefined) as Logger | undefined
  if (logger !== undefined && typeof logger?.warn !== 'function') {
    r.fail(
      'logger',
      undefined,
      { value: logger, fromEnv: false },
      'an object with debug/info/warn/error methods',
    )
  }
  return {
    brokers: brokers(r, options.brokers),
    kafka: options.kafka,
    clientId: r.string('clientId', 'OMNIBUS_KAFKA_CLIENT_ID', 'omnibus', CLIENT_ID),
    ssl,
    sasl: sasl(options.sasl, env),
    // An empty prefix is a valid choice, not "unset".
    groupIdPrefix:
      options.groupIdPrefix === ''
        ? ''
        : r.string('groupIdPrefix', 'OMNIBUS_KAFKA_GROUP_PREFIX', '', GROUP_PREFIX),
    autoCreateTopics: r.boolean('autoCreateTopics', 'OMNIBUS_KAFKA_AUTO_CREATE_TOPICS', true),
    numPartitions: int('numPartitions', 'OMNIBUS_KAFKA_PARTITIONS', 3, 1),
    replicationFactor,
    topicRefreshMs: int('topicRefreshMs', 'OMNIBUS_KAFKA_TOPIC_REFRESH_MS', 1000, 50),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    rebalanceTimeoutMs: int('rebalanceTimeoutMs', 'OMNIBUS_KAFKA_REBALANCE_TIMEOUT_MS', 30_000, 1000),
    maxWaitTimeMs: int('maxWaitTimeMs', 'OMNIBUS_KAFKA_MAX_WAIT_MS', 100, 0),
    groupJoinTimeoutMs: int('groupJoinTimeoutMs', 'OMNIBUS_KAFKA_GROUP_JOIN_TIMEOUT_MS', 30_000, 100),
    maxPayloadBytes,
    maxBatchBytes: Math.max(maxBatchBytes, maxPayloadBytes + 1024),
    connectionTimeoutMs: int('connectionTimeoutMs', 'OMNIBUS_KAFKA_CONNECTION_TIMEOUT_MS', 3000, 100),
    requestTimeoutMs: int('requestTimeoutMs', 'OMNIBUS_KAFKA_REQUEST_TIMEOUT_MS', 30_000, 100),
    retries: int('retries', 'OMNIBUS_KAFKA_RETRIES', 5, 0),
    healthTimeoutMs: int('healthTimeoutMs', 'OMNIBUS_KAFKA_HEALTH_TIMEOUT_MS', 3000, 100),
    source: r.string('source', 'OMNIBUS_SOURCE', undefined),
    logger: logger ?? silentLogger,
    clientLogLevel: r.oneOf('clientLogLevel', 'OMNIBUS_KAFKA_LOG_LEVEL', LOG_LEVELS, 'nothing'),
    dedupeStore,
    dedupeTopic: r.string('dedupeTopic', 'OMNIBUS_KAFKA_DEDUPE_TOPIC', '__omnibus_processed', TOPIC_NAME),
    dedupeTtlMs: int('dedupeTtlMs', 'OMNIBUS_KAFKA_DEDUPE_TTL_MS', 86_400_000, 1000),
  }
}
