import { ConnectionError, type EventBackend, isRetryable, NotConnectedError } from '@omnibus/core'
import { expect } from 'vitest'
import { caught, Inbox, isErrorOf } from '../harness.ts'
import { waitFor, withDeadline } from '../wait.ts'
import type { ConformanceCase } from './types.ts'

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function healthy(b: EventBackend, timeoutMs: number): Promise<boolean> {
  try {
    return (await withDeadline(b.healthCheck(), timeoutMs, 'healthCheck')).healthy
  } catch {
    return false
  }
}

const restart: ConformanceCase = {
  id: '34-broker-restart',
  title:
    'broker restart under load: retryable errors or buffering, health goes down then up, nothing acknowledged is lost',
  needs: (o) =>
    o.restart === undefined ? 'no restart hook given (options.restart; integration only)' : undefined,
  timeoutMs: (t) => t.restartMs * 2,
  async run(h) {
    const pub = await h.backend()
    const consumer = await h.backend()
    const topic = h.topic('restart')
    const inbox = new Inbox('consumer across the restart')
    const opts = h.caps.groups ? { group: h.group('restart') } : {}
    await h.subscribe(consumer, topic, inbox, opts)
    await h.settle(pub, topic, [inbox])
    const accepted: string[] = []
    const fatal: Error[] = []
    let retryable = 0
    let stop = false
    let n = 0
    const publisher = (async () => {
      while (!stop) {
        try {
          accepted.push((await pub.publish({ topic, data: { runId: h.runId, n: n++ } })).id)
        } catch (error) {
          if (isRetryable(error)) retryable++
          else fatal.push(error as Error)
          // The publisher's own backoff before trying again, as an application would do.
          await pause(50)
        }
      }
    })()
    const health: boolean[] = []
    let watching = true
    const watcher = (async () => {
      while (watching) {
        health.push(await healthy(pub, 2000))
        await pause(50)
      }
    })()
    try {
      await waitFor(() => accepted.length >= 20, {
        timeoutMs: h.timeouts.deliveryMs,
        message: '20 publishes accepted before the restart',
      })
      const beforeRestart = accepted.length
      await withDeadline(h.options.restart!(), h.timeouts.restartMs, 'the broker restart')
      // Samples taken here count too: the watcher may be between samples when health returns.
      await waitFor(
        async () => {
          const ok = await healthy(pub, 2000)
          health.push(ok)
          return ok
        },
        {
          timeoutMs: h.timeouts.restartMs,
          message: 'healthCheck healthy again',
          intervalMs: 100,
        },
      )
      await waitFor(() => accepted.length >= beforeRestart + 20, {
        timeoutMs: h.timeouts.restartMs,
        message: () => `20 more publishes accepted after the restart (${retryable} retryable errors so far)`,
      })
    } finally {
      stop = true
      watching = false
      await publisher
      await watcher
    }
    expect(
      fatal.map((e) => `${e.name}: ${e.message}`),
      'publish errors that were not retryable',
    ).toEqual([])
    const firstDown = health.indexOf(false)
    expect(
      firstDown,
      'healthCheck never reported unhealthy while the broker restarted',
    ).toBeGreaterThanOrEqual(0)
    expect(health.slice(firstDown).includes(true), 'healthCheck never recovered').toBe(true)
    await h.waitAcked(inbox, accepted, h.timeouts.restartMs)
  },
}

const closedPort: ConformanceCase = {
  id: '35-closed-port',
  title: 'connect to a closed port fails fast with a ConnectionError naming the endpoint',
  gate: (caps) => (caps.networked ? undefined : 'backend is not networked (capabilities.networked = false)'),
  needs: (o) =>
    o.unreachable === undefined ? 'no backend aimed at a closed port given (options.unreachable)' : undefined,
  async run(h) {
    const { makeBackend, endpoint } = h.options.unreachable!
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const b = await makeBackend()
      h.defer(() => b.disconnect())
      const t0 = Date.now()
      const err = await caught(
        () => withDeadline(b.connect(), h.timeouts.connectFailMs, 'connect() to a closed port to fail'),
        'connect() to a closed port',
      )
      const took = Date.now() - t0
      expect(
        isErrorOf(err, ConnectionError),
        `expected ConnectionError, got ${err.name}: ${err.message}`,
      ).toBe(true)
      expect(err.message, 'the error should name the endpoint').toContain(endpoint)
      expect(took).toBeLessThan(h.timeouts.connectFailMs)
      expect(b.isConnected).toBe(false)
      const perr = await caught(
        () =>
          withDeadline(
            b.publish({ topic: h.topic('nowhere'), data: null }),
            h.timeouts.connectFailMs,
            'publish',
          ),
        'publish on a backend that failed to connect',
      )
      expect(
        isErrorOf(perr, NotConnectedError) || isErrorOf(perr, ConnectionError),
        `publish after a failed connect: got ${perr.name}: ${perr.message}`,
      ).toBe(true)
      const status = await withDeadline(
        b.healthCheck(),
        h.timeouts.connectFailMs,
        'healthCheck on an unreachable backend',
      )
      expect(status.healthy).toBe(false)
      await b.disconnect()
      // Let pending callbacks of the failed client run, so a late unhandled rejection shows up here.
      await new Promise((resolve) => setImmediate(resolve))
      await new Promise((resolve) => setImmediate(resolve))
      expect(unhandled.map(String), 'unhandled rejections').toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  },
}

/** Resilience cases 34–35. */
export const resilienceCases: readonly ConformanceCase[] = [restart, closedPort]
