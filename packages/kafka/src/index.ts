/**
 * @omnibus/kafka — the Omnibus backend for Apache Kafka (kafkajs, kept behind `client.ts`).
 *
 * Mapping: each Omnibus topic is the Kafka topic of the same name (the topic grammar is a subset
 * of Kafka's), the CloudEvents JSON envelope is the message value and `partitionKey` the message
 * key, so events of one key share a partition and keep their order. A subscription is a member of
 * a consumer group: the Omnibus group's (`groupIdPrefix` + group), or a private group per
 * broadcast subscription. Wildcard subscriptions consume every matching topic and pick up new ones
 * by polling the topic list. Offsets are committed after the handler resolved (at-least-once),
 * before it runs (at-most-once), or after it resolved plus a processed-id record in a compacted
 * Kafka topic shared by every process (exactly-once, effectively once). Retries happen in place;
 * exhausted events and foreign messages go to the dead-letter topic.
 */
export { backendFromUrl, createKafkaBackend, type KafkaBackend, kafkaCapabilities } from './backend.ts'
export {
  type BatchControl,
  type ConsumerHandle,
  type ConsumerSpec,
  consumerConfig,
  createKafkaClient,
  type InboundBatch,
  type InboundMessage,
  type KafkaClient,
  kafkaConfig,
  type OutgoingMessage,
  type OutgoingTopicBatch,
  type PartitionOffset,
  type TopicStart,
} from './client.ts'
export { classifyError, type KafkaOperation } from './errors.ts'
export {
  type KafkaBackendOptions,
  type KafkaClientLogLevel,
  type KafkaSaslOptions,
  type ResolvedKafkaOptions,
  resolveKafkaOptions,
} from './options.ts'
