import { randomUUID } from 'node:crypto'
import type { OmnibusEvent } from '@omnibus/core'
import type { RedisBackend } from '@omnibus/redis'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

// The scan examines at most 10 × 1000 keys per discovery round (packages/redis/src/discovery.ts);
// a full walk of a larger keyspace takes more rounds, which the README's bound accounts for.
const KEYS_PER_ROUND = 10_000

describeWithService('redis', 'redis: streams created by producers that are not Omnibus', () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const backends: RedisBackend[] = []
  const cleanups: Array<() => Promise<unknown>> = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
  })

  it('a wildcard subscriber receives a CloudEvent XADDed to a new stream within the documented bound', async () => {
    const intervalMs = 250
    const b = makeBackend({ discoveryIntervalMs: intervalMs })
    backends.push(b)
    await b.connect()
    const run = `r${randomUUID().slice(0, 8)}`
    const broadcast: OmnibusEvent[] = []
    const grouped: OmnibusEvent[] = []
    await b.subscribe(`fx.${run}.**`, (e) => void broadcast.push(e))
    await b.subscribe(`fx.${run}.*`, (e) => void grouped.push(e), { group: `fx-${run}`, from: 'earliest' })

    // A producer that only knows the key naming and the field name: no registry, no announcement.
    const raw = b.commandClient().duplicate()
    cleanups.push(async () => raw.disconnect())
    const topic = `fx.${run}.sensor`
    const key = `${IT_PREFIX}stream:${topic}`
    cleanups.push(() => raw.del(key, `${IT_PREFIX}stream:fx.${run}.bad topic`))
    // A stream whose name is no topic is skipped and does not stop the scan.
    await raw.xadd(`${IT_PREFIX}stream:fx.${run}.bad topic`, '*', 'event', '{}')
    const keysOnServer = Number(await raw.dbsize())
    const rounds = Math.ceil(keysOnServer / KEYS_PER_ROUND)
    // Documented bound: the rounds of one full walk, once more for a stream created mid-walk, and
    // the second the capabilities allow for a consumer to start reading a new stream.
    const boundMs = 2 * rounds * intervalMs + 1_000
    const cloudEvent = {
      specversion: '1.0',
      id: `foreign-${run}`,
      source: 'https://example.com/sensors/42',
      type: topic,
      time: new Date().toISOString(),
      subject: 'room-1',
      datacontenttype: 'application/json',
      data: { celsius: 21.5 },
      tenant: 'acme',
    }
    const written = Date.now()
    await raw.xadd(key, '*', 'event', JSON.stringify(cloudEvent))
    await eventually(
      'the foreign event at both subscribers',
      () => broadcast.length > 0 && grouped.length > 0,
      boundMs,
    )
    const tookMs = Date.now() - written
    expect(tookMs).toBeLessThanOrEqual(boundMs)
    for (const e of [broadcast[0], grouped[0]] as OmnibusEvent[]) {
      expect(e.id).toBe(`foreign-${run}`)
      expect(e.topic).toBe(topic)
      expect(e.data).toEqual({ celsius: 21.5 })
      expect(e.headers).toEqual({ tenant: 'acme' })
      expect(e.subject).toBe('room-1')
    }
    // Nothing else (the stream with the bad name) reached the handlers.
    expect(broadcast).toHaveLength(1)
    expect(grouped).toHaveLength(1)
  })

  it('a group that subscribes after the stream was found reads it from the start with from: earliest', async () => {
    const b = makeBackend({ discoveryIntervalMs: 250 })
    backends.push(b)
    await b.connect()
    const run = `r${randomUUID().slice(0, 8)}`
    const first: OmnibusEvent[] = []
    await b.subscribe(`fy.${run}.*`, (e) => void first.push(e))
    const raw = b.commandClient().duplicate()
    cleanups.push(async () => raw.disconnect())
    const topic = `fy.${run}.a`
    const key = `${IT_PREFIX}stream:${topic}`
    cleanups.push(() => raw.del(key))
    const doc = { specversion: '1.0', id: `y-${run}`, source: 'elsewhere', type: topic, data: 1 }
    await raw.xadd(key, '*', 'event', JSON.stringify(doc))
    await eventually('the first subscriber', () => first.length === 1, 10_000)
    // A later group on the same backend starts with the streams the scan already found.
    const later: OmnibusEvent[] = []
    await b.subscribe(`fy.${run}.*`, (e) => void later.push(e), { group: `late-${run}`, from: 'earliest' })
    await eventually('the late group', () => later.length === 1, 2_000)
    expect(later[0]?.id).toBe(`y-${run}`)
  })
})
