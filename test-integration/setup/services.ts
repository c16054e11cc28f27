/**
 * What integration tests use to reach a broker resolved by the global setup:
 * `describeWithService('redis', 'title', () => { … })` runs the block when Redis is available and
 * otherwise registers one skipped test in its place, with a title that says how to enable it.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, inject, it } from 'vitest'
import {
  enableHint,
  type ResolvedService,
  type ServiceName,
  type ToolName,
  toolMissing,
  toolSpec,
} from './catalog.ts'

export type { ServiceName, ToolName } from './catalog.ts'

declare module 'vitest' {
  interface TaskMeta {
    /** Set on the test that stands in for a block skipped because this broker is unavailable. */
    omnibusUnavailable?: ServiceName
    /** Set on the test that stands in for a block skipped because this program is missing. */
    omnibusMissingTool?: ToolName
  }
}

const run = promisify(execFile)

function resolved(name: ServiceName): ResolvedService | undefined {
  return inject('omnibusServices')?.[name]
}

/** The endpoint of a service (URL or broker list), or undefined when it is not available. */
export function serviceEndpoint(name: ServiceName): string | undefined {
  return resolved(name)?.endpoint
}

/** Like {@link serviceEndpoint}, but throws when the service is missing (use inside a describeWithService block). */
export function requireEndpoint(name: ServiceName): string {
  const endpoint = serviceEndpoint(name)
  if (endpoint === undefined) throw new Error(`${name} is not available: ${enableHint(name)}`)
  return endpoint
}

/**
 * A function that restarts the broker and resolves once it answers again, or undefined when the
 * harness cannot restart it (an endpoint given without a restart command).
 */
export function serviceRestart(name: ServiceName): (() => Promise<void>) | undefined {
  const command = resolved(name)?.restartCommand
  if (command === undefined) return undefined
  return async () => {
    await run('bash', ['-c', command], { timeout: 180_000 })
  }
}

/** Why fault tests that restart `name` are skipped, for their titles. */
export function restartHint(name: ServiceName): string {
  const env = `OMNIBUS_IT_${name === 'rabbitmq' ? 'RABBITMQ' : name.toUpperCase()}_RESTART`
  return `needs ${env}: a shell command that restarts the broker (scripts/services/${name}.sh sets it)`
}

/**
 * Registers one skipped test in place of a block that cannot run here, titled with the reason.
 * The block itself is never called: `describe.skip` would still run its body while collecting,
 * and bodies read endpoints that do not exist.
 *
 * @param missing the broker whose absence is the reason, so the end-of-run summary can count it
 */
export function skipBlock(title: string, reason: string, missing?: ServiceName | { tool: ToolName }): void {
  const meta =
    missing === undefined
      ? {}
      : typeof missing === 'string'
        ? { omnibusUnavailable: missing }
        : { omnibusMissingTool: missing.tool }
  it.skip(`${title} (skipped: ${reason})`, { meta }, () => {})
}

/** Why a block that needs `name` is skipped, for {@link skipBlock}. */
export function unavailableReason(name: ServiceName): string {
  return `${name} unavailable; ${enableHint(name)}`
}

/**
 * `describe` when the service is available; otherwise one skipped test whose title says how to
 * enable it, and `fn` is not called.
 */
export function describeWithService(name: ServiceName, title: string, fn: () => void): void {
  if (serviceEndpoint(name) !== undefined) describe(title, fn)
  else skipBlock(title, unavailableReason(name), name)
}

/** The path of a program found on this machine, or undefined. */
export function toolPath(name: ToolName): string | undefined {
  return inject('omnibusTools')?.[name]
}

/**
 * `describe` when the program is on this machine; otherwise one skipped test whose title says how
 * to install it, and `fn` is not called. `OMNIBUS_IT_REQUIRE` naming the program makes its absence
 * fail the run instead (in the global setup).
 */
export function describeWithTool(name: ToolName, title: string, fn: () => void): void {
  if (toolPath(name) !== undefined) {
    describe(title, fn)
    return
  }
  skipBlock(title, `${name} ${toolMissing(name)}; ${toolSpec(name).install}`, { tool: name })
}
