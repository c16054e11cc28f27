import { afterEach, describe, expect, it } from 'vitest'
import {
  closestName,
  rejectUnknownOptions,
  rejectUnknownUrlParams,
  resolveRetryPolicy,
  resolveSubscribeOptions,
} from '../src/backend.ts'
import { AgentMessageBus, ConfigurationError, ObservabilityBus, redactUrl } from '../src/index.ts'
import { createFakeBackend } from './fake-backend.ts'

function errorOf(fn: () => unknown): ConfigurationError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError)
    return error as ConfigurationError
  }
  throw new Error('expected a ConfigurationError')
}

async function rejectionOf(p: Promise<unknown>): Promise<ConfigurationError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(ConfigurationError)
  return error as ConfigurationError
}

const SUBSCRIBE_OPTION_NAMES = [
  'group',
  'guarantee',
  'concurrency',
  'from',
  'retry',
  'deadLetter',
  'signal',
  'visibilityTimeoutMs',
]

describe('rejectUnknownOptions', () => {
  it('names the key, suggests the closest known one and lists them all', () => {
    const e = errorOf(() => rejectUnknownOptions('widget option', { colour: 'red' }, ['color', 'size']))
    expect(e.message).toBe(
      'unknown widget option "colour" (did you mean "color"?): the known widget options are color, size',
    )
    expect(e.code).toBe('UNKNOWN_OPTION')
    expect(e.retryable).toBe(false)
  })

  it('suggests nothing when no known name is close', () => {
    const e = errorOf(() => rejectUnknownOptions('widget option', { foo: 1 }, ['color', 'size']))
    expect(e.message).not.toContain('did you mean')
    expect(e.message).toContain('"foo"')
  })

  it('passes known keys, undefined and null, and carries the backend', () => {
    rejectUnknownOptions('widget option', { color: 1 }, ['color'])
    rejectUnknownOptions('widget option', undefined, ['color'])
    rejectUnknownOptions('widget option', null, ['color'])
    const e = errorOf(() => rejectUnknownOptions('x option', { y: 1 }, [], { backend: 'redis' }))
    expect(e.backend).toBe('redis')
    expect(() => rejectUnknownOptions('widget option', 42, ['color'])).toThrow(/must be an object/)
  })

  it('finds typos by case and by small edits only', () => {
    expect(closestName('CONCURRENCY', ['concurrency', 'group'])).toBe('concurrency')
    expect(closestName('concurency', ['concurrency', 'group'])).toBe('concurrency')
    expect(closestName('grp', ['concurrency', 'group'])).toBe('group')
    expect(closestName('timeout', ['concurrency', 'group'])).toBeUndefined()
  })
})

describe('rejectUnknownUrlParams', () => {
  it('names the parameter, the known ones and the URL without its secrets', () => {
    const url = new URL('redis://:hunter2@127.0.0.1:6379/0?keyPrefx=app:&password=hunter2')
    const e = errorOf(() => rejectUnknownUrlParams(url, ['keyPrefix', 'maxLen'], { backend: 'redis' }))
    expect(e.message).toContain('unknown redis URL parameter "keyPrefx" (did you mean "keyPrefix"?)')
    expect(e.message).toContain('the redis backend reads the URL parameters keyPrefix, maxLen')
    expect(e.message).toContain('redis://:***@127.0.0.1:6379/0?keyPrefx=app')
    expect(e.message).not.toContain('hunter2')
    expect(e.code).toBe('UNKNOWN_URL_PARAMETER')
    expect(e.backend).toBe('redis')
  })

  it('says when a backend reads no parameters at all', () => {
    const e = errorOf(() => rejectUnknownUrlParams(new URL('x://h?a=1'), [], { backend: 'x' }))
    expect(e.message).toContain('the x backend reads no URL parameters')
  })
})

describe('redactUrl', () => {
  it('hides the values of secret-looking query parameters', () => {
    const shown = redactUrl('kafka://u:pw1@h:9092?sasl_password=pw2&token=pw3&clientId=app')
    expect(shown).not.toMatch(/pw1|pw2|pw3/)
    expect(shown).toContain('clientId=app')
  })

  it('hides the password of an unparseable URL without a user name', () => {
    expect(redactUrl('redis://:pw@ho st')).not.toContain('pw@')
  })
})

describe('subscribe options: one rule on the path every backend takes', () => {
  const backend = createFakeBackend()
  const handler = () => undefined

  it('rejects an unknown key, naming it and the known keys', () => {
    const e = errorOf(() =>
      resolveSubscribeOptions(backend, 'a.b', handler, { foo: 1 } as unknown as Record<string, never>),
    )
    expect(e.message).toContain('unknown subscribe option "foo"')
    for (const name of SUBSCRIBE_OPTION_NAMES) expect(e.message).toContain(name)
  })

  it('suggests the option a typo meant', () => {
    const e = errorOf(() =>
      resolveSubscribeOptions(backend, 'a.b', handler, { concurency: 4 } as unknown as Record<string, never>),
    )
    expect(e.message).toContain('(did you mean "concurrency"?)')
  })

  it('checks the retry policy too', () => {
    const e = errorOf(() =>
      resolveSubscribeOptions(backend, 'a.b', handler, {
        retry: { maxAttempt: 3 } as unknown as Record<string, never>,
      }),
    )
    expect(e.message).toContain('unknown retry option "maxAttempt" (did you mean "maxAttempts"?)')
    expect(() => resolveRetryPolicy({ jiter: 0.1 } as unknown as Record<string, never>)).toThrow(
      /did you mean "jitter"/,
    )
  })

  it('accepts every documented option', () => {
    const r = resolveSubscribeOptions(backend, 'a.b', handler, {
      group: 'g',
      guarantee: 'at-least-once',
      concurrency: 2,
      from: 'latest',
      retry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 2, multiplier: 2, jitter: 0 },
      deadLetter: false,
      signal: new AbortController().signal,
      visibilityTimeoutMs: 1000,
    })
    expect(r.concurrency).toBe(2)
  })

  it('is enforced by subscribe itself', async () => {
    const e = await rejectionOf(
      backend.subscribe('a.b', handler, { foo: 1 } as unknown as Record<string, never>),
    )
    expect(e.message).toContain('unknown subscribe option "foo"')
  })
})

describe('bus options', () => {
  const open: Array<{ close(): Promise<void> }> = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((b) => b.close()))
  })

  it('ObservabilityBus rejects an unknown option and a misspelt one', () => {
    const e = errorOf(() => new ObservabilityBus(createFakeBackend(), { foo: 1 } as never))
    expect(e.message).toContain('unknown ObservabilityBus option "foo"')
    expect(e.message).toContain('bufferSize')
    const typo = errorOf(() => new ObservabilityBus(createFakeBackend(), { buferSize: 10 } as never))
    expect(typo.message).toContain('(did you mean "bufferSize"?)')
  })

  it('ObservabilityBus rejects an unknown sampling option', () => {
    const e = errorOf(
      () => new ObservabilityBus(createFakeBackend(), { sampling: { defaultrate: 0.5 } } as never),
    )
    expect(e.message).toContain('unknown sampling option "defaultrate" (did you mean "defaultRate"?)')
  })

  it('ObservabilityBus.connect rejects an unknown option before connecting', async () => {
    const backend = createFakeBackend()
    const e = await rejectionOf(ObservabilityBus.connect(backend, { flushInterval: 5 } as never))
    expect(e.message).toContain('(did you mean "flushIntervalMs"?)')
    expect(backend.isConnected).toBe(false)
  })

  it('AgentMessageBus rejects an unknown option', () => {
    const e = errorOf(() => new AgentMessageBus(createFakeBackend(), { agentID: 'a' } as never))
    expect(e.message).toContain('unknown AgentMessageBus option "agentID" (did you mean "agentId"?)')
    const retry = errorOf(() => new AgentMessageBus(createFakeBackend(), { retry: { attempts: 2 } } as never))
    expect(retry.message).toContain('unknown retry option "attempts"')
  })

  it('subscribeAgent, send, broadcast and request reject unknown options', async () => {
    const backend = createFakeBackend()
    await backend.connect()
    const bus = new AgentMessageBus(backend, { agentId: 'me' })
    open.push(bus)
    const handler = () => undefined
    const sub = await rejectionOf(bus.subscribeAgent('me', handler, { topic: 'x.*' } as never))
    expect(sub.message).toContain('unknown subscribeAgent option "topic" (did you mean "topics"?)')
    const send = await rejectionOf(bus.send('you', 'task', {}, { header: {} } as never))
    expect(send.message).toContain('unknown send option "header" (did you mean "headers"?)')
    const broadcast = await rejectionOf(bus.broadcast('task', {}, { foo: 1 } as never))
    expect(broadcast.message).toContain('unknown send option "foo"')
    const request = await rejectionOf(bus.request('you', 'task', {}, { timeout: 5 } as never))
    expect(request.message).toContain('unknown request option "timeout" (did you mean "timeoutMs"?)')
    expect(bus.stats().pendingRequests).toBe(0)
    expect(backend.published).toHaveLength(0)
  })
})
