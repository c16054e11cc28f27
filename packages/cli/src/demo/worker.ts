/**
 * A demo worker agent, run as its own process by the coordinator. It answers tasks addressed to
 * it by name and, as a member of the `worker` group, tasks balanced across all workers; it
 * reports what an agent of a real framework would on the ObservabilityBus: model calls (its own
 * model to plan and answer, a larger one to summarize; now and then a rate-limited call that is
 * retried), the tool call in between, latency, and the occasional failed tool.
 */
import { AgentMessageBus, ObservabilityBus, silentLogger } from '@omnibus/core'
import { connectBackend, EXIT } from '../backend.ts'
import type { CommandIo } from '../io.ts'
import {
  agentPrefix,
  type DemoModel,
  type DemoResult,
  type DemoTask,
  RUN_HEADER,
  SUMMARY_MODEL,
  TIME_SCALE,
  WORKER_MODELS,
  type WorkerReport,
} from './shared.ts'

/** Options of a worker process. */
export interface WorkerOptions {
  readonly backend: string
  readonly id: string
  readonly run: string
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function between([low, high]: readonly [number, number]): number {
  return low + Math.random() * (high - low)
}

/** One simulated model call: tokens and the durations a call of that size takes. */
function simulateCall(
  m: DemoModel,
  inputTokens: number,
  outputTokens: number,
): { inputTokens: number; outputTokens: number; timeToFirstTokenMs: number; durationMs: number } {
  const timeToFirstTokenMs = Math.round(between(m.ttftMs))
  const durationMs = Math.round(timeToFirstTokenMs + (outputTokens / between(m.tokensPerSecond)) * 1000)
  return { inputTokens, outputTokens, timeToFirstTokenMs, durationMs }
}

/** The worker's own model: worker-1 the first of {@link WORKER_MODELS}, worker-2 the second, … */
function modelOf(worker: string): DemoModel {
  const n = Number(/(\d+)$/.exec(worker)?.[1] ?? '1')
  return WORKER_MODELS[(Math.max(1, n) - 1) % WORKER_MODELS.length] as DemoModel
}

/** Runs one worker until the coordinator asks it to shut down (or the process is signalled). */
export async function runWorker(opts: WorkerOptions, io: CommandIo): Promise<number> {
  const backend = await connectBackend(opts.backend)
  const agents = new AgentMessageBus(backend, { agentId: opts.id, prefix: agentPrefix(opts.run) })
  const obs = new ObservabilityBus(backend, { source: opts.id, flushIntervalMs: 20, logger: silentLogger })
  await obs.start()
  const tag = { headers: { [RUN_HEADER]: opts.run } }
  const own = modelOf(opts.id)
  const session = `demo-${opts.run}`
  const modelCall = (m: DemoModel, call: ReturnType<typeof simulateCall>, error?: Error): void => {
    obs.emitModelCall(
      { model: m.model, provider: m.provider, agent: opts.id, session, ...call, ...(error ? { error } : {}) },
      tag,
    )
  }
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
    const started = performance.now()
    let tokens = 0
    // A call is reported when it ends, after the (scaled-down) time it takes.
    const call = async (m: DemoModel, inputTokens: number, outputTokens: number): Promise<void> => {
      const c = simulateCall(m, inputTokens, outputTokens)
      await sleep(c.durationMs / TIME_SCALE)
      modelCall(m, c)
      tokens += inputTokens + outputTokens
    }
    // Every seventh task is rate limited once (billed nothing) before its plan goes through.
    if (task.n % 7 === 3) {
      await sleep(120 / TIME_SCALE)
      const limited = Object.assign(new Error(`${own.provider}: 429 rate limit exceeded, retry after 1s`), {
        name: 'RateLimitError',
      })
      modelCall(own, { inputTokens: 0, outputTokens: 0, timeToFirstTokenMs: 0, durationMs: 120 }, limited)
    }
    // Plan: prompt and context in, a tool call out.
    const planIn = 900 + Math.floor(Math.random() * 1500)
    const planOut = 60 + Math.floor(Math.random() * 180)
    await call(own, planIn, planOut)
    const span = obs.startTool(task.tool, { task: task.n, routed: task.routed }, tag)
    await sleep(between([200, 1500]) / TIME_SCALE)
    let error: Error | undefined
    if (task.n % 9 === 4) {
      error = new Error(`${task.tool} hit a rate limit`)
      span.fail(error)
      obs.emitError(error, { worker: opts.id, task: task.n }, { ...tag, kind: 'tool' })
    } else {
      span.end({ task: task.n })
    }
    // Answer: the plan's context plus the tool's output (or its error) in; summaries are written
    // by the larger model.
    await call(
      task.tool === 'summarize' ? SUMMARY_MODEL : own,
      planIn + planOut + (error === undefined ? 400 + Math.floor(Math.random() * 2400) : 60),
      120 + Math.floor(Math.random() * 500),
    )
    obs.emitMetric(
      'latency',
      Math.round(performance.now() - started),
      'ms',
      { worker: opts.id, tool: task.tool },
      tag,
    )
    tasks++
    const result: DemoResult =
      error === undefined
        ? { n: task.n, worker: opts.id, ok: true, tokens }
        : { n: task.n, worker: opts.id, ok: false, tokens, error: error.message }
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
