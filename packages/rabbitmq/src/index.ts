/**
 * @omnibus/rabbitmq — the Omnibus backend for RabbitMQ (amqplib).
 *
 * How it maps: every event is published, persistent and with a publisher confirm, to one durable
 * topic exchange with the topic as routing key. A subscription binds a queue with the pattern
 * translated to a binding key (`*` → `*`, `**` → `#`, in-segment globs → `*`), and the core
 * matcher filters what arrives. A group is one durable (quorum) queue per (group, pattern)
 * shared by its members; a broadcast subscriber gets its own exclusive auto-delete queue.
 * Messages are acknowledged after the handler (at-least-once) or before it (at-most-once);
 * failed ones go back through delay queues with their attempt count in a header, and to the
 * dead-letter topic after `maxAttempts`. Exactly-once is offered only with a shared
 * `dedupeStore`. The connection is re-established after a drop, with its topology.
 */
export { backendFromUrl, createRabbitMQBackend, RETRY_HEADERS } from './backend.ts'
export { AMQP_REPLY_CODES, classifyError, type RabbitOperation, replyCodeOf } from './errors.ts'
export { DEFAULT_URL, type RabbitMQBackendOptions } from './options.ts'
export { bindingKey, delayBucket, groupQueueName } from './topology.ts'
