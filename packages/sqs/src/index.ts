/**
 * @omnibus/sqs — Amazon SQS (and SQS-compatible servers such as ElasticMQ) as an Omnibus backend.
 * SQS has queues, not topics: each group subscription reads one durable queue per (group,
 * pattern), each broadcast subscriber its own queue (deleted when it leaves); the pattern is a
 * queue tag, and publishers send to every queue whose pattern matches, found through a cached
 * listing refreshed at least every `discoveryIntervalMs`. Core's consumer kernel decides what
 * happens to each message; the consumer deletes it once settled (at-least-once), hands it back
 * with `ChangeMessageVisibility` for a later retry, and counts deliveries by
 * `ApproximateReceiveCount` (poison guard). Exactly-once needs a shared `dedupeStore`; FIFO queues
 * (`fifo: true`) give per-key order and broker-side dedupe. A delayed event is sent with
 * `DelaySeconds` and sent again every 900 s while a longer delay lasts; on FIFO queues, which take
 * no per-message delay, it is hidden by a visibility change.
 */
export { backendFromUrl, createSqsBackend, type SqsBackend } from './backend.ts'
export {
  broadcastQueueName,
  deduplicationId,
  groupQueueName,
  messageGroupId,
  QUEUE_TAGS,
} from './directory.ts'
export { classifyError, isQueueMissing, type SqsOperation } from './errors.ts'
export {
  type ResolvedSqsOptions,
  resolveSqsOptions,
  type SqsBackendOptions,
  type SqsCredentials,
} from './options.ts'
