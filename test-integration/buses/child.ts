/**
 * Child process of the cross-process bus tests, started with
 * `node --conditions=@omnibus/source child.ts <mode> <backend-url> <run> [id] [count]`:
 * - `emit`: emits `count` telemetry events and one error, flushes, prints its stats as JSON, exits;
 * - `respond`: serves agent `calc` (shared group) until SIGTERM; tells agent `it-parent` it is ready.
 */
import { AgentMessageBus, createBackend, ObservabilityBus, silentLogger } from '@omnibus/core'

const [mode, url, run, id = 'child', countText = '100'] = process.argv.slice(2)
if (mode === undefined || url === undefined || run === undefined) {
  console.error('usage: child.ts emit|respond <url> <run> [id] [count]')
  process.exit(2)
}
const backend = await createBackend(url)
await backend.connect()

if (mode === 'emit') {
  const bus = new ObservabilityBus(backend, {
    source: `emitter-${id}`,
    logger: silentLogger,
    flushIntervalMs: 10,
  })
  await bus.start()
  const count = Number(countText)
  for (let i = 0; i < count; i++) bus.emitMetric(`it_${run}`, i, 'n', { child: id })
  bus.emitError(new Error(`child ${id} failed on purpose`), { run }, { kind: `it_${run}` })
  await bus.close()
  process.stdout.write(`${JSON.stringify(bus.stats())}\n`)
  await backend.disconnect()
  process.exit(0)
}

if (mode === 'respond') {
  const agents = new AgentMessageBus(backend, { agentId: `responder-${id}`, prefix: `it.${run}.agent` })
  await agents.start()
  await agents.subscribeAgent('calc', async (msg, ctx) => {
    const numbers = msg.data as number[]
    await ctx.reply({ sum: numbers.reduce((a, b) => a + b, 0), by: id, from: msg.from })
  })
  await agents.send('it-parent', 'ready', { id })
  process.once('SIGTERM', () => {
    void agents
      .close()
      .then(() => backend.disconnect())
      .then(() => process.exit(0))
  })
}
