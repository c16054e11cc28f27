import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigurationError } from '../src/errors.ts'
import type { EventBackend } from '../src/protocol.ts'
import {
  BUILTIN_SCHEMES,
  createBackend,
  importBackendPackage,
  parseBackendUrl,
  redactUrl,
  registerBackend,
  registeredSchemes,
} from '../src/registry.ts'

function fakeBackend(name: string): EventBackend {
  return { name } as unknown as EventBackend
}

describe('createBackend', () => {
  it('loads the memory backend lazily for memory:// and does not connect it', async () => {
    const backend = await createBackend('memory://')
    expect(backend.name).toBe('memory')
    expect(backend.isConnected).toBe(false)
    expect(backend.capabilities.crossProcess).toBe(false)
  })

  it('passes the parsed URL and the options to the package', async () => {
    const backend = await createBackend(new URL('memory://registry-test?queueCapacity=3'), {
      drainTimeoutMs: 5,
    })
    expect((backend as unknown as { options: Record<string, unknown> }).options).toMatchObject({
      name: 'registry-test',
      queueCapacity: 3,
      drainTimeoutMs: 5,
    })
  })

  it('names the known schemes when the scheme is unknown', async () => {
    const attempt = createBackend('nats://localhost:4222')
    await expect(attempt).rejects.toBeInstanceOf(ConfigurationError)
    await expect(createBackend('nats://localhost:4222')).rejects.toThrow(
      /no backend for "nats:\/\/": known schemes are amqp, amqps, kafka, memory, redis, rediss, sqlite, sqs/,
    )
    await expect(createBackend('nats://x')).rejects.toThrow(
      /register others with registerBackend\(scheme, loader\)/,
    )
  })

  it('rejects what is not a URL, without echoing a password', async () => {
    await expect(createBackend('')).rejects.toThrow(/a backend URL is required/)
    await expect(createBackend('./events.db')).rejects.toThrow(/is not a backend URL: use scheme:\/\/\.\.\./)
    expect(() => parseBackendUrl('::not a url with secret::')).toThrow(ConfigurationError)
  })
})

describe('registerBackend', () => {
  it('adds a scheme, case-insensitively, with the URL and options handed to the loader', async () => {
    let seen: { url: string; options: unknown } | undefined
    registerBackend('Acme:', async (url, options) => {
      seen = { url: url.href, options }
      return fakeBackend('acme')
    })
    expect(registeredSchemes()).toContain('acme')
    const backend = await createBackend('acme://host:1/path', { token: 'x' })
    expect(backend.name).toBe('acme')
    expect(seen).toEqual({ url: 'acme://host:1/path', options: { token: 'x' } })
  })

  it('wins over a built-in scheme', async () => {
    registerBackend('rediss', async () => fakeBackend('custom-rediss'))
    expect((await createBackend('rediss://example:6380')).name).toBe('custom-rediss')
    expect(BUILTIN_SCHEMES.rediss).toBe('@omnibus/redis')
  })

  it('refuses a bad scheme or a missing loader', () => {
    expect(() => registerBackend('no spaces', async () => fakeBackend('x'))).toThrow(/is not a URL scheme/)
    expect(() => registerBackend('ok', undefined as unknown as () => Promise<EventBackend>)).toThrow(
      /needs a loader function/,
    )
  })
})

describe('missing backend packages', () => {
  it('say which package to install', async () => {
    const pkg = '@omnibus-test/not-installed-backend'
    await expect(importBackendPackage(pkg)).rejects.toBeInstanceOf(ConfigurationError)
    await expect(importBackendPackage(pkg)).rejects.toThrow(
      `the backend package ${pkg} is not installed: run "npm install ${pkg}"`,
    )
  })

  it('give the same hint through a registered scheme whose loader imports the package', async () => {
    registerBackend('ghost', async (url) =>
      (await importBackendPackage('@omnibus-test/ghost')).backendFromUrl(url),
    )
    await expect(createBackend('ghost://x')).rejects.toThrow(
      /@omnibus-test\/ghost is not installed: run "npm install/,
    )
  })

  it('tell an installed but unbuilt package apart from a missing one', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'omnibus-registry-'))
    const pkgDir = path.join(dir, 'node_modules', '@omnibus-test', 'unbuilt')
    await mkdir(pkgDir, { recursive: true })
    await writeFile(path.join(dir, 'package.json'), '{"name":"app","type":"module"}')
    await writeFile(
      path.join(pkgDir, 'package.json'),
      JSON.stringify({ name: '@omnibus-test/unbuilt', type: 'module', exports: { '.': './dist/index.js' } }),
    )
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      await expect(importBackendPackage('@omnibus-test/unbuilt')).rejects.toThrow(
        /@omnibus-test\/unbuilt is installed but its entry file .*dist\/index\.js is missing: build the package/,
      )
      await expect(importBackendPackage('@omnibus-test/absent')).rejects.toThrow(/is not installed/)
    } finally {
      process.chdir(cwd)
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('do not hide other import failures', async () => {
    // The package exists but is not a module Node can import by this name: the error is not a
    // missing-package one, so it propagates as is.
    await expect(importBackendPackage('node:does-not-exist')).rejects.not.toBeInstanceOf(ConfigurationError)
  })
})

describe('redactUrl', () => {
  it('hides passwords, also in strings that do not parse', () => {
    expect(redactUrl('amqp://guest:s3cret@localhost:5672/vhost')).toBe(
      'amqp://guest:***@localhost:5672/vhost',
    )
    expect(redactUrl('redis://localhost:6379')).toBe('redis://localhost:6379')
    expect(redactUrl('weird//user:pass@host')).not.toContain('pass@')
  })
})
