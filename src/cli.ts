#!/usr/bin/env node
/** Entry point of the `hybrid-backup` executable: composes the CLI and nothing else. */
import { main } from './cli/main.js';

await main(process.argv);
