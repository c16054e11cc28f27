import { randomUUID } from 'node:crypto'
import type { OmnibusEvent, SubscribeOptions } from '@omnibus/core'
import type { RedisBackend } from '@omnibus/redis'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { makeBackend } from './backend.ts'

describeWithService('redis', "redis: where a subscription at from: 'latest' starts", () => {
  process.env.OMNIBUS_IT_REDIS_URL = serviceEndpoint('redis') as string
  const backends: RedisBackend[] = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
  })

  /**
   * Rounds on one connection and one stream: publish 10 events, subscribe (a new group, or a new
   * broadcast subscription), publish a fence and wait for it. Returns the rounds whose
   * subscription was given any event published before it subscribed.
   */
  async function leakingRounds(
    rounds: number,
    pattern: (topic: string) => string,
    opts: (k: number) => SubscribeOptions,
  ): Promise<string[]> {
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    const topic = `start.${randomUUID().slice(0, 8)}.x`
    const leaks: string[] = []
    for (let k = 0; k < rounds; k++) {
      const history = await Promise.all(
        Array.from({ length: 10 }, (_, i) => b.publish({ topic, data: { k, i } }).then((r) => r.id)),
      )
      const got: OmnibusEvent[] = []
      const sub = await b.subscribe(pattern(topic), (e) => void got.push(e), opts(k))
      const fence = await b.publish({ topic, data: { k, fence: true } })
      await eventually(`round ${k}: the fence published after subscribing`, () =>
        got.some((e) => e.id === fence.id),
      )
      const early = got.filter((e) => history.includes(e.id)).length
      if (early > 0) leaks.push(`round ${k}: ${early} of 10`)
      await sub.unsubscribe()
    }
    return leaks
  }

  it('a new group is given no event published before it subscribed, over 200 rounds', async () => {
    const run = randomUUID().slice(0, 8)
    const leaks = await leakingRounds(
      200,
      (t) => t,
      (k) => ({ group: `start-${run}-${k}` }),
    )
    expect(leaks, `${leaks.length} of 200 new groups received earlier events`).toEqual([])
  })

  it('a new group of a wildcard pattern over an existing stream starts after its last entry', async () => {
    const run = randomUUID().slice(0, 8)
    const leaks = await leakingRounds(
      50,
      (t) => t.replace(/\.x$/, '.*'),
      (k) => ({ group: `start-w-${run}-${k}` }),
    )
    expect(leaks, `${leaks.length} of 50 new wildcard groups received earlier events`).toEqual([])
  })

  it('a new broadcast subscription is given no event published before it subscribed', async () => {
    const leaks = await leakingRounds(
      100,
      (t) => t,
      () => ({}),
    )
    expect(leaks, `${leaks.length} of 100 broadcast subscriptions received earlier events`).toEqual([])
  })

  it("from: 'earliest' still starts a new group at the first entry", async () => {
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    const topic = `start.${randomUUID().slice(0, 8)}.e`
    const history = await Promise.all(
      Array.from({ length: 5 }, (_, i) => b.publish({ topic, data: { i } }).then((r) => r.id)),
    )
    const got: string[] = []
    await b.subscribe(topic, (e) => void got.push(e.id), {
      group: `start-e-${randomUUID().slice(0, 8)}`,
      from: 'earliest',
    })
    await eventually('the history, from the first entry', () => history.every((id) => got.includes(id)))
  })
})
