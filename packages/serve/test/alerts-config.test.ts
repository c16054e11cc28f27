import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ConfigurationError, silentLogger } from '@omnibus/core'
import { afterAll, describe, expect, it } from 'vitest'
import { AlertEngine, loadAlertConfig, parseAlertConfig, parseDuration } from '../src/index.ts'
import { FakeClock, snapshot, tool } from './alerts-fixtures.ts'

const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-alerts-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function file(name: string, text: string): string {
  const p = path.join(dir, name)
  writeFileSync(p, text)
  return p
}

async function configError(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ConfigurationError)
  return (err as Error).message
}

const YAML = `# rules for the demo
channels:
  - type: webhook
    name: ops
    url: \${OMNIBUS_TEST_HOOK}/alerts
    format: slack
    timeout: 2s
  - type: log
  - type: bus
rules:
  - name: tool-errors
    kind: error-rate
    topics: tool.end
    threshold: 0.1
    window: 5m
    for: 1m
    severity: critical
    channels: [ops, log]
  - name: slow-tools
    kind: latency
    source: tool
    percentile: p95
    threshold: 2000
  - name: daily-budget
    kind: cost
    budget: 25
    period: day
    by: model
  - name: any-dead-letter
    kind: dead-letters
    cooldown: 15m
  - name: planner-up
    kind: agent-silent
    after: 90s
    agents: [planner]
  - name: lag
    kind: consumer-lag
    threshold: 1000
    group: billing
`

describe('alert rules from a file', () => {
  it('reads YAML with every rule kind and channel, replacing environment variables in webhook URLs', async () => {
    process.env.OMNIBUS_TEST_HOOK = 'https://hooks.example.com/services/T1'
    try {
      const config = await loadAlertConfig(file('rules.yaml', YAML))
      expect(config.rules.map((r) => `${r.name}:${r.kind}`)).toEqual([
        'tool-errors:error-rate',
        'slow-tools:latency',
        'daily-budget:cost',
        'any-dead-letter:dead-letters',
        'planner-up:agent-silent',
        'lag:consumer-lag',
      ])
      expect(config.rules[0]).toMatchObject({ for: '1m', window: '5m', channels: ['ops', 'log'] })
      expect(config.channels).toEqual([
        {
          type: 'webhook',
          name: 'ops',
          url: 'https://hooks.example.com/services/T1/alerts',
          format: 'slack',
          timeout: 2000,
          retries: 2,
        },
        { type: 'log' },
        { type: 'bus' },
      ])
      // What was read runs as it is.
      const clock = new FakeClock()
      const engine = new AlertEngine({
        ...config,
        now: clock.now,
        logger: silentLogger,
        channels: [{ type: 'log', name: 'ops' }, { type: 'log' }],
      })
      expect(engine.evaluate(snapshot({ tools: [tool('search', 2500)] }))[0]).toMatchObject({
        name: 'slow-tools',
        state: 'firing',
      })
    } finally {
      delete process.env.OMNIBUS_TEST_HOOK
    }
  })

  it('reads JSON, a plain list of rules included', async () => {
    const config = await loadAlertConfig(
      file(
        'rules.json',
        JSON.stringify({ rules: [{ name: 'dlq', kind: 'dead-letters', threshold: 3, window: 60000 }] }),
      ),
    )
    expect(config).toEqual({ rules: [{ name: 'dlq', kind: 'dead-letters', threshold: 3, window: 60000 }] })
    const list = await loadAlertConfig(
      file('list.json', '[{"name":"quiet","kind":"agent-silent","after":"2m"}]'),
    )
    expect(list.rules).toHaveLength(1)
  })

  it('a bad field names the file, the rule and the field, in YAML and in JSON', async () => {
    const yaml = file(
      'bad.yaml',
      'rules:\n  - name: ok\n    kind: dead-letters\n  - name: slow\n    kind: latency\n    source: tool\n    percentile: p95\n    threshold: fast\n',
    )
    expect(await configError(loadAlertConfig(yaml))).toBe(
      `alert rule "slow" (rules[1] in ${yaml}): "threshold" must be a number ≥ 0, got "fast"`,
    )
    const json = file(
      'bad.json',
      JSON.stringify([{ name: 'spend', kind: 'cost', budget: 5, period: 'week' }]),
    )
    expect(await configError(loadAlertConfig(json))).toBe(
      `alert rule "spend" (rules[0] in ${json}): "period" must be one of "hour", "day", got "week"`,
    )
    const typo = file('typo.yaml', 'rules:\n  - name: q\n    kind: agent-silent\n    afer: 30s\n')
    expect(await configError(loadAlertConfig(typo))).toMatch(
      /^alert rule "q" \(rules\[0\] in .*typo\.yaml\): unknown field "afer" \(did you mean "after"\?\); the fields are name, kind, /,
    )
    const kind = file('kind.yaml', 'rules:\n  - name: k\n    kind: error_rate\n    threshold: 0.1\n')
    expect(await configError(loadAlertConfig(kind))).toBe(
      `alert rule "k" (rules[0] in ${kind}): "kind" must be one of "error-rate", "latency", "cost", "dead-letters", "agent-silent", "consumer-lag", got "error_rate"`,
    )
  })

  it('a bad channel names the channel and the field; a missing environment variable is named', async () => {
    const url = file(
      'chan.yaml',
      'channels:\n  - type: webhook\n    name: ops\n    url: ftp://x\nrules: []\n',
    )
    expect(await configError(loadAlertConfig(url))).toBe(
      `alert channel "ops" (channels[0] in ${url}): "url" must be an http:// or https:// URL`,
    )
    const env = file(
      'env.yaml',
      `channels:\n  - type: webhook\n    url: \${OMNIBUS_NO_SUCH_VAR}\nrules: []\n`,
    )
    expect(await configError(loadAlertConfig(env))).toBe(
      `alert channel (channels[0] in ${env}): "url" uses \${OMNIBUS_NO_SUCH_VAR}, but that environment variable is not set`,
    )
    const type = file('type.yaml', 'channels:\n  - type: email\nrules: []\n')
    expect(await configError(loadAlertConfig(type))).toMatch(
      /"type" must be one of "webhook", "log", "bus", got "email"/,
    )
  })

  it('a file that is not YAML or JSON, or is missing, says so', async () => {
    const broken = file('broken.yaml', 'rules:\n  - name: x\n   kind: [\n')
    expect(await configError(loadAlertConfig(broken))).toMatch(
      new RegExp(`^the alert rules file ${broken.replaceAll('.', '\\.')} is not valid YAML: .*line 3`),
    )
    const brokenJson = file('broken.json', '{"rules": [')
    expect(await configError(loadAlertConfig(brokenJson))).toMatch(/is not valid JSON/)
    expect(await configError(loadAlertConfig(path.join(dir, 'nope.yaml')))).toMatch(
      /^cannot read the alert rules file .*nope\.yaml: ENOENT/,
    )
    expect(() => parseAlertConfig({ rules: [], chanels: [] }, 'x.yaml')).toThrow(
      'alert config in x.yaml: unknown field "chanels" (did you mean "channels"?); the fields are rules, channels',
    )
  })
})

describe('parseDuration', () => {
  it('reads numbers as milliseconds and unit strings', () => {
    expect(parseDuration(1500)).toBe(1500)
    expect(parseDuration('250ms')).toBe(250)
    expect(parseDuration('30s')).toBe(30_000)
    expect(parseDuration('5m')).toBe(300_000)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration('1.5h')).toBe(5_400_000)
    expect(parseDuration('2d')).toBe(172_800_000)
    for (const bad of ['', '5', '5 m', 'm5', '-1s', 'soon', -1, Number.NaN, null, {}]) {
      expect(parseDuration(bad)).toBeUndefined()
    }
  })
})
