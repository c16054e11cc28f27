/**
 * `omnibus cost` against real brokers, as a separate process: it replays `model.call` up to its own
 * marker (on Kafka, across the topic's partitions) and adds up exactly the calls in its window.
 */
import { randomUUID } from 'node:crypto'
import { createBackend, type EventInput } from '@omnibus/core'
import { expect, it } from 'vitest'
// `.js`, not `.ts`: the helper belongs to the cli project, whose output tree is laid out differently,
// so tsc refuses to rewrite a `.ts` path into it; vitest resolves either to the source.
import { runOmnibus } from '../../packages/cli/test/process.js'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'

// The test's own copy of the prices (USD per million tokens): expected totals are computed here.
const PRICE: Readonly<Record<string, readonly [number, number]>> = {
  'gpt-4o-mini': [0.15, 0.6],
  'claude-3-5-haiku-20241022': [0.8, 4],
}

function costRoundTrip(url: () => string): void {
  it('adds up exactly the calls of the window, read to the end of the topic', async () => {
    // The topic may hold other runs' calls (Kafka topics are shared): this run's are its session.
    const session = `it-cost-${randomUUID().slice(0, 8)}`
    const now = Date.now()
    const calls = Array.from({ length: 60 }, (_, i) => ({
      model: i % 3 === 0 ? 'claude-3-5-haiku-20241022' : 'gpt-4o-mini',
      input: 100 + i * 37,
      output: 10 + i * 11,
      // Every fifth call is two days old: outside --since 24h.
      hoursAgo: i % 5 === 0 ? 48 : (i % 20) + 0.5,
    }))
    const backend = await createBackend(url())
    await backend.connect()
    try {
      // One at a time, so a Kafka topic gets them on all its partitions.
      for (const [i, c] of calls.entries()) {
        const input: EventInput = {
          topic: 'model.call',
          source: `agent-${i % 2}`,
          time: now - c.hoursAgo * 3_600_000,
          data: { model: c.model, inputTokens: c.input, outputTokens: c.output, session, success: true },
        }
        await backend.publish(input)
      }
    } finally {
      await backend.disconnect({ drainTimeoutMs: 1000 })
    }
    let calls24 = 0
    let input24 = 0
    let output24 = 0
    let cost24 = 0
    for (const c of calls) {
      if (c.hoursAgo > 24) continue
      const [inPrice, outPrice] = PRICE[c.model] as readonly [number, number]
      calls24++
      input24 += c.input
      output24 += c.output
      cost24 += (c.input * inPrice + c.output * outPrice) / 1e6
    }

    const r = await runOmnibus(['cost', '--backend', url(), '--since', '24h', '--by', 'session', '--json'], {
      timeoutMs: 90_000,
    })
    // kafkajs 2.2.4 on Node 24 warns about a negative timeout of its own (see the Kafka README).
    // The shared topic may also hold other runs' calls of models without a price (the note names
    // them); none of this run's models may be among them.
    const unpriced = (l: string) =>
      l.startsWith('unpriced: ') && Object.keys(PRICE).every((m) => !l.split(/\s*[:,(]\s*/).includes(m))
    const stderr = r.stderr
      .split('\n')
      .filter(
        (l) =>
          l !== '' &&
          !unpriced(l) &&
          !/TimeoutNegativeWarning|Timeout duration was set|--trace-warnings/.test(l),
      )
    expect(stderr).toEqual([])
    expect(r.code).toBe(0)
    const row = JSON.parse(r.stdout).rows.find((x: { key: string }) => x.key === session)
    expect(row).toMatchObject({
      calls: calls24,
      inputTokens: input24,
      outputTokens: output24,
      unpricedCalls: 0,
    })
    expect(row.costUsd).toBeCloseTo(cost24, 12)
  }, 180_000)
}

describeWithService('redis', 'omnibus cost on Redis', () => {
  const prefix = `omnibus-it-cost-${randomUUID().slice(0, 8)}:`
  costRoundTrip(() => `${serviceEndpoint('redis') as string}?keyPrefix=${prefix}`)
})

describeWithService('kafka', 'omnibus cost on Kafka', () => {
  costRoundTrip(() => `kafka://${(serviceEndpoint('kafka') as string).split(',')[0]}`)
})
