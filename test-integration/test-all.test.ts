/**
 * `pnpm test:all` (scripts/test-all.sh) against stand-in service scripts: it must start every
 * service (the brokers and the collector), require all of them, keep the command's exit code and
 * stop only what it started. The real services are never touched here.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const script = fileURLToPath(new URL('../scripts/test-all.sh', import.meta.url))
const dirs: string[] = []

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** A fake checkout whose scripts/services record what they are asked and keep "up" marker files. */
function standIns(
  alreadyUp: readonly string[],
  startFails = false,
): { services: string; state: string; calls: () => string[] } {
  const root = mkdtempSync(path.join(tmpdir(), 'omnibus-test-all-'))
  dirs.push(root)
  const services = path.join(root, 'scripts', 'services')
  const state = path.join(root, '.services')
  mkdirSync(services, { recursive: true })
  mkdirSync(state)
  for (const name of alreadyUp) writeFileSync(path.join(state, `${name}.up`), '')
  for (const name of ['redis', 'rabbitmq', 'kafka', 'sqs', 'otelcol']) {
    writeFileSync(path.join(services, `${name}.sh`), `[ "$1" = status ] && [ -f "${state}/${name}.up" ]\n`)
  }
  writeFileSync(
    path.join(services, 'all.sh'),
    [
      'action=$1; shift',
      `echo "$action $*" >> "${state}/calls"`,
      'for n in "$@"; do',
      `  if [ "$action" = start ]; then touch "${state}/$n.up"; else rm -f "${state}/$n.up"; fi`,
      'done',
      `[ "$action" = start ] && echo "export OMNIBUS_IT_REDIS_URL=redis://stand-in" > "${state}/env.sh"`,
      startFails ? '[ "$action" = start ] && exit 1' : '',
      'exit 0',
    ].join('\n'),
  )
  const calls = () => readFileSync(path.join(state, 'calls'), 'utf8').trim().split('\n')
  return { services, state, calls }
}

function run(services: string, command: string) {
  const env: NodeJS.ProcessEnv = { ...process.env, OMNIBUS_SERVICES_DIR: services }
  delete env.OMNIBUS_IT_REQUIRE
  delete env.OMNIBUS_IT_REDIS_URL
  return spawnSync('bash', [script, 'bash', '-c', command], { env, encoding: 'utf8', timeout: 30_000 })
}

describe('scripts/test-all.sh', () => {
  it('starts every broker, requires all of them, keeps the exit code and stops only what it started', () => {
    const { services, state, calls } = standIns(['redis', 'kafka'])
    const r = run(services, 'echo "$OMNIBUS_IT_REQUIRE $OMNIBUS_IT_REDIS_URL"; exit 3')
    expect(r.status, r.stderr).toBe(3)
    expect(r.stdout).toContain('redis,rabbitmq,kafka,sqs,otelcol redis://stand-in')
    expect(calls()).toEqual(['start redis rabbitmq kafka sqs otelcol', 'stop rabbitmq sqs otelcol'])
    expect(['redis', 'rabbitmq', 'kafka', 'sqs'].filter((n) => existsSync(`${state}/${n}.up`))).toEqual([
      'redis',
      'kafka',
    ])
  })

  it('exits 0 when the command passes, and stops nothing when every broker was already running', () => {
    const { services, calls } = standIns(['redis', 'rabbitmq', 'kafka', 'sqs', 'otelcol'])
    const r = run(services, 'true')
    expect(r.status, r.stderr).toBe(0)
    expect(calls()).toEqual(['start redis rabbitmq kafka sqs otelcol'])
  })

  it('stops what it started when starting the brokers fails', () => {
    const { services, calls } = standIns([], true)
    const r = run(services, 'echo ran')
    expect(r.status).toBe(1)
    expect(r.stdout).not.toContain('ran')
    expect(calls()).toEqual([
      'start redis rabbitmq kafka sqs otelcol',
      'stop redis rabbitmq kafka sqs otelcol',
    ])
  })
})
