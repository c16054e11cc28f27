/**
 * Child-process consumer of the conformance suite. Started by `spawnConsumer` with one JSON
 * argument; imports the backend module, subscribes, and reports every delivery to the parent
 * over IPC, so the parent can kill it mid-handler and check that another process gets the events.
 */
import type { RunnerConfig, RunnerMessage } from './child.ts'
import { childBackend, childConfig, onStop, reportFailure } from './fork.ts'

const PROBE_HEADER = 'x-conformance-probe'

function send(message: RunnerMessage): void {
  process.send?.(message)
}

async function main(): Promise<void> {
  const config = childConfig<RunnerConfig>()
  const backend = await childBackend(config)
  await backend.connect()
  // A poison event can arrive before subscribe() resolves; the parent must hear 'ready' first.
  let readySent: () => void = () => {}
  const ready = new Promise<void>((resolve) => {
    readySent = resolve
  })
  await backend.subscribe(
    config.pattern,
    async (event, ctx) => {
      if (event.headers[PROBE_HEADER] !== undefined) {
        send({ type: 'probe' })
        return
      }
      if (config.behaviour === 'poison' && (event.data as { poison?: unknown } | null)?.poison === true) {
        await ready
        // The parent must learn of the run before the process dies, or it could not count it.
        process.send?.(
          { type: 'delivered', id: event.id, attempt: ctx.attempt } satisfies RunnerMessage,
          () => process.kill(process.pid, 'SIGKILL'),
        )
        return new Promise<never>(() => {})
      }
      send({ type: 'delivered', id: event.id, attempt: ctx.attempt })
      if (config.behaviour === 'hang') await new Promise<never>(() => {})
      if (config.handlerMs > 0) await new Promise((resolve) => setTimeout(resolve, config.handlerMs))
      send({ type: 'acked', id: event.id })
    },
    config.subscribeOptions,
  )
  onStop(() => backend.disconnect())
  send({ type: 'ready' })
  readySent()
}

main().catch(reportFailure)
