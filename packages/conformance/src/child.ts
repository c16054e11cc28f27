import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { OmnibusEvent, SubscribeOptions } from '@omnibus/core'
import { Inbox } from './harness.ts'
import type { ChildProcessHooks } from './options.ts'
import { withDeadline } from './wait.ts'

/** What the parent sends the runner (as its single argv entry). */
export interface RunnerConfig {
  readonly module: string
  readonly exportName: string
  readonly pattern: string
  readonly subscribeOptions: SubscribeOptions
  readonly behaviour: ChildBehaviour
  readonly handlerMs: number
}

/**
 * What a child's handler does: `hang` never returns; `ack` resolves after `handlerMs`; `poison`
 * acknowledges like `ack` except for an event whose data has `poison: true`, on which the process
 * kills itself with SIGKILL (once the parent has been told of the delivery).
 */
export type ChildBehaviour = 'hang' | 'ack' | 'poison'

/** What the runner reports over IPC. */
export type RunnerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'probe' }
  | { readonly type: 'delivered'; readonly id: string; readonly attempt: number }
  | { readonly type: 'acked'; readonly id: string }
  | { readonly type: 'error'; readonly message: string }

/** A consumer running in a child process; its inbox fills as the child reports. */
export interface ChildConsumer {
  readonly inbox: Inbox
  readonly pid: number | undefined
  /** Resolves once the child has subscribed; rejects if it failed or exited first. */
  readonly ready: Promise<void>
  /** Resolves when the process has exited, for whatever reason. */
  readonly exited: Promise<void>
  /** SIGKILL, then resolves when the process is gone. */
  kill(): Promise<void>
  /** Asks the child to disconnect cleanly and exit. */
  stop(): Promise<void>
}

/** Path of the runner script next to this module (`.ts` from sources, `.js` once built). */
function runnerPath(): { path: string; fromSource: boolean } {
  const here = fileURLToPath(import.meta.url)
  const fromSource = here.endsWith('.ts')
  return { path: here.replace(/child\.(ts|js)$/, fromSource ? 'runner.ts' : 'runner.js'), fromSource }
}

/** Starts a consumer child process built from `hooks.module` and subscribed to `pattern`. */
export function spawnConsumer(
  hooks: ChildProcessHooks,
  args: {
    readonly label: string
    readonly pattern: string
    readonly subscribeOptions?: SubscribeOptions
    readonly behaviour: ChildBehaviour
    readonly handlerMs?: number
    readonly readyTimeoutMs: number
  },
): ChildConsumer {
  const { path, fromSource } = runnerPath()
  const { signal: _signal, ...serializable } = args.subscribeOptions ?? {}
  const config: RunnerConfig = {
    module: hooks.module,
    exportName: hooks.exportName ?? 'makeBackend',
    pattern: args.pattern,
    subscribeOptions: serializable,
    behaviour: args.behaviour,
    handlerMs: args.handlerMs ?? 0,
  }
  const execArgv = [...(fromSource ? ['--conditions=@omnibus/source'] : []), ...(hooks.execArgv ?? [])]
  const child: ChildProcess = fork(path, [JSON.stringify(config)], {
    execArgv,
    env: { ...process.env, ...hooks.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const inbox = new Inbox(args.label)
  let exited = false
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
  })
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (m: RunnerMessage) => {
      switch (m.type) {
        case 'ready':
          resolve()
          break
        case 'probe':
          inbox.probes++
          break
        case 'delivered':
          inbox.deliveries.push({
            event: { id: m.id } as OmnibusEvent,
            attempt: m.attempt,
            at: Date.now(),
            pattern: args.pattern,
          })
          break
        case 'acked':
          inbox.acked.push({ id: m.id } as OmnibusEvent)
          break
        case 'error':
          reject(new Error(`${args.label} (child process) failed: ${m.message}`))
          break
      }
    })
    child.once('exit', (code, sig) =>
      reject(new Error(`${args.label} exited (code ${code}, signal ${sig}) before it was ready`)),
    )
  })
  ready.catch(() => {})
  return {
    inbox,
    pid: child.pid,
    ready: withDeadline(ready, args.readyTimeoutMs, `${args.label} to connect and subscribe`),
    exited: exit,
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
