import { silentLogger } from '@omnibus/core'
import { afterEach, describe, expect, it } from 'vitest'
import { Connection } from '../src/connection.ts'
import { SqliteDedupeStore } from '../src/dedupe.ts'
import { resolveOptions } from '../src/options.ts'
import { tempDir } from './helpers.ts'

const tmp = tempDir()
const open: Connection[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()))
})
process.on('exit', () => tmp.cleanup())

/** A connection of its own to `file`, as another process would have. */
function connect(file: string): Connection {
  const conn = new Connection(resolveOptions({ path: file, ioThread: false }, {}), silentLogger)
  conn.open()
  conn.state = 'open'
  open.push(conn)
  return conn
}

describe('sqlite exactly-once store: the claim protocol on rows of the file', () => {
  it('two connections: one claims, the other is busy until release; a commit recorded by the ack is done for both', async () => {
    const file = tmp.file()
    const a = connect(file)
    const b = connect(file)
    const storeA = new SqliteDedupeStore(a, () => 1)
    const storeB = new SqliteDedupeStore(b, () => 1)
    expect(await storeA.claim('g', 'id-1', 'a:1', 30_000)).toBe('claimed')
    expect(await storeB.claim('g', 'id-1', 'b:7', 30_000)).toBe('busy')
    // The holder again (a long handler refreshing its claim) keeps it.
    expect(await storeA.claim('g', 'id-1', 'a:1', 30_000)).toBe('claimed')
    await storeA.release('g', 'id-1', 'a:1')
    expect(await storeB.claim('g', 'id-1', 'b:7', 30_000)).toBe('claimed')
    // A release by an owner that no longer holds it leaves the claim alone.
    await storeA.release('g', 'id-1', 'a:1')
    expect(await storeA.claim('g', 'id-1', 'a:2', 30_000)).toBe('busy')
    // Commit is written by the ack's transaction (consumer.ts): the same statements here.
    storeB.commit('g', 'id-1', 'b:7')
    expect(storeB.takeCommit('b:7')).toBe(true)
    await b.tx(() => {
      b.st.markProcessed.run(1, 'id-1', Date.now())
      b.st.dropClaim.run(1, 'id-1', 'b:7')
    })
    expect(await storeA.claim('g', 'id-1', 'a:3', 30_000)).toBe('done')
    expect(await storeB.claim('g', 'id-1', 'b:8', 30_000)).toBe('done')
  })

  it('a claim whose holder died expires after its time to live', async () => {
    const file = tmp.file()
    const a = connect(file)
    const b = connect(file)
    const storeA = new SqliteDedupeStore(a, () => 1)
    const storeB = new SqliteDedupeStore(b, () => 1)
    expect(await storeA.claim('g', 'id-2', 'a:1', 40)).toBe('claimed')
    expect(await storeB.claim('g', 'id-2', 'b:1', 30_000)).toBe('busy')
    const deadline = Date.now() + 2000
    let result = await storeB.claim('g', 'id-2', 'b:1', 30_000)
    while (result === 'busy' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10))
      result = await storeB.claim('g', 'id-2', 'b:1', 30_000)
    }
    expect(result).toBe('claimed')
    // Claims are per group: another group's id is free.
    const other = new SqliteDedupeStore(a, () => 2)
    expect(await other.claim('g2', 'id-2', 'a:9', 30_000)).toBe('claimed')
  })
})
