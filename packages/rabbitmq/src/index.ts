/**
 * @omnibus/rabbitmq — the Omnibus backend for RabbitMQ (amqplib).
 *
 * How it maps: every event is published, persistent and with a publisher confirm, to one durable
 * topic exchange with the topic as routing key. A subscription binds a queue with the pattern
 * translated to a binding key (`*` → `*`, `**` → `#`, in-segment globs → `*`), and the core
 * matcher filters what arrives. A group is one durable (quorum) queue per (group, pattern)
 * shared by its members; a broadcast subscriber gets its own exclusive auto-delete queue.
 * Every subscription runs core's consumer kernel (`consumer.ts` maps its decisions onto the
 * broker): messages are acknowledged after the handler (at-least-once) or before it
 * (at-most-once); retries are confirmed copies, through delay queues, carrying their delivery
 * count in a header, to which quorum queues add `x-delivery-count` for deliveries that ended
 * without an ack; past `retry.maxAttempts` deliveries a message is dead-lettered. Exactly-once is
 * offered only with a shared `dedupeStore` (the claim protocol). A delayed event waits in the
 * broker, in a schedule of TTL queues (one per binary digit of the delay) that dead-letter it down
 * to the topic exchange when it is due. The connection is re-established after a drop, with its
 * topology.
 */
export { backendFromUrl, createRabbitMQBackend } from './backend.ts'
export { AMQP_REPLY_CODES, classifyError, type RabbitOperation, replyCodeOf } from './errors.ts'
export { DELIVERY_COUNT_HEADER, RETRY_HEADERS } from './message.ts'
export { DEFAULT_URL, type RabbitMQBackendOptions } from './options.ts'
export {
  bindingKey,
  delayBucket,
  groupQueueName,
  SCHEDULE_LEVELS,
  SCHEDULE_MAX_DELAY_MS,
  scheduleLevelName,
} from './topology.ts'
