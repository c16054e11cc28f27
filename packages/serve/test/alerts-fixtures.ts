/** Builders shared by the alert tests: snapshots, events, a fake clock and a recording channel. */
import { AGENT_HEADERS, createEvent, type EventInput, type OmnibusEvent } from '@omnibus/core'
import type { AlertChannel, AlertNotification } from '../src/index.ts'
import type { AgentView, Snapshot, ToolView } from '../src/snapshot.ts'

export const T0 = Date.UTC(2026, 0, 15, 10, 0, 0)

export class FakeClock {
  t = T0
  readonly now = (): number => this.t
  advance(ms: number): void {
    this.t += ms
  }
}

export function snapshot(parts: { tools?: ToolView[]; agents?: AgentView[]; at?: number } = {}): Snapshot {
  return {
    at: parts.at ?? T0,
    startedAt: T0,
    backend: { name: 'memory', healthy: true, latencyMs: 0, detail: undefined, checkedAt: T0 },
    totals: {
      events: 0,
      errors: 0,
      deadLetters: 0,
      toolCalls: 0,
      toolErrors: 0,
      requests: 0,
      replies: 0,
      modelCalls: 0,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: 0,
    },
    families: [],
    topics: [],
    agents: parts.agents ?? [],
    tools: parts.tools ?? [],
    models: [],
    cost: [],
    errors: [],
    deadLetters: [],
    alerts: [],
  }
}

export function tool(name: string, p95Ms: number | undefined, p50Ms = 1): ToolView {
  return { tool: name, calls: 10, errors: 0, errorRate: 0, p50Ms, p95Ms }
}

export function agent(agentId: string, lastSeen: number, p99Ms?: number): AgentView {
  return {
    agentId,
    lastSeen,
    inFlight: 0,
    requests: 0,
    errors: 0,
    p50Ms: p99Ms === undefined ? undefined : p99Ms / 2,
    p99Ms,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
  }
}

export function event(topic: string, data: unknown = {}, extra: Partial<EventInput> = {}): OmnibusEvent {
  return createEvent({ topic, data, source: 'test', ...extra })
}

export const toolEnd = (success: boolean): OmnibusEvent =>
  event('tool.end', { tool: 'search', success, durationMs: 12 })

export const failedReply = (): OmnibusEvent =>
  event('agent._inbox.client-1', null, {
    headers: { [AGENT_HEADERS.kind]: 'reply', [AGENT_HEADERS.error]: 'TimeoutError: no answer' },
  })

/** A channel that records what it is sent. */
export function recorder(name = 'recorder'): AlertChannel & { readonly sent: AlertNotification[] } {
  const sent: AlertNotification[] = []
  return {
    name,
    sent,
    async send(n) {
      sent.push(n)
    },
  }
}
