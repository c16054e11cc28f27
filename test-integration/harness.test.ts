import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  enableHint,
  findTool,
  requiredServices,
  requiredTools,
  SERVICES,
  toolMissing,
} from './setup/catalog.ts'
import { serviceEndpoint } from './setup/services.ts'
import { summaryLines, toolSummaryLines } from './setup/skip-summary.ts'

describe('integration harness', () => {
  it('parses OMNIBUS_IT_REQUIRE and rejects unknown names with the list of services', () => {
    expect(requiredServices(' Redis, kafka ,')).toEqual(['redis', 'kafka'])
    expect(requiredServices(undefined)).toEqual([])
    expect(() => requiredServices('redis,postgres')).toThrow(/"postgres".*redis, rabbitmq, kafka, sqs/)
  })

  it('takes programs such as chromium in OMNIBUS_IT_REQUIRE apart from the brokers', () => {
    expect(requiredServices('redis,chromium')).toEqual(['redis'])
    expect(requiredTools('redis, Chromium')).toEqual(['chromium'])
    expect(requiredTools('kafka')).toEqual([])
    expect(() => requiredTools('firefox')).toThrow(/"firefox".*sqs, chromium/)
  })

  it('finds a program at the path its variable names, and nothing where there is no executable', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-tool-'))
    try {
      const exe = path.join(dir, 'chromium')
      expect(findTool('chromium', { OMNIBUS_CHROMIUM: exe })).toBeUndefined()
      writeFileSync(exe, '#!/bin/sh\n')
      expect(findTool('chromium', { OMNIBUS_CHROMIUM: exe })).toBeUndefined()
      chmodSync(exe, 0o755)
      expect(findTool('chromium', { OMNIBUS_CHROMIUM: exe })).toBe(exe)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    expect(toolSummaryLines(new Map([['chromium', 1]]))).toEqual([
      expect.stringMatching(
        /^integration: skipped 1 test block for lack of chromium: .*apt-get install chromium/,
      ),
    ])
  })

  it('finds the OpenTelemetry Collector only where OMNIBUS_IT_OTELCOL points, and says how to build it', () => {
    expect(requiredTools('redis,otelcol')).toEqual(['otelcol'])
    expect(findTool('otelcol', {})).toBeUndefined()
    expect(toolMissing('otelcol', {})).toBe('not found (OMNIBUS_IT_OTELCOL is not set)')
    expect(toolMissing('otelcol', { OMNIBUS_IT_OTELCOL: '/nowhere/otelcol' })).toBe(
      'not found at /nowhere/otelcol',
    )
    expect(toolMissing('chromium', {})).toBe('not found at /usr/bin/chromium')
    expect(toolSummaryLines(new Map([['otelcol', 2]]))).toEqual([
      expect.stringMatching(
        /^integration: skipped 2 test blocks for lack of otelcol: .*all\.sh start otelcol.*OMNIBUS_IT_OTELCOL/,
      ),
    ])
  })

  it('says how to enable each service', () => {
    for (const s of SERVICES) expect(enableHint(s.name)).toContain(s.env)
  })

  it('resolved every service that OMNIBUS_IT_REQUIRE names', () => {
    for (const name of requiredServices(process.env.OMNIBUS_IT_REQUIRE)) {
      expect(serviceEndpoint(name), `${name} endpoint`).toMatch(/\S/)
    }
  })
})

describe('integration run on a machine without brokers', () => {
  it('collects every file without running broker blocks, skips them, passes, and says which broker each lacks', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omnibus-no-brokers-'))
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, OMNIBUS_IT_NO_DOCKER: '1' }
      for (const name of Object.keys(env))
        if (name.startsWith('OMNIBUS_IT_') && name !== 'OMNIBUS_IT_NO_DOCKER') delete env[name]
      const report = path.join(dir, 'report.json')
      const root = fileURLToPath(new URL('..', import.meta.url))
      const vitest = spawnSync(
        process.execPath,
        [
          path.join(root, 'node_modules/vitest/vitest.mjs'),
          'run',
          '--project=integration',
          '--reporter=json',
          `--outputFile=${report}`,
          '--reporter=./test-integration/setup/skip-summary.ts',
          // Every other file: this one would start the run again.
          '--exclude=test-integration/harness.test.ts',
        ],
        { cwd: root, env, encoding: 'utf8', timeout: 100_000 },
      )
      expect(vitest.status, `${vitest.stdout}\n${vitest.stderr}`).toBe(0)
      const result = JSON.parse(readFileSync(report, 'utf8')) as {
        numFailedTestSuites: number
        numPassedTests: number
        numFailedTests: number
        numPendingTests: number
        testResults: Array<{
          name: string
          assertionResults: Array<{
            fullName: string
            status: string
            meta?: { omnibusUnavailable?: string; omnibusMissingTool?: string }
          }>
        }>
      }
      expect(result.numFailedTestSuites + result.numFailedTests).toBe(0)
      const counts = new Map<string, number>()
      for (const file of result.testResults) {
        const brokerDir = /test-integration\/(kafka|rabbitmq|redis|sqs)\//.test(file.name)
        for (const t of file.assertionResults) {
          const missing = t.meta?.omnibusUnavailable
          if (missing !== undefined) {
            expect(t.status, t.fullName).toBe('skipped')
            counts.set(missing, (counts.get(missing) ?? 0) + 1)
          } else {
            expect(brokerDir, `${t.fullName} needs no broker`).toBe(false)
          }
        }
      }
      expect([...counts.keys()].sort()).toEqual(['kafka', 'rabbitmq', 'redis', 'sqs'])
      const otel = result.testResults
        .filter((f) => f.name.includes('test-integration/otel/'))
        .flatMap((f) => f.assertionResults)
      expect(otel.length).toBeGreaterThan(0)
      for (const t of otel) {
        expect(t.status, t.fullName).toBe('skipped')
        expect(t.meta?.omnibusMissingTool, t.fullName).toBe('otelcol')
      }
      expect(vitest.stdout).toMatch(/integration: skipped \d+ test blocks? for lack of otelcol: /)
      const total = [...counts.values()].reduce((a, b) => a + b, 0)
      const per = SERVICES.map((s) => `${s.name} (${counts.get(s.name)})`).join(', ')
      expect(vitest.stdout).toContain(
        `integration: skipped ${total} test blocks for lack of a broker: ${per}.`,
      )
      for (const s of SERVICES) expect(vitest.stdout).toContain(`${s.env}=${s.example}`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('closes with nothing when no block was skipped for a missing broker', () => {
    expect(summaryLines(new Map())).toEqual([])
    expect(summaryLines(new Map([['kafka', 1]]))[0]).toBe(
      'integration: skipped 1 test block for lack of a broker: kafka (1).',
    )
  })
})
