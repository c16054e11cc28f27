/**
 * The AgentMessageBus: targeted agent-to-agent messages with delivery guarantees.
 *
 * Topic layout (prefix `agent` by default):
 * - `agent.<to>.<topic>` — a message or request for agent `<to>`;
 * - `agent._all.<topic>` — a broadcast to every agent;
 * - `agent._inbox.<instance>` — replies for one bus instance (each requester has its own inbox).
 * Agent ids start with a letter or digit, so the `_all`/`_inbox` segments never collide with one.
 *
 * Sender, recipient, reply-to and the request's correlation id travel as envelope headers
 * ({@link AGENT_HEADERS}), never inside `data`. Every publish goes straight to the backend: agent
 * traffic never shares the telemetry buffer or its drop policy. Subscriptions are at-least-once by
 * default, and a backend that cannot give the chosen guarantee is refused with `CapabilityError`.
 */
import { randomUUID } from 'node:crypto'
import { resolveRetryPolicy } from './delivery.ts'
import { newEventId } from './envelope.ts'
import { CapabilityError, ConfigurationError, OmnibusError, TimeoutError } from './errors.ts'
import { optionNames, rejectUnknownOptions } from './options.ts'
import { agentPrometheusText } from './prometheus.ts'
import type {
  EventBackend,
  EventInput,
  Guarantee,
  HandlerContext,
  Logger,
  OmnibusEvent,
  PublishReceipt,
  RetryPolicy,
  Subscription,
} from './protocol.ts'
import { createBackend } from './registry.ts'

/** Header names the AgentMessageBus puts on its envelopes. */
export const AGENT_HEADERS = {
  from: 'omnibus-agent-from',
  to: 'omnibus-agent-to',
  replyTo: 'omnibus-agent-reply-to',
  correlationId: 'omnibus-agent-correlation-id',
  kind: 'omnibus-agent-kind',
  error: 'omnibus-agent-error',
} as const

/** Kind of an agent envelope. */
export type AgentMessageKind = 'message' | 'request' | 'reply' | 'broadcast'

/** A message as an agent handler sees it. */
export interface AgentMessage<T = unknown> {
  readonly id: string
  readonly kind: AgentMessageKind
  /** Sender agent id. */
  readonly from: string
  /** Recipient agent id, or `*` for a broadcast. */
  readonly to: string
  /** The logical topic, without the `agent.<to>.` prefix. */
  readonly topic: string
  readonly data: T
  /** For a request: the id its reply must carry. */
  readonly correlationId: string | undefined
  /** For a request: the topic the reply goes to. */
  readonly replyTo: string | undefined
  /** The envelope as delivered. */
  readonly event: OmnibusEvent<T>
}

/** What an agent handler receives beside the message. */
export interface AgentContext {
  readonly attempt: number
  readonly signal: AbortSignal
  readonly logger: Logger
  /** Whether the message is a request that expects a reply. */
  readonly canReply: boolean
  /** Replies to a request. Throws `ConfigurationError` when the message is not a request. */
  reply(data: unknown): Promise<void>
  /** Replies with an error: the requester's promise rejects with {@link AgentReplyError}. */
  replyError(error: unknown): Promise<void>
  /** Asks for redelivery (at-least-once); return after calling. */
  retry(delayMs?: number): void
  /** Dead-letters the message at once; return after calling. */
  deadLetter(reason: string): void
  /** The backend's handler context. */
  readonly raw: HandlerContext
}

/** An agent message handler. Resolving acknowledges; throwing asks for redelivery. */
export type AgentHandler<T = unknown> = (message: AgentMessage<T>, ctx: AgentContext) => unknown

/** The responder replied with an error (`ctx.replyError`). */
export class AgentReplyError extends OmnibusError {
  /** Agent that replied. */
  readonly agent: string
  constructor(agent: string, message: string) {
    super(`agent "${agent}" replied with an error: ${message}`, { code: 'AGENT_REPLY_ERROR' })
    this.agent = agent
  }
}

/** Options of an {@link AgentMessageBus}. */
export interface AgentMessageBusOptions {
  /** The `from` of messages this bus sends. @default `process-<pid>` */
  readonly agentId?: string
  /** First topic segment of agent traffic. @default 'agent' */
  readonly prefix?: string
  /** Guarantee of agent subscriptions and messages. @default 'at-least-once' */
  readonly guarantee?: Exclude<Guarantee, 'at-most-once'>
  /** Default `request` timeout. @default 30000 */
  readonly requestTimeoutMs?: number
  /** Retry policy of agent subscriptions (default: the core default). */
  readonly retry?: RetryPolicy
  /** Logger for the bus's own warnings. @default silent */
  readonly logger?: Logger
}

/** Options of {@link AgentMessageBus.subscribeAgent}. */
export interface SubscribeAgentOptions {
  /**
   * Competing-consumer group shared by instances of this agent: each message is handled by one
   * of them. `false` makes every instance receive every message.
   * @default `agent.<agentId>`
   */
  readonly group?: string | false
  /** Pattern of logical topics to receive (`task.*`). @default '**' */
  readonly topics?: string
  /** Also receive broadcasts. @default true */
  readonly broadcasts?: boolean
  /** Handlers in flight at once for this agent instance. @default 1 */
  readonly concurrency?: number
  /** Overrides the bus's retry policy. */
  readonly retry?: RetryPolicy
  /** Dead-letter topic, or `false`. @default the backend default */
  readonly deadLetter?: string | false
  /** Where a new group starts on persistent backends. @default 'latest' */
  readonly from?: 'latest' | 'earliest'
}

/** Options of one `send`/`broadcast`/`request`. */
export interface SendOptions {
  /** Overrides the bus's `agentId` as sender. */
  readonly from?: string
  /** Extra envelope headers. */
  readonly headers?: Readonly<Record<string, string>>
  readonly partitionKey?: string
  readonly correlationId?: string
}

/** Options of `request`. */
export interface RequestOptions extends SendOptions {
  /** Reject with `TimeoutError` after this long without a reply. @default the bus's requestTimeoutMs */
  readonly timeoutMs?: number
  /** Aborting rejects the request at once. */
  readonly signal?: AbortSignal
}

/** Both subscriptions of one `subscribeAgent`. */
export interface AgentSubscription {
  readonly agentId: string
  readonly group: string | undefined
  readonly active: boolean
  unsubscribe(): Promise<void>
}

/** Counters of an {@link AgentMessageBus}. */
export interface AgentBusStats {
  readonly sent: number
  readonly broadcasts: number
  readonly requests: number
  readonly pendingRequests: number
  readonly repliesSent: number
  readonly repliesReceived: number
  readonly timeouts: number
  /** Replies that arrived after their request timed out (discarded). */
  readonly lateReplies: number
  /** Second replies to an already answered request (discarded). */
  readonly duplicateReplies: number
  /** Replies for requests this bus never made or no longer remembers (discarded). */
  readonly unmatchedReplies: number
  readonly handled: number
  readonly handlerFailures: number
}

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/

const BUS_OPTION_NAMES = optionNames<AgentMessageBusOptions>({
  agentId: true,
  prefix: true,
  guarantee: true,
  requestTimeoutMs: true,
  retry: true,
  logger: true,
})
const SUBSCRIBE_AGENT_OPTION_NAMES = optionNames<SubscribeAgentOptions>({
  group: true,
  topics: true,
  broadcasts: true,
  concurrency: true,
  retry: true,
  deadLetter: true,
  from: true,
})
const SEND_OPTION_NAMES = optionNames<SendOptions>({
  from: true,
  headers: true,
  partitionKey: true,
  correlationId: true,
})
const REQUEST_OPTION_NAMES = optionNames<RequestOptions>({
  from: true,
  headers: true,
  partitionKey: true,
  correlationId: true,
  timeoutMs: true,
  signal: true,
})
const BROADCAST_SEGMENT = '_all'
const INBOX_SEGMENT = '_inbox'
const REMEMBERED = 10_000

interface Pending {
  readonly to: string
  readonly resolve: (reply: AgentMessage) => void
  readonly reject: (error: unknown) => void
  readonly timer: NodeJS.Timeout
  readonly cleanup: () => void
}

function checkAgentId(what: string, id: unknown): string {
  if (typeof id !== 'string' || !AGENT_ID.test(id)) {
    throw new ConfigurationError(
      `${what} "${String(id)}" is not a valid agent id: use 1-100 letters, digits, '_' or '-', starting with a letter or digit`,
    )
  }
  return id
}

function remember(map: Map<string, true>, key: string): void {
  map.set(key, true)
  if (map.size > REMEMBERED) map.delete(map.keys().next().value as string)
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Agent-to-agent messaging over any backend. See the module comment for the topic layout. */
export class AgentMessageBus {
  readonly #backend: EventBackend
  #ownsBackend = false
  readonly #agentId: string
  readonly #prefix: string
  readonly #guarantee: Exclude<Guarantee, 'at-most-once'>
  readonly #timeoutMs: number
  readonly #retry: RetryPolicy | undefined
  readonly #logger: Logger | undefined
  readonly #inboxTopic: string
  #inbox: Promise<Subscription> | undefined
  readonly #pending = new Map<string, Pending>()
  readonly #expired = new Map<string, true>()
  readonly #answered = new Map<string, true>()
  readonly #subscriptions = new Set<Subscription>()
  #closed = false
  #closing: Promise<void> | undefined
  readonly #stats = {
    sent: 0,
    broadcasts: 0,
    requests: 0,
    repliesSent: 0,
    repliesReceived: 0,
    timeouts: 0,
    lateReplies: 0,
    duplicateReplies: 0,
    unmatchedReplies: 0,
    handled: 0,
    handlerFailures: 0,
  }

  /**
   * Creates a bus over `backend`. Throws `CapabilityError` when the backend cannot give the
   * guarantee (at-least-once by default), `ConfigurationError` for invalid options.
   */
  constructor(backend: EventBackend, options: AgentMessageBusOptions = {}) {
    if (backend === null || typeof backend !== 'object' || typeof backend.publish !== 'function') {
      throw new ConfigurationError(
        'AgentMessageBus needs an EventBackend (from createBackend(url) or a factory)',
      )
    }
    rejectUnknownOptions('AgentMessageBus option', options, BUS_OPTION_NAMES)
    // The retry policy is otherwise read only at the first subscribeAgent.
    if (options.retry !== undefined) resolveRetryPolicy(options.retry)
    this.#backend = backend
    this.#agentId = checkAgentId('agentId', options.agentId ?? `process-${process.pid}`)
    this.#prefix = options.prefix ?? 'agent'
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(this.#prefix)) {
      throw new ConfigurationError(`AgentMessageBus prefix "${this.#prefix}" is not a valid topic prefix`)
    }
    const guarantee = options.guarantee ?? 'at-least-once'
    if (guarantee !== 'at-least-once' && guarantee !== 'exactly-once') {
      throw new ConfigurationError(
        `AgentMessageBus guarantee must be 'at-least-once' or 'exactly-once', got ${String(guarantee)}`,
      )
    }
    if (!backend.capabilities.guarantees.includes(guarantee)) {
      throw new CapabilityError(
        `the ${backend.name} backend cannot give ${guarantee} delivery (it offers ${backend.capabilities.guarantees.join(', ')}); ` +
          'the AgentMessageBus needs it: use a backend that does',
        { backend: backend.name },
      )
    }
    this.#guarantee = guarantee
    const timeout = options.requestTimeoutMs ?? 30_000
    if (typeof timeout !== 'number' || !(timeout > 0)) {
      throw new ConfigurationError(`AgentMessageBus requestTimeoutMs must be > 0, got ${String(timeout)}`)
    }
    this.#timeoutMs = timeout
    this.#retry = options.retry
    this.#logger = options.logger
    const instance = `${this.#agentId}-${randomUUID().slice(0, 8)}`
    this.#inboxTopic = `${this.#prefix}.${INBOX_SEGMENT}.${instance}`
  }

  /**
   * Creates the backend from a URL (or takes a backend) and connects it. A bus made from a URL
   * owns its backend: `close()` disconnects it.
   */
  static async connect(
    target: string | URL | EventBackend,
    options: AgentMessageBusOptions = {},
  ): Promise<AgentMessageBus> {
    const owns = typeof target === 'string' || target instanceof URL
    const backend = owns ? await createBackend(target) : target
    const bus = new AgentMessageBus(backend, options)
    bus.#ownsBackend = owns
    await bus.start()
    return bus
  }

  /** The backend the bus uses. */
  get backend(): EventBackend {
    return this.#backend
  }

  /** This bus's sender identity. */
  get agentId(): string {
    return this.#agentId
  }

  /** The topic replies to this bus's requests arrive on. */
  get inboxTopic(): string {
    return this.#inboxTopic
  }

  /** Connects the backend (idempotent). */
  async start(): Promise<void> {
    this.#assertOpen()
    await this.#backend.connect()
  }

  /** Topic of a message for `agentId` on the logical `topic`. */
  topicFor(agentId: string, topic: string): string {
    return `${this.#prefix}.${checkAgentId('recipient', agentId)}.${topic}`
  }

  /** Sends `data` to agent `to` on the logical `topic`. Resolves when the backend has it. */
  async send(to: string, topic: string, data: unknown, opts: SendOptions = {}): Promise<PublishReceipt> {
    this.#assertOpen()
    rejectUnknownOptions('send option', opts, SEND_OPTION_NAMES)
    const receipt = await this.#backend.publish(
      this.#input(this.topicFor(to, topic), data, 'message', to, opts),
    )
    this.#stats.sent++
    return receipt
  }

  /** Sends `data` to every subscribed agent. Resolves when the backend has it. */
  async broadcast(topic: string, data: unknown, opts: SendOptions = {}): Promise<PublishReceipt> {
    this.#assertOpen()
    rejectUnknownOptions('send option', opts, SEND_OPTION_NAMES)
    const receipt = await this.#backend.publish(
      this.#input(`${this.#prefix}.${BROADCAST_SEGMENT}.${topic}`, data, 'broadcast', '*', opts),
    )
    this.#stats.broadcasts++
    return receipt
  }

  /**
   * Sends a request to agent `to` and resolves with the reply's data. Rejects with
   * `TimeoutError` when no reply arrives within `timeoutMs` (a reply arriving later is discarded
   * and counted as `lateReplies`), with {@link AgentReplyError} when the responder used
   * `replyError`.
   */
  async request<R = unknown>(
    to: string,
    topic: string,
    data: unknown,
    opts: RequestOptions = {},
  ): Promise<R> {
    const reply = await this.requestMessage<R>(to, topic, data, opts)
    return reply.data
  }

  /** Like {@link request}, resolving with the whole reply message (sender, headers, envelope). */
  async requestMessage<R = unknown>(
    to: string,
    topic: string,
    data: unknown,
    opts: RequestOptions = {},
  ): Promise<AgentMessage<R>> {
    this.#assertOpen()
    rejectUnknownOptions('request option', opts, REQUEST_OPTION_NAMES)
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
      throw new ConfigurationError(`request timeoutMs must be > 0, got ${String(timeoutMs)}`)
    }
    const target = this.topicFor(to, topic)
    await this.#ensureInbox()
    const id = newEventId()
    const input = this.#input(target, data, 'request', to, opts, id)
    opts.signal?.throwIfAborted()
    const reply = new Promise<AgentMessage<R>>((resolve, reject) => {
      const onAbort = (): void => {
        const p = this.#pending.get(id)
        if (p === undefined) return
        this.#pending.delete(id)
        clearTimeout(p.timer)
        remember(this.#expired, id)
        reject(opts.signal?.reason ?? new OmnibusError('request aborted', { code: 'ABORTED' }))
      }
      const timer = setTimeout(() => {
        const p = this.#pending.get(id)
        if (p === undefined) return
        this.#pending.delete(id)
        p.cleanup()
        remember(this.#expired, id)
        this.#stats.timeouts++
        reject(
          new TimeoutError(
            `request to agent "${to}" on "${topic}" got no reply within ${timeoutMs} ms: is an agent "${to}" subscribed?`,
          ),
        )
      }, timeoutMs)
      // The connected backend keeps the process alive while a request waits (see lifetime.ts);
      // the deadline itself must not outlive it.
      timer.unref()
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      this.#pending.set(id, {
        to,
        resolve: resolve as (reply: AgentMessage) => void,
        reject,
        timer,
        cleanup: () => opts.signal?.removeEventListener('abort', onAbort),
      })
    })
    // The deadline covers the publish too, so the reply promise may reject while publish is still
    // pending: mark it handled now; the caller still gets the rejection from `return reply`.
    reply.catch(() => undefined)
    try {
      await this.#backend.publish(input)
    } catch (error) {
      const p = this.#pending.get(id)
      if (p !== undefined) {
        clearTimeout(p.timer)
        p.cleanup()
        this.#pending.delete(id)
      }
      throw error
    }
    this.#stats.requests++
    return reply
  }

  /**
   * Receives the messages for `agentId` (and broadcasts) until unsubscribed. Instances that
   * subscribe with the same group share the work: each message goes to one of them.
   */
  async subscribeAgent<T = unknown>(
    agentId: string,
    handler: AgentHandler<T>,
    opts: SubscribeAgentOptions = {},
  ): Promise<AgentSubscription> {
    this.#assertOpen()
    checkAgentId('agentId', agentId)
    rejectUnknownOptions('subscribeAgent option', opts, SUBSCRIBE_AGENT_OPTION_NAMES)
    if (typeof handler !== 'function') {
      throw new ConfigurationError(
        `subscribeAgent("${agentId}") needs a handler function, got ${typeof handler}`,
      )
    }
    const group = opts.group === false ? undefined : (opts.group ?? `${this.#prefix}.${agentId}`)
    const topics = opts.topics ?? '**'
    const wrapped = (event: OmnibusEvent, ctx: HandlerContext): Promise<void> =>
      this.#handle(event, ctx, handler as AgentHandler)
    const base = {
      guarantee: this.#guarantee,
      ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
      ...((opts.retry ?? this.#retry) ? { retry: (opts.retry ?? this.#retry) as RetryPolicy } : {}),
      ...(opts.deadLetter === undefined ? {} : { deadLetter: opts.deadLetter }),
      ...(opts.from === undefined ? {} : { from: opts.from }),
    }
    const subs: Subscription[] = []
    try {
      subs.push(
        await this.#backend.subscribe(`${this.#prefix}.${agentId}.${topics}`, wrapped, {
          ...base,
          ...(group === undefined ? {} : { group }),
        }),
      )
      if (opts.broadcasts ?? true) {
        subs.push(
          await this.#backend.subscribe(`${this.#prefix}.${BROADCAST_SEGMENT}.${topics}`, wrapped, {
            ...base,
            ...(group === undefined ? {} : { group: `${group}.broadcast` }),
          }),
        )
      }
    } catch (error) {
      await Promise.allSettled(subs.map((s) => s.unsubscribe()))
      throw error
    }
    for (const s of subs) this.#subscriptions.add(s)
    return {
      agentId,
      group,
      get active() {
        return subs.some((s) => s.active)
      },
      unsubscribe: async () => {
        await Promise.all(subs.map((s) => s.unsubscribe()))
        for (const s of subs) this.#subscriptions.delete(s)
      },
    }
  }

  /** A snapshot of the counters. */
  stats(): AgentBusStats {
    return { ...this.#stats, pendingRequests: this.#pending.size }
  }

  /** The counters in Prometheus text exposition format (`omnibus_agent_*`). */
  prometheus(labels: Readonly<Record<string, string>> = {}): string {
    return agentPrometheusText(this.stats(), labels)
  }

  /**
   * Rejects pending requests, ends this bus's subscriptions (letting their running handlers
   * finish) and stops its timers. Disconnects the backend only when the bus created it
   * ({@link AgentMessageBus.connect} with a URL), which lets the process exit (see the core
   * README, "Process lifetime"). Idempotent: every call resolves when the first one is done.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#closed = true
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer)
      p.cleanup()
      p.reject(
        new OmnibusError('the AgentMessageBus was closed before the reply arrived', { code: 'BUS_CLOSED' }),
      )
      this.#pending.delete(id)
    }
    const inbox = this.#inbox
    this.#inbox = undefined
    const subs = [...this.#subscriptions]
    this.#subscriptions.clear()
    if (inbox !== undefined) subs.push(await inbox.catch(() => undefined as unknown as Subscription))
    await Promise.allSettled(subs.filter((s) => s !== undefined).map((s) => s.unsubscribe()))
    if (this.#ownsBackend) await this.#backend.disconnect()
  }

  #assertOpen(): void {
    if (this.#closed) throw new ConfigurationError('this AgentMessageBus is closed; create a new one')
  }

  #input(
    topic: string,
    data: unknown,
    kind: AgentMessageKind,
    to: string,
    opts: SendOptions,
    id?: string,
  ): EventInput {
    const from = opts.from === undefined ? this.#agentId : checkAgentId('from', opts.from)
    const headers: Record<string, string> = {
      ...opts.headers,
      [AGENT_HEADERS.from]: from,
      [AGENT_HEADERS.to]: to,
      [AGENT_HEADERS.kind]: kind,
    }
    if (kind === 'request' && id !== undefined) {
      headers[AGENT_HEADERS.replyTo] = this.#inboxTopic
      headers[AGENT_HEADERS.correlationId] = id
    }
    const input: { -readonly [K in keyof EventInput]: EventInput[K] } = {
      topic,
      data,
      source: from,
      headers,
      guarantee: this.#guarantee,
    }
    if (id !== undefined) input.id = id
    if (opts.partitionKey !== undefined) input.partitionKey = opts.partitionKey
    if (opts.correlationId !== undefined) input.correlationId = opts.correlationId
    return input
  }

  #toMessage<T>(event: OmnibusEvent<T>): AgentMessage<T> {
    const h = event.headers
    const kind = (h[AGENT_HEADERS.kind] as AgentMessageKind | undefined) ?? 'message'
    // agent.<to>.<topic...>: strip the prefix and the recipient segment.
    const rest = event.topic.slice(this.#prefix.length + 1)
    const dot = rest.indexOf('.')
    const segment = dot < 0 ? rest : rest.slice(0, dot)
    return {
      id: event.id,
      kind,
      from: h[AGENT_HEADERS.from] ?? event.source,
      to: h[AGENT_HEADERS.to] ?? (segment === BROADCAST_SEGMENT ? '*' : segment),
      topic: dot < 0 ? '' : rest.slice(dot + 1),
      data: event.data,
      correlationId: h[AGENT_HEADERS.correlationId],
      replyTo: h[AGENT_HEADERS.replyTo],
      event,
    }
  }

  async #handle(event: OmnibusEvent, raw: HandlerContext, handler: AgentHandler): Promise<void> {
    const message = this.#toMessage(event)
    const canReply = message.replyTo !== undefined && message.correlationId !== undefined
    const sendReply = async (data: unknown, error?: string): Promise<void> => {
      if (!canReply) {
        throw new ConfigurationError(
          `message ${message.id} on "${event.topic}" is not a request (sent with send/broadcast): there is no one to reply to`,
        )
      }
      const headers: Record<string, string> = {
        [AGENT_HEADERS.from]: message.to === '*' ? this.#agentId : message.to,
        [AGENT_HEADERS.to]: message.from,
        [AGENT_HEADERS.kind]: 'reply',
        [AGENT_HEADERS.correlationId]: message.correlationId as string,
      }
      if (error !== undefined) headers[AGENT_HEADERS.error] = error.slice(0, 2000)
      await this.#backend.publish({
        topic: message.replyTo as string,
        data: data === undefined ? null : data,
        source: headers[AGENT_HEADERS.from] as string,
        headers,
        guarantee: this.#guarantee,
      })
      this.#stats.repliesSent++
    }
    const ctx: AgentContext = {
      attempt: raw.attempt,
      signal: raw.signal,
      logger: raw.logger,
      canReply,
      reply: (data) => sendReply(data),
      replyError: (error) => sendReply(null, errorMessage(error)),
      retry: (delayMs) => raw.retry(delayMs),
      deadLetter: (reason) => raw.deadLetter(reason),
      raw,
    }
    try {
      await handler(message, ctx)
      this.#stats.handled++
    } catch (error) {
      this.#stats.handlerFailures++
      throw error
    }
  }

  #ensureInbox(): Promise<Subscription> {
    if (this.#inbox === undefined) {
      const p = this.#backend.subscribe(this.#inboxTopic, (event) => this.#onReply(event), {
        guarantee: this.#guarantee,
        concurrency: 64,
      })
      p.then(
        (s) => this.#subscriptions.add(s),
        () => {
          if (this.#inbox === p) this.#inbox = undefined
        },
      )
      this.#inbox = p
    }
    return this.#inbox
  }

  #onReply(event: OmnibusEvent): void {
    const message = this.#toMessage(event)
    const id = message.correlationId
    const pending = id === undefined ? undefined : this.#pending.get(id)
    if (id === undefined || pending === undefined) {
      if (id !== undefined && this.#expired.has(id)) this.#stats.lateReplies++
      else if (id !== undefined && this.#answered.has(id)) this.#stats.duplicateReplies++
      else this.#stats.unmatchedReplies++
      this.#logger?.debug('discarded a reply that no request is waiting for', { correlationId: id })
      return
    }
    this.#pending.delete(id)
    clearTimeout(pending.timer)
    pending.cleanup()
    remember(this.#answered, id)
    this.#stats.repliesReceived++
    const error = event.headers[AGENT_HEADERS.error]
    if (error !== undefined) pending.reject(new AgentReplyError(message.from, error))
    else pending.resolve(message)
  }
}
