/**
 * Codec benchmark. Run from the repository root:
 *   node --conditions=@omnibus/source packages/core/bench/codec.ts [--quick] [--against <codec.ts>]
 *
 * Prints ns per `encodeEvent` and per `decodeEvent` for a few envelope shapes, next to a
 * baseline measured in the same run: `JSON.stringify` / `JSON.parse` of the same CloudEvents
 * document, which is the floor any codec pays. `--against` loads a second codec module (for
 * example a copy of an earlier version next to `src/codec.ts`) and times it in the same process,
 * rounds interleaved, so two versions are compared under the same machine load.
 */
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import * as current from '../src/codec.ts'
import { AGENT_HEADERS, createEvent, DLQ_HEADERS, type OmnibusEvent } from '../src/index.ts'

type Codec = Pick<typeof current, 'encodeEvent' | 'decodeEvent'>

const quick = process.argv.includes('--quick')
const againstAt = process.argv.indexOf('--against')
const againstPath = againstAt >= 0 ? process.argv[againstAt + 1] : undefined
const iterations = quick ? 20_000 : 200_000
const rounds = quick ? 3 : 7

const base = {
  topic: 'tool.call.end',
  data: { tool: 'search', durationMs: 41, ok: true, args: { q: 'weather in paris', limit: 10 } },
  source: 'agent-7',
  id: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  time: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
  correlationId: 'run-42',
} as const

const shapes: Array<[string, OmnibusEvent]> = [
  ['no headers', createEvent({ ...base })],
  [
    'trace context',
    createEvent({
      ...base,
      headers: {
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        tracestate: 'vendor=1',
      },
    }),
  ],
  [
    '3 extension-named headers',
    createEvent({ ...base, headers: { tenant: 'acme', region: 'eu1', tier: 'gold' } }),
  ],
  [
    'agent message headers',
    createEvent({
      ...base,
      headers: {
        [AGENT_HEADERS.from]: 'planner',
        [AGENT_HEADERS.to]: 'worker-3',
        [AGENT_HEADERS.kind]: 'request',
        [AGENT_HEADERS.replyTo]: 'agent.planner.reply',
      },
    }),
  ],
  [
    'dead letter',
    createEvent({
      ...base,
      headers: {
        [DLQ_HEADERS.originalTopic]: 'tool.call.end',
        [DLQ_HEADERS.originalId]: base.id,
        [DLQ_HEADERS.attempts]: '5',
        [DLQ_HEADERS.reason]: 'handler failed 5 times',
        [DLQ_HEADERS.errorName]: 'Error',
        [DLQ_HEADERS.errorMessage]: 'boom',
      },
    }),
  ],
  ['binary 256 B', createEvent({ ...base, data: new Uint8Array(256).map((_, i) => i) })],
]

let sink = 0

function time(body: () => void): number {
  const started = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) body()
  return Number(process.hrtime.bigint() - started) / iterations
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

async function main(): Promise<void> {
  const codecs: Array<[string, Codec]> = [['current', current]]
  if (againstPath !== undefined) {
    const mod = (await import(pathToFileURL(path.resolve(againstPath)).href)) as Codec
    codecs.push([path.basename(againstPath), mod])
  }
  console.log(`codec bench: ${iterations} ops per round, median of ${rounds} rounds, ns/op (lower is better)`)
  for (const [shape, event] of shapes) {
    const doc = current.toCloudEvent(event)
    const docText = JSON.stringify(doc)
    const texts = codecs.map(([, c]) => c.encodeEvent(event))
    const samples = new Map<string, number[]>()
    const add = (key: string, ns: number) => {
      const list = samples.get(key)
      if (list === undefined) samples.set(key, [ns])
      else list.push(ns)
    }
    for (let r = 0; r < rounds; r++) {
      add(
        'JSON.stringify',
        time(() => (sink += JSON.stringify(doc).length)),
      )
      add(
        'JSON.parse',
        time(() => (sink += (JSON.parse(docText) as { id: string }).id.length)),
      )
      // Rotated so no codec always runs right after the baseline.
      for (let k = 0; k < codecs.length; k++) {
        const index = (k + r) % codecs.length
        const [name, codec] = codecs[index] as [string, Codec]
        const text = texts[index] as string
        add(
          `${name} encode`,
          time(() => (sink += codec.encodeEvent(event).length)),
        )
        add(
          `${name} decode`,
          time(() => (sink += codec.decodeEvent(text).id.length)),
        )
      }
    }
    const cells = [...samples].map(([key, ns]) => `${key} ${median(ns).toFixed(0)}`)
    console.log(`${shape.padEnd(26)} ${cells.join(' | ')}`)
  }
  if (sink === 42) console.log('')
}

await main()
