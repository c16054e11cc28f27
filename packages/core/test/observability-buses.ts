/** ObservabilityBuses of one test file: started on a fake backend, each closed after every test. */
import { afterEach } from 'vitest'
import { ObservabilityBus, type ObservabilityBusOptions, silentLogger } from '../src/index.ts'
import { createFakeBackend, type FakeBackend } from './fake-backend.ts'

/** Call at the top of a test file; `close` is what each bus is closed with after the test. */
export function observabilityBuses(close?: { readonly timeoutMs?: number }): {
  /** A started bus (quiet logger, 5 ms flush interval unless `options` says otherwise). */
  makeBus(
    options?: ObservabilityBusOptions,
    backend?: FakeBackend,
  ): Promise<{ bus: ObservabilityBus; backend: FakeBackend }>
  /** Closes `bus`, started by the test itself, after the test too. */
  track(bus: ObservabilityBus): void
} {
  const open: ObservabilityBus[] = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((b) => b.close(close)))
  })
  return {
    async makeBus(options = {}, backend = createFakeBackend()) {
      const bus = new ObservabilityBus(backend, { logger: silentLogger, flushIntervalMs: 5, ...options })
      open.push(bus)
      await bus.start()
      return { bus, backend }
    },
    track(bus) {
      open.push(bus)
    },
  }
}
