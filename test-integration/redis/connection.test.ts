import { spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  ConfigurationError,
  ConnectionError,
  createBackend,
  type EventBackend,
  type OmnibusEvent,
} from '@omnibus/core'
import { backendFromUrl, createRedisBackend } from '@omnibus/redis'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, serviceEndpoint } from '../setup/services.ts'
import { eventually } from '../setup/wait.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

describeWithService('redis', 'redis connections: ACL users, caller-owned clients, URLs', () => {
  const url = serviceEndpoint('redis') as string
  process.env.OMNIBUS_IT_REDIS_URL = url
  const backends: EventBackend[] = []
  const cleanups: Array<() => Promise<unknown>> = []

  afterEach(async () => {
    await Promise.allSettled(backends.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 500 })))
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {})
  })

  async function roundTrip(b: EventBackend, topic: string): Promise<OmnibusEvent> {
    const got: OmnibusEvent[] = []
    await b.subscribe(topic, (e) => void got.push(e), { group: 'rt' })
    await b.publish({ topic, data: { hello: 'acl' } })
    await eventually('the event', () => got.length > 0, 5_000)
    return got[0] as OmnibusEvent
  }

  it('works as an ACL user limited to the key prefix, and refuses a wrong password without echoing it', async () => {
    const admin = makeBackend()
    backends.push(admin)
    await admin.connect()
    const user = `omnibus-it-${randomUUID().slice(0, 8)}`
    const password = `pw-${randomUUID()}`
    const raw = admin.commandClient()
    await raw.call('ACL', 'SETUSER', user, 'on', `>${password}`, `~${IT_PREFIX}*`, `&${IT_PREFIX}*`, '+@all')
    cleanups.push(() => raw.call('ACL', 'DELUSER', user))
    const u = new URL(url)
    u.username = user
    u.password = password
    const b = createRedisBackend({ url: u.toString(), keyPrefix: IT_PREFIX })
    backends.push(b)
    await b.connect()
    const e = await roundTrip(b, `acl.ok.r${randomUUID().slice(0, 8)}`)
    expect(e.data).toEqual({ hello: 'acl' })

    const wrong = createRedisBackend({
      url,
      username: user,
      password: 'not-the-password',
      keyPrefix: IT_PREFIX,
    })
    const error = await wrong.connect().then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(error).toBeInstanceOf(ConnectionError)
    expect((error as ConnectionError).retryable).toBe(false)
    expect((error as ConnectionError).code).toBe('AUTH_FAILED')
    expect((error as Error).message).not.toContain('not-the-password')
    expect(wrong.isConnected).toBe(false)
  })

  it("uses a caller's ioredis client and leaves it open on disconnect", async () => {
    const owner = makeBackend()
    backends.push(owner)
    await owner.connect()
    const client = owner.commandClient()
    const b = createRedisBackend({ client, keyPrefix: IT_PREFIX })
    await b.connect()
    const e = await roundTrip(b, `client.r${randomUUID().slice(0, 8)}`)
    expect(e.data).toEqual({ hello: 'acl' })
    await b.disconnect()
    expect(client.status).toBe('ready')
    expect(await client.ping()).toBe('PONG')
    expect(b.describe()).toContain('caller-owned client')
  })

  it('is created from a URL with query options (the core registry path)', async () => {
    const prefix = `${IT_PREFIX}q${randomUUID().slice(0, 6)}:`
    const u = new URL(url)
    u.searchParams.set('keyPrefix', prefix)
    u.searchParams.set('maxLen', '50')
    const b = backendFromUrl(u)
    backends.push(b)
    await b.connect()
    const topic = `url.r${randomUUID().slice(0, 8)}`
    for (let i = 0; i < 300; i++) await b.publish({ topic, data: i })
    const len = Number(await b.commandClient().xlen(`${prefix}stream:${topic}`))
    // MAXLEN ~ trims whole macro-nodes: the stream stays near the cap, far under what was written.
    expect(len).toBeGreaterThanOrEqual(50)
    expect(len).toBeLessThan(300)
    await b.commandClient().del(`${prefix}stream:${topic}`, `${prefix}topics`)
  })

  /** Runs `node <script> ...args` and resolves when it exits; rejects if it outlives the deadline. */
  function runNode(
    script: string,
    args: string[],
    deadlineMs: number,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--conditions=@omnibus/source', script, ...args], {
        env: { ...process.env, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
      })
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString()
      })
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(
          new Error(`${script} ${args.join(' ')} still running after ${deadlineMs} ms; stdout: ${stdout}`),
        )
      }, deadlineMs)
      child.on('error', reject)
      child.on('exit', (code) => {
        clearTimeout(timer)
        resolve({ code, stdout, stderr })
      })
    })
  }

  function withPath(path: string, password?: string): string {
    const u = new URL(url)
    u.pathname = path
    if (password !== undefined) u.password = password
    return u.toString()
  }

  it('a database the server does not have is a ConfigurationError from connect(), at once', async () => {
    for (const make of [
      () => createRedisBackend({ url: withPath('/99', 'hunter2'), keyPrefix: IT_PREFIX }),
      () => backendFromUrl(new URL(withPath('/99'))),
    ]) {
      const b = make()
      backends.push(b)
      const started = Date.now()
      const error = await b.connect().then(
        () => undefined,
        (e: unknown) => e,
      )
      // Well under the 5 s connect deadline: the server's answer is final, nothing waits or retries.
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(error).toBeInstanceOf(ConfigurationError)
      expect((error as ConfigurationError).code).toBe('INVALID_DATABASE')
      expect((error as ConfigurationError).retryable).toBe(false)
      expect((error as Error).message).toContain('/99')
      expect((error as Error).message).toContain('/15')
      expect((error as Error).message).not.toContain('hunter2')
      expect(b.isConnected).toBe(false)
    }
    const viaRegistry = await createBackend(withPath('/99'))
    backends.push(viaRegistry)
    await expect(viaRegistry.connect()).rejects.toBeInstanceOf(ConfigurationError)
  })

  it('rejects an unknown subscribe option, by the rule core applies on every backend', async () => {
    const b = makeBackend()
    backends.push(b)
    await b.connect()
    const error = await b
      .subscribe('a.b', () => undefined, { concurency: 2 } as never)
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(error).toBeInstanceOf(ConfigurationError)
    expect((error as Error).message).toContain(
      'unknown subscribe option "concurency" (did you mean "concurrency"?)',
    )
  })

  it('a process that failed to connect on a bad database path exits on its own, with no uncaught error', async () => {
    const child = fileURLToPath(new URL('./bad-db-child.ts', import.meta.url))
    for (const path of ['/99', '/abc']) {
      const r = await runNode(child, [withPath(path, 'hunter2')], 20_000)
      expect(r.code, r.stderr).toBe(0)
      const lines = r.stdout.trim().split('\n')
      expect(lines).toHaveLength(1)
      const got = JSON.parse(lines[0] as string) as Record<string, unknown>
      expect(got).toMatchObject({ name: 'ConfigurationError', code: 'INVALID_DATABASE', retryable: false })
      expect(r.stdout + r.stderr).not.toContain('hunter2')
      expect(r.stderr).not.toContain('ReplyError')
    }
  }, 60_000)

  it('the CLI prints one clear line and exits 2 for a bad or missing database', async () => {
    const bin = fileURLToPath(new URL('../../packages/cli/src/bin.ts', import.meta.url))
    for (const [path, expected] of [
      ['/abc', /^omnibus: bad backend URL: .*names database "abc", which is not a database number/],
      ['/99', /^omnibus: bad backend configuration: .*has no such database/],
    ] as const) {
      const r = await runNode(bin, ['health', '--backend', withPath(path, 'hunter2')], 30_000)
      expect(r.code, r.stderr).toBe(2)
      const errors = r.stderr.split('\n').filter((l) => l.startsWith('omnibus:'))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(expected)
      expect(r.stderr).not.toMatch(/^\s+at /m)
      expect(r.stderr).not.toContain('ReplyError')
      expect(r.stdout + r.stderr).not.toContain('hunter2')
    }
  }, 60_000)

  const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0
  const hasOpenssl = spawnSync('openssl', ['version']).status === 0

  function freePort(): Promise<number> {
    return new Promise<number>((resolve) => {
      const srv = createServer()
      srv.listen(0, '127.0.0.1', () => {
        const a = srv.address()
        srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
      })
    })
  }

  async function connectWhenUp(b: EventBackend): Promise<void> {
    const end = Date.now() + 10_000
    for (;;) {
      try {
        await b.connect()
        return
      } catch (error) {
        // The server process may still be starting.
        if (Date.now() > end) throw error
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }

  it.skipIf(!hasRedisServer)(
    `connects through Sentinel (redisOptions.sentinels)${hasRedisServer ? '' : ' (skipped: redis-server is not installed here to run a sentinel)'}`,
    async () => {
      const target = new URL(url)
      const port = await freePort()
      const dir = mkdtempSync(join(tmpdir(), 'omnibus-sentinel-'))
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
      const conf = join(dir, 'sentinel.conf')
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor omnibus-it ${target.hostname} ${target.port || '6379'} 1`,
          '',
        ].join('\n'),
      )
      const sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
      cleanups.push(async () => {
        sentinel.kill('SIGKILL')
      })
      const b = createRedisBackend({
        keyPrefix: IT_PREFIX,
        connectTimeoutMs: 2_000,
        redisOptions: { sentinels: [{ host: '127.0.0.1', port }], name: 'omnibus-it' },
      })
      backends.push(b)
      await connectWhenUp(b)
      expect(b.describe()).toContain('sentinel master "omnibus-it"')
      const e = await roundTrip(b, `sentinel.r${randomUUID().slice(0, 8)}`)
      expect(e.data).toEqual({ hello: 'acl' })
    },
  )

  it.skipIf(!hasRedisServer || !hasOpenssl)(
    `connects over TLS (rediss:// with a CA)${hasRedisServer && hasOpenssl ? '' : ' (skipped: needs redis-server and openssl here)'}`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'omnibus-tls-'))
      cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
      const cert = join(dir, 'cert.pem')
      const key = join(dir, 'key.pem')
      const made = spawnSync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ])
      expect(made.status, String(made.stderr)).toBe(0)
      const port = await freePort()
      const server = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--tls-cert-file',
          cert,
          '--tls-key-file',
          key,
          '--tls-ca-cert-file',
          cert,
          '--tls-auth-clients',
          'no',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
        ],
        { stdio: 'ignore' },
      )
      cleanups.push(async () => {
        server.kill('SIGKILL')
      })
      const b = createRedisBackend({
        url: `rediss://127.0.0.1:${port}`,
        tls: { ca: readFileSync(cert) },
        keyPrefix: IT_PREFIX,
        connectTimeoutMs: 2_000,
      })
      backends.push(b)
      await connectWhenUp(b)
      const e = await roundTrip(b, `tls.r${randomUUID().slice(0, 8)}`)
      expect(e.data).toEqual({ hello: 'acl' })
      // Without the CA the self-signed certificate is refused.
      const untrusted = createRedisBackend({ url: `rediss://127.0.0.1:${port}`, connectTimeoutMs: 2_000 })
      const refused = await untrusted.connect().then(
        () => undefined,
        (err: unknown) => err,
      )
      expect(refused).toBeInstanceOf(ConnectionError)
      expect((refused as ConnectionError).code).toBe('TLS_FAILED')
      expect((refused as ConnectionError).retryable).toBe(false)
    },
  )
})
