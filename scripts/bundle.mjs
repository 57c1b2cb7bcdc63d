/**
 * The second half of `npm run build` (after tsc): bundles the CLI into one CommonJS file,
 * dist/src/cli-bundle.cjs, and writes a V8 code cache for it, dist/src/cli-bundle.cache.
 *
 * Why: a migration script calls the CLI often, and most calls only ask the running service. Run
 * from the compiled modules, such a call spent most of its time loading ~400 ES modules (zod alone
 * is 95) and compiling their source. One file read once and compiled from a cache does the same
 * work in well under half the time (measured by `npm run bench cli`; see bench/RESULTS.md).
 * dist/src/cli.js (src/cli.ts) runs the bundle when it is there and newer than the compiled
 * modules, and falls back to them otherwise, so a bare `tsc` build still works.
 *
 * What stays outside the bundle: native modules, and the large packages only the engine loads,
 * lazily (the AWS SDK, supabase-js, pg, winston); they are required from node_modules as usual.
 * ES-module-only packages (execa) must be inside: a CommonJS file cannot require them on Node 20.
 *
 * Every file is written under a temporary name and renamed, so a failed build never leaves a
 * half-written bundle for the loader to run.
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { Module } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'dist/src/cli-bundle.cjs');
const CACHE = path.join(ROOT, 'dist/src/cli-bundle.cache');

/**
 * zod's index carries every locale's messages (about a third of its code); this program only ever
 * uses English, which zod configures by default.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(build) {
    build.onLoad({ filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
      contents: "export { default as en } from './en.js';\n",
      loader: 'js',
      resolveDir: path.dirname(args.path),
    }));
  },
};

/**
 * A dynamic `import()` of a package left outside (the AWS SDK, pg…) or of a Node module would stay
 * an `import()` in the bundle, which a vm.Script cannot run without experimental hooks. Each is
 * turned into a small module of the bundle re-exporting the package: loaded as lazily as before,
 * by `require`.
 */
const EXTERNAL = ['better-sqlite3', 'pg', 'pg-native', '@aws-sdk/*', '@smithy/*', '@supabase/*', 'winston'];
const isExternal = (p) => p.startsWith('node:') || EXTERNAL.some((e) => (e.endsWith('/*') ? p.startsWith(e.slice(0, -1)) : p === e || p.startsWith(`${e}/`)));
const lazyExternals = {
  name: 'lazy-externals',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => (args.kind === 'dynamic-import' && isExternal(args.path) ? { path: args.path, namespace: 'lazy-external' } : undefined));
    build.onLoad({ filter: /.*/, namespace: 'lazy-external' }, (args) => ({
      contents: `import * as m from ${JSON.stringify(args.path)};\nexport * from ${JSON.stringify(args.path)};\nexport default m.default ?? m;\n`,
      loader: 'js',
      resolveDir: ROOT,
    }));
  },
};

function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

const t0 = performance.now();
const result = await esbuild.build({
  entryPoints: [path.join(ROOT, 'src/cli/main.ts')],
  outfile: OUT,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  external: EXTERNAL,
  plugins: [zodEnglishOnly, lazyExternals],
  // The modules find the install directory (config/, package.json, the native module) from their
  // own location; in the bundle that is the bundle's.
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  // Less to read and scan at every start; names are kept for stack traces, and the source map maps
  // them back (node --enable-source-maps).
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
});
const code = result.outputFiles.find((f) => f.path === OUT);
const left = code?.text.match(/\bimport\(\s*["'`][^"'`]*["'`]\s*\)/g);
if (left) throw new Error(`the bundle still holds ${left.join(', ')}: a vm.Script cannot run a dynamic import`);
for (const f of result.outputFiles) writeAtomic(f.path, f.contents);

// The code cache: the bundle compiled and its top level run (module initialisation, which has no
// side effects: nothing runs until main() is called), as src/cli.ts does. V8 rejects a cache made
// by another V8 version or with other flags; the loader then compiles the source as usual.
const source = readFileSync(OUT, 'latin1');
const script = new vm.Script(Module.wrap(source), { filename: OUT });
const mod = new Module(OUT);
mod.filename = OUT;
script.runInThisContext()(mod.exports, Module.createRequire(OUT), mod, OUT, path.dirname(OUT));
if (typeof mod.exports.main !== 'function') throw new Error(`${OUT} does not export main()`);
writeAtomic(CACHE, script.createCachedData());

const kb = (f) => `${Math.round(statSync(f).size / 1024)} KiB`;
console.log(`bundled the CLI into ${path.relative(ROOT, OUT)} (${kb(OUT)}, code cache ${kb(CACHE)}) in ${Math.round(performance.now() - t0)} ms`);
