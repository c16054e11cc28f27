/**
 * The browser the dashboard tests drive: Debian's Chromium (or the binary `OMNIBUS_CHROMIUM`
 * names) through playwright-core, which never downloads a browser of its own.
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import { findTool } from '../setup/catalog.ts'

/**
 * Flags for a headless run in a container or CI: no sandbox (root, no user namespaces), no GPU,
 * and none of the background traffic a desktop browser starts (updates, sync, QUIC probes).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** The Chromium binary to run, or undefined when there is none (see the `chromium` tool entry). */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return findTool('chromium', env)
}

const serveRequire = createRequire(path.join(import.meta.dirname, '../../packages/serve/package.json'))

/** A file of uPlot's dist folder, as @omnibus/serve resolves it. */
export function uplotFile(name: string): string {
  return serveRequire.resolve(`uplot/dist/${name}`)
}
