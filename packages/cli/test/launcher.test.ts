import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

// The command as installed: bin/omnibus.js, started by a plain `node` without the source condition.
const LAUNCHER = fileURLToPath(new URL('../bin/omnibus.js', import.meta.url))
const dirs: string[] = []

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** Runs the launcher on this Node, which reports `version` as its own (the check reads nothing else). */
function launch(file: string, version: string | undefined, args: string[]) {
  const fake =
    version === undefined
      ? []
      : [`--import=data:text/javascript,Object.defineProperty(process.versions,"node",{value:"${version}"})`]
  return spawnSync(process.execPath, [...fake, file, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 60_000,
  })
}

describe('bin/omnibus.js', () => {
  it.each(['20.19.0', '22.12.0', '22.17.1'])(
    'refuses Node %s with one line naming both versions',
    (version) => {
      const r = launch(LAUNCHER, version, ['--help'])
      expect(r.status).toBe(1)
      expect(r.stdout).toBe('')
      expect(r.stderr.trimEnd().split('\n')).toEqual([
        expect.stringMatching(
          new RegExp(`^omnibus needs Node\\.js 22\\.18\\.0 or newer, and this is Node\\.js ${version} `),
        ),
      ])
    },
  )

  it.each([
    ['22.18.0', '22.18.0'],
    ['24.0.0', '24.0.0'],
    ['this Node', undefined],
  ])('runs the command on Node %s from the sources, without a build', (_label, version) => {
    const r = launch(LAUNCHER, version, ['--help'])
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('Usage: omnibus <command>')
  })

  it('runs the build when installed under node_modules, and says so when there is none', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'omnibus-launcher-'))
    dirs.push(root)
    const pkg = path.join(root, 'node_modules', '@omnibus', 'cli')
    mkdirSync(path.join(pkg, 'bin'), { recursive: true })
    mkdirSync(path.join(pkg, 'src'))
    copyFileSync(LAUNCHER, path.join(pkg, 'bin', 'omnibus.js'))
    writeFileSync(path.join(pkg, 'package.json'), '{"type":"module"}')
    // Published sources sit beside the build, but Node does not strip types under node_modules.
    writeFileSync(path.join(pkg, 'src', 'bin.ts'), 'console.log("sources")')

    const missing = launch(path.join(pkg, 'bin', 'omnibus.js'), undefined, [])
    expect(missing.status).toBe(1)
    expect(missing.stderr).toContain(`no build at ${path.join(pkg, 'dist', 'src', 'bin.js')}`)

    mkdirSync(path.join(pkg, 'dist', 'src'), { recursive: true })
    writeFileSync(
      path.join(pkg, 'dist', 'src', 'bin.js'),
      'console.log("build", JSON.stringify(process.argv.slice(2)))',
    )
    const built = launch(path.join(pkg, 'bin', 'omnibus.js'), undefined, ['health', '--json'])
    expect(built.stderr).toBe('')
    expect(built.stdout.trim()).toBe('build ["health","--json"]')
  })

  it('holds the same floor as the repository root declares in engines', () => {
    const floor = /const NODE_FLOOR = \[(\d+), (\d+), (\d+)\]/.exec(readFileSync(LAUNCHER, 'utf8'))
    const root = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      engines: { node: string }
    }
    expect(floor?.slice(1).join('.')).toBe('22.18.0')
    expect(root.engines.node).toBe('>=22.18')
  })
})
