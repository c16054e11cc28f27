/**
 * The root README's backend table against what each backend declares: the table is what a user
 * picks a backend by, so every cell it states about capabilities must be what `capabilities` says.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { BackendCapabilities, EventBackend } from '@omnibus/core'
import { MemoryDedupeStore } from '@omnibus/core/backend'
import { createKafkaBackend } from '@omnibus/kafka'
import { createMemoryBackend } from '@omnibus/memory'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { createRedisBackend } from '@omnibus/redis'
import { createSqliteBackend } from '@omnibus/sqlite'
import { createSqsBackend } from '@omnibus/sqs'
import { afterAll, describe, expect, it } from 'vitest'

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-readme-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Row {
  readonly guarantees: string
  readonly persistent: string
  readonly crossProcess: string
  readonly groups: string
  readonly orderPerKey: string
  readonly replay: string
  readonly maxPayload: string
  readonly delay: string
}

/** The rows of the "## Backends" table, by backend name. */
function backendTable(): Map<string, Row> {
  const section = readme.split('\n## Backends')[1]?.split('\n## ')[0] ?? ''
  const rows = new Map<string, Row>()
  for (const line of section.split('\n')) {
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim())
    const [name, , guarantees, persistent, crossProcess, groups, orderPerKey, replay, maxPayload, , delay] =
      cells
    if (name === undefined || maxPayload === undefined || name === 'backend' || name.startsWith('-')) continue
    rows.set(name, {
      guarantees: guarantees ?? '',
      persistent: persistent ?? '',
      crossProcess: crossProcess ?? '',
      groups: groups ?? '',
      orderPerKey: orderPerKey ?? '',
      replay: replay ?? '',
      maxPayload,
      delay: delay ?? '',
    })
  }
  return rows
}

/** `at-most, at-least; exactly with a \`dedupeStore\`` → the default guarantees and the conditional ones. */
function guaranteesOf(cell: string): { always: string[]; conditional: string[] } {
  const names = (part: string) =>
    ['at-most', 'at-least', 'exactly'].filter((g) => part.includes(g)).map((g) => `${g}-once`)
  const [always = '', conditional = ''] = cell.split(';')
  return { always: names(always), conditional: names(conditional) }
}

function bytes(cell: string): number {
  const m = /^([\d,]+)\s*(B|KiB|MiB)$/.exec(cell)
  if (m === null) throw new Error(`unreadable max payload "${cell}"`)
  const n = Number((m[1] ?? '').replaceAll(',', ''))
  return n * (m[2] === 'MiB' ? 1024 * 1024 : m[2] === 'KiB' ? 1024 : 1)
}

/**
 * `no limit (…)` → no limit of the backend's own; `2^31−1 ms (…)`, `14 d (FIFO 12 h)` → the longest
 * delay, and the one in brackets with the option it names.
 */
function delays(cell: string): { plain: number; withOption: number | undefined } {
  const duration = (text: string): number => {
    if (text.startsWith('no limit')) return Number.MAX_SAFE_INTEGER
    const power = /^2\^(\d+)−1 ms/.exec(text)
    if (power !== null) return 2 ** Number(power[1]) - 1
    const m = /^(\d+) (ms|s|h|d)\b/.exec(text)
    if (m === null) throw new Error(`unreadable delay "${cell}"`)
    const unit = { ms: 1, s: 1000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'h' | 'd']
    return Number(m[1]) * unit
  }
  const option = /\(FIFO ([^)]*)\)/.exec(cell)
  return { plain: duration(cell), withOption: option === null ? undefined : duration(option[1] ?? '') }
}

const yes = (cell: string) => cell.startsWith('yes')

/** Backends built with their defaults (nothing connects), and with the option a cell names. */
const backends: Record<string, { plain: () => EventBackend; withOption?: () => EventBackend }> = {
  memory: { plain: () => createMemoryBackend() },
  sqlite: { plain: () => createSqliteBackend({ path: path.join(dir, 'readme.db') }) },
  redis: { plain: () => createRedisBackend({ url: 'redis://127.0.0.1:6379' }) },
  rabbitmq: {
    plain: () => createRabbitMQBackend({ url: 'amqp://127.0.0.1:5672' }),
    withOption: () =>
      createRabbitMQBackend({ url: 'amqp://127.0.0.1:5672', dedupeStore: new MemoryDedupeStore() }),
  },
  kafka: { plain: () => createKafkaBackend({ brokers: ['127.0.0.1:9092'] }) },
  sqs: {
    plain: () => createSqsBackend({ endpoint: 'http://127.0.0.1:9324', region: 'us-east-1' }),
    withOption: () =>
      createSqsBackend({
        endpoint: 'http://127.0.0.1:9324',
        region: 'us-east-1',
        fifo: true,
        dedupeStore: new MemoryDedupeStore(),
      }),
  },
}

describe('the README backend table', () => {
  const table = backendTable()

  it('has a row for each of the six backends', () => {
    expect([...table.keys()].sort()).toEqual(Object.keys(backends).sort())
  })

  for (const [name, make] of Object.entries(backends)) {
    it(`states what ${name} declares`, () => {
      const row = table.get(name)
      if (row === undefined) throw new Error(`no README row for ${name}`)
      const caps: BackendCapabilities = make.plain().capabilities
      const g = guaranteesOf(row.guarantees)
      expect({ name, guarantees: [...caps.guarantees].sort() }).toEqual({ name, guarantees: g.always.sort() })
      if (g.conditional.length > 0) {
        const extended = make.withOption?.().capabilities.guarantees ?? []
        expect({ name, conditional: g.conditional.filter((x) => !extended.includes(x as never)) }).toEqual({
          name,
          conditional: [],
        })
      }
      expect({
        name,
        persistent: caps.persistent,
        crossProcess: caps.crossProcess,
        groups: caps.groups,
        replay: caps.replay,
        maxPayloadBytes: caps.maxPayloadBytes,
        orderedPerKey: caps.orderedPerKey,
      }).toEqual({
        name,
        persistent: yes(row.persistent),
        crossProcess: yes(row.crossProcess),
        groups: yes(row.groups),
        replay: yes(row.replay),
        maxPayloadBytes: bytes(row.maxPayload),
        orderedPerKey: yes(row.orderPerKey),
      })
      const delay = delays(row.delay)
      expect({ name, maxDelayMs: caps.delay === false ? 0 : caps.delay.maxDelayMs }).toEqual({
        name,
        maxDelayMs: delay.plain,
      })
      if (delay.withOption !== undefined) {
        const withOption = make.withOption?.().capabilities.delay
        expect({ name, fifoMaxDelayMs: withOption === false ? 0 : withOption?.maxDelayMs }).toEqual({
          name,
          fifoMaxDelayMs: delay.withOption,
        })
      }
      if (row.orderPerKey.startsWith('with')) {
        expect({ name, orderedWithOption: make.withOption?.().capabilities.orderedPerKey }).toEqual({
          name,
          orderedWithOption: true,
        })
      }
    })
  }
})
