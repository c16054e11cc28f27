import {
  ListQueuesCommand,
  ListQueueTagsCommand,
  SendMessageBatchCommand,
  type SQSClient,
  SQSServiceException,
} from '@aws-sdk/client-sqs'
import { NotConnectedError, PayloadTooLargeError, PublishError, silentLogger } from '@omnibus/core'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createSqsBackend } from '../src/backend.ts'
import { GROUP_QUEUE_MISSING_MS, QUEUE_TAGS } from '../src/directory.ts'

const base = 'http://sqs.local/000000000000/'

/** A fake server with two queues subscribed to `a.b`; both have been deleted behind our back. */
function goneQueues(): SQSClient {
  const tags: Record<string, Record<string, string>> = {
    'omnibus-g-grp-1': { [QUEUE_TAGS.pattern]: 'a.b', [QUEUE_TAGS.kind]: 'group' },
    'omnibus-b-2': { [QUEUE_TAGS.pattern]: 'a.*', [QUEUE_TAGS.kind]: 'broadcast' },
  }
  return {
    async send(command: unknown) {
      if (command instanceof ListQueuesCommand) return { QueueUrls: Object.keys(tags).map((n) => base + n) }
      if (command instanceof ListQueueTagsCommand)
        return { Tags: tags[(command.input.QueueUrl ?? '').slice(base.length)] }
      if (command instanceof SendMessageBatchCommand) {
        throw new SQSServiceException({ name: 'QueueDoesNotExist', $fault: 'client', $metadata: {} })
      }
      throw new Error('unexpected command')
    },
  } as unknown as SQSClient
}

/**
 * A broker that restarts with its queues persisted, as ElasticMQ does: while `restoring`, it
 * answers but lists no queue and reports the group queue missing; once restored, sends succeed.
 * Records every message that reached the queue.
 */
function restartingBroker(): { client: SQSClient; state: { restoring: boolean }; stored: string[] } {
  const state = { restoring: false }
  const stored: string[] = []
  const name = 'omnibus-g-grp-1'
  const client = {
    async send(command: unknown) {
      if (command instanceof ListQueuesCommand) return { QueueUrls: state.restoring ? [] : [base + name] }
      if (command instanceof ListQueueTagsCommand) {
        return { Tags: { [QUEUE_TAGS.pattern]: 'a.b', [QUEUE_TAGS.kind]: 'group' } }
      }
      if (command instanceof SendMessageBatchCommand) {
        if (state.restoring) {
          throw new SQSServiceException({ name: 'QueueDoesNotExist', $fault: 'client', $metadata: {} })
        }
        const entries = command.input.Entries ?? []
        for (const e of entries) stored.push(e.MessageBody ?? '')
        return { Successful: entries.map((e) => ({ Id: e.Id, MessageId: `m${stored.length}` })) }
      }
      throw new Error('unexpected command')
    },
  } as unknown as SQSClient
  return { client, state, stored }
}

/**
 * With the clock frozen at `t0`: a backend on a {@link restartingBroker} that published once,
 * after which the broker starts restoring (its group queue looks missing).
 */
async function restoringAtFixedTime(discoveryIntervalMs: number) {
  vi.useFakeTimers({ toFake: ['Date'] })
  const t0 = Date.UTC(2026, 0, 1)
  vi.setSystemTime(t0)
  const broker = restartingBroker()
  const b = createSqsBackend({ client: broker.client, logger: silentLogger, discoveryIntervalMs })
  await b.connect()
  await b.publish({ topic: 'a.b', data: 0 })
  broker.state.restoring = true
  return { t0, b, broker }
}

describe('publish', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('keeps failing retryably while a restarting broker has not restored a group queue, then delivers', async () => {
    const broker = restartingBroker()
    const b = createSqsBackend({ client: broker.client, logger: silentLogger, discoveryIntervalMs: 50 })
    await b.connect()
    await b.publish({ topic: 'a.b', data: 0 })
    expect(broker.stored).toHaveLength(1)
    broker.state.restoring = true
    // Every publish in the window fails, also those after a fresh listing that shows no queue:
    // none may resolve as if the event had been written.
    for (let i = 0; i < 5; i++) {
      const err = await b.publish({ topic: 'a.b', data: i }).catch((e: unknown) => e)
      expect(err, `publish ${i} during the restore`).toBeInstanceOf(PublishError)
      expect((err as PublishError).retryable).toBe(true)
      // Past the discovery interval: the next publish waits for a listing of the restoring broker.
      await new Promise((resolve) => setTimeout(resolve, 60))
    }
    expect(broker.stored).toHaveLength(1)
    broker.state.restoring = false
    const receipt = await b.publish({ topic: 'a.b', data: 'after' })
    expect(receipt.position).toBeDefined()
    expect(broker.stored).toHaveLength(2)
    expect(broker.stored[1]).toContain(receipt.id)
    await b.disconnect()
  })

  it('takes a group queue as deleted once sends have found it missing for the whole window', async () => {
    const { t0, b } = await restoringAtFixedTime(60_000)
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toBeInstanceOf(PublishError)
    vi.setSystemTime(t0 + GROUP_QUEUE_MISSING_MS - 1000)
    await expect(b.publish({ topic: 'a.b', data: 2 })).rejects.toBeInstanceOf(PublishError)
    vi.setSystemTime(t0 + GROUP_QUEUE_MISSING_MS + 1000)
    // The send that passes the window still fails; after it the queue is no longer routed.
    await expect(b.publish({ topic: 'a.b', data: 3 })).rejects.toBeInstanceOf(PublishError)
    const receipt = await b.publish({ topic: 'a.b', data: 4 })
    expect(receipt.position).toBeUndefined()
    await b.disconnect()
  })

  it('starts a new window when a group queue goes missing long after its last failure', async () => {
    const { t0, b, broker } = await restoringAtFixedTime(600_000)
    await expect(b.publish({ topic: 'a.b', data: 1 })).rejects.toBeInstanceOf(PublishError)
    // Nothing published for a long while, then a second restart: the queue is still routed.
    vi.setSystemTime(t0 + GROUP_QUEUE_MISSING_MS * 3)
    await expect(b.publish({ topic: 'a.b', data: 2 })).rejects.toBeInstanceOf(PublishError)
    await expect(b.publish({ topic: 'a.b', data: 3 })).rejects.toBeInstanceOf(PublishError)
    broker.state.restoring = false
    await expect(b.publish({ topic: 'a.b', data: 4 })).resolves.toMatchObject({ position: 'm2' })
    await b.disconnect()
  })

  it('fails retryably when a durable group queue is missing, and ignores a vanished broadcast queue', async () => {
    const b = createSqsBackend({ client: goneQueues(), logger: silentLogger })
    await b.connect()
    const err = await b.publish({ topic: 'a.b', data: 1 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PublishError)
    expect((err as PublishError).retryable).toBe(true)
    expect((err as PublishError).message).toMatch(/restarting/)
    // Only the broadcast queue matches a.c: its subscriber left, the publish succeeds.
    await expect(b.publish({ topic: 'a.c', data: 1 })).resolves.toMatchObject({ topic: 'a.c' })
    await b.disconnect()
  })

  it('checks the payload limit before sending and refuses use before connect or after disconnect', async () => {
    const b = createSqsBackend({ client: goneQueues(), logger: silentLogger, maxPayloadBytes: 2048 })
    await expect(b.publish({ topic: 'a.c', data: 1 })).rejects.toBeInstanceOf(NotConnectedError)
    await b.connect()
    const big = await b.publish({ topic: 'a.c', data: 'x'.repeat(4096) }).catch((e: unknown) => e)
    expect(big).toBeInstanceOf(PayloadTooLargeError)
    expect((big as PayloadTooLargeError).limitBytes).toBe(2048)
    await b.disconnect()
    await expect(b.publish({ topic: 'a.c', data: 1 })).rejects.toBeInstanceOf(NotConnectedError)
  })
})
