// What keeps a process alive: one referenced handle per connected backend (holdProcess), and none
// of the buses' own timers. Counted with process.getActiveResourcesInfo(), which lists only
// referenced timers; the end-to-end rule (a script exits after close()) is tested per backend in
// child processes.
import { afterEach, describe, expect, it } from 'vitest'
import { holdProcess } from '../src/backend.ts'
import {
  AgentMessageBus,
  ObservabilityBus,
  registerBackend,
  silentLogger,
  type TelemetryExporter,
} from '../src/index.ts'
import { createFakeBackend } from './fake-backend.ts'

function referencedTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
}

const cleanup: (() => Promise<void>)[] = []
afterEach(async () => {
  await Promise.allSettled(cleanup.splice(0).map((f) => f()))
})

describe('holdProcess', () => {
  it('takes exactly one referenced handle and gives it back on release (idempotent)', () => {
    const before = referencedTimers()
    const hold = holdProcess()
    expect(hold.held).toBe(true)
    expect(referencedTimers()).toBe(before + 1)
    hold.release()
    hold.release()
    expect(hold.held).toBe(false)
    expect(referencedTimers()).toBe(before)
  })
})

describe('bus timers never keep the process alive', () => {
  it("the ObservabilityBus's flush timer is unreferenced", async () => {
    const bus = new ObservabilityBus(createFakeBackend(), { logger: silentLogger, flushIntervalMs: 1000 })
    cleanup.push(() => bus.close())
    await bus.start()
    const before = referencedTimers()
    expect(bus.emit('tool.start', { tool: 'read_file' })).toBe(true)
    expect(referencedTimers()).toBe(before)
    await bus.flush()
    expect(bus.stats().flushed).toBe(1)
  })

  it("a pending request's deadline is unreferenced", async () => {
    const agents = new AgentMessageBus(createFakeBackend(), { agentId: 'caller' })
    cleanup.push(() => agents.close())
    await agents.start()
    const before = referencedTimers()
    const abort = new AbortController()
    const reply = agents.request('nobody', 'task.x', {}, { timeoutMs: 60_000, signal: abort.signal })
    reply.catch(() => {})
    while (agents.stats().pendingRequests === 0) await new Promise((r) => setImmediate(r))
    expect(referencedTimers()).toBe(before)
    abort.abort()
    await expect(reply).rejects.toThrow()
  })
})

describe('close()', () => {
  it('of the ObservabilityBus: concurrent calls share one close (one flush, one exporter close, one disconnect)', async () => {
    const backend = createFakeBackend({ name: 'lifetime-fake' })
    let disconnects = 0
    const disconnect = backend.disconnect.bind(backend)
    backend.disconnect = async (opts) => {
      disconnects++
      await disconnect(opts)
    }
    registerBackend('lifetime-fake', async () => backend)
    let exporterCloses = 0
    const exporter: TelemetryExporter = {
      name: 'counting',
      export() {},
      close() {
        exporterCloses++
      },
    }
    const bus = await ObservabilityBus.connect('lifetime-fake://x', {
      logger: silentLogger,
      exporters: [exporter],
    })
    for (let i = 0; i < 10; i++) bus.emit('tool.start', { i })
    const first = bus.close()
    const second = bus.close()
    await second
    // The second call resolves only once the first is complete: the backend is disconnected.
    expect(backend.isConnected).toBe(false)
    await first
    expect(exporterCloses).toBe(1)
    expect(disconnects).toBe(1)
    expect(bus.stats()).toMatchObject({ emitted: 10, flushed: 10, droppedTotal: 0, buffered: 0 })
  })

  it('of the AgentMessageBus: concurrent calls share one close (one disconnect)', async () => {
    const backend = createFakeBackend({ name: 'lifetime-fake-agents' })
    let disconnects = 0
    const disconnect = backend.disconnect.bind(backend)
    backend.disconnect = async (opts) => {
      disconnects++
      await disconnect(opts)
    }
    registerBackend('lifetime-fake-agents', async () => backend)
    const agents = await AgentMessageBus.connect('lifetime-fake-agents://x', { agentId: 'caller' })
    await agents.subscribeAgent('worker', () => {})
    const first = agents.close()
    await agents.close()
    expect(backend.isConnected).toBe(false)
    await first
    expect(disconnects).toBe(1)
  })
})
