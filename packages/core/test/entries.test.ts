import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as main from '@omnibus/core'
import * as backend from '@omnibus/core/backend'
import * as testing from '@omnibus/core/testing'
import { describe, expect, it } from 'vitest'

const coreDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const repoDir = path.resolve(coreDir, '../..')

/**
 * Everything `@omnibus/core` exports: what applications use. To add a name, first decide its
 * audience: application code (buses, protocol types, errors, registry, topic checks, redrive) goes
 * here and in src/index.ts; what only a backend implementation needs goes to src/backend.ts
 * (`@omnibus/core/backend`); a test helper goes to src/testing.ts (`@omnibus/core/testing`).
 * Then add it to this list, in the list's order.
 */
const APPLICATION_NAMES = [
  'AGENT_HEADERS',
  'AgentBusStats',
  'AgentContext',
  'AgentHandler',
  'AgentMessage',
  'AgentMessageBus',
  'AgentMessageBusOptions',
  'AgentMessageKind',
  'AgentPresence',
  'agentPrometheusText',
  'AgentQuorumError',
  'AgentReplyError',
  'AgentReplyErrorCode',
  'AgentReplyErrorDetails',
  'AgentStatus',
  'AgentSubscription',
  'AgentUnavailableError',
  'BackendCapabilities',
  'BackendLoader',
  'BatchEntryResult',
  'BatchReceipt',
  'BufferFullError',
  'BUILTIN_SCHEMES',
  'CapabilityError',
  'compilePattern',
  'compositeExporter',
  'ConfigurationError',
  'ConnectionError',
  'consoleLogger',
  'createBackend',
  'createEvent',
  'currentEvent',
  'DEAD_LETTER_GROUP',
  'DEFAULT_DEAD_LETTER_TOPIC',
  'DelayCapability',
  'DLQ_HEADERS',
  'DropReason',
  'EmitOptions',
  'EventBackend',
  'EventData',
  'EventDefaults',
  'EventHandler',
  'EventInput',
  'EXPIRED_REASON',
  'ExportLogger',
  'filteringExporter',
  'FilteringExporterOptions',
  'Guarantee',
  'GUARANTEES',
  'HandlerContext',
  'HealthStatus',
  'INVALID_TOPIC_RATE',
  'InvalidTopicError',
  'isErrorTopic',
  'isRetryable',
  'isValidTopic',
  'jsonLinesExporter',
  'JsonLinesExporterOptions',
  'JsonValue',
  'Logger',
  'loggerExporter',
  'LoggerExporterOptions',
  'MatcherIndex',
  'matchTopic',
  'MAX_TOPIC_LENGTH',
  'MODEL_CALL_TOPIC',
  'ModelCall',
  'ModelCallData',
  'newEventId',
  'NotConnectedError',
  'ObservabilityBus',
  'ObservabilityBusOptions',
  'ObservabilityHealth',
  'ObservabilityStats',
  'OmnibusError',
  'OmnibusErrorOptions',
  'OmnibusEvent',
  'OverflowStrategy',
  'parseBackendUrl',
  'PayloadTooLargeError',
  'PresenceEvent',
  'PresenceOptions',
  'PresenceReason',
  'PRIORITY_HEADER',
  'prometheusText',
  'PrometheusWriter',
  'PublishError',
  'PublishReceipt',
  'redactUrl',
  'redriveInput',
  'registerBackend',
  'registeredSchemes',
  'RequestAllOptions',
  'RequestAllResult',
  'RequestOptions',
  'RetryPolicy',
  'Sampler',
  'SamplingOptions',
  'SendOptions',
  'SerializationError',
  'silentLogger',
  'SubscribeAgentOptions',
  'SubscribeOptions',
  'Subscription',
  'SubscriptionError',
  'TelemetryExporter',
  'TelemetryPriority',
  'TimeoutError',
  'ToolSpan',
  'validatePattern',
  'validateTopic',
]

/** Names (types included) an entry file exports; it must export only through `export { … } from`. */
function exportedNames(file: string): string[] {
  const text = readFileSync(path.join(coreDir, 'src', file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '')
  const names: string[] = []
  for (const m of text.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}\s+from/g)) {
    for (const item of (m[1] ?? '').split(',')) {
      const name = item
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)
        .at(-1)
      if (name) names.push(name)
    }
  }
  for (const m of text.matchAll(
    /export\s+(?:async\s+)?(?:function|class|const|let|interface|type|enum)\s+(\w+)/g,
  )) {
    names.push(m[1] ?? '')
  }
  expect(text, `${file} re-exports a whole module, so its names cannot be listed`).not.toMatch(/export\s+\*/)
  return names
}

const byCase = (a: string, b: string): number =>
  a.toLowerCase().localeCompare(b.toLowerCase()) || a.localeCompare(b)

describe('core entry points', () => {
  it('@omnibus/core exports exactly the application names', () => {
    expect(exportedNames('index.ts').sort(byCase)).toEqual([...APPLICATION_NAMES].sort(byCase))
    // The values at run time are a subset: types leave nothing behind.
    for (const name of Object.keys(main)) expect(APPLICATION_NAMES).toContain(name)
  })

  it('no name is exported by two entries', () => {
    const entries = {
      '@omnibus/core': exportedNames('index.ts'),
      '@omnibus/core/backend': exportedNames('backend.ts'),
      '@omnibus/core/testing': exportedNames('testing.ts'),
    }
    const seen = new Map<string, string>()
    const twice: string[] = []
    for (const [entry, names] of Object.entries(entries)) {
      for (const name of names) {
        const other = seen.get(name)
        if (other !== undefined) twice.push(`${name} (${other} and ${entry})`)
        seen.set(name, entry)
      }
    }
    expect(twice).toEqual([])
    expect(Object.keys(backend)).toContain('resolveSubscribeOptions')
    expect(Object.keys(testing)).toContain('waitUntil')
    expect(Object.keys(testing)).toContain('expectConfigurationError')
  })

  it('the CLI demo reaches no test helper through its imports', () => {
    // Follows the demo's relative imports through the CLI's sources, so a helper module it uses
    // cannot bring the test helpers in either.
    const cliSrc = path.join(repoDir, 'packages/cli/src')
    const pending = readdirSync(path.join(cliSrc, 'demo'), { recursive: true, encoding: 'utf8' })
      .map((f) => path.join(cliSrc, 'demo', f))
      .filter((f) => f.endsWith('.ts') && statSync(f).isFile())
    expect(pending.length).toBeGreaterThan(0)
    const visited = new Set<string>()
    const offenders: string[] = []
    for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
      if (visited.has(file)) continue
      visited.add(file)
      const text = readFileSync(file, 'utf8')
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = m[1] ?? ''
        if (spec === '@omnibus/core/testing' || /core\/src\/testing(\.ts)?$/.test(spec)) {
          offenders.push(`${path.relative(repoDir, file)} imports ${spec}`)
        } else if (spec.startsWith('.')) {
          pending.push(path.resolve(path.dirname(file), spec))
        }
      }
    }
    expect(offenders).toEqual([])
  })
})
