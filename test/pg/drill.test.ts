/**
 * Restore drills against the real PostgreSQL: a good backup passes with the exact row total, a
 * backup missing one row fails naming the table, a corrupted file fails on its checksum before
 * any restore, and the scratch database is gone afterwards in every case — even when the drill
 * is killed (the next drill cleans up).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseOneRow, readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql, query } from '../helpers/pg.js';
import { fakePgBin, realPgBin } from '../helpers/pgbin.js';
import { supabaseShaped } from '../helpers/supabase-fixture.js';

let db: { name: string; url: string };
const dbs: string[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  db = await createDatabase('drill');
  dbs.push(db.name);
  await psql(
    db.url,
    `create table public.customers (id int primary key, name text);
     insert into customers select g, 'customer ' || g from generate_series(1, 300) g;
     create table public."Order Lines" (id bigint generated always as identity, customer int references customers, qty int);
     insert into "Order Lines" (customer, qty) select 1 + g % 300, g from generate_series(1, 1200) g;
     create materialized view public.totals as select customer, sum(qty) as qty from "Order Lines" group by customer;`,
  );
});
afterAll(async () => {
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

function setup(config: object = {}) {
  const dir = tempDir('hbd');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  const backupDir = path.join(dir, 'b');
  return { dir, backupDir, env: { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), RESTORE_TEST_DATABASE_URL: ADMIN_URL } };
}

async function scratchDatabases(backupId: number, dir: string): Promise<string[]> {
  // only this test's: the names of drills this ledger ran
  const names = readLedger<{ db: string | null }>(dir, `select json_extract(details, '$.scratchDb') as db from runs where job = 'restore-drill'`).map((r) => r.db);
  const rows = await query<{ datname: string }>(ADMIN_URL, `select datname from pg_database where datname like $1`, [`hb_drill_${backupId}_%`]);
  return rows.map((r) => r.datname).filter((n) => names.includes(n));
}

describe('restore-test', () => {
  it('a good backup passes with the exact row total; verifiedAt is set; the scratch database is gone', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const r = await runCli(['restore-test', 'latest', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ backupId: b.id, ok: true, tables: 2, rowsChecked: 1500, mismatches: [] });
    expect(doc.durationMs).toBeGreaterThan(0);
    expect(doc.scratchDatabase).toMatch(new RegExp(`^hb_drill_${b.id}_\\d{8}t\\d{6}z_[0-9a-f]{6}$`));
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
    const list = JSON.parse((await runCli(['list', '--json'], s.env)).stdout);
    expect(list.backups[0].verifiedAt).not.toBeNull();
    expect(readLedger(s.backupDir, 'select ok, tables, rows_checked from restore_drills')).toEqual([{ ok: 1, tables: 2, rows_checked: 1500 }]);
    const human = await runCli(['restore-test', String(b.id)], s.env);
    expect(human.stdout).toMatch(/drill of backup \d+ PASSED: 2 tables, 1,500 rows exactly as the dump recorded/);
  });

  it('a backup with one data row removed from a COPY block fails (exit 1) naming the table', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    // The dump lost a row, yet the file is checksummed as it is: only the drill can tell.
    loseOneRow(s.backupDir, b, 'COPY public."Order Lines"');

    const r = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.mismatches).toEqual([{ table: 'public."Order Lines"', expected: 1200, actual: 1199 }]);
    const human = await runCli(['restore-test', String(b.id)], s.env);
    expect(human.exitCode).toBe(1);
    expect(human.stdout).toMatch(/FAILED\n {2}public\."Order Lines": 1,199 rows restored, the dump recorded 1,200/);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
    expect(readLedger(s.backupDir, `select status, error_message from runs where job = 'restore-drill' order by id limit 1`)[0].error_message).toMatch(/public\."Order Lines" has 1199 rows, the dump recorded 1200/);
    expect(JSON.parse((await runCli(['list', '--json'], s.env)).stdout).backups[0].verifiedAt).toBeNull();
  });

  it('a corrupted file fails on the checksum before any restore', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const buf = readFileSync(b.file);
    buf[200] = buf[200]! ^ 0x20;
    writeFileSync(b.file, buf);
    const r = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: false, tables: 0, rowsChecked: 0, error: { code: 'checksum-mismatch' } });
    // no scratch database was ever created
    expect(readLedger(s.backupDir, `select json_extract(details, '$.scratchDb') as db from runs where job = 'restore-drill'`)).toEqual([{ db: null }]);
  });

  it('a killed drill leaves its scratch database, and the next drill drops it', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const bin = await fakePgBin(s.dir, 'exec "$REAL" "$@"');
    const real = await realPgBin();
    writeFileSync(path.join(bin, 'psql'), `#!/bin/sh\nsleep 3\nexec ${real}/psql "$@"\n`);
    writeFileSync(path.join(s.dir, 'slow.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const drill = startCli(['restore-test', String(b.id)], { ...s.env, HYBRID_BACKUP_CONFIG: path.join(s.dir, 'slow.json') });
    let left: string[] = [];
    for (let i = 0; i < 100 && left.length === 0; i++) {
      await sleep(50);
      try {
        left = await scratchDatabases(b.id, s.backupDir);
      } catch {
        // ledger not there yet
      }
    }
    expect(left).toHaveLength(1);
    drill.kill('SIGKILL');
    await drill;
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual(left);

    const next = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(await query(ADMIN_URL, 'select 1 from pg_database where datname = $1', [left[0]])).toEqual([]);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
    expect(readLedger(s.backupDir, `select status from runs where job = 'restore-drill' order by id`)).toEqual([{ status: 'interrupted' }, { status: 'ok' }]);
  });

  it('a drill that takes too long is stopped and its scratch database dropped', async () => {
    const s = setup({ restoreTest: { timeoutMinutes: 0.05 } });
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const bin = await fakePgBin(s.dir, 'exec "$REAL" "$@"');
    writeFileSync(path.join(bin, 'psql'), `#!/bin/sh\nexec sleep 30\n`);
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ restoreTest: { timeoutMinutes: 0.05 }, dump: { pgBinDir: bin } }));
    const t0 = Date.now();
    const r = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).error.message).toMatch(/took longer than 0\.05 minutes and was stopped/);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
  });

  it('runs pg_amcheck when asked', async () => {
    const s = setup({ restoreTest: { amcheck: true } });
    await runCli(['manual'], s.env);
    const r = await runCli(['restore-test', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, amcheck: 'ok' });
  });

  it('is off, with the hint, without RESTORE_TEST_DATABASE_URL', async () => {
    const s = setup();
    const r = await runCli(['restore-test'], { ...s.env, RESTORE_TEST_DATABASE_URL: '' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/restore drills are off: RESTORE_TEST_DATABASE_URL is not set \(hint: set RESTORE_TEST_DATABASE_URL/);
    const sched = JSON.parse((await runCli(['schedule', '--json'], { ...s.env, RESTORE_TEST_DATABASE_URL: '' })).stdout);
    expect(sched.jobs.find((j: { name: string }) => j.name === 'restore-drill')).toMatchObject({ enabled: false });
  });

  it('a supabase-profile backup: the scratch database first gets the platform schemas and roles', async () => {
    const src = await createDatabase('drsb');
    dbs.push(src.name);
    await supabaseShaped(src.url, true);
    const s = setup({ dump: { profile: 'supabase' } });
    const env = { ...s.env, DATABASE_URL: src.url };
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    const r = await runCli(['restore-test', String(b.id), '--json'], env);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.rowsChecked).toBe(b.rowCount);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
  });
});
