/**
 * @omnibus/conformance — the backend conformance suite. `conformanceSuite(name, options)` registers
 * one vitest test per case of CONFORMANCE.md, gated by the backend's declared capabilities, so any
 * backend (ours or a third party's) proves it works in a few lines.
 */
export type { ChildBehaviour, ChildConsumer, RunnerConfig, RunnerMessage } from './child.ts'
export { spawnConsumer } from './child.ts'
export type { CaseContext } from './harness.ts'
export { Inbox, PROBE_HEADER } from './harness.ts'
export type {
  LifetimeChildConfig,
  LifetimeMode,
  LifetimeReport,
  LifetimeResult,
  LifetimeRunOptions,
} from './lifetime.ts'
export { runLifetimeChild } from './lifetime.ts'
export type {
  ChildProcessHooks,
  ConformanceOptions,
  ConformanceTimeouts,
  UnreachableBackend,
} from './options.ts'
export { DEFAULT_TIMEOUTS } from './options.ts'
export { findClosedPort } from './ports.ts'
export { newRunId } from './run-id.ts'
export { CASE_IDS, conformanceSuite } from './suite.ts'
export { type WaitForOptions, WaitTimeoutError, waitFor, withDeadline } from './wait.ts'
