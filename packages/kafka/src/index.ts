/**
 * @omnibus/kafka — the Omnibus backend for Apache Kafka (kafkajs, kept behind `client.ts`).
 *
 * Mapping: each Omnibus topic is the Kafka topic of the same name (the topic grammar is a subset
 * of Kafka's), the CloudEvents JSON envelope is the message value and `partitionKey` the message
 * key, so events of one key share a partition and keep their order. A subscription is a member of
 * a consumer group: the Omnibus group's (`groupIdPrefix` + group), or a private group per
 * broadcast subscription. Wildcard subscriptions consume every matching topic and pick up new ones
 * by polling the topic list. Every subscription runs core's consumer kernel; Kafka has no
 * per-message ack, so an ack marks the message's offset done and the partition's offset is
 * committed over the done prefix (at-least-once), or before the batch runs (at-most-once). A retry
 * is a local timer that holds its key (and, at concurrency 1, its partition). Delivery counts and
 * exactly-once claims live in one compacted records topic shared by every process: a count outlives
 * a consumer killed by its message (poison guard), and a claim is atomic because that topic's one
 * partition orders every claim. Dead letters are events on the dead-letter topic, kept whether or
 * not anyone subscribes yet.
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
