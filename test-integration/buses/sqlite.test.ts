import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe } from 'vitest'
import { crossProcessBusTests } from './cross-process.ts'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-buses-it-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('buses across processes on SQLite', () => {
  crossProcessBusTests(() => `sqlite://${path.join(dir, 'buses.db')}`)
})
