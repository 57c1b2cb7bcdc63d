/**
 * The foundation's promise: a backup of a Supabase-shaped database restores into a fresh
 * database identical in schema, every table's content and sequence values.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createFixture, FIXTURE_COUNTS } from '../helpers/fixture.js';
import { ADMIN_URL, createDatabase, dropDatabase, dumpForCompare, query, uniqueName, dbUrl } from '../helpers/pg.js';

let source: { name: string; url: string };
const cleanup: string[] = [];
const dbs: string[] = [];

beforeAll(async () => {
  source = await createDatabase('src');
  dbs.push(source.name);
  await createFixture(source.url);
});
afterAll(async () => {
  for (const d of dbs) await dropDatabase(d);
  cleanup.forEach(removeDir);
});

async function tableFingerprints(url: string): Promise<Record<string, string>> {
  const tables = await query<{ t: string }>(
    url,
    `select format('%I.%I', n.nspname, c.relname) as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'm') and n.nspname in ('public', 'auth', 'storage') order by 1`,
  );
  const out: Record<string, string> = {};
  for (const { t } of tables) {
    const [row] = await query<{ n: string; h: string }>(url, `select count(*)::text as n, md5(coalesce(string_agg(x::text, E'\\n' order by x::text), '')) as h from ${t} x`);
    out[t] = `${row!.n}:${row!.h}`;
  }
  return out;
}

async function sequenceValues(url: string): Promise<Record<string, string>> {
  const rows = await query<{ s: string; v: string }>(url, `select schemaname || '.' || sequencename as s, coalesce(last_value::text, 'null') as v from pg_sequences order by 1`);
  return Object.fromEntries(rows.map((r) => [r.s, r.v]));
}

describe.each(['none', 'gzip'] as const)('backup and restore roundtrip (compression %s)', (compression) => {
  let backupDir: string;
  let configDir: string;
  let backup: any;
  const target = uniqueName(`rt_${compression}`);

  beforeAll(async () => {
    configDir = tempDir('hbrt');
    backupDir = path.join(configDir, 'backups');
    cleanup.push(configDir);
    dbs.push(target);
  });

  const env = () => ({ DATABASE_URL: source.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(configDir, 'c.json') });

  it('takes a backup that is checksummed, counted and recorded', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(configDir, 'c.json'), JSON.stringify({ dump: { compression } }));
    const r = await runCli(['manual', 'roundtrip', '--json'], env());
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    backup = JSON.parse(r.stdout);
    expect(backup).toMatchObject({ kind: 'manual', description: 'roundtrip', status: 'ok', compression });
    expect(path.isAbsolute(backup.file)).toBe(true);
    expect(backup.file.endsWith(compression === 'gzip' ? '.sql.gz' : '.sql')).toBe(true);
    expect(backup.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // sha256 is of the bytes as stored, so sha256sum confirms it
    const bytes = readFileSync(backup.file);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(backup.sha256);
    expect(bytes.length).toBe(backup.bytes);
    if (compression === 'gzip') expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));

    // files private, directory private, no partial left, a sidecar beside it
    expect(statSync(backupDir).mode & 0o777).toBe(0o700);
    expect(statSync(backup.file).mode & 0o777).toBe(0o600);
    expect(readdirSync(backupDir).filter((f) => f.endsWith('.partial'))).toEqual([]);
    const sidecar = JSON.parse(readFileSync(`${backup.file}.meta.json`, 'utf8'));
    expect(sidecar).toMatchObject({ kind: 'manual', description: 'roundtrip', sha256: backup.sha256, bytes: backup.bytes, compression });
    expect(sidecar.serverVersion).toMatch(/^\d+\.\d+/);
    expect(sidecar.pgDumpVersion).toMatch(/^\d+\.\d+/);
    expect(sidecar.tables).toEqual(FIXTURE_COUNTS);

    // the ledger has the same facts, with per-table counts
    const [row] = readLedger(backupDir, 'select * from backups where id = ?', backup.id);
    expect(row).toMatchObject({ status: 'ok', sha256: backup.sha256, bytes: backup.bytes, row_count: 214, table_count: 8 });
    const counts = readLedger<{ table_name: string; rows: number }>(backupDir, 'select table_name, rows from backup_tables where backup_id = ?', backup.id);
    expect(Object.fromEntries(counts.map((c) => [c.table_name, c.rows]))).toEqual(FIXTURE_COUNTS);
    const [run] = readLedger(backupDir, 'select * from runs where id = ?', row.run_id);
    expect(run).toMatchObject({ job: 'backup', trigger: 'cli', status: 'ok', backup_id: backup.id });
  });

  it('restores into a fresh database identical in schema, content and sequences', async () => {
    const r = await runCli(['restore', String(backup.id), '--target', dbUrl(target), '--create'], env());
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`restored backup ${backup.id} into database "${target}" \\(created\\)`));
    expect(r.stdout).toMatch(/8 tables, 214 rows/);

    expect(await dumpForCompare(dbUrl(target), ['--schema-only'])).toBe(await dumpForCompare(source.url, ['--schema-only']));
    expect(await dumpForCompare(dbUrl(target), ['--data-only'])).toBe(await dumpForCompare(source.url, ['--data-only']));
    expect(await tableFingerprints(dbUrl(target))).toEqual(await tableFingerprints(source.url));
    expect(await sequenceValues(dbUrl(target))).toEqual(await sequenceValues(source.url));
    const [mv] = await query(dbUrl(target), 'select sum(n)::int as n from public.order_totals');
    expect(mv!.n).toBe(3);
  });

  it('refuses to restore into the source database without --yes, and changes nothing', async () => {
    const before = await tableFingerprints(source.url);
    const r = await runCli(['restore', 'latest', '--target', source.url.replace('127.0.0.1', 'localhost')], env());
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/it is the database the backup was taken from .*--yes/);
    expect(await tableFingerprints(source.url)).toEqual(before);
  });
});

describe('restore guard without a system identifier', () => {
  it('when the server hides pg_control_system, an equal database name under another host name still counts as the source', async () => {
    // A role that cannot read pg_control_system in its own database: the identity is unknown.
    const role = uniqueName('nosys');
    const db = await createDatabase('nosys');
    const dir = tempDir('hbg');
    try {
      await query(ADMIN_URL, `CREATE ROLE "${role}" LOGIN`);
      await query(ADMIN_URL, `ALTER DATABASE "${db.name}" OWNER TO "${role}"`);
      await query(db.url, `REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC`);
      const u = new URL(db.url);
      u.username = role;
      await query(u.toString(), 'create table t (id int primary key); insert into t select generate_series(1, 10)');
      const e = { DATABASE_URL: u.toString(), BACKUP_DIR: path.join(dir, 'b') };
      const b = await runCli(['manual', '--json'], e);
      expect(b.exitCode, b.stderr).toBe(0);
      const alias = new URL(u.toString());
      alias.hostname = 'localhost';
      const r = await runCli(['restore', 'latest', '--target', alias.toString()], e);
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/it is the database the backup was taken from/);
      const [n] = await query(u.toString(), 'select count(*)::int as n from t');
      expect(n!.n).toBe(10);
    } finally {
      await dropDatabase(db.name);
      await query(ADMIN_URL, `DROP ROLE IF EXISTS "${role}"`);
      removeDir(dir);
    }
  });
});

describe('a restore that fails after the dump committed part of it', () => {
  it('says what was committed (pg_dump ends psql\'s single transaction around large objects), never "nothing was restored"', async () => {
    const src = await createDatabase('lobj');
    const role = uniqueName('hb_gone_reader');
    const dir = tempDir('hblo');
    const target = uniqueName('lobjt');
    try {
      await query(ADMIN_URL, `CREATE ROLE "${role}"`);
      await query(src.url, `CREATE TABLE t (id int primary key, note text); INSERT INTO t VALUES (1, 'one'); SELECT lo_from_bytea(0, 'large'::bytea); GRANT SELECT ON t TO "${role}"`);
      const env = { DATABASE_URL: src.url, BACKUP_DIR: path.join(dir, 'b') };
      const b = await runCli(['manual', '--json'], env);
      expect(b.exitCode, b.stderr).toBe(0);
      // the GRANT, after the large objects' COMMIT in the dump, fails on a target without the role
      await query(src.url, `REVOKE ALL ON t FROM "${role}"`);
      await query(ADMIN_URL, `DROP ROLE "${role}"`);
      const r = await runCli(['restore', 'latest', '--target', dbUrl(target), '--create', '--json'], env);
      expect(r.exitCode).toBe(1);
      const err = JSON.parse(r.stdout).error;
      expect(err.code).toBe('restore-failed');
      expect(err.message).toMatch(/failed part-way, and part of it was COMMITTED \(\d+ relations are now in the target\)/);
      expect(err.message).not.toMatch(/nothing was restored/);
      expect(await query(dbUrl(target), 'select count(*)::int as n from t')).toEqual([{ n: 1 }]);
    } finally {
      await dropDatabase(target).catch(() => {});
      await dropDatabase(src.name);
      await query(ADMIN_URL, `DROP ROLE IF EXISTS "${role}"`);
      removeDir(dir);
    }
  });
});
