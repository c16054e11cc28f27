/**
 * An agent served from a child process, for the cross-process presence cases: the child
 * (agent-child.ts) reaches the broker through the `childProcess` hooks, so it is a separate process
 * with its own connection, as an agent on another host would be.
 */
import { type ChildStatus, forkChild } from './fork.ts'
import type { ChildProcessHooks } from './options.ts'

/** The child's single argument. */
export interface AgentChildConfig {
  readonly module: string
  readonly exportName: string
  readonly prefix: string
  readonly agentId: string
  readonly heartbeatMs: number
}

/** What the child reports over IPC. */
export type AgentChildMessage = ChildStatus

/** A running agent child. */
export interface AgentChild {
  readonly pid: number | undefined
  /** Resolves once the agent is subscribed; rejects if the child failed or exited first. */
  readonly ready: Promise<void>
  /** SIGKILL, then resolves when the process is gone. */
  kill(): Promise<void>
  /** Asks the child to close its bus (saying bye) and exit. */
  stop(): Promise<void>
}

/** Starts a child process serving agent `agentId` under `prefix` with presence on. */
export function spawnAgent(
  hooks: ChildProcessHooks,
  args: {
    readonly label: string
    readonly prefix: string
    readonly agentId: string
    readonly heartbeatMs: number
    readonly readyTimeoutMs: number
  },
): AgentChild {
  const config: AgentChildConfig = {
    module: hooks.module,
    exportName: hooks.exportName ?? 'makeBackend',
    prefix: args.prefix,
    agentId: args.agentId,
    heartbeatMs: args.heartbeatMs,
  }
  const { pid, ready, kill, stop } = forkChild(hooks, {
    script: 'agent-child',
    config,
    label: args.label,
    readyTimeoutMs: args.readyTimeoutMs,
  })
  return { pid, ready, kill, stop }
}
