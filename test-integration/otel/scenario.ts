/**
 * The agent of the end-to-end OpenTelemetry tests, shared by the consumer child process and the
 * in-process (memory) variant: it takes one task from `task` in a consumer group, runs a tool and
 * a model call recorded on the ObservabilityBus, and publishes a reply event from inside its
 * handler. Also the OpenTelemetry set-up each process makes, the way an application would.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { EventBackend, ObservabilityBus, Subscription } from '@omnibus/core'
import {
  instrumentOmnibus,
  type OmnibusInstrumentation,
  type OmnibusTelemetry,
  startOmnibusTelemetry,
} from '@omnibus/otel'

/** Topics and group of one run. */
export function names(run: string): { task: string; done: string; group: string } {
  return { task: `it.otel.${run}.task`, done: `it.otel.${run}.done`, group: `it-otel-${run}` }
}

/**
 * The model call the agent reports in run `run`; the tests expect exactly these values at the
 * receiver. The model is named after the run so that its metric points are told apart from
 * other runs' in one collector.
 */
export function modelCall(run: string) {
  return {
    model: `test-model-${run}`,
    provider: 'openai',
    inputTokens: 812,
    outputTokens: 164,
    durationMs: 1430,
    timeToFirstTokenMs: 310,
    agent: 'researcher',
    session: run,
  } as const
}

/** The tool the agent runs. */
export const TOOL = 'web_search'

/** What the agent saw of the task it handled. */
export interface TaskSeen {
  readonly id: string
  readonly correlationId: string | undefined
  readonly traceparent: string | undefined
}

/**
 * Subscribes the agent in group `names(run).group`, from the earliest event where the backend
 * keeps history (the task may be published before a broker has assigned the group its partitions
 * or queue). `handled` resolves after the first task's handler has returned.
 */
export async function serveOneTask(
  backend: EventBackend,
  bus: ObservabilityBus,
  run: string,
): Promise<{ handled: Promise<TaskSeen>; subscription: Subscription }> {
  const { task, done, group } = names(run)
  let resolve: (seen: TaskSeen) => void = () => {}
  const handled = new Promise<TaskSeen>((r) => {
    resolve = r
  })
  const subscription = await backend.subscribe(
    task,
    async (event) => {
      const tool = bus.startTool(TOOL, { query: `run ${run}` })
      // A tool that takes time, so its span has a real duration.
      await sleep(20)
      tool.end({ hits: 3 })
      bus.emitModelCall(modelCall(run))
      await backend.publish({ topic: done, data: { for: event.id } })
      resolve({ id: event.id, correlationId: event.correlationId, traceparent: event.headers.traceparent })
    },
    {
      group,
      guarantee: 'at-least-once',
      ...(backend.capabilities.replay ? { from: 'earliest' as const } : {}),
    },
  )
  return { handled, subscription }
}

/** OpenTelemetry as an application sets it up: OTLP/HTTP export and the Omnibus instrumentation. */
export function startTelemetry(
  serviceName: string,
  endpoint: string,
): { telemetry: OmnibusTelemetry; instrumentation: OmnibusInstrumentation; stop(): Promise<void> } {
  const telemetry = startOmnibusTelemetry({ serviceName, endpoint })
  const instrumentation = instrumentOmnibus()
  return {
    telemetry,
    instrumentation,
    async stop() {
      instrumentation.unregister()
      await telemetry.shutdown()
    },
  }
}
