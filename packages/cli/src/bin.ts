/**
 * The entry of the `omnibus` executable, loaded by bin/omnibus.js once it has checked that this
 * Node can run it (the demo also starts its workers from this file directly).
 */
import { main } from './cli.ts'
import { processIo } from './io.ts'

const code = await main(process.argv.slice(2), processIo())
// Exit explicitly: broker clients may keep sockets open after a command is done.
process.exit(code)
