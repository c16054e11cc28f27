/**
 * Resolves each broker once for the whole integration run: environment variable first,
 * testcontainers second when a Docker engine answers, otherwise unavailable (tests skip with a
 * title saying how to enable it). `OMNIBUS_IT_REQUIRE=redis,kafka,…` turns a missing required
 * service into a failure of the run.
 */
import type { TestProject } from 'vitest/node'
import {
  enableHint,
  findTool,
  type ResolvedService,
  requiredServices,
  requiredTools,
  SERVICES,
  type ServiceName,
  TOOLS,
  type ToolName,
  toolMissing,
} from './catalog.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    omnibusServices: Partial<Record<ServiceName, ResolvedService>>
    /** The path of each program found on this machine. */
    omnibusTools: Partial<Record<ToolName, string>>
  }
}

interface Started {
  stop(): Promise<unknown>
}

async function dockerAnswers(): Promise<boolean> {
  if (process.env.OMNIBUS_IT_NO_DOCKER === '1') return false
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    const probe = getContainerRuntimeClient().then(() => true)
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000).unref())
    return await Promise.race([probe, timeout])
  } catch {
    return false
  }
}

async function startContainer(name: ServiceName): Promise<{ service: ResolvedService; container: Started }> {
  const { GenericContainer, Wait } = await import('testcontainers')
  switch (name) {
    case 'redis': {
      const c = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start()
      return {
        service: { endpoint: `redis://${c.getHost()}:${c.getMappedPort(6379)}`, origin: 'testcontainers' },
        container: c,
      }
    }
    case 'rabbitmq': {
      const c = await new GenericContainer('rabbitmq:4-alpine')
        .withExposedPorts(5672)
        .withWaitStrategy(Wait.forLogMessage(/Server startup complete/))
        .start()
      return {
        service: {
          endpoint: `amqp://guest:guest@${c.getHost()}:${c.getMappedPort(5672)}`,
          origin: 'testcontainers',
        },
        container: c,
      }
    }
    case 'kafka': {
      // The broker must advertise the address clients reach it on, so the host port is fixed.
      const port = Number(process.env.OMNIBUS_IT_KAFKA_HOST_PORT ?? 19092)
      const c = await new GenericContainer('apache/kafka:3.9.1')
        .withExposedPorts({ container: port, host: port })
        .withEnvironment({
          KAFKA_NODE_ID: '1',
          KAFKA_PROCESS_ROLES: 'broker,controller',
          KAFKA_LISTENERS: `PLAINTEXT://:${port},CONTROLLER://:9093`,
          KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://localhost:${port}`,
          KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
          KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
          KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
          KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
          KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
          KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
          KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
        })
        .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
        .start()
      return { service: { endpoint: `localhost:${port}`, origin: 'testcontainers' }, container: c }
    }
    case 'sqs': {
      const c = await new GenericContainer('softwaremill/elasticmq-native:1.6.11')
        .withExposedPorts(9324)
        .start()
      return {
        service: { endpoint: `http://${c.getHost()}:${c.getMappedPort(9324)}`, origin: 'testcontainers' },
        container: c,
      }
    }
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const required = requiredServices(process.env.OMNIBUS_IT_REQUIRE)
  const services: Partial<Record<ServiceName, ResolvedService>> = {}
  const containers: Started[] = []
  let docker: boolean | undefined
  const problems: string[] = []

  for (const spec of SERVICES) {
    const fromEnv = process.env[spec.env]
    if (fromEnv !== undefined && fromEnv !== '') {
      const restart = process.env[spec.restartEnv]
      services[spec.name] = {
        endpoint: fromEnv,
        origin: 'env',
        ...(restart !== undefined && restart !== '' ? { restartCommand: restart } : {}),
      }
      continue
    }
    docker ??= await dockerAnswers()
    if (docker) {
      try {
        const { service, container } = await startContainer(spec.name)
        services[spec.name] = service
        containers.push(container)
        continue
      } catch (error) {
        problems.push(`${spec.name}: testcontainers failed: ${(error as Error).message}`)
      }
    }
    if (required.includes(spec.name)) {
      problems.push(
        `${spec.name} is required by OMNIBUS_IT_REQUIRE but unavailable: ${enableHint(spec.name)}`,
      )
    }
  }

  const tools: Partial<Record<ToolName, string>> = {}
  const requiredProgs = requiredTools(process.env.OMNIBUS_IT_REQUIRE)
  for (const spec of TOOLS) {
    const found = findTool(spec.name)
    if (found !== undefined) tools[spec.name] = found
    else if (requiredProgs.includes(spec.name)) {
      problems.push(
        `${spec.name} is required by OMNIBUS_IT_REQUIRE but ${toolMissing(spec.name)} (as an executable file): ${spec.install}`,
      )
    }
  }

  const missingRequired = [
    ...required.filter((n) => services[n] === undefined),
    ...requiredProgs.filter((n) => tools[n] === undefined),
  ]
  if (missingRequired.length > 0) {
    await Promise.allSettled(containers.map((c) => c.stop()))
    throw new Error(`integration services missing:\n- ${problems.join('\n- ')}`)
  }
  for (const [name, s] of Object.entries(services)) {
    console.log(
      `[integration] ${name}: ${s.origin} ${s.endpoint.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@')}`,
    )
  }
  for (const [name, where] of Object.entries(tools)) console.log(`[integration] ${name}: ${where}`)
  project.provide('omnibusServices', services)
  project.provide('omnibusTools', tools)
  return async () => {
    await Promise.allSettled(containers.map((c) => c.stop()))
  }
}
