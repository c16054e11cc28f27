import type { OmnibusEvent } from '@omnibus/core'
import { createKafkaClient, type KafkaBackend, resolveKafkaOptions } from '@omnibus/kafka'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { itOptions, makeBackend } from './backend.ts'

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('kafka', 'Kafka delayed delivery (delay topics and their forwarder)', () => {
  process.env.OMNIBUS_IT_KAFKA_BROKERS = requireEndpoint('kafka')
  const open: KafkaBackend[] = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1_000 })))
  })

  async function backend(): Promise<KafkaBackend> {
    const b = makeBackend()
    open.push(b)
    await b.connect()
    return b
  }

  async function recordsOn(topic: string): Promise<number> {
    const client = createKafkaClient(resolveKafkaOptions(itOptions(requireEndpoint('kafka'))))
    await client.connect()
    try {
      return (await client.endOffsets(topic)).reduce((n, p) => n + Number(p.offset), 0)
    } finally {
      await client.disconnect()
    }
  }

  it('a delayed event is not on its topic until due: a later event of its key goes first (concurrency 1), the delayed one comes once at its time', async () => {
    const topic = `delay.${runId}.order`
    const b = await backend()
    const seen: { data: string; at: number; deliverAt: number | undefined }[] = []
    await b.subscribe(
      topic,
      (e: OmnibusEvent) => void seen.push({ data: String(e.data), at: Date.now(), deliverAt: e.deliverAt }),
      { group: `g-${runId}-order`, concurrency: 1 },
    )
    await b.publish({ topic, data: 'delayed', partitionKey: 'k', delayMs: 6_000 })
    await b.publish({ topic, data: 'now', partitionKey: 'k' })
    await eventually('the undelayed event', () => seen.length === 1, 15_000)
    expect(seen.map((s) => s.data)).toEqual(['now'])
    expect(await recordsOn(topic)).toBe(1)
    await eventually('the delayed event', () => seen.length === 2, 30_000)
    expect(seen.map((s) => s.data)).toEqual(['now', 'delayed'])
    const d = seen[1] as (typeof seen)[number]
    expect(d.at).toBeGreaterThanOrEqual(d.deliverAt as number)
    await new Promise((r) => setTimeout(r, 1_000))
    expect(seen).toHaveLength(2)
  }, 60_000)

  it('a delayed event survives its consumer leaving, and of two members of the group one handles it, once', async () => {
    const topic = `delay.${runId}.restart`
    const group = `g-${runId}-restart`
    const first = await backend()
    const early: string[] = []
    await first.subscribe(topic, (e) => void early.push(String(e.data)), { group })
    await first.publish({ topic, data: 'x', delayMs: 8_000 })
    await first.disconnect()
    const got: string[] = []
    const a = await backend()
    const c = await backend()
    await a.subscribe(topic, () => void got.push('a'), { group })
    await c.subscribe(topic, () => void got.push('c'), { group })
    await eventually('the delayed event', () => got.length === 1, 40_000)
    await new Promise((r) => setTimeout(r, 2_000))
    expect(got).toHaveLength(1)
    expect(early).toEqual([])
  }, 90_000)
})
