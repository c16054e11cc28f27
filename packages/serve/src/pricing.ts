/**
 * A user's pricing table: read from a JSON or YAML file, checked field by field, and laid over
 * {@link DEFAULT_PRICING} so it only needs the models whose prices differ or are missing.
 *
 * The file maps model names to prices in US dollars per million tokens:
 *
 * ```yaml
 * gpt-4o-mini: { inputPerMTok: 0.15, outputPerMTok: 0.6 }
 * my-finetune: { inputPerMTok: 0.3, outputPerMTok: 1.2 }
 * ```
 */
import { readFile } from 'node:fs/promises'
import { ConfigurationError } from '@omnibus/core'
import { closestName } from '@omnibus/core/backend'
import { parse as parseYaml } from 'yaml'
import { DEFAULT_PRICING, type ModelPrice, type PricingTable } from './cost.ts'

const PRICE_FIELDS: readonly (keyof ModelPrice)[] = ['inputPerMTok', 'outputPerMTok']

/** Environment variable naming a pricing file, read when no file is passed explicitly. */
export const PRICING_ENV = 'OMNIBUS_PRICING'

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return 'a list'
  if (value === null) return 'null'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

/**
 * Checks a parsed pricing table: an object whose keys are model names and whose values are
 * `{ inputPerMTok, outputPerMTok }`, both finite numbers >= 0. Throws `ConfigurationError` naming
 * `source`, the model and the field.
 */
export function validatePricing(value: unknown, source = 'pricing table'): PricingTable {
  if (!isPlainObject(value)) {
    throw new ConfigurationError(
      `${source}: expected a mapping of model name to { inputPerMTok, outputPerMTok }, got ${describeValue(value)}`,
    )
  }
  const table: Record<string, ModelPrice> = {}
  for (const [model, price] of Object.entries(value)) {
    if (model.trim() === '') throw new ConfigurationError(`${source}: a model name is empty`)
    if (!isPlainObject(price)) {
      throw new ConfigurationError(
        `${source}: model "${model}" must be { inputPerMTok, outputPerMTok } (US dollars per million tokens), got ${describeValue(price)}`,
      )
    }
    for (const field of Object.keys(price)) {
      if (!(PRICE_FIELDS as readonly string[]).includes(field)) {
        const near = closestName(field, PRICE_FIELDS)
        throw new ConfigurationError(
          `${source}: model "${model}" has an unknown field "${field}"${near === undefined ? '' : ` (did you mean "${near}"?)`}: ` +
            'a price has exactly inputPerMTok and outputPerMTok',
        )
      }
    }
    for (const field of PRICE_FIELDS) {
      const n = price[field]
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
        throw new ConfigurationError(
          `${source}: model "${model}" field "${field}" must be a number >= 0 (US dollars per million tokens), got ${n === undefined ? 'nothing' : describeValue(n)}`,
        )
      }
    }
    table[model] = {
      inputPerMTok: price.inputPerMTok as number,
      outputPerMTok: price.outputPerMTok as number,
    }
  }
  return table
}

/**
 * Parses pricing text: JSON when `name` ends in `.json`, YAML otherwise (YAML also reads JSON).
 * Returns only the entries of the text, validated; see {@link mergePricing} to lay them over the
 * defaults.
 */
export function parsePricing(text: string, name = 'pricing file'): PricingTable {
  let parsed: unknown
  try {
    parsed = name.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text)
  } catch (cause) {
    throw new ConfigurationError(
      `${name}: not valid ${name.toLowerCase().endsWith('.json') ? 'JSON' : 'YAML'}: ${(cause as Error).message}`,
      {
        cause,
      },
    )
  }
  return validatePricing(parsed, name)
}

/** `overrides` laid over `base`: a model in both takes the override's price. */
export function mergePricing(overrides: PricingTable, base: PricingTable = DEFAULT_PRICING): PricingTable {
  return Object.freeze({ ...base, ...overrides })
}

/**
 * Reads a JSON or YAML pricing file and returns it laid over `base` (the default table).
 * Throws `ConfigurationError` when the file cannot be read or a price is malformed.
 */
export async function loadPricing(file: string, base: PricingTable = DEFAULT_PRICING): Promise<PricingTable> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (cause) {
    throw new ConfigurationError(`cannot read the pricing file ${file}: ${(cause as Error).message}`, {
      cause,
    })
  }
  return mergePricing(parsePricing(text, file), base)
}

/**
 * The pricing table in effect: the file given, else the file named by `OMNIBUS_PRICING`, laid
 * over the defaults; the defaults alone when neither is set.
 */
export async function resolvePricing(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PricingTable> {
  const chosen = file ?? (env[PRICING_ENV] === '' ? undefined : env[PRICING_ENV])
  return chosen === undefined ? DEFAULT_PRICING : loadPricing(chosen)
}
