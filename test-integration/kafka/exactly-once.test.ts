import type { EventBackend } from '@omnibus/core'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'

const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('kafka', 'Kafka exactly-once across processes', () => {
  process.env.OMNIBUS_IT_KAFKA_BROKERS = requireEndpoint('kafka')
  const backends: EventBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 1000 })))
  })

  it('an event id handled by one member is not handled again by another backend instance of its group', async () => {
    const topic = `eo.${runId}.orders`
    const group = `eo-${runId}`
    const publisher = makeBackend()
    await publisher.connect()
    backends.push(publisher)
    // Each backend instance stands for a process: its own client, producer and memory.
    const effects: Array<{ member: string; id: string; copy: number }> = []
    for (const member of ['a', 'b']) {
      const b = makeBackend()
      await b.connect()
      backends.push(b)
      await b.subscribe(
        topic,
        (event) => {
          effects.push({ member, id: event.id, copy: (event.data as { copy: number }).copy })
        },
        { group, guarantee: 'exactly-once' },
      )
    }
    // Warm up until both members are live: distinct ids on every partition.
    let probes = 0
    await eventually(
      'both members handling events',
      () => {
        if (new Set(effects.map((e) => e.member)).size === 2) return true
        for (let k = 0; k < 6; k++) {
          void publisher.publish({ topic, data: { copy: -1 }, partitionKey: `probe-${probes++}` })
        }
        return false
      },
      60_000,
    )
    const before = effects.length
    // The same id published again and again, with keys that spread the copies over every
    // partition (so over both members): only the first copy may have an effect.
    const id = `${runId}-the-order`
    for (let copy = 0; copy < 12; copy++) {
      await publisher.publish({ topic, id, data: { copy }, partitionKey: `key-${copy}` })
      if (copy === 0)
        await eventually('the first copy handled', () => effects.some((e) => e.id === id), 20_000)
    }
    // A fence per partition: once each is handled, every earlier copy was seen (per-partition order).
    const fences = await Promise.all(
      Array.from({ length: 12 }, (_, k) =>
        publisher.publish({ topic, data: { copy: 100 + k }, partitionKey: `key-${k}` }),
      ),
    )
    await eventually('the fences', () => fences.every((f) => effects.some((e) => e.id === f.id)), 30_000)
    const ofId = effects.slice(before).filter((e) => e.id === id)
    expect(ofId.map((e) => e.copy)).toEqual([0])
  }, 120_000)
})
