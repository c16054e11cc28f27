/**
 * The buses' own counters in the Prometheus text exposition format (version 0.0.4), so a
 * `/metrics` endpoint can return `bus.prometheus()` as it is.
 */
import type { AgentBusStats } from './agent-bus.ts'
import type { ObservabilityStats } from './observability-bus.ts'

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(labels)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(k)) continue
    parts.push(`${k}="${escapeLabel(v)}"`)
  }
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

/** Builds exposition text from metric families. */
export class PrometheusWriter {
  readonly #lines: string[] = []
  readonly #base: Readonly<Record<string, string>>

  /** `base` labels are added to every sample. */
  constructor(base: Readonly<Record<string, string>> = {}) {
    this.#base = base
  }

  /** Adds one metric family with its samples. */
  family(
    name: string,
    type: 'counter' | 'gauge',
    help: string,
    samples: ReadonlyArray<readonly [Readonly<Record<string, string>>, number]>,
  ): this {
    this.#lines.push(`# HELP ${name} ${help.replace(/\n/g, ' ')}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) {
      this.#lines.push(
        `${name}${labelText({ ...this.#base, ...labels })} ${Number.isFinite(value) ? value : 0}`,
      )
    }
    return this
  }

  /** The exposition text, ending with a newline. */
  toString(): string {
    return `${this.#lines.join('\n')}\n`
  }
}

/** Prometheus text for an ObservabilityBus's stats. */
export function prometheusText(
  stats: ObservabilityStats,
  labels: Readonly<Record<string, string>> = {},
): string {
  const w = new PrometheusWriter(labels)
  w.family('omnibus_telemetry_emitted_total', 'counter', 'Telemetry events passed to emit.', [
    [{}, stats.emitted],
  ])
  w.family('omnibus_telemetry_sampled_out_total', 'counter', 'Telemetry events discarded by sampling.', [
    [{}, stats.sampledOut],
  ])
  w.family(
    'omnibus_telemetry_dropped_total',
    'counter',
    'Telemetry events lost, by reason.',
    Object.entries(stats.dropped).map(([reason, n]) => [{ reason }, n] as const),
  )
  w.family('omnibus_telemetry_buffered', 'gauge', 'Telemetry events waiting in the buffer.', [
    [{}, stats.buffered],
  ])
  w.family('omnibus_telemetry_buffer_capacity', 'gauge', 'Capacity of the telemetry buffer.', [
    [{}, stats.bufferCapacity],
  ])
  w.family('omnibus_telemetry_buffer_high_water', 'gauge', 'Largest number of buffered events seen.', [
    [{}, stats.highWaterMark],
  ])
  w.family('omnibus_telemetry_flushed_total', 'counter', 'Telemetry events accepted by the backend.', [
    [{}, stats.flushed],
  ])
  w.family('omnibus_telemetry_batches_total', 'counter', 'Telemetry batches sent to the backend.', [
    [{}, stats.batches],
  ])
  w.family('omnibus_telemetry_flush_failures_total', 'counter', 'Telemetry batches the backend refused.', [
    [{}, stats.flushFailures],
  ])
  const byName = Object.entries(stats.exporterFailuresByName)
  w.family(
    'omnibus_telemetry_exporter_failures_total',
    'counter',
    'Exporter calls that failed, by exporter.',
    byName.length === 0
      ? [[{}, stats.exporterFailures]]
      : byName.map(([exporter, n]) => [{ exporter }, n] as const),
  )
  w.family(
    'omnibus_telemetry_retried_total',
    'counter',
    'Telemetry events put back in the buffer after a retryable publish failure.',
    [[{}, stats.retried]],
  )
  w.family(
    'omnibus_telemetry_exporter_timeouts_total',
    'counter',
    'Exporter calls still pending after the exporter timeout.',
    [[{}, stats.exporterTimeouts]],
  )
  w.family(
    'omnibus_telemetry_exporter_dropped_total',
    'counter',
    'Telemetry events an exporter never received because a call of it hung.',
    [[{}, stats.exporterDropped]],
  )
  w.family('omnibus_telemetry_backend_connected', 'gauge', '1 when the telemetry backend is connected.', [
    [{}, stats.backendConnected ? 1 : 0],
  ])
  w.family(
    'omnibus_telemetry_buffer_warnings_total',
    'counter',
    'Times the buffer crossed its warning threshold.',
    [[{}, stats.warnings]],
  )
  return w.toString()
}

/** Prometheus text for an AgentMessageBus's stats (`omnibus_agent_*`). */
export function agentPrometheusText(
  stats: AgentBusStats,
  labels: Readonly<Record<string, string>> = {},
): string {
  const w = new PrometheusWriter(labels)
  const counter = (name: string, help: string, value: number): void => {
    w.family(`omnibus_agent_${name}`, 'counter', help, [[{}, value]])
  }
  counter('sent_total', 'Messages sent to one agent.', stats.sent)
  counter('broadcasts_total', 'Broadcasts sent.', stats.broadcasts)
  counter('requests_total', 'Requests sent.', stats.requests)
  w.family('omnibus_agent_pending_requests', 'gauge', 'Requests waiting for a reply.', [
    [{}, stats.pendingRequests],
  ])
  counter('replies_sent_total', 'Replies sent by handlers.', stats.repliesSent)
  counter('replies_received_total', 'Replies matched to a pending request.', stats.repliesReceived)
  counter('request_timeouts_total', 'Requests that timed out.', stats.timeouts)
  w.family('omnibus_agent_replies_discarded_total', 'counter', 'Replies discarded, by reason.', [
    [{ reason: 'late' }, stats.lateReplies],
    [{ reason: 'duplicate' }, stats.duplicateReplies],
    [{ reason: 'unmatched' }, stats.unmatchedReplies],
  ])
  counter('handled_total', 'Messages handled successfully.', stats.handled)
  counter(
    'handler_failures_total',
    'Handler runs that threw (the message is redelivered).',
    stats.handlerFailures,
  )
  counter(
    'failure_replies_total',
    'Failure replies (HANDLER_FAILED) sent for requests whose handler failed for good.',
    stats.failureReplies,
  )
  counter(
    'unavailable_total',
    'Requests refused because presence knew the agent had no live instance.',
    stats.unavailable,
  )
  counter('expired_total', 'Messages that arrived after their deadline; no handler ran.', stats.expired)
  return w.toString()
}
