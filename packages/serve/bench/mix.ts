/**
 * A realistic telemetry and agent-traffic mix for the benches: tool calls, model calls, agent
 * requests and replies, metrics, errors and a few dead letters, over many topics and agents, with
 * unique ids and correlation ids (as real traffic has) so nothing is bounded by reuse.
 */
import { AGENT_HEADERS, createEvent, DLQ_HEADERS, type OmnibusEvent } from '@omnibus/core'

/** Sizes of the mix's name spaces. */
export interface MixShape {
  readonly topics: number
  readonly agents: number
  readonly tools: number
  readonly models: number
}

const MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'claude-sonnet-4',
  'claude-3-5-haiku',
  'gemini-2.0-flash',
  'o3',
  'local-llm',
]

/** Returns a function making event number `i` at time `time`. */
export function eventMaker(shape: MixShape): (i: number, time: number) => OmnibusEvent {
  let seq = 0
  // Spread names independently of the event kind (which is i % 100).
  const mix = (i: number, salt: number): number => (Math.imul(i ^ salt, 2654435761) >>> 0) >>> 3
  const agentOf = (i: number): string => `agent-${mix(i, 1) % shape.agents}`
  const targetOf = (i: number): string => `agent-${mix(i, 2) % shape.agents}`
  return (i, time) => {
    seq++
    const agent = agentOf(i)
    const r = i % 100
    if (r < 20) {
      return createEvent({
        topic: 'tool.start',
        source: agent,
        time,
        data: { tool: `tool_${mix(i, 3) % shape.tools}`, callId: `c${seq}` },
      })
    }
    if (r < 40) {
      return createEvent({
        topic: 'tool.end',
        source: agent,
        time,
        data: {
          tool: `tool_${mix(i, 3) % shape.tools}`,
          callId: `c${seq}`,
          success: i % 17 !== 0,
          durationMs: (i % 250) + 1,
        },
      })
    }
    if (r < 50) {
      return createEvent({
        topic: 'model.call',
        source: agent,
        time,
        data: {
          model: MODELS[mix(i, 4) % Math.min(shape.models, MODELS.length)],
          inputTokens: 500 + (i % 3000),
          outputTokens: 50 + (i % 800),
          durationMs: 200 + (i % 3000),
          success: true,
        },
      })
    }
    if (r < 60) {
      const to = targetOf(i)
      return createEvent({
        topic: `agent.${to}.task`,
        source: agent,
        time,
        id: `req-${i}`,
        data: { n: i },
        headers: {
          [AGENT_HEADERS.from]: agent,
          [AGENT_HEADERS.to]: to,
          [AGENT_HEADERS.kind]: 'request',
          [AGENT_HEADERS.correlationId]: `req-${i}`,
          [AGENT_HEADERS.replyTo]: `agent._inbox.${agent}`,
        },
      })
    }
    if (r < 70) {
      const requestIndex = i - 10
      const to = targetOf(requestIndex)
      const requester = agentOf(requestIndex)
      return createEvent({
        topic: `agent._inbox.${requester}`,
        source: to,
        time,
        data: { ok: true },
        headers: {
          [AGENT_HEADERS.from]: to,
          [AGENT_HEADERS.to]: requester,
          [AGENT_HEADERS.kind]: 'reply',
          [AGENT_HEADERS.correlationId]: `req-${requestIndex}`,
        },
      })
    }
    if (r < 97) {
      return createEvent({
        topic: `metric.m${mix(i, 5) % shape.topics}`,
        source: agent,
        time,
        data: { name: 'm', value: i },
      })
    }
    if (r < 99) {
      return createEvent({
        topic: 'error.raised',
        source: agent,
        time,
        data: { error: { name: 'Error', message: `failure number ${seq}` } },
      })
    }
    return createEvent({
      topic: 'omnibus.deadletter',
      source: agent,
      time,
      id: `dl-${seq}`,
      data: { n: i },
      headers: {
        [DLQ_HEADERS.originalTopic]: 'orders.placed',
        [DLQ_HEADERS.originalId]: `o-${seq}`,
        [DLQ_HEADERS.reason]: 'handler threw',
        [DLQ_HEADERS.attempts]: '5',
      },
    })
  }
}

/** Mebibytes, one decimal. */
export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}
