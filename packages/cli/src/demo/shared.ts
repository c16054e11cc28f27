/**
 * What the demo coordinator and workers agree on: the agent-topic prefix of one run (so runs on a
 * shared broker never mix), the run header on telemetry, and the message shapes.
 */

/** Header that tags a demo run's telemetry. */
export const RUN_HEADER = 'omnibus-demo-run'

/** Agent topic prefix of one run: `demo.<run>.agent.<to>.<topic>`. */
export function agentPrefix(run: string): string {
  return `demo.${run}.agent`
}

/** A task sent by the coordinator. */
export interface DemoTask {
  readonly n: number
  readonly tool: string
  readonly routed: 'targeted' | 'group'
}

/** A worker's reply to a task. */
export interface DemoResult {
  readonly n: number
  readonly worker: string
  readonly ok: boolean
  readonly tokens: number
  readonly error?: string
}

/** A worker's reply to `shutdown`: its telemetry counters after the final flush. */
export interface WorkerReport {
  readonly worker: string
  readonly emitted: number
  readonly flushed: number
  readonly dropped: number
  readonly tasks: number
}

/** Tools the simulated agents "call". */
export const TOOLS = ['read_file', 'search', 'run_tests', 'summarize', 'web_fetch'] as const

/** Telemetry the coordinator shows live: everything the workers emit. */
export const TELEMETRY_PATTERNS = ['tool.*', 'model.*', 'metric.*', 'error.**', 'lifecycle.*'] as const

/** A model the simulated agents "call", as its provider names it (all in the default price table). */
export interface DemoModel {
  readonly model: string
  readonly provider: string
  /** Typical time to first token and output speed, for realistic durations. */
  readonly ttftMs: readonly [number, number]
  readonly tokensPerSecond: readonly [number, number]
}

/** Each worker's own model, by worker number (worker-1 → the first). */
export const WORKER_MODELS: readonly DemoModel[] = [
  { model: 'gpt-4o-mini', provider: 'openai', ttftMs: [250, 600], tokensPerSecond: [70, 120] },
  {
    model: 'claude-3-5-haiku-20241022',
    provider: 'anthropic',
    ttftMs: [300, 700],
    tokensPerSecond: [55, 90],
  },
]

/** The larger model the `summarize` tool's answers are written with. */
export const SUMMARY_MODEL: DemoModel = {
  model: 'gpt-4o-2024-08-06',
  provider: 'openai',
  ttftMs: [400, 900],
  tokensPerSecond: [40, 70],
}

/**
 * Demo time runs this many times faster than the calls it reports: a task whose model and tool
 * calls would take 5 s waits 50 ms, so a run of 60 tasks takes a second or two.
 */
export const TIME_SCALE = 100
