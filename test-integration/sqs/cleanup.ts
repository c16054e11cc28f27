/** Deletes the queues a test run created (group queues are durable by design and outlive it). */
import { createSqsBackend } from '@omnibus/sqs'
import { afterAll } from 'vitest'
import { serviceEndpoint } from '../setup/services.ts'
import { runPrefix } from './backend.ts'

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

/**
 * The test server and a queue prefix for one test file run, set in the environment where
 * `makeBackend` (and child processes) read them; every queue under the prefix is deleted after
 * the file. Call it inside the file's `describeWithService` block.
 */
export function runQueues(tag: string): { endpoint: string; prefix: string } {
  const endpoint = serviceEndpoint('sqs') as string
  const prefix = runPrefix(tag)
  process.env.OMNIBUS_IT_SQS_ENDPOINT = endpoint
  process.env.OMNIBUS_IT_SQS_PREFIX = prefix
  afterAll(() => deleteQueues(endpoint, prefix))
  return { endpoint, prefix }
}
