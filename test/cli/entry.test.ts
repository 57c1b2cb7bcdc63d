/**
 * The executable's entry (src/cli.ts): it runs the bundle the build makes, compiled from the code
 * cache beside it, and the compiled modules when there is no bundle — the same program either way.
 */
import { cpSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { Module } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, removeDir, ROOT, tempDir } from '../helpers/cli.js';

const BUNDLE = path.join(ROOT, 'dist/src/cli-bundle.cjs');
const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('the executable', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach(removeDir));

  it('runs a bundle whose code cache this Node accepts, and that is all ASCII (read as latin1)', () => {
    const bytes = readFileSync(BUNDLE);
    expect(bytes.every((b) => b < 0x80)).toBe(true);
    const script = new vm.Script(Module.wrap(bytes.toString('latin1')), { filename: BUNDLE, cachedData: readFileSync(path.join(ROOT, 'dist/src/cli-bundle.cache')) });
    expect(script.cachedDataRejected).toBe(false);
  });

  it('gives the same answers from the bundle and from the compiled modules', async () => {
    // a copy of the entry beside the compiled modules but without the bundle: it falls back to them
    const d = tempDir('hbentry');
    dirs.push(d);
    mkdirs(d);
    const bare = path.join(d, 'dist/src/cli.js');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: d, TZ: 'UTC', BACKUP_DIR: path.join(d, 'b') };
    for (const args of [['--version'], ['config', '--json'], ['list', '--bogus']]) {
      const viaBundle = await execa('node', [CLI, ...args], { reject: false, extendEnv: false, env, cwd: d });
      const viaModules = await execa('node', [bare, ...args], { reject: false, extendEnv: false, env, cwd: d });
      expect(viaModules.exitCode, args.join(' ')).toBe(viaBundle.exitCode);
      expect(viaModules.stdout, args.join(' ')).toBe(viaBundle.stdout);
      expect(viaModules.stderr, args.join(' ')).toBe(viaBundle.stderr);
    }
    expect((await execa('node', [CLI, '--version'], { env })).stdout).toBe(version);
  });

  it('never runs a bundle older than the compiled modules (a build by tsc alone after an edit)', async () => {
    const d = tempDir('hbentry');
    dirs.push(d);
    mkdirs(d);
    // a bundle that would say something else, made older than the modules
    const stale = path.join(d, 'dist/src/cli-bundle.cjs');
    cpSync(path.join(ROOT, 'test/fixtures/stale-bundle.cjs'), stale);
    utimesSync(stale, new Date('2000-01-01'), new Date('2000-01-01'));
    const r = await execa('node', [path.join(d, 'dist/src/cli.js'), '--version'], { reject: false });
    expect(r.stdout).toBe(version);
    // the same file, newer than the modules, is run
    utimesSync(stale, new Date(), new Date());
    const ran = await execa('node', [path.join(d, 'dist/src/cli.js'), '--version'], { reject: false });
    expect(ran.stdout).toBe('the stale bundle ran');
  });
});

describe('the code cache', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach(removeDir));

  it('is used when written after the bundle, and never for a bundle that changed after it (V8 checks only the length)', async () => {
    const d = tempDir('hbentry');
    dirs.push(d);
    mkdirs(d);
    const bundle = path.join(d, 'dist/src/cli-bundle.cjs');
    const cache = path.join(d, 'dist/src/cli-bundle.cache');
    // two bundles of the same length whose top level differs: a cache of A run with B's source says A
    const source = (v: string) => `const which = '${v}';\nexports.main = async () => { console.log(which); };\n`;
    writeFileSync(bundle, source('A'));
    const script = new vm.Script(Module.wrap(source('A')), { filename: bundle });
    const mod = new Module(bundle);
    script.runInThisContext()(mod.exports, Module.createRequire(bundle), mod, bundle, path.dirname(bundle));
    writeFileSync(cache, script.createCachedData());
    const run = async () => (await execa('node', [path.join(d, 'dist/src/cli.js')], { reject: false })).stdout;
    expect(await run()).toBe('A');
    // the bundle replaced (same length) after its cache was written: the cache is not its own
    writeFileSync(bundle, source('B'));
    const later = new Date(Date.now() + 2000);
    utimesSync(bundle, later, later);
    expect(await run()).toBe('B');
    // and the same cache, were it written after this bundle, would be taken as its own
    utimesSync(cache, new Date(later.getTime() + 1000), new Date(later.getTime() + 1000));
    expect(await run()).toBe('A');
  });
});

/** `d/package.json` and `d/dist/src/cli.js` copied, the compiled modules linked: an install without a bundle. */
function mkdirs(d: string): void {
  cpSync(path.join(ROOT, 'package.json'), path.join(d, 'package.json'));
  cpSync(path.join(ROOT, 'dist/src/cli.js'), path.join(d, 'dist/src/cli.js'));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(d, 'node_modules'));
  for (const f of readdirSync(path.join(ROOT, 'dist/src'))) {
    if (!f.startsWith('cli.js') && !f.startsWith('cli-bundle.')) symlinkSync(path.join(ROOT, 'dist/src', f), path.join(d, 'dist/src', f));
  }
}
