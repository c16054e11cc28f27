/**
 * Publish → handler latency of the Kafka backend.
 *   node --conditions=@omnibus/source packages/kafka/bench/latency.ts [events] [intervalMs]
 * One backend publishes `events` events, one every `intervalMs`, each awaited; another backend
 * (same process, so one clock) handles them in a group. Latency = handler start − publish call.
 * Idle partitions matter here: with 3 partitions and one event at a time, two partitions are idle
 * in most fetches, so a fetch wait (maxWaitTimeMs) would show up directly in these numbers.
 */
import { createKafkaBackend } from '../src/index.ts'
import { benchOptions, ms, percentile, runId, until } from './common.ts'

const total = Number(process.argv[2] ?? 1000)
const intervalMs = Number(process.argv[3] ?? 5)
const topic = `bench.${runId}.latency`

const consumer = createKafkaBackend(benchOptions)
const publisher = createKafkaBackend(benchOptions)
await consumer.connect()
await publisher.connect()
const sentAt = new Map<number, number>()
const latencies: number[] = []
await consumer.subscribe(
  topic,
  (event) => {
    const n = (event.data as { n: number }).n
    const t = sentAt.get(n)
    if (t !== undefined && n >= 0) latencies.push(performance.now() - t)
  },
  { group: `latency-${runId}` },
)
// Warm-up: the first events pay for connections and metadata.
for (let i = 1; i <= 20; i++) {
  sentAt.set(-i, performance.now())
  await publisher.publish({ topic, data: { n: -i } })
}
const ackLatencies: number[] = []
for (let n = 0; n < total; n++) {
  const t = performance.now()
  sentAt.set(n, t)
  await publisher.publish({ topic, data: { n, runId } })
  ackLatencies.push(performance.now() - t)
  await new Promise((resolve) => setTimeout(resolve, intervalMs))
}
await until('every event handled', () => latencies.length >= total, 60_000)
latencies.sort((a, b) => a - b)
ackLatencies.sort((a, b) => a - b)
console.log(`latency over ${total} events, one every ${intervalMs} ms, 3 partitions`)
console.log(
  `  publish → handler : p50 ${ms(percentile(latencies, 50))}  p99 ${ms(percentile(latencies, 99))}  max ${ms(latencies[latencies.length - 1] ?? Number.NaN)}`,
)
console.log(
  `  publish() resolved: p50 ${ms(percentile(ackLatencies, 50))}  p99 ${ms(percentile(ackLatencies, 99))}  (acks=all)`,
)
await publisher.disconnect()
await consumer.disconnect()
