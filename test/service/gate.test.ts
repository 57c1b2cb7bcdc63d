/**
 * Never a false green at the gate: no database configured is no backup; a backup of an empty
 * database says so everywhere; and the service refuses a pre-change (or manual, or restore-test)
 * meant for another database than the one it protects.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { type Daemon, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql } from '../helpers/pg.js';

let app: { name: string; url: string };
let other: { name: string; url: string };
let empty: { name: string; url: string };
const dirs: string[] = [];
const daemons: Daemon[] = [];

beforeAll(async () => {
  app = await createDatabase('gapp');
  other = await createDatabase('goth');
  empty = await createDatabase('gemp');
  await psql(app.url, 'create table orders (id int primary key); insert into orders select generate_series(1, 50);');
  await psql(other.url, 'create table invoices (id int primary key); insert into invoices select generate_series(1, 5);');
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await stopDaemon(d, 'SIGKILL');
});
afterAll(async () => {
  for (const d of [app, other, empty]) await dropDatabase(d.name);
  dirs.forEach(removeDir);
});

function setup() {
  const dir = tempDir('hbg');
  dirs.push(dir);
  const backupDir = path.join(dir, 'b');
  const cfg = path.join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *', monitor: '0 2 1 1 *' }, timezone: 'UTC' }));
  return { dir, backupDir, env: { BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: cfg, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') } };
}

describe('no database configured', () => {
  it('manual, pre-change and the daemon refuse with exit 2, one line naming the variable, and create nothing', async () => {
    const s = setup();
    for (const env of [s.env, { ...s.env, DATABASE_URL: 'postgresql://' }]) {
      for (const args of [['manual'], ['pre-change', 'release 42'], ['manual', '--json']]) {
        const r = await runCli(args, env);
        expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        if (args.includes('--json')) {
          expect(JSON.parse(r.stdout).error.code).toBe('database-not-configured');
        } else {
          expect(r.stderr.trim().split('\n')).toHaveLength(1);
          expect(r.stderr).toMatch(/DATABASE_URL/);
          expect(r.stderr).toMatch(/e\.g\. DATABASE_URL=postgresql:\/\//);
        }
      }
    }
    expect(existsSync(s.backupDir)).toBe(false);
    const d = await runCli(['daemon'], s.env);
    expect(d.exitCode).toBe(2);
    expect(d.stderr).toMatch(/no database to back up: DATABASE_URL is not set/);
    // PGHOST/PGDATABASE name one: that is configured
    const viaLibpq = await runCli(['manual', '--json'], { ...s.env, PGHOST: '127.0.0.1', PGUSER: 'postgres', PGDATABASE: app.name });
    expect(viaLibpq.exitCode, viaLibpq.stderr).toBe(0);
    expect(JSON.parse(viaLibpq.stdout)).toMatchObject({ status: 'ok', database: app.name, tableCount: 1 });
  });

  it('a backup of a database without a user table completes, and says so in its result, on stderr, in the log and in the monitor', async () => {
    const s = setup();
    const env = { ...s.env, DATABASE_URL: empty.url };
    const r = await runCli(['manual', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ status: 'ok', tableCount: 0 });
    expect(doc.warnings[0]).toMatch(/the dump holds no user table: database ".*" is empty/);
    expect(r.stderr).toMatch(/WARNING: backup \d+: the dump holds no user table/);
    const human = await runCli(['manual'], env);
    expect(human.stdout).toMatch(/WARNING +the dump holds no user table/);
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(log.some((l) => l.level === 'warn' && /no user table/.test(l.message))).toBe(true);
    const mon = await runCli(['monitor', '--json'], env);
    const content = JSON.parse(mon.stdout).checks.find((c: { name: string }) => c.name === 'local-backup-content');
    expect(content).toMatchObject({ status: 'warning' });
    expect(content.message).toMatch(/no user table/);
  });
});

describe('the pre-change gate protects the database being changed', () => {
  it('the service refuses, exit 2 naming both databases, a request meant for another database; the same database under another host name passes', async () => {
    const s = setup();
    const d = await startDaemon({ ...s.env, DATABASE_URL: app.url });
    daemons.push(d);
    const before = readLedger(s.backupDir, 'select count(*) as n from backups')[0].n;
    for (const args of [['pre-change', 'release 42'], ['manual'], ['restore-test']]) {
      const r = await runCli(args, { ...s.env, DATABASE_URL: other.url });
      expect(r.exitCode, `${args[0]}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`refusing ${args[0]}: this command means database "${other.name}".*but the service on .* protects database "${app.name}"`));
      expect(r.stdout).not.toMatch(/backup \d+ ok/);
    }
    const json = await runCli(['pre-change', 'release 42', '--json'], { ...s.env, DATABASE_URL: other.url });
    expect(JSON.parse(json.stdout).error.code).toBe('database-mismatch');
    expect(readLedger(s.backupDir, 'select count(*) as n from backups')[0].n).toBe(before);
    // the same database: through localhost instead of 127.0.0.1, as another user name: it passes
    const alias = new URL(app.url);
    alias.hostname = 'localhost';
    const ok = await runCli(['pre-change', 'release 42', '--json'], { ...s.env, DATABASE_URL: alias.toString() });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ kind: 'pre-change', status: 'ok', database: app.name });
    // a caller that names no database is refused, as without a service: no silent default database
    const noDb: Record<string, string> = { ...s.env };
    delete noDb.DATABASE_URL;
    const none = await runCli(['pre-change', 'release 43', '--json'], noDb);
    expect(none.exitCode, none.stdout).toBe(2);
    expect(JSON.parse(none.stdout).error.code).toBe('database-not-configured');
    expect(readLedger(s.backupDir, 'select count(*) as n from backups')[0].n).toBe(before + 1);
    // the password never travels: what the service logged of the request has none
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).not.toMatch(/:[^@/]*@127/);
  });

  it('through a Supabase pooler, a backup meant for another project is refused: the user\'s .<ref> names the project', async () => {
    const s = setup();
    const pooler = 'aws-0-eu-central-1.pooler.supabase.com:5432/postgres';
    // nothing connects: the service compares the two before it would dump anything
    const d = await startDaemon({ ...s.env, DATABASE_URL: `postgresql://postgres.prodrefaaaaaaaaaaaaaa:secret@${pooler}` });
    daemons.push(d);
    const r = await runCli(['pre-change', 'release 44', '--json'], { ...s.env, DATABASE_URL: `postgresql://postgres.stagingrefbbbbbbbbbb:secret@${pooler}` });
    expect(r.exitCode, r.stdout + r.stderr).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'database-mismatch', message: expect.stringContaining('postgres.stagingrefbbbbbbbbbb') });
    expect(r.stdout).not.toContain('secret');
  });

  it('a restore asked for another database than the service protects is refused too', async () => {
    const s = setup();
    const d = await startDaemon({ ...s.env, DATABASE_URL: app.url });
    daemons.push(d);
    expect((await runCli(['manual'], { ...s.env, DATABASE_URL: app.url })).exitCode).toBe(0);
    const r = await runCli(['restore', 'latest', '--target', `${ADMIN_URL.replace(/\/[^/]*$/, '')}/hb_gate_never`, '--create'], { ...s.env, DATABASE_URL: other.url });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`refusing restore: this command means database "${other.name}"`));
  });
});
