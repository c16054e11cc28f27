/**
 * The brokers the integration project knows: how each is pointed to by an environment variable,
 * and which container serves it when a Docker engine answers. Also the programs (not brokers)
 * some tests need on the machine, such as a browser.
 */
import { accessSync, constants } from 'node:fs'

/** A broker the integration tests can use. */
export type ServiceName = 'redis' | 'rabbitmq' | 'kafka' | 'sqs'

/** Where a resolved service came from. */
export type ServiceOrigin = 'env' | 'testcontainers'

/** A resolved service: its endpoint, and how to restart it when the harness can. */
export interface ResolvedService {
  readonly endpoint: string
  readonly origin: ServiceOrigin
  /** Shell command that restarts the broker and returns once it answers again. */
  readonly restartCommand?: string
}

/** Per-service facts. */
export interface ServiceSpec {
  readonly name: ServiceName
  /** Variable holding the endpoint. */
  readonly env: string
  /** Variable holding a shell command that restarts the broker (set by the service scripts). */
  readonly restartEnv: string
  /** An example endpoint, for skip messages. */
  readonly example: string
}

/** Every service, in the order they are resolved. */
export const SERVICES: readonly ServiceSpec[] = [
  {
    name: 'redis',
    env: 'OMNIBUS_IT_REDIS_URL',
    restartEnv: 'OMNIBUS_IT_REDIS_RESTART',
    example: 'redis://127.0.0.1:6379',
  },
  {
    name: 'rabbitmq',
    env: 'OMNIBUS_IT_AMQP_URL',
    restartEnv: 'OMNIBUS_IT_RABBITMQ_RESTART',
    example: 'amqp://guest:guest@127.0.0.1:5672',
  },
  {
    name: 'kafka',
    env: 'OMNIBUS_IT_KAFKA_BROKERS',
    restartEnv: 'OMNIBUS_IT_KAFKA_RESTART',
    example: '127.0.0.1:9092',
  },
  {
    name: 'sqs',
    env: 'OMNIBUS_IT_SQS_ENDPOINT',
    restartEnv: 'OMNIBUS_IT_SQS_RESTART',
    example: 'http://127.0.0.1:9324',
  },
]

/** The spec of one service. */
export function serviceSpec(name: ServiceName): ServiceSpec {
  const spec = SERVICES.find((s) => s.name === name)
  if (spec === undefined) throw new Error(`unknown integration service "${name}"`)
  return spec
}

/**
 * A program some integration tests run, found on the machine rather than started by the harness:
 * a browser, or the OpenTelemetry Collector that the OpenTelemetry tests start per test file.
 */
export type ToolName = 'chromium' | 'otelcol'

/** Per-program facts. */
export interface ToolSpec {
  readonly name: ToolName
  /** Variable holding the path of the program, when it is not at {@link ToolSpec.defaultPath}. */
  readonly env: string
  /** Where the program usually is; absent when only {@link ToolSpec.env} can point to it. */
  readonly defaultPath?: string
  /** How to get it, for skip messages. */
  readonly install: string
}

/** Every program the integration tests may need. */
export const TOOLS: readonly ToolSpec[] = [
  {
    name: 'chromium',
    env: 'OMNIBUS_CHROMIUM',
    defaultPath: '/usr/bin/chromium',
    install:
      "install Debian's chromium (bash scripts/services/chromium.sh, or apt-get install chromium), or set OMNIBUS_CHROMIUM to a Chromium binary",
  },
  {
    // Only the variable points to it, as the brokers' endpoints do: a run without it skips.
    name: 'otelcol',
    env: 'OMNIBUS_IT_OTELCOL',
    install:
      'build it (a few minutes once, then cached) and export its path: bash scripts/services/all.sh start otelcol && . .services/env.sh, or set OMNIBUS_IT_OTELCOL to an OpenTelemetry Collector binary with the otlp receiver and the otlp_http exporter',
  },
]

/** The spec of one program. */
export function toolSpec(name: ToolName): ToolSpec {
  const spec = TOOLS.find((t) => t.name === name)
  if (spec === undefined) throw new Error(`unknown integration tool "${name}"`)
  return spec
}

/**
 * The path of a program: its variable when set, else its default path; undefined when that path
 * is not an executable file.
 */
export function findTool(name: ToolName, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const spec = toolSpec(name)
  const candidate = env[spec.env] || spec.defaultPath
  if (candidate === undefined) return undefined
  try {
    accessSync(candidate, constants.X_OK)
    return candidate
  } catch {
    return undefined
  }
}

/** Why {@link findTool} found nothing, for messages: "not found at <path>" or the unset variable. */
export function toolMissing(name: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  const spec = toolSpec(name)
  const candidate = env[spec.env] || spec.defaultPath
  return candidate === undefined ? `not found (${spec.env} is not set)` : `not found at ${candidate}`
}

// OMNIBUS_IT_REQUIRE names services and programs alike.
function requiredNames(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return []
  const names = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  const known = [...SERVICES.map((s) => s.name), ...TOOLS.map((t) => t.name)]
  for (const n of names) {
    if (!known.includes(n as ServiceName)) {
      throw new Error(`OMNIBUS_IT_REQUIRE names "${n}", which is not a service: use ${known.join(', ')}`)
    }
  }
  return names
}

/**
 * The services `OMNIBUS_IT_REQUIRE` (comma-separated names) requires; throws on a name that is
 * neither a service nor a program.
 */
export function requiredServices(value: string | undefined): ServiceName[] {
  return requiredNames(value).filter((n): n is ServiceName => SERVICES.some((s) => s.name === n))
}

/** The programs `OMNIBUS_IT_REQUIRE` requires; throws like {@link requiredServices}. */
export function requiredTools(value: string | undefined): ToolName[] {
  return requiredNames(value).filter((n): n is ToolName => TOOLS.some((t) => t.name === n))
}

/** How to enable a service that could not be resolved. */
export function enableHint(name: ServiceName): string {
  const s = serviceSpec(name)
  return `set ${s.env}=${s.example} (scripts/services/${name}.sh start runs one without Docker), or start a Docker engine for testcontainers`
}
