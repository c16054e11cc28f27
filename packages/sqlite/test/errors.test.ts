import {
  ConfigurationError,
  ConnectionError,
  InvalidTopicError,
  PublishError,
  SubscriptionError,
} from '@omnibus/core'
import { describe, expect, it } from 'vitest'
import { classifyError } from '../src/index.ts'

function sqliteError(code: string, message = 'native message'): Error {
  return Object.assign(new Error(message), { code, name: 'SqliteError' })
}

describe('classifyError', () => {
  it.each([
    ['SQLITE_BUSY', ConnectionError, 'DATABASE_LOCKED', true],
    ['SQLITE_BUSY_SNAPSHOT', ConnectionError, 'DATABASE_LOCKED', true],
    ['SQLITE_LOCKED', ConnectionError, 'DATABASE_LOCKED', true],
    ['SQLITE_NOTADB', ConfigurationError, 'NOT_A_DATABASE', false],
    ['SQLITE_CORRUPT', ConfigurationError, 'DATABASE_CORRUPT', false],
    ['SQLITE_CANTOPEN', ConfigurationError, 'DATABASE_UNAVAILABLE', false],
    ['SQLITE_READONLY', ConfigurationError, 'DATABASE_UNAVAILABLE', false],
    ['SQLITE_FULL', ConnectionError, 'DATABASE_IO', true],
    ['SQLITE_IOERR_WRITE', ConnectionError, 'DATABASE_IO', true],
  ] as const)('%s → %s %s', (code, cls, omnibusCode, retryable) => {
    const native = sqliteError(code)
    const e = classifyError(native, 'publish', 'database file "x.db"')
    expect(e).toBeInstanceOf(cls)
    expect(e.code).toBe(omnibusCode)
    expect(e.retryable).toBe(retryable)
    expect(e.backend).toBe('sqlite')
    expect(e.cause).toBe(native)
    expect(e.message).toContain('x.db')
  })

  it('falls back by operation for other native errors', () => {
    expect(classifyError(sqliteError('SQLITE_CONSTRAINT'), 'publish')).toBeInstanceOf(PublishError)
    expect(classifyError(sqliteError('SQLITE_CONSTRAINT'), 'consume')).toBeInstanceOf(SubscriptionError)
    expect(classifyError(new Error('odd'), 'connect')).toBeInstanceOf(ConnectionError)
  })

  it('passes Omnibus errors through unchanged', () => {
    const e = new InvalidTopicError('a b', 'bad')
    expect(classifyError(e, 'publish')).toBe(e)
  })
})
