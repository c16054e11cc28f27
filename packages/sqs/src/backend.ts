/**
 * The SQS backend object: clients, the publisher's queue directory and batch sender, and one
 * {@link Consumer} per subscription. See the package README for the routing design.
 */
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import {
  CreateQueueCommand,
  DeleteQueueCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  SQSClient,
  type SQSClientConfig,
  TagQueueCommand,
} from '@aws-sdk/client-sqs'
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  ConfigurationError,
  ConnectionError,
  consoleLogger,
  createEvent,
  DEAD_LETTER_GROUP,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  NotConnectedError,
  type OmnibusEvent,
  PayloadTooLargeError,
  PublishError,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
  validateTopic,
} from '@omnibus/core'
import {
  checkDelay,
  checkDrainTimeout,
  checkEnsureGroup,
  encodeEventChecked,
  holdProcess,
  instrumentBackend,
  optionError,
  type ProcessHold,
  parseBoolean,
  rejectUnknownUrlParams,
  resolveSubscribeOptions,
  timedHealthCheck,
} from '@omnibus/core/backend'
import { Consumer } from './consumer.ts'
import { delaySecondsUntil, FIFO_DELAY, STANDARD_DELAY } from './delay.ts'
import {
  broadcastQueueName,
  deduplicationId,
  groupQueueName,
  isFifoQueue,
  messageGroupId,
  QUEUE_TAGS,
  QueueDirectory,
  type QueueTarget,
} from './directory.ts'
import { classifyError, isQueueMissing } from './errors.ts'
import {
  type ResolvedSqsOptions,
  resolveSqsOptions,
  SQS_URL_PARAMS,
  type SqsBackendOptions,
} from './options.ts'
import { BatchSender, type OutgoingMessage, QUEUE_GONE } from './sender.ts'

/** The SQS backend: an `EventBackend` plus what it knows about its endpoint. */
export interface SqsBackend extends EventBackend {
  readonly name: 'sqs'
  /** Where the backend points, for logs: the endpoint or the AWS region. Never holds secrets. */
  describe(): string
  /**
   * Writes `body` as it is (no envelope, no checks beyond the size limit) to every queue whose
   * pattern matches `topic`, for bridging foreign producers that already write CloudEvents.
   * Consumers dead-letter bodies that are not valid envelopes. Resolves with the number of queues
   * written.
   */
  publishRaw(topic: string, body: string | Uint8Array): Promise<number>
  /**
   * Deletes every queue under the queue prefix, durable group queues included, with the messages
   * they hold. For tearing down test and staging environments. Resolves with the number deleted.
   */
  deleteAllQueues(): Promise<number>
}

interface Clients {
  readonly control: SQSClient
  readonly receive: SQSClient
  readonly owned: boolean
}

/** Request size limit of one `SendMessageBatch` (the sum of its bodies). */
const BATCH_BYTES = 262_144

function describeEndpoint(o: ResolvedSqsOptions): string {
  if (o.endpoint !== undefined) {
    const u = new URL(o.endpoint)
    return `SQS at ${u.protocol}//${u.host}`
  }
  if (o.client !== undefined) return 'SQS (the given client)'
  return `SQS in ${o.region}`
}

function makeClients(o: ResolvedSqsOptions): Clients {
  if (o.client !== undefined) return { control: o.client, receive: o.client, owned: false }
  const base: SQSClientConfig = {
    region: o.region,
    maxAttempts: 3,
    ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
    ...(o.credentials === undefined ? {} : { credentials: o.credentials }),
  }
  const agentOptions = { keepAlive: true, maxSockets: o.maxSockets }
  const control = new SQSClient({
    ...base,
    requestHandler: {
      httpAgent: new http.Agent(agentOptions),
      httpsAgent: new https.Agent(agentOptions),
      connectionTimeout: o.connectTimeoutMs,
      requestTimeout: 30_000,
    },
  })
  // Long polls hold a socket for up to 20 s each: they get an agent of their own, unbounded, so
  // a subscription never waits on sends for a socket and sends never wait on polls.
  const pollAgent = { keepAlive: true, maxSockets: Number.POSITIVE_INFINITY }
  const receive = new SQSClient({
    ...base,
    requestHandler: {
      httpAgent: new http.Agent(pollAgent),
      httpsAgent: new https.Agent(pollAgent),
      connectionTimeout: o.connectTimeoutMs,
      requestTimeout: (o.waitTimeSeconds + 10) * 1000,
    },
  })
  return { control, receive, owned: true }
}

/**
 * Creates an SQS backend (not connected). Options follow option → env var → default; see
 * {@link SqsBackendOptions}. Throws `ConfigurationError` for invalid options.
 */
export function createSqsBackend(options: SqsBackendOptions = {}): SqsBackend {
  const o = resolveSqsOptions(options)
  const logger = o.logger ?? consoleLogger
  const where = describeEndpoint(o)
  const capabilities: BackendCapabilities = {
    // SQS keeps no record of processed ids: exactly-once needs a store every member shares.
    guarantees:
      o.dedupeStore === undefined
        ? ['at-most-once', 'at-least-once']
        : ['at-most-once', 'at-least-once', 'exactly-once'],
    persistent: true,
    crossProcess: true,
    groups: true,
    orderedPerKey: o.fifo,
    replay: false,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: true,
    wildcardDiscoveryMs: o.discoveryIntervalMs,
    // Standard queues hide a delayed message with DelaySeconds and re-sends; FIFO queues take no
    // per-message delay, so a delivery before its time is hidden by a visibility change (delay.ts).
    delay: o.fifo ? FIFO_DELAY : STANDARD_DELAY,
  }

  let clients: Clients | undefined
  let directory: QueueDirectory | undefined
  let sender: BatchSender | undefined
  let connecting: Promise<void> | undefined
  let disconnecting: Promise<void> | undefined
  const consumers = new Set<Consumer>()
  let aliveTimer: NodeJS.Timeout | undefined
  // HTTP has no connection that lasts: this handle is what keeps the process alive from connect()
  // to disconnect(), as a broker socket does on the other backends (see holdProcess in core).
  let hold: ProcessHold | undefined
  const inFlightPublishes = new Set<Promise<unknown>>()

  function requireConnected(
    action: string,
    internal = false,
  ): { clients: Clients; directory: QueueDirectory; sender: BatchSender } {
    // Dead letters of draining subscriptions still go out while disconnect() runs.
    if (
      clients === undefined ||
      directory === undefined ||
      sender === undefined ||
      (disconnecting !== undefined && !internal)
    ) {
      throw new NotConnectedError('sqs', action)
    }
    return { clients, directory, sender }
  }

  async function probe(client: SQSClient): Promise<number> {
    const started = Date.now()
    await client.send(new ListQueuesCommand({ QueueNamePrefix: `${o.queuePrefix}-`, MaxResults: 1 }), {
      abortSignal: AbortSignal.timeout(o.connectTimeoutMs),
    })
    return Date.now() - started
  }

  async function doConnect(): Promise<void> {
    const c = makeClients(o)
    try {
      await probe(c.control)
    } catch (error) {
      if (c.owned) {
        c.control.destroy()
        c.receive.destroy()
      }
      const e = classifyError(error, 'connect', where)
      const aborted = (error as { name?: string })?.name === 'AbortError'
      throw new ConnectionError(
        aborted
          ? `cannot connect to ${where}: no answer within ${o.connectTimeoutMs} ms (connectTimeoutMs)`
          : `cannot connect to ${where}: ${e.message}`,
        { backend: 'sqs', code: e.code, retryable: e.retryable || aborted, cause: error },
      )
    }
    if (disconnecting !== undefined) {
      // disconnect() was called while connecting: do not leave clients behind.
      if (c.owned) {
        c.control.destroy()
        c.receive.destroy()
      }
      throw new NotConnectedError('sqs', 'connect (disconnect() was called meanwhile)')
    }
    clients = c
    directory = new QueueDirectory(c.control, o.queuePrefix, o.discoveryIntervalMs, logger, where, {
      orphanAfterMs: o.orphanAfterMs,
      deleteQueue: (url) => deleteQueue(url),
    })
    if (o.orphanAfterMs > 0) {
      aliveTimer = setInterval(
        () => void touchBroadcastQueues(),
        Math.max(250, Math.floor(o.orphanAfterMs / 4)),
      )
      aliveTimer.unref()
    }
    // The first listing starts now, so the first publish rarely has to wait for it.
    directory.refresh().catch(() => {})
    sender = new BatchSender(c.control, BATCH_BYTES, where)
    hold = holdProcess()
  }

  function encode(event: OmnibusEvent): { json: string; bytes: number } {
    return encodeEventChecked(event, o.maxPayloadBytes, 'sqs')
  }

  async function route(
    event: OmnibusEvent,
    json: string,
    bytes: number,
    internal: boolean,
  ): Promise<PublishReceipt> {
    const { directory: dir, sender: out } = requireConnected('publish', internal)
    const targets = await dir.targetsFor(event.topic)
    // Measured once the queues are known, so waiting for a listing is not added to the delay.
    const delaySeconds = delaySecondsUntil(event.deliverAt, Date.now())
    const results = await Promise.all(
      targets.map((t) => {
        const message: { -readonly [K in keyof OutgoingMessage]: OutgoingMessage[K] } = { body: json, bytes }
        if (t.fifo) {
          message.groupId = messageGroupId(event.partitionKey, event.id)
          message.deduplicationId = deduplicationId(event.id, event.time)
        } else if (delaySeconds !== undefined) {
          message.delaySeconds = delaySeconds
        }
        return out.send(t.url, message).then((r) => {
          if (r !== QUEUE_GONE) {
            if (t.kind === 'group') dir.markPresent(t.url)
          } else {
            // A broadcast queue vanishes when its subscriber leaves: nobody is missing the event.
            // A group queue is durable: missing means the broker lost or has not yet restored it,
            // so the publish fails (retryably) instead of dropping the event, and the queue stays
            // routed so the publishes after it fail too until it answers again.
            dir.markMissing(t.url)
            if (t.kind === 'group') {
              throw new PublishError(
                `${where} reports the queue of group subscription "${t.pattern}" missing (${t.url}); ` +
                  'the broker may be restarting: retry the publish',
                { backend: 'sqs', code: 'QUEUE_MISSING', retryable: true },
              )
            }
            logger.debug('sqs: broadcast queue is gone; publishes stop going to it', { queue: t.url })
          }
          return r
        })
      }),
    )
    const first = results.find((r) => r !== QUEUE_GONE)
    return first === undefined
      ? { id: event.id, topic: event.topic }
      : { id: event.id, topic: event.topic, position: first }
  }

  function track<T>(p: Promise<T>): Promise<T> {
    inFlightPublishes.add(p)
    void p.then(
      () => inFlightPublishes.delete(p),
      () => inFlightPublishes.delete(p),
    )
    return p
  }

  async function publishInternal(input: EventInput, internal = false): Promise<PublishReceipt> {
    requireConnected('publish', internal)
    const event = createEvent(input, o.source === undefined ? {} : { source: o.source })
    checkDelay(event, capabilities.delay, 'sqs')
    const { json, bytes } = encode(event)
    return track(route(event, json, bytes, internal))
  }

  async function ensureQueue(
    name: string,
    tags: Record<string, string>,
    fifo: boolean,
    internal = false,
  ): Promise<{ url: string; created: boolean }> {
    const { clients: c } = requireConnected('subscribe', internal)
    try {
      const existing = await c.control.send(new GetQueueUrlCommand({ QueueName: name }))
      if (existing.QueueUrl !== undefined) return { url: existing.QueueUrl, created: false }
    } catch (error) {
      if (!isQueueMissing(error)) throw classifyError(error, 'subscribe', where)
    }
    try {
      const res = await c.control.send(
        new CreateQueueCommand({
          QueueName: name,
          Attributes: fifo ? { FifoQueue: 'true' } : {},
          tags,
        }),
      )
      if (res.QueueUrl === undefined) throw new Error('CreateQueue returned no QueueUrl')
      return { url: res.QueueUrl, created: true }
    } catch (error) {
      throw classifyError(error, 'subscribe', where)
    }
  }

  /** Groups this instance has declared (`ensureGroup`), as `group NUL pattern`. */
  const declaredGroups = new Set<string>()

  /** When the queue keeping each dead-letter topic's letters was last made sure of. */
  const deadLetterQueues = new Map<string, number>()

  /**
   * Makes sure the queue of {@link DEAD_LETTER_GROUP} on a dead-letter topic exists and is routed
   * to, like any group queue: SQS has no topics, so a letter with no queue to go to would be lost.
   * Checked again at most once a minute.
   */
  async function keepDeadLetters(topic: string): Promise<void> {
    const at = deadLetterQueues.get(topic)
    if (at !== undefined && Date.now() - at < 60_000) return
    const { directory: dir } = requireConnected('dead-letter', true)
    const name = groupQueueName(o.queuePrefix, DEAD_LETTER_GROUP, topic, o.fifo)
    const tags = {
      [QUEUE_TAGS.pattern]: topic,
      [QUEUE_TAGS.kind]: 'group',
      [QUEUE_TAGS.group]: DEAD_LETTER_GROUP,
    }
    const { url } = await ensureQueue(name, tags, o.fifo, true)
    dir.addLocal({ url, pattern: topic, kind: 'group', fifo: isFifoQueue(url) })
    deadLetterQueues.set(topic, Date.now())
  }

  const backend: SqsBackend = {
    name: 'sqs',
    capabilities,
    get isConnected() {
      return clients !== undefined && disconnecting === undefined
    },
    describe() {
      return `sqs backend (${where}, queue prefix "${o.queuePrefix}"${o.fifo ? ', FIFO' : ''})`
    },
    connect() {
      if (clients !== undefined && disconnecting === undefined) return Promise.resolve()
      if (disconnecting !== undefined) {
        return Promise.reject(
          new ConfigurationError('this sqs backend was disconnected; create a new one to connect again', {
            backend: 'sqs',
          }),
        )
      }
      if (connecting === undefined) {
        connecting = doConnect().catch((error: unknown) => {
          connecting = undefined
          throw error
        })
      }
      return connecting
    },
    disconnect(opts) {
      if (disconnecting !== undefined) return disconnecting
      if (clients === undefined) {
        disconnecting = Promise.resolve()
        return disconnecting
      }
      const c = clients
      let drain: number
      try {
        drain = checkDrainTimeout(opts?.drainTimeoutMs ?? o.drainTimeoutMs, 'sqs')
      } catch (error) {
        return Promise.reject(error)
      }
      disconnecting = (async () => {
        await Promise.allSettled([...inFlightPublishes])
        await Promise.allSettled([...consumers].map((k) => k.kernel.close(drain)))
        await Promise.allSettled([...inFlightPublishes])
        await sender?.idle()
        directory?.close()
        if (aliveTimer !== undefined) clearInterval(aliveTimer)
        if (c.owned) {
          c.control.destroy()
          c.receive.destroy()
        }
      })().finally(() => {
        hold?.release()
        hold = undefined
      })
      return disconnecting
    },
    healthCheck(): Promise<HealthStatus> {
      if (clients === undefined || disconnecting !== undefined) {
        return Promise.resolve({ healthy: false, latencyMs: 0, detail: 'not connected' })
      }
      const c = clients
      return timedHealthCheck(
        'sqs',
        async () => {
          try {
            await probe(c.control)
          } catch (error) {
            throw classifyError(error, 'connect', where)
          }
          return `${where}, ${consumers.size} subscription(s)`
        },
        o.connectTimeoutMs,
      )
    },
    publish(input) {
      return publishInternal(input as EventInput)
    },
    async publishRaw(topic, body) {
      const { directory: dir, sender: out } = requireConnected('publish')
      validateTopic(topic)
      const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8')
      const bytes = Buffer.byteLength(text)
      if (bytes > o.maxPayloadBytes)
        throw new PayloadTooLargeError(bytes, o.maxPayloadBytes, { backend: 'sqs' })
      const targets = await dir.targetsFor(topic)
      const id = randomUUID()
      const sent = await Promise.all(
        targets.map((t) =>
          out.send(
            t.url,
            t.fifo
              ? { body: text, bytes, groupId: id, deduplicationId: `${id}-${t.url.length}` }
              : { body: text, bytes },
          ),
        ),
      )
      return sent.filter((r) => r !== QUEUE_GONE).length
    },
    async publishBatch(inputs): Promise<BatchReceipt> {
      requireConnected('publish')
      if (!Array.isArray(inputs)) {
        throw new ConfigurationError('publishBatch expects an array of events', { backend: 'sqs' })
      }
      const settled = await Promise.allSettled(inputs.map((input) => publishInternal(input)))
      const results: BatchEntryResult[] = settled.map((r, index) =>
        r.status === 'fulfilled'
          ? { ok: true, index, receipt: r.value }
          : { ok: false, index, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) },
      )
      const succeeded = results.filter((r) => r.ok).length
      return { results, succeeded, failed: results.length - succeeded }
    },
    async deleteAllQueues() {
      const { clients: c } = requireConnected('delete queues')
      const urls: string[] = []
      let token: string | undefined
      try {
        do {
          const page = await c.control.send(
            new ListQueuesCommand({
              QueueNamePrefix: `${o.queuePrefix}-`,
              MaxResults: 1000,
              ...(token === undefined ? {} : { NextToken: token }),
            }),
          )
          urls.push(...(page.QueueUrls ?? []))
          token = page.NextToken
        } while (token !== undefined && token !== '')
      } catch (error) {
        throw classifyError(error, 'admin', where)
      }
      for (const url of urls) await deleteQueue(url)
      return urls.length
    },
    async ensureGroup(pattern: string, group: string): Promise<void> {
      checkEnsureGroup(backend, pattern, group)
      const { directory: dir } = requireConnected('ensureGroup')
      const key = `${group}\u0000${pattern}`
      if (declaredGroups.has(key)) return
      // The queue a member of the group would read, with the same name and tags, so publishers
      // route to it from now on and the member finds what they sent there.
      const name = groupQueueName(o.queuePrefix, group, pattern, o.fifo)
      const tags: Record<string, string> = {
        [QUEUE_TAGS.pattern]: pattern,
        [QUEUE_TAGS.kind]: 'group',
        [QUEUE_TAGS.group]: group.slice(0, 256),
      }
      const { url, created } = await ensureQueue(name, tags, o.fifo)
      dir.addLocal({ url, pattern, kind: 'group', fifo: isFifoQueue(url) })
      // As subscribe does: publishers elsewhere see a new queue within one listing interval.
      if (created) await new Promise((resolve) => setTimeout(resolve, o.discoveryIntervalMs))
      declaredGroups.add(key)
    },

    async subscribe<T>(
      pattern: string,
      handler: EventHandler<T>,
      opts?: SubscribeOptions,
    ): Promise<Subscription> {
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      const { directory: dir } = requireConnected('subscribe')
      const fifo = o.fifo
      const kind = resolved.group === undefined ? 'broadcast' : 'group'
      const name =
        resolved.group === undefined
          ? broadcastQueueName(o.queuePrefix, fifo)
          : groupQueueName(o.queuePrefix, resolved.group, pattern, fifo)
      const tags: Record<string, string> = { [QUEUE_TAGS.pattern]: pattern, [QUEUE_TAGS.kind]: kind }
      if (kind === 'broadcast' && o.orphanAfterMs > 0) tags[QUEUE_TAGS.alive] = String(Date.now())
      if (resolved.group !== undefined) tags[QUEUE_TAGS.group] = resolved.group.slice(0, 256)
      const { url, created } = await ensureQueue(name, tags, fifo)
      const target: QueueTarget = { url, pattern, kind, fifo: isFifoQueue(url) }
      dir.addLocal(target)
      if (created) {
        // Publishers elsewhere refresh their listing at least this often: once it has passed,
        // every publish that starts after subscribe() resolved reaches this queue.
        await new Promise((resolve) => setTimeout(resolve, o.discoveryIntervalMs))
      }
      if (disconnecting !== undefined || clients === undefined) {
        if (kind === 'broadcast') await deleteQueue(url)
        throw new NotConnectedError('sqs', 'subscribe')
      }
      const c = clients
      const consumer: Consumer = new Consumer(
        {
          client: c.control,
          receiveClient: c.receive,
          where,
          logger,
          dedupe: o.dedupeStore,
          waitTimeSeconds: o.waitTimeSeconds,
          prefetch: o.prefetch,
          localRetryMaxMs: o.localRetryMaxMs,
          visibilityTimeoutMs: o.visibilityTimeoutMs,
          resend: (queueUrl, body, delaySeconds) =>
            requireConnected('re-send', true).sender.send(queueUrl, {
              body,
              bytes: Buffer.byteLength(body),
              ...(delaySeconds >= 1 ? { delaySeconds } : {}),
            }),
          publishDeadLetter: async (input) => {
            await keepDeadLetters(input.topic)
            return publishInternal(input, true)
          },
          recreateQueue: async () => {
            const again = await ensureQueue(name, tags, fifo)
            dir.addLocal({ ...target, url: again.url })
            return again.url
          },
          drainTimeoutMs: o.drainTimeoutMs,
          onClosed: async (k) => {
            consumers.delete(k)
            // Broadcast queues belong to their subscriber; group queues outlive members (durable groups).
            if (k.kind === 'broadcast') await deleteQueue(k.queueUrl)
          },
        },
        {
          id: randomUUID(),
          queueUrl: url,
          queueName: name,
          kind,
          fifo: target.fifo,
          options: resolved,
          handler: handler as EventHandler,
        },
      )
      consumers.add(consumer)
      consumer.start()
      return consumer.kernel.subscription
    },
  }

  /** Shows every broadcast queue of this process as alive, so publishers do not reap it. */
  async function touchBroadcastQueues(): Promise<void> {
    if (clients === undefined || disconnecting !== undefined) return
    const c = clients
    const alive = String(Date.now())
    await Promise.all(
      [...consumers]
        .filter((k) => k.kind === 'broadcast')
        .map((k) =>
          c.control
            .send(new TagQueueCommand({ QueueUrl: k.queueUrl, Tags: { [QUEUE_TAGS.alive]: alive } }), {
              abortSignal: AbortSignal.timeout(10_000),
            })
            .catch((error: unknown) => {
              logger.debug('sqs: alive tag not refreshed', {
                queue: k.queueUrl,
                error: (error as Error).message,
              })
            }),
        ),
    )
  }

  async function deleteQueue(url: string): Promise<void> {
    directory?.forget(url)
    if (clients === undefined) return
    try {
      await clients.control.send(new DeleteQueueCommand({ QueueUrl: url }))
    } catch (error) {
      if (!isQueueMissing(error)) {
        logger.warn('sqs: broadcast queue could not be deleted', {
          queue: url,
          error: classifyError(error, 'admin', where).message,
        })
      }
    }
  }

  return instrumentBackend(backend)
}

/** A boolean URL parameter, spelt as every boolean option is. */
function urlBoolean(name: string, value: string): boolean {
  const b = parseBoolean(value)
  if (b === undefined)
    throw optionError('sqs', name, value, 'true or false (true, 1, yes, on, false, 0, no, off)')
  return b
}

/**
 * Creates a backend from an `sqs://` URL for the core registry:
 * `sqs://host:port` → endpoint `http://host:port` (`?tls=true` for https); `sqs://aws` or
 * `sqs://` → the AWS endpoint of the region. Query parameters: `region`, `prefix`, `fifo` (and
 * `tls`); any other is a `ConfigurationError`. Explicit `options` win over the URL.
 */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): SqsBackend {
  if (url.protocol !== 'sqs:') {
    throw new ConfigurationError(`backendFromUrl expects an sqs:// URL, got "${url.protocol}//"`, {
      backend: 'sqs',
    })
  }
  if (url.username !== '' || url.password !== '') {
    throw new ConfigurationError(
      'sqs:// URLs must not carry credentials: use the AWS chain or the credentials option',
      {
        backend: 'sqs',
      },
    )
  }
  rejectUnknownUrlParams(url, SQS_URL_PARAMS, { backend: 'sqs' })
  const fromUrl: Record<string, unknown> = {}
  const host = url.host
  if (host !== '' && host !== 'aws') {
    const tls = url.searchParams.get('tls')
    fromUrl.endpoint = `${tls !== null && urlBoolean('tls', tls) ? 'https' : 'http'}://${host}`
  }
  const region = url.searchParams.get('region')
  if (region !== null && region !== '') fromUrl.region = region
  const prefix = url.searchParams.get('prefix')
  if (prefix !== null && prefix !== '') fromUrl.queuePrefix = prefix
  const fifo = url.searchParams.get('fifo')
  if (fifo !== null) fromUrl.fifo = urlBoolean('fifo', fifo)
  return createSqsBackend({ ...fromUrl, ...options } as SqsBackendOptions)
}
