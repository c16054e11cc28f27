/**
 * Argument parsing and dispatch of the `omnibus` command. `main(argv, io)` returns the exit code
 * instead of exiting, so it can be tested in-process; `bin.ts` wires it to the process.
 */
import { parseArgs } from 'node:util'
import { type EventBackend, redactUrl, silentLogger } from '@omnibus/core'
import { createServeHandler } from '@omnibus/serve'
import {
  backendUrl,
  CliError,
  connectWithin,
  describe,
  EXIT,
  makeBackend,
  requireCrossProcess,
} from './backend.ts'
import {
  COST_GROUPINGS,
  type CostGrouping,
  cost,
  costPricing,
  parseSince,
  requireCostReplay,
} from './commands/cost.ts'
import { DEFAULT_DLQ_TOPIC, dlqList, dlqRedrive, redrivenTopic, requireReplay } from './commands/dlq.ts'
import { health, unhealthyAtConnect } from './commands/health.ts'
import { checkTopic, parseData, parseHeaders, publish } from './commands/publish.ts'
import {
  alertsOption,
  durationOption,
  fromOption,
  portOption,
  requireReplayFor,
  serve,
} from './commands/serve.ts'
import { tail } from './commands/tail.ts'
import { top } from './commands/top.ts'
import { runDemo } from './demo/coordinator.ts'
import { runWorker } from './demo/worker.ts'
import type { CommandIo } from './io.ts'

const VERSION = '0.1.0'

const USAGE = `omnibus — events across processes and brokers

Usage: omnibus <command> [options]

Commands:
  tail [patterns…]          print live events (default pattern: **)
  publish <topic> [json|-]  publish one event, or one per stdin line
  health                    connect, report latency and capabilities
  dlq list|redrive          inspect or re-publish dead letters
  cost [--since 24h]        tokens and cost of model calls, by model, agent or session
  demo                      coordinator + worker agents in separate processes
  serve                     health probes, /metrics, live dashboard and alerts over HTTP
  top                       agents, rates, latency, errors and cost, live in the terminal

Global options:
  --backend URL   sqlite://./omnibus.db (default), memory://, redis://host:6379,
                  kafka://host:9092, amqp://user:pass@host:5672, sqs://host:9324
                  (or set OMNIBUS_BACKEND)
  --json          machine-readable output
  -h, --help      help for a command: omnibus <command> --help
  --version

Exit codes: 0 ok, 1 command failed (unhealthy, publish refused, demo tasks lost),
            2 usage error (bad option, URL or JSON; nothing sent), 3 backend unreachable,
            130 interrupted (demo).`

const HELP: Readonly<Record<string, string>> = {
  tail: `Usage: omnibus tail [patterns…] [--json] [--from earliest|latest] [--group NAME] [--count N]

Prints events as they arrive, one per line, coloured by category.
  patterns          topic globs: tool.*  **.error  agent.*.task   (default **)
  --json            one CloudEvents JSON document per line
  --from earliest   start from the oldest retained event (persistent backends)
  --group NAME      join a consumer group (at-least-once) instead of observing
  --count N         exit after N events

Example: omnibus tail 'tool.*' '**.error' --backend redis://localhost:6379`,
  publish: `Usage: omnibus publish <topic> [json | -] [--key K] [--header k=v]… [--json]

Publishes the JSON value as event data. With "-" (or no data and a pipe), reads one JSON
value per line from stdin and publishes them all; a bad line sends nothing.
  --key K       partition key (ordering)
  --header k=v  envelope header, repeatable

Examples: omnibus publish task.created '{"id":1}' --header tenant=acme
          printf '1\\n2\\n3\\n' | omnibus publish metric.ticks -`,
  health: `Usage: omnibus health [--backend URL] [--json] [--timeout MS]

Connects, runs a health check and prints latency and capabilities.
Exit 0 healthy, 1 unhealthy, 3 unreachable within --timeout (default 10000 ms).`,
  dlq: `Usage: omnibus dlq list|redrive [--topic T] [--all] [--limit N] [--idle MS] [--json]

  list      print the pending dead letters, from the earliest retained one (consumes nothing)
  redrive   re-publish each pending dead letter to its original topic, with its original id,
            and record it as redriven (on ${redrivenTopic(DEFAULT_DLQ_TOPIC)})
  --topic T   dead-letter topic (default ${DEFAULT_DLQ_TOPIC})
  --all       list: also the redriven ones, with a state column (pending, redriven)
  --limit N   stop after N dead letters
  --idle MS   stop once none arrived for MS (default 1000)

Needs a backend that keeps and replays the topic: sqlite, redis or kafka.`,
  cost: `Usage: omnibus cost [--since 24h] [--by model|agent|session] [--pricing FILE] [--json]

Adds up the model.call events the backend retains (ObservabilityBus.emitModelCall) in the window
and prints calls, tokens and cost per model, agent or session, and the total. Reads from the
earliest retained event without consuming anything, and ends once it has read every call made
before it started.
  --since D       window start: a duration back from now (90s, 30m, 24h, 7d, 1h30m) or a date
                  (2026-12-01T08:00:00Z); default 24h
  --by K          model (default), agent (data.agent, else the event source) or session
  --pricing FILE  JSON or YAML prices laid over the default table (or set OMNIBUS_PRICING):
                  { "my-model": { "inputPerMTok": 0.3, "outputPerMTok": 1.2 } }
  --idle MS       Kafka: after its marker, wait until no earlier call arrived for MS (default 500)
  --timeout MS    fail when the replay makes no progress for MS (default 30000)
Models without a price count $0 and are flagged unpriced.
Needs a backend that keeps and replays the topic: sqlite, redis or kafka.`,
  demo: `Usage: omnibus demo [--workers N] [--tasks N] [--keep | --backend URL]

Starts a coordinator and N worker agents (default 3) in separate processes. The coordinator sends
tasks (default 60) with request/reply, to named workers and group-balanced; workers report tool
calls, token usage, latency and occasional errors on the ObservabilityBus, shown live.
Without --backend it runs on a fresh embedded SQLite file, deleted at the end.
  --keep   run on ./omnibus-demo.db and keep it (each run adds to it), to look at with
           omnibus serve --backend sqlite://./omnibus-demo.db (or omnibus top): with
           --from earliest afterwards, or from a second terminal while it runs`,
  serve: `Usage: omnibus serve [--port 8080] [--host 127.0.0.1] [--alerts FILE] [--pricing FILE]
                     [--from earliest|latest] [--backend URL]

Watches the backend's telemetry, agent traffic and dead letters and serves, until Ctrl-C:
  /                  the live dashboard          /metrics      Prometheus text
  /health/live       liveness                    /health/ready 200, or 503 with the reason
  /events/stream     Server-Sent Events (?pattern=…)   /api/…  JSON (snapshot, dead letters)
  --port N          0 picks a free port (default 8080, or OMNIBUS_SERVE_PORT)
  --host H          interface to bind (default 127.0.0.1: this host only; 0.0.0.0 for all)
  --alerts FILE     JSON or YAML alert rules and channels
  --pricing FILE    JSON or YAML model prices over the default table (or OMNIBUS_PRICING)
  --from earliest   start from the oldest retained event (sqlite, redis, kafka): a kept demo run
Prints one line with the URL. Exit 0 on Ctrl-C/SIGTERM, 2 usage, 3 backend unreachable at start.`,
  top: `Usage: omnibus top [--interval 1s] [--json] [--pricing FILE] [--from earliest|latest] [--backend URL]

The aggregates of omnibus serve, redrawn in place: backend health, totals, agents (last seen,
in-flight, requests, errors, p50/p99, tokens, cost), tools (calls, errors, p50/p95), models,
firing alerts, recent errors and event rates by topic family. q or Ctrl-C quits.
  --interval D      time between frames: 500ms, 2s, 1m or seconds (default 1s)
  --json            watch for one interval, print one snapshot as JSON, exit 0
  --from earliest   start from the oldest retained event (sqlite, redis, kafka)
  --pricing FILE    JSON or YAML model prices over the default table (or OMNIBUS_PRICING)
Into a pipe or file it prints one plain frame per interval.`,
}

const OPTIONS = {
  backend: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  from: { type: 'string' },
  group: { type: 'string' },
  count: { type: 'string' },
  key: { type: 'string' },
  header: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  topic: { type: 'string' },
  limit: { type: 'string' },
  idle: { type: 'string' },
  all: { type: 'boolean' },
  workers: { type: 'string' },
  tasks: { type: 'string' },
  keep: { type: 'boolean' },
  // cost
  since: { type: 'string' },
  by: { type: 'string' },
  pricing: { type: 'string' },
  // serve and top
  port: { type: 'string' },
  host: { type: 'string' },
  alerts: { type: 'string' },
  interval: { type: 'string' },
  // Internal: a demo worker process.
  id: { type: 'string' },
  run: { type: 'string' },
} as const

function intOption(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < min)
    throw new CliError(`--${name} must be an integer >= ${min}, got "${value}"`, EXIT.usage)
  return n
}

/**
 * Creates the backend, lets `check` refuse it before anything is connected, connects, runs `fn`
 * and disconnects.
 */
async function withBackend(
  url: string,
  timeoutMs: number,
  fn: (backend: EventBackend) => Promise<number>,
  check?: (backend: EventBackend) => void,
): Promise<number> {
  const backend = await makeBackend(url)
  check?.(backend)
  await connectWithin(backend, url, timeoutMs)
  try {
    return await fn(backend)
  } finally {
    await backend.disconnect({ drainTimeoutMs: 2000 }).catch(() => undefined)
  }
}

/** Runs the command line `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  try {
    return await dispatch(argv, io)
  } catch (error) {
    if (error instanceof CliError) {
      io.err(`omnibus: ${error.message}`)
      if (error.exitCode === EXIT.usage) io.err('run "omnibus --help" for usage')
      return error.exitCode
    }
    io.err(`omnibus: ${describe(error)}`)
    return EXIT.failure
  }
}

async function dispatch(argv: readonly string[], io: CommandIo): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    throw new CliError(describe(error), EXIT.usage)
  }
  const { values, positionals } = parsed
  const [command, ...rest] = positionals
  if (values.version) {
    io.out(VERSION)
    return EXIT.ok
  }
  if (command === undefined || command === 'help') {
    const topic = rest[0]
    io.out(topic !== undefined && HELP[topic] !== undefined ? HELP[topic] : USAGE)
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok
  }
  if (values.help) {
    io.out(HELP[command] ?? USAGE)
    return HELP[command] === undefined ? EXIT.usage : EXIT.ok
  }
  const url = backendUrl(values.backend)
  const timeoutMs = intOption('timeout', values.timeout) ?? 10_000
  const json = values.json ?? false
  switch (command) {
    case 'tail': {
      const from = values.from ?? 'latest'
      if (from !== 'latest' && from !== 'earliest') {
        throw new CliError(`--from must be earliest or latest, got "${from}"`, EXIT.usage)
      }
      const count = intOption('count', values.count)
      return withBackend(
        url,
        timeoutMs,
        (b) => tail(b, { patterns: rest, json, from, group: values.group, count }, io),
        (b) => requireCrossProcess(b, url, 'tail shows the events other processes publish'),
      )
    }
    case 'publish': {
      const [topic, data, extra] = rest
      if (topic === undefined)
        throw new CliError('publish needs a topic: omnibus publish <topic> [json | -]', EXIT.usage)
      if (extra !== undefined) {
        throw new CliError(`unexpected argument "${extra}": quote the JSON data as one argument`, EXIT.usage)
      }
      if (data === undefined && (io.stdin as NodeJS.ReadStream).isTTY === true) {
        throw new CliError('publish needs data: a JSON argument, or "-" with JSON lines on stdin', EXIT.usage)
      }
      // Check what can be checked before connecting, so bad input is a usage error (2) even when
      // the broker is down.
      checkTopic(topic)
      if (data !== undefined && data !== '-') parseData(data, 'the data argument')
      parseHeaders(values.header ?? [])
      return withBackend(url, timeoutMs, (b) =>
        publish(b, { topic, data, key: values.key, headers: values.header ?? [], json }, io),
      )
    }
    case 'health': {
      const backend = await makeBackend(url)
      try {
        await connectWithin(backend, url, timeoutMs)
      } catch (error) {
        // A store that cannot even be opened (a damaged file) is the unhealthy case, reported as
        // such; an unreachable broker keeps its own exit code (3).
        if (error instanceof CliError && error.exitCode === EXIT.failure) {
          return unhealthyAtConnect(backend, url, error.message, json, io)
        }
        throw error
      }
      try {
        return await health(backend, url, json, io)
      } finally {
        await backend.disconnect({ drainTimeoutMs: 2000 }).catch(() => undefined)
      }
    }
    case 'dlq': {
      const action = rest[0]
      if (action !== 'list' && action !== 'redrive') {
        throw new CliError(
          `dlq needs "list" or "redrive", got ${action === undefined ? 'nothing' : `"${action}"`}`,
          EXIT.usage,
        )
      }
      if (values.group !== undefined) {
        throw new CliError(
          'dlq takes no --group: redrive re-publishes the dead letters "dlq list" shows as pending and ' +
            'records each one as redriven, whatever ran it',
          EXIT.usage,
        )
      }
      const opts = {
        topic: values.topic ?? DEFAULT_DLQ_TOPIC,
        json,
        all: values.all ?? false,
        limit: intOption('limit', values.limit),
        idleMs: intOption('idle', values.idle) ?? 1000,
      }
      checkTopic(opts.topic)
      return withBackend(
        url,
        timeoutMs,
        (b) => (action === 'list' ? dlqList(b, opts, io) : dlqRedrive(b, opts, io)),
        (b) => {
          requireCrossProcess(
            b,
            url,
            'dlq reads the dead letters that subscriptions of other processes wrote',
          )
          requireReplay(b, url)
        },
      )
    }
    case 'cost': {
      const until = Date.now()
      const by = (values.by ?? 'model') as CostGrouping
      if (!COST_GROUPINGS.includes(by)) {
        throw new CliError(`--by must be ${COST_GROUPINGS.join(', ')}, got "${values.by}"`, EXIT.usage)
      }
      const from = parseSince(values.since ?? '24h', until)
      const pricing = await costPricing(values.pricing)
      const opts = {
        from,
        until,
        by,
        pricing,
        json,
        idleMs: intOption('idle', values.idle, 0) ?? 500,
        stallMs: intOption('timeout', values.timeout) ?? 30_000,
      }
      return withBackend(
        url,
        timeoutMs,
        (b) => cost(b, opts, io),
        (b) => requireCostReplay(b, url),
      )
    }
    case 'demo':
      return runDemo(
        {
          backend: values.backend ?? process.env.OMNIBUS_BACKEND,
          workers: intOption('workers', values.workers) ?? 3,
          tasks: intOption('tasks', values.tasks) ?? 60,
          timeoutMs,
          keep: values.keep ?? false,
        },
        io,
      )
    case 'serve': {
      const port = portOption(values.port)
      const from = fromOption(values.from)
      const pricing = await costPricing(values.pricing)
      const alerts = await alertsOption(values.alerts, pricing)
      const opts = { port, host: values.host, pricing, alerts, from }
      return withBackend(
        url,
        timeoutMs,
        (b) => serve(b, url, opts, io),
        (b) => {
          requireCrossProcess(b, url, 'serve shows what other processes publish')
          requireReplayFor(from, b, url)
        },
      )
    }
    case 'top': {
      const from = fromOption(values.from)
      const intervalMs = durationOption('interval', values.interval, 1000, 100)
      const pricing = await costPricing(values.pricing)
      return withBackend(
        url,
        timeoutMs,
        async (b) => {
          const source = await createServeHandler({
            backend: b,
            from,
            pricing,
            logger: silentLogger,
          })
          try {
            return await top(source, { intervalMs, json, url: redactUrl(url) }, io)
          } finally {
            await source.close()
          }
        },
        (b) => {
          requireCrossProcess(b, url, 'top shows what other processes publish')
          requireReplayFor(from, b, url)
        },
      )
    }
    case '__demo-worker': {
      if (values.id === undefined || values.run === undefined || values.backend === undefined) {
        throw new CliError('internal demo worker needs --id, --run and --backend', EXIT.usage)
      }
      return runWorker({ backend: values.backend, id: values.id, run: values.run }, io)
    }
    default:
      throw new CliError(`unknown command "${command}"`, EXIT.usage)
  }
}
