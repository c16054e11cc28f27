/**
 * Child process of {@link runLifetimeChild} (lifetime.ts), started with one JSON argument
 * ({@link LifetimeChildConfig}). It has no IPC channel and no timer of its own once its work is
 * done, so whether it exits depends only on what the Omnibus backends and buses leave behind:
 * - `close`: both buses connected from the URL, a request/reply, telemetry emitted before and
 *   after it, then both closed; the process must then exit by itself;
 * - `open`: the same without closing: the connected backends must keep the process alive;
 * - `idle`: one backend connected, one publish, no subscription: it must keep the process alive.
 * It prints one JSON line ({@link LifetimeReport}) when its work is done.
 */
import {
  AgentMessageBus,
  createBackend,
  type EventBackend,
  ObservabilityBus,
  silentLogger,
} from '@omnibus/core'
import type { LifetimeChildConfig, LifetimeReport } from './lifetime.ts'

function report(line: LifetimeReport): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

async function waitUntil(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return true
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as LifetimeChildConfig
  const topic = `lifetime.${config.run}`
  if (config.mode === 'idle') {
    const backend = await createBackend(config.url)
    await backend.connect()
    await backend.publish({ topic, data: { idle: true } })
    report({ mode: 'idle', topic, reply: undefined, telemetry: undefined, observed: 0 })
    return
  }
  // A subscriber in this process, for backends whose events cannot be read from another one.
  let observer: EventBackend | undefined
  let observed = 0
  if (config.observe) {
    observer = await createBackend(config.url)
    await observer.connect()
    await observer.subscribe(topic, () => {
      observed++
    })
  }
  const telemetry = await ObservabilityBus.connect(config.url, {
    logger: silentLogger,
    source: `lifetime-${config.run}`,
  })
  const half = Math.floor(config.events / 2)
  for (let i = 0; i < half; i++) telemetry.emit(topic, { i })
  const agents = await AgentMessageBus.connect(config.url, {
    agentId: 'lifetime-caller',
    prefix: `lifetime.${config.run}.agent`,
  })
  await agents.subscribeAgent('echo', async (msg, ctx) => ctx.reply({ echoed: msg.data }))
  const reply = await agents.request(
    'echo',
    'ping',
    { run: config.run },
    { timeoutMs: config.requestTimeoutMs },
  )
  // The rest right before closing: close() itself must flush them.
  for (let i = half; i < config.events; i++) telemetry.emit(topic, { i })
  if (config.mode === 'close') {
    await telemetry.close()
    await agents.close()
  }
  if (observer !== undefined) {
    await waitUntil(() => observed >= config.events, config.requestTimeoutMs)
    // Only in `close` mode: in `open` mode the connected buses alone must keep the process alive.
    if (config.mode === 'close') await observer.disconnect()
  }
  report({ mode: config.mode, topic, reply, telemetry: telemetry.stats(), observed })
}

main().catch((error: unknown) => {
  process.stderr.write(
    `lifetime child failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exitCode = 1
  // A failure leaves connections open on purpose (nothing to close cleanly): end here.
  process.exit()
})
