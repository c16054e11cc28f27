/**
 * The dashboard's static files: `src/dashboard/` of this package (shipped as source, no build
 * step) and uPlot's distribution files. Only names made of safe characters under the dashboard
 * folder are served, so no request path reaches outside it.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, extname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
}

/** Path segments of a servable name: letters, digits, `_`, `-`, `.`, and never `.` or `..` alone. */
const SAFE_NAME =
  /^(?!\.{1,2}(?:\/|$))[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:\/(?!\.{1,2}(?:\/|$))[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$/

/** A file to send. */
export interface StaticFile {
  readonly body: Buffer
  readonly contentType: string
}

/** The dashboard folder: beside this module in the sources, or `src/dashboard` from the build output. */
export function defaultDashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  const candidates = [join(here, 'dashboard'), join(here, '..', '..', 'src', 'dashboard')]
  return candidates.find((dir) => existsSync(dir)) ?? (candidates[0] as string)
}

function uplotFiles(): Readonly<Record<string, string>> {
  const require = createRequire(import.meta.url)
  const dist = join(dirname(require.resolve('uplot/package.json')), 'dist')
  return {
    'uplot.iife.min.js': join(dist, 'uPlot.iife.min.js'),
    'uPlot.min.css': join(dist, 'uPlot.min.css'),
  }
}

/** Reads dashboard files and uPlot's files by request name. */
export class StaticFiles {
  readonly #dir: string
  #uplot: Readonly<Record<string, string>> | undefined

  constructor(dir: string = defaultDashboardDir()) {
    this.#dir = resolve(dir)
  }

  /** The folder files are served from. */
  get dir(): string {
    return this.#dir
  }

  /**
   * The file for `name` (the path after `/assets/`, or `index.html` for `/`), or undefined when
   * there is no such file or the name is not a safe relative path.
   */
  async get(name: string): Promise<StaticFile | undefined> {
    let path: string | undefined
    this.#uplot ??= uplotFiles()
    if (Object.hasOwn(this.#uplot, name)) path = this.#uplot[name]
    else if (SAFE_NAME.test(name)) {
      const full = resolve(this.#dir, name)
      if (full.startsWith(this.#dir + sep)) path = full
    }
    if (path === undefined) return undefined
    try {
      const body = await readFile(path)
      return { body, contentType: CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream' }
    } catch {
      return undefined
    }
  }
}
