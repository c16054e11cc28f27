// The process-lifetime rule on memory://, checked in child processes: connected backends keep the
// process alive until they are disconnected, and closing both buses lets it exit with every
// telemetry event flushed and delivered.
import { newRunId, runLifetimeChild } from '@omnibus/conformance'
import { describe, expect, it } from 'vitest'

const EVENTS = 40

describe('memory:// process lifetime', () => {
  it('a script that closes both buses exits by itself, every telemetry event flushed and delivered', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({
      url: `memory://lifetime-${run}`,
      mode: 'close',
      run,
      events: EVENTS,
      observe: true,
      exitWithinMs: 5000,
    })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.reply).toEqual({ echoed: { run } })
    expect(result.report?.telemetry).toMatchObject({
      emitted: EVENTS,
      flushed: EVENTS,
      droppedTotal: 0,
      buffered: 0,
    })
    expect(result.report?.observed).toBe(EVENTS)
    expect(result.exitedByItself).toBe(true)
    expect(result.code).toBe(0)
  })

  it('a script that does not close its buses stays alive (the connected backends hold it)', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({
      url: `memory://lifetime-${run}`,
      mode: 'open',
      run,
      events: EVENTS,
      observe: true,
      aliveForMs: 1500,
    })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.reply).toEqual({ echoed: { run } })
    // Without close() the flush timer sends the events, while the backend keeps the process up.
    expect(result.report?.observed).toBe(EVENTS)
    expect(result.exitedByItself).toBe(false)
  })

  it('a connected backend with no subscription keeps the process alive until disconnect()', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({ url: 'memory://', mode: 'idle', run, aliveForMs: 1500 })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.mode).toBe('idle')
    expect(result.exitedByItself).toBe(false)
  })
})
