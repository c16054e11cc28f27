/**
 * A demo worker agent, run as its own process by the coordinator. It answers tasks addressed to
 * it by name and, as a member of the `worker` group, tasks balanced across all workers; it
 * reports tool calls, token usage, latency and the occasional error on the ObservabilityBus.
 */
import { AgentMessageBus, ObservabilityBus, silentLogger } from '@omnibus/core'
import { connectBackend, EXIT } from '../backend.ts'
import type { CommandIo } from '../io.ts'
import { agentPrefix, type DemoResult, type DemoTask, RUN_HEADER, type WorkerReport } from './shared.ts'

/** Options of a worker process. */
export interface WorkerOptions {
  readonly backend: string
  readonly id: string
  readonly run: string
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Runs one worker until the coordinator asks it to shut down (or the process is signalled). */
export async function runWorker(opts: WorkerOptions, io: CommandIo): Promise<number> {
  const backend = await connectBackend(opts.backend)
  const agents = new AgentMessageBus(backend, { agentId: opts.id, prefix: agentPrefix(opts.run) })
  const obs = new ObservabilityBus(backend, { source: opts.id, flushIntervalMs: 20, logger: silentLogger })
  await obs.start()
  const tag = { headers: { [RUN_HEADER]: opts.run } }
  let tasks = 0
  let stop!: () => void
  const stopped = new Promise<void>((resolve) => {
    stop = resolve
  })
  io.signal.addEventListener('abort', () => stop(), { once: true })

  let gotFirst!: () => void
  const firstMessage = new Promise<void>((resolve) => {
    gotFirst = resolve
  })
  const onMessage = async (
    msg: { topic: string; data: unknown },
    ctx: { reply(data: unknown): Promise<void> },
  ): Promise<void> => {
    gotFirst()
    if (msg.topic === 'shutdown') {
      obs.emitLifecycle('worker_stopped', { worker: opts.id, tasks }, tag)
      await obs.close()
      const s = obs.stats()
      const report: WorkerReport = {
        worker: opts.id,
        emitted: s.emitted,
        flushed: s.flushed,
        dropped: s.droppedTotal,
        tasks,
      }
      await ctx.reply(report)
      stop()
      return
    }
    const task = msg.data as DemoTask
    const span = obs.startTool(task.tool, { task: task.n, routed: task.routed }, tag)
    const started = performance.now()
    await sleep(10 + Math.random() * 40)
    const tokens = 200 + Math.floor(Math.random() * 1800)
    obs.emitMetric('tokens', tokens, 'tokens', { worker: opts.id, model: 'demo-small' }, tag)
    obs.emitMetric(
      'latency',
      Math.round(performance.now() - started),
      'ms',
      { worker: opts.id, tool: task.tool },
      tag,
    )
    tasks++
    let result: DemoResult
    if (task.n % 9 === 4) {
      const error = new Error(`${task.tool} hit a rate limit`)
      span.fail(error)
      obs.emitError(error, { worker: opts.id, task: task.n }, { ...tag, kind: 'tool' })
      result = { n: task.n, worker: opts.id, ok: false, tokens, error: error.message }
    } else {
      span.end({ tokens })
      result = { n: task.n, worker: opts.id, ok: true, tokens }
    }
    await ctx.reply(result)
  }

  const options = { broadcasts: false, concurrency: 2, retry: { maxAttempts: 3, initialDelayMs: 50 } }
  await agents.subscribeAgent(opts.id, onMessage, { ...options, group: `demo-${opts.run}-${opts.id}` })
  await agents.subscribeAgent('worker', onMessage, { ...options, group: `demo-${opts.run}-workers` })
  obs.emitLifecycle('worker_started', { worker: opts.id, pid: process.pid }, tag)
  // Announce readiness until the first message arrives: on brokers where a new subscription takes
  // a moment to become live, the coordinator may miss the first announcement.
  const announce = (): void => {
    agents.send('coordinator', 'ready', { worker: opts.id, pid: process.pid }).catch(() => undefined)
  }
  announce()
  const announcing = setInterval(announce, 1000)
  firstMessage.then(() => clearInterval(announcing))
  await stopped
  clearInterval(announcing)
  await agents.close()
  await obs.close()
  await backend.disconnect({ drainTimeoutMs: 2000 })
  return EXIT.ok
}
