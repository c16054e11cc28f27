import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ConfigurationError } from '@omnibus/core'
import { afterAll, describe, expect, it } from 'vitest'
import {
  costOf,
  DEFAULT_PRICING,
  loadPricing,
  parsePricing,
  priceOf,
  resolvePricing,
  validatePricing,
} from '../src/index.ts'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-pricing-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function file(name: string, text: string): string {
  const p = path.join(dir, name)
  writeFileSync(p, text)
  return p
}

describe('loading a pricing file', () => {
  it('reads JSON and lays it over the defaults', async () => {
    const table = await loadPricing(
      file(
        'prices.json',
        JSON.stringify({
          'gpt-4o': { inputPerMTok: 2, outputPerMTok: 9 },
          'my-finetune': { inputPerMTok: 0.3, outputPerMTok: 1.2 },
        }),
      ),
    )
    expect(table['gpt-4o']).toEqual({ inputPerMTok: 2, outputPerMTok: 9 })
    expect(table['my-finetune']).toEqual({ inputPerMTok: 0.3, outputPerMTok: 1.2 })
    // Untouched defaults stay.
    expect(table['claude-3-5-haiku']).toEqual({ inputPerMTok: 0.8, outputPerMTok: 4 })
    expect(Object.keys(table).length).toBe(Object.keys(DEFAULT_PRICING).length + 1)
    // 1M input at $2 + 500k output at $9 = $6.5.
    expect(costOf('gpt-4o', 1_000_000, 500_000, table)).toBeCloseTo(6.5, 12)
  })

  it('reads YAML, comments included', async () => {
    const table = await loadPricing(
      file(
        'prices.yaml',
        [
          '# negotiated, 2026-01',
          'claude-3-5-haiku:',
          '  inputPerMTok: 0.5',
          '  outputPerMTok: 2.5',
          'local-llama: { inputPerMTok: 0, outputPerMTok: 0 }',
        ].join('\n'),
      ),
    )
    expect(table['claude-3-5-haiku']).toEqual({ inputPerMTok: 0.5, outputPerMTok: 2.5 })
    expect(table['local-llama']).toEqual({ inputPerMTok: 0, outputPerMTok: 0 })
    expect(table['gpt-4o-mini']).toEqual(DEFAULT_PRICING['gpt-4o-mini'])
    // A zero price is a price: the model is priced (cost 0), not unknown.
    expect(costOf('local-llama', 1000, 1000, table)).toBe(0)
  })

  it('a user entry prices its dated variants; a longer default entry still wins for its own', async () => {
    const table = await loadPricing(
      file(
        'dated.yml',
        'gpt-4o: { inputPerMTok: 1, outputPerMTok: 4 }\nacme-chat: { inputPerMTok: 7, outputPerMTok: 11 }\n',
      ),
    )
    expect(priceOf('gpt-4o-2024-08-06', table)).toEqual({ inputPerMTok: 1, outputPerMTok: 4 })
    expect(priceOf('acme-chat-2026-02-01', table)).toEqual({ inputPerMTok: 7, outputPerMTok: 11 })
    expect(priceOf('acme-chat@v3', table)).toEqual({ inputPerMTok: 7, outputPerMTok: 11 })
    expect(priceOf('gpt-4o-mini-2024-07-18', table)).toEqual({ inputPerMTok: 0.15, outputPerMTok: 0.6 })
    // Only a separator after the name counts: acme-chatter is another model.
    expect(priceOf('acme-chatter', table)).toBeUndefined()
    expect(costOf('acme-chatter', 10, 10, table)).toBeUndefined()
  })

  it('a bad field is a ConfigurationError naming the file, the model and the field', async () => {
    const typo = file('typo.yaml', 'gpt-4o:\n  inputPerMTok: 2\n  outputPerMtok: 9\n')
    await expect(loadPricing(typo)).rejects.toThrow(ConfigurationError)
    await expect(loadPricing(typo)).rejects.toThrow(
      `${typo}: model "gpt-4o" has an unknown field "outputPerMtok" (did you mean "outputPerMTok"?)`,
    )
    const negative = file('neg.json', '{"o3": {"inputPerMTok": -1, "outputPerMTok": 8}}')
    await expect(loadPricing(negative)).rejects.toThrow(
      `${negative}: model "o3" field "inputPerMTok" must be a number >= 0 (US dollars per million tokens), got -1`,
    )
    const text = file('text.yaml', 'o3: { inputPerMTok: cheap, outputPerMTok: 8 }\n')
    await expect(loadPricing(text)).rejects.toThrow('model "o3" field "inputPerMTok" must be a number >= 0')
    await expect(loadPricing(text)).rejects.toThrow('got "cheap"')
    const missing = file('missing.json', '{"o3": {"inputPerMTok": 2}}')
    await expect(loadPricing(missing)).rejects.toThrow(
      'model "o3" field "outputPerMTok" must be a number >= 0',
    )
    await expect(loadPricing(missing)).rejects.toThrow('got nothing')
  })

  it('malformed files and shapes are ConfigurationErrors that say what is expected', async () => {
    await expect(loadPricing(file('broken.json', '{"o3": '))).rejects.toThrow(/broken\.json: not valid JSON/)
    await expect(loadPricing(file('list.yaml', '- o3\n- gpt-4o\n'))).rejects.toThrow(
      'expected a mapping of model name to { inputPerMTok, outputPerMTok }, got a list',
    )
    await expect(loadPricing(path.join(dir, 'absent.yaml'))).rejects.toThrow(
      /cannot read the pricing file .*absent\.yaml/,
    )
    expect(() => validatePricing({ o3: 2 }, 'inline')).toThrow(
      'inline: model "o3" must be { inputPerMTok, outputPerMTok } (US dollars per million tokens), got 2',
    )
    expect(() => parsePricing('o3: { inputPerMTok: .inf, outputPerMTok: 1 }', 'x.yaml')).toThrow(
      'model "o3" field "inputPerMTok" must be a number >= 0',
    )
  })

  it('resolvePricing: the file given, else OMNIBUS_PRICING, else the defaults', async () => {
    const a = file('a.json', '{"model-a": {"inputPerMTok": 1, "outputPerMTok": 1}}')
    const b = file('b.json', '{"model-b": {"inputPerMTok": 1, "outputPerMTok": 1}}')
    expect((await resolvePricing(undefined, {})) === DEFAULT_PRICING).toBe(true)
    expect(await resolvePricing(undefined, { OMNIBUS_PRICING: b })).toHaveProperty('model-b')
    const chosen = await resolvePricing(a, { OMNIBUS_PRICING: b })
    expect(chosen).toHaveProperty('model-a')
    expect(chosen).not.toHaveProperty('model-b')
  })
})
