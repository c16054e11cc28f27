/**
 * The RabbitMQ `EventBackend`: the connection (`link.ts`), what it writes (`publisher.ts`) and one
 * consumer per subscription (`consumer.ts`), whose kernel decides what delivery means.
 */
import {
  type BackendCapabilities,
  type BatchEntryResult,
  type BatchReceipt,
  type EventBackend,
  type EventHandler,
  type EventInput,
  type HealthStatus,
  NotConnectedError,
  type PublishReceipt,
  type SubscribeOptions,
  type Subscription,
} from '@omnibus/core'
import {
  checkDrainTimeout,
  checkEnsureGroup,
  DEFAULT_DRAIN_TIMEOUT_MS,
  holdProcess,
  instrumentBackend,
  type ProcessHold,
  resolveSubscribeOptions,
  timedHealthCheck,
} from '@omnibus/core/backend'
import { Consumer, type ConsumerDeps } from './consumer.ts'
import { classifyError } from './errors.ts'
import { Link } from './link.ts'
import { type RabbitMQBackendOptions, type ResolvedRabbitMQOptions, resolveOptions } from './options.ts'
import { Publisher, RABBITMQ_DELAY } from './publisher.ts'

/** Creates an unconnected RabbitMQ backend. Options are validated now; nothing touches the network. */
export function createRabbitMQBackend(options: RabbitMQBackendOptions = {}): EventBackend {
  const o: ResolvedRabbitMQOptions = resolveOptions(options)
  const consumers = new Set<Consumer>()
  let subCounter = 0
  let connecting: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let userConnected = false
  // Keeps the process alive from connect() to disconnect(), also while the link waits to
  // reconnect with no socket open (see holdProcess in core).
  let hold: ProcessHold | undefined

  const capabilities: BackendCapabilities = {
    guarantees:
      o.dedupeStore === undefined
        ? ['at-most-once', 'at-least-once']
        : ['at-most-once', 'at-least-once', 'exactly-once'],
    persistent: true,
    crossProcess: true,
    groups: true,
    orderedPerKey: false,
    replay: false,
    maxPayloadBytes: o.maxPayloadBytes,
    networked: true,
    wildcardDiscoveryMs: 0,
    delay: RABBITMQ_DELAY,
  }

  const link = new Link(o, {
    async onUp(model) {
      await Promise.all([...consumers].map((c) => c.reattach(model)))
    },
    onDown() {
      for (const c of consumers) c.linkDown()
    },
  })
  const publisher = new Publisher(o, link)
  const deps: ConsumerDeps = { o, link, publisher }

  function requireOpen(action: string): void {
    if (!userConnected || closing !== undefined) throw new NotConnectedError('rabbitmq', action)
  }

  async function probe(): Promise<string> {
    if (!userConnected) throw new Error('not connected: call connect()')
    if (!link.up) {
      throw new Error(`reconnecting to ${o.endpoint}${link.lastError ? `: ${link.lastError.message}` : ''}`)
    }
    try {
      const ch = await link.admin(Date.now() + 2000)
      await ch.checkExchange(o.exchange)
    } catch (error) {
      throw classifyError(error, 'other', o.endpoint)
    }
    const detached = [...consumers].filter((c) => c.active && c.attachError !== undefined)
    const first = detached[0]
    if (first !== undefined) {
      throw new Error(
        `${detached.length} subscription(s) not consuming, e.g. "${first.kernel.subscription.pattern}": ${first.attachError}`,
      )
    }
    return `connected to ${o.endpoint}`
  }

  async function close(drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs
    try {
      // Publishing keeps working while handlers drain (they often publish follow-ups).
      await Promise.all([...consumers].map((c) => c.kernel.close(drainMs)))
      userConnected = false
      await link.close(Math.max(0, deadline - Date.now()))
    } finally {
      userConnected = false
      closing = undefined
      hold?.release()
      hold = undefined
    }
  }

  const backend: EventBackend = {
    name: 'rabbitmq',
    capabilities,
    get isConnected() {
      return userConnected && link.up
    },

    async connect() {
      if (closing !== undefined) await closing
      if (userConnected) return
      connecting ??= link.openFirst().finally(() => {
        connecting = undefined
      })
      await connecting
      userConnected = true
      hold ??= holdProcess()
    },

    disconnect(opts) {
      if (closing !== undefined) return closing
      if (!userConnected && !link.open) return Promise.resolve()
      let drainMs: number
      try {
        drainMs = checkDrainTimeout(opts?.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, 'rabbitmq')
      } catch (error) {
        return Promise.reject(error)
      }
      closing = close(drainMs)
      return closing
    },

    healthCheck(): Promise<HealthStatus> {
      return timedHealthCheck('rabbitmq', probe)
    },

    publish<T>(input: EventInput<T>): Promise<PublishReceipt> {
      // Not async: one promise per publish less on the hot path; every error still rejects.
      if (!userConnected) return Promise.reject(new NotConnectedError('rabbitmq', 'publish'))
      try {
        return publisher.publish(input)
      } catch (error) {
        return Promise.reject(error)
      }
    },

    async publishBatch(events: readonly EventInput[]): Promise<BatchReceipt> {
      if (!userConnected) throw new NotConnectedError('rabbitmq', 'publish')
      if (!Array.isArray(events)) {
        throw new TypeError('publishBatch expects an array of events')
      }
      const settled = await Promise.allSettled(events.map((e) => backend.publish(e)))
      const results: BatchEntryResult[] = settled.map((r, index) =>
        r.status === 'fulfilled'
          ? { ok: true, index, receipt: r.value }
          : { ok: false, index, error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) },
      )
      const succeeded = results.filter((r) => r.ok).length
      return { results, succeeded, failed: results.length - succeeded }
    },

    async ensureGroup(pattern: string, group: string): Promise<void> {
      checkEnsureGroup(backend, pattern, group)
      requireOpen('ensureGroup')
      try {
        await publisher.ensureGroup(pattern, group)
      } catch (error) {
        throw classifyError(error, 'subscribe', o.endpoint)
      }
    },

    async subscribe<T>(
      pattern: string,
      handler: EventHandler<T>,
      opts?: SubscribeOptions,
    ): Promise<Subscription> {
      const resolved = resolveSubscribeOptions(backend, pattern, handler, opts)
      requireOpen('subscribe')
      const id = `rmq-${process.pid}-${++subCounter}`
      let consumer: Consumer | undefined
      consumer = new Consumer(deps, id, resolved, handler as EventHandler, () => {
        if (consumer !== undefined) consumers.delete(consumer)
      })
      const subscription = consumer.kernel.subscription
      // An already aborted signal closed the subscription in the kernel's constructor.
      if (!consumer.active) return subscription
      consumers.add(consumer)
      try {
        const model = await link.waitUp(publisher.deadline(), 'subscribe')
        await consumer.attach(model)
      } catch (error) {
        consumers.delete(consumer)
        await consumer.kernel.close(0).catch(() => {})
        throw classifyError(error, 'subscribe', o.endpoint)
      }
      return subscription
    },
  }
  return instrumentBackend(backend)
}

/** Creates a backend from an `amqp://` or `amqps://` URL (used by `createBackend` in core). */
export function backendFromUrl(url: URL, options: Readonly<Record<string, unknown>> = {}): EventBackend {
  return createRabbitMQBackend({ ...(options as RabbitMQBackendOptions), url: url.toString() })
}
