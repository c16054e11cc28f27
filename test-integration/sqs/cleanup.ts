/** Deletes the queues a test run created (group queues are durable by design and outlive it). */
import { createSqsBackend } from '@omnibus/sqs'

/** Deletes every queue under `prefix` on `endpoint`. */
export async function deleteQueues(endpoint: string, prefix: string): Promise<void> {
  const b = createSqsBackend({ endpoint, queuePrefix: prefix })
  await b.connect()
  try {
    await b.deleteAllQueues()
  } finally {
    await b.disconnect()
  }
}
