/**
 * The consumer against a fake SQS: what it tells the kernel (delivery counts from
 * `ApproximateReceiveCount`, corrected) and what it asks of SQS (deletes, visibility changes).
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs'
import {
  type BackendCapabilities,
  createEvent,
  type EventHandler,
  type EventInput,
  type SubscribeOptions,
  silentLogger,
} from '@omnibus/core'
import { encodeEvent, MemoryDedupeStore, resolveSubscribeOptions } from '@omnibus/core/backend'
import { waitUntil } from '@omnibus/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { Consumer } from '../src/consumer.ts'

const capabilities: BackendCapabilities = {
  guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
  persistent: true,
  crossProcess: true,
  groups: true,
  orderedPerKey: false,
  replay: false,
  maxPayloadBytes: 262_144,
  networked: true,
  wildcardDiscoveryMs: 0,
  delay: false,
}

/** A queue that hands out the messages given to it once each, and records what is asked of it. */
function fakeQueue() {
  const inbox: Message[] = []
  const deleted: string[] = []
  const visibility: Array<{ receipt: string; seconds: number }> = []
  const client = {
    async send(command: unknown, o?: { abortSignal?: AbortSignal }) {
      if (command instanceof ReceiveMessageCommand) {
        // A long poll: it answers once the queue holds something, or fails when aborted.
        const signal = o?.abortSignal
        while (inbox.length === 0) {
          if (signal?.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' })
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        return { Messages: inbox.splice(0, command.input.MaxNumberOfMessages ?? 10) }
      }
      if (command instanceof DeleteMessageBatchCommand) {
        for (const e of command.input.Entries ?? []) deleted.push(e.ReceiptHandle ?? '')
        return {}
      }
      if (command instanceof ChangeMessageVisibilityBatchCommand) {
        for (const e of command.input.Entries ?? []) {
          visibility.push({ receipt: e.ReceiptHandle ?? '', seconds: e.VisibilityTimeout ?? -1 })
        }
        return {}
      }
      throw new Error('unexpected command')
    },
  } as unknown as SQSClient
  return { client, inbox, deleted, visibility }
}

let n = 0
/** An SQS message carrying `input` as SQS would deliver it the `receiveCount`th time. */
function message(input: EventInput, receiveCount: number, messageId = `m-${++n}`): Message {
  return {
    MessageId: messageId,
    ReceiptHandle: `r-${messageId}-${receiveCount}`,
    Body: encodeEvent(createEvent(input)),
    Attributes: { ApproximateReceiveCount: String(receiveCount), SentTimestamp: String(Date.now()) },
  }
}

const consumers: Consumer[] = []
afterEach(async () => {
  await Promise.all(consumers.splice(0).map((c) => c.kernel.close(100)))
})

function start(
  queue: ReturnType<typeof fakeQueue>,
  handler: EventHandler,
  opts: SubscribeOptions,
  extra: {
    dedupe?: MemoryDedupeStore
    letters?: EventInput[]
    waitTimeSeconds?: number
    resent?: Array<{ body: string; delaySeconds: number }>
    fifo?: boolean
    localRetryMaxMs?: number
  } = {},
): Consumer {
  const options = resolveSubscribeOptions({ name: 'sqs', capabilities }, 'orders.created', handler, opts)
  const c = new Consumer(
    {
      client: queue.client,
      receiveClient: queue.client,
      where: 'SQS (fake)',
      logger: silentLogger,
      dedupe: extra.dedupe,
      waitTimeSeconds: extra.waitTimeSeconds ?? 0,
      prefetch: 10,
      localRetryMaxMs: extra.localRetryMaxMs ?? 2000,
      visibilityTimeoutMs: 30_000,
      drainTimeoutMs: 1000,
      resend: async (_url, body, delaySeconds) => {
        extra.resent?.push({ body, delaySeconds })
        return `m-${++n}`
      },
      publishDeadLetter: async (input) => void extra.letters?.push(input),
      recreateQueue: async () => 'http://sqs.local/q',
      onClosed: async () => {},
    },
    {
      id: `sub-${++n}`,
      queueUrl: 'http://sqs.local/q',
      queueName: 'q',
      kind: 'group',
      fifo: extra.fifo ?? false,
      options,
      handler,
    },
  )
  consumers.push(c)
  c.start()
  return c
}

describe('sqs consumer', () => {
  it('dead-letters a message SQS delivered more than maxAttempts times without running it', async () => {
    const q = fakeQueue()
    const letters: EventInput[] = []
    const runs: number[] = []
    q.inbox.push(message({ topic: 'orders.created', data: 'poison' }, 4))
    start(q, (_e, ctx) => void runs.push(ctx.attempt), { group: 'g', retry: { maxAttempts: 3 } }, { letters })
    await waitUntil(() => q.deleted.length === 1)
    expect(runs).toEqual([])
    expect(letters).toHaveLength(1)
    expect(letters[0]?.headers?.['omnibus-dlq-attempts']).toBe('3')
  })

  it('runs one effect for copies of one id received at once, and a busy copy costs no attempt', async () => {
    const q = fakeQueue()
    const store = new MemoryDedupeStore()
    const attempts: number[] = []
    const input: EventInput = { topic: 'orders.created', id: 'same-id', data: 1, guarantee: 'exactly-once' }
    q.inbox.push(message(input, 1), message(input, 1))
    start(
      q,
      async (_e, ctx) => {
        attempts.push(ctx.attempt)
        await new Promise((resolve) => setTimeout(resolve, 100))
      },
      { group: 'g', guarantee: 'exactly-once', concurrency: 4 },
      { dedupe: store },
    )
    await waitUntil(() => q.deleted.length === 2)
    expect(attempts).toEqual([1])
    // The busy copy waited in the consumer, leased: SQS was not asked to show it again.
    expect(q.visibility.filter((v) => v.seconds === 0)).toEqual([])
  })

  it('keeps a count SQS inflated by a busy copy it gave back: the next receive reports the same attempt', async () => {
    const q = fakeQueue()
    const store = new MemoryDedupeStore()
    // Another member holds the id: every delivery here is busy, and goes back to SQS after a long delay.
    store.claim('g', 'held-id', 'elsewhere', 60_000)
    const attempts: number[] = []
    const c = start(
      q,
      (_e, ctx) => void attempts.push(ctx.attempt),
      {
        group: 'g',
        guarantee: 'exactly-once',
        retry: { maxAttempts: 2, initialDelayMs: 5000, maxDelayMs: 5000 },
      },
      { dedupe: store },
    )
    const input: EventInput = { topic: 'orders.created', id: 'held-id', data: 1, guarantee: 'exactly-once' }
    q.inbox.push(message(input, 2, 'm-held'))
    await waitUntil(() => q.visibility.some((v) => v.receipt === 'r-m-held-2'))
    // SQS counts the next receive as the 3rd; it is the 2nd attempt (within maxAttempts 2).
    store.release('g', 'held-id', 'elsewhere')
    q.inbox.push(message(input, 3, 'm-held'))
    await waitUntil(() => attempts.length === 1)
    expect(attempts).toEqual([2])
    expect(c.kernel.subscription.active).toBe(true)
  })

  it('gives back what it holds only after its aborted long poll has ended on the server', async () => {
    const q = fakeQueue()
    let release: () => void = () => {}
    const hang = new Promise<void>((resolve) => {
      release = resolve
    })
    const c = start(q, () => hang, { group: 'g' }, { waitTimeSeconds: 5 })
    q.inbox.push(message({ topic: 'orders.created', data: 1 }, 1, 'm-run'))
    await waitUntil(() => c.kernel.running === 1)
    // Now the consumer long-polls an empty queue; closing aborts that poll, which still waits on
    // the server and would take a message made visible at once.
    await new Promise((resolve) => setTimeout(resolve, 50))
    await c.kernel.close(50)
    release()
    const back = q.visibility.find((v) => v.receipt === 'r-m-run-1')
    expect(back?.seconds).toBeGreaterThanOrEqual(5)
    expect(back?.seconds).toBeLessThanOrEqual(6)
  })

  it('sends a message received long before its time again with the next DelaySeconds and deletes it, without running it', async () => {
    const q = fakeQueue()
    const resent: Array<{ body: string; delaySeconds: number }> = []
    const runs: number[] = []
    const msg = message({ topic: 'orders.created', data: 'later', delayMs: 3_600_000 }, 1)
    q.inbox.push(msg)
    start(q, (_e, ctx) => void runs.push(ctx.attempt), { group: 'g' }, { resent })
    await waitUntil(() => q.deleted.includes(msg.ReceiptHandle ?? ''), {
      description: 'the early copy deleted',
    })
    expect(resent).toEqual([{ body: msg.Body, delaySeconds: 900 }])
    expect(q.visibility).toEqual([])
    expect(runs).toEqual([])
  })

  it('rounds the re-send down to whole seconds and waits out the rest of a short delay itself', async () => {
    const q = fakeQueue()
    const resent: Array<{ body: string; delaySeconds: number }> = []
    const runs: number[] = []
    const late = message({ topic: 'orders.created', data: 'in 4.5 s', delayMs: 4_500 }, 1)
    const soon = message({ topic: 'orders.created', data: 'in 0.3 s', delayMs: 300 }, 1)
    q.inbox.push(late, soon)
    const started = Date.now()
    let ranAt = 0
    start(
      q,
      (_e, ctx) => {
        ranAt = Date.now()
        runs.push(ctx.attempt)
      },
      { group: 'g' },
      { resent },
    )
    await waitUntil(() => runs.length === 1, { description: 'the short delay handled' })
    expect(ranAt - started).toBeGreaterThanOrEqual(280)
    expect(runs).toEqual([1])
    await waitUntil(() => resent.length === 1, { description: 'the long delay re-sent' })
    // 4.5 s less the time it took to get here, rounded down.
    expect(resent[0]?.delaySeconds).toBe(4)
    expect(q.deleted).toContain(late.ReceiptHandle)
  })

  it('on a FIFO queue hides a message received before its time for the whole seconds left', async () => {
    const q = fakeQueue()
    const resent: Array<{ body: string; delaySeconds: number }> = []
    const msg = message({ topic: 'orders.created', data: 'later', delayMs: 60_000 }, 1)
    q.inbox.push(msg)
    start(q, () => {}, { group: 'g' }, { resent, fifo: true })
    await waitUntil(() => q.visibility.length > 0, { description: 'the visibility change' })
    expect(q.visibility[0]).toEqual({ receipt: msg.ReceiptHandle, seconds: 59 })
    expect(resent).toEqual([])
    expect(q.deleted).toEqual([])
  })

  it('waits out the last second of a delay itself even when local retries are off, instead of re-sending in a loop', async () => {
    const q = fakeQueue()
    const resent: Array<{ body: string; delaySeconds: number }> = []
    const runs: number[] = []
    const msg = message({ topic: 'orders.created', data: 'soon', delayMs: 600 }, 1)
    q.inbox.push(msg)
    start(q, (_e, ctx) => void runs.push(ctx.attempt), { group: 'g' }, { resent, localRetryMaxMs: 0 })
    await waitUntil(() => runs.length === 1, { description: 'the event handled' })
    expect(runs).toEqual([1])
    expect(resent).toEqual([])
    expect(q.visibility).toEqual([])
  })
})
