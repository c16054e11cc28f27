/**
 * Scatter-gather over agents: one request per agent, all with the same deadline, gathered into
 * one result that keeps every reply and every failure.
 */
import { ConfigurationError, OmnibusError } from '../errors.ts'
import { AgentQuorumError } from './errors.ts'

/** Result of `requestAll`. Every agent asked is in exactly one of `replies` and `missing`. */
export interface RequestAllResult<R = unknown> {
  /** Agent id → the data of its reply, for every agent that replied in time. */
  readonly replies: Map<string, R>
  /** Agents without a reply, in the order asked: failed, unavailable, or not in time. */
  readonly missing: string[]
  /**
   * Agent id → why it has no reply, for each missing agent: `AgentReplyError` (its handler failed
   * or it replied with an error), `AgentUnavailableError` (presence knows it is not running),
   * `TimeoutError` (no answer in time), or the publish error.
   */
  readonly failures: Map<string, Error>
}

/** Validates the agent list and `min` of a `requestAll`. */
export function checkFanOut(agentIds: unknown, min: unknown): { ids: string[]; min: number } {
  if (!Array.isArray(agentIds) || agentIds.length === 0) {
    throw new ConfigurationError('requestAll needs a non-empty array of agent ids')
  }
  const ids = agentIds as string[]
  const seen = new Set<string>()
  for (const id of ids) {
    if (seen.has(id))
      throw new ConfigurationError(`requestAll lists agent "${String(id)}" twice: list each agent once`)
    seen.add(id)
  }
  if (min === undefined) return { ids, min: 0 }
  if (typeof min !== 'number' || !Number.isInteger(min) || min < 1 || min > ids.length) {
    throw new ConfigurationError(
      `requestAll min must be an integer from 1 to the number of agents asked (${ids.length}), got ${String(min)}`,
    )
  }
  return { ids, min }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new OmnibusError(String(error))
}

/**
 * Runs `ask(agentId, signal)` for every agent at once and gathers the outcomes. Resolves when every
 * agent has answered (a reply or a failure); each `ask` ends by its own deadline at the latest, so
 * this is also when the timeout has passed. With `min`, rejects with {@link AgentQuorumError} (the
 * partial result attached) when fewer than `min` replied by then, or as soon as so many agents have
 * failed that `min` replies can no longer come (the requests still waiting are then abandoned).
 */
export function gather<R>(
  ids: readonly string[],
  min: number,
  ask: (agentId: string, signal: AbortSignal) => Promise<R>,
): Promise<RequestAllResult<R>> {
  const abandon = new AbortController()
  const replies = new Map<string, R>()
  const failures = new Map<string, Error>()
  const result = (): RequestAllResult<R> => {
    // Insertion order of the asked list, whatever order the answers came in.
    const ordered = new Map<string, R>()
    for (const id of ids) if (replies.has(id)) ordered.set(id, replies.get(id) as R)
    const orderedFailures = new Map<string, Error>()
    for (const id of ids) if (failures.has(id)) orderedFailures.set(id, failures.get(id) as Error)
    return { replies: ordered, missing: ids.filter((id) => !replies.has(id)), failures: orderedFailures }
  }
  return new Promise<RequestAllResult<R>>((resolve, reject) => {
    let open = ids.length
    let done = false
    const settle = (): void => {
      if (done) return
      if (min > 0 && ids.length - failures.size < min) {
        done = true
        abandon.abort(
          new OmnibusError('requestAll gave up: too few agents can still reply', { code: 'ABORTED' }),
        )
        reject(new AgentQuorumError(min, result(), `${failures.size} of ${ids.length} failed`))
        return
      }
      if (open > 0) return
      done = true
      if (replies.size < min) reject(new AgentQuorumError(min, result(), 'the others did not reply in time'))
      else resolve(result())
    }
    for (const id of ids) {
      let p: Promise<R>
      try {
        p = ask(id, abandon.signal)
      } catch (error) {
        p = Promise.reject(error)
      }
      p.then(
        (reply) => {
          replies.set(id, reply)
        },
        (error: unknown) => {
          if (!done) failures.set(id, asError(error))
        },
      ).finally(() => {
        open--
        settle()
      })
    }
  })
}
