/**
 * Queue naming and the publisher's queue directory. SQS has no topics: every subscription reads
 * its own queue (one per group and pattern, one per broadcast subscriber) and records its pattern
 * in the queue's tags. Publishers list the queues under the prefix, read the tags of queues they
 * have not seen, and index the patterns in a `MatcherIndex`; a publish goes to every queue whose
 * pattern matches its topic. The listing is refreshed in the background and never used when it
 * is older than `discoveryIntervalMs`, which bounds how long a new subscription stays unseen.
 */
import { createHash, randomBytes } from 'node:crypto'
import { ListQueuesCommand, ListQueueTagsCommand, type SQSClient } from '@aws-sdk/client-sqs'
import { compilePattern, type Logger, MatcherIndex } from '@omnibus/core'
import { classifyError, isQueueMissing } from './errors.ts'

/** Tag names written on every queue the backend creates. */
export const QUEUE_TAGS = {
  pattern: 'omnibus-pattern',
  kind: 'omnibus-kind',
  group: 'omnibus-group',
  /** Epoch ms of the broadcast subscriber's last sign of life (refreshed while it runs). */
  alive: 'omnibus-alive',
} as const

/**
 * How long a durable group queue that sends find missing stays routed before the publisher
 * takes it as deleted. Meanwhile publishes to it fail retryably: a restarting broker answers
 * before it has restored its queues (ElasticMQ lists none and reports each one missing for a
 * moment), and a live consumer creates a vanished queue again after a grace of its own.
 */
export const GROUP_QUEUE_MISSING_MS = 30_000

/** A queue a publisher routes to. */
export interface QueueTarget {
  readonly url: string
  readonly pattern: string
  readonly kind: 'group' | 'broadcast'
  readonly fifo: boolean
}

function hash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length)
}

/** Queue name of a group subscription: one queue per (group, pattern), stable across processes. */
export function groupQueueName(prefix: string, group: string, pattern: string, fifo: boolean): string {
  const readable = group.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 30)
  return `${prefix}-g-${readable}-${hash(`${group}\n${pattern}`, 16)}${fifo ? '.fifo' : ''}`
}

/** Queue name of a broadcast subscription: unique to the subscriber, deleted when it leaves. */
export function broadcastQueueName(prefix: string, fifo: boolean): string {
  return `${prefix}-b-${randomBytes(12).toString('hex')}${fifo ? '.fifo' : ''}`
}

/** Whether a queue URL or name is a FIFO queue. */
export function isFifoQueue(urlOrName: string): boolean {
  return urlOrName.endsWith('.fifo')
}

/**
 * A `MessageDeduplicationId` for an event: its id and publish time, as they are when SQS accepts
 * them (1-128 printable ASCII characters), otherwise a hash of both. Resending one envelope (SDK
 * retries, a producer re-sending the event it built) is dropped by SQS within its 5-minute
 * window; publishing an id again as a new event (the redrive of a dead letter) is delivered.
 */
export function deduplicationId(eventId: string, time: number): string {
  const text = `${eventId}@${time}`
  if (/^[\x21-\x7e]{1,128}$/.test(text)) return text
  return hash(text, 64)
}

/**
 * A `MessageGroupId`: the partition key (per-key order), or the event id when there is none, so
 * unkeyed events do not queue behind each other.
 */
export function messageGroupId(partitionKey: string | undefined, eventId: string): string {
  const key = partitionKey ?? eventId
  if (/^[\x21-\x7e]{1,128}$/.test(key)) return key
  return hash(key, 64)
}

interface Known {
  readonly target: QueueTarget
  readonly remove: () => void
  readonly local: boolean
  /** Broadcast queues: the owner's last sign of life, when it records one. */
  aliveAt: number | undefined
  /** When the tags were last read. */
  checkedAt: number
  /** Group queues: since when sends have found it missing (undefined while it answers). */
  missingSince: number | undefined
  /** Group queues: when a send last found it missing. */
  missingAt: number
}

/** What the directory does beside routing. */
export interface DirectoryOptions {
  /**
   * A broadcast queue whose owner has shown no sign of life for this long is treated as left
   * behind by a dead process: no longer routed to, and deleted. 0 = never.
   */
  readonly orphanAfterMs: number
  /** Deletes a queue found orphaned. */
  readonly deleteQueue: (url: string) => Promise<void>
}

/** The cached, periodically refreshed map from topics to queues. */
export class QueueDirectory {
  readonly #client: SQSClient
  readonly #prefix: string
  readonly #intervalMs: number
  readonly #logger: Logger
  readonly #where: string
  readonly #index = new MatcherIndex<QueueTarget>()
  readonly #known = new Map<string, Known>()
  /** URLs under the prefix that are not ours (no pattern tag), so their tags are not read again. */
  readonly #foreign = new Set<string>()
  /** Start time of the last complete listing. */
  #listedAt = Number.NEGATIVE_INFINITY
  #refreshing: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined
  #lastUse = 0
  #failing = false
  #closed = false
  readonly #options: DirectoryOptions

  constructor(
    client: SQSClient,
    prefix: string,
    intervalMs: number,
    logger: Logger,
    where: string,
    options: DirectoryOptions = { orphanAfterMs: 0, deleteQueue: async () => {} },
  ) {
    this.#client = client
    this.#prefix = prefix
    this.#intervalMs = intervalMs
    this.#logger = logger
    this.#where = where
    this.#options = options
  }

  /**
   * Queues whose pattern matches `topic`, from a listing that started no earlier than one
   * discovery interval before this call. A publish waits for at most two listings (one already
   * under way that started too early, then its own), however long a listing takes.
   */
  async targetsFor(topic: string): Promise<readonly QueueTarget[]> {
    const now = Date.now()
    this.#lastUse = now
    this.#startTimer()
    const oldest = now - this.#intervalMs
    if (this.#listedAt < oldest) {
      const started = Date.now()
      while (this.#listedAt < oldest) await this.refresh()
      this.#logger.debug('sqs: publish waited for a fresh queue listing', {
        waitedMs: Date.now() - started,
        queues: this.#known.size,
      })
    }
    return this.#index.match(topic)
  }

  /** Records a queue this process created, so its own publishes reach it at once. */
  addLocal(target: QueueTarget): void {
    this.#forget(target.url)
    const remove = this.#index.add(target.pattern, target)
    this.#known.set(target.url, {
      target,
      remove,
      local: true,
      aliveAt: undefined,
      checkedAt: Date.now(),
      missingSince: undefined,
      missingAt: 0,
    })
  }

  /** Drops a queue (deleted). */
  forget(url: string): void {
    this.#forget(url)
  }

  /**
   * A send found the queue missing. A broadcast queue is dropped at once (its subscriber left).
   * A group queue stays routed, so publishes to it keep failing retryably instead of succeeding
   * with nowhere to go, until it has been missing for {@link GROUP_QUEUE_MISSING_MS} without a
   * send getting through.
   */
  markMissing(url: string): void {
    const k = this.#known.get(url)
    if (k === undefined) return
    if (k.target.kind !== 'group') {
      this.#forget(url)
      return
    }
    const now = Date.now()
    // A failure long after the previous one starts a new outage, even if no send got through
    // in between (nothing was published to it).
    if (k.missingSince === undefined || now - k.missingAt > GROUP_QUEUE_MISSING_MS) k.missingSince = now
    k.missingAt = now
    if (now - k.missingSince >= GROUP_QUEUE_MISSING_MS) this.#forget(url)
  }

  /** A send reached the queue: it is there again if it was missing. */
  markPresent(url: string): void {
    const k = this.#known.get(url)
    if (k !== undefined) k.missingSince = undefined
  }

  #forget(url: string): void {
    const k = this.#known.get(url)
    if (k !== undefined) {
      k.remove()
      this.#known.delete(url)
    }
  }

  /** Lists the queues now (one listing at a time; concurrent callers share it). */
  refresh(): Promise<void> {
    if (this.#refreshing === undefined) {
      this.#refreshing = this.#list().finally(() => {
        this.#refreshing = undefined
      })
    }
    return this.#refreshing
  }

  async #list(): Promise<void> {
    const startedAt = Date.now()
    const urls: string[] = []
    let token: string | undefined
    try {
      do {
        const page = await this.#client.send(
          new ListQueuesCommand({
            QueueNamePrefix: `${this.#prefix}-`,
            MaxResults: 1000,
            ...(token === undefined ? {} : { NextToken: token }),
          }),
        )
        for (const url of page.QueueUrls ?? []) urls.push(url)
        token = page.NextToken
      } while (token !== undefined && token !== '')
    } catch (error) {
      throw classifyError(error, 'publish', this.#where)
    }
    const listed = new Set(urls)
    const fresh = urls.filter((u) => !this.#known.has(u) && !this.#foreign.has(u))
    for (let i = 0; i < fresh.length; i += 16) {
      await Promise.all(fresh.slice(i, i + 16).map((url) => this.#learn(url)))
    }
    for (const [url, k] of this.#known) {
      // Queues this process created are kept: a listing may lag their creation on AWS. Group
      // queues are durable and are kept too: a broker restoring its state lists them late, and
      // dropping one here would drop its events silently; a send that finds one really gone
      // fails retryably and forgets it.
      if (!listed.has(url) && !k.local && k.target.kind === 'broadcast') {
        this.#logger.debug('sqs: queue no longer listed; publishes stop going to it', { url })
        this.#forget(url)
      }
    }
    for (const url of this.#foreign) if (!listed.has(url)) this.#foreign.delete(url)
    this.#listedAt = startedAt
    if (this.#options.orphanAfterMs > 0) await this.#checkOrphans()
  }

  /**
   * Reads again the tags of broadcast queues whose owner has not shown life for half the orphan
   * window (at most every quarter window per queue), and drops and deletes those past it.
   */
  async #checkOrphans(): Promise<void> {
    const window = this.#options.orphanAfterMs
    const now = Date.now()
    const due = [...this.#known.values()].filter(
      (k) =>
        !k.local && k.aliveAt !== undefined && now - k.aliveAt > window / 2 && now - k.checkedAt > window / 4,
    )
    for (const k of due) {
      try {
        const res = await this.#client.send(new ListQueueTagsCommand({ QueueUrl: k.target.url }))
        k.checkedAt = Date.now()
        const alive = Number(res.Tags?.[QUEUE_TAGS.alive])
        if (Number.isFinite(alive)) k.aliveAt = alive
      } catch (error) {
        if (isQueueMissing(error)) this.#forget(k.target.url)
        continue
      }
      this.#reapIfOrphan(k)
    }
  }

  #reapIfOrphan(k: Known): boolean {
    const window = this.#options.orphanAfterMs
    if (window <= 0 || k.local || k.aliveAt === undefined || Date.now() - k.aliveAt <= window) return false
    const url = k.target.url
    this.#forget(url)
    this.#foreign.add(url)
    this.#logger.warn('sqs: broadcast queue left behind by a subscriber that stopped; deleting it', {
      queue: url,
      silentForMs: Date.now() - k.aliveAt,
    })
    this.#options.deleteQueue(url).catch(() => {})
    return true
  }

  async #learn(url: string): Promise<void> {
    let tags: Record<string, string> | undefined
    try {
      const res = await this.#client.send(new ListQueueTagsCommand({ QueueUrl: url }))
      tags = res.Tags
    } catch (error) {
      if (isQueueMissing(error)) return
      throw classifyError(error, 'publish', this.#where)
    }
    const pattern = tags?.[QUEUE_TAGS.pattern]
    const kind = tags?.[QUEUE_TAGS.kind]
    if (pattern === undefined || (kind !== 'group' && kind !== 'broadcast')) {
      // A queue named like ours may be read between its creation and its tagging: ask again
      // on the next listing instead of ignoring it for good.
      const name = url.slice(url.lastIndexOf('/') + 1)
      if (!name.startsWith(`${this.#prefix}-g-`) && !name.startsWith(`${this.#prefix}-b-`))
        this.#foreign.add(url)
      else this.#logger.debug('sqs: queue has no pattern tag yet; will look again', { url })
      return
    }
    if (this.#known.has(url)) return
    let target: QueueTarget
    try {
      compilePattern(pattern)
      target = { url, pattern, kind, fifo: isFifoQueue(url) }
    } catch {
      this.#logger.warn('sqs: queue has an invalid omnibus-pattern tag; ignored', { url, pattern })
      this.#foreign.add(url)
      return
    }
    const alive = Number(tags?.[QUEUE_TAGS.alive])
    const known: Known = {
      target,
      remove: () => {},
      local: false,
      aliveAt: kind === 'broadcast' && Number.isFinite(alive) ? alive : undefined,
      checkedAt: Date.now(),
      missingSince: undefined,
      missingAt: 0,
    }
    if (this.#reapIfOrphan(known)) return
    this.#known.set(url, { ...known, remove: this.#index.add(pattern, target) })
  }

  #startTimer(): void {
    if (this.#timer !== undefined || this.#closed) return
    // Refreshing ahead of the deadline keeps publishes from waiting on a listing.
    this.#timer = setInterval(
      () => {
        // An idle publisher stops listing; its next publish waits for one fresh listing.
        if (Date.now() - this.#lastUse > Math.max(60_000, this.#intervalMs * 10)) {
          clearInterval(this.#timer)
          this.#timer = undefined
          return
        }
        this.refresh().then(
          () => {
            if (this.#failing) this.#logger.info('sqs: queue listing works again')
            this.#failing = false
          },
          (error: unknown) => {
            // Once per outage, not once per tick.
            if (!this.#failing) {
              this.#logger.warn('sqs: queue listing failed; publishes will retry it', {
                error: (error as Error).message,
              })
            }
            this.#failing = true
          },
        )
      },
      Math.max(25, Math.floor(this.#intervalMs * 0.6)),
    )
    this.#timer.unref()
  }

  /** Stops the background refresh. */
  close(): void {
    this.#closed = true
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }
}
