/**
 * Every way a backup can fail ends the same way: the right exit code, nothing under a final
 * file name, no .partial left, the attempt recorded as failed with its reason — and no secret
 * anywhere.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { fakePgBin, getServerMajor } from '../helpers/pgbin.js';
import { type PrivateCluster, startPrivateCluster } from '../helpers/private-cluster.js';

let db: { name: string; url: string };
const dirs: string[] = [];

beforeAll(async () => {
  db = await createDatabase('fail');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, repeat('x', 100) from generate_series(1, 5000) g;`);
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup(config: object = {}): { dir: string; backupDir: string; env: (extra?: Record<string, string>) => Record<string, string> } {
  const dir = tempDir('hbf');
  dirs.push(dir);
  const backupDir = path.join(dir, 'backups');
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  return { dir, backupDir, env: (extra = {}) => ({ DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), ...extra }) };
}

/** Backup files (final, partial or sidecar) in a directory. */
function backupFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => /\.sql(\.gz)?(\.partial|\.meta\.json)?$/.test(f));
  } catch {
    return [];
  }
}

function expectFailedAttempt(backupDir: string, code: string, message: RegExp): void {
  expect(backupFiles(backupDir)).toEqual([]);
  const runs = readLedger(backupDir, `select * from runs where job = 'backup'`);
  expect(runs).toHaveLength(1);
  expect(runs[0]).toMatchObject({ status: 'failed', error_code: code });
  expect(runs[0].error_message).toMatch(message);
  expect(runs[0].finished_at).not.toBeNull();
  const backups = readLedger(backupDir, 'select * from backups');
  expect(backups).toHaveLength(1);
  expect(backups[0]).toMatchObject({ status: 'failed', error_code: code, sha256: null, run_id: runs[0].id });
}

describe('a failing backup leaves nothing behind and records why', () => {
  let cluster: PrivateCluster;
  beforeAll(async () => {
    cluster = await startPrivateCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('wrong password: exit 1, the password never shown or stored', async () => {
    const s = setup();
    const secret = 'Wr0ng-Pa55word-xyz';
    const r = await runCli(['manual', '--json'], s.env({ DATABASE_URL: cluster.url('postgres', secret) }));
    expect(r.exitCode).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err).toMatchObject({ code: 'db-auth-failed' });
    expect(err.message).toMatch(/authentication failed .* as postgres/);
    expectFailedAttempt(s.backupDir, 'db-auth-failed', /password authentication failed/);
    const everything = [r.stdout, r.stderr, readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8'), readFileSync(path.join(s.backupDir, 'ledger.db')).toString('latin1')].join('\n');
    expect(everything).not.toContain(secret);
    expect(everything).not.toContain(encodeURIComponent(secret));
  });

  it('the right password against the same password-protected server works', async () => {
    const s = setup();
    const r = await runCli(['manual', '--json'], s.env({ DATABASE_URL: cluster.url('postgres', cluster.password) }));
    // the cluster's postgres database has no table: said on stderr, and nothing else is
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^hybrid-backup: WARNING: backup 1: the dump holds no user table/)]);
    expect(r.stderr).not.toContain(cluster.password);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).status).toBe('ok');
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
    expect(log).toContain('backup 1 ok');
    expect(log).not.toContain(cluster.password);
  });

  it('database missing: exit 1 naming the database', async () => {
    const s = setup();
    const r = await runCli(['manual'], s.env({ DATABASE_URL: db.url.replace(db.name, `${db.name}_nope`) }));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`database "${db.name}_nope" on 127\\.0\\.0\\.1:5432 as postgres does not exist`));
    expectFailedAttempt(s.backupDir, 'db-not-found', /does not exist/);
  });

  it('server unreachable: exit 1 with a hint', async () => {
    const s = setup({ dump: { connectTimeoutSeconds: 2 } });
    const r = await runCli(['manual'], s.env({ DATABASE_URL: 'postgresql://postgres:pw-unreachable@127.0.0.1:1/x' }));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot reach database "x" on 127\.0\.0\.1:1 .*hint: check that the server is running/);
    expect(r.stderr).not.toContain('pw-unreachable');
    expectFailedAttempt(s.backupDir, 'db-unreachable', /ECONNREFUSED/);
  });

  it.each([
    [['pre-change', ''], /the description is empty/],
    [['pre-change', '   '], /the description is empty/],
    [['pre-change'], /a pre-change backup needs a description/],
    [['pre-change', 'x'.repeat(501)], /501 characters long, more than 500/],
  ])('bad description %#: exit 2, nothing done', async (args, message) => {
    const s = setup();
    const r = await runCli(args, s.env());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(backupFiles(s.backupDir)).toEqual([]);
    expect(() => readLedger(s.backupDir, 'select 1')).toThrow(); // no ledger: nothing at all was done
  });

  it('keeps a 500-character description with quotes, tabs and unicode exactly', async () => {
    const s = setup();
    const description = `Drop "legacy"\tcolumns; ../../etc/passwd ✓ ${'é'.repeat(460)}`.slice(0, 500);
    const r = await runCli(['pre-change', description, '--json'], s.env());
    expect(r.exitCode).toBe(0);
    const b = JSON.parse(r.stdout);
    expect(b.description).toBe(description);
    expect(path.dirname(b.file)).toBe(s.backupDir);
    expect(path.basename(b.file)).toMatch(/^\d{8}T\d{6}Z_pre-change_drop-legacy-columns-etc-passwd-e+\.sql$/);
    expect(JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8')).description).toBe(description);
    expect(readLedger(s.backupDir, 'select description from backups')[0].description).toBe(description);
  });

  it('a dump cut short before the closing line: exit 1, dump-incomplete', async () => {
    const s = setup();
    const bin = await fakePgBin(s.dir, '"$REAL" "$@" | head -n -8');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/the pg_dump output ends without its closing "-- PostgreSQL database dump complete" line/);
    expectFailedAttempt(s.backupDir, 'dump-incomplete', /closing/);
  });

  it('a dump cut inside table data says so', async () => {
    const s = setup();
    const bin = await fakePgBin(s.dir, '"$REAL" "$@" | head -c 60000');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expectFailedAttempt(s.backupDir, 'dump-incomplete', /stopped inside table data/);
  });

  it('a pg_dump that writes nothing: exit 1, dump-empty', async () => {
    const s = setup();
    const bin = await fakePgBin(s.dir, 'exit 0');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expectFailedAttempt(s.backupDir, 'dump-empty', /wrote nothing/);
  });

  it('a pg_dump that fails after writing: exit 1 with its stderr, redacted', async () => {
    const s = setup();
    const bin = await fakePgBin(s.dir, '"$REAL" "$@" | head -c 3000; echo "pg_dump: error: query failed: server closed the connection (password=hunter2secret)" >&2; exit 1');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/pg_dump exited with code 1: pg_dump: error: query failed/);
    expect(r.stderr).not.toContain('hunter2secret');
    expectFailedAttempt(s.backupDir, 'dump-failed', /server closed the connection/);
    expect(readLedger(s.backupDir, 'select error_message from runs')[0].error_message).not.toContain('hunter2secret');
  });

  it('refuses a pg_dump older than the server, naming the package to install', async () => {
    const major = await getServerMajor();
    const s = setup();
    const bin = await fakePgBin(s.dir, 'exit 99', `${major - 1}.9`);
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`PostgreSQL ${major} but the only pg_dump found is ${major - 1} .*install postgresql-client-${major}`));
    expectFailedAttempt(s.backupDir, 'pg-tool-too-old', /only pg_dump found/);
  });

  it('warns when only a newer pg_dump exists, and still backs up', async () => {
    const major = await getServerMajor();
    const s = setup();
    const bin = await fakePgBin(s.dir, 'exec "$REAL" "$@"', `${major + 1}.0`);
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`using pg_dump ${major + 1} for a PostgreSQL ${major} server: its output may not restore`));
  });

  it('refuses to start when free space is below the last backup\'s size times the factor', async () => {
    const s = setup();
    expect((await runCli(['manual'], s.env())).exitCode).toBe(0);
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { freeSpaceFactor: 1e12 } }));
    const r = await runCli(['manual'], s.env());
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/free in .* the last backup took .* so the next needs about/);
    expect(backupFiles(s.backupDir)).toHaveLength(2); // the first backup and its sidecar, nothing more
    expect(readLedger(s.backupDir, `select status, error_code from runs order by id`)).toEqual([
      { status: 'ok', error_code: null },
      { status: 'failed', error_code: 'disk-space-low' },
    ]);
  });

  it('a full disk mid-dump: exit 1, dump-write-failed, the partial removed, the ledger still written', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a 3 MB tmpfs and needs root (CI runs as root)');
    const s = setup();
    await psql(db.url, `create table if not exists filler as select g, repeat(md5(g::text), 4) as v from generate_series(1, 60000) g;`);
    mkdirSync(s.backupDir);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=3m,mode=0700', 'tmpfs', s.backupDir]);
    try {
      expect((await runCli(['list'], s.env())).exitCode).toBe(0); // the ledger exists before the disk fills
      const r = await runCli(['manual'], s.env());
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/cannot write .*\.partial: ENOSPC.*hint: free disk space/);
      expectFailedAttempt(s.backupDir, 'dump-write-failed', /ENOSPC/);
    } finally {
      await execa('umount', [s.backupDir]);
      await psql(db.url, 'drop table filler;');
    }
  });
});
