/**
 * Backend factory shared by the Kafka integration tests and their child processes: the broker list
 * comes from the harness (parent) or the environment (child). Timeouts are tuned for a single local
 * broker so group joins and failovers stay within the suite's deadlines.
 */
import type { Logger } from '@omnibus/core'
import {
  createKafkaBackend,
  createKafkaClient,
  type KafkaBackend,
  type KafkaBackendOptions,
  resolveKafkaOptions,
} from '@omnibus/kafka'

/** Group id prefix of the integration tests, apart from anything else on the cluster. */
export const IT_GROUP_PREFIX = 'omnibus-it.'

const debugLogger: Logger = {
  debug: (m, f) => console.error(`[kafka-it ${process.pid}] ${m}`, f ?? ''),
  info: (m, f) => console.error(`[kafka-it ${process.pid}] ${m}`, f ?? ''),
  warn: (m, f) => console.error(`[kafka-it ${process.pid}] ${m}`, f ?? ''),
  error: (m, f) => console.error(`[kafka-it ${process.pid}] ${m}`, f ?? ''),
}

/** Options every test backend uses; `OMNIBUS_IT_KAFKA_DEBUG=1` prints the backend's log. */
export function itOptions(brokers: string): KafkaBackendOptions {
  return {
    ...(process.env.OMNIBUS_IT_KAFKA_DEBUG ? { logger: debugLogger } : {}),
    brokers,
    clientId: 'omnibus-it',
    groupIdPrefix: IT_GROUP_PREFIX,
    numPartitions: 3,
    replicationFactor: 1,
    topicRefreshMs: 500,
    sessionTimeoutMs: 6000,
    heartbeatIntervalMs: 500,
    rebalanceTimeoutMs: 10_000,
    retries: 4,
  }
}

function brokersFromEnv(): string {
  const brokers = process.env.OMNIBUS_IT_KAFKA_BROKERS
  if (brokers === undefined) throw new Error('OMNIBUS_IT_KAFKA_BROKERS is not set')
  return brokers
}

/** A fresh, unconnected backend on the test broker. */
export function makeBackend(extra: KafkaBackendOptions = {}): KafkaBackend {
  return createKafkaBackend({ ...itOptions(brokersFromEnv()), ...extra })
}

/** Writes raw bytes (not an envelope) onto `topic`, as a foreign producer would. */
export async function injectRaw(topic: string, payload: Uint8Array): Promise<void> {
  const client = createKafkaClient(resolveKafkaOptions(itOptions(brokersFromEnv())))
  await client.connect()
  try {
    await client.createTopics([topic], 3, 1)
    await client.send([{ topic, messages: [{ key: null, value: Buffer.from(payload) }] }])
  } finally {
    await client.disconnect()
  }
}
