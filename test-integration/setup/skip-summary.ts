/**
 * A reporter added after the default one: at the end of a run it says how many integration
 * blocks were skipped for lack of which broker, and how to provide each. The default reporter
 * prints only counts, and the hint is otherwise visible only in a skipped test's title.
 */
import type { Reporter, TestModule, Vitest } from 'vitest/node'
import { SERVICES, type ServiceName, TOOLS, type ToolName } from './catalog.ts'

/** Skipped stand-in tests per missing broker, in {@link SERVICES} order. */
export function countUnavailable(modules: ReadonlyArray<TestModule>): Map<ServiceName, number> {
  const counts = new Map<ServiceName, number>()
  for (const module of modules) {
    for (const test of module.children.allTests('skipped')) {
      const missing = test.meta().omnibusUnavailable
      if (missing !== undefined) counts.set(missing, (counts.get(missing) ?? 0) + 1)
    }
  }
  return new Map(
    SERVICES.filter((s) => counts.has(s.name)).map((s) => [s.name, counts.get(s.name) as number]),
  )
}

/** The closing lines for `counts`, or none when no block was skipped for a missing broker. */
export function summaryLines(counts: ReadonlyMap<ServiceName, number>): string[] {
  if (counts.size === 0) return []
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  const per = [...counts].map(([name, n]) => `${name} (${n})`).join(', ')
  return [
    `integration: skipped ${total} test block${total === 1 ? '' : 's'} for lack of a broker: ${per}.`,
    ...[...counts.keys()].map((name) => {
      const spec = SERVICES.find((s) => s.name === name)
      return `  ${name}: set ${spec?.env}=${spec?.example}`
    }),
    `  or start them without Docker: bash scripts/services/all.sh start ${[...counts.keys()].join(' ')} && . .services/env.sh`,
    '  or run everything against brokers started and stopped for you: pnpm test:all',
    '  (with a Docker engine running, testcontainers starts them)',
  ]
}

/** Skipped stand-in tests per missing program. */
export function countMissingTools(modules: ReadonlyArray<TestModule>): Map<ToolName, number> {
  const counts = new Map<ToolName, number>()
  for (const module of modules) {
    for (const test of module.children.allTests('skipped')) {
      const missing = test.meta().omnibusMissingTool
      if (missing !== undefined) counts.set(missing, (counts.get(missing) ?? 0) + 1)
    }
  }
  return counts
}

/**
 * The closing lines for programs that were missing, apart from the brokers' line so that line
 * keeps one shape.
 */
export function toolSummaryLines(counts: ReadonlyMap<ToolName, number>): string[] {
  return [...counts].map(([name, n]) => {
    const spec = TOOLS.find((t) => t.name === name)
    return `integration: skipped ${n} test block${n === 1 ? '' : 's'} for lack of ${name}: ${spec?.install}.`
  })
}

/** Vitest reporter that prints {@link summaryLines} at the end of a run. */
export default class SkipSummaryReporter implements Reporter {
  private vitest: Vitest | undefined

  onInit(vitest: Vitest): void {
    this.vitest = vitest
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines = [
      ...summaryLines(countUnavailable(modules)),
      ...toolSummaryLines(countMissingTools(modules)),
    ]
    if (lines.length > 0) this.vitest?.logger.log(lines.join('\n'))
  }
}
