/**
 * Shared bits of the Kafka benchmarks: broker list (OMNIBUS_KAFKA_BROKERS, default
 * 127.0.0.1:9092), a raw kafkajs client with the same settings as the backend's, and formatting.
 */

import kafkajs from 'kafkajs'
import { type KafkaBackendOptions, kafkaConfig, resolveKafkaOptions } from '../src/index.ts'

export const brokers = process.env.OMNIBUS_KAFKA_BROKERS ?? '127.0.0.1:9092'
export const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

/** Backend options of every benchmark. */
export const benchOptions: KafkaBackendOptions = {
  brokers,
  clientId: 'omnibus-bench',
  groupIdPrefix: 'omnibus-bench.',
  numPartitions: 3,
  replicationFactor: 1,
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
}

/** A raw kafkajs `Kafka` with the backend's client settings (same timeouts, retries, no logging). */
export function rawKafka(): InstanceType<typeof kafkajs.Kafka> {
  return new kafkajs.Kafka(kafkaConfig(resolveKafkaOptions(benchOptions)))
}

/** Creates `topic` with the benchmark's partition count. */
export async function createTopic(topic: string): Promise<void> {
  const admin = rawKafka().admin()
  await admin.connect()
  await admin.createTopics({
    topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
    waitForLeaders: true,
  })
  await admin.disconnect()
}

/** ms → "12.3 ms". */
export function ms(value: number): string {
  return `${value.toFixed(1)} ms`
}

/** Rate of `count` over `elapsedMs`. */
export function rate(count: number, elapsedMs: number): string {
  return `${Math.round((count / elapsedMs) * 1000).toLocaleString('en-US')} events/s`
}

/** Percentile of sorted numbers. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

/** Waits until `predicate` holds, or throws after `timeoutMs`. */
export async function until(what: string, predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
