/**
 * The consumer process of the end-to-end OpenTelemetry tests, started with
 * `node --conditions=@omnibus/source consumer-child.ts <backend-url> <run> <otlp-endpoint>`:
 * sets up OpenTelemetry like an application, serves one task (scenario.ts), then flushes its
 * telemetry, prints what it saw as one JSON line and exits 0. Prints `ready` once subscribed.
 */
import { createBackend, ObservabilityBus, silentLogger } from '@omnibus/core'
import { serveOneTask, startTelemetry } from './scenario.ts'

const [url, run, endpoint] = process.argv.slice(2)
if (url === undefined || run === undefined || endpoint === undefined) {
  console.error('usage: consumer-child.ts <backend-url> <run> <otlp-endpoint>')
  process.exit(2)
}
const otel = startTelemetry('omnibus-it-consumer', endpoint)
const backend = await createBackend(url)
await backend.connect()
const bus = new ObservabilityBus(backend, {
  source: 'researcher',
  logger: silentLogger,
  flushIntervalMs: 10,
  exporters: [otel.telemetry.exporter],
})
await bus.start()
const { handled } = await serveOneTask(backend, bus, run)
process.stdout.write('ready\n')
const seen = await handled
await bus.close()
await backend.disconnect()
await otel.stop()
process.stdout.write(`${JSON.stringify(seen)}\n`)
process.exit(0)
