/**
 * A real OpenTelemetry Collector per test file, and a receiver behind it: the collector takes
 * OTLP over HTTP (protobuf or JSON) or gRPC from the code under test, batches it, and forwards everything with
 * its `otlp_http` exporter in JSON encoding to an HTTP server run here, which keeps what arrived
 * for the assertions. So the tests check what any OTLP backend would get, after a real
 * collector's decoding and re-encoding, not what an SDK meant to send.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { waitFor } from '@omnibus/conformance'

/** An attribute value as OTLP/JSON carries it, made plain. */
export type AttributeValue = string | number | boolean | AttributeValue[] | undefined

/** One span as the collector forwarded it. */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** Empty for a root span. */
  readonly parentSpanId: string
  readonly name: string
  /** OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number
  readonly startTimeUnixNano: bigint
  readonly endTimeUnixNano: bigint
  readonly attributes: Readonly<Record<string, AttributeValue>>
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number
  readonly events: ReadonlyArray<{ name: string; attributes: Readonly<Record<string, AttributeValue>> }>
  readonly links: ReadonlyArray<{ traceId: string; spanId: string }>
  readonly resource: Readonly<Record<string, AttributeValue>>
  readonly scope: string
}

/** One metric as the collector forwarded it (data points left as OTLP/JSON has them). */
export interface ReceivedMetric {
  readonly name: string
  readonly unit: string
  /** Which OTLP data kind: 'sum', 'gauge', 'histogram', … */
  readonly kind: string
  readonly dataPoints: ReadonlyArray<Record<string, unknown>>
  readonly resource: Readonly<Record<string, AttributeValue>>
}

/** Span kinds, by their OTLP number. */
export const SpanKind = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const

/** A running collector with its receiver. */
export interface Collector {
  /** OTLP/HTTP base URL of the collector (the SDK exporters append `/v1/traces` and so on). */
  readonly endpoint: string
  /** OTLP/gRPC endpoint of the collector, `http://127.0.0.1:<port>` (plaintext). */
  readonly grpcEndpoint: string
  /** Every span forwarded so far. */
  spans(): ReceivedSpan[]
  /** Every metric forwarded so far. */
  metrics(): ReceivedMetric[]
  /** Resolves with the spans once `predicate` holds for them; fails naming `what` after the deadline. */
  waitForSpans(
    what: string,
    predicate: (spans: ReceivedSpan[]) => boolean,
    timeoutMs?: number,
  ): Promise<ReceivedSpan[]>
  /** The collector's own output (its debug exporter writes there), for failure messages. */
  output(): string
  stop(): Promise<void>
}

interface OtlpKeyValue {
  key: string
  value?: OtlpAnyValue
}
interface OtlpAnyValue {
  stringValue?: string
  intValue?: string | number
  doubleValue?: number
  boolValue?: boolean
  arrayValue?: { values?: OtlpAnyValue[] }
  bytesValue?: string
}

function plain(v: OtlpAnyValue | undefined): AttributeValue {
  if (v === undefined) return undefined
  if (v.stringValue !== undefined) return v.stringValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(plain)
  return v.bytesValue
}

function attributes(list: OtlpKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const kv of list ?? []) out[kv.key] = plain(kv.value)
  return out
}

interface OtlpTraces {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] }
    scopeSpans?: Array<{
      scope?: { name?: string }
      spans?: Array<{
        traceId: string
        spanId: string
        parentSpanId?: string
        name: string
        kind?: number
        startTimeUnixNano: string
        endTimeUnixNano: string
        attributes?: OtlpKeyValue[]
        status?: { code?: number }
        events?: Array<{ name: string; attributes?: OtlpKeyValue[] }>
        links?: Array<{ traceId: string; spanId: string }>
      }>
    }>
  }>
}

interface OtlpMetrics {
  resourceMetrics?: Array<{
    resource?: { attributes?: OtlpKeyValue[] }
    scopeMetrics?: Array<{ metrics?: Array<Record<string, unknown> & { name: string; unit?: string }> }>
  }>
}

function spansOf(body: OtlpTraces): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of body.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes)
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? '',
          name: s.name,
          kind: s.kind ?? 0,
          startTimeUnixNano: BigInt(s.startTimeUnixNano),
          endTimeUnixNano: BigInt(s.endTimeUnixNano),
          attributes: attributes(s.attributes),
          statusCode: s.status?.code ?? 0,
          events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attributes(e.attributes) })),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          resource,
          scope: ss.scope?.name ?? '',
        })
      }
    }
  }
  return out
}

const METRIC_KINDS = ['sum', 'gauge', 'histogram', 'exponentialHistogram', 'summary'] as const

function metricsOf(body: OtlpMetrics): ReceivedMetric[] {
  const out: ReceivedMetric[] = []
  for (const rm of body.resourceMetrics ?? []) {
    const resource = attributes(rm.resource?.attributes)
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const kind = METRIC_KINDS.find((k) => m[k] !== undefined) ?? 'unknown'
        const data = m[kind] as { dataPoints?: Array<Record<string, unknown>> } | undefined
        out.push({ name: m.name, unit: m.unit ?? '', kind, dataPoints: data?.dataPoints ?? [], resource })
      }
    }
  }
  return out
}

async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port from the loopback interface')
  return address.port
}

function config(httpPort: number, grpcPort: number, downstream: string): string {
  return `receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${httpPort}
      grpc:
        endpoint: 127.0.0.1:${grpcPort}
processors:
  batch:
    timeout: 100ms
exporters:
  debug:
    verbosity: basic
  otlp_http:
    endpoint: ${downstream}
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http, debug]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http, debug]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp_http, debug]
`
}

async function startReceiver(spans: ReceivedSpan[], metrics: ReceivedMetric[]): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      try {
        let body = Buffer.concat(chunks)
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
        const json = JSON.parse(body.toString('utf8')) as unknown
        if (req.url === '/v1/traces') spans.push(...spansOf(json as OtlpTraces))
        else if (req.url === '/v1/metrics') metrics.push(...metricsOf(json as OtlpMetrics))
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      } catch (error) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error))
      }
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  return server
}

/**
 * Starts the collector at `binary` on a free loopback port, forwarding to a receiver run here.
 * Resolves once the collector says it is ready.
 */
export async function startCollector(binary: string): Promise<Collector> {
  const spans: ReceivedSpan[] = []
  const metrics: ReceivedMetric[] = []
  const receiver = await startReceiver(spans, metrics)
  const address = receiver.address()
  if (address === null || typeof address === 'string') throw new Error('receiver has no port')
  const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-otelcol-'))
  let child: ChildProcess | undefined
  let output = ''
  let port = 0
  let grpcPort = 0
  // A free port can be taken by someone else before the collector binds it: try again then.
  for (let attempt = 1; attempt <= 3 && child === undefined; attempt++) {
    port = await freePort()
    do grpcPort = await freePort()
    while (grpcPort === port)
    const file = path.join(dir, 'config.yaml')
    writeFileSync(file, config(port, grpcPort, `http://127.0.0.1:${address.port}`))
    output = ''
    const c = spawn(binary, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    const collect = (d: Buffer) => {
      output += d.toString()
    }
    c.stdout?.on('data', collect)
    c.stderr?.on('data', collect)
    let exited = false
    c.once('exit', () => {
      exited = true
    })
    c.once('error', (error) => {
      exited = true
      output += `\n${error.message}`
    })
    try {
      await waitFor(() => exited || output.includes('Everything is ready'), {
        timeoutMs: 30_000,
        message: `the collector at ${binary} to start`,
        intervalMs: 20,
      })
    } catch (error) {
      c.kill('SIGKILL')
      throw new Error(`${(error as Error).message}; its output:\n${output}`)
    }
    if (!exited) child = c
    else if (!/address already in use/.test(output)) {
      throw new Error(`the collector at ${binary} exited during startup:\n${output}`)
    }
  }
  if (child === undefined) throw new Error(`the collector found no free port in 3 tries:\n${output}`)
  const running = child
  return {
    endpoint: `http://127.0.0.1:${port}`,
    grpcEndpoint: `http://127.0.0.1:${grpcPort}`,
    spans: () => [...spans],
    metrics: () => [...metrics],
    async waitForSpans(what, predicate, timeoutMs = 20_000) {
      try {
        await waitFor(() => predicate(spans), { timeoutMs, message: what, intervalMs: 25 })
      } catch (error) {
        const seen = spans.map(
          (s) => `${s.name} trace=${s.traceId} span=${s.spanId} parent=${s.parentSpanId}`,
        )
        throw new Error(`${(error as Error).message}; spans received:\n  ${seen.join('\n  ') || 'none'}`)
      }
      return [...spans]
    },
    output: () => output,
    async stop() {
      if (running.exitCode === null && running.signalCode === null) {
        const exited = new Promise((resolve) => running.once('exit', resolve))
        running.kill('SIGTERM')
        const timer = setTimeout(() => running.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
      }
      await new Promise((resolve) => receiver.close(resolve))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
