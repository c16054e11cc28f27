/**
 * The brokers the integration project knows: how each is pointed to by an environment variable,
 * and which container serves it when a Docker engine answers.
 */

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

/** Parses `OMNIBUS_IT_REQUIRE` (comma-separated service names); throws on an unknown name. */
export function requiredServices(value: string | undefined): ServiceName[] {
  if (value === undefined || value.trim() === '') return []
  const names = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  for (const n of names) {
    if (!SERVICES.some((s) => s.name === n)) {
      throw new Error(
        `OMNIBUS_IT_REQUIRE names "${n}", which is not a service: use ${SERVICES.map((s) => s.name).join(', ')}`,
      )
    }
  }
  return names as ServiceName[]
}

/** How to enable a service that could not be resolved. */
export function enableHint(name: ServiceName): string {
  const s = serviceSpec(name)
  return `set ${s.env}=${s.example} (scripts/services/${name}.sh start runs one without Docker), or start a Docker engine for testcontainers`
}
