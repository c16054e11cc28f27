import type { OmnibusEvent, SubscribeOptions } from '@omnibus/core'
import { type ChildStatus, forkChild } from './fork.ts'
import { Inbox } from './harness.ts'
import type { ChildProcessHooks } from './options.ts'

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
  | ChildStatus
  | { readonly type: 'probe' }
  | { readonly type: 'delivered'; readonly id: string; readonly attempt: number }
  | { readonly type: 'acked'; readonly id: string }

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
  const { signal: _signal, ...serializable } = args.subscribeOptions ?? {}
  const config: RunnerConfig = {
    module: hooks.module,
    exportName: hooks.exportName ?? 'makeBackend',
    pattern: args.pattern,
    subscribeOptions: serializable,
    behaviour: args.behaviour,
    handlerMs: args.handlerMs ?? 0,
  }
  const inbox = new Inbox(args.label)
  const child = forkChild<RunnerMessage>(hooks, {
    script: 'runner',
    config,
    label: args.label,
    readyTimeoutMs: args.readyTimeoutMs,
    onMessage(m) {
      switch (m.type) {
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
      }
    },
  })
  return { inbox, ...child }
}
