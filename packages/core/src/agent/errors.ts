/** Errors a request or fan-out request of the AgentMessageBus rejects with. */
import { OmnibusError } from '../errors.ts'

/**
 * Why a request got an error instead of a reply:
 * - `AGENT_REPLY_ERROR` — the responder answered with `ctx.replyError`;
 * - `HANDLER_FAILED` — the responder's handler failed for good (its last attempt threw, or it
 *   dead-lettered the request), so no reply will ever come.
 */
export type AgentReplyErrorCode = 'AGENT_REPLY_ERROR' | 'HANDLER_FAILED'

/** Details of an {@link AgentReplyError}. */
export interface AgentReplyErrorDetails {
  /** @default 'AGENT_REPLY_ERROR' */
  readonly code?: AgentReplyErrorCode
  /** `name` of the responder's error (`TypeError`, `ValidationError`), when it was an Error. */
  readonly errorName?: string
  /** Handler runs the request got before it failed for good (`HANDLER_FAILED`). */
  readonly attempts?: number
}

/** The responder replied with an error (`ctx.replyError`), or its handler failed for good. */
export class AgentReplyError extends OmnibusError {
  /** Agent that replied. */
  readonly agent: string
  /** The responder's error message. */
  readonly errorMessage: string
  /** The responder's error name, when it sent one. */
  readonly errorName: string | undefined
  /** Handler runs before it failed for good; set for `HANDLER_FAILED`. */
  readonly attempts: number | undefined
  declare readonly code: AgentReplyErrorCode

  constructor(agent: string, message: string, details: AgentReplyErrorDetails = {}) {
    const code = details.code ?? 'AGENT_REPLY_ERROR'
    const what = details.errorName === undefined ? message : `${details.errorName}: ${message}`
    super(
      code === 'HANDLER_FAILED'
        ? `agent "${agent}" failed to handle the request` +
            `${details.attempts === undefined ? '' : ` after ${details.attempts} attempt${details.attempts === 1 ? '' : 's'}`}: ${what}`
        : `agent "${agent}" replied with an error: ${what}`,
      { code },
    )
    this.agent = agent
    this.errorMessage = message
    this.errorName = details.errorName
    this.attempts = details.attempts
  }
}

/**
 * A request went to an agent that presence knows has no live instance (see the AgentMessageBus
 * `presence` option). Pass `{ queue: true }` to leave the request in the agent's mailbox instead.
 */
export class AgentUnavailableError extends OmnibusError {
  /** The agent asked. */
  readonly agent: string
  /** When a heartbeat of the agent was last heard (epoch ms), if ever. */
  readonly lastSeen: number | undefined

  constructor(agent: string, lastSeen: number | undefined) {
    super(
      `agent "${agent}" has no live instance (${
        lastSeen === undefined ? 'never heard from' : `last heard ${new Date(lastSeen).toISOString()}`
      }): start it, or pass { queue: true } to leave the request in its mailbox`,
      { code: 'AGENT_UNAVAILABLE', retryable: true },
    )
    this.agent = agent
    this.lastSeen = lastSeen
  }
}

/** `requestAll` with `min` got fewer than `min` replies; `result` holds what did arrive. */
export class AgentQuorumError extends OmnibusError {
  /** Replies required. */
  readonly min: number
  /** What arrived before the call gave up. */
  readonly result: {
    readonly replies: ReadonlyMap<string, unknown>
    readonly missing: readonly string[]
    readonly failures: ReadonlyMap<string, Error>
  }

  constructor(min: number, result: AgentQuorumError['result'], why: string) {
    super(
      `requestAll needed ${min} repl${min === 1 ? 'y' : 'ies'} and got ${result.replies.size} (${why}); ` +
        `missing: ${result.missing.join(', ')}`,
      { code: 'QUORUM_NOT_MET', retryable: true },
    )
    this.min = min
    this.result = result
  }
}
