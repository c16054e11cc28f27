import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { createBackend } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { afterAll, expect, it } from 'vitest'
import { type CommandIo, main } from '../src/index.ts'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-cli-group-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface TestIo extends CommandIo {
  readonly lines: string[]
  readonly errors: string[]
  /** Resolves once the command has subscribed. */
  readonly listening: Promise<void>
  stop(): void
}

function memoryIo(): TestIo {
  const controller = new AbortController()
  let resolveListening!: () => void
  const listening = new Promise<void>((resolve) => {
    resolveListening = resolve
  })
  const lines: string[] = []
  const errors: string[] = []
  return {
    lines,
    errors,
    listening,
    out: (line) => void lines.push(line),
    err: (line) => void errors.push(line),
    stdout: new PassThrough(),
    stdin: new PassThrough(),
    signal: controller.signal,
    ready: () => resolveListening(),
    stop: () => controller.abort(),
  }
}

it('two tails in one --group share the stream: each event is printed by exactly one of them', async () => {
  const url = `sqlite://${path.join(dir, 'group.db')}`
  const ios = [memoryIo(), memoryIo()]
  const runs = ios.map((io) => main(['tail', 'jobs.*', '--group', 'workers', '--json', '--backend', url], io))
  const backend = await createBackend(url)
  await backend.connect()
  // Group members start from the latest position: publish only once both have subscribed.
  await Promise.all(ios.map((io) => io.listening))
  for (let i = 0; i < 20; i++) await backend.publish({ topic: 'jobs.run', data: { i } })
  await waitUntil(() => ios.reduce((n, io) => n + io.lines.length, 0) >= 20, {
    timeoutMs: 15_000,
    description: '20 events printed by the two tails',
  })
  for (const io of ios) io.stop()
  expect(await Promise.all(runs)).toEqual([0, 0])
  const seen = ios.flatMap((io) => io.lines.map((l) => JSON.parse(l).data.i as number))
  expect(seen.sort((a, b) => a - b)).toEqual([...Array(20).keys()])
  expect(ios.every((io) => io.errors.length === 0)).toBe(true)
  await backend.disconnect()
})
