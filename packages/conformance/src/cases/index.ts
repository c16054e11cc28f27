import { agentCases } from './agents.ts'
import { atLeastOnceCases } from './at-least-once.ts'
import { busCases } from './buses.ts'
import { contextCases } from './context.ts'
import { deliveryCases } from './delivery.ts'
import { grammarCases } from './grammar.ts'
import { groupCases } from './groups.ts'
import { guaranteeCases } from './guarantees.ts'
import { headerCases } from './headers.ts'
import { kernelCases } from './kernel.ts'
import { mailboxCases } from './mailboxes.ts'
import { resilienceCases } from './resilience.ts'
import { retryCases } from './retry.ts'
import { scheduleCases } from './schedule.ts'
import type { ConformanceCase } from './types.ts'

/** Every case, in the order of CONFORMANCE.md. */
export const ALL_CASES: readonly ConformanceCase[] = [
  ...deliveryCases,
  ...grammarCases,
  ...groupCases,
  ...atLeastOnceCases,
  ...guaranteeCases,
  ...retryCases,
  ...resilienceCases,
  ...contextCases,
  ...busCases,
  ...headerCases,
  ...kernelCases,
  ...scheduleCases,
  ...mailboxCases,
  ...agentCases,
]
