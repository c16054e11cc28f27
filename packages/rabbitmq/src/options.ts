/**
 * Options of the RabbitMQ backend, resolved once at construction: explicit option, then
 * environment variable, then default. Messages name the field and the bad value (never a secret).
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import { ConfigurationError, type Logger, redactUrl, silentLogger } from '@omnibus/core'
import {
  type DedupeStore,
  OptionResolver,
  optionError,
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
   * No longer used: setting it (or `OMNIBUS_RABBITMQ_MAX_REDELIVERIES`) is a `ConfigurationError`.
   * The poison guard now counts every delivery of a message, failed runs and deliveries that
   * ended without an acknowledgement alike, against the subscription's `retry.maxAttempts`.
   * @deprecated Use the subscribe option `retry.maxAttempts`.
   */
  readonly maxRedeliveries?: number
  /**
   * Exactly-once store shared by every consumer of a group: the `DedupeStore` claim protocol
   * (`claim`/`commit`/`release`) of `@omnibus/core/backend`, atomic across every process that
   * shares it. Given: `exactly-once` subscriptions are offered (effect once per event id while
   * the store retains it). Absent: `exactly-once` is refused with a `CapabilityError`, because
   * RabbitMQ keeps no processed-id records.
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
  readonly dedupeStore: DedupeStore | undefined
  readonly source: string | undefined
  readonly logger: Logger
}

/** The URL used when neither the option nor `OMNIBUS_RABBITMQ_URL` is set. */
export const DEFAULT_URL = 'amqp://guest:guest@127.0.0.1:5672'

const NAME = {
  test: (v: string) => /^[A-Za-z0-9_.:-]{1,100}$/.test(v),
  expected: "1-100 letters, digits, '_', '.', ':' or '-'",
}

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

const URL_EXPECTED = 'an amqp:// or amqps:// URL (amqp://user:pass@host:5672/vhost)'

/** Resolves and validates options once; throws `ConfigurationError` naming the field. */
export function resolveOptions(
  options: RabbitMQBackendOptions = {},
  env: Env = process.env,
): ResolvedRabbitMQOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError('rabbitmq backend options must be an object', { backend: 'rabbitmq' })
  }
  rejectUnknownOptions('rabbitmq backend option', options, RABBITMQ_OPTION_NAMES, { backend: 'rabbitmq' })
  const r = new OptionResolver('rabbitmq', options as Readonly<Record<string, unknown>>, env)
  const fromEnv = (field: keyof RabbitMQBackendOptions, envVar: string) =>
    options[field] === undefined ? envVar : undefined
  const retired = r.raw('maxRedeliveries', 'OMNIBUS_RABBITMQ_MAX_REDELIVERIES')
  if (retired !== undefined) {
    throw optionError(
      'rabbitmq',
      'maxRedeliveries',
      retired,
      'left unset: every delivery now counts against the subscribe option retry.maxAttempts ' +
        '(failed runs and deliveries that ended without an acknowledgement alike); set that instead',
      fromEnv('maxRedeliveries', 'OMNIBUS_RABBITMQ_MAX_REDELIVERIES'),
    )
  }
  const url = r.string('url', 'OMNIBUS_RABBITMQ_URL', DEFAULT_URL)
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed === undefined || (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:')) {
    throw optionError('rabbitmq', 'url', redactUrl(url), URL_EXPECTED, fromEnv('url', 'OMNIBUS_RABBITMQ_URL'))
  }
  rejectUnknownUrlParams(parsed, RABBITMQ_URL_PARAMS, { backend: 'rabbitmq' })
  const connection = options.connection
  if (
    connection !== undefined &&
    typeof (connection as { createConfirmChannel?: unknown }).createConfirmChannel !== 'function'
  ) {
    throw optionError(
      'rabbitmq',
      'connection',
      connection,
      'an amqplib connection from amqplib.connect() (the promise API, not callback_api)',
    )
  }
  const dedupe = options.dedupeStore as Partial<DedupeStore> | undefined
  if (
    dedupe !== undefined &&
    (dedupe === null ||
      typeof dedupe !== 'object' ||
      typeof dedupe.claim !== 'function' ||
      typeof dedupe.commit !== 'function' ||
      typeof dedupe.release !== 'function')
  ) {
    throw optionError(
      'rabbitmq',
      'dedupeStore',
      dedupe,
      'a DedupeStore with claim, commit and release methods (a store with only has and add cannot ' +
        'claim an id atomically)',
    )
  }
  return {
    url,
    endpoint: connection !== undefined ? 'the given connection' : redactUrl(url),
    connection,
    tls: options.tls,
    exchange: r.string('exchange', 'OMNIBUS_RABBITMQ_EXCHANGE', 'omnibus.events', NAME),
    prefix: r.string('prefix', 'OMNIBUS_RABBITMQ_PREFIX', 'omnibus', NAME),
    queueType: r.oneOf('queueType', 'OMNIBUS_RABBITMQ_QUEUE_TYPE', ['quorum', 'classic'], 'quorum'),
    groupQueueExpiresMs: r.integer(
      'groupQueueExpiresMs',
      'OMNIBUS_RABBITMQ_GROUP_QUEUE_EXPIRES_MS',
      undefined,
      {
        min: 1000,
      },
    ),
    publishWindow: r.integer('publishWindow', 'OMNIBUS_RABBITMQ_PUBLISH_WINDOW', 1000, { min: 1 }),
    publishTimeoutMs: r.integer('publishTimeoutMs', 'OMNIBUS_RABBITMQ_PUBLISH_TIMEOUT_MS', 30_000, {
      min: 1,
    }),
    connectTimeoutMs: r.integer('connectTimeoutMs', 'OMNIBUS_RABBITMQ_CONNECT_TIMEOUT_MS', 5000, { min: 1 }),
    heartbeatSeconds: r.integer('heartbeatSeconds', 'OMNIBUS_RABBITMQ_HEARTBEAT_S', 10, { min: 0 }),
    reconnectMaxDelayMs: r.integer('reconnectMaxDelayMs', 'OMNIBUS_RABBITMQ_RECONNECT_MAX_DELAY_MS', 5000, {
      min: 1,
    }),
    maxPayloadBytes: r.integer('maxPayloadBytes', 'OMNIBUS_RABBITMQ_MAX_PAYLOAD_BYTES', 8 * 1024 * 1024, {
      min: 1024,
    }),
    dedupeStore: dedupe as DedupeStore | undefined,
    source: r.string('source', 'OMNIBUS_SOURCE', undefined),
    logger: options.logger ?? silentLogger,
  }
}
