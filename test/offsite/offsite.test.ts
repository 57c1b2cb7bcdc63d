/**
 * Offsite copies in Supabase Storage, through @supabase/supabase-js against a fake Storage API
 * that checks the service-role key: upload with the SHA-256 in the metadata and the size
 * confirmed, retention's deletes, download and restore, an upload cut off halfway, a 5xx.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { until } from '../helpers/wait.js';
import { closedPort } from '../helpers/webhook-receiver.js';
import { FakeStorage, SERVICE_KEY } from '../helpers/fake-storage.js';
import { createDatabase, dbUrl, dropDatabase, psql, query, uniqueName } from '../helpers/pg.js';

let storage: FakeStorage;
let db: { name: string; url: string };
const dbs: string[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  storage = await new FakeStorage().start();
  db = await createDatabase('off');
  dbs.push(db.name);
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, repeat(md5(g::text), 20) from generate_series(1, 3000) g;`);
});
afterAll(async () => {
  await storage.stop();
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

function setup(config: Record<string, unknown> = {}) {
  const dir = tempDir('hbo');
  dirs.push(dir);
  const prefix = `${path.basename(dir)}/`;
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ offsite: { prefix }, ...config }));
  const backupDir = path.join(dir, 'b');
  const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), SUPABASE_URL: storage.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY };
  return { dir, backupDir, env, prefix };
}

const manual = async (env: Record<string, string>) => {
  const r = await runCli(['manual', '--json'], env);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
};

describe('offsite copies', () => {
  it('uploads each ok backup with its SHA-256 in the metadata, confirms the size, and records where', async () => {
    const s = setup();
    const b = await manual(s.env);
    const key = `hybrid-backups/${s.prefix}${path.basename(b.file)}`;
    expect(b.offsite).toMatchObject({ status: 'uploaded', location: key, bytes: b.bytes });
    expect(storage.buckets.get('hybrid-backups')).toEqual({ public: false });
    const o = storage.objects.get(key)!;
    expect(o.metadata).toMatchObject({ sha256: b.sha256, bytes: String(b.bytes), 'plain-sha256': b.sha256, encrypted: 'no' });
    expect(createHash('sha256').update(readFileSync(o.file)).digest('hex')).toBe(b.sha256);
    expect(storage.objects.has(`${key}.meta.json`)).toBe(true);
    expect(storage.requests.every((r) => r.authorized)).toBe(true);
    const list = await runCli(['list'], s.env);
    expect(list.stdout).toMatch(/OFFSITE.*\n.*\buploaded\b/);
    const verify = await runCli(['verify', 'all', '--json'], s.env);
    expect(verify.exitCode).toBe(0);
    expect(JSON.parse(verify.stdout).results[0].offsite).toEqual({ ok: true, location: key, bytes: b.bytes });
    expect(JSON.parse(verify.stdout).results[0].offsiteCopies).toEqual([{ target: 'supabase', ok: true, location: key, bytes: b.bytes }]);
  });

  it('a wrong service-role key: the local backup still succeeds; the failure is recorded and retried at the next run', async () => {
    const s = setup();
    const bad = await manual({ ...s.env, SUPABASE_SERVICE_ROLE_KEY: 'eyJwrongwrongwrong.eyJwrongwrongwrong.wrongsignaturewrong' });
    expect(bad.status).toBe('ok');
    expect(bad.offsite).toMatchObject({ status: 'failed' });
    expect(bad.offsite.error).toMatch(/Supabase Storage refused .*invalid signature \(403\)/);
    expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'offsite-upload'`)).toEqual([{ status: 'failed', error_code: 'offsite-failed' }]);
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
    expect(log).not.toContain('wrongsignaturewrong');
    expect(log).not.toContain(SERVICE_KEY);
    // the next run uploads both
    const good = await manual(s.env);
    expect(good.offsite.status).toBe('uploaded');
    const rows = readLedger(s.backupDir, 'select id, offsite_status from backups order by id');
    expect(rows).toEqual([
      { id: bad.id, offsite_status: 'uploaded' },
      { id: good.id, offsite_status: 'uploaded' },
    ]);
  });

  it('an upload cut off halfway fails, leaves the local backup ok, and is retried', async () => {
    const s = setup();
    storage.inject({ method: 'POST', path: /\/storage\/v1\/object\/hybrid-backups\/.*\.sql$/, cutAfter: 50_000 });
    const b = await manual(s.env);
    expect(b.status).toBe('ok');
    expect(b.offsite.status).toBe('failed');
    const v = await runCli(['verify', 'all', '--json'], s.env);
    expect(v.exitCode).toBe(1);
    expect(JSON.parse(v.stdout).results[0].offsite.error).toMatch(/no offsite copy/);
    await manual(s.env);
    expect(readLedger(s.backupDir, `select count(*) as n from backups where offsite_status = 'uploaded'`)[0].n).toBe(2);
    expect((await runCli(['verify', 'all'], s.env)).exitCode).toBe(0);
  });

  it('a 5xx from Storage: failed and retried, never a failed backup', async () => {
    const s = setup();
    storage.inject({ method: 'POST', path: /\.sql$/, status: 503 });
    const b = await manual(s.env);
    expect(b.offsite).toMatchObject({ status: 'failed' });
    expect(b.offsite.error).toMatch(/\(503\)/);
    const again = await runCli(['manual', 'second', '--json'], s.env);
    expect(JSON.parse(again.stdout).offsite.status).toBe('uploaded');
    expect(readLedger(s.backupDir, `select offsite_status from backups where id = ?`, b.id)[0].offsite_status).toBe('uploaded');
  });

  it('verify all notices an offsite copy of the wrong size', async () => {
    const s = setup();
    const b = await manual(s.env);
    storage.truncate(`hybrid-backups/${s.prefix}${path.basename(b.file)}`, 100);
    const v = await runCli(['verify', 'all', '--json'], s.env);
    expect(v.exitCode).toBe(1);
    const r = JSON.parse(v.stdout).results[0];
    expect(r).toMatchObject({ ok: false, expected: b.sha256, actual: b.sha256 });
    expect(r.offsite.error).toMatch(new RegExp(`the offsite copy has 100 bytes, ${b.bytes} were uploaded`));
  });

  it('retention deletes the offsite copy with the local one', async () => {
    const s = setup({ retention: { days: 1, minKeep: 1 } });
    const old = await manual(s.env);
    await manual(s.env);
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    l.prepare('update backups set created_at = ? where id = ?').run(new Date(Date.now() - 5 * 86_400_000).toISOString(), old.id);
    l.close();
    const key = `hybrid-backups/${s.prefix}${path.basename(old.file)}`;
    expect(storage.objects.has(key)).toBe(true);
    const r = await runCli(['prune', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).deleted.map((d: { id: number }) => d.id)).toEqual([old.id]);
    expect(storage.objects.has(key)).toBe(false);
    expect(storage.objects.has(`${key}.meta.json`)).toBe(false);
    expect(readLedger(s.backupDir, 'select status, offsite_status from backups where id = ?', old.id)).toEqual([{ status: 'pruned', offsite_status: 'deleted' }]);
  });

  it('a target whose uploads fail keeps the copies retention would delete, until it holds minKeep newer ones', async () => {
    const s = setup({ retention: { days: 1, minKeep: 1 } });
    const old = await manual(s.env);
    // the target stops taking uploads: the next backup is kept locally, its copy failed
    const broken = await manual({ ...s.env, SUPABASE_URL: `http://127.0.0.1:${await closedPort()}` });
    expect(readLedger(s.backupDir, 'select offsite_status from backups where id = ?', broken.id)).toEqual([{ offsite_status: 'failed' }]);
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    l.prepare('update backups set created_at = ? where id = ?').run(new Date(Date.now() - 5 * 86_400_000).toISOString(), old.id);
    l.close();
    const key = `hybrid-backups/${s.prefix}${path.basename(old.file)}`;
    // the target answers again for the prune: only the rule keeps the copy
    const r = await runCli(['prune', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).deleted.map((d: { id: number }) => d.id)).toEqual([old.id]);
    // the only copy the target holds stays
    expect(storage.objects.has(key)).toBe(true);
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(/holds copies of only 0 of the kept backups \(retention\.minKeep is 1\): the copies of pruned backups there are kept/);
  });

  it('restore --from offsite downloads, checks the SHA-256 and restores, even with the local file gone', async () => {
    const s = setup();
    const b = await manual(s.env);
    rmSync(b.file);
    const local = await runCli(['restore', String(b.id), '--target', dbUrl(uniqueName('x')), '--create'], s.env);
    expect(local.exitCode).toBe(1);
    expect(local.stderr).toMatch(/restore another backup, or its offsite copy with --from offsite/);
    const target = uniqueName('fromoff');
    dbs.push(target);
    const r = await runCli(['restore', String(b.id), '--target', dbUrl(target), '--create', '--from', 'offsite'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/from {4}offsite copy in "supabase" hybrid-backups\/.*\(.*both checksums verified\)/);
    const [{ n }] = await query(dbUrl(target), 'select count(*)::int as n from t');
    expect(n).toBe(3000);
    // a damaged offsite copy is refused before anything is restored
    storage.truncate(`hybrid-backups/${s.prefix}${path.basename(b.file)}`, 1000);
    const bad = await runCli(['restore', String(b.id), '--target', dbUrl(uniqueName('y')), '--create', '--from', 'offsite'], s.env);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/does not match what was uploaded \(1000 bytes, sha256 [0-9a-f]{64}; expected \d+ bytes/);
    expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'restore' order by id desc limit 1`)).toEqual([{ status: 'failed', error_code: 'checksum-mismatch' }]);
  });

  it('a pre-change backup uploads only its own copy; older failures wait for the next run', async () => {
    const s = setup();
    storage.inject({ method: 'POST', path: /\.sql$/, status: 500 });
    const failed = await manual(s.env);
    expect(failed.offsite.status).toBe('failed');
    const pc = JSON.parse((await runCli(['pre-change', 'migration 42', '--json'], s.env)).stdout);
    expect(pc.offsite.status).toBe('uploaded');
    expect(readLedger(s.backupDir, 'select offsite_status from backups where id = ?', failed.id)[0].offsite_status).toBe('failed');
    const sync = await runCli(['offsite-sync', '--json'], s.env);
    expect(sync.exitCode).toBe(0);
    expect(JSON.parse(sync.stdout)).toEqual({ uploaded: [failed.id], failed: [], targets: { supabase: { uploaded: [failed.id], failed: [] } } });
  });

  it('refuses to upload a local file that no longer matches its checksum, and marks the backup corrupt', async () => {
    const s = setup();
    const b = await manual({ ...s.env, SUPABASE_URL: '' });
    const buf = readFileSync(b.file);
    buf[300] = buf[300]! ^ 0x40;
    writeFileSync(b.file, buf);
    const r = await runCli(['offsite-sync', '--json'], s.env);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).failed[0].error).toMatch(/no longer matches its recorded SHA-256 .* it was not kept offsite/);
    expect(readLedger(s.backupDir, 'select status, offsite_status from backups where id = ?', b.id)).toEqual([{ status: 'corrupt', offsite_status: 'failed' }]);
    expect(storage.objects.has(`hybrid-backups/${s.prefix}${path.basename(b.file)}`)).toBe(false);
  });

  it('in the service, the upload runs in the background after the reply', async () => {
    const s = setup({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *' } });
    const env = { ...s.env, HYBRID_BACKUP_SOCKET: path.join(s.dir, 's.sock') };
    const d = await startDaemon(env);
    try {
      const r = await runCli(['pre-change', 'before the migration', '--json'], env);
      expect(r.exitCode, r.stderr).toBe(0);
      const b = JSON.parse(r.stdout);
      await until(() => readLedger(s.backupDir, 'select offsite_status from backups where id = ?', b.id)[0].offsite_status === 'uploaded', 'the background upload');
    } finally {
      await stopDaemon(d);
    }
  });

  it('is off without SUPABASE_URL and the key: nothing uploaded, nothing recorded', async () => {
    const s = setup();
    const b = await manual({ ...s.env, SUPABASE_URL: '', SUPABASE_SERVICE_ROLE_KEY: '' });
    expect(b.offsite).toBeNull();
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'offsite-upload'`)[0].n).toBe(0);
    const r = await runCli(['restore', String(b.id), '--target', db.url, '--from', 'offsite'], { ...s.env, SUPABASE_URL: '' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/no offsite target is configured/);
  });
});
