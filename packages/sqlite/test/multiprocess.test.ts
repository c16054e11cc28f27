import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { backends, tempDir, waitFor } from './helpers.ts'

const tmp = tempDir()
const pool = backends()
const children: ChildProcess[] = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await pool.closeAll()
})
process.on('exit', () => tmp.cleanup())

const consumerScript = fileURLToPath(new URL('./fixtures/hanging-consumer.ts', import.meta.url))

function spawnHangingConsumer(file: string, pattern: string, group: string, visibilityMs: number) {
  const child = fork(consumerScript, [file, pattern, group, String(visibilityMs)], {
    execArgv: ['--conditions=@omnibus/source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  children.push(child)
  const messages: { ready?: boolean; got?: string }[] = []
  child.on('message', (m) => messages.push(m as { ready?: boolean; got?: string }))
  return { child, messages }
}

describe('sqlite backend: several processes', () => {
  it('an event held by a killed consumer process is redelivered to another member after its lease', async () => {
    const file = tmp.file()
    const visibilityMs = 400
    const { child, messages } = spawnHangingConsumer(file, 'mp.*', 'workers', visibilityMs)
    await waitFor('the child to subscribe', () => messages.some((m) => m.ready), 15_000)

    const parent = await pool.open({ path: file })
    const r = await parent.publish({ topic: 'mp.job', data: { n: 1 } })
    await waitFor('the child to take the event', () => messages.some((m) => m.got === r.id), 5000)

    // The parent joins the group only now: the event is leased to the child.
    const got: { id: string; attempt: number }[] = []
    await parent.subscribe(
      'mp.*',
      (e, ctx) => {
        got.push({ id: e.id, attempt: ctx.attempt })
      },
      { group: 'workers', visibilityTimeoutMs: visibilityMs },
    )
    child.kill('SIGKILL')
    const killedAt = Date.now()
    await waitFor('redelivery to the surviving member', () => got.length === 1, 5000)
    expect(got[0]).toEqual({ id: r.id, attempt: 2 })
    // Not before the lease ran out (it was extended while the child lived, so at most one window after the kill).
    expect(Date.now() - killedAt).toBeLessThan(visibilityMs * 3 + 1000)
  })

  it('a live consumer process keeps its lease: no other member gets the event while it works', async () => {
    const file = tmp.file()
    const { messages } = spawnHangingConsumer(file, 'live.*', 'workers', 500)
    await waitFor('the child to subscribe', () => messages.some((m) => m.ready), 15_000)
    const parent = await pool.open({ path: file })
    const held = await parent.publish({ topic: 'live.job', data: 1 })
    await waitFor('the child to take the first event', () => messages.some((m) => m.got === held.id), 5000)
    const got: string[] = []
    await parent.subscribe(
      'live.*',
      (e) => {
        got.push(e.id)
      },
      { group: 'workers', visibilityTimeoutMs: 500 },
    )
    const next = await parent.publish({ topic: 'live.job', data: 2 })
    await waitFor('the second event here (the child is busy)', () => got.length === 1)
    expect(got).toEqual([next.id])
    // Six lease windows later the child's event is still only in the child.
    const until = Date.now() + 3000
    await waitFor('six lease windows', () => Date.now() > until, 5000)
    expect(got).toEqual([next.id])
  })
})
