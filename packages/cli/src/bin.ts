#!/usr/bin/env node
/**
 * The `omnibus` executable.
 */
import { main } from './cli.ts'
import { processIo } from './io.ts'

const code = await main(process.argv.slice(2), processIo())
// Exit explicitly: broker clients may keep sockets open after a command is done.
process.exit(code)
