/**
 * Runs once before the suite: builds the CLI when the build is out of date (the tests drive the
 * real executable) and makes sure the real PostgreSQL the tests need is reachable, failing with
 * what to do when it is not.
 *
 * The build is `npm run build`: tsc, then the bundle the executable runs (scripts/bundle.mjs). It is
 * skipped when it is up to date — every source has its compiled file, newer than the source and
 * than tsconfig.json, the bundle is newer than all of them and than its script, and the last build
 * here did not fail — so CI, whose `npm ci` already built, builds once; a developer who edited a
 * source gets a fresh build.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { ADMIN_URL } from './pg.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
/** Left by a build that failed here: its (emitted) output must not pass for up to date. */
const FAILED = path.join(ROOT, 'dist/.build-failed');

function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(dir, f));
}

/** Why the build is out of date, or null when dist has every source compiled since it last changed. */
export function staleBuild(root = ROOT): string | null {
  if (existsSync(FAILED)) return 'the last build failed';
  const config = statSync(path.join(root, 'tsconfig.json')).mtimeMs;
  const inputs = [...sources(path.join(root, 'src')), ...sources(path.join(root, 'bench'))];
  let newest = 0;
  for (const src of inputs) {
    const out = path.join(root, 'dist', path.relative(root, src)).replace(/\.ts$/, '.js');
    if (!existsSync(out)) return `${path.relative(root, out)} is missing`;
    const built = statSync(out).mtimeMs;
    if (built < statSync(src).mtimeMs) return `${path.relative(root, src)} changed since it was compiled`;
    if (built < config) return 'tsconfig.json changed since the last build';
    newest = Math.max(newest, built);
  }
  if (!inputs.length) return 'no sources found';
  const bundle = path.join(root, 'dist/src/cli-bundle.cjs');
  if (!existsSync(bundle)) return 'the bundle is missing';
  const bundled = statSync(bundle).mtimeMs;
  if (bundled < newest) return 'the bundle is older than the compiled modules';
  if (bundled < statSync(path.join(root, 'scripts/bundle.mjs')).mtimeMs) return 'scripts/bundle.mjs changed since the last build';
  return null;
}

export default async function setup(): Promise<void> {
  const stale = staleBuild();
  if (stale) {
    const t0 = Date.now();
    const build = await execa('npm', ['run', '--silent', 'build'], { cwd: ROOT, reject: false, all: true });
    if (build.exitCode !== 0) {
      mkdirSync(path.dirname(FAILED), { recursive: true });
      writeFileSync(FAILED, `${new Date().toISOString()}\n${build.all}\n`);
      throw new Error(`the build failed, so the CLI cannot be tested:\n${build.all}`);
    }
    rmSync(FAILED, { force: true });
    console.log(`built the CLI (${stale}) in ${Date.now() - t0} ms`);
  } else {
    console.log('the CLI build in dist/ is up to date: not compiling again');
  }

  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (e) {
    throw new Error(
      `the tests need a real PostgreSQL at ${ADMIN_URL.replace(/:[^:@/]*@/, ':***@')} and cannot reach it (${(e as Error).message}).\n` +
        'Start it:   pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n' +
        'or install: apt-get install postgresql-15 postgresql-contrib  (trust auth for 127.0.0.1, user postgres)\n' +
        'or point HB_TEST_PG_URL at another server.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}
