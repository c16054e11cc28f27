/**
 * The Redis backend object: connection management, the publish path (one pipeline per tick)
 * and the topic registry. Subscriptions live in `consumer.ts` (the kernel's adapter in
 * `adapter.ts`, the read loop in `reader.ts`, exactly-once records in `dedupe.ts`).
 */

import { createHash } from 'node:crypto'
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  ConnectionError,
  compilePattern,
  consoleLogger,
  createEvent,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  type Logger,
  NotConnectedError,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
} from '@omnibus/core'
import {
  checkDelay,
  checkDrainTimeout,
  checkEnsureGroup,
  encodeEventChecked,
  holdProcess,
  instrumentBackend,
  isLiteralPattern,
  type ProcessHold,
  resolveSubscribeOptions,
  settlesWithin,
  timedHealthCheck,
} from '@omnibus/core/backend'
import { Redis, type RedisOptions } from 'ioredis'
import { type Consumer, type ConsumerHost, startConsumer } from './consumer.ts'
import { Delayer } from './delay.ts'
import { createStreamScanner } from './discovery.ts'
import { classifyError } from './errors.ts'
import { EVENT_FIELD, type KeyMap, keyMap, startIdAt } from './keys.ts'
import {
  clusterRefused,
  describeEndpoint,
  type RedisBackendOptions,
  type ResolvedRedisOptions,
  resolveRedisOptions,
} from './options.ts'

/** The Redis `EventBackend`, with a few Redis-specific extras. */
export interface RedisBackend extends EventBackend {
  /** Key names this backend uses (prefix, streams, registry). */
  readonly keys: KeyMap
  /** Endpoint and settings, without credentials. */
  describe(): string
  /**
   * The ioredis connection the backend sends its non-blocking commands on (for inspection,
   * trimming or tests). Throws `NotConnectedError` before `connect()`.
   */
  commandClient(): Redis
}

interface QueuedAdd {
  readonly topic: string
  readonly id: string
  readonly json: string
  readonly resolve: (receipt: PublishReceipt) => void
  readonly reject: (error: Error) => void
}

/**
 * Appends a chunk of entries: KEYS = the chunk's streams, ARGV = [maxLen or '', then the envelope
 * JSON of each entry when there is one stream, or (key index, JSON) pairs when there are several]. Returns one stream id per entry, or '!<error>' for an entry Redis refused.
 * One script call per chunk instead of one XADD per event cuts the client's work per event several
 * times over (ioredis builds one command, not hundreds); the chunk bound keeps each call short.
 */
const APPEND_SCRIPT = `local maxlen = ARGV[1]
local out = {}
local single = #KEYS == 1
local step = single and 1 or 2
for i = 2, #ARGV, step do
  local key, doc
  if single then key, doc = KEYS[1], ARGV[i] else key, doc = KEYS[tonumber(ARGV[i])], ARGV[i + 1] end
  local id
  if maxlen == '' then
    id = redis.pcall('XADD', key, '*', '${EVENT_FIELD}', doc)
  else
    id = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, '*', '${EVENT_FIELD}', doc)
  end
  if type(id) == 'table' and id.err then out[#out + 1] = '!' .. id.err else out[#out + 1] = id end
end
return out`
const APPEND_SHA = createHash('sha1').update(APPEND_SCRIPT).digest('hex')
/** Longest wait of `disconnect()` for answers of the server after the drain. */
const CLOSE_WAIT_MS = 1_000
/** Entries per script call: a few hundred microseconds of server time at most. */
const APPEND_CHUNK = 256

/** An encoded event on its way to the server. */
interface Prepared {
  readonly topic: string
  readonly id: string
  readonly json: string
  /** Set for a delayed event: it goes to the delayed set, not its stream (see delay.ts). */
  readonly deliverAt: number | undefined
}

/** Creates the command client from resolved options (not connected). */
function newClient(cfg: ResolvedRedisOptions): Redis {
  const opts: RedisOptions = {
    ...cfg.redisOptions,
    lazyConnect: true,
    connectTimeout: cfg.connectTimeoutMs,
    // Reconnect forever with a capped backoff; commands wait in the offline queue meanwhile and
    // fail after maxRetriesPerRequest reconnect attempts with a retryable ConnectionError.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
  }
  if (cfg.username !== undefined) opts.username = cfg.username
  if (cfg.password !== undefined) opts.password = cfg.password
  if (cfg.tls !== undefined) opts.tls = cfg.tls
  if (cfg.redisOptions.sentinels !== undefined) return new Redis(opts)
  return new Redis(cfg.url, opts)
}

function waitReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    const onReady = () => finish()
    const onError = (err: Error) => finish(err)
    const onEnd = () => finish(new Error('connection closed'))
    function finish(err?: Error) {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onError)
      client.off('end', onEnd)
      if (err === undefined) resolve()
      else reject(err)
    }
    client.on('ready', onReady)
    client.on('error', onError)
    client.on('end', onEnd)
    if (client.status === 'wait') client.connect().catch(() => {})
  })
}

function parseVersion(info: string): [number, number] {
  const m = /redis_version:(\d+)\.(\d+)/.exec(info)
  return m === null ? [0, 0] : [Number(m[1]), Number(m[2])]
}

/**
 * Creates a Redis Streams backend (not connected; call `connect()`). Options are validated now:
 * a bad value throws `ConfigurationError` naming the field.
 */
export function createRedisBackend(options: RedisBackendOptions = {}): RedisBackend {
  const cfg = resolveRedisOptions(options)
  const keys = keyMap(cfg.keyPrefix)
  const logger: Logger = cfg.logger ?? consoleLogger
  const endpoint = describeEndpoint(cfg)
  const capabilities: BackendCapabilities = {
    guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
    persistent: true,
    crossProcess: true,
    groups: true,
    orderedPerKey: false,
    replay: true,
    maxPayloadBytes: cfg.maxPayloadBytes,
    networked: true,
    wildcardDiscoveryMs: cfg.discoveryIntervalMs + 1_000,
    // Held in a sorted set until due (delay.ts): no limit of its own beyond what a Date can hold.
    delay: { maxDelayMs: Number.MAX_SAFE_INTEGER },
  }

  let cmd: Redis | undefined
  let owned = false
  let connected = false
  let connecting: Promise<void> | undefined
  let disconnecting: Promise<void> | undefined
  let notifier: Redis | undefined
  let notifierReady: Promise<void> | undefined
  let rescanTimer: NodeJS.Timeout | undefined
  // Keeps the process alive from connect() to disconnect(), also while ioredis reconnects after a
  // dropped connection (see holdProcess in core).
  let hold: ProcessHold | undefined
  let lastTopicCount = -1
  let rescanning = false
  const scanner = createStreamScanner(keys, logger)
  const delayer = new Delayer({
    keys,
    logger,
    command: () => (connected ? cmd : undefined),
    maxLen: cfg.maxLen,
  })
  const knownTopics = new Set<string>()
  const consumers = new Set<Consumer>()
  let queue: QueuedAdd[] = []
  let flushScheduled = false
  const inflightPublishes = new Set<Promise<unknown>>()
  const readers = new Set<Redis>()
  const onCmdError = (err: Error) => logger.debug('redis connection error', { error: err.message })
  /** Reconnections of the command connection; a health check spanning one reports it. */
  let reconnects = 0
  const onCmdReady = () => {
    reconnects++
    // After a reconnect the registry may have been lost (server without persistence): announce
    // topics again on their next publish.
    knownTopics.clear()
  }

  function client(action: string): Redis {
    if (!connected || cmd === undefined) throw new NotConnectedError('redis', action)
    return cmd
  }

  /** Sends `chunks` as script calls plus the registry writes in one pipeline; retries NOSCRIPT with EVAL. */
  function sendChunks(
    c: Redis,
    chunks: QueuedAdd[][],
    announced: readonly string[],
    withBody: boolean,
  ): Promise<void> {
    const p = c.pipeline()
    const maxLen = cfg.maxLen === undefined ? '' : String(cfg.maxLen)
    for (const chunk of chunks) {
      const streamKeys: string[] = []
      const args: string[] = [maxLen]
      const first = (chunk[0] as QueuedAdd).topic
      if (chunk.every((it) => it.topic === first)) {
        streamKeys.push(keys.stream(first))
        for (const it of chunk) args.push(it.json)
      } else {
        const slot = new Map<string, number>()
        for (const it of chunk) {
          let k = slot.get(it.topic)
          if (k === undefined) {
            streamKeys.push(keys.stream(it.topic))
            k = streamKeys.length
            slot.set(it.topic, k)
          }
          args.push(String(k), it.json)
        }
      }
      if (withBody) p.eval(APPEND_SCRIPT, streamKeys.length, ...streamKeys, ...args)
      else p.evalsha(APPEND_SHA, streamKeys.length, ...streamKeys, ...args)
    }
    // The registry write follows the entries in the same round trip, so a subscriber that learns
    // of a topic finds its first entry already in the stream.
    for (const t of announced) {
      p.sadd(keys.topics, t)
      p.publish(keys.topicsChannel, t)
    }
    return p.exec().then(
      (results) => {
        const missingScript: QueuedAdd[][] = []
        for (let i = 0; i < chunks.length; i++) {
          const chunk = chunks[i] as QueuedAdd[]
          const r = results?.[i]
          if (r !== undefined && r[0] !== null && /NOSCRIPT/.test((r[0] as Error).message) && !withBody) {
            missingScript.push(chunk)
            continue
          }
          const ids =
            r !== undefined && r[0] === null && Array.isArray(r[1]) ? (r[1] as unknown[]) : undefined
          for (let j = 0; j < chunk.length; j++) {
            const it = chunk[j] as QueuedAdd
            const id = ids?.[j]
            if (ids === undefined || id === undefined) {
              it.reject(classifyError(r?.[0] ?? new Error('no reply for XADD'), 'publish'))
            } else if (typeof id === 'string' && id.startsWith('!')) {
              it.reject(classifyError(new Error(id.slice(1)), 'publish'))
            } else {
              it.resolve({ id: it.id, topic: it.topic, position: String(id) })
            }
          }
        }
        for (let j = 0; j < announced.length; j++) {
          const r = results?.[chunks.length + 2 * j]
          if (r !== undefined && r[0] === null) knownTopics.add(announced[j] as string)
        }
        // The server lost its script cache (restart, SCRIPT FLUSH): nothing of those chunks ran,
        // so sending them again with the script body cannot duplicate.
        if (missingScript.length > 0) return sendChunks(c, missingScript, [], true)
        return undefined
      },
      (err: unknown) => {
        const e = classifyError(err, 'publish')
        for (const chunk of chunks) for (const it of chunk) it.reject(e)
      },
    )
  }

  function flush(): void {
    flushScheduled = false
    const items = queue
    queue = []
    if (items.length === 0) return
    if (cmd === undefined) {
      for (const it of items) it.reject(new NotConnectedError('redis', 'publish'))
      return
    }
    const chunks: QueuedAdd[][] = []
    for (let i = 0; i < items.length; i += APPEND_CHUNK) chunks.push(items.slice(i, i + APPEND_CHUNK))
    const announced: string[] = []
    for (const it of items) {
      if (!knownTopics.has(it.topic) && !announced.includes(it.topic)) announced.push(it.topic)
    }
    const run = sendChunks(cmd, chunks, announced, false).catch((err: unknown) => {
      const e = classifyError(err, 'publish')
      for (const it of items) it.reject(e)
    })
    inflightPublishes.add(run)
    void run.finally(() => inflightPublishes.delete(run))
  }

  function enqueue(p: Prepared): Promise<PublishReceipt> {
    if (p.deliverAt !== undefined) return delayer.schedule(p.topic, p.id, p.json, p.deliverAt)
    return new Promise<PublishReceipt>((resolve, reject) => {
      queue.push({ topic: p.topic, id: p.id, json: p.json, resolve, reject })
      // A full chunk goes out at once: the server appends it while the caller encodes the next.
      if (queue.length >= APPEND_CHUNK) flush()
      else if (!flushScheduled) {
        flushScheduled = true
        process.nextTick(flush)
      }
    })
  }

  const defaults = cfg.source === undefined ? {} : { source: cfg.source }

  function prepare(input: EventInput): Prepared {
    const event = createEvent(input, defaults)
    checkDelay(event, capabilities.delay, 'redis')
    const { json } = encodeEventChecked(event, cfg.maxPayloadBytes, 'redis')
    return { topic: event.topic, id: event.id, json, deliverAt: event.deliverAt }
  }

  async function ensureNotifier(): Promise<void> {
    if (notifierReady !== undefined) return notifierReady
    const c = client('subscribe')
    const n = c.duplicate({ lazyConnect: true, maxRetriesPerRequest: null, enableAutoPipelining: false })
    notifier = n
    n.on('error', (err: Error) => logger.debug('redis notifier error', { error: err.message }))
    n.on('message', (channel: string, message: string) => {
      if (channel === delayer.dk.channel) delayer.announced(Number(message))
      else announce(message)
    })
    const ready = (async () => {
      await waitReady(n, cfg.connectTimeoutMs)
      await n.subscribe(keys.topicsChannel, delayer.dk.channel)
    })()
    notifierReady = ready
    try {
      await ready
    } catch (err) {
      // Let the next wildcard subscribe try again instead of failing forever.
      if (notifierReady === ready) {
        notifierReady = undefined
        notifier = undefined
      }
      n.disconnect()
      throw classifyError(err, 'subscribe')
    }
    if (rescanTimer === undefined) {
      rescanTimer = setInterval(() => void rescan(), cfg.discoveryIntervalMs)
      rescanTimer.unref()
    }
  }

  function announce(topic: string): void {
    for (const c of consumers) if (c.wildcard && c.matches(topic)) c.addTopic(topic)
  }

  async function rescan(): Promise<void> {
    const c = cmd
    if (rescanning || c === undefined || c.status !== 'ready' || ![...consumers].some((x) => x.wildcard))
      return
    rescanning = true
    try {
      const count = Number(await c.scard(keys.topics))
      if (count !== lastTopicCount) {
        const topics = await c.smembers(keys.topics)
        lastTopicCount = count
        for (const t of topics) announce(t)
      }
    } catch (err) {
      logger.debug('topic registry rescan failed', { error: (err as Error).message })
    }
    // Streams written by producers that keep no registry (see discovery.ts).
    try {
      for (const t of await scanner.round(c)) announce(t)
    } catch (err) {
      logger.debug('stream scan failed', { error: (err as Error).message })
    } finally {
      rescanning = false
    }
  }

  /** Groups this instance has declared (`ensureGroup`), as `group NUL pattern`. */
  const ensuredGroups = new Set<string>()

  async function serverTimeMs(): Promise<number> {
    const [sec, usec] = (await client('subscribe').time()) as [string, string] | [number, number]
    return Number(sec) * 1000 + Math.floor(Number(usec) / 1000)
  }

  const host: ConsumerHost = {
    cfg,
    keys,
    logger,
    command: () => client('subscribe'),
    newReader: async () => {
      const r = client('subscribe').duplicate({
        lazyConnect: true,
        maxRetriesPerRequest: null,
        enableAutoPipelining: false,
        enableOfflineQueue: true,
      })
      r.on('error', (err: Error) => logger.debug('redis reader error', { error: err.message }))
      readers.add(r)
      try {
        await waitReady(r, cfg.connectTimeoutMs)
      } catch (err) {
        readers.delete(r)
        r.disconnect()
        throw classifyError(err, 'subscribe')
      }
      return r
    },
    releaseReader: (r) => {
      readers.delete(r)
      r.disconnect()
    },
    // The kernel logs every dead letter with its reason; the stream keeps it whether or not
    // anyone subscribes to the dead-letter topic yet.
    publishDeadLetter: (input) => enqueue(prepare(input)),
    removeConsumer: (c) => {
      consumers.delete(c)
    },
  }

  const backend: RedisBackend = {
    name: 'redis',
    capabilities,
    keys,
    get isConnected() {
      return connected
    },

    commandClient() {
      return client('use the command client')
    },

    describe() {
      return `redis ${endpoint} prefix=${JSON.stringify(cfg.keyPrefix)}${cfg.maxLen === undefined ? '' : ` maxLen~${cfg.maxLen}`}${cfg.client === undefined ? '' : ' (caller-owned client)'}`
    },

    connect() {
      if (connected) return Promise.resolve()
      if (connecting !== undefined) return connecting
      connecting = (async () => {
        if (disconnecting !== undefined) await disconnecting
        const c = cfg.client ?? newClient(cfg)
        owned = cfg.client === undefined
        c.on('error', onCmdError)
        try {
          await waitReady(c, cfg.connectTimeoutMs)
          const info = String(await c.info('server'))
          const [major, minor] = parseVersion(info)
          if (major < 6 || (major === 6 && minor < 2)) {
            throw new ConfigurationError(
              `Redis ${major}.${minor} at ${endpoint} is too old: the backend needs Redis >= 6.2 (XAUTOCLAIM)`,
              { backend: 'redis', code: 'SERVER_TOO_OLD' },
            )
          }
          if (/redis_mode:cluster/.test(info)) throw clusterRefused()
        } catch (err) {
          c.off('error', onCmdError)
          if (owned) c.disconnect()
          const e = classifyError(err, 'connect', endpoint)
          if (e instanceof ConnectionError) {
            throw new ConnectionError(`cannot connect to Redis at ${endpoint}: ${e.message}`, {
              backend: 'redis',
              code: e.code,
              retryable: e.retryable,
              cause: err,
            })
          }
          throw e
        }
        c.on('ready', onCmdReady)
        cmd = c
        connected = true
        hold = holdProcess()
      })().finally(() => {
        connecting = undefined
      })
      return connecting
    },

    disconnect(opts = {}) {
      if (disconnecting !== undefined) return disconnecting
      if (!connected && connecting === undefined) return Promise.resolve()
      let drainTimeoutMs: number
      try {
        drainTimeoutMs = checkDrainTimeout(opts.drainTimeoutMs ?? cfg.drainTimeoutMs, 'redis')
      } catch (error) {
        return Promise.reject(error)
      }
      disconnecting = (async () => {
        if (connecting !== undefined) await connecting.catch(() => {})
        await Promise.all([...consumers].map((c) => c.close(drainTimeoutMs)))
        if (flushScheduled) flush()
        // Publishes already sent are answered at once by a server that is there; one that is away
        // would hold disconnect for ioredis's reconnect attempts.
        const closeBy = Date.now() + CLOSE_WAIT_MS
        await settlesWithin(Promise.allSettled([...inflightPublishes]), CLOSE_WAIT_MS)
        delayer.stop()
        await settlesWithin(delayer.settled(), Math.max(0, closeBy - Date.now()))
        connected = false
        if (rescanTimer !== undefined) clearInterval(rescanTimer)
        rescanTimer = undefined
        for (const r of readers) r.disconnect()
        readers.clear()
        if (notifier !== undefined) notifier.disconnect()
        notifier = undefined
        notifierReady = undefined
        lastTopicCount = -1
        scanner.reset()
        const c = cmd
        cmd = undefined
        if (c !== undefined) {
          c.off('error', onCmdError)
          c.off('ready', onCmdReady)
          if (owned) {
            const quit = c.quit().catch(() => c.disconnect())
            if (!(await settlesWithin(quit, Math.max(0, closeBy - Date.now())))) c.disconnect()
          }
        }
        knownTopics.clear()
      })().finally(() => {
        disconnecting = undefined
        hold?.release()
        hold = undefined
      })
      return disconnecting
    },

    healthCheck(): Promise<HealthStatus> {
      return timedHealthCheck(
        'redis',
        async () => {
          const c = cmd
          if (!connected || c === undefined) throw new Error('not connected')
          if (c.status !== 'ready') throw new Error(`connection to ${endpoint} is ${c.status}`)
          const epoch = reconnects
          await c.ping()
          // The PING was resent after a reconnect: the server was away during the check.
          if (reconnects !== epoch) {
            throw new Error(`the connection to ${endpoint} was lost and re-established during the check`)
          }
          return `PING ${endpoint}`
        },
        Math.min(cfg.connectTimeoutMs, 2_000),
      )
    },

    publish(input) {
      // Not async: the receipt promise of the pipeline is handed out as is, one hop shorter.
      try {
        client('publish')
        return enqueue(prepare(input))
      } catch (error) {
        return Promise.reject(error)
      }
    },

    async publishBatch(inputs) {
      client('publishBatch')
      if (!Array.isArray(inputs)) throw new ConfigurationError('publishBatch expects an array of events')
      const results: BatchEntryResult[] = new Array(inputs.length)
      const waits: Promise<void>[] = []
      // Every valid entry is queued in this tick, so the whole batch leaves in one pipeline.
      for (let index = 0; index < inputs.length; index++) {
        try {
          waits.push(
            enqueue(prepare(inputs[index] as EventInput)).then(
              (receipt) => {
                results[index] = { ok: true, index, receipt }
              },
              (error: Error) => {
                results[index] = { ok: false, index, error }
              },
            ),
          )
        } catch (error) {
          results[index] = { ok: false, index, error: error as Error }
        }
      }
      await Promise.all(waits)
      const succeeded = results.filter((r) => r.ok).length
      const receipt: BatchReceipt = { results, succeeded, failed: results.length - succeeded }
      return receipt
    },

    async ensureGroup(pattern: string, group: string): Promise<void> {
      checkEnsureGroup(backend, pattern, group)
      const c = client('ensureGroup')
      const key = `${group}\u0000${pattern}`
      if (ensuredGroups.has(key)) return
      try {
        // The first declaration wins: a later one must not move the start of events already waiting.
        await c.hsetnx(keys.groupStart(group), pattern, String(await serverTimeMs()))
        if (isLiteralPattern(pattern)) {
          await c
            .call('XGROUP', 'CREATE', keys.stream(pattern), group, '$', 'MKSTREAM')
            .catch((err: Error) => {
              if (!/BUSYGROUP/.test(err.message)) throw err
            })
        }
      } catch (err) {
        throw classifyError(err, 'subscribe')
      }
      ensuredGroups.add(key)
    },

    async subscribe<T = unknown>(
      pattern: string,
      handler: EventHandler<T>,
      opts?: SubscribeOptions,
    ): Promise<Subscription> {
      client('subscribe')
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      const wildcard = !isLiteralPattern(pattern)
      const matches = compilePattern(pattern)
      if (wildcard) await ensureNotifier()
      // Delayed events are moved into the streams by every instance that subscribes; the notifier
      // hears of earlier due times (a literal subscription can do without it: the mover also polls).
      else void ensureNotifier().catch(() => {})
      delayer.start()
      // A group declared by ensureGroup starts, in every stream it is not on yet, where it was declared.
      const declared =
        resolved.group === undefined || resolved.from === 'earliest'
          ? null
          : await client('subscribe').hget(keys.groupStart(resolved.group), pattern)
      const startId =
        resolved.from === 'earliest'
          ? '0-0'
          : startIdAt(declared === null ? await serverTimeMs() : Number(declared))
      const consumer = startConsumer(host, {
        resolved,
        handler: handler as EventHandler,
        wildcard,
        matches,
        startId,
        startAtEnd: resolved.from !== 'earliest' && declared === null,
      })
      consumers.add(consumer)
      try {
        const initial = wildcard
          ? [...new Set([...(await client('subscribe').smembers(keys.topics)), ...scanner.topics])].filter(
              (t) => matches(t),
            )
          : [pattern]
        await consumer.start(initial)
      } catch (err) {
        await consumer.close(0)
        throw classifyError(err, 'subscribe')
      }
      return consumer.subscription
    },
  }
  return instrumentBackend(backend)
}

/**
 * Creates a backend from a `redis://` or `rediss://` URL (used by `createBackend` of the core
 * registry). Query parameters `keyPrefix` and `maxLen` are read, `options` override them, and
 * any other parameter is a `ConfigurationError` (see the `url` option).
 */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): RedisBackend {
  return createRedisBackend({ ...options, url: url.toString() } as RedisBackendOptions)
}
