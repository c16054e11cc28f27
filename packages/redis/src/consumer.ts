/**
 * One subscription: core's `ConsumerKernel` fed by a {@link StreamReader}, settling through a
 * {@link RedisAdapter}. Delivery rules (retries, poison guard, exactly-once claims, dead letters,
 * drain) are the kernel's; see `adapter.ts` for how they map onto Redis commands.
 */
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { EventHandler, EventInput, Logger, Subscription } from '@omnibus/core'
import {
  ConsumerKernel,
  type DedupeStore,
  MemoryDedupeStore,
  type ResolvedSubscribeOptions,
} from '@omnibus/core/backend'
import type { Redis } from 'ioredis'
import { RedisAdapter, type RedisMessage } from './adapter.ts'
import { RedisDedupeStore } from './dedupe.ts'
import type { KeyMap } from './keys.ts'
import type { ResolvedRedisOptions } from './options.ts'
import { StreamReader } from './reader.ts'

/** What a consumer needs from its backend. */
export interface ConsumerHost {
  readonly cfg: ResolvedRedisOptions
  readonly keys: KeyMap
  readonly logger: Logger
  /** The shared non-blocking command connection. */
  command(): Redis
  /** A new dedicated connection for blocking reads. */
  newReader(): Promise<Redis>
  releaseReader(r: Redis): void
  publishDeadLetter(input: EventInput): Promise<unknown>
  removeConsumer(c: Consumer): void
}

/** Arguments of {@link startConsumer}. */
export interface ConsumerSpec {
  readonly resolved: ResolvedSubscribeOptions
  readonly handler: EventHandler
  readonly wildcard: boolean
  readonly matches: (topic: string) => boolean
  /** Stream id the subscription reads after in streams it finds after subscribing (`0-0` for earliest). */
  readonly startId: string
  /** `from: 'latest'`: streams that exist at subscribe are read after their last entry. */
  readonly startAtEnd: boolean
}

/** A running subscription consumer. */
export interface Consumer {
  readonly subscription: Subscription
  readonly wildcard: boolean
  matches(topic: string): boolean
  /** Starts reading `topics` (streams that exist or are named literally). */
  start(topics: readonly string[]): Promise<void>
  /** Adds a topic discovered after subscribing. */
  addTopic(topic: string): void
  /** Stops reading, waits for running handlers up to `drainTimeoutMs`, hands the rest back. */
  close(drainTimeoutMs?: number): Promise<void>
}

let consumerSeq = 0

/** Creates the consumer of one subscription (call `start`). */
export function startConsumer(host: ConsumerHost, spec: ConsumerSpec): Consumer {
  const { cfg, keys, logger } = host
  const opts = spec.resolved
  const group = opts.group
  const pending = group !== undefined && opts.guarantee !== 'at-most-once'
  const leaseMs = opts.visibilityTimeoutMs ?? cfg.visibilityTimeoutMs
  const subId = `${++consumerSeq}-${randomUUID().slice(0, 8)}`
  const consumerName = `${hostname()}-${process.pid}-${subId}`
  let dedupe: DedupeStore | undefined
  if (opts.guarantee === 'exactly-once') {
    // A group's records are shared by its members in every process; a broadcast subscription is
    // one member in one process, so its own memory serves.
    dedupe =
      group === undefined
        ? new MemoryDedupeStore({ ttlMs: cfg.dedupeTtlMs })
        : new RedisDedupeStore(() => host.command(), keys, cfg.dedupeTtlMs)
  }
  const reader: StreamReader = new StreamReader({
    cfg,
    keys,
    logger,
    command: () => host.command(),
    newReader: () => host.newReader(),
    releaseReader: (r) => host.releaseReader(r),
    group,
    consumer: consumerName,
    pending,
    concurrency: opts.concurrency,
    leaseMs,
    startId: spec.startId,
    startAtEnd: spec.startAtEnd,
    sink: (msg) => {
      adapter.held.add(msg)
      kernel.deliver(msg)
    },
    free: () => kernel.free,
    holds: (key, id) => !adapter.takeRetry(key, id) && adapter.holds(key, id),
  })
  const adapter: RedisAdapter = new RedisAdapter({
    command: () => host.command(),
    logger,
    group,
    consumer: consumerName,
    pending,
    leaseMs,
    dedupe,
    publish: (input) => host.publishDeadLetter(input),
    deliver: (msg: RedisMessage) => reader.deliver(msg),
    stop: () => reader.stop(),
    dispose: async () => {
      await reader.close()
      host.removeConsumer(consumer)
    },
    onSettled: () => reader.settled(),
  })
  const kernel = new ConsumerKernel<RedisMessage>({
    adapter,
    options: opts,
    handler: spec.handler,
    subscriptionId: subId,
    logger,
    drainTimeoutMs: cfg.drainTimeoutMs,
    leaseMs,
    memberId: consumerName,
  })

  const consumer: Consumer = {
    subscription: kernel.subscription,
    wildcard: spec.wildcard,
    matches: spec.matches,
    start: (topics) => reader.start(topics),
    addTopic(topic) {
      if (!kernel.accepting || reader.reads(topic)) return
      reader.addStream(topic).catch((err: unknown) => {
        logger.warn('redis could not start reading a new topic; trying again', {
          topic,
          error: (err as Error).message,
        })
        // The registry rescan only reacts to new topics, so a failed start retries on its own.
        setTimeout(() => consumer.addTopic(topic), 1_000).unref()
      })
    },
    close: (drainTimeoutMs) => kernel.close(drainTimeoutMs),
  }
  return consumer
}
