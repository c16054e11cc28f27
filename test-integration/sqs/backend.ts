/**
 * Backend factory shared by the SQS integration tests and their child processes: the endpoint
 * and the queue prefix come from the environment, so a child reaches the same queues as its
 * parent. Short visibility and long-poll settings keep redelivery cases fast.
 */
import { type Logger, silentLogger } from '@omnibus/core'
import { createSqsBackend, type SqsBackend, type SqsBackendOptions } from '@omnibus/sqs'

const print =
  (level: string) =>
  (message: string, fields?: Record<string, unknown>): void => {
    console.error(`[sqs ${level}] ${message}`, fields === undefined ? '' : JSON.stringify(fields))
  }

/** Every log line, for `OMNIBUS_IT_SQS_DEBUG=1` runs. */
const printLogger: Logger = {
  debug: print('debug'),
  info: print('info'),
  warn: print('warn'),
  error: print('error'),
}

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
    logger: process.env.OMNIBUS_IT_SQS_DEBUG === '1' ? printLogger : silentLogger,
    ...extra,
  })
}

/** A queue prefix unique to one test file run, so listings only see that run's queues. */
export function runPrefix(tag: string): string {
  return `it${tag}${Math.random().toString(36).slice(2, 8)}`
}
