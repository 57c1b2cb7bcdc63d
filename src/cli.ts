#!/usr/bin/env node
/**
 * Entry point of the `hybrid-backup` executable.
 *
 * The build bundles the CLI into one CommonJS file with a V8 code cache beside it
 * (scripts/bundle.mjs): this runs that bundle when it is there and at least as new as the compiled
 * modules, and otherwise the compiled modules themselves (a build by tsc alone). The two hold the
 * same code; the bundle only starts faster.
 */
import { readFileSync, statSync } from 'node:fs';
import { Module } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

type Main = (argv: string[]) => Promise<void>;

const BUNDLE = fileURLToPath(new URL('./cli-bundle.cjs', import.meta.url));
const CACHE = fileURLToPath(new URL('./cli-bundle.cache', import.meta.url));
const MODULES = fileURLToPath(new URL('./cli/main.js', import.meta.url));

function mtime(file: string): number | null {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return null;
  }
}

/** The bundle's main(), or null when there is no bundle or it is older than the modules. */
function bundled(): Main | null {
  const bundleTime = mtime(BUNDLE);
  const modulesTime = mtime(MODULES);
  if (bundleTime === null || (modulesTime !== null && bundleTime < modulesTime)) return null;
  // With source maps on (node --enable-source-maps, for a readable stack trace), Node's own loader
  // runs it: it maps the bundle's stack frames back to src/, which a vm.Script's are not.
  if (process.sourceMapsEnabled ?? process.execArgv.includes('--enable-source-maps')) return (Module.createRequire(BUNDLE)(BUNDLE) as { main: Main }).main;
  // esbuild writes ASCII only (non-ASCII characters escaped), so latin1 reads it exactly, and faster than utf8.
  const source = readFileSync(BUNDLE, 'latin1');
  // V8 checks a cache against the source's length, not its content: only a cache written after the
  // bundle (the build writes it second) is its own.
  let cachedData: Buffer | undefined;
  const cacheTime = mtime(CACHE);
  if (cacheTime !== null && cacheTime >= bundleTime) {
    try {
      cachedData = readFileSync(CACHE);
    } catch {
      // gone meanwhile: compiled from source, only slower
    }
  }
  // As Node's own CommonJS loader would run it, with the code cache V8 accepts or ignores.
  const script = new vm.Script(Module.wrap(source), { filename: BUNDLE, cachedData });
  const mod = new Module(BUNDLE);
  mod.filename = BUNDLE;
  script.runInThisContext()(mod.exports, Module.createRequire(BUNDLE), mod, BUNDLE, fileURLToPath(new URL('.', import.meta.url)));
  return (mod.exports as { main: Main }).main;
}

const main = bundled() ?? ((await import('./cli/main.js')) as { main: Main }).main;
await main(process.argv);
