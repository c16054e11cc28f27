import {
  ListQueuesCommand,
  ListQueueTagsCommand,
  SendMessageBatchCommand,
  type SQSClient,
  SQSServiceException,
} from '@aws-sdk/client-sqs'
import { NotConnectedError, PayloadTooLargeError, PublishError, silentLogger } from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { createSqsBackend } from '../src/backend.ts'
import { QUEUE_TAGS } from '../src/directory.ts'

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

describe('publish', () => {
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
