import { type EventBackend, type HealthStatus, redactUrl } from '@omnibus/core'
import { describe, EXIT } from '../backend.ts'
import { paint } from '../format.ts'
import type { CommandIo } from '../io.ts'

/** Reports health, latency and capabilities. Exit 0 when healthy, 1 when not. */
export async function health(
  backend: EventBackend,
  url: string,
  json: boolean,
  io: CommandIo,
): Promise<number> {
  let status: HealthStatus
  try {
    status = await backend.healthCheck()
  } catch (error) {
    status = { healthy: false, latencyMs: Number.NaN, detail: describe(error) }
  }
  return report(backend, url, status, json, io)
}

/**
 * Reports a backend whose store could not even be opened (a damaged SQLite file) as unhealthy,
 * in the same shape as {@link health}, so a probe script reads one format. Exit 1.
 */
export function unhealthyAtConnect(
  backend: EventBackend,
  url: string,
  detail: string,
  json: boolean,
  io: CommandIo,
): number {
  return report(backend, url, { healthy: false, latencyMs: Number.NaN, detail }, json, io)
}

function report(
  backend: EventBackend,
  url: string,
  status: HealthStatus,
  json: boolean,
  io: CommandIo,
): number {
  const caps = backend.capabilities
  if (json) {
    io.out(JSON.stringify({ backend: backend.name, url: redactUrl(url), ...status, capabilities: caps }))
  } else {
    const state = status.healthy ? paint('green', 'healthy', io.stdout) : paint('red', 'UNHEALTHY', io.stdout)
    const latency = Number.isNaN(status.latencyMs) ? '' : `, latency ${status.latencyMs.toFixed(1)} ms`
    io.out(`${backend.name} ${redactUrl(url)}: ${state}${latency}`)
    if (status.detail !== undefined) io.out(`  detail: ${status.detail}`)
    io.out(`  guarantees: ${caps.guarantees.join(', ')}`)
    io.out(
      `  persistent: ${caps.persistent}, cross-process: ${caps.crossProcess}, groups: ${caps.groups}, ` +
        `ordered per key: ${caps.orderedPerKey}, replay: ${caps.replay}`,
    )
    io.out(
      `  max payload: ${caps.maxPayloadBytes === undefined ? 'no limit' : `${caps.maxPayloadBytes} bytes`}`,
    )
  }
  return status.healthy ? EXIT.ok : EXIT.failure
}
