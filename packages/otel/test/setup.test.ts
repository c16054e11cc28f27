import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigurationError, ObservabilityBus, silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { type OmnibusTelemetry, startOmnibusTelemetry } from '../src/setup.ts'

interface Received {
  readonly path: string
  readonly contentType: string | undefined
  readonly apiKey: string | undefined
  readonly body: Buffer
}

async function otlpReceiver(): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = []
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'],
        apiKey: req.headers['x-api-key'] as string | undefined,
        body: Buffer.concat(chunks),
      })
      res.writeHead(200, { 'content-type': 'application/x-protobuf' })
      res.end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, server }
}

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  vi.unstubAllEnvs()
  for (const c of cleanups.splice(0).reverse()) await c()
})

function started(t: OmnibusTelemetry): OmnibusTelemetry {
  cleanups.push(() => t.shutdown())
  return t
}

describe('startOmnibusTelemetry', () => {
  it('honours OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES', async () => {
    const receiver = await otlpReceiver()
    cleanups.push(async () => receiver.server.close())
    vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', receiver.url)
    vi.stubEnv('OTEL_EXPORTER_OTLP_HEADERS', 'x-api-key=secret-1')
    vi.stubEnv('OTEL_SERVICE_NAME', 'planner-svc')
    vi.stubEnv('OTEL_RESOURCE_ATTRIBUTES', 'deployment.environment.name=test,team=agents')
    const copy = new InMemorySpanExporter()
    const telemetry = started(
      startOmnibusTelemetry({
        registerGlobals: false,
        spanProcessors: [new SimpleSpanProcessor({ exporter: copy })],
      }),
    )
    expect(telemetry.resource.attributes).toMatchObject({
      'service.name': 'planner-svc',
      'deployment.environment.name': 'test',
      team: 'agents',
    })

    const backend = createMemoryBackend()
    const bus = new ObservabilityBus(backend, { logger: silentLogger, exporters: [telemetry.exporter] })
    await bus.start()
    bus.startTool('search').end('ok')
    bus.emitModelCall({
      model: 'gpt-4o-mini',
      provider: 'openai',
      inputTokens: 5,
      outputTokens: 7,
      durationMs: 20,
    })
    bus.emitLifecycle('agent_started')
    await bus.close()
    await backend.disconnect()
    await telemetry.forceFlush()

    const traces = receiver.received.filter((r) => r.path === '/v1/traces')
    expect(traces).toHaveLength(1)
    expect(traces[0]?.contentType).toBe('application/x-protobuf')
    expect(traces[0]?.apiKey).toBe('secret-1')
    // The request is exactly the SDK's own protobuf encoding of the spans recorded beside it.
    const spans = copy.getFinishedSpans()
    expect(spans.map((s) => s.name)).toEqual(['execute_tool search', 'chat gpt-4o-mini'])
    expect(spans[0]?.resource.attributes['service.name']).toBe('planner-svc')
    const expected = ProtobufTraceSerializer.serializeRequest(spans)
    expect(expected).toBeDefined()
    expect(Buffer.from(traces[0]?.body ?? [])).toEqual(Buffer.from(expected ?? []))

    for (const path of ['/v1/metrics', '/v1/logs']) {
      const got = receiver.received.find((r) => r.path === path)
      expect(got, path).toBeDefined()
      expect(got?.contentType).toBe('application/x-protobuf')
      expect(got?.apiKey).toBe('secret-1')
      expect(got?.body.includes(Buffer.from('planner-svc'))).toBe(true)
    }
  })

  it('options win over the environment', async () => {
    const receiver = await otlpReceiver()
    cleanups.push(async () => receiver.server.close())
    vi.stubEnv('OTEL_EXPORTER_OTLP_ENDPOINT', 'http://127.0.0.1:9')
    vi.stubEnv('OTEL_SERVICE_NAME', 'from-env')
    const telemetry = started(
      startOmnibusTelemetry({
        registerGlobals: false,
        serviceName: 'from-option',
        endpoint: receiver.url,
        headers: { 'x-api-key': 'opt' },
        metrics: false,
        logs: false,
      }),
    )
    expect(telemetry.resource.attributes['service.name']).toBe('from-option')
    telemetry.tracerProvider.getTracer('t').startSpan('s').end()
    await telemetry.forceFlush()
    expect(receiver.received.map((r) => [r.path, r.apiKey])).toEqual([['/v1/traces', 'opt']])
  })

  it('registers the globals and unregisters them at shutdown', async () => {
    const { trace, propagation, context } = await import('@opentelemetry/api')
    const telemetry = startOmnibusTelemetry({ traces: false, metrics: false, logs: false })
    const tracer = trace.getTracer('x')
    const span = tracer.startSpan('root')
    const carrier: Record<string, string> = {}
    context.with(trace.setSpan(context.active(), span), () => propagation.inject(context.active(), carrier))
    expect(carrier.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
    span.end()
    await telemetry.shutdown()
    const after: Record<string, string> = {}
    propagation.inject(context.active(), after)
    expect(after).toEqual({})
  })

  it('refuses settings it cannot honour, naming them', () => {
    expect(() => startOmnibusTelemetry({ registerGlobals: false, endpoint: 'localhost:4318' })).toThrow(
      ConfigurationError,
    )
    expect(() => startOmnibusTelemetry({ registerGlobals: false, metricExportIntervalMs: 0 })).toThrow(
      /metricExportIntervalMs/,
    )
  })

  it('picks the protocol per signal: option, then the signal variable, then the general one, then http/protobuf', async () => {
    // A closed port: nothing is recorded, so shutting down sends nothing anywhere.
    const endpoint = 'http://127.0.0.1:9'
    const quiet = { registerGlobals: false, endpoint } as const
    expect(started(startOmnibusTelemetry(quiet)).protocols).toEqual({
      traces: 'http/protobuf',
      metrics: 'http/protobuf',
      logs: 'http/protobuf',
    })
    vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc')
    vi.stubEnv('OTEL_EXPORTER_OTLP_LOGS_PROTOCOL', 'http/json')
    expect(started(startOmnibusTelemetry(quiet)).protocols).toEqual({
      traces: 'grpc',
      metrics: 'grpc',
      logs: 'http/json',
    })
    expect(started(startOmnibusTelemetry({ ...quiet, traces: false })).protocols).toEqual({
      metrics: 'grpc',
      logs: 'http/json',
    })
    expect(started(startOmnibusTelemetry({ ...quiet, protocol: 'http/protobuf' })).protocols).toEqual({
      traces: 'http/protobuf',
      metrics: 'http/protobuf',
      logs: 'http/protobuf',
    })
  })

  it('refuses an unknown protocol, naming the variable or option and the accepted values', () => {
    vi.stubEnv('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', 'http')
    const attempt = () => startOmnibusTelemetry({ registerGlobals: false })
    expect(attempt).toThrow(ConfigurationError)
    expect(attempt).toThrow(/OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http .*http\/protobuf, grpc or http\/json/)
    vi.unstubAllEnvs()
    vi.stubEnv('OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc/web')
    expect(attempt).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL=grpc\/web/)
    vi.unstubAllEnvs()
    expect(() =>
      startOmnibusTelemetry({ registerGlobals: false, protocol: 'udp' as unknown as 'grpc' }),
    ).toThrow(/protocol must be http\/protobuf, grpc or http\/json, got "udp"/)
    // An OTLP/HTTP signal URL given to gRPC, whose path would be dropped.
    expect(() =>
      startOmnibusTelemetry({
        registerGlobals: false,
        protocol: 'grpc',
        endpoint: 'http://127.0.0.1:4317/v1/traces',
      }),
    ).toThrow(/over gRPC is scheme:\/\/host:port without a path/)
  })

  it('exports OTLP/JSON over HTTP for the signals set to http/json', async () => {
    const receiver = await otlpReceiver()
    cleanups.push(async () => receiver.server.close())
    vi.stubEnv('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'http/json')
    const telemetry = started(
      startOmnibusTelemetry({
        registerGlobals: false,
        serviceName: 'json-svc',
        endpoint: receiver.url,
        headers: { 'x-api-key': 'k' },
        logs: false,
      }),
    )
    telemetry.tracerProvider.getTracer('t').startSpan('json span').end()
    telemetry.meterProvider.getMeter('m').createCounter('jobs').add(2)
    await telemetry.forceFlush()
    const traces = receiver.received.filter((r) => r.path === '/v1/traces')
    expect(traces).toHaveLength(1)
    expect(traces[0]?.contentType).toBe('application/json')
    expect(traces[0]?.apiKey).toBe('k')
    const body = JSON.parse(traces[0]?.body.toString('utf8') ?? '') as {
      resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string }> }> }>
    }
    expect(body.resourceSpans[0]?.scopeSpans[0]?.spans.map((s) => s.name)).toEqual(['json span'])
    // The other signals keep the default.
    const metrics = receiver.received.find((r) => r.path === '/v1/metrics')
    expect(metrics?.contentType).toBe('application/x-protobuf')
  })
})
