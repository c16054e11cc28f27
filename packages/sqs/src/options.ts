/**
 * Options of the SQS backend, resolved once at construction: explicit option, then the
 * environment variable, then the default. Every bad value is a `ConfigurationError` naming the
 * field and the value. Credentials are never echoed.
 */
import type { SQSClient } from '@aws-sdk/client-sqs'
import { ConfigurationError, type Logger } from '@omnibus/core'
import {
  type ProcessedIdStore as DedupeStore,
  optionNames,
  rejectUnknownOptions,
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
   * Env: `OMNIBUS_SQS_FIFO` (`true`/`false`)
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
   * Processed-id records of exactly-once subscriptions. The default is per process; give a
   * shared store (Redis, a database) for effectively-once across group members.
   * @default a MemoryDedupeStore per backend
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

function fail(message: string): never {
  throw new ConfigurationError(message, { backend: 'sqs' })
}

function envValue(env: Env, name: string): string | undefined {
  const v = env[name]
  return v === undefined || v === '' ? undefined : v
}

function intOption(
  field: string,
  envName: string | undefined,
  value: unknown,
  env: Env,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  let v: unknown = value
  let from = field
  if (v === undefined && envName !== undefined) {
    const raw = envValue(env, envName)
    if (raw !== undefined) {
      from = `${field} (from ${envName})`
      v = Number(raw)
      if (!Number.isFinite(v as number)) fail(`${from} must be an integer ${min}-${max}, got "${raw}"`)
    }
  }
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${from} must be an integer ${min}-${max}, got ${String(v)}`)
  }
  return v
}

function strOption(field: string, envNames: readonly string[], value: unknown, env: Env): string | undefined {
  if (value !== undefined) {
    if (typeof value !== 'string' || value.length === 0) {
      fail(`${field} must be a non-empty string, got ${typeof value === 'string' ? '""' : typeof value}`)
    }
    return value
  }
  for (const name of envNames) {
    const v = envValue(env, name)
    if (v !== undefined) return v
  }
  return undefined
}

function boolOption(field: string, envName: string, value: unknown, env: Env, fallback: boolean): boolean {
  if (value !== undefined) {
    if (typeof value !== 'boolean') fail(`${field} must be true or false, got ${String(value)}`)
    return value
  }
  const raw = envValue(env, envName)
  if (raw === undefined) return fallback
  if (/^(1|true|yes)$/i.test(raw)) return true
  if (/^(0|false|no)$/i.test(raw)) return false
  return fail(`${field} (from ${envName}) must be true or false, got "${raw}"`)
}

function orphanOption(value: unknown, env: Env): number {
  const v = intOption('orphanAfterMs', 'OMNIBUS_SQS_ORPHAN_AFTER_MS', value, env, 600_000, 0, 7 * 86_400_000)
  if (v !== 0 && v < 1000) fail(`orphanAfterMs must be 0 (never) or at least 1000, got ${v}`)
  return v
}

function isLoopback(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname
    return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host === '::1'
  } catch {
    return false
  }
}

/** Resolves and validates options: option → env var → default. */
export function resolveSqsOptions(
  options: SqsBackendOptions = {},
  env: Env = process.env,
): ResolvedSqsOptions {
  if (options === null || typeof options !== 'object') fail('createSqsBackend expects an options object')
  rejectUnknownOptions('sqs backend option', options, SQS_OPTION_NAMES, { backend: 'sqs' })
  const client = options.client
  if (client !== undefined) {
    if (
      client === null ||
      typeof client !== 'object' ||
      typeof (client as { send?: unknown }).send !== 'function'
    ) {
      fail('client must be an SQSClient from @aws-sdk/client-sqs')
    }
  }
  const endpoint = strOption('endpoint', ['OMNIBUS_SQS_ENDPOINT'], options.endpoint, env)
  if (endpoint !== undefined) {
    let url: URL | undefined
    try {
      url = new URL(endpoint)
    } catch {
      url = undefined
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      fail(`endpoint must be an http(s) URL such as http://127.0.0.1:9324, got "${endpoint}"`)
    }
    if (url.username !== '' || url.password !== '') {
      fail('endpoint must not carry credentials: pass them in `credentials` or the AWS chain')
    }
  }
  const region = strOption(
    'region',
    ['OMNIBUS_SQS_REGION', 'AWS_REGION', 'AWS_DEFAULT_REGION'],
    options.region,
    env,
  )
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
      fail('credentials must be { accessKeyId, secretAccessKey, sessionToken? } with non-empty strings')
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
  const queuePrefix =
    strOption('queuePrefix', ['OMNIBUS_SQS_QUEUE_PREFIX'], options.queuePrefix, env) ?? 'omnibus'
  if (!/^[A-Za-z0-9_-]{1,20}$/.test(queuePrefix)) {
    fail(`queuePrefix must be 1-20 letters, digits, '-' or '_', got "${queuePrefix}"`)
  }
  const source = strOption('source', ['OMNIBUS_SOURCE'], options.source, env)
  const store = options.dedupeStore
  if (
    store !== undefined &&
    (store === null || typeof store.has !== 'function' || typeof store.add !== 'function')
  ) {
    fail('dedupeStore must have has(group, id) and add(group, id) methods')
  }
  return {
    endpoint,
    region: region ?? 'us-east-1',
    credentials,
    client,
    queuePrefix,
    fifo: boolOption('fifo', 'OMNIBUS_SQS_FIFO', options.fifo, env, false),
    discoveryIntervalMs: intOption(
      'discoveryIntervalMs',
      'OMNIBUS_SQS_DISCOVERY_INTERVAL_MS',
      options.discoveryIntervalMs,
      env,
      1000,
      50,
      600_000,
    ),
    orphanAfterMs: orphanOption(options.orphanAfterMs, env),
    waitTimeSeconds: intOption(
      'waitTimeSeconds',
      'OMNIBUS_SQS_WAIT_TIME_SECONDS',
      options.waitTimeSeconds,
      env,
      20,
      0,
      20,
    ),
    visibilityTimeoutMs: intOption(
      'visibilityTimeoutMs',
      'OMNIBUS_SQS_VISIBILITY_TIMEOUT_MS',
      options.visibilityTimeoutMs,
      env,
      30_000,
      1000,
      43_200_000,
    ),
    prefetch: intOption('prefetch', 'OMNIBUS_SQS_PREFETCH', options.prefetch, env, 10, 0, 1000),
    localRetryMaxMs: intOption(
      'localRetryMaxMs',
      'OMNIBUS_SQS_LOCAL_RETRY_MAX_MS',
      options.localRetryMaxMs,
      env,
      2000,
      0,
      43_200_000,
    ),
    maxPayloadBytes: intOption(
      'maxPayloadBytes',
      'OMNIBUS_SQS_MAX_PAYLOAD_BYTES',
      options.maxPayloadBytes,
      env,
      262_144,
      1024,
      1_048_576,
    ),
    maxSockets: intOption('maxSockets', 'OMNIBUS_SQS_MAX_SOCKETS', options.maxSockets, env, 50, 1, 10_000),
    connectTimeoutMs: intOption(
      'connectTimeoutMs',
      'OMNIBUS_SQS_CONNECT_TIMEOUT_MS',
      options.connectTimeoutMs,
      env,
      5000,
      100,
      600_000,
    ),
    drainTimeoutMs: intOption('drainTimeoutMs', undefined, options.drainTimeoutMs, env, 10_000, 0),
    dedupeStore: store,
    source,
    logger: options.logger,
  }
}
