/**
 * The HTTP side of `omnibus serve`: {@link createServeHandler} connects to a backend, subscribes to
 * its traffic (broadcast, the weakest guarantee the backend offers, so it competes with no one and
 * never holds a message back), feeds the {@link Aggregator}, and returns a plain `node:http`
 * request listener an application mounts in its own server; {@link startServer} runs that listener
 * in a server of its own.
 *
 * A backend that is down does not stop the server: it starts, answers `/health/live`, reports the
 * reason on `/health/ready` (503) and keeps trying to connect and subscribe in the background.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  CapabilityError,
  ConfigurationError,
  compilePattern,
  consoleLogger,
  createBackend,
  DEFAULT_DEAD_LETTER_TOPIC,
  type EventBackend,
  type EventInput,
  type Guarantee,
  type Logger,
  type OmnibusEvent,
  redactUrl,
  redriveInput,
  type Subscription,
  validatePattern,
} from '@omnibus/core'
import { optionNames, rejectUnknownOptions } from '@omnibus/core/backend'
import { Aggregator, type AggregatorOptions, REDRIVEN_OF_HEADER, redrivenTopic } from './aggregator.ts'
import type { AlertsHook } from './alerts-hook.ts'
import { DEFAULT_PRICING, type PricingTable } from './cost.ts'
import { ServeMetrics, type ServeMetricsOptions, type ServerStats } from './metrics.ts'
import type { BackendView, Snapshot } from './snapshot.ts'
import { EventStream, type EventStreamOptions, LiveStream, type LiveStreamOptions } from './sse.ts'
import { StaticFiles } from './static-files.ts'

/** Options of {@link createServeHandler}. Give `backend` or `url`, not both. */
export interface ServeOptions {
  /** A backend to watch. The server connects it if needed and never disconnects it. */
  readonly backend?: EventBackend
  /** A backend URL (`sqlite:///tmp/omnibus.db`, `redis://…`); the server creates, connects and closes it. */
  readonly url?: string
  /** Options passed beside `url` to `createBackend`. */
  readonly backendOptions?: Readonly<Record<string, unknown>>
  /** Patterns to watch. The dead-letter topic and its redrive markers are always watched. @default ['**'] */
  readonly patterns?: readonly string[]
  /**
   * Where the watch starts: `'earliest'` replays what the backend retains first (a kept demo run),
   * on backends that can replay (else `CapabilityError`). @default 'latest'
   */
  readonly from?: 'latest' | 'earliest'
  /** Prices of model calls. @default DEFAULT_PRICING */
  readonly pricing?: PricingTable
  /** Alert rules to drive (see `AlertsHook`). */
  readonly alerts?: AlertsHook
  /** How often alerts are evaluated, ms. @default 1000 */
  readonly alertIntervalMs?: number
  /** Where dead letters arrive. @default 'omnibus.deadletter' */
  readonly deadLetterTopic?: string
  /** Windows and limits of the aggregates (pricing, clock and dead-letter topic come from above). */
  readonly aggregator?: Omit<AggregatorOptions, 'pricing' | 'now' | 'deadLetterTopic'>
  /** The live tail: resume ring, per-client buffer, resume bounds. */
  readonly stream?: EventStreamOptions
  /** The snapshot feed (`/api/live`). @default { intervalMs: 500 } */
  readonly live?: LiveStreamOptions
  /** `/metrics`: registry, process metrics, label bounds, extra text. */
  readonly metrics?: ServeMetricsOptions
  /** How long a health check answers readiness probes, ms. @default 1000 */
  readonly readyCacheMs?: number
  /** A health check slower than this counts as unhealthy, ms. @default 2000 */
  readonly healthTimeoutMs?: number
  /** Longest wait between connection attempts while the backend is down, ms. @default 10000 */
  readonly reconnectMaxMs?: number
  /** Folder of the dashboard's files. @default this package's `src/dashboard` */
  readonly dashboardDir?: string
  /** The server's own warnings. @default consoleLogger (warnings and errors) */
  readonly logger?: Logger
  /** The clock of the aggregates and alerts, epoch ms. @default Date.now */
  readonly now?: () => number
}

const OPTION_NAMES = optionNames<ServeOptions>({
  backend: true,
  url: true,
  backendOptions: true,
  patterns: true,
  from: true,
  pricing: true,
  alerts: true,
  alertIntervalMs: true,
  deadLetterTopic: true,
  aggregator: true,
  stream: true,
  live: true,
  metrics: true,
  readyCacheMs: true,
  healthTimeoutMs: true,
  reconnectMaxMs: true,
  dashboardDir: true,
  logger: true,
  now: true,
})

/** What `/health/ready` answers. */
export interface Readiness {
  readonly ready: boolean
  readonly backend: string
  /** Why the server is not ready, or what the health check said. */
  readonly detail: string | undefined
  readonly latencyMs: number | undefined
  /** Epoch ms of the check. */
  readonly checkedAt: number
}

/** A running serve handler. */
export interface OmnibusServe {
  /** A `node:http` request listener: mount it in any server (see the README). */
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void
  /** Everything the server knows now. */
  snapshot(): Snapshot
  /** Readiness from the backend's health check, cached for `readyCacheMs`. */
  ready(): Promise<Readiness>
  /** The aggregates, for tests and embedding. */
  readonly aggregator: Aggregator
  /** The Prometheus registry and its text. */
  readonly metrics: ServeMetrics
  /** The backend watched. */
  readonly backend: EventBackend
  /** Stops timers and streams, unsubscribes, stops the alerts, and disconnects a backend it created. */
  close(): Promise<void>
}

function positiveInt(name: string, value: unknown, fallback: number): number {
  const v = value ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new ConfigurationError(`${name} must be an integer >= 1, got ${String(v)}`)
  }
  return v
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(text)
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Creates the serve handler: connects (or uses the given backend), subscribes, and returns the
 * request listener with the aggregates behind it. Bad options are a `ConfigurationError`; a
 * backend that cannot be reached is not an error (see the module comment).
 */
export async function createServeHandler(options: ServeOptions): Promise<OmnibusServe> {
  rejectUnknownOptions('serve option', options, OPTION_NAMES)
  if ((options.backend === undefined) === (options.url === undefined)) {
    throw new ConfigurationError(
      'serve needs exactly one of backend (an EventBackend) or url (a backend URL)',
    )
  }
  const patterns = options.patterns ?? ['**']
  if (!Array.isArray(patterns) || patterns.length === 0) {
    throw new ConfigurationError('patterns must be a non-empty array of topic patterns, e.g. ["**"]')
  }
  for (const p of patterns) validatePattern(p)
  const deadLetterTopic = options.deadLetterTopic ?? DEFAULT_DEAD_LETTER_TOPIC
  const from = options.from ?? 'latest'
  if (from !== 'latest' && from !== 'earliest') {
    throw new ConfigurationError(`from must be 'latest' or 'earliest', got ${String(from)}`)
  }
  const alertIntervalMs = positiveInt('alertIntervalMs', options.alertIntervalMs, 1000)
  const readyCacheMs = positiveInt('readyCacheMs', options.readyCacheMs, 1000)
  const healthTimeoutMs = positiveInt('healthTimeoutMs', options.healthTimeoutMs, 2000)
  const reconnectMaxMs = positiveInt('reconnectMaxMs', options.reconnectMaxMs, 10_000)
  const logger = options.logger ?? consoleLogger
  const alerts = options.alerts
  if (alerts !== undefined && typeof alerts.evaluate !== 'function') {
    throw new ConfigurationError('alerts must be an object with an evaluate(snapshot) method')
  }
  const aggregatorOptions: AggregatorOptions = {
    ...options.aggregator,
    deadLetterTopic,
    ...(options.pricing === undefined ? {} : { pricing: options.pricing }),
    ...(options.now === undefined ? {} : { now: options.now }),
  }
  const aggregator = new Aggregator(aggregatorOptions)
  const now = aggregator.now
  const ownsBackend = options.backend === undefined
  const backend =
    options.backend ?? (await createBackend(options.url as string, options.backendOptions ?? {}))
  const where = options.url === undefined ? backend.name : redactUrl(options.url)
  if (from === 'earliest' && !backend.capabilities.replay) {
    if (ownsBackend) await backend.disconnect()
    throw new CapabilityError(
      `from: 'earliest' needs a backend that replays retained events, and ${where} cannot: use 'latest'`,
      { backend: backend.name },
    )
  }
  const files = new StaticFiles(options.dashboardDir)

  const stream = new EventStream(backend, logger, options.stream)
  const live = new LiveStream(() => snapshot(), options.live)
  const counters = { alertFailures: 0, ingestFailures: 0 }
  let readiness: Readiness = {
    ready: false,
    backend: backend.name,
    detail: 'connecting',
    latencyMs: undefined,
    checkedAt: now(),
  }
  const stats = (): ServerStats => ({
    sseClients: { events: stream.clients, live: live.clients },
    sseDropped: stream.dropped,
    backendUp: readiness.ready ? 1 : 0,
    alertFailures: counters.alertFailures,
    ingestFailures: counters.ingestFailures,
  })
  const metrics = new ServeMetrics(aggregator, stats, options.metrics)
  aggregator.setObserver(metrics.observer)

  const ingest = (event: OmnibusEvent): void => {
    try {
      aggregator.ingest(event)
    } catch (error) {
      counters.ingestFailures++
      logger.warn('aggregator could not ingest an event', { id: event.id, error: describeError(error) })
    }
    if (alerts?.observe !== undefined) {
      try {
        alerts.observe(event)
      } catch {
        counters.ingestFailures++
      }
    }
    stream.push(event)
  }

  // Watch the patterns, plus the dead-letter topic and its markers when the patterns miss them.
  const watched = [...patterns]
  for (const topic of [deadLetterTopic, redrivenTopic(deadLetterTopic)]) {
    if (!patterns.some((p) => compilePattern(p)(topic))) watched.push(topic)
  }
  const offered = backend.capabilities.guarantees
  const guarantee: Guarantee = offered.includes('at-most-once')
    ? 'at-most-once'
    : (offered[0] ?? 'at-most-once')
  const subscriptions: Subscription[] = []
  let subscribed = false
  let closed = false
  let connectError: string | undefined
  let retryTimer: NodeJS.Timeout | undefined
  let attempt = 0

  const setReadiness = (r: Readiness): void => {
    readiness = r
    const view: BackendView = {
      name: backend.name,
      healthy: r.ready,
      latencyMs: r.latencyMs,
      detail: r.detail,
      checkedAt: r.checkedAt,
    }
    aggregator.setBackend(view)
  }

  const start = async (): Promise<void> => {
    if (closed || subscribed) return
    try {
      if (!backend.isConnected) await backend.connect()
      for (const pattern of watched.slice(subscriptions.length)) {
        subscriptions.push(await backend.subscribe(pattern, ingest, { guarantee, from }))
      }
      subscribed = true
      connectError = undefined
      attempt = 0
    } catch (error) {
      connectError = `cannot connect or subscribe to ${where}: ${describeError(error)}`
      setReadiness({
        ready: false,
        backend: backend.name,
        detail: connectError,
        latencyMs: undefined,
        checkedAt: now(),
      })
      if (closed) return
      attempt++
      const delay = Math.min(reconnectMaxMs, 250 * 2 ** Math.min(attempt, 10))
      logger.warn(`${connectError}; retrying in ${delay} ms`)
      retryTimer = setTimeout(() => void start(), delay)
      retryTimer.unref()
    }
  }
  await start()

  let checking: Promise<Readiness> | undefined
  const check = async (): Promise<Readiness> => {
    if (!subscribed) {
      const r = {
        ready: false,
        backend: backend.name,
        detail: connectError ?? 'connecting',
        latencyMs: undefined,
        checkedAt: now(),
      }
      setReadiness(r)
      return r
    }
    try {
      const health = await withTimeout(backend.healthCheck(), healthTimeoutMs, `${backend.name} health check`)
      const r = {
        ready: health.healthy,
        backend: backend.name,
        detail: health.detail ?? (health.healthy ? undefined : 'the backend reports itself unhealthy'),
        latencyMs: health.latencyMs,
        checkedAt: now(),
      }
      setReadiness(r)
      return r
    } catch (error) {
      const r = {
        ready: false,
        backend: backend.name,
        detail: describeError(error),
        latencyMs: undefined,
        checkedAt: now(),
      }
      setReadiness(r)
      return r
    }
  }
  const ready = async (): Promise<Readiness> => {
    if (now() - readiness.checkedAt < readyCacheMs && readiness.detail !== 'connecting') return readiness
    checking ??= check().finally(() => {
      checking = undefined
    })
    return checking
  }
  await ready()

  const snapshot = (): Snapshot => {
    // Viewers keep the backend's health fresh; probes share the same cached check.
    if (now() - readiness.checkedAt >= readyCacheMs) void ready()
    return aggregator.snapshot()
  }

  let evaluating = false
  const evaluate = async (): Promise<void> => {
    if (alerts === undefined || evaluating || closed) return
    evaluating = true
    try {
      aggregator.setAlerts(await alerts.evaluate(snapshot()))
    } catch (error) {
      counters.alertFailures++
      logger.warn('alert evaluation failed', { error: describeError(error) })
    } finally {
      evaluating = false
    }
  }
  let alertTimer: NodeJS.Timeout | undefined
  if (alerts !== undefined) {
    await alerts.start?.({
      backend,
      logger,
      now,
      pricing: options.pricing ?? DEFAULT_PRICING,
      metrics: metrics.registry,
    })
    alertTimer = setInterval(() => void evaluate(), alertIntervalMs)
    alertTimer.unref()
  }

  const redrive = async (res: ServerResponse, id: string): Promise<void> => {
    const letter = aggregator.deadLetter(id)
    if (letter === undefined) {
      sendJson(res, 404, {
        error: `no dead letter with id "${id}" (the server keeps the letters it has seen)`,
      })
      return
    }
    if (!subscribed) {
      sendJson(res, 503, { error: `the backend is not available: ${connectError ?? 'connecting'}` })
      return
    }
    let input: EventInput
    try {
      input = redriveInput(letter)
    } catch (error) {
      sendJson(res, 422, { error: describeError(error) })
      return
    }
    try {
      await backend.publish(input)
      // The same marker `omnibus dlq redrive` writes, so both see the letter as redriven.
      await backend.publish({
        topic: redrivenTopic(deadLetterTopic),
        id: `${letter.id}.redriven.${letter.time}`,
        source: 'omnibus-serve',
        data: {
          letterId: letter.id,
          letterTime: new Date(letter.time).toISOString(),
          originalTopic: input.topic,
          originalId: input.id ?? null,
        },
        headers: { [REDRIVEN_OF_HEADER]: `${letter.id}@${letter.time}` },
        causationId: letter.id,
      })
    } catch (error) {
      sendJson(res, 502, { error: `redrive failed: ${describeError(error)}` })
      return
    }
    aggregator.markRedriven(id)
    sendJson(res, 200, { id, state: 'redriven', topic: input.topic, originalId: input.id })
  }

  const serveFile = async (req: IncomingMessage, res: ServerResponse, name: string): Promise<void> => {
    const file = await files.get(name)
    if (file === undefined) {
      const hint = name === 'index.html' ? ` (no dashboard files in ${files.dir})` : ''
      sendJson(res, 404, { error: `not found: ${req.url ?? ''}${hint}` })
      return
    }
    res.writeHead(200, {
      'content-type': file.contentType,
      'content-length': file.body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    })
    res.end(req.method === 'HEAD' ? undefined : file.body)
  }

  const route = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<string> => {
    const path = url.pathname
    const method = req.method ?? 'GET'
    const isGet = method === 'GET' || method === 'HEAD'
    if (path === '/api/deadletters' || path.startsWith('/api/deadletters/')) {
      const m = /^\/api\/deadletters\/([^/]+)\/redrive$/.exec(path)
      if (m !== null) {
        if (method !== 'POST') {
          notAllowed(res, 'POST')
          return 'redrive'
        }
        let id: string
        try {
          id = decodeURIComponent(m[1] as string)
        } catch {
          sendJson(res, 400, { error: 'the dead letter id is not valid percent-encoding' })
          return 'redrive'
        }
        await redrive(res, id)
        return 'redrive'
      }
      if (path !== '/api/deadletters') {
        notFound(res, path)
        return 'unknown'
      }
    }
    if (!isGet) {
      const known = ['/', '/health/live', '/health/ready', '/metrics', '/events/stream', '/api/deadletters']
      if (known.includes(path) || path.startsWith('/api/') || path.startsWith('/assets/')) {
        notAllowed(res, 'GET, HEAD')
        return 'method'
      }
      notFound(res, path)
      return 'unknown'
    }
    switch (path) {
      case '/health/live':
        sendJson(res, 200, { status: 'live' })
        return 'health_live'
      case '/health/ready': {
        const r = await ready()
        sendJson(res, r.ready ? 200 : 503, {
          status: r.ready ? 'ready' : 'unavailable',
          backend: r.backend,
          detail: r.detail ?? null,
          latencyMs: r.latencyMs ?? null,
          checkedAt: new Date(r.checkedAt).toISOString(),
        })
        return 'health_ready'
      }
      case '/metrics': {
        const text = await metrics.text()
        res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' })
        res.end(text)
        return 'metrics'
      }
      case '/events/stream': {
        const pattern = url.searchParams.get('pattern') ?? '**'
        try {
          validatePattern(pattern)
        } catch (error) {
          sendJson(res, 400, { error: describeError(error) })
          return 'events_stream'
        }
        const header = req.headers['last-event-id']
        const lastEventId =
          (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('lastEventId') ?? undefined
        stream.open(req, res, pattern, lastEventId)
        return 'events_stream'
      }
      case '/api/snapshot':
        sendJson(res, 200, snapshot())
        return 'api_snapshot'
      case '/api/live': {
        const interval = live.interval(url.searchParams.get('intervalMs'))
        if (interval === undefined) {
          sendJson(res, 400, { error: 'intervalMs must be a positive number of milliseconds' })
          return 'api_live'
        }
        live.open(req, res, interval)
        return 'api_live'
      }
      case '/api/agents':
        sendJson(res, 200, aggregator.agents())
        return 'api_agents'
      case '/api/topics': {
        const limit = Number(url.searchParams.get('limit') ?? 50)
        if (!Number.isInteger(limit) || limit < 1) {
          sendJson(res, 400, { error: 'limit must be an integer >= 1' })
          return 'api_topics'
        }
        sendJson(res, 200, { families: aggregator.families(), topics: aggregator.topics(limit) })
        return 'api_topics'
      }
      case '/api/tools':
        sendJson(res, 200, aggregator.tools())
        return 'api_tools'
      case '/api/models':
        sendJson(res, 200, { models: aggregator.models(), cost: aggregator.cost() })
        return 'api_models'
      case '/api/errors':
        sendJson(res, 200, aggregator.errors())
        return 'api_errors'
      case '/api/alerts':
        sendJson(res, 200, aggregator.snapshot().alerts)
        return 'api_alerts'
      case '/api/deadletters':
        sendJson(res, 200, aggregator.deadLetters())
        return 'api_deadletters'
      case '/':
      case '/index.html':
        await serveFile(req, res, 'index.html')
        return 'dashboard'
      default:
        if (path.startsWith('/assets/')) {
          let name: string
          try {
            name = decodeURIComponent(path.slice('/assets/'.length))
          } catch {
            notFound(res, path)
            return 'assets'
          }
          await serveFile(req, res, name)
          return 'assets'
        }
        {
          notFound(res, path)
          return 'unknown'
        }
    }
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const started = performance.now()
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      sendJson(res, 400, { error: 'bad request URL' })
      return
    }
    route(req, res, url).then(
      (name) =>
        metrics.observeHttp(name, req.method ?? 'GET', res.statusCode, (performance.now() - started) / 1000),
      (error: unknown) => {
        logger.error('request failed', { path: url.pathname, error: describeError(error) })
        if (!res.headersSent) sendJson(res, 500, { error: describeError(error) })
        else res.end()
      },
    )
  }

  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    clearTimeout(retryTimer)
    clearInterval(alertTimer)
    stream.close()
    live.close()
    await Promise.allSettled(subscriptions.map((s) => s.unsubscribe()))
    try {
      await alerts?.close?.()
    } catch (error) {
      logger.warn('closing the alerts failed', { error: describeError(error) })
    }
    if (ownsBackend) await backend.disconnect()
  }

  return { handler, snapshot, ready, aggregator, metrics, backend, close }
}

function notFound(res: ServerResponse, path: string): void {
  sendJson(res, 404, { error: `not found: ${path}` })
}

function notAllowed(res: ServerResponse, allow: string): void {
  sendJson(res, 405, { error: `method not allowed; use ${allow}` }, { allow })
}

/** Options of {@link startServer}: the handler's, plus where to listen. */
export interface StartServerOptions extends ServeOptions {
  /** Port to listen on; 0 picks a free one. @default 8080, env OMNIBUS_SERVE_PORT */
  readonly port?: number
  /** Interface to bind. @default '127.0.0.1' (this host only), env OMNIBUS_SERVE_HOST */
  readonly host?: string
}

/** A server started by {@link startServer}. */
export interface RunningServer {
  readonly server: Server
  /** `http://host:port`, with the port actually bound. */
  readonly url: string
  readonly port: number
  readonly serve: OmnibusServe
  /** Closes the handler, every open connection (SSE streams included) and the server. */
  close(): Promise<void>
}

/**
 * Runs {@link createServeHandler}'s handler in a `node:http` server bound to `host:port`
 * (127.0.0.1 by default: expose it beyond this host on purpose, with `host: '0.0.0.0'`).
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { port: portOption, host: hostOption, ...serveOptions } = options
  const envPort = process.env.OMNIBUS_SERVE_PORT
  const port = portOption ?? (envPort === undefined || envPort === '' ? 8080 : Number(envPort))
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ConfigurationError(
      `port must be an integer from 0 to 65535, got ${String(portOption ?? envPort)}${portOption === undefined ? ' (OMNIBUS_SERVE_PORT)' : ''}`,
    )
  }
  const host = hostOption ?? (process.env.OMNIBUS_SERVE_HOST || '127.0.0.1')
  const serve = await createServeHandler(serveOptions)
  const server = createServer(serve.handler)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (error) {
    await serve.close()
    throw new ConfigurationError(`cannot listen on ${host}:${port}: ${describeError(error)}`, {
      cause: error,
    })
  }
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closing: Promise<void> | undefined
  return {
    server,
    url: `http://${shownHost}:${address.port}`,
    port: address.port,
    serve,
    close: () => {
      closing ??= (async () => {
        await serve.close()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      })()
      return closing
    },
  }
}
