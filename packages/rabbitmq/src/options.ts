/**
 * Options of the RabbitMQ backend, resolved once at construction: explicit option, then
 * environment variable, then default. Messages name the field and the bad value (never a secret).
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { ConfigurationError, type Logger, redactUrl, silentLogger } from '@omnibus/core'
import {
  type ProcessedIdStore as DedupeStore,
  optionNames,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
} from '@omnibus/core/backend'
import type { ChannelModel } from 'amqplib'

/** Options of {@link createRabbitMQBackend}. */
export interface RabbitMQBackendOptions {
  /**
   * Broker URL: `amqp://user:pass@host:5672/vhost` or `amqps://…` (URL-encode the vhost, `/` is `%2F`).
   * Query parameters: amqplib's `heartbeat`, `frameMax`, `channelMax`, `locale` and `maxFrameSize`;
   * any other is a `ConfigurationError`. Ignored when `connection` is given.
   * @default 'amqp://guest:guest@127.0.0.1:5672' — env `OMNIBUS_RABBITMQ_URL`
   */
  readonly url?: string
  /**
   * A ready amqplib connection (`await amqplib.connect(…)`). The backend opens its channels on it
   * and leaves it open on `disconnect()`; it cannot re-open a connection it did not make, so after
   * that connection drops the backend reports unhealthy and publishes fail with a retryable error.
   */
  readonly connection?: ChannelModel
  /** TLS options for `amqps://` (ca, cert, key, servername, rejectUnauthorized, …). */
  readonly tls?: TlsOptions
  /**
   * Topic exchange every event is published to.
   * @default 'omnibus.events' — env `OMNIBUS_RABBITMQ_EXCHANGE`
   */
  readonly exchange?: string
  /**
   * Prefix of every queue and helper exchange the backend declares.
   * @default 'omnibus' — env `OMNIBUS_RABBITMQ_PREFIX`
   */
  readonly prefix?: string
  /**
   * Queue type of group queues. `quorum` is replicated and durable; `classic` for brokers or
   * policies that need it.
   * @default 'quorum' — env `OMNIBUS_RABBITMQ_QUEUE_TYPE`
   */
  readonly queueType?: 'quorum' | 'classic'
  /**
   * Deletes a group queue, with the events in it, once it has had no consumer for this long
   * (`x-expires`). Every member of a group must use the same value (RabbitMQ refuses to
   * re-declare a queue with other arguments). Unset: group queues live until deleted by hand.
   * @default unset — env `OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS`
   */
  readonly groupQueueExpiresMs?: number
  /**
   * Publishes awaiting their broker confirm at once; a publish beyond it waits for a slot.
   * @default 1000 — env `OMNIBUS_RABBITMQ_PUBLISH_WINDOW`
   */
  readonly publishWindow?: number
  /**
   * How long a publish may wait for the connection (during a reconnect) and its confirm before it
   * fails with a retryable `ConnectionError`.
   * @default 30000 — env `OMNIBUS_RABBITMQ_PUBLISH_TIMEOUT_MS`
   */
  readonly publishTimeoutMs?: number
  /**
   * Socket connect timeout of one attempt.
   * @default 5000 — env `OMNIBUS_RABBITMQ_CONNECT_TIMEOUT_MS`
   */
  readonly connectTimeoutMs?: number
  /**
   * AMQP heartbeat in seconds (dead connections are noticed after about twice this).
   * @default 10 — env `OMNIBUS_RABBITMQ_HEARTBEAT_S`
   */
  readonly heartbeatSeconds?: number
  /**
   * Longest pause between reconnect attempts (they start at 100 ms and double).
   * @default 5000 — env `OMNIBUS_RABBITMQ_RECONNECT_MAX_DELAY_MS`
   */
  readonly reconnectMaxDelayMs?: number
  /**
   * Largest encoded event accepted by `publish`. The broker's own limit (`max_message_size`,
   * 128 MiB by default) must be at least this.
   * @default 8388608 (8 MiB) — env `OMNIBUS_RABBITMQ_MAX_PAYLOAD_BYTES`
   */
  readonly maxPayloadBytes?: number
  /**
   * Deliveries of one message without an acknowledgement (its consumers crashed or disconnected
   * mid-handler) after which it is dead-lettered instead of redelivered again. Read from the
   * `x-delivery-count` that quorum queues keep; classic queues do not count. 0 = no limit.
   * Handler failures are counted separately, by `retry.maxAttempts`. Kept under RabbitMQ 4's own
   * quorum-queue delivery limit (20), which would drop the message without diagnostics.
   * @default 10 — env `OMNIBUS_RABBITMQ_MAX_REDELIVERIES`
   */
  readonly maxRedeliveries?: number
  /**
   * Processed-id store shared by every consumer of a group. Given: `exactly-once` subscriptions
   * are offered (effect once per event id while the store retains it). Absent: `exactly-once` is
   * refused with a `CapabilityError`, because RabbitMQ keeps no processed-id records.
   */
  readonly dedupeStore?: DedupeStore
  /**
   * `source` of events published without one.
   * @default `omnibus:<pid>` — env `OMNIBUS_SOURCE`
   */
  readonly source?: string
  /** Logger for reconnects and dead letters. @default silent */
  readonly logger?: Logger
}

/** Options after resolution. */
export interface ResolvedRabbitMQOptions {
  readonly url: string
  readonly endpoint: string
  readonly connection: ChannelModel | undefined
  readonly tls: TlsOptions | undefined
  readonly exchange: string
  readonly prefix: string
  readonly queueType: 'quorum' | 'classic'
  readonly groupQueueExpiresMs: number | undefined
  readonly publishWindow: number
  readonly publishTimeoutMs: number
  readonly connectTimeoutMs: number
  readonly heartbeatSeconds: number
  readonly reconnectMaxDelayMs: number
  readonly maxPayloadBytes: number
  readonly maxRedeliveries: number
  readonly dedupeStore: DedupeStore | undefined
  readonly source: string | undefined
  readonly logger: Logger
}

/** The URL used when neither the option nor `OMNIBUS_RABBITMQ_URL` is set. */
export const DEFAULT_URL = 'amqp://guest:guest@127.0.0.1:5672'

const NAME = /^[A-Za-z0-9_.:-]{1,100}$/

type Env = Readonly<Record<string, string | undefined>>

/** The keys of {@link RabbitMQBackendOptions}; any other key is a `ConfigurationError`. */
export const RABBITMQ_OPTION_NAMES: readonly string[] = optionNames<RabbitMQBackendOptions>({
  url: true,
  connection: true,
  tls: true,
  exchange: true,
  prefix: true,
  queueType: true,
  groupQueueExpiresMs: true,
  publishWindow: true,
  publishTimeoutMs: true,
  connectTimeoutMs: true,
  heartbeatSeconds: true,
  reconnectMaxDelayMs: true,
  maxPayloadBytes: true,
  maxRedeliveries: true,
  dedupeStore: true,
  source: true,
  logger: true,
})

/**
 * Query parameters of an `amqp://` URL: the standard ones amqplib reads for the connection
 * handshake. Any other is a `ConfigurationError` rather than a setting that silently does nothing.
 */
export const RABBITMQ_URL_PARAMS: readonly string[] = [
  'heartbeat',
  'frameMax',
  'channelMax',
  'locale',
  'maxFrameSize',
]

function pick<T>(option: T | undefined, env: Env, key: string): T | string | undefined {
  if (option !== undefined) return option
  const v = env[key]
  return v === undefined || v === '' ? undefined : v
}

function intField(
  field: string,
  envKey: string,
  option: number | undefined,
  env: Env,
  fallback: number,
  min: number,
): number {
  const raw = pick(option, env, envKey)
  if (raw === undefined) return fallback
  const n = typeof raw === 'number' ? raw : Number(raw)
  if (!Number.isInteger(n) || n < min) {
    const from = option !== undefined ? field : `${field} (from ${envKey})`
    throw new ConfigurationError(`${from} must be an integer >= ${min}, got ${JSON.stringify(raw)}`, {
      backend: 'rabbitmq',
    })
  }
  return n
}

function nameField(
  field: string,
  envKey: string,
  option: string | undefined,
  env: Env,
  fallback: string,
): string {
  const raw = pick(option, env, envKey) ?? fallback
  if (typeof raw !== 'string' || !NAME.test(raw)) {
    throw new ConfigurationError(
      `${field} must be 1-100 letters, digits, '_', '.', ':' or '-', got ${JSON.stringify(raw)}`,
      { backend: 'rabbitmq' },
    )
  }
  return raw
}

/** Resolves and validates options once; throws `ConfigurationError` naming the field. */
export function resolveOptions(
  options: RabbitMQBackendOptions = {},
  env: Env = process.env,
): ResolvedRabbitMQOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError('RabbitMQ backend options must be an object', { backend: 'rabbitmq' })
  }
  rejectUnknownOptions('rabbitmq backend option', options, RABBITMQ_OPTION_NAMES, { backend: 'rabbitmq' })
  const url = String(pick(options.url, env, 'OMNIBUS_RABBITMQ_URL') ?? DEFAULT_URL)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new ConfigurationError(
      `url "${redactUrl(url)}" is not a URL: use amqp://user:pass@host:5672/vhost or amqps://…`,
      { backend: 'rabbitmq' },
    )
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') {
    throw new ConfigurationError(`url "${redactUrl(url)}" must start with amqp:// or amqps://`, {
      backend: 'rabbitmq',
    })
  }
  rejectUnknownUrlParams(parsed, RABBITMQ_URL_PARAMS, { backend: 'rabbitmq' })
  const connection = options.connection
  if (
    connection !== undefined &&
    typeof (connection as { createConfirmChannel?: unknown }).createConfirmChannel !== 'function'
  ) {
    throw new ConfigurationError(
      'connection must be an amqplib connection from amqplib.connect() (the promise API, not callback_api)',
      { backend: 'rabbitmq' },
    )
  }
  const queueType = pick(options.queueType, env, 'OMNIBUS_RABBITMQ_QUEUE_TYPE') ?? 'quorum'
  if (queueType !== 'quorum' && queueType !== 'classic') {
    throw new ConfigurationError(
      `queueType must be 'quorum' or 'classic', got ${JSON.stringify(queueType)}`,
      {
        backend: 'rabbitmq',
      },
    )
  }
  const source = pick(options.source, env, 'OMNIBUS_SOURCE')
  if (source !== undefined && (typeof source !== 'string' || source.length === 0)) {
    throw new ConfigurationError('source must be a non-empty string', { backend: 'rabbitmq' })
  }
  const dedupe = options.dedupeStore
  if (
    dedupe !== undefined &&
    (typeof dedupe !== 'object' || typeof dedupe.has !== 'function' || typeof dedupe.add !== 'function')
  ) {
    throw new ConfigurationError('dedupeStore must have has(group, id) and add(group, id) methods', {
      backend: 'rabbitmq',
    })
  }
  return {
    url,
    endpoint: connection !== undefined ? 'the given connection' : redactUrl(url),
    connection,
    tls: options.tls,
    exchange: nameField('exchange', 'OMNIBUS_RABBITMQ_EXCHANGE', options.exchange, env, 'omnibus.events'),
    prefix: nameField('prefix', 'OMNIBUS_RABBITMQ_PREFIX', options.prefix, env, 'omnibus'),
    queueType,
    groupQueueExpiresMs:
      pick(options.groupQueueExpiresMs, env, 'OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS') === undefined
        ? undefined
        : intField(
            'groupQueueExpiresMs',
            'OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS',
            options.groupQueueExpiresMs,
            env,
            0,
            1000,
          ),
    publishWindow: intField(
      'publishWindow',
      'OMNIBUS_RABBITMQ_PUBLISH_WINDOW',
      options.publishWindow,
      env,
      1000,
      1,
    ),
    publishTimeoutMs: intField(
      'publishTimeoutMs',
      'OMNIBUS_RABBITMQ_PUBLISH_TIMEOUT_MS',
      options.publishTimeoutMs,
      env,
      30_000,
      1,
    ),
    connectTimeoutMs: intField(
      'connectTimeoutMs',
      'OMNIBUS_RABBITMQ_CONNECT_TIMEOUT_MS',
      options.connectTimeoutMs,
      env,
      5000,
      1,
    ),
    heartbeatSeconds: intField(
      'heartbeatSeconds',
      'OMNIBUS_RABBITMQ_HEARTBEAT_S',
      options.heartbeatSeconds,
      env,
      10,
      0,
    ),
    reconnectMaxDelayMs: intField(
      'reconnectMaxDelayMs',
      'OMNIBUS_RABBITMQ_RECONNECT_MAX_DELAY_MS',
      options.reconnectMaxDelayMs,
      env,
      5000,
      1,
    ),
    maxPayloadBytes: intField(
      'maxPayloadBytes',
      'OMNIBUS_RABBITMQ_MAX_PAYLOAD_BYTES',
      options.maxPayloadBytes,
      env,
      8 * 1024 * 1024,
      1024,
    ),
    maxRedeliveries: intField(
      'maxRedeliveries',
      'OMNIBUS_RABBITMQ_MAX_REDELIVERIES',
      options.maxRedeliveries,
      env,
      10,
      0,
    ),
    dedupeStore: dedupe,
    source: source as string | undefined,
    logger: options.logger ?? silentLogger,
  }
}
