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
import { AgentReplyError, AgentUnavailableError } from './agent/errors.ts'
import {
  type AgentPresence,
  type PresenceEvent,
  type PresenceOptions,
  PresenceTracker,
  resolvePresence,
} from './agent/presence.ts'
import { checkFanOut, gather, type RequestAllResult } from './agent/request-all.ts'
import { resolveRetryPolicy } from './delivery.ts'
import { newEventId } from './envelope.ts'
import { CapabilityError, ConfigurationError, OmnibusError, TimeoutError } from './errors.ts'
import { decideFailure, type HandlerOutcome } from './kernel/outcome.ts'
import type { ResolvedSubscribeOptions } from './kernel/subscribe-options.ts'
import { optionNames, rejectUnknownOptions } from './options.ts'
import { agentPrometheusText } from './prometheus.ts'
import {
  DEFAULT_DEAD_LETTER_TOPIC,
  type EventBackend,
  type EventInput,
  type Guarantee,
  type HandlerContext,
  type Logger,
  type OmnibusEvent,
  type PublishReceipt,
  type RetryPolicy,
  type Subscription,
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
  /** `HANDLER_FAILED` on the reply a failed handler's request gets; absent for `replyError`. */
  errorCode: 'omnibus-agent-error-code',
  errorName: 'omnibus-agent-error-name',
  /** Handler runs the request got before it failed for good. */
  attempts: 'omnibus-agent-attempts',
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
  /**
   * Heartbeats and presence (`presence()`, `onPresence`, fail-fast requests with
   * `AgentUnavailableError`). Off by default: turn it on in every process of the application
   * (with the same prefix), since a bus with presence on calls an agent whose bus never
   * heartbeats unavailable. `true` takes the default interval. @default false
   */
  readonly presence?: boolean | PresenceOptions
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
  /**
   * What becomes of a message that arrives after its deadline (a request whose caller has timed
   * out, a `send` past its `deadline`): its handler never runs either way; it is dropped, or
   * dead-lettered with reason `expired`. Counted in `stats().expired`. @default 'drop'
   */
  readonly expired?: 'drop' | 'dead-letter'
}

/** Options of one `send`/`broadcast`/`request`. */
export interface SendOptions {
  /** Overrides the bus's `agentId` as sender. */
  readonly from?: string
  /** Extra envelope headers. */
  readonly headers?: Readonly<Record<string, string>>
  readonly partitionKey?: string
  readonly correlationId?: string
  /**
   * Epoch ms or `Date` after which the message is worthless: the recipient runs no handler for it
   * after then (it is dropped and counted), and a handler still running sees `ctx.signal` abort.
   * The envelope's `expiresAt`. Not for `request`, whose `timeoutMs` sets it.
   */
  readonly deadline?: number | Date
  /** Deliver no earlier than this many ms from now (the envelope's `deliverAt`). Not with `deliverAt`. */
  readonly delayMs?: number
  /** Deliver no earlier than this time (epoch ms or `Date`). Not with `delayMs`. */
  readonly deliverAt?: number | Date
}

/** Options of `request`: a request's deadline is its timeout, so it takes no `deadline` or delay. */
export interface RequestOptions extends Omit<SendOptions, 'deadline' | 'delayMs' | 'deliverAt'> {
  /** Reject with `TimeoutError` after this long without a reply. @default the bus's requestTimeoutMs */
  readonly timeoutMs?: number
  /** Aborting rejects the request at once. */
  readonly signal?: AbortSignal
  /**
   * With presence on: send even when no instance of the agent is live, leaving the request in its
   * mailbox until one starts or the deadline passes. @default false
   */
  readonly queue?: boolean
}

/** Options of `requestAll`: those of `request`, plus `min`. */
export interface RequestAllOptions extends RequestOptions {
  /**
   * Replies required: fewer by the deadline, or so many failures that `min` can no longer be
   * reached, rejects with `AgentQuorumError` (the partial result attached). @default no minimum
   */
  readonly min?: number
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
  /** Failure replies sent for requests whose handler failed for good (`HANDLER_FAILED`). */
  readonly failureReplies: number
  /** Requests refused at once because presence knew the agent had no live instance. */
  readonly unavailable: number
  /**
   * Messages for this bus's agents that arrived after their deadline (a request whose caller had
   * timed out, a `send` past its `deadline`): no handler ran for them.
   */
  readonly expired: number
}

const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/

const BUS_OPTION_NAMES = optionNames<AgentMessageBusOptions>({
  agentId: true,
  prefix: true,
  guarantee: true,
  requestTimeoutMs: true,
  retry: true,
  logger: true,
  presence: true,
})
const SUBSCRIBE_AGENT_OPTION_NAMES = optionNames<SubscribeAgentOptions>({
  group: true,
  topics: true,
  broadcasts: true,
  concurrency: true,
  retry: true,
  deadLetter: true,
  from: true,
  expired: true,
})
const SEND_OPTION_NAMES = optionNames<SendOptions>({
  from: true,
  headers: true,
  partitionKey: true,
  correlationId: true,
  deadline: true,
  delayMs: true,
  deliverAt: true,
})
const REQUEST_OPTION_NAMES = optionNames<RequestOptions>({
  from: true,
  headers: true,
  partitionKey: true,
  correlationId: true,
  timeoutMs: true,
  signal: true,
  queue: true,
})
const REQUEST_ALL_OPTION_NAMES = [...REQUEST_OPTION_NAMES, 'min']
const BROADCAST_SEGMENT = '_all'
const INBOX_SEGMENT = '_inbox'
const PRESENCE_SEGMENT = '_presence'
const REMEMBERED = 10_000

interface Pending {
  readonly to: string
  readonly resolve: (reply: AgentMessage) => void
  readonly reject: (error: unknown) => void
  /**
   * Aborted once the request is settled, to end whatever still waits for it (presence). Made only
   * when something waits: a request's round trip is a few microseconds on the memory backend.
   */
  settled: AbortController | undefined
  readonly timer: NodeJS.Timeout
  readonly cleanup: () => void
}

/** What decides whether a failed run was the last: the subscription's own resolved options. */
type FailurePolicy = Pick<ResolvedSubscribeOptions, 'retry' | 'deadLetter' | 'guarantee'>

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

/** The error headers of a reply: message, and name when the error is an Error. */
function errorHeaders(error: unknown): Record<string, string> {
  const headers: Record<string, string> = { [AGENT_HEADERS.error]: errorMessage(error).slice(0, 2000) }
  if (error instanceof Error && error.name !== '') headers[AGENT_HEADERS.errorName] = error.name.slice(0, 200)
  return headers
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
  readonly #presence: PresenceTracker | undefined
  #inbox: Promise<Subscription> | undefined
  /** The inbox subscription once it exists, so a request need not await it again. */
  #inboxLive: Subscription | undefined
  readonly #pending = new Map<string, Pending>()
  readonly #expired = new Map<string, true>()
  readonly #answered = new Map<string, true>()
  readonly #subscriptions = new Set<Subscription>()
  /** Recipients whose mailbox this bus has declared (see {@link AgentMessageBus.send}). */
  readonly #mailboxes = new Map<string, Promise<void>>()
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
    failureReplies: 0,
    unavailable: 0,
    expired: 0,
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
    const presence = resolvePresence(options.presence)
    this.#presence =
      presence === undefined
        ? undefined
        : new PresenceTracker({
            backend,
            topic: `${this.#prefix}.${PRESENCE_SEGMENT}`,
            instance,
            heartbeatMs: presence.heartbeatMs,
            logger: options.logger,
            fallbackGuarantee: guarantee,
          })
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

  /**
   * Connects the backend (idempotent). With presence on, also starts listening to heartbeats, asks
   * every live bus to announce its agents, and waits (at most one heartbeat interval) until it
   * hears its own question come back.
   */
  async start(): Promise<void> {
    this.#assertOpen()
    await this.#backend.connect()
    await this.#presence?.ready()
  }

  /**
   * What presence knows of every agent heard of: live instances, last heartbeat, `online` or
   * `offline`. Throws `ConfigurationError` when presence is off.
   */
  presence(): AgentPresence[] {
    return this.#tracker('presence()').list()
  }

  /**
   * Calls `listener` on every join and leave of an agent instance (including this bus's own
   * agents). Returns the function that removes the listener. Throws `ConfigurationError` when
   * presence is off.
   */
  onPresence(listener: (event: PresenceEvent) => void): () => void {
    return this.#tracker('onPresence()').onPresence(listener)
  }

  /** Topic of a message for `agentId` on the logical `topic`. */
  topicFor(agentId: string, topic: string): string {
    return `${this.#prefix}.${checkAgentId('recipient', agentId)}.${topic}`
  }

  /** Sends `data` to agent `to` on the logical `topic`. Resolves when the backend has it. */
  async send(to: string, topic: string, data: unknown, opts: SendOptions = {}): Promise<PublishReceipt> {
    this.#assertOpen()
    rejectUnknownOptions('send option', opts, SEND_OPTION_NAMES)
    await this.#ensureMailbox(to)
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
    const id = newEventId()
    // The deadline travels with the request, so the agent does not start it once the caller has
    // given up, and a handler still running sees its signal abort then.
    const input = this.#input(this.topicFor(to, topic), data, 'request', to, opts, id, Date.now() + timeoutMs)
    opts.signal?.throwIfAborted()
    // Registered before the first await, so that close() in the same tick rejects it at once.
    const reply = this.#expect<R>(id, to, topic, timeoutMs, opts.signal)
    // The deadline covers the publish too, so the reply promise may reject while publish is still
    // pending: mark it handled now; the caller still gets the rejection from `return reply`.
    reply.catch(() => undefined)
    try {
      if (this.#inboxLive === undefined) await this.#ensureInbox()
      if (this.#presence !== undefined && opts.queue !== true && !this.#presence.isOnline(to)) {
        await this.#presence.start()
        const waiting = this.#pending.get(id)
        if (waiting === undefined) return await reply
        waiting.settled ??= new AbortController()
        const state = await this.#presence.check(to, waiting.settled.signal)
        if (state === 'offline' && this.#pending.has(id)) {
          this.#stats.unavailable++
          throw new AgentUnavailableError(to, this.#presence.get(to)?.lastSeen)
        }
      }
      await this.#ensureMailbox(to)
      // Closed, timed out or aborted meanwhile: nothing is sent, the reply promise says why.
      if (!this.#pending.has(id)) return await reply
      await this.#backend.publish(input)
    } catch (error) {
      if (!this.#pending.has(id)) return await reply
      this.#forget(id)
      throw error
    }
    this.#stats.requests++
    return reply
  }

  /**
   * Sends the same request to every agent in `agentIds` at once, each with the deadline
   * `timeoutMs` from now, and gathers the answers: resolves with `{ replies, missing, failures }`
   * when every agent has answered with a reply or a failure, or when the deadline has passed,
   * whichever comes first. A failure of one agent (its handler failed, it is unavailable, it did
   * not answer in time) is kept in `failures` and never rejects the call. With `min`, rejects with
   * `AgentQuorumError` when fewer than `min` replied by then, or at once when so many agents have
   * failed that `min` replies can no longer come.
   */
  async requestAll<R = unknown>(
    agentIds: readonly string[],
    topic: string,
    data: unknown,
    opts: RequestAllOptions = {},
  ): Promise<RequestAllResult<R>> {
    this.#assertOpen()
    rejectUnknownOptions('requestAll option', opts, REQUEST_ALL_OPTION_NAMES)
    const { min: minOption, ...requestOpts } = opts
    const { ids, min } = checkFanOut(agentIds, minOption)
    for (const id of ids) checkAgentId('agent id', id)
    const timeoutMs = requestOpts.timeoutMs ?? this.#timeoutMs
    const user = requestOpts.signal
    return gather<R>(ids, min, (agentId, abandon) =>
      this.request<R>(agentId, topic, data, {
        ...requestOpts,
        timeoutMs,
        signal: user === undefined ? abandon : AbortSignal.any([user, abandon]),
      }),
    )
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
    // The kernel resolves the same policy from the same options: a failure reply goes out exactly
    // when the kernel stops retrying.
    const policy: FailurePolicy = {
      retry: resolveRetryPolicy(opts.retry ?? this.#retry),
      deadLetter: opts.deadLetter ?? DEFAULT_DEAD_LETTER_TOPIC,
      guarantee: this.#guarantee,
    }
    const wrapped = (event: OmnibusEvent, ctx: HandlerContext): Promise<void> =>
      this.#handle(event, ctx, handler as AgentHandler, policy)
    const base = {
      guarantee: this.#guarantee,
      ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
      ...((opts.retry ?? this.#retry) ? { retry: (opts.retry ?? this.#retry) as RetryPolicy } : {}),
      ...(opts.deadLetter === undefined ? {} : { deadLetter: opts.deadLetter }),
      ...(opts.from === undefined ? {} : { from: opts.from }),
      expired: opts.expired ?? 'drop',
      onExpired: () => {
        this.#stats.expired++
      },
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
    if (this.#presence !== undefined) {
      this.#presence.addLocal(agentId)
      await this.#presence.start()
    }
    let ended = false
    return {
      agentId,
      group,
      get active() {
        return subs.some((s) => s.active)
      },
      unsubscribe: async () => {
        await Promise.all(subs.map((s) => s.unsubscribe()))
        for (const s of subs) this.#subscriptions.delete(s)
        if (!ended) {
          ended = true
          this.#presence?.removeLocal(agentId)
        }
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
    for (const id of [...this.#pending.keys()]) {
      this.#forget(id)?.reject(
        new OmnibusError('the AgentMessageBus was closed before the reply arrived', { code: 'BUS_CLOSED' }),
      )
    }
    const inbox = this.#inbox
    this.#inbox = undefined
    this.#inboxLive = undefined
    const subs = [...this.#subscriptions]
    this.#subscriptions.clear()
    if (inbox !== undefined) subs.push(await inbox.catch(() => undefined as unknown as Subscription))
    await Promise.allSettled(subs.filter((s) => s !== undefined).map((s) => s.unsubscribe()))
    // After the agents' subscriptions ended, so that the leave others see is true.
    await this.#presence?.stop()
    if (this.#ownsBackend) await this.#backend.disconnect()
  }

  #assertOpen(): void {
    if (this.#closed) throw new ConfigurationError('this AgentMessageBus is closed; create a new one')
  }

  #tracker(what: string): PresenceTracker {
    if (this.#presence === undefined) {
      throw new ConfigurationError(
        `${what} needs presence: create the AgentMessageBus with { presence: true } (in every process)`,
      )
    }
    return this.#presence
  }

  /** Registers a request waiting for its reply, with its deadline and abort. */
  #expect<R>(
    id: string,
    to: string,
    topic: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<AgentMessage<R>> {
    const reply = new Promise<AgentMessage<R>>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#forget(id)) return
        remember(this.#expired, id)
        reject(signal?.reason ?? new OmnibusError('request aborted', { code: 'ABORTED' }))
      }
      const timer = setTimeout(() => {
        if (!this.#forget(id)) return
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
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#pending.set(id, {
        to,
        resolve: resolve as (reply: AgentMessage) => void,
        reject,
        settled: undefined,
        timer,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      })
    })
    return reply
  }

  /** Removes a waiting request and ends what waits with it; undefined when it was not waiting. */
  #forget(id: string): Pending | undefined {
    const p = this.#pending.get(id)
    if (p === undefined) return undefined
    this.#pending.delete(id)
    clearTimeout(p.timer)
    p.cleanup()
    p.settled?.abort()
    return p
  }

  #input(
    topic: string,
    data: unknown,
    kind: AgentMessageKind,
    to: string,
    opts: SendOptions,
    id?: string,
    expiresAt?: number,
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
    // The envelope checks these (a bad or conflicting value is a ConfigurationError at publish).
    const expires = expiresAt ?? opts.deadline
    if (expires !== undefined) input.expiresAt = expires
    if (opts.delayMs !== undefined) input.delayMs = opts.delayMs
    if (opts.deliverAt !== undefined) input.deliverAt = opts.deliverAt
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

  async #handle(
    event: OmnibusEvent,
    raw: HandlerContext,
    handler: AgentHandler,
    policy: FailurePolicy,
  ): Promise<void> {
    const message = this.#toMessage(event)
    const canReply = message.replyTo !== undefined && message.correlationId !== undefined
    let replied = false
    const sendReply = async (data: unknown, error?: Readonly<Record<string, string>>): Promise<void> => {
      if (!canReply) {
        throw new ConfigurationError(
          `message ${message.id} on "${event.topic}" is not a request (sent with send/broadcast): there is no one to reply to`,
        )
      }
      replied = true
      const headers: Record<string, string> = {
        ...error,
        [AGENT_HEADERS.from]: message.to === '*' ? this.#agentId : message.to,
        [AGENT_HEADERS.to]: message.from,
        [AGENT_HEADERS.kind]: 'reply',
        [AGENT_HEADERS.correlationId]: message.correlationId as string,
      }
      await this.#backend.publish({
        topic: message.replyTo as string,
        data: data === undefined ? null : data,
        source: headers[AGENT_HEADERS.from] as string,
        headers,
        guarantee: this.#guarantee,
      })
      this.#stats.repliesSent++
    }
    // What the handler asked of the kernel, seen the way the kernel's runner sees it.
    let asked: Exclude<HandlerOutcome, { kind: 'ack' }> | undefined
    const ctx: AgentContext = {
      attempt: raw.attempt,
      // Read through: an expiring request's signal is only made if the handler asks for it.
      get signal() {
        return raw.signal
      },
      logger: raw.logger,
      canReply,
      reply: (data) => sendReply(data),
      replyError: (error) => sendReply(null, errorHeaders(error)),
      retry: (delayMs) => {
        asked = { kind: 'retry', delayMs, error: new Error('handler asked for a retry') }
        raw.retry(delayMs)
      },
      deadLetter: (reason) => {
        asked = { kind: 'dead-letter', reason, error: undefined }
        raw.deadLetter(reason)
      },
      raw,
    }
    let outcome: Exclude<HandlerOutcome, { kind: 'ack' }> | undefined
    let thrown: { error: unknown } | undefined
    try {
      await handler(message, ctx)
      outcome = asked
    } catch (error) {
      thrown = { error }
      outcome = asked ?? { kind: 'retry', delayMs: undefined, error }
    }
    if (outcome === undefined) this.#stats.handled++
    else {
      this.#stats.handlerFailures++
      if (canReply && !replied && decideFailure(policy, raw.attempt, outcome).action !== 'retry') {
        await this.#replyFailure(outcome, raw.attempt, sendReply)
      }
    }
    if (thrown !== undefined) throw thrown.error
  }

  /**
   * Tells the requester its request failed for good, so it does not wait for its timeout. Never
   * throws: the kernel goes on to dead-letter the request whatever happens here.
   */
  async #replyFailure(
    outcome: Exclude<HandlerOutcome, { kind: 'ack' }>,
    attempts: number,
    sendReply: (data: unknown, error: Readonly<Record<string, string>>) => Promise<void>,
  ): Promise<void> {
    const headers: Record<string, string> =
      outcome.kind === 'dead-letter'
        ? { [AGENT_HEADERS.error]: outcome.reason.slice(0, 2000), [AGENT_HEADERS.errorName]: 'DeadLetter' }
        : errorHeaders(outcome.error)
    headers[AGENT_HEADERS.errorCode] = 'HANDLER_FAILED'
    headers[AGENT_HEADERS.attempts] = String(attempts)
    try {
      await sendReply(null, headers)
      this.#stats.failureReplies++
    } catch (error) {
      this.#logger?.warn('the failure reply of a request could not be sent; the requester will time out', {
        error: errorMessage(error),
      })
    }
  }

  /**
   * Declares the mailbox of agent `to` (once per recipient per bus): the group and pattern of its
   * default `subscribeAgent`, so messages sent before the agent first subscribes wait for it.
   */
  #ensureMailbox(to: string): Promise<void> {
    let declared = this.#mailboxes.get(to)
    if (declared === undefined) {
      checkAgentId('recipient', to)
      const p = this.#backend.ensureGroup(`${this.#prefix}.${to}.**`, `${this.#prefix}.${to}`)
      // A failed declaration is tried again by the next send; the caller gets this one's error.
      p.catch(() => {
        if (this.#mailboxes.get(to) === p) this.#mailboxes.delete(to)
      })
      this.#mailboxes.set(to, p)
      if (this.#mailboxes.size > REMEMBERED)
        this.#mailboxes.delete(this.#mailboxes.keys().next().value as string)
      declared = p
    }
    return declared
  }

  #ensureInbox(): Promise<Subscription> {
    if (this.#inbox === undefined) {
      const p = this.#backend.subscribe(this.#inboxTopic, (event) => this.#onReply(event), {
        guarantee: this.#guarantee,
        concurrency: 64,
      })
      p.then(
        (s) => {
          this.#subscriptions.add(s)
          if (this.#inbox === p) this.#inboxLive = s
        },
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
    this.#forget(id)
    remember(this.#answered, id)
    this.#stats.repliesReceived++
    const h = event.headers
    const error = h[AGENT_HEADERS.error]
    if (error === undefined) {
      pending.resolve(message)
      return
    }
    const attempts = Number(h[AGENT_HEADERS.attempts])
    pending.reject(
      new AgentReplyError(message.from, error, {
        ...(h[AGENT_HEADERS.errorCode] === 'HANDLER_FAILED' ? { code: 'HANDLER_FAILED' as const } : {}),
        ...(h[AGENT_HEADERS.errorName] === undefined ? {} : { errorName: h[AGENT_HEADERS.errorName] }),
        ...(Number.isInteger(attempts) && attempts > 0 ? { attempts } : {}),
      }),
    )
  }
}
