/**
 * The connection to the broker and the confirm channel every publish goes through. It reconnects
 * with backoff after the connection drops, re-declares the exchanges, and tells the backend to
 * re-attach its subscriptions. Publishes wait for the link (up to their deadline) instead of
 * failing at the first hiccup, and are re-sent when their channel closed before the confirm.
 */
import { ConfigurationError, ConnectionError, type Logger } from '@omnibus/core'
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib'
import { classifyError, replyCodeOf } from './errors.ts'
import type { ResolvedRabbitMQOptions } from './options.ts'
import { delayQueueName, SCHEDULE_LEVELS, scheduleBitHeader, scheduleLevelName } from './topology.ts'

/** Header that routes a retry copy to the delay queue of its bucket. */
export const DELAY_HEADER = 'omnibus-delay'

type LinkState = 'idle' | 'connecting' | 'up' | 'down' | 'closed'

/** What the link calls back into. */
export interface LinkHooks {
  /** A fresh connection is ready: re-attach consumers. Errors are logged; the sub retries on the next link. */
  onUp(model: ChannelModel): Promise<void>
  /** The connection dropped: consumers are gone with it. */
  onDown(error: Error | undefined): void
}

/** Thrown inside the publish loop when the channel closed before the broker confirmed. */
class Unconfirmed extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    // The backend's hold keeps the process alive while the link is down, not this backoff.
    t.unref()
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** The broker link of one backend instance. */
export class Link {
  readonly #o: ResolvedRabbitMQOptions
  readonly #log: Logger
  readonly #hooks: LinkHooks
  #state: LinkState = 'idle'
  #model: ChannelModel | undefined
  #pub: ConfirmChannel | undefined
  #admin: Channel | undefined
  #adminOpening: Promise<Channel> | undefined
  #upWaiters: Array<() => void> = []
  #inflight = 0
  #slotWaiters: Array<() => void> = []
  #slotTimer: NodeJS.Timeout | undefined
  #upTimer: NodeJS.Timeout | undefined
  #detach: (() => void) | undefined
  #writable = true
  #closing = new AbortController()
  #lastError: Error | undefined
  #delayDeclaredAt = new Map<number, number>()
  /** The schedule's declaration on the current connection (made once, on the first delayed publish). */
  #schedule: Promise<void> | undefined
  #reconnecting: Promise<void> | undefined

  constructor(options: ResolvedRabbitMQOptions, hooks: LinkHooks) {
    this.#o = options
    this.#log = options.logger
    this.#hooks = hooks
  }

  /** True while a connection and its publish channel are open. */
  get up(): boolean {
    return this.#state === 'up'
  }

  /** True once `open()` succeeded and until `close()`, including while reconnecting. */
  get open(): boolean {
    return this.#state === 'up' || this.#state === 'down'
  }

  /** The current connection, when up. */
  get model(): ChannelModel | undefined {
    return this.#state === 'up' ? this.#model : undefined
  }

  /** Last connection error, for health details. */
  get lastError(): Error | undefined {
    return this.#lastError
  }

  /** Publishes awaiting a confirm. */
  get inflight(): number {
    return this.#inflight
  }

  /** First connection. Fails fast (no retry) with a `ConnectionError` naming the endpoint. */
  async openFirst(): Promise<void> {
    if (this.#state === 'closed') this.#closing = new AbortController()
    this.#state = 'connecting'
    try {
      await this.#establish()
    } catch (error) {
      this.#state = 'idle'
      throw classifyError(error, 'connect', this.#o.endpoint)
    }
  }

  async #connect(): Promise<ChannelModel> {
    if (this.#o.connection !== undefined) return this.#o.connection
    const url = new URL(this.#o.url)
    if (!url.searchParams.has('heartbeat'))
      url.searchParams.set('heartbeat', String(this.#o.heartbeatSeconds))
    // Nagle's algorithm adds ~20 ms to every small publish and ack on loopback.
    const socket = { ...this.#o.tls, noDelay: true, timeout: this.#o.connectTimeoutMs }
    return amqp.connect(url.toString(), socket)
  }

  async #establish(): Promise<void> {
    const model = await this.#connect()
    try {
      const pub = await model.createConfirmChannel()
      await pub.assertExchange(this.#o.exchange, 'topic', { durable: true })
      await pub.assertExchange(`${this.#o.prefix}.delay`, 'headers', { durable: true })
      this.#model = model
      this.#pub = pub
      this.#admin = undefined
      this.#delayDeclaredAt.clear()
      this.#schedule = undefined
      this.#writable = true
      const onError = (error: Error): void => {
        this.#lastError = error
        this.#log.warn('rabbitmq connection error', { error: error.message })
      }
      const onClose = (error?: Error): void => this.#lost(model, error)
      model.on('error', onError)
      model.on('close', onClose)
      // A caller's connection outlives this backend: take the listeners off again on close().
      this.#detach = () => {
        model.off('error', onError)
        model.off('close', onClose)
      }
      this.#watchPublisher(model, pub)
    } catch (error) {
      if (this.#o.connection === undefined) await model.close().catch(() => {})
      throw error
    }
    if (this.#state === 'closed') {
      // disconnect() ran while this attempt was connecting: do not come back to life.
      const pub = this.#pub
      this.#model = undefined
      this.#pub = undefined
      if (this.#o.connection === undefined) await model.close().catch(() => {})
      else await pub?.close().catch(() => {})
      return
    }
    this.#state = 'up'
    this.#lastError = undefined
    const waiters = this.#upWaiters
    this.#upWaiters = []
    for (const w of waiters) w()
    await this.#hooks.onUp(model).catch((error: unknown) => {
      this.#log.error('rabbitmq: re-attaching subscriptions failed', { error: String(error) })
    })
  }

  #watchPublisher(model: ChannelModel, pub: ConfirmChannel): void {
    pub.on('error', (error: Error) => {
      this.#lastError = error
      this.#log.warn('rabbitmq publish channel error', { error: error.message })
    })
    pub.on('drain', () => {
      this.#writable = true
      this.#wakeSlots()
    })
    pub.on('close', () => {
      if (this.#pub !== pub) return
      this.#pub = undefined
      this.#writable = true
      this.#wakeSlots()
      if (this.#state !== 'up' || this.#model !== model) return
      // The connection is still there: only this channel died (e.g. a refused publish).
      model
        .createConfirmChannel()
        .then((next) => {
          if (this.#model !== model || this.#state !== 'up') return next.close().catch(() => {})
          this.#pub = next
          this.#watchPublisher(model, next)
          this.#wakeUp()
        })
        .catch((error: unknown) => {
          // A connection that cannot open a channel is no use: drop it and reconnect from scratch.
          this.#log.warn('rabbitmq: reopening the publish channel failed; reconnecting', {
            error: String(error),
          })
          if (this.#model === model && this.#o.connection === undefined) model.close().catch(() => {})
        })
    })
  }

  #wakeUp(): void {
    const waiters = this.#upWaiters
    this.#upWaiters = []
    for (const w of waiters) w()
  }

  #lost(model: ChannelModel, error: Error | undefined): void {
    if (this.#model !== model) return
    this.#model = undefined
    this.#pub = undefined
    this.#admin = undefined
    this.#writable = true
    this.#wakeSlots()
    if (this.#state === 'closed') return
    this.#state = 'down'
    if (error !== undefined) this.#lastError = error
    this.#log.warn('rabbitmq connection lost, reconnecting', { error: error?.message })
    this.#hooks.onDown(error)
    if (this.#o.connection !== undefined) return // not ours to re-open
    this.#reconnecting ??= this.#reconnectLoop().finally(() => {
      this.#reconnecting = undefined
    })
  }

  async #reconnectLoop(): Promise<void> {
    let delay = 100
    while (this.#state === 'down') {
      try {
        await this.#establish()
        this.#log.info('rabbitmq reconnected')
        return
      } catch (error) {
        this.#lastError = error as Error
        await sleep(delay * (0.8 + Math.random() * 0.4), this.#closing.signal)
        delay = Math.min(delay * 2, this.#o.reconnectMaxDelayMs)
      }
    }
  }

  /** Resolves when the link is up, or throws a retryable `ConnectionError` at `deadline`. */
  async waitUp(deadline: number, action: string): Promise<ChannelModel> {
    for (;;) {
      if (this.#state === 'up' && this.#model !== undefined) return this.#model
      await this.#waitForChange(deadline, action)
    }
  }

  async #waitForChange(deadline: number, action: string): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'idle') {
      throw new ConnectionError(
        `cannot ${action}: the rabbitmq backend is not connected; call connect() first`,
        {
          backend: 'rabbitmq',
          code: 'NOT_CONNECTED',
          retryable: false,
        },
      )
    }
    const left = deadline - Date.now()
    if (left <= 0) {
      throw new ConnectionError(
        `cannot ${action}: RabbitMQ at ${this.#o.endpoint} has been unreachable for the whole publish timeout` +
          `${this.#lastError ? ` (${this.#lastError.message})` : ''}; the event was not accepted, publish it again`,
        { backend: 'rabbitmq', code: 'CONNECTION_LOST', retryable: true, cause: this.#lastError },
      )
    }
    await new Promise<void>((resolve) => {
      this.#upWaiters.push(resolve)
      this.#armUpTimer()
    })
  }

  /** One timer for everything waiting on the link, so each re-checks its deadline every 250 ms. */
  #armUpTimer(): void {
    if (this.#upTimer !== undefined) return
    this.#upTimer = setTimeout(() => {
      this.#upTimer = undefined
      if (this.#upWaiters.length > 0) this.#wakeUp()
    }, 250)
    this.#upTimer.unref()
  }

  #wakeSlots(): void {
    const waiters = this.#slotWaiters
    this.#slotWaiters = []
    for (const w of waiters) w()
  }

  async #slot(deadline: number, action: string): Promise<ConfirmChannel> {
    for (;;) {
      const pub = this.#pub
      if (
        this.#state === 'up' &&
        pub !== undefined &&
        this.#writable &&
        this.#inflight < this.#o.publishWindow
      ) {
        return pub
      }
      if (this.#state !== 'up' || pub === undefined) {
        await this.#waitForChange(deadline, action)
        continue
      }
      if (Date.now() >= deadline) await this.#waitForChange(deadline, action)
      await new Promise<void>((resolve) => {
        this.#slotWaiters.push(resolve)
        this.#armSlotTimer()
      })
    }
  }

  /**
   * One timer for all publishes waiting for a window slot, so they re-check their deadline even
   * when no confirm arrives (a stuck broker), without a timer per waiting publish.
   */
  #armSlotTimer(): void {
    if (this.#slotTimer !== undefined) return
    this.#slotTimer = setTimeout(() => {
      this.#slotTimer = undefined
      if (this.#slotWaiters.length === 0) return
      this.#wakeSlots()
    }, 250)
    this.#slotTimer.unref()
  }

  /**
   * Publishes with a broker confirm; resolves once the broker confirmed. A channel that closes
   * before the confirm means the broker may or may not have the message: it is sent again on the
   * next channel (a possible duplicate, never a loss) until `deadline`.
   */
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    props: Options.Publish,
    deadline: number,
  ): Promise<void> {
    const pub = this.#pub
    // Fast path (the link is up and the window has room): no extra promise hops per message.
    if (
      this.#state === 'up' &&
      pub !== undefined &&
      this.#writable &&
      this.#inflight < this.#o.publishWindow
    ) {
      return this.#send(pub, exchange, routingKey, content, props).catch((error: unknown) => {
        this.#checkRetry(error, pub, deadline)
        return this.#publishLoop(exchange, routingKey, content, props, deadline)
      })
    }
    return this.#publishLoop(exchange, routingKey, content, props, deadline)
  }

  async #publishLoop(
    exchange: string,
    routingKey: string,
    content: Buffer,
    props: Options.Publish,
    deadline: number,
  ): Promise<void> {
    for (;;) {
      const pub = await this.#slot(deadline, 'publish')
      try {
        await this.#send(pub, exchange, routingKey, content, props)
        return
      } catch (error) {
        this.#checkRetry(error, pub, deadline)
      }
    }
  }

  #send(
    pub: ConfirmChannel,
    exchange: string,
    routingKey: string,
    content: Buffer,
    props: Options.Publish,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#inflight++
      let settled = false
      const done = (error: unknown): void => {
        if (settled) return
        settled = true
        this.#inflight--
        if (this.#slotWaiters.length > 0) this.#slotWaiters.shift()?.()
        if (error === null || error === undefined) resolve()
        else reject(this.#pub === pub ? error : new Unconfirmed(String(error)))
      }
      try {
        if (!pub.publish(exchange, routingKey, content, props, done)) this.#writable = false
      } catch (error) {
        done(error)
      }
    })
  }

  /** Returns when a failed send may be tried again; throws the error the caller should see. */
  #checkRetry(error: unknown, pub: ConfirmChannel, deadline: number): void {
    const e = classifyError(error, 'publish', this.#o.endpoint)
    const channelGone = error instanceof Unconfirmed || e.code === 'CONNECTION_LOST' || this.#pub !== pub
    if ((channelGone || e.retryable) && Date.now() < deadline && this.#state !== 'closed') return
    if (channelGone && this.#state !== 'closed') {
      throw new ConnectionError(
        `RabbitMQ at ${this.#o.endpoint} did not confirm the publish before the publish timeout; publish it again (same id)`,
        { backend: 'rabbitmq', code: 'CONNECTION_LOST', retryable: true, cause: error },
      )
    }
    throw e
  }

  /** Channel for declarations that may fail (a failed declare closes its channel, not the publisher). */
  async admin(deadline: number): Promise<Channel> {
    const model = await this.waitUp(deadline, 'declare')
    if (this.#admin !== undefined) return this.#admin
    this.#adminOpening ??= model
      .createChannel()
      .then((ch) => {
        ch.on('error', () => {})
        ch.on('close', () => {
          if (this.#admin === ch) this.#admin = undefined
        })
        if (this.#model === model) this.#admin = ch
        return ch
      })
      .finally(() => {
        this.#adminOpening = undefined
      })
    return this.#adminOpening
  }

  /**
   * Declares (or refreshes) the delay queue of a bucket: messages wait `bucket` ms, then the
   * broker dead-letters them to the default exchange with their routing key, the target queue.
   * The queue expires when unused for 10 minutes past its TTL; declaring again resets that, so
   * it is refreshed at most once a minute while retries use it.
   */
  async ensureDelayQueue(bucket: number, deadline: number): Promise<void> {
    const at = this.#delayDeclaredAt.get(bucket)
    if (at !== undefined && Date.now() - at < 60_000) return
    const ch = await this.admin(deadline)
    const name = delayQueueName(this.#o.prefix, bucket)
    await ch.assertQueue(name, {
      durable: true,
      arguments: {
        'x-queue-type': 'classic',
        'x-message-ttl': bucket,
        'x-dead-letter-exchange': '',
        'x-expires': bucket + 600_000,
      },
    })
    await ch.bindQueue(name, `${this.#o.prefix}.delay`, '', {
      'x-match': 'all',
      [DELAY_HEADER]: String(bucket),
    })
    this.#delayDeclaredAt.set(bucket, Date.now())
  }

  /**
   * Declares the schedule that holds delayed publishes, once per connection: per level `k` a
   * headers exchange and a durable queue whose messages wait `2^k` ms, then are dead-lettered to
   * level `k - 1` (level 0: to the topic exchange) with their routing key, the topic. Each exchange
   * sends a message whose digit `k` is `'1'` into its queue and passes one whose digit is `'0'` on
   * to the next level down. Every message in a level's queue waits as long as the others, so the
   * queue expires them in order: a long delay never holds a shorter one back (which one queue
   * with per-message TTLs would, since RabbitMQ expires only at the head).
   */
  ensureSchedule(deadline: number): Promise<void> {
    if (this.#schedule !== undefined) return this.#schedule
    const model = this.#model
    const p = this.#declareSchedule(deadline).catch((error: unknown) => {
      if (this.#schedule === p) this.#schedule = undefined
      throw error
    })
    if (model === this.#model) this.#schedule = p
    return p
  }

  async #declareSchedule(deadline: number): Promise<void> {
    try {
      await this.#declareLevels(await this.admin(deadline))
    } catch (error) {
      if (replyCodeOf(error) !== 406) throw classifyError(error, 'publish', this.#o.endpoint)
      throw new ConfigurationError(
        `cannot hold a delayed event: the schedule queues "${scheduleLevelName(this.#o.prefix, 0)}" … exist ` +
          `with other arguments, most likely declared by a backend with the same prefix "${this.#o.prefix}" ` +
          `and another exchange than "${this.#o.exchange}"; give each exchange its own prefix (${String(error)})`,
        { backend: 'rabbitmq', code: 'PRECONDITION_FAILED', cause: error },
      )
    }
  }

  async #declareLevels(ch: Channel): Promise<void> {
    const prefix = this.#o.prefix
    for (let k = 0; k < SCHEDULE_LEVELS; k++) {
      await ch.assertExchange(scheduleLevelName(prefix, k), 'headers', { durable: true })
    }
    for (let k = 0; k < SCHEDULE_LEVELS; k++) {
      const name = scheduleLevelName(prefix, k)
      const next = k === 0 ? this.#o.exchange : scheduleLevelName(prefix, k - 1)
      await ch.assertQueue(name, {
        durable: true,
        arguments: { 'x-queue-type': 'classic', 'x-message-ttl': 2 ** k, 'x-dead-letter-exchange': next },
      })
      await ch.bindQueue(name, name, '', { 'x-match': 'all', [scheduleBitHeader(k)]: '1' })
      await ch.bindExchange(next, name, '', { 'x-match': 'all', [scheduleBitHeader(k)]: '0' })
    }
  }

  /** Waits for outstanding confirms (bounded), then closes channels and the connection if owned. */
  async close(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'idle') {
      this.#state = 'closed'
      return
    }
    const deadline = Date.now() + timeoutMs
    while (this.#inflight > 0 && Date.now() < deadline && this.#state === 'up') {
      await new Promise<void>((resolve) => {
        this.#slotWaiters.push(resolve)
        setTimeout(resolve, 50)
      })
    }
    this.#state = 'closed'
    this.#closing.abort()
    this.#wakeUp()
    this.#wakeSlots()
    const model = this.#model
    const pub = this.#pub
    const admin = this.#admin
    this.#model = undefined
    this.#pub = undefined
    this.#admin = undefined
    if (this.#o.connection !== undefined) {
      this.#detach?.()
      this.#detach = undefined
      await pub?.close().catch(() => {})
      await admin?.close().catch(() => {})
    } else {
      await model?.close().catch(() => {})
    }
    await this.#reconnecting
  }
}
