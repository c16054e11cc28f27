/**
 * Backend factory shared by the SQS integration tests and their child processes: the endpoint
 * and the queue prefix come from the environment, so a child reaches the same queues as its
 * parent. Short visibility and long-poll settings keep redelivery cases fast.
 */
import { silentLogger } from '@omnibus/core'
import { createSqsBackend, type SqsBackend, type SqsBackendOptions } from '@omnibus/sqs'

/** A fresh, unconnected backend on the test server. */
export function makeBackend(extra: SqsBackendOptions = {}): SqsBackend {
  const endpoint = process.env.OMNIBUS_IT_SQS_ENDPOINT
  const prefix = process.env.OMNIBUS_IT_SQS_PREFIX
  if (endpoint === undefined || prefix === undefined) {
    throw new Error('OMNIBUS_IT_SQS_ENDPOINT and OMNIBUS_IT_SQS_PREFIX must be set')
  }
  return createSqsBackend({
    endpoint,
    queuePrefix: prefix,
    discoveryIntervalMs: 250,
    waitTimeSeconds: 5,
    visibilityTimeoutMs: 2000,
    drainTimeoutMs: 2000,
    logger: silentLogger,
    ...extra,
  })
}

/** A queue prefix unique to one test file run, so listings only see that run's queues. */
export function runPrefix(tag: string): string {
  return `it${tag}${Math.random().toString(36).slice(2, 8)}`
}
