/**
 * Attribute names and values of the OpenTelemetry messaging and GenAI semantic conventions that
 * the propagation spans and metrics use. The conventions are still "development" status, so the
 * names are kept here (as the semantic-conventions package advises for incubating names) rather
 * than imported from its unstable entry.
 */

/** `messaging.*` attribute names. */
export const MESSAGING = {
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  subscription: 'messaging.destination.subscription.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  consumerGroup: 'messaging.consumer.group.name',
  batchCount: 'messaging.batch.message_count',
} as const

/** Attributes of Omnibus's own, for what the conventions have no name for. */
export const OMNIBUS = {
  /** Delivery number of the event to this subscription or group (1 for the first). */
  attempt: 'omnibus.delivery.attempt',
  /** How the kernel settled the message: acked, retried, dead-lettered, dropped, expired. */
  outcome: 'omnibus.settle.outcome',
  /** The backend's name (memory, sqlite, kafka, redis, sqs, rabbitmq). */
  backend: 'omnibus.backend',
} as const

/** `error.type` (stable). */
export const ERROR_TYPE = 'error.type'

/** GenAI attribute names used by the span of an agent handling a message. */
export const GEN_AI = {
  operationName: 'gen_ai.operation.name',
  agentName: 'gen_ai.agent.name',
  conversationId: 'gen_ai.conversation.id',
} as const

/**
 * `messaging.system` per Omnibus backend. Brokers with a value in the messaging semantic
 * conventions use it; Omnibus's own in-process and SQLite backends are the messaging system
 * themselves, so they are named `omnibus_<backend>` (the conventions allow values of one's own).
 */
const SYSTEMS: Readonly<Record<string, string>> = {
  kafka: 'kafka',
  rabbitmq: 'rabbitmq',
  redis: 'redis',
  sqs: 'aws_sqs',
}

/** The `messaging.system` attribute value for an Omnibus backend name (`kafka`, `sqs`, `memory`, …). */
export function messagingSystemOf(backend: string): string {
  return SYSTEMS[backend] ?? `omnibus_${backend}`
}
