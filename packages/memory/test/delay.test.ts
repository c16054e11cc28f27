import { randomUUID } from 'node:crypto'
import { CapabilityError, DLQ_HEADERS, type OmnibusEvent } from '@omnibus/core'
import { waitUntil } from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'
import { memoryBackends } from './backends.ts'

const { backend } = memoryBackends()

interface Arrival {
  readonly event: OmnibusEvent
  readonly at: number
}

describe('memory backend: delayed events', () => {
  it('holds a delayed event in the bus until its time; publish resolves at once', async () => {
    const b = await backend()
    const arrivals: Arrival[] = []
    await b.subscribe('d.*', (event) => void arrivals.push({ event, at: Date.now() }))
    const sent = Date.now()
    const receipt = await b.publish({ topic: 'd.x', data: 1, delayMs: 150 })
    expect(Date.now() - sent).toBeLessThan(100)
    expect((await b.healthCheck()).detail).toContain('1 delayed event(s) held by the bus')
    await waitUntil(() => arrivals.length === 1, { timeoutMs: 2_000 })
    const first = arrivals[0] as Arrival
    expect(first.event.id).toBe(receipt.id)
    expect(first.at).toBeGreaterThanOrEqual(first.event.deliverAt as number)
    expect(first.at - (first.event.deliverAt as number)).toBeLessThan(100)
    expect((await b.healthCheck()).detail).toContain('0 delayed event(s) held by the bus')
  })

  it('delivers by time, and in publish order among events due at the same time', async () => {
    const b = await backend()
    const seen: unknown[] = []
    await b.subscribe('d.*', (event) => void seen.push(event.data))
    const at = Date.now() + 120
    await b.publish({ topic: 'd.x', data: 'late', deliverAt: at + 60 })
    await b.publish({ topic: 'd.x', data: 'first', deliverAt: at })
    await b.publish({ topic: 'd.x', data: 'second', deliverAt: at })
    await b.publish({ topic: 'd.x', data: 'now' })
    await waitUntil(() => seen.length === 4, { timeoutMs: 2_000 })
    expect(seen).toEqual(['now', 'first', 'second', 'late'])
  })

  it('routes a held event to the subscriptions there are when it is due', async () => {
    const b = await backend()
    await b.publish({ topic: 'd.x', data: 1, delayMs: 100 })
    const seen: unknown[] = []
    await b.subscribe('d.x', (event) => void seen.push(event.data), { group: 'g' })
    await waitUntil(() => seen.length === 1, { timeoutMs: 2_000 })
  })

  it('keeps held events across disconnect and connect, delivering those due meanwhile on connect', async () => {
    const b = await backend()
    await b.publish({ topic: 'd.x', data: 'held', delayMs: 50 })
    await b.disconnect()
    const deliverAfter = Date.now() + 150
    await waitUntil(() => Date.now() > deliverAfter)
    await b.connect()
    const seen: unknown[] = []
    // Subscribed before the timer's first turn: it routes the due event now.
    await b.subscribe('d.*', (event) => void seen.push(event.data))
    await waitUntil(() => seen.length === 1, { timeoutMs: 2_000 })
    expect(seen).toEqual(['held'])
  })

  it('refuses a delay beyond capabilities.delay.maxDelayMs with a CapabilityError, publishing nothing', async () => {
    const b = await backend()
    const max = (b.capabilities.delay as { maxDelayMs: number }).maxDelayMs
    await expect(b.publish({ topic: 'd.x', data: 1, delayMs: max + 60_000 })).rejects.toBeInstanceOf(
      CapabilityError,
    )
    expect((await b.healthCheck()).detail).toContain('0 delayed event(s) held by the bus')
    const batch = await b.publishBatch([
      { topic: 'd.x', data: 1, delayMs: 50 },
      { topic: 'd.x', data: 2, delayMs: max + 60_000 },
      { topic: 'd.x', data: 3 },
    ])
    expect(batch.results.map((r) => r.ok)).toEqual([true, false, true])
    const failed = batch.results[1]
    expect(failed?.ok === false && failed.error).toBeInstanceOf(CapabilityError)
    expect((await b.healthCheck()).detail).toContain('1 delayed event(s) held by the bus')
  })

  it('dead-letters an event that expired before it was delivered, with reason expired', async () => {
    const b = await backend()
    const topic = `d.${randomUUID().slice(0, 8)}`
    const ran: unknown[] = []
    const letters: OmnibusEvent[] = []
    await b.subscribe('omnibus.deadletter', (event) => void letters.push(event))
    await b.subscribe(topic, (event) => void ran.push(event.data), { group: 'workers' })
    await b.publish({ topic, data: 1, expiresAt: Date.now() - 1 })
    await waitUntil(() => letters.length === 1)
    expect(ran).toEqual([])
    expect(letters[0]?.headers[DLQ_HEADERS.reason]).toBe('expired')
    expect(letters[0]?.headers[DLQ_HEADERS.group]).toBe('workers')
  })
})
