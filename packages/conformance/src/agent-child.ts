/**
 * Child process of {@link spawnAgent} (agent-process.ts): imports the backend module of the
 * `childProcess` hooks, serves one agent on an AgentMessageBus with presence on (it echoes every
 * request), and reports `ready` over IPC. `stop` closes the bus cleanly; the parent may instead
 * kill the process with SIGKILL, which is what presence must notice without being told.
 */
import { isAbsolute } from 'node:path'
import { pathToFileURL } from 'node:url'
import { AgentMessageBus, type EventBackend, silentLogger } from '@omnibus/core'
import type { AgentChildConfig, AgentChildMessage } from './agent-process.ts'

function send(message: AgentChildMessage): void {
  process.send?.(message)
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as AgentChildConfig
  const url = isAbsolute(config.module) ? pathToFileURL(config.module).href : config.module
  const mod = (await import(url)) as Record<string, unknown>
  const factory = mod[config.exportName]
  if (typeof factory !== 'function') {
    throw new Error(`${config.module} does not export a function named "${config.exportName}"`)
  }
  const backend = (await factory()) as EventBackend
  const bus = new AgentMessageBus(backend, {
    agentId: `${config.agentId}-host`,
    prefix: config.prefix,
    presence: { heartbeatMs: config.heartbeatMs },
    logger: silentLogger,
  })
  await bus.start()
  await bus.subscribeAgent(config.agentId, async (msg, ctx) => {
    if (ctx.canReply) await ctx.reply({ echo: msg.data, pid: process.pid })
  })
  process.on('message', (m: { type?: string }) => {
    if (m.type === 'stop') {
      bus
        .close()
        .then(() => backend.disconnect())
        .then(
          () => process.exit(0),
          () => process.exit(1),
        )
    }
  })
  send({ type: 'ready' })
}

main().catch((error: unknown) => {
  send({ type: 'error', message: error instanceof Error ? `${error.name}: ${error.message}` : String(error) })
  process.exitCode = 1
  process.disconnect?.()
})
