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
