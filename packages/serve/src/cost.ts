/**
 * Token usage to money: a pricing table per model (US dollars per million input and output
 * tokens) and the cost of one model call. The default table is small and dated; every deployment
 * should pass its own negotiated or current prices (`pricing` option, or `--pricing file.json`).
 */

/** Price of one model, in US dollars per million tokens. */
export interface ModelPrice {
  readonly inputPerMTok: number
  readonly outputPerMTok: number
}

/** Prices by model name. A name also prices its dated variants (`gpt-4o` → `gpt-4o-2024-08-06`). */
export type PricingTable = Readonly<Record<string, ModelPrice>>

/**
 * List prices of a few common models for standard (non-batch, non-cached) use, in USD per million
 * tokens, as the providers' public pricing pages gave them in mid-2025 (OpenAI, Anthropic, Google;
 * Gemini at the ≤128k-token prompt tier). Prices change: pass your own table for real accounting.
 */
export const DEFAULT_PRICING: PricingTable = {
  'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10 },
  'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6 },
  'gpt-4.1': { inputPerMTok: 2, outputPerMTok: 8 },
  'gpt-4.1-mini': { inputPerMTok: 0.4, outputPerMTok: 1.6 },
  'gpt-4.1-nano': { inputPerMTok: 0.1, outputPerMTok: 0.4 },
  o3: { inputPerMTok: 2, outputPerMTok: 8 },
  'o4-mini': { inputPerMTok: 1.1, outputPerMTok: 4.4 },
  'claude-opus-4': { inputPerMTok: 15, outputPerMTok: 75 },
  'claude-sonnet-4': { inputPerMTok: 3, outputPerMTok: 15 },
  'claude-3-5-sonnet': { inputPerMTok: 3, outputPerMTok: 15 },
  'claude-3-5-haiku': { inputPerMTok: 0.8, outputPerMTok: 4 },
  'gemini-2.0-flash': { inputPerMTok: 0.1, outputPerMTok: 0.4 },
  'gemini-1.5-pro': { inputPerMTok: 1.25, outputPerMTok: 5 },
  'gemini-1.5-flash': { inputPerMTok: 0.075, outputPerMTok: 0.3 },
}

/**
 * The price of `model`: an exact entry, else the longest entry that `model` starts with followed
 * by `-`, `@` or `:` (dated and versioned variants), else undefined.
 */
export function priceOf(model: string, table: PricingTable = DEFAULT_PRICING): ModelPrice | undefined {
  const exact = Object.hasOwn(table, model) ? table[model] : undefined
  if (exact !== undefined) return exact
  let best: string | undefined
  for (const name of Object.keys(table)) {
    if (model.length > name.length && model.startsWith(name) && '-@:'.includes(model.charAt(name.length))) {
      if (best === undefined || name.length > best.length) best = name
    }
  }
  return best === undefined ? undefined : table[best]
}

/** Cost in US dollars of one call, or undefined when the table has no price for the model. */
export function costOf(
  model: string,
  inputTokens: number,
  outputTokens: number,
  table: PricingTable = DEFAULT_PRICING,
): number | undefined {
  const price = priceOf(model, table)
  if (price === undefined) return undefined
  return (inputTokens * price.inputPerMTok + outputTokens * price.outputPerMTok) / 1_000_000
}

/**
 * Header of the marker event `omnibus cost` publishes on `model.call` to learn that it has read
 * every earlier call. A marker is not a model call: readers of `model.call` skip it
 * ({@link isCostMarker}).
 */
export const COST_MARKER_HEADER = 'omnibus-cost-marker'

/** Whether an event on `model.call` is a marker of `omnibus cost`, not a model call. */
export function isCostMarker(event: { readonly headers: Readonly<Record<string, string>> }): boolean {
  return event.headers[COST_MARKER_HEADER] !== undefined
}
