/**
 * Child process of {@link spawnAgent} (agent-process.ts): imports the backend module of the
 * `childProcess` hooks, serves one agent on an AgentMessageBus with presence on (it echoes every
 * request), and reports `ready` over IPC. `stop` closes the bus cleanly; the parent may instead
 * kill the process with SIGKILL, which is what presence must notice without being told.
 */
import { AgentMessageBus, silentLogger } from '@omnibus/core'
import type { AgentChildConfig, AgentChildMessage } from './agent-process.ts'
import { childBackend, childConfig, onStop, reportFailure } from './fork.ts'

function send(message: AgentChildMessage): void {
  process.send?.(message)
}

async function main(): Promise<void> {
  const config = childConfig<AgentChildConfig>()
  const backend = await childBackend(config)
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
  onStop(async () => {
    await bus.close()
    await backend.disconnect()
  })
  send({ type: 'ready' })
}

main().catch(reportFailure)
