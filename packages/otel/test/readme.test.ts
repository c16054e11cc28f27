/**
 * The root README's OpenTelemetry setup, run as a user would: the snippet as written, in its own
 * Node process, sending OTLP/HTTP to a receiver given by the standard variable.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const here = path.dirname(fileURLToPath(import.meta.url))
const readme = readFileSync(path.join(here, '../../../README.md'), 'utf8')
const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-otel-readme-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function snippet(): string {
  const section = readme.split('\n## OpenTelemetry\n')[1]?.split('\n## ')[0] ?? ''
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1]
  if (code === undefined) throw new Error('the README has no OpenTelemetry ts block')
  return code
}

describe('the README OpenTelemetry setup', () => {
  it('runs as written, exits by itself and sends the tool span over OTLP', async () => {
    const received: { path: string; body: Buffer }[] = []
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        received.push({ path: req.url ?? '', body: Buffer.concat(chunks) })
        res.writeHead(200, { 'content-type': 'application/x-protobuf' })
        res.end()
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const code = snippet().replaceAll('./omnibus.db', path.join(dir, 'omnibus.db'))
      // Inside the package, so its imports resolve as they would for a user who installed them.
      const file = path.join(here, `.readme-otel-${process.pid}.ts`)
      writeFileSync(file, code)
      try {
        const child = spawn(process.execPath, ['--conditions=@omnibus/source', file], {
          env: {
            ...process.env,
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let stderr = ''
        child.stderr.on('data', (c: Buffer) => {
          stderr += c.toString()
        })
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
        const [status] = (await once(child, 'exit')) as [number | null]
        clearTimeout(timer)
        expect({ status, stderr }).toEqual({ status: 0, stderr: '' })
      } finally {
        rmSync(file, { force: true })
      }
      const traces = received.filter((r) => r.path === '/v1/traces')
      expect(traces.length).toBeGreaterThan(0)
      const body = Buffer.concat(traces.map((t) => t.body)).toString('latin1')
      expect(body).toContain('execute_tool web_search')
      expect(body).toContain('researcher')
    } finally {
      server.close()
    }
  }, 30_000)
})
