/**
 * @omnibus/cli — the `omnibus` command (`tail`, `publish`, `health`, `dlq`, `cost`, `serve`, `top`,
 * `demo`), also usable in-process through {@link main}.
 */
export { backendUrl, CliError, connectBackend, DEFAULT_BACKEND_URL, EXIT, makeBackend } from './backend.ts'
export { main } from './cli.ts'
export { type CommandIo, processIo } from './io.ts'
