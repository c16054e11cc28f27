#!/usr/bin/env node
// The `omnibus` executable. Plain JavaScript that any Node can parse, so that an older Node gets
// one clear line instead of failing on the real entry (TypeScript, or newer built-ins) before any
// of its code runs. Only after the check does it load the real entry: the build when the package
// is installed, the TypeScript sources in the repository (Node strips types only outside
// node_modules). One self-contained file, because a package always publishes its bin files.
import { existsSync } from 'node:fs'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

// The sources run by type stripping, on by default from Node 22.18; better-sqlite3 crashes on
// Node 22.12. Keep in step with `engines` in package.json.
const NODE_FLOOR = [22, 18, 0]

function tooOld(version) {
  const have = version.split('.').map((p) => parseInt(p, 10) || 0)
  for (let i = 0; i < NODE_FLOOR.length; i++) {
    if ((have[i] || 0) !== NODE_FLOOR[i]) return (have[i] || 0) < NODE_FLOOR[i]
  }
  return false
}

if (tooOld(process.versions.node)) {
  process.stderr.write(
    'omnibus needs Node.js ' +
      NODE_FLOOR.join('.') +
      ' or newer, and this is Node.js ' +
      process.versions.node +
      ' (' +
      process.execPath +
      '): install Node.js 22 LTS or 24 LTS and run it again.\n',
  )
  process.exit(1)
}

const SOURCE_CONDITION = '@omnibus/source'
const here = dirname(fileURLToPath(import.meta.url))
const source = join(here, '..', 'src', 'bin.ts')
const build = join(here, '..', 'dist', 'src', 'bin.js')

async function entry() {
  if (!here.split(sep).includes('node_modules') && existsSync(source)) {
    if (!process.execArgv.includes('--conditions=' + SOURCE_CONDITION)) {
      // Workspace packages resolve to their sources only under this export condition. Processes
      // the command starts with its execArgv (the demo's workers) need it as well.
      const { registerHooks } = await import('node:module')
      registerHooks({
        resolve: (specifier, context, next) =>
          next(specifier, { ...context, conditions: [...context.conditions, SOURCE_CONDITION] }),
      })
      process.execArgv.push('--conditions=' + SOURCE_CONDITION)
    }
    return source
  }
  if (existsSync(build)) return build
  process.stderr.write('omnibus: no build at ' + build + ': run `pnpm build` in the Omnibus repository.\n')
  process.exit(1)
}

// The entry's own failures surface as Node reports any uncaught error.
entry().then((file) => import(pathToFileURL(file).href))
