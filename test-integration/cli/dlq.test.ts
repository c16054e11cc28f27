/**
 * `omnibus dlq list` and `dlq redrive` against real brokers, as separate processes: what redrive
 * records is read back by a later list.
 */
import { randomUUID } from 'node:crypto'
import { createBackend, createEvent, type EventBackend, type OmnibusEvent } from '@omnibus/core'
import { deadLetterInput } from '@omnibus/core/backend'
import { afterAll, beforeAll, expect, it } from 'vitest'
// `.js`, not `.ts`: the helper belongs to the cli project, whose output tree is laid out differently,
// so tsc refuses to rewrite a `.ts` path into it; vitest resolves either to the source.
import { runOmnibus } from '../../packages/cli/test/process.js'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'

function dlqRoundTrip(url: () => string, idleMs: string): void {
  const run = randomUUID().slice(0, 8)
  const dlqTopic = `it.cli.dlq${run}`
  const origTopic = `it.cli.orders${run}`
  let backend: EventBackend
  const redriven: OmnibusEvent[] = []
  const ids: string[] = []

  beforeAll(async () => {
    backend = await createBackend(url())
    await backend.connect()
    await backend.subscribe(origTopic, (e) => void redriven.push(e), { group: 'billing', from: 'earliest' })
    const now = Date.now()
    for (let i = 0; i < 2; i++) {
      const original = createEvent({ topic: origTopic, data: { order: i } })
      ids.push(original.id)
      await backend.publish(
        deadLetterInput(original, dlqTopic, {
          reason: `bad order ${i}`,
          group: 'billing',
          attempts: 3,
          firstFailureAt: now,
          lastFailureAt: now,
          backend: backend.name,
        }),
      )
    }
  }, 60_000)
  afterAll(async () => {
    await backend?.disconnect({ drainTimeoutMs: 1000 })
  })

  it('list shows the pending letters; after redrive a later list shows none pending, --all shows them redriven', async () => {
    const common = ['--topic', dlqTopic, '--backend', url(), '--idle', idleMs]
    const list = await runOmnibus(['dlq', 'list', ...common], { timeoutMs: 60_000 })
    expect(list.code).toBe(0)
    for (const id of ids) expect(list.stdout).toContain(`id=${id}`)
    expect(list.stderr).toMatch(/^2 pending dead letter\(s\)/m)

    const redrive = await runOmnibus(['dlq', 'redrive', ...common], { timeoutMs: 60_000 })
    expect(redrive.stderr).toMatch(/2 redriven, 0 failed/)
    expect(redrive.code).toBe(0)
    await eventually(
      'both redriven events delivered',
      () => ids.every((id) => redriven.some((e) => e.id === id)),
      30_000,
    )

    const after = await runOmnibus(['dlq', 'list', ...common], { timeoutMs: 60_000 })
    expect(after.code).toBe(0)
    expect(after.stdout).toBe('')
    expect(after.stderr).toMatch(/^0 pending dead letter\(s\) on \S+ \(2 redriven/m)
    const all = await runOmnibus(['dlq', 'list', '--all', ...common], { timeoutMs: 60_000 })
    const states = all.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[0])
    expect(states).toEqual(['redriven', 'redriven'])

    const again = await runOmnibus(['dlq', 'redrive', ...common], { timeoutMs: 60_000 })
    expect(again.code).toBe(0)
    expect(again.stderr).toMatch(/0 redriven, 0 failed \(2 redriven by an earlier run\)/)
  }, 180_000)
}

describeWithService('redis', 'omnibus dlq on Redis', () => {
  dlqRoundTrip(() => `${serviceEndpoint('redis') as string}?keyPrefix=omnibus-it-cli:`, '1500')
})

describeWithService('kafka', 'omnibus dlq on Kafka', () => {
  dlqRoundTrip(() => `kafka://${(serviceEndpoint('kafka') as string).split(',')[0]}`, '4000')
})
