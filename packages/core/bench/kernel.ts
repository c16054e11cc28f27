/**
 * The consumer kernel's own cost per event. Run from the repository root:
 *   node --conditions=@omnibus/source packages/core/bench/kernel.ts [events] [rounds]
 *
 * Every side hands the same decoded events to the same handler; only what sits between them
 * differs, so the difference to the baseline is what the kernel adds per event (outcome, ack call,
 * concurrency lane, causation scope, exactly-once claim and commit). Baselines, measured in the same
 * run with rounds interleaved: a plain loop calling the handler, and core's HandlerRunner alone (the
 * causation scope every backend had before the kernel). The adapter acks synchronously and does
 * nothing else, so no broker cost is included.
 */
import {
  ConsumerKernel,
  HandlerRunner,
  type KernelAdapter,
  type KernelMessage,
  MemoryDedupeStore,
  resolveSubscribeOptions,
} from '../src/backend.ts'
import {
  type BackendCapabilities,
  createEvent,
  type EventHandler,
  type Guarantee,
  silentLogger,
} from '../src/index.ts'

const events = Number(process.argv[2] ?? 200_000)
const rounds = Number(process.argv[3] ?? 5)

const CAPS: BackendCapabilities = {
  guarantees: ['at-most-once', 'at-least-once', 'exactly-once'],
  persistent: false,
  crossProcess: false,
  groups: true,
  orderedPerKey: true,
  replay: false,
  maxPayloadBytes: undefined,
  networked: false,
  wildcardDiscoveryMs: 0,
  delay: false,
}
const backend = { name: 'bench', capabilities: CAPS }

const decoded = Array.from({ length: events }, (_, i) =>
  createEvent({ topic: 'bench.kernel', data: { i }, source: 'bench', id: `e-${i}` }),
)

let handled = 0
const syncHandler: EventHandler = () => {
  handled++
}
const asyncHandler: EventHandler = async () => {
  handled++
}

/** Runs one kernel side: every event delivered, then waits until all are acknowledged. */
async function kernelSide(guarantee: Guarantee, handler: EventHandler): Promise<void> {
  let acked = 0
  let done: (() => void) | undefined
  const adapter: KernelAdapter<KernelMessage> = {
    backend: 'bench',
    ack: () => {
      if (++acked === events) done?.()
    },
    redeliver: () => {},
    release: () => {},
    publishDeadLetter: () => {},
    dedupe: new MemoryDedupeStore(),
  }
  const options = resolveSubscribeOptions(backend, 'bench.*', handler, { group: 'g', guarantee })
  const kernel = new ConsumerKernel({
    adapter,
    options,
    handler,
    subscriptionId: 'bench',
    logger: silentLogger,
  })
  const finished = new Promise<void>((resolve) => {
    done = resolve
  })
  for (let i = 0; i < events; i++) {
    kernel.deliver({ nativeId: String(i), topic: 'bench.kernel', deliveryCount: 1, event: decoded[i] })
  }
  if (acked < events) await finished
  await kernel.close(1000)
}

const sides: Array<[string, () => Promise<void> | void]> = [
  [
    'baseline: handler called in a loop',
    () => {
      for (let i = 0; i < events; i++) syncHandler(decoded[i] as never, undefined as never)
    },
  ],
  [
    'baseline: HandlerRunner (causation scope)',
    () => {
      const runner = new HandlerRunner(
        syncHandler,
        undefined as never,
        silentLogger,
        new AbortController().signal,
      )
      for (let i = 0; i < events; i++) runner.run(decoded[i] as never, 1)
    },
  ],
  ['kernel, at-least-once, plain handler', () => kernelSide('at-least-once', syncHandler)],
  ['kernel, at-most-once, plain handler', () => kernelSide('at-most-once', syncHandler)],
  ['kernel, exactly-once (memory claims), plain handler', () => kernelSide('exactly-once', syncHandler)],
  ['kernel, at-least-once, async handler', () => kernelSide('at-least-once', asyncHandler)],
]

const best = new Map<string, number>()
for (let round = 0; round < rounds; round++) {
  // Rotate the order so no side always runs first (warm) or last (after the others' garbage).
  for (let k = 0; k < sides.length; k++) {
    const [name, run] = sides[(k + round) % sides.length] as [string, () => Promise<void> | void]
    const before = handled
    const t0 = process.hrtime.bigint()
    await run()
    const ns = Number(process.hrtime.bigint() - t0) / events
    if (handled - before !== events) throw new Error(`${name}: handled ${handled - before} of ${events}`)
    best.set(name, Math.min(best.get(name) ?? Number.POSITIVE_INFINITY, ns))
  }
}

const runnerNs = best.get('baseline: HandlerRunner (causation scope)') ?? 0
console.log(
  `kernel bench: ${events} events, best of ${rounds} rounds, ns per event (Node ${process.version})`,
)
for (const [name] of sides) {
  const ns = best.get(name) ?? 0
  const over = name.startsWith('kernel') ? `  (+${(ns - runnerNs).toFixed(0)} ns over HandlerRunner)` : ''
  console.log(`  ${name.padEnd(52)} ${ns.toFixed(0).padStart(6)} ns${over}`)
}
