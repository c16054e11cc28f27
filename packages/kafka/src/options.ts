/**
 * `KafkaBackendOptions` and their resolution: explicit option → environment variable → default,
 * validated once at construction with messages naming the field and the bad value.
 */
import type { ConnectionOptions } from 'node:tls'
import { ConfigurationError, type Logger, silentLogger } from '@omnibus/core'
import {
  type ProcessedIdStore as DedupeStore,
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
   * Processed-id records for exactly-once subscriptions.
   * @default records in the compacted Kafka topic `dedupeTopic`, shared by every process
   */
  readonly dedupeStore?: DedupeStore
  /** Compacted topic of processed-id records (never matched by wildcards: it starts with `__`). @default '__omnibus_processed' — env `OMNIBUS_KAFKA_DEDUPE_TOPIC` */
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

function bad(field: string, value: unknown, expected: string): ConfigurationError {
  return new ConfigurationError(
    `kafka option ${field} = ${JSON.stringify(value) ?? String(value)} is invalid: expected ${expected}`,
    { backend: 'kafka' },
  )
}

function int(
  field: string,
  envName: string,
  value: number | undefined,
  env: Env,
  fallback: number,
  min: number,
): number {
  let v: unknown = value
  let label = field
  if (v === undefined && env[envName] !== undefined && env[envName] !== '') {
    v = Number(env[envName])
    label = `${field} (from ${envName})`
    if (!Number.isFinite(v as number)) throw bad(label, env[envName], `an integer >= ${min}`)
  }
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(label, v, `an integer >= ${min}`)
  return v
}

function bool(
  field: string,
  envName: string,
  value: boolean | undefined,
  env: Env,
  fallback: boolean,
): boolean {
  if (value !== undefined) {
    if (typeof value !== 'boolean') throw bad(field, value, 'true or false')
    return value
  }
  const raw = env[envName]
  if (raw === undefined || raw === '') return fallback
  if (/^(1|true|yes|on)$/i.test(raw)) return true
  if (/^(0|false|no|off)$/i.test(raw)) return false
  throw bad(`${field} (from ${envName})`, raw, 'true or false')
}

const BROKER = /^[A-Za-z0-9._-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/

function brokers(value: readonly string[] | string | undefined, env: Env): readonly string[] {
  let list: unknown = value
  let label = 'brokers'
  if (list === undefined && env.OMNIBUS_KAFKA_BROKERS) {
    list = env.OMNIBUS_KAFKA_BROKERS
    label = 'brokers (from OMNIBUS_KAFKA_BROKERS)'
  }
  if (list === undefined) return ['127.0.0.1:9092']
  const items = typeof list === 'string' ? list.split(',').map((s) => s.trim()) : list
  if (!Array.isArray(items) || items.length === 0) throw bad(label, list, 'a non-empty list of host:port')
  for (const b of items) {
    if (typeof b !== 'string' || !BROKER.test(b)) throw bad(label, b, 'host:port, e.g. 127.0.0.1:9092')
  }
  return items as string[]
}

const MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const
const LOG_LEVELS: readonly KafkaClientLogLevel[] = ['nothing', 'error', 'warn', 'info', 'debug']

function sasl(value: KafkaSaslOptions | undefined, env: Env): KafkaSaslOptions | undefined {
  let s: Partial<KafkaSaslOptions> | undefined = value
  if (s === undefined && env.OMNIBUS_KAFKA_SASL_MECHANISM) {
    s = {
      mechanism: env.OMNIBUS_KAFKA_SASL_MECHANISM.toLowerCase() as KafkaSaslOptions['mechanism'],
      username: env.OMNIBUS_KAFKA_SASL_USERNAME ?? '',
      password: env.OMNIBUS_KAFKA_SASL_PASSWORD ?? '',
    }
  }
  if (s === undefined) return undefined
  if (typeof s !== 'object' || s === null) throw bad('sasl', '[object]', '{ mechanism, username, password }')
  rejectUnknownOptions('kafka sasl option', s, SASL_OPTION_NAMES, { backend: 'kafka' })
  if (!MECHANISMS.includes(s.mechanism as (typeof MECHANISMS)[number])) {
    throw bad('sasl.mechanism', s.mechanism, MECHANISMS.join(', '))
  }
  if (typeof s.username !== 'string' || s.username.length === 0) {
    throw bad('sasl.username', s.username, 'a non-empty string')
  }
  if (typeof s.password !== 'string') {
    // The value is a secret: name the field, never echo it.
    throw new ConfigurationError('kafka option sasl.password is invalid: expected a string', {
      backend: 'kafka',
    })
  }
  return s as KafkaSaslOptions
}

/** Resolves and validates options (explicit → env → default). Throws `ConfigurationError`. */
export function resolveKafkaOptions(
  options: KafkaBackendOptions = {},
  env: Env = process.env,
): ResolvedKafkaOptions {
  if (options === null || typeof options !== 'object') throw bad('options', options, 'an object')
  rejectUnknownOptions('kafka backend option', options, KAFKA_OPTION_NAMES, { backend: 'kafka' })
  const clientId = options.clientId ?? env.OMNIBUS_KAFKA_CLIENT_ID ?? 'omnibus'
  if (typeof clientId !== 'string' || !/^[A-Za-z0-9._:-]{1,200}$/.test(clientId)) {
    throw bad('clientId', clientId, "1-200 letters, digits, '.', '_', ':' or '-'")
  }
  const groupIdPrefix = options.groupIdPrefix ?? env.OMNIBUS_KAFKA_GROUP_PREFIX ?? ''
  if (typeof groupIdPrefix !== 'string' || !/^[A-Za-z0-9._-]{0,100}$/.test(groupIdPrefix)) {
    throw bad('groupIdPrefix', groupIdPrefix, "up to 100 letters, digits, '.', '_' or '-'")
  }
  let ssl: boolean | ConnectionOptions
  if (options.ssl !== undefined) {
    if (typeof options.ssl !== 'boolean' && (typeof options.ssl !== 'object' || options.ssl === null)) {
      throw bad('ssl', options.ssl, 'true, false or TLS connection options')
    }
    ssl = options.ssl
  } else {
    ssl = bool('ssl', 'OMNIBUS_KAFKA_SSL', undefined, env, false)
  }
  const clientLogLevel = (options.clientLogLevel ??
    env.OMNIBUS_KAFKA_LOG_LEVEL ??
    'nothing') as KafkaClientLogLevel
  if (!LOG_LEVELS.includes(clientLogLevel)) throw bad('clientLogLevel', clientLogLevel, LOG_LEVELS.join(', '))
  const replicationFactor = int(
    'replicationFactor',
    'OMNIBUS_KAFKA_REPLICATION_FACTOR',
    options.replicationFactor,
    env,
    -1,
    -1,
  )
  if (replicationFactor === 0) throw bad('replicationFactor', 0, '-1 (broker default) or an integer >= 1')
  const sessionTimeoutMs = int(
    'sessionTimeoutMs',
    'OMNIBUS_KAFKA_SESSION_TIMEOUT_MS',
    options.sessionTimeoutMs,
    env,
    10_000,
    1000,
  )
  const heartbeatIntervalMs = int(
    'heartbeatIntervalMs',
    'OMNIBUS_KAFKA_HEARTBEAT_MS',
    options.heartbeatIntervalMs,
    env,
    1000,
    100,
  )
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw bad('heartbeatIntervalMs', heartbeatIntervalMs, `less than sessionTimeoutMs (${sessionTimeoutMs})`)
  }
  const maxPayloadBytes = int(
    'maxPayloadBytes',
    'OMNIBUS_KAFKA_MAX_PAYLOAD_BYTES',
    options.maxPayloadBytes,
    env,
    1_000_000,
    1024,
  )
  const maxBatchBytes = int(
    'maxBatchBytes',
    'OMNIBUS_KAFKA_MAX_BATCH_BYTES',
    options.maxBatchBytes,
    env,
    900_000,
    1024,
  )
  const dedupeTopic = options.dedupeTopic ?? env.OMNIBUS_KAFKA_DEDUPE_TOPIC ?? '__omnibus_processed'
  if (typeof dedupeTopic !== 'string' || !/^[A-Za-z0-9._-]{1,249}$/.test(dedupeTopic)) {
    throw bad('dedupeTopic', dedupeTopic, "a Kafka topic name: 1-249 letters, digits, '.', '_' or '-'")
  }
  if (options.dedupeStore !== undefined && typeof options.dedupeStore?.has !== 'function') {
    throw bad('dedupeStore', '[object]', 'an object with has(group, id) and add(group, id)')
  }
  if (options.logger !== undefined && typeof options.logger?.warn !== 'function') {
    throw bad('logger', '[object]', 'an object with debug/info/warn/error methods')
  }
  return {
    brokers: brokers(options.brokers, env),
    kafka: options.kafka,
    clientId,
    ssl,
    sasl: sasl(options.sasl, env),
    groupIdPrefix,
    autoCreateTopics: bool(
      'autoCreateTopics',
      'OMNIBUS_KAFKA_AUTO_CREATE_TOPICS',
      options.autoCreateTopics,
      env,
      true,
    ),
    numPartitions: int('numPartitions', 'OMNIBUS_KAFKA_PARTITIONS', options.numPartitions, env, 3, 1),
    replicationFactor,
    topicRefreshMs: int(
      'topicRefreshMs',
      'OMNIBUS_KAFKA_TOPIC_REFRESH_MS',
      options.topicRefreshMs,
      env,
      1000,
      50,
    ),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    rebalanceTimeoutMs: int(
      'rebalanceTimeoutMs',
      'OMNIBUS_KAFKA_REBALANCE_TIMEOUT_MS',
      options.rebalanceTimeoutMs,
      env,
      30_000,
      1000,
    ),
    maxWaitTimeMs: int('maxWaitTimeMs', 'OMNIBUS_KAFKA_MAX_WAIT_MS', options.maxWaitTimeMs, env, 100, 0),
    groupJoinTimeoutMs: int(
      'groupJoinTimeoutMs',
      'OMNIBUS_KAFKA_GROUP_JOIN_TIMEOUT_MS',
      options.groupJoinTimeoutMs,
      env,
      30_000,
      100,
    ),
    maxPayloadBytes,
    maxBatchBytes: Math.max(maxBatchBytes, maxPayloadBytes + 1024),
    connectionTimeoutMs: int(
      'connectionTimeoutMs',
      'OMNIBUS_KAFKA_CONNECTION_TIMEOUT_MS',
      options.connectionTimeoutMs,
      env,
      3000,
      100,
    ),
    requestTimeoutMs: int(
      'requestTimeoutMs',
      'OMNIBUS_KAFKA_REQUEST_TIMEOUT_MS',
      options.requestTimeoutMs,
      env,
      30_000,
      100,
    ),
    retries: int('retries', 'OMNIBUS_KAFKA_RETRIES', options.retries, env, 5, 0),
    healthTimeoutMs: int(
      'healthTimeoutMs',
      'OMNIBUS_KAFKA_HEALTH_TIMEOUT_MS',
      options.healthTimeoutMs,
      env,
      3000,
      100,
    ),
    source: options.source ?? env.OMNIBUS_SOURCE,
    logger: options.logger ?? silentLogger,
    clientLogLevel,
    dedupeStore: options.dedupeStore,
    dedupeTopic,
    dedupeTtlMs: int(
      'dedupeTtlMs',
      'OMNIBUS_KAFKA_DEDUPE_TTL_MS',
      options.dedupeTtlMs,
      env,
      86_400_000,
      1000,
    ),
  }
}
