/**
 * Backend factory shared by the Kafka integration tests and their child processes: the broker list
 * comes from the harness (parent) or the environment (child). Timeouts are tuned for a single local
 * broker so group joins and failovers stay within the suite's deadlines.
 */
import {
  createKafkaBackend,
  createKafkaClient,
  type KafkaBackend,
  type KafkaBackendOptions,
  resolveKafkaOptions,
} from '@omnibus/kafka'

/** Group id prefix of the integration tests, apart from anything else on the cluster. */
export const IT_GROUP_PREFIX = 'omnibus-it.'

/** Options every test backend uses. */
export function itOptions(brokers: string): KafkaBackendOptions {
  return {
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
