import {
  ListQueuesCommand,
  ListQueueTagsCommand,
  type SendMessageBatchCommand,
  type SQSClient,
  SQSServiceException,
} from '@aws-sdk/client-sqs'
import { PublishError, silentLogger } from '@omnibus/core'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { QUEUE_TAGS, QueueDirectory } from '../src/directory.ts'
import { BatchSender, QUEUE_GONE } from '../src/sender.ts'

type Handler = (command: unknown) => unknown

/** A stand-in for SQSClient that answers each command with `handler` and records it. */
function fakeClient(handler: Handler): { client: SQSClient; calls: unknown[] } {
  const calls: unknown[] = []
  const client = {
    async send(command: unknown) {
      calls.push(command)
      return handler(command)
    },
  } as unknown as SQSClient
  return { client, calls }
}

const base = 'http://sqs.local/000000000000/'

describe('QueueDirectory', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  function server(queues: Record<string, Record<string, string> | undefined>) {
    return fakeClient((command) => {
      if (command instanceof ListQueuesCommand) {
        const prefix = command.input.QueueNamePrefix ?? ''
        return {
          QueueUrls: Object.keys(queues)
            .filter((n) => n.startsWith(prefix))
            .map((n) => base + n),
        }
      }
      if (command instanceof ListQueueTagsCommand) {
        const name = (command.input.QueueUrl ?? '').slice(base.length)
        if (!(name in queues)) {
          throw new SQSServiceException({ name: 'QueueDoesNotExist', $fault: 'client', $metadata: {} })
        }
        return { Tags: queues[name] }
      }
      throw new Error(`unexpected command ${String(command)}`)
    })
  }
  const tags = (pattern: string, kind: string) => ({ [QUEUE_TAGS.pattern]: pattern, [QUEUE_TAGS.kind]: kind })

  it('routes a topic to every queue whose tagged pattern matches, and reads tags once per queue', async () => {
    const queues: Record<string, Record<string, string> | undefined> = {
      'app-g-billing-1': tags('orders.*', 'group'),
      'app-g-audit-2': tags('**', 'group'),
      'app-b-3': tags('orders.created', 'broadcast'),
      'app-b-4.fifo': tags('users.*', 'broadcast'),
      'app-other': { owner: 'someone else' },
    }
    const { client, calls } = server(queues)
    const dir = new QueueDirectory(client, 'app', 60_000, silentLogger, 'SQS')
    const targets = await dir.targetsFor('orders.created')
    expect(targets.map((t) => t.url.slice(base.length)).sort()).toEqual([
      'app-b-3',
      'app-g-audit-2',
      'app-g-billing-1',
    ])
    expect((await dir.targetsFor('users.new')).map((t) => [t.url.slice(base.length), t.fifo])).toEqual(
      expect.arrayContaining([['app-b-4.fifo', true]]),
    )
    await dir.refresh()
    expect(calls.filter((c) => c instanceof ListQueueTagsCommand)).toHaveLength(5)
    dir.close()
  })

  it('drops broadcast queues that leave the listing, keeps group queues, looks again at untagged ones', async () => {
    const queues: Record<string, Record<string, string> | undefined> = {
      'app-g-x-1': tags('a.b', 'group'),
      'app-b-1': tags('a.b', 'broadcast'),
      'app-b-2': undefined,
    }
    const { client } = server(queues)
    const dir = new QueueDirectory(client, 'app', 60_000, silentLogger, 'SQS')
    expect(await dir.targetsFor('a.b')).toHaveLength(2)
    delete queues['app-g-x-1']
    delete queues['app-b-1']
    queues['app-b-2'] = tags('a.*', 'broadcast')
    await dir.refresh()
    const urls = (await dir.targetsFor('a.b')).map((t) => t.url).sort()
    // The durable group queue stays routed until a send finds it gone (a restoring broker lists late).
    expect(urls).toEqual([`${base}app-b-2`, `${base}app-g-x-1`])
    dir.forget(`${base}app-g-x-1`)
    expect((await dir.targetsFor('a.b')).map((t) => t.url)).toEqual([`${base}app-b-2`])
    dir.close()
  })

  it('serves a publish after at most two listings when one listing takes longer than the interval', async () => {
    vi.useFakeTimers()
    const listingMs = 300
    const queues: Record<string, Record<string, string>> = { 'app-b-1': tags('a.b', 'broadcast') }
    const { client } = fakeClient(async (command) => {
      if (command instanceof ListQueuesCommand) {
        // The answer reflects the queues at the start of the listing.
        const urls = Object.keys(queues).map((n) => base + n)
        await new Promise((resolve) => setTimeout(resolve, listingMs))
        return { QueueUrls: urls }
      }
      if (command instanceof ListQueueTagsCommand) {
        return { Tags: queues[(command.input.QueueUrl ?? '').slice(base.length)] }
      }
      throw new Error(`unexpected command ${String(command)}`)
    })
    const dir = new QueueDirectory(client, 'app', 250, silentLogger, 'SQS')
    /** Advances the clock until `p` settles; returns its value and the time it took. */
    const timed = async <T>(p: Promise<T>) => {
      let done = false
      p.then(
        () => (done = true),
        () => (done = true),
      )
      let waited = 0
      while (!done && waited < 10 * listingMs) {
        await vi.advanceTimersByTimeAsync(10)
        waited += 10
      }
      expect(done, `a publish still waiting for a listing after ${waited} ms`).toBe(true)
      return { value: await p, waited }
    }
    const first = await timed(dir.targetsFor('a.b'))
    expect(first.value.map((t) => t.url)).toEqual([`${base}app-b-1`])
    expect(first.waited).toBeLessThanOrEqual(listingMs + 10)

    // A queue that existed for longer than the interval before a publish is in what it uses,
    // even while background listings keep starting before it.
    queues['app-b-2'] = tags('a.*', 'broadcast')
    await vi.advanceTimersByTimeAsync(400)
    const second = await timed(dir.targetsFor('a.b'))
    expect(second.value.map((t) => t.url).sort()).toEqual([`${base}app-b-1`, `${base}app-b-2`])
    expect(second.waited).toBeLessThanOrEqual(2 * listingMs + 10)
    dir.close()
  })

  it('keeps queues created by this process even before the listing shows them', async () => {
    const { client } = server({})
    const dir = new QueueDirectory(client, 'app', 60_000, silentLogger, 'SQS')
    dir.addLocal({ url: `${base}app-b-9`, pattern: 'x.*', kind: 'broadcast', fifo: false })
    await dir.refresh()
    expect(await dir.targetsFor('x.y')).toHaveLength(1)
    dir.forget(`${base}app-b-9`)
    expect(await dir.targetsFor('x.y')).toHaveLength(0)
    dir.close()
  })
})

describe('QueueDirectory orphan reaping', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  function server(queues: Record<string, Record<string, string>>) {
    return fakeClient((command) => {
      if (command instanceof ListQueuesCommand) return { QueueUrls: Object.keys(queues).map((n) => base + n) }
      if (command instanceof ListQueueTagsCommand) {
        return { Tags: queues[(command.input.QueueUrl ?? '').slice(base.length)] }
      }
      throw new Error('unexpected command')
    })
  }
  const broadcast = (pattern: string, alive?: number) => ({
    [QUEUE_TAGS.pattern]: pattern,
    [QUEUE_TAGS.kind]: 'broadcast',
    ...(alive === undefined ? {} : { [QUEUE_TAGS.alive]: String(alive) }),
  })

  it('stops routing to a broadcast queue whose owner went silent, and deletes it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    const t0 = Date.UTC(2026, 0, 1)
    vi.setSystemTime(t0)
    const queues = {
      'app-b-live': broadcast('x.*', t0 - 1000),
      'app-b-dead': broadcast('x.*', t0 - 700_000),
      'app-b-legacy': broadcast('x.*'),
      'app-g-grp-1': { [QUEUE_TAGS.pattern]: 'x.*', [QUEUE_TAGS.kind]: 'group' },
    }
    const deleted: string[] = []
    const { client } = server(queues)
    const dir = new QueueDirectory(client, 'app', 60_000, silentLogger, 'SQS', {
      orphanAfterMs: 600_000,
      deleteQueue: async (url) => void deleted.push(url),
    })
    const routed = (await dir.targetsFor('x.y')).map((t) => t.url.slice(base.length)).sort()
    expect(routed).toEqual(['app-b-legacy', 'app-b-live', 'app-g-grp-1'])
    expect(deleted).toEqual([`${base}app-b-dead`])

    // The live owner stops refreshing: past the window, the next listing reaps it too.
    vi.setSystemTime(t0 + 400_000)
    await dir.refresh()
    expect((await dir.targetsFor('x.y')).length, 'within the window: still routed').toBe(3)
    vi.setSystemTime(t0 + 700_000)
    await dir.refresh()
    const after = (await dir.targetsFor('x.y')).map((t) => t.url.slice(base.length)).sort()
    expect(after).toEqual(['app-b-legacy', 'app-g-grp-1'])
    expect(deleted).toEqual([`${base}app-b-dead`, `${base}app-b-live`])
    dir.close()
  })

  it('keeps a queue whose owner refreshed its alive tag', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    const t0 = Date.UTC(2026, 0, 1)
    vi.setSystemTime(t0)
    const queues = { 'app-b-1': broadcast('x.*', t0) }
    const deleted: string[] = []
    const { client } = server(queues)
    const dir = new QueueDirectory(client, 'app', 60_000, silentLogger, 'SQS', {
      orphanAfterMs: 600_000,
      deleteQueue: async (url) => void deleted.push(url),
    })
    expect(await dir.targetsFor('x.y')).toHaveLength(1)
    vi.setSystemTime(t0 + 500_000)
    queues['app-b-1'] = broadcast('x.*', t0 + 450_000)
    await dir.refresh()
    vi.setSystemTime(t0 + 900_000)
    await dir.refresh()
    expect(await dir.targetsFor('x.y')).toHaveLength(1)
    expect(deleted).toEqual([])
    dir.close()
  })
})

describe('BatchSender', () => {
  it('coalesces concurrent sends into batches of at most 10 per queue', async () => {
    const { client, calls } = fakeClient((command) => {
      const entries = (command as SendMessageBatchCommand).input.Entries ?? []
      return { Successful: entries.map((e) => ({ Id: e.Id, MessageId: `m-${e.MessageBody}` })), Failed: [] }
    })
    const sender = new BatchSender(client, 262_144, 'SQS')
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) => sender.send(`${base}q`, { body: String(i), bytes: 1 })),
    )
    expect(results).toEqual(Array.from({ length: 25 }, (_, i) => `m-${i}`))
    const sizes = calls.map((c) => ((c as SendMessageBatchCommand).input.Entries ?? []).length)
    expect(sizes).toEqual([10, 10, 5])
  })

  it('splits a batch before it exceeds the request size limit', async () => {
    const { client, calls } = fakeClient((command) => {
      const entries = (command as SendMessageBatchCommand).input.Entries ?? []
      return { Successful: entries.map((e) => ({ Id: e.Id, MessageId: 'x' })) }
    })
    const sender = new BatchSender(client, 1000, 'SQS')
    await Promise.all(Array.from({ length: 4 }, () => sender.send(`${base}q`, { body: 'b', bytes: 400 })))
    expect(calls.map((c) => ((c as SendMessageBatchCommand).input.Entries ?? []).length)).toEqual([2, 2])
  })

  it('settles each entry on its own: one rejected entry does not fail the others', async () => {
    const { client } = fakeClient((command) => {
      const entries = (command as SendMessageBatchCommand).input.Entries ?? []
      return {
        Successful: entries
          .filter((e) => e.MessageBody !== 'bad')
          .map((e) => ({ Id: e.Id, MessageId: 'ok' })),
        Failed: entries
          .filter((e) => e.MessageBody === 'bad')
          .map((e) => ({ Id: e.Id, Code: 'InvalidMessageContents', SenderFault: true, Message: 'nope' })),
      }
    })
    const sender = new BatchSender(client, 262_144, 'SQS')
    const settled = await Promise.allSettled(
      ['a', 'bad', 'c'].map((body) => sender.send(`${base}q`, { body, bytes: 1 })),
    )
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    const reason = (settled[1] as PromiseRejectedResult).reason
    expect(reason).toBeInstanceOf(PublishError)
    expect(reason.retryable).toBe(false)
    expect(reason.message).toMatch(/InvalidMessageContents/)
  })

  it('reports a deleted queue as gone instead of failing the publish', async () => {
    const { client } = fakeClient(() => {
      throw new SQSServiceException({ name: 'QueueDoesNotExist', $fault: 'client', $metadata: {} })
    })
    const sender = new BatchSender(client, 262_144, 'SQS')
    expect(await sender.send(`${base}gone`, { body: 'x', bytes: 1 })).toBe(QUEUE_GONE)
  })

  it('rejects every entry of a batch the server refused with a classified error', async () => {
    const { client } = fakeClient(() => {
      throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    })
    const sender = new BatchSender(client, 262_144, 'SQS at http://127.0.0.1:1')
    const settled = await Promise.allSettled(
      [1, 2].map(() => sender.send(`${base}q`, { body: 'x', bytes: 1 })),
    )
    for (const s of settled) {
      expect(s.status).toBe('rejected')
      expect((s as PromiseRejectedResult).reason.retryable).toBe(true)
      expect((s as PromiseRejectedResult).reason.message).toContain('127.0.0.1:1')
    }
  })
})
