/**
 * Options of the SQS backend, resolved once at construction by core's `OptionResolver`: explicit
 * option, then the environment variable, then the default. Every bad value is a
 * `ConfigurationError` in the one format, naming the field, the value and the environment variable
 * it came from. Credentials are never echoed.
 */
import type { SQSClient } from '@aws-sdk/client-sqs'
import { ConfigurationError, type Logger } from '@omnibus/core'
import {
  type DedupeStore,
  OptionResolver,
  optionError,
  optionNames,
  rejectUnknownOptions,
  type StringCheck,
} from '@omnibus/core/backend'

/** Static AWS credentials. */
export interface SqsCredentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string
}

/** Options of {@link createSqsBackend}. */
export interface SqsBackendOptions {
  /**
   * SQS-compatible endpoint (ElasticMQ, LocalStack, a VPC endpoint). Unset = the AWS endpoint of `region`.
   * @default undefined
   * Env: `OMNIBUS_SQS_ENDPOINT`
   */
  readonly endpoint?: string
  /**
   * AWS region.
   * @default 'us-east-1'
   * Env: `OMNIBUS_SQS_REGION`, then `AWS_REGION`
   */
  readonly region?: string
  /**
   * Static credentials. Unset = the standard AWS chain (env, profile, SSO, instance role); with a
   * loopback `endpoint` and nothing in the chain's env vars, dummy credentials are used.
   * Never logged.
   * @default undefined
   */
  readonly credentials?: SqsCredentials
  /**
   * A ready client. Used for every call (sends and long polls share its HTTP agent, so size its
   * `maxSockets` above the number of subscriptions); never destroyed by the backend.
   * @default undefined (the backend creates two clients with separate HTTP agents)
   */
  readonly client?: SQSClient
  /**
   * Prefix of every queue the backend creates and discovers; lets applications share an account.
   * Letters, digits, `-`, `_`; at most 20 characters.
   * @default 'omnibus'
   * Env: `OMNIBUS_SQS_QUEUE_PREFIX`
   */
  readonly queuePrefix?: string
  /**
   * Create FIFO queues: per-key order (`MessageGroupId` = partitionKey) and broker-side
   * deduplication of repeated event ids within 5 minutes (`MessageDeduplicationId` = event id).
   * @default false
   * Env: `OMNIBUS_SQS_FIFO` (`true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`)
   */
  readonly fifo?: boolean
  /**
   * How old the publisher's cached queue listing may be: the bound on how long a new
   * subscription takes to be seen by publishers in other processes. `subscribe()` of a new queue
   * waits this long before resolving.
   * @default 1000
   * Env: `OMNIBUS_SQS_DISCOVERY_INTERVAL_MS`
   */
  readonly discoveryIntervalMs?: number
  /**
   * A broadcast queue whose subscriber has not refreshed its `omnibus-alive` tag for this long
   * (the process died without disconnecting) is no longer published to, and is deleted by the
   * next publisher that notices. Subscribers refresh the tag every quarter of it. 0 = never.
   * @default 600000 (10 min)
   * Env: `OMNIBUS_SQS_ORPHAN_AFTER_MS`
   */
  readonly orphanAfterMs?: number
  /**
   * Long-poll wait of one `ReceiveMessage` call, in seconds (0–20).
   * @default 20
   * Env: `OMNIBUS_SQS_WAIT_TIME_SECONDS`
   */
  readonly waitTimeSeconds?: number
  /**
   * Default visibility timeout of received messages (a subscription's `visibilityTimeoutMs`
   * overrides it). Held messages are extended while their handler runs. Whole seconds on the wire.
   * @default 30000
   * Env: `OMNIBUS_SQS_VISIBILITY_TIMEOUT_MS`
   */
  readonly visibilityTimeoutMs?: number
  /**
   * Messages held per subscription (received, not yet acknowledged) beyond its `concurrency`.
   * @default 10
   * Env: `OMNIBUS_SQS_PREFETCH`
   */
  readonly prefetch?: number
  /**
   * Retry delays up to this are waited in the consumer (the message stays leased); longer ones
   * go back to the queue with `ChangeMessageVisibility` (whole seconds).
   * @default 2000
   * Env: `OMNIBUS_SQS_LOCAL_RETRY_MAX_MS`
   */
  readonly localRetryMaxMs?: number
  /**
   * Largest encoded event accepted by `publish` (the message body), in bytes.
   * @default 262144 (256 KiB, the classic SQS limit; AWS now accepts up to 1048576)
   * Env: `OMNIBUS_SQS_MAX_PAYLOAD_BYTES`
   */
  readonly maxPayloadBytes?: number
  /**
   * Sockets of the send client's HTTP agent (sends, deletes, visibility changes). Long polls
   * use a separate agent with one socket per poller, so they never starve sends.
   * @default 50
   * Env: `OMNIBUS_SQS_MAX_SOCKETS`
   */
  readonly maxSockets?: number
  /**
   * Deadline of the connectivity check in `connect()` and `healthCheck()`.
   * @default 5000
   * Env: `OMNIBUS_SQS_CONNECT_TIMEOUT_MS`
   */
  readonly connectTimeoutMs?: number
  /**
   * Default drain timeout of `disconnect()`.
   * @default 10000
   */
  readonly drainTimeoutMs?: number
  /**
   * The exactly-once store: claims and processed-id records shared by every member of a group
   * (Redis, a database), implementing the `DedupeStore` claim protocol atomically across them.
   * SQS keeps no such record, so exactly-once subscriptions are offered only with one.
   * @default undefined (no exactly-once)
   */
  readonly dedupeStore?: DedupeStore
  /**
   * `source` of published events that do not set one.
   * @default 'omnibus:<pid>'
   * Env: `OMNIBUS_SOURCE`
   */
  readonly source?: string
  /**
   * Logger for warnings (dead letters, failed deletes, reconnects).
   * @default warnings and errors to the console
   */
  readonly logger?: Logger
}

/** Options after resolution. */
export interface ResolvedSqsOptions {
  readonly endpoint: string | undefined
  readonly region: string
  readonly credentials: SqsCredentials | undefined
  readonly client: SQSClient | undefined
  readonly queuePrefix: string
  readonly fifo: boolean
  readonly discoveryIntervalMs: number
  readonly orphanAfterMs: number
  readonly waitTimeSeconds: number
  readonly visibilityTimeoutMs: number
  readonly prefetch: number
  readonly localRetryMaxMs: number
  readonly maxPayloadBytes: number
  readonly maxSockets: number
  readonly connectTimeoutMs: number
  readonly drainTimeoutMs: number
  readonly dedupeStore: DedupeStore | undefined
  readonly source: string | undefined
  readonly logger: Logger | undefined
}

type Env = Readonly<Record<string, string | undefined>>

/** The keys of {@link SqsBackendOptions}; any other key is a `ConfigurationError`. */
export const SQS_OPTION_NAMES: readonly string[] = optionNames<SqsBackendOptions>({
  endpoint: true,
  region: true,
  credentials: true,
  client: true,
  queuePrefix: true,
  fifo: true,
  discoveryIntervalMs: true,
  orphanAfterMs: true,
  waitTimeSeconds: true,
  visibilityTimeoutMs: true,
  prefetch: true,
  localRetryMaxMs: true,
  maxPayloadBytes: true,
  maxSockets: true,
  connectTimeoutMs: true,
  drainTimeoutMs: true,
  dedupeStore: true,
  source: true,
  logger: true,
})

/** Query parameters of an `sqs://` URL (see `backendFromUrl`); any other is a `ConfigurationError`. */
export const SQS_URL_PARAMS: readonly string[] = ['region', 'prefix', 'fifo', 'tls']

const ENV = {
  endpoint: 'OMNIBUS_SQS_ENDPOINT',
  region: 'OMNIBUS_SQS_REGION',
  queuePrefix: 'OMNIBUS_SQS_QUEUE_PREFIX',
  fifo: 'OMNIBUS_SQS_FIFO',
  discoveryIntervalMs: 'OMNIBUS_SQS_DISCOVERY_INTERVAL_MS',
  orphanAfterMs: 'OMNIBUS_SQS_ORPHAN_AFTER_MS',
  waitTimeSeconds: 'OMNIBUS_SQS_WAIT_TIME_SECONDS',
  visibilityTimeoutMs: 'OMNIBUS_SQS_VISIBILITY_TIMEOUT_MS',
  prefetch: 'OMNIBUS_SQS_PREFETCH',
  localRetryMaxMs: 'OMNIBUS_SQS_LOCAL_RETRY_MAX_MS',
  maxPayloadBytes: 'OMNIBUS_SQS_MAX_PAYLOAD_BYTES',
  maxSockets: 'OMNIBUS_SQS_MAX_SOCKETS',
  connectTimeoutMs: 'OMNIBUS_SQS_CONNECT_TIMEOUT_MS',
  source: 'OMNIBUS_SOURCE',
} as const

const QUEUE_PREFIX: StringCheck = {
  test: (v) => /^[A-Za-z0-9_-]{1,20}$/.test(v),
  expected: "1-20 letters, digits, '-' or '_'",
}

function envValue(env: Env, name: string): string | undefined {
  const v = env[name]
  return v === undefined || v === '' ? undefined : v
}

function isLoopback(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname
    return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '::1'
  } catch {
    return false
  }
}

const hasMethods = (value: unknown, names: readonly string[]): boolean =>
  value !== null &&
  typeof value === 'object' &&
  names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function')

function checkEndpoint(endpoint: string | undefined, fromEnv: boolean): void {
  if (endpoint === undefined) return
  let url: URL | undefined
  try {
    url = new URL(endpoint)
  } catch {
    url = undefined
  }
  const envVar = fromEnv ? ENV.endpoint : undefined
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw optionError('sqs', 'endpoint', endpoint, 'an http(s) URL such as http://127.0.0.1:9324', envVar)
  }
  if (url.username !== '' || url.password !== '') {
    // The value is not echoed: it holds credentials.
    throw optionError(
      'sqs',
      'endpoint',
      `${url.protocol}//***@${url.host}`,
      'a URL without credentials (pass them in `credentials` or the AWS chain)',
      envVar,
    )
  }
}

/** Resolves and validates options: option → env var → default. */
export function resolveSqsOptions(
  options: SqsBackendOptions = {},
  env: Env = process.env,
): ResolvedSqsOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError('createSqsBackend expects an options object', { backend: 'sqs' })
  }
  rejectUnknownOptions('sqs backend option', options, SQS_OPTION_NAMES, { backend: 'sqs' })
  const r = new OptionResolver('sqs', options as Readonly<Record<string, unknown>>, env)
  const client = options.client
  if (client !== undefined && !hasMethods(client, ['send'])) {
    throw optionError('sqs', 'client', client, 'an SQSClient from @aws-sdk/client-sqs')
  }
  const endpoint = r.string('endpoint', ENV.endpoint, undefined)
  checkEndpoint(endpoint, options.endpoint === undefined)
  const region =
    r.string('region', ENV.region, undefined) ??
    envValue(env, 'AWS_REGION') ??
    envValue(env, 'AWS_DEFAULT_REGION') ??
    'us-east-1'
  let credentials = options.credentials
  if (credentials !== undefined) {
    if (
      credentials === null ||
      typeof credentials !== 'object' ||
      typeof credentials.accessKeyId !== 'string' ||
      typeof credentials.secretAccessKey !== 'string' ||
      credentials.accessKeyId === '' ||
      credentials.secretAccessKey === ''
    ) {
      // The value is not echoed: it holds secrets.
      throw optionError(
        'sqs',
        'credentials',
        'redacted',
        '{ accessKeyId, secretAccessKey, sessionToken? } with non-empty strings',
      )
    }
  } else if (
    endpoint !== undefined &&
    isLoopback(endpoint) &&
    envValue(env, 'AWS_ACCESS_KEY_ID') === undefined &&
    envValue(env, 'AWS_PROFILE') === undefined
  ) {
    // Local SQS-compatible servers accept any signature; the AWS chain would fail without one.
    credentials = { accessKeyId: 'omnibus', secretAccessKey: 'omnibus' }
  }
  const store = options.dedupeStore
  if (store !== undefined && !hasMethods(store, ['claim', 'commit', 'release'])) {
    throw optionError(
      'sqs',
      'dedupeStore',
      store,
      'a DedupeStore shared by every member (claim, commit and release methods)',
    )
  }
  const orphanAfterMs = r.integer('orphanAfterMs', ENV.orphanAfterMs, 600_000, { max: 7 * 86_400_000 })
  if (orphanAfterMs !== 0 && orphanAfterMs < 1000) {
    throw optionError(
      'sqs',
      'orphanAfterMs',
      r.raw('orphanAfterMs', ENV.orphanAfterMs),
      '0 (never) or an integer between 1000 and 604800000',
      options.orphanAfterMs === undefined ? ENV.orphanAfterMs : undefined,
    )
  }
  return {
    endpoint,
    region,
    credentials,
    client,
    queuePrefix: r.string('queuePrefix', ENV.queuePrefix, 'omnibus', QUEUE_PREFIX),
    fifo: r.boolean('fifo', ENV.fifo, false),
    discoveryIntervalMs: r.integer('discoveryIntervalMs', ENV.discoveryIntervalMs, 1000, {
      min: 50,
      max: 600_000,
    }),
    orphanAfterMs,
    waitTimeSeconds: r.integer('waitTimeSeconds', ENV.waitTimeSeconds, 20, { max: 20 }),
    visibilityTimeoutMs: r.integer('visibilityTimeoutMs', ENV.visibilityTimeoutMs, 30_000, {
      min: 1000,
      max: 43_200_000,
    }),
    prefetch: r.integer('prefetch', ENV.prefetch, 10, { max: 1000 }),
    localRetryMaxMs: r.integer('localRetryMaxMs', ENV.localRetryMaxMs, 2000, { max: 43_200_000 }),
    maxPayloadBytes: r.integer('maxPayloadBytes', ENV.maxPayloadBytes, 262_144, {
      min: 1024,
      max: 1_048_576,
    }),
    maxSockets: r.integer('maxSockets', ENV.maxSockets, 50, { min: 1, max: 10_000 }),
    connectTimeoutMs: r.integer('connectTimeoutMs', ENV.connectTimeoutMs, 5000, { min: 100, max: 600_000 }),
    drainTimeoutMs: r.integer('drainTimeoutMs', undefined, 10_000),
    dedupeStore: store,
    source: r.string('source', ENV.source, undefined),
    logger: options.logger,
  }
}
