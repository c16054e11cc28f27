// The process-lifetime rule on sqlite://, checked in child processes: connected backends keep the
// process alive until they are disconnected (whatever runs on the I/O thread), and closing both
// buses lets it exit with every telemetry event written to the file.
import { newRunId, runLifetimeChild } from '@omnibus/conformance'
import type { OmnibusEvent } from '@omnibus/core'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteBackend } from '../src/index.ts'
import { tempDir, waitFor } from './helpers.ts'

const EVENTS = 60
const dir = tempDir()
afterAll(() => dir.cleanup())

async function readBack(file: string, topic: string): Promise<OmnibusEvent[]> {
  const reader = createSqliteBackend({ path: file })
  await reader.connect()
  const got: OmnibusEvent[] = []
  try {
    await reader.subscribe(topic, (e) => void got.push(e), {
      group: `reader-${newRunId()}`,
      from: 'earliest',
    })
    await waitFor(`${EVENTS} events on ${topic} (got ${got.length})`, () => got.length >= EVENTS, 10_000)
  } finally {
    await reader.disconnect()
  }
  return got
}

describe('sqlite:// process lifetime', () => {
  it('a script that closes both buses exits by itself, every telemetry event in the file', async () => {
    const run = newRunId()
    const file = dir.file()
    const result = await runLifetimeChild({
      url: `sqlite://${file}`,
      mode: 'close',
      run,
      events: EVENTS,
      exitWithinMs: 10_000,
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
    expect(result.exitedByItself).toBe(true)
    expect(result.code).toBe(0)
    const got = await readBack(file, `lifetime.${run}`)
    expect(got.map((e) => (e.data as { i: number }).i).sort((a, b) => a - b)).toEqual([
      ...Array(EVENTS).keys(),
    ])
  })

  it('a script that does not close its buses stays alive (the connected backends hold it)', async () => {
    const run = newRunId()
    const result = await runLifetimeChild({
      url: `sqlite://${dir.file()}`,
      mode: 'open',
      run,
      aliveForMs: 1500,
    })
    // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
    expect(result.report, result.stderr).toBeDefined()
    expect(result.report?.reply).toEqual({ echoed: { run } })
    expect(result.exitedByItself).toBe(false)
  })

  for (const [label, query] of [
    ['with the I/O thread', ''],
    ['without the I/O thread', '?ioThread=false'],
  ] as const) {
    it(`a connected backend with no subscription keeps the process alive until disconnect() (${label})`, async () => {
      const run = newRunId()
      const result = await runLifetimeChild({
        url: `sqlite://${dir.file()}${query}`,
        mode: 'idle',
        run,
        aliveForMs: 1500,
      })
      // The child's own failure, if any, is the message (kafkajs also prints Node warnings there).
      expect(result.report, result.stderr).toBeDefined()
      expect(result.report?.mode).toBe('idle')
      expect(result.exitedByItself).toBe(false)
    })
  }
})
