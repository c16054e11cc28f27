/**
 * Checks the packages as a user receives them, outside the monorepo:
 *
 * 1. every package carries the root LICENSE unchanged;
 * 2. `pnpm pack` of each package (its `prepack` builds with `tsc -b`) ships the built JavaScript,
 *    declarations, source maps with the sources they point at, README.md and LICENSE, with no
 *    `workspace:` range, no build output left from a deleted source, and the Node floor in `engines`;
 * 3. each package's declarations compile under a strict consumer tsconfig (`strict`,
 *    `skipLibCheck: false`, NodeNext) in a fresh npm project holding only that package, the
 *    Omnibus packages it declares, what npm installs for them, and `@types/node` (which any
 *    TypeScript project on Node has);
 * 4. the README quick start (the ```ts block under "## Quick start", read from README.md so the
 *    two cannot drift) typechecks with the same strict tsc, runs with plain `node` (Node strips
 *    the types), prints what its `console.log(…) // expected` comment says, exits 0 by itself
 *    within a bound, and has flushed its telemetry: another process replays the SQLite file and
 *    counts one event per `telemetry.emit…` call. It also runs on `memory://`, where it must exit
 *    too and, asked after its last line, the bus must count every event flushed and none dropped;
 * 5. every package's JavaScript loads from its tarball with plain `node`, the core registry
 *    creates each backend from its URL (nothing connects, so no broker is needed), and the
 *    `omnibus` command npm linked answers `--help`.
 *
 * Usage: `node scripts/check-packages.ts [--keep] [--readme <path>]` (Node ≥ 22.18).
 * `--keep` leaves the temporary folder (always kept on failure); `--readme` checks the quick start
 * of another README file.
 *
 * npm runs with the caller's environment. A native module without a prebuilt binary for the
 * platform (better-sqlite3 ships linux, macOS and Windows ones) is compiled by node-gyp, which
 * needs the headers of the running Node: set `npm_config_nodedir` to a Node installation that has
 * `include/node` where they cannot be downloaded.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, posix, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const NODE_FLOOR = '>=22.18'
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** Every package folder that is published (not `private`), core first. */
const PACKAGES = readdirSync(join(root, 'packages'))
  .filter((p) => {
    const at = join(root, 'packages', p, 'package.json')
    return existsSync(at) && JSON.parse(readFileSync(at, 'utf8')).private !== true
  })
  .sort((a, b) => Number(b === 'core') - Number(a === 'core') || a.localeCompare(b))
/** Backends the registry must create from a URL in the user's project, with the name they report. */
const BACKEND_URLS: Readonly<Record<string, string>> = {
  'memory://': 'memory',
  'sqlite://:memory:': 'sqlite',
  'redis://127.0.0.1:6379': 'redis',
  'amqp://127.0.0.1:5672': 'rabbitmq',
  'kafka://127.0.0.1:9092': 'kafka',
  'sqs://127.0.0.1:9324': 'sqs',
}
const QUICK_START_BOUND_MS = 20_000

interface PackageJson {
  readonly name: string
  readonly version: string
  readonly engines?: Readonly<Record<string, string>>
  readonly exports?: unknown
  readonly bin?: string | Readonly<Record<string, string>>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly devDependencies?: Readonly<Record<string, string>>
}

interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
  readonly timedOut: boolean
}

/** Runs a command in its own process group, killed with it when `timeoutMs` passes. */
function run(
  cmd: string,
  args: readonly string[],
  opts: { readonly cwd: string; readonly timeoutMs: number; readonly env?: NodeJS.ProcessEnv },
): Promise<RunResult> {
  const started = performance.now()
  return new Promise((done) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s
    })
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s
    })
    const timer = setTimeout(() => {
      timedOut = true
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }, opts.timeoutMs)
    const finish = (code: number | null, extra = ''): void => {
      clearTimeout(timer)
      done({ code, stdout, stderr: stderr + extra, ms: Math.round(performance.now() - started), timedOut })
    }
    child.on('error', (error) => finish(null, String(error)))
    child.on('close', (code) => finish(code))
  })
}

/** Last lines of a command's output, for a failure message. */
function tail(r: RunResult, lines = 25): string {
  const text = `${r.stdout}\n${r.stderr}`.trim().split('\n')
  return text.slice(-lines).join('\n')
}

function expectOk(what: string, r: RunResult): RunResult {
  if (r.timedOut) throw new Error(`${what} did not finish within its bound (${r.ms} ms)\n${tail(r)}`)
  if (r.code !== 0) throw new Error(`${what} exited with ${String(r.code)}\n${tail(r)}`)
  return r
}

const results: { name: string; ok: boolean }[] = []

/** Runs one named check and prints PASS or FAIL with the reason; returns whether it passed. */
async function check(
  name: string,
  body: () => Promise<string | undefined> | string | undefined,
): Promise<boolean> {
  const started = performance.now()
  try {
    const note = await body()
    const ms = Math.round(performance.now() - started)
    console.log(`PASS ${name} (${ms} ms)${note ? `: ${note}` : ''}`)
    results.push({ name, ok: true })
    return true
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    console.log(`FAIL ${name}: ${message.replaceAll('\n', '\n     ')}`)
    results.push({ name, ok: false })
    return false
  }
}

function fail(message: string): never {
  throw new Error(message)
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T
}

/** The first ```ts block of the README's "## Quick start" section. */
function quickStartOf(readme: string): string {
  const start = readme.search(/^## Quick start\s*$/m)
  if (start < 0) fail('README has no "## Quick start" section')
  const rest = readme.slice(start)
  const next = rest.slice(1).search(/^## /m)
  const section = next < 0 ? rest : rest.slice(0, next + 1)
  const block = /^```ts\n([\s\S]*?)^```/m.exec(section)
  if (block?.[1] === undefined) fail('the "## Quick start" section has no ```ts block')
  return block[1]
}

function versionAtLeast(version: string, floor: readonly number[]): boolean {
  const parts = version.split('.').map(Number)
  for (let i = 0; i < floor.length; i++) {
    const a = parts[i] ?? 0
    const b = floor[i] ?? 0
    if (a !== b) return a > b
  }
  return true
}

/** Paths inside a tarball, without the leading `package/`. */
function tarList(tgz: string): string[] {
  return readTar(['-tzf', tgz])
    .split('\n')
    .filter((l) => l.startsWith('package/') && !l.endsWith('/'))
    .map((l) => l.slice('package/'.length))
}

function tarRead(tgz: string, path: string): string {
  return readTar(['-xOzf', tgz, `package/${path}`])
}

function readTar(args: readonly string[]): string {
  return execFileSync('tar', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
}

/** Every file an `exports`/`bin` entry names, as a path inside the package. */
function entryFiles(pkg: PackageJson): string[] {
  const files: string[] = []
  const walk = (value: unknown): void => {
    if (typeof value === 'string') {
      if (value.startsWith('./')) files.push(posix.normalize(value))
    } else if (value !== null && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        // The source condition is for the monorepo's own tools; users never resolve it.
        if (key !== '@omnibus/source') walk(inner)
      }
    }
  }
  walk(pkg.exports)
  walk(pkg.bin)
  return files
}

/** What one tarball must hold; returns a short summary or throws with every problem found. */
function checkContents(tgz: string, license: string): string {
  const files = tarList(tgz)
  const has = new Set(files)
  const problems: string[] = []
  const pkgText = tarRead(tgz, 'package.json')
  const pkg = JSON.parse(pkgText) as PackageJson
  for (const required of [
    'package.json',
    'README.md',
    'LICENSE',
    'dist/src/index.js',
    'dist/src/index.d.ts',
  ]) {
    if (!has.has(required)) problems.push(`missing ${required}`)
  }
  if (has.has('LICENSE') && tarRead(tgz, 'LICENSE') !== license)
    problems.push('LICENSE differs from the root LICENSE')
  if (pkgText.includes('workspace:')) problems.push('package.json still has a workspace: range')
  if (pkg.engines?.node !== NODE_FLOOR) {
    problems.push(`engines.node is ${JSON.stringify(pkg.engines?.node)}, expected "${NODE_FLOOR}"`)
  }
  for (const entry of entryFiles(pkg)) {
    if (!has.has(entry)) problems.push(`exports/bin names ${entry}, which is not in the tarball`)
  }
  const sources = files.filter((f) => f.startsWith('src/') && f.endsWith('.ts'))
  for (const source of sources) {
    const out = `dist/${source.slice(0, -'.ts'.length)}`
    if (!has.has(`${out}.js`) || !has.has(`${out}.d.ts`))
      problems.push(`${source} has no built ${out}.js/.d.ts`)
  }
  for (const built of files.filter((f) => f.startsWith('dist/src/') && f.endsWith('.js'))) {
    const source = `${built.slice('dist/'.length, -'.js'.length)}.ts`
    if (!has.has(source)) problems.push(`${built} is left from a source that no longer exists (${source})`)
  }
  const maps = files.filter((f) => f.endsWith('.map'))
  for (const map of maps) {
    const { sources: mapped = [] } = JSON.parse(tarRead(tgz, map)) as { sources?: string[] }
    for (const s of mapped) {
      const target = posix.normalize(posix.join(posix.dirname(map), s))
      if (!has.has(target)) problems.push(`${map} points at ${target}, which is not in the tarball`)
    }
  }
  if (problems.length > 12) problems.splice(12, Infinity, `… and ${problems.length - 12} more`)
  if (problems.length > 0) fail(problems.join('\n'))
  return `${files.length} files, ${sources.length} sources, ${maps.length} maps`
}

/** The Omnibus packages `name` needs installed beside it (dependencies and peers, transitively). */
/** The import specifiers a package's `exports` offers: its name and each subpath (`@omnibus/core/backend`). */
function entrySpecifiers(name: string, pkg: PackageJson): string[] {
  const exports = pkg.exports
  if (exports === null || typeof exports !== 'object') return [name]
  const subpaths = Object.keys(exports).filter((key) => key === '.' || key.startsWith('./'))
  if (subpaths.length === 0) return [name]
  return subpaths.map((key) => (key === '.' ? name : `${name}/${key.slice(2)}`))
}

function omnibusClosure(name: string, manifests: ReadonlyMap<string, PackageJson>): string[] {
  const seen = new Set<string>()
  const visit = (n: string): void => {
    if (seen.has(n)) return
    seen.add(n)
    const pkg = manifests.get(n) ?? fail(`${name} needs ${n}, which was not packed`)
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies })) {
      if (dep.startsWith('@omnibus/')) visit(dep)
    }
  }
  visit(name)
  return [...seen]
}

const STRICT_CONSUMER = {
  compilerOptions: {
    strict: true,
    skipLibCheck: false,
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    target: 'ES2023',
    lib: ['ES2023'],
    types: ['node'],
    verbatimModuleSyntax: true,
    erasableSyntaxOnly: true,
    noEmit: true,
  },
}

/** A fresh ESM npm project in `dir` holding the given tarballs and specs. */
async function npmProject(
  dir: string,
  installs: readonly string[],
  opts: { readonly ignoreScripts: boolean },
): Promise<RunResult> {
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: 'omnibus-consumer', private: true, type: 'module' }, null, 2)}\n`,
  )
  const args = ['install', '--no-audit', '--no-fund', '--loglevel=error', '--no-update-notifier']
  if (opts.ignoreScripts) args.push('--ignore-scripts')
  return expectOk('npm install', await run('npm', [...args, ...installs], { cwd: dir, timeoutMs: 240_000 }))
}

/** Throws unless every installed `@omnibus/*` package came from one of our tarballs. */
function assertFromTarballs(dir: string, names: readonly string[]): void {
  const lock = readJson<{ packages: Record<string, { resolved?: string; version?: string }> }>(
    join(dir, 'package-lock.json'),
  )
  for (const [path, entry] of Object.entries(lock.packages)) {
    const at = path.lastIndexOf('node_modules/')
    const name = at < 0 ? '' : path.slice(at + 'node_modules/'.length)
    if (!name.startsWith('@omnibus/')) continue
    if (!names.includes(name) || !entry.resolved?.startsWith('file:')) {
      fail(`${path} was not installed from a packed tarball (resolved: ${String(entry.resolved)})`)
    }
  }
}

async function pool<T>(
  items: readonly T[],
  size: number,
  work: (item: T) => Promise<unknown>,
): Promise<void> {
  const queue = [...items]
  await Promise.all(
    Array.from({ length: Math.min(size, queue.length) }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item)
    }),
  )
}

async function main(): Promise<number> {
  const started = performance.now()
  const argv = process.argv.slice(2)
  const keep = argv.includes('--keep')
  const readmeAt = argv.indexOf('--readme')
  const readmePath =
    readmeAt >= 0 ? resolve(argv[readmeAt + 1] ?? fail('--readme needs a path')) : join(root, 'README.md')

  if (!versionAtLeast(process.versions.node, [22, 18])) {
    console.log(
      `FAIL node ${process.versions.node}: the packages declare node ${NODE_FLOOR}; run this with that Node`,
    )
    return 1
  }
  const work = mkdtempSync(join(tmpdir(), 'omnibus-packages-'))
  if (!relative(root, work).startsWith('..')) fail(`temporary folder ${work} is inside the repository`)
  console.log(`check-packages: node ${process.versions.node}, working in ${work}`)
  console.log(
    `check-packages: npm_config_nodedir=${process.env.npm_config_nodedir ?? '(unset: node-gyp downloads headers if a native module must be compiled)'}`,
  )
  const rootPkg = readJson<PackageJson>(join(root, 'package.json'))
  const typescriptSpec = rootPkg.devDependencies?.typescript ?? fail('root package.json has no typescript')
  const nodeTypesSpec =
    rootPkg.devDependencies?.['@types/node'] ?? fail('root package.json has no @types/node')
  const rootLicense = join(root, 'LICENSE')
  const license = existsSync(rootLicense) ? readFileSync(rootLicense, 'utf8') : undefined

  await check('LICENSE in every package equals the root LICENSE', () => {
    if (license === undefined) fail('the repository has no LICENSE')
    const differing = PACKAGES.filter((p) => {
      const at = join(root, 'packages', p, 'LICENSE')
      return !existsSync(at) || readFileSync(at, 'utf8') !== license
    })
    if (differing.length > 0) fail(`missing or different in packages/${differing.join(', packages/')}`)
    return undefined
  })

  const tarballs = join(work, 'tarballs')
  mkdirSync(tarballs)
  const tgz = new Map<string, string>()
  const manifests = new Map<string, PackageJson>()
  for (const p of PACKAGES) {
    const ok = await check(`pack @omnibus/${p} (prepack builds)`, async () => {
      const dir = join(root, 'packages', p)
      const before = new Set(readdirSync(tarballs))
      expectOk(
        'pnpm pack',
        await run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir, timeoutMs: 180_000 }),
      )
      const made = readdirSync(tarballs).filter((f) => !before.has(f))
      const file = made[0] ?? fail('pnpm pack wrote no tarball')
      const path = join(tarballs, file)
      tgz.set(`@omnibus/${p}`, path)
      manifests.set(`@omnibus/${p}`, JSON.parse(tarRead(path, 'package.json')) as PackageJson)
      return file
    })
    if (ok)
      await check(`contents @omnibus/${p}`, () =>
        checkContents(tgz.get(`@omnibus/${p}`) ?? '', license ?? ''),
      )
  }
  if (tgz.size !== PACKAGES.length) return finish(work, started, true)

  const tools = join(work, 'tools')
  await check(`install typescript@${typescriptSpec} for the consumer checks`, async () => {
    await npmProject(tools, [`typescript@${typescriptSpec}`], { ignoreScripts: false })
    return readJson<PackageJson>(join(tools, 'node_modules/typescript/package.json')).version
  })
  const tsc = join(tools, 'node_modules/.bin/tsc')

  // Declarations: one project per package, holding only what that package declares.
  await pool(PACKAGES, 3, (p) =>
    check(`declarations of @omnibus/${p} under a strict consumer tsconfig`, async () => {
      const name = `@omnibus/${p}`
      const dir = join(work, `types-${p}`)
      const needed = omnibusClosure(name, manifests)
      const installs = needed.map((n) => tgz.get(n) ?? fail(`${n} was not packed`))
      await npmProject(dir, [...installs, `@types/node@${nodeTypesSpec}`], { ignoreScripts: true })
      assertFromTarballs(dir, needed)
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({ ...STRICT_CONSUMER, files: ['index.ts'] }, null, 2),
      )
      // Every entry the package offers, so a subpath whose declarations are missing or broken fails.
      const specifiers = entrySpecifiers(name, manifests.get(name) ?? fail(`${name} was not packed`))
      writeFileSync(
        join(dir, 'index.ts'),
        specifiers.map((spec, i) => `import * as entry${i} from '${spec}'\n`).join('') +
          `\nexport const names: string[] = [${specifiers.map((_, i) => `...Object.keys(entry${i})`).join(', ')}]\n`,
      )
      expectOk('tsc', await run(tsc, ['-p', '.'], { cwd: dir, timeoutMs: 120_000 }))
      return `${specifiers.join(', ')} with ${needed.join(', ')}`
    }),
  )

  // The user's project: core, every backend, legacy and the CLI, installed as npm installs them.
  const app = join(work, 'app')
  const appPackages = PACKAGES.filter((p) => p !== 'conformance').map((p) => `@omnibus/${p}`)
  const installed = await check(
    `npm install ${appPackages.length} tarballs into a fresh project`,
    async () => {
      const installs = appPackages.map((n) => tgz.get(n) ?? fail(`${n} was not packed`))
      const r = await npmProject(app, [...installs, `@types/node@${nodeTypesSpec}`], { ignoreScripts: false })
      assertFromTarballs(app, appPackages)
      return `${(r.ms / 1000).toFixed(1)} s`
    },
  )
  if (!installed) return finish(work, started, true)

  const quickStart = quickStartOf(readFileSync(readmePath, 'utf8'))
  const expected = /console\.log\(.*\)\s*\/\/\s*(.+)$/m.exec(quickStart)?.[1]?.trim()
  const emits = quickStart.match(/\btelemetry\.emit\w*\(/g)?.length ?? 0
  writeFileSync(join(app, 'quickstart.ts'), quickStart)
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({ ...STRICT_CONSUMER, files: ['quickstart.ts'] }, null, 2),
  )

  await check('README quick start passes a strict tsc', async () => {
    expectOk('tsc', await run(tsc, ['-p', '.'], { cwd: app, timeoutMs: 120_000 }))
    return undefined
  })

  let lastRun = ''
  const runQuickStart = async (file: string): Promise<string> => {
    const r = await run(process.execPath, [file], { cwd: app, timeoutMs: QUICK_START_BOUND_MS })
    lastRun = r.stdout
    if (r.timedOut) fail(`still running after ${QUICK_START_BOUND_MS} ms: it must exit by itself\n${tail(r)}`)
    if (r.code !== 0) fail(`exited with ${String(r.code)}\n${tail(r)}`)
    if (expected === undefined)
      fail('the quick start has no `console.log(…) // expected output` line to check')
    if (!r.stdout.includes(expected))
      fail(`printed ${JSON.stringify(r.stdout.trim())}, expected "${expected}"`)
    return `exit 0 after ${r.ms} ms, printed "${expected}"`
  }

  await check(
    `README quick start runs with plain node and exits within ${QUICK_START_BOUND_MS / 1000} s`,
    () => runQuickStart('quickstart.ts'),
  )

  await check(`the quick start flushed its ${emits} telemetry events to the SQLite file`, async () => {
    if (emits === 0) fail('the quick start emits no telemetry (no `telemetry.emit…(` call)')
    if (!quickStart.includes('sqlite://./omnibus.db'))
      fail('the quick start does not use sqlite://./omnibus.db')
    // Another process replays the file from the start: what close() did not flush is not there.
    writeFileSync(
      join(app, 'replay.mjs'),
      `import { createBackend } from '@omnibus/core'
const backend = await createBackend('sqlite://./omnibus.db')
await backend.connect()
const topics = []
await backend.subscribe('**', (event) => { if (!event.topic.startsWith('agent.')) topics.push(event.topic) }, { group: 'package-check', from: 'earliest' })
const deadline = Date.now() + 10_000
while (topics.length < ${emits} && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
await backend.disconnect()
console.log(JSON.stringify(topics))
`,
    )
    const r = expectOk(
      'the replay',
      await run(process.execPath, ['replay.mjs'], { cwd: app, timeoutMs: 30_000 }),
    )
    const topics = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '[]') as string[]
    if (topics.length !== emits)
      fail(`found ${topics.length} telemetry events (${topics.join(', ')}), expected ${emits}`)
    return topics.join(', ')
  })

  await check(
    `README quick start on memory:// exits by itself, its ${emits} telemetry events flushed`,
    async () => {
      if (!/\bconst telemetry\b/.test(quickStart)) fail('the quick start has no `const telemetry` bus to ask')
      // Nothing outlives an in-process backend, so the bus's own counters say what close() flushed.
      const probe = `\nconsole.log('omnibus-check-stats ' + JSON.stringify(telemetry.stats()))\n`
      writeFileSync(
        join(app, 'quickstart-memory.ts'),
        quickStart.replaceAll('sqlite://./omnibus.db', 'memory://') + probe,
      )
      const summary = await runQuickStart('quickstart-memory.ts')
      const line = lastRun.split('\n').find((l) => l.startsWith('omnibus-check-stats '))
      if (line === undefined) fail('the quick start ended before its last line')
      const stats = JSON.parse(line.slice('omnibus-check-stats '.length)) as {
        flushed: number
        droppedTotal: number
      }
      if (stats.flushed !== emits || stats.droppedTotal !== 0) {
        fail(
          `after close(): flushed ${stats.flushed}, dropped ${stats.droppedTotal}; expected ${emits} flushed`,
        )
      }
      return `${summary}, flushed ${stats.flushed}`
    },
  )

  await check('every package loads with plain node and the registry creates every backend', async () => {
    writeFileSync(
      join(app, 'imports.mjs'),
      `import { createBackend } from '@omnibus/core'
const packages = ${JSON.stringify(appPackages.flatMap((n) => entrySpecifiers(n, manifests.get(n) ?? fail(`${n} was not packed`))))}
const urls = ${JSON.stringify(BACKEND_URLS)}
const out = []
for (const name of packages) {
  const mod = await import(name)
  if (Object.keys(mod).length === 0) throw new Error(name + ' exports nothing')
  out.push(name)
}
for (const [url, expected] of Object.entries(urls)) {
  const backend = await createBackend(url)
  if (backend.name !== expected) throw new Error(url + ' made a ' + backend.name + ' backend')
  if (backend.isConnected) throw new Error(url + ' connected without connect()')
  out.push(backend.name)
}
console.log(out.join(' '))
`,
    )
    const r = expectOk(
      'imports.mjs',
      await run(process.execPath, ['imports.mjs'], { cwd: app, timeoutMs: 30_000 }),
    )
    return r.stdout.trim()
  })

  await check('the installed omnibus command runs (--help)', async () => {
    const bin = join(app, 'node_modules/.bin/omnibus')
    if (!existsSync(bin)) fail('npm linked no node_modules/.bin/omnibus')
    const r = expectOk('omnibus --help', await run(bin, ['--help'], { cwd: app, timeoutMs: 20_000 }))
    return r.stdout.trim().split('\n')[0]
  })

  return finish(work, started, keep || results.some((r) => !r.ok))
}

function finish(work: string, started: number, keepFolder: boolean): number {
  const failed = results.filter((r) => !r.ok)
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  if (keepFolder) console.log(`check-packages: left ${work} for inspection`)
  else rmSync(work, { recursive: true, force: true })
  if (failed.length === 0) {
    console.log(`check-packages: PASS, all ${results.length} checks in ${seconds} s`)
    return 0
  }
  console.log(`check-packages: FAIL, ${failed.length} of ${results.length} checks in ${seconds} s:`)
  for (const f of failed) console.log(`  - ${f.name}`)
  return 1
}

process.exitCode = await main().catch((error: unknown) => {
  console.log(
    `FAIL check-packages stopped: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  )
  return 1
})
