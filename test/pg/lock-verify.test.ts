/**
 * One backup at a time per backup directory across processes, and `verify` catching a damaged
 * file before anything trusts it.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { createDatabase, databaseExists, dbUrl, dropDatabase, psql, query, uniqueName } from '../helpers/pg.js';
import { fakePgBin } from '../helpers/pgbin.js';

let db: { name: string; url: string };
const dirs: string[] = [];
beforeAll(async () => {
  db = await createDatabase('lock');
  await psql(db.url, `create table t (id int primary key); insert into t select generate_series(1, 100);`);
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup() {
  const dir = tempDir('hbl');
  dirs.push(dir);
  const backupDir = path.join(dir, 'backups');
  const cfg = (name: string, c: object) => {
    writeFileSync(path.join(dir, name), JSON.stringify(c));
    return path.join(dir, name);
  };
  return { dir, backupDir, cfg, env: (config: string) => ({ DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: config }) };
}

describe('one backup at a time', () => {
  it('a second backup waits for the first, says so, and both land without overlapping', async () => {
    const s = setup();
    const slow = s.cfg('slow.json', { dump: { pgBinDir: await fakePgBin(s.dir, 'sleep 3; exec "$REAL" "$@"') } });
    const normal = s.cfg('normal.json', {});
    const first = startCli(['manual', 'first', '--json'], s.env(slow));
    // wait until the first holds the lock
    for (let i = 0; i < 200; i++) {
      try {
        if (readLedger(s.backupDir, 'select 1 from locks').length) break;
      } catch {
        // ledger not created yet
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const second = await runCli(['pre-change', 'second', '--json'], s.env(normal));
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/waiting for backup run 1 \(pid \d+, since .*\) to finish; will wait up to/);
    const a = JSON.parse(String(firstResult.stdout));
    const b = JSON.parse(second.stdout);
    expect(Date.parse(b.createdAt)).toBeGreaterThanOrEqual(Date.parse(a.finishedAt));
  });

  it('gives up with exit 1 after dump.lockWaitSeconds', async () => {
    const s = setup();
    const slow = s.cfg('slow.json', { dump: { pgBinDir: await fakePgBin(s.dir, 'sleep 4; exec "$REAL" "$@"') } });
    const impatient = s.cfg('impatient.json', { dump: { lockWaitSeconds: 1 } });
    const first = startCli(['manual'], s.env(slow));
    for (let i = 0; i < 200; i++) {
      try {
        if (readLedger(s.backupDir, 'select 1 from locks').length) break;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const second = await runCli(['manual'], s.env(impatient));
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toMatch(/gave up after waiting 1\.\ds for backup run 1/);
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(readLedger(s.backupDir, 'select status, error_code from runs order by id')).toEqual([
      { status: 'ok', error_code: null },
      { status: 'failed', error_code: 'backup-lock-timeout' },
    ]);
  });
});

describe('verify and restore refuse a damaged file', () => {
  it('a flipped byte fails verify (exit 1), marks the backup corrupt, and restore refuses before touching the target', async () => {
    const s = setup();
    const env = s.env(s.cfg('c.json', {}));
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    const good = await runCli(['verify', 'latest', '--json'], env);
    expect(good.exitCode).toBe(0);
    expect(JSON.parse(good.stdout)).toEqual({ results: [{ id: b.id, ok: true, expected: b.sha256, actual: b.sha256, file: b.file, bytes: b.bytes }] });

    const fd = openSync(b.file, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, 100);
    byte[0] = byte[0]! ^ 0xff;
    writeSync(fd, byte, 0, 1, 100);
    closeSync(fd);

    const bad = await runCli(['verify', 'all', '--json'], env);
    expect(bad.exitCode).toBe(1);
    const [res] = JSON.parse(bad.stdout).results;
    expect(res).toMatchObject({ id: b.id, ok: false, expected: b.sha256 });
    expect(res.actual).not.toBe(b.sha256);
    expect(readLedger(s.backupDir, 'select status from backups where id = ?', b.id)[0].status).toBe('corrupt');

    const target = uniqueName('never');
    const r = await runCli(['restore', String(b.id), '--target', dbUrl(target), '--create'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot be restored: its file does not match the recorded checksum/);
    expect(await databaseExists(target)).toBe(false);
  });

  it('a file that is missing fails verify and names it', async () => {
    const s = setup();
    const env = s.env(s.cfg('c.json', {}));
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    removeDir(b.file);
    const r = await runCli(['verify', String(b.id)], env);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAILED +backup ${b.id} .* file missing`));
  });

  it('unknown ids and non-ids are usage errors', async () => {
    const s = setup();
    const env = s.env(s.cfg('c.json', {}));
    expect((await runCli(['verify', '999'], env)).exitCode).toBe(2);
    const r = await runCli(['restore', 'abc', '--target', db.url], env);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/"abc" is not a backup id/);
  });
});

describe('restoring a damaged gzip file', () => {
  it('commits nothing: psql is stopped before it sees the end of its input', async () => {
    const s = setup();
    const env = s.env(s.cfg('c.json', { dump: { compression: 'gzip' } }));
    await psql(db.url, `create table if not exists big_gz as select g, md5(g::text) as v from generate_series(1, 200000) g;`);
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    // cut the gzip stream in the middle (the checksum recorded to match, as if it had been written so)
    const cut = readFileSync(b.file).subarray(0, Math.floor(b.bytes / 2));
    writeFileSync(b.file, cut);
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    l.prepare('update backups set sha256 = ?, bytes = ? where id = ?').run(createHash('sha256').update(cut).digest('hex'), cut.length, b.id);
    l.close();
    const target = uniqueName('gzcut');
    const r = await runCli(['restore', String(b.id), '--target', dbUrl(target), '--create'], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot read .*\.sql\.gz: .*nothing was restored/);
    expect(await query(dbUrl(target), `select count(*)::int as n from pg_tables where schemaname = 'public'`)).toEqual([{ n: 0 }]);
    await psql(db.url, 'drop table big_gz;');
    await dropDatabase(target);
  });
});
