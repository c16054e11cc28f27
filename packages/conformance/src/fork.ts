/**
 * The plumbing the suite's child processes share. Parent side: fork a script that sits next to
 * this module with one JSON argument, under the `childProcess` hooks, and follow it (ready, exit,
 * kill, stop). Child side: build the backend from the hooks' module, stop on the parent's word,
 * report a failure that happens before `ready`.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { isAbsolute } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { EventBackend } from '@omnibus/core'
import type { ChildProcessHooks } from './options.ts'
import { withDeadline } from './wait.ts'

/** What every child reports over IPC, besides messages of its own. */
export type ChildStatus = { readonly type: 'ready' } | { readonly type: 'error'; readonly message: string }

/** The fields of a child's argument that say where its backend comes from. */
export interface ChildBackendConfig {
  readonly module: string
  readonly exportName: string
}

/** A forked child, followed from the parent. */
export interface ForkedChild {
  readonly pid: number | undefined
  /** Resolves once the child reported `ready`; rejects if it reported an error or exited first. */
  readonly ready: Promise<void>
  /** Resolves when the process has exited, for whatever reason. */
  readonly exited: Promise<void>
  /** SIGKILL, then resolves when the process is gone. */
  kill(): Promise<void>
  /** Asks the child to stop cleanly; kills it if it has not exited within the ready timeout. */
  stop(): Promise<void>
}

/**
 * Forks `script` (its name without extension, next to this module: `.ts` from sources, `.js` once
 * built) with `config` as its argument. Messages other than `ready` and `error` go to `onMessage`.
 */
export function forkChild<M extends { readonly type: string }>(
  hooks: ChildProcessHooks,
  args: {
    readonly script: string
    readonly config: object
    readonly label: string
    readonly readyTimeoutMs: number
    readonly onMessage?: (message: M) => void
  },
): ForkedChild {
  const here = fileURLToPath(import.meta.url)
  const fromSource = here.endsWith('.ts')
  const path = here.replace(/fork\.(ts|js)$/, `${args.script}.${fromSource ? 'ts' : 'js'}`)
  const child: ChildProcess = fork(path, [JSON.stringify(args.config)], {
    execArgv: [...(fromSource ? ['--conditions=@omnibus/source'] : []), ...(hooks.execArgv ?? [])],
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
    child.on('message', (m: ChildStatus | M) => {
      if (m.type === 'ready') resolve()
      else if (m.type === 'error')
        reject(new Error(`${args.label} (child process) failed: ${(m as { message: string }).message}`))
      else args.onMessage?.(m as M)
    })
    child.once('exit', (code, sig) =>
      reject(new Error(`${args.label} exited (code ${code}, signal ${sig}) before it was ready`)),
    )
  })
  ready.catch(() => {})
  return {
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

/** In a child: its JSON argument. */
export function childConfig<C>(): C {
  return JSON.parse(process.argv[2] ?? '{}') as C
}

/** In a child: the (unconnected) backend the hooks' module makes. */
export async function childBackend(config: ChildBackendConfig): Promise<EventBackend> {
  const url = isAbsolute(config.module) ? pathToFileURL(config.module).href : config.module
  const mod = (await import(url)) as Record<string, unknown>
  const factory = mod[config.exportName]
  if (typeof factory !== 'function') {
    throw new Error(`${config.module} does not export a function named "${config.exportName}"`)
  }
  return (await factory()) as EventBackend
}

/** In a child: runs `close` when the parent asks it to stop, then exits (1 if `close` failed). */
export function onStop(close: () => Promise<unknown>): void {
  process.on('message', (m: { type?: string }) => {
    if (m.type === 'stop') {
      close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    }
  })
}

/** In a child: tells the parent why it failed (so `ready` rejects with it) and lets it exit. */
export function reportFailure(error: unknown): void {
  process.send?.({
    type: 'error',
    message: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
  } satisfies ChildStatus)
  process.exitCode = 1
  process.disconnect?.()
}
