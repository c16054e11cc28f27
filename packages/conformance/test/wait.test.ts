import { describe, expect, it } from 'vitest'
import { WaitTimeoutError, waitFor, withDeadline } from '../src/wait.ts'

describe('waitFor', () => {
  it('resolves as soon as the predicate holds, without waiting for the deadline', async () => {
    let calls = 0
    const t0 = Date.now()
    await waitFor(() => ++calls >= 3, { timeoutMs: 5000, message: 'three calls', intervalMs: 1 })
    expect(calls).toBe(3)
    expect(Date.now() - t0).toBeLessThan(1000)
  })

  it('accepts async predicates', async () => {
    let n = 0
    await waitFor(async () => ++n === 2, { timeoutMs: 1000, message: 'async' })
    expect(n).toBe(2)
  })

  it('fails after the deadline with a message saying what was missing, computed at failure time', async () => {
    const missing = ['a', 'b']
    const err = await waitFor(() => false, {
      timeoutMs: 30,
      message: () => `ids ${missing.join(', ')}`,
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(WaitTimeoutError)
    expect((err as Error).message).toBe('timed out after 30 ms waiting for: ids a, b')
  })

  it('rethrows a predicate error at once instead of retrying', async () => {
    const t0 = Date.now()
    await expect(
      waitFor(
        () => {
          throw new Error('broken expectation')
        },
        { timeoutMs: 5000, message: 'x' },
      ),
    ).rejects.toThrow('broken expectation')
    expect(Date.now() - t0).toBeLessThan(1000)
  })

  it('evaluates the predicate once more at the deadline before failing', async () => {
    let calls = 0
    await expect(waitFor(() => ++calls > 1_000_000, { timeoutMs: 20, message: 'never' })).rejects.toThrow(
      WaitTimeoutError,
    )
    expect(calls).toBeGreaterThanOrEqual(2)
  })
})

describe('withDeadline', () => {
  it('passes a value through when the promise settles in time', async () => {
    await expect(withDeadline(Promise.resolve(5), 100, 'five')).resolves.toBe(5)
  })

  it('passes a rejection through', async () => {
    await expect(withDeadline(Promise.reject(new Error('no')), 100, 'x')).rejects.toThrow('no')
  })

  it('rejects with WaitTimeoutError naming what hung', async () => {
    await expect(withDeadline(new Promise(() => {}), 20, 'connect()')).rejects.toThrow(
      'timed out after 20 ms waiting for: connect()',
    )
  })
})
