import { type EventBackend, redactUrl } from '@omnibus/core'
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
  let status: { healthy: boolean; latencyMs: number; detail?: string }
  try {
    status = await backend.healthCheck()
  } catch (error) {
    status = { healthy: false, latencyMs: Number.NaN, detail: describe(error) }
  }
  const caps = backend.capabilities
  if (json) {
    io.out(JSON.stringify({ backend: backend.name, url: redactUrl(url), ...status, capabilities: caps }))
  } else {
    const state = status.healthy ? paint('green', 'healthy', io.stdout) : paint('red', 'UNHEALTHY', io.stdout)
    io.out(`${backend.name} ${redactUrl(url)}: ${state}, latency ${status.latencyMs.toFixed(1)} ms`)
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
