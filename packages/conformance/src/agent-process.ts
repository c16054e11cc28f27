/**
 * An agent served from a child process, for the cross-process presence cases: the child
 * (agent-child.ts) reaches the broker through the `childProcess` hooks, so it is a separate process
 * with its own connection, as an agent on another host would be.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChildProcessHooks } from './options.ts'
import { withDeadline } from './wait.ts'

/** The child's single argument. */
export interface AgentChildConfig {
  readonly module: string
  readonly exportName: string
  readonly prefix: string
  readonly agentId: string
  readonly heartbeatMs: number
}

/** What the child reports over IPC. */
export type AgentChildMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'error'; readonly message: string }

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

function childPath(): { path: string; fromSource: boolean } {
  const here = fileURLToPath(import.meta.url)
  const fromSource = here.endsWith('.ts')
  return {
    path: here.replace(/agent-process\.(ts|js)$/, `agent-child.${fromSource ? 'ts' : 'js'}`),
    fromSource,
  }
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
  const { path, fromSource } = childPath()
  const config: AgentChildConfig = {
    module: hooks.module,
    exportName: hooks.exportName ?? 'makeBackend',
    prefix: args.prefix,
    agentId: args.agentId,
    heartbeatMs: args.heartbeatMs,
  }
  const execArgv = [...(fromSource ? ['--conditions=@omnibus/source'] : []), ...(hooks.execArgv ?? [])]
  const child: ChildProcess = fork(path, [JSON.stringify(config)], {
    execArgv,
    env: { ...process.env, ...hooks.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  let exited = false
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
  })
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (m: AgentChildMessage) => {
      if (m.type === 'ready') resolve()
      else reject(new Error(`${args.label} (child process) failed: ${m.message}`))
    })
    child.once('exit', (code, sig) =>
      reject(new Error(`${args.label} exited (code ${code}, signal ${sig}) before it was ready`)),
    )
  })
  ready.catch(() => {})
  return {
    pid: child.pid,
    ready: withDeadline(ready, args.readyTimeoutMs, `${args.label} to connect and subscribe`),
    async kill() {
      if (!exited) child.kill('SIGKILL')
      await exit
    },
    async stop() {
      if (exited) return
      child.send({ type: 'stop' })
      await withDeadline(exit, args.readyTimeoutMs, `${args.label} to stop`).catch(() => {
        child.kill('SIGKILL')
        return exit
      })
    },
  }
}
