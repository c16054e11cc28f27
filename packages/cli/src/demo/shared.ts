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
