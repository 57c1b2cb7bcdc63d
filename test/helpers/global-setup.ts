/**
 * Runs once before the suite: builds the CLI (the tests drive the real executable) and makes
 * sure the real PostgreSQL the tests need is reachable, failing with what to do when it is not.
 */
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { ADMIN_URL } from './pg.js';

export default async function setup(): Promise<void> {
  const root = path.resolve(import.meta.dirname, '../..');
  const tsc = await execa(path.join(root, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: root, reject: false, all: true });
  if (tsc.exitCode !== 0) throw new Error(`the build failed, so the CLI cannot be tested:\n${tsc.all}`);

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
