/**
 * Restore drills against the real PostgreSQL: a good backup passes with the exact row total, a
 * backup missing one row fails naming the table, a corrupted file fails on its checksum before
 * any restore, and the scratch database is gone afterwards in every case — even when the drill
 * is killed (the next drill cleans up).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseOneRow, readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql, query } from '../helpers/pg.js';
import { fakePgBin, realPgBin } from '../helpers/pgbin.js';
import { supabaseShaped } from '../helpers/supabase-fixture.js';
import { until } from '../helpers/wait.js';

/** A DATABASE_URL nothing listens on. */
const UNREACHABLE = 'postgresql://postgres@127.0.0.1:1/nowhere';

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

/** What a drill must leave as it found it on the shared server: databases, roles, role settings, memberships. */
async function serverState() {
  return {
    databases: (await query(ADMIN_URL, `select datname from pg_database where datname like 'hb_drill_%' order by 1`)).map((r) => r.datname),
    roles: (await query(ADMIN_URL, 'select rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolconnlimit from pg_roles order by 1')),
    settings: (await query(ADMIN_URL, 'select setdatabase, setrole::regrole::text as r, setconfig from pg_db_role_setting where setdatabase = 0 order by 2')),
    members: (await query(ADMIN_URL, 'select roleid::regrole::text as r, member::regrole::text as m from pg_auth_members order by 1, 2')),
  };
}

/** Records a file's new checksum and size in the ledger, as if it had been written so. */
function rehash(backupDir: string, id: number, file: string): void {
  const data = readFileSync(file);
  const l = new Database(path.join(backupDir, 'ledger.db'));
  l.prepare('update backups set sha256 = ?, bytes = ? where id = ?').run(createHash('sha256').update(data).digest('hex'), data.length, id);
  l.close();
}

/**
 * A psql that answers for its version, then holds every other call until the process that started
 * it is gone (killed, or stopped on a timeout): a drill is caught mid-restore however slow the machine.
 */
async function hangingPsqlBin(dir: string): Promise<string> {
  const bin = await fakePgBin(dir, 'exec "$REAL" "$@"');
  writeFileSync(path.join(bin, 'psql'), `#!/bin/sh\nif [ "$1" = "--version" ]; then exec ${await realPgBin()}/psql --version; fi\nwhile kill -0 $PPID 2>/dev/null; do sleep 0.1; done\nexit 1\n`);
  return bin;
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
    expect(doc).toMatchObject({ backupId: b.id, ok: true, tables: 2, rowsChecked: 1500, mismatches: [], scratchDropped: true });
    expect(doc).not.toHaveProperty('scratchDropError');
    expect(doc.durationMs).toBeGreaterThan(0);
    expect(doc.scratchDatabase).toMatch(new RegExp(`^hb_drill_${b.id}_\\d{8}t\\d{6}z_[0-9a-f]{6}$`));
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
    const list = JSON.parse((await runCli(['list', '--json'], s.env)).stdout);
    expect(list.backups[0].verifiedAt).not.toBeNull();
    expect(readLedger(s.backupDir, 'select ok, tables, rows_checked from restore_drills')).toEqual([{ ok: 1, tables: 2, rows_checked: 1500 }]);
    const human = await runCli(['restore-test', String(b.id)], s.env);
    expect(human.stdout).toMatch(/drill of backup \d+ PASSED: 2 tables, 1,500 rows exactly as the dump recorded; the data of 2 tables byte for byte; \d+ catalog objects as they were, in .*\n {2}note: roles are cluster-wide .*\n {2}scratch database hb_drill_\S+ dropped$/);
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
    expect(doc).toMatchObject({ ok: false, tables: 0, rowsChecked: 0, error: { code: 'checksum-mismatch' }, scratchDropped: null });
    // no scratch database was ever created, and the drill says so
    expect(readLedger(s.backupDir, `select json_extract(details, '$.scratchDb') as db from runs where job = 'restore-drill'`)).toEqual([{ db: null }]);
    // (the drill marked that backup corrupt: no drill runs for it again) another one, on screen
    const b2 = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    writeFileSync(b2.file, readFileSync(b2.file).subarray(0, 300));
    const human = await runCli(['restore-test', String(b2.id)], s.env);
    expect(human.exitCode).toBe(1);
    expect(human.stdout).toMatch(/^drill of backup \d+ FAILED: backup \d+ fails its checksum.*\n {2}hint: the file is damaged; drill another backup\n {2}no scratch database was created$/);
  });

  it('a killed drill leaves its scratch database, and the next drill drops it', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const bin = await hangingPsqlBin(s.dir);
    writeFileSync(path.join(s.dir, 'slow.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const drill = startCli(['restore-test', String(b.id)], { ...s.env, HYBRID_BACKUP_CONFIG: path.join(s.dir, 'slow.json') });
    let left: string[] = [];
    await until(async () => {
      left = await scratchDatabases(b.id, s.backupDir).catch(() => []); // the drill's run not recorded yet
      return left.length > 0;
    }, 'the drill to create its scratch database', 60_000);
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
    // 12 s: ample for the steps before the restore (verify, CREATE DATABASE) on a loaded machine
    const s = setup({ restoreTest: { timeoutMinutes: 0.2 } });
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    // psql answers for its version, then never finishes a restore: only the timeout ends the drill
    // (were it not to stop psql, the drill would hang and the test fail on its own timeout)
    const bin = await hangingPsqlBin(s.dir);
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ restoreTest: { timeoutMinutes: 0.2 }, dump: { pgBinDir: bin } }));
    const r = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(r.exitCode).toBe(1);
    // the scratch database was created (the restore had started) and then dropped
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, scratchDropped: true });
    expect(JSON.parse(r.stdout).error.message).toMatch(/took longer than 0\.2 minutes and was stopped/);
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(/drill of backup \d+: restoring into scratch database hb_drill_/);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
  });

  it('runs pg_amcheck when asked', async () => {
    const s = setup({ restoreTest: { amcheck: true } });
    await runCli(['manual'], s.env);
    const r = await runCli(['restore-test', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, amcheck: 'ok' });
  });

  it('without RESTORE_TEST_DATABASE_URL: a throwaway server of its own, removed after; nothing on any other server', async () => {
    const s = setup();
    const env = { ...s.env, RESTORE_TEST_DATABASE_URL: '' };
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    const before = await serverState();
    const r = await runCli(['restore-test', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ backupId: b.id, ok: true, server: 'throwaway', tables: 2, rowsChecked: 1500, scratchDropped: true, fidelity: { tablesDigested: 2, differences: [] } });
    // Other test files drill on this shared server at the same time: its databases are judged by
    // this drill's own scratch name (unique, random-suffixed), its roles and settings whole.
    const after = await serverState();
    expect(doc.scratchDatabase).toMatch(/^hb_drill_\d+_/);
    expect(after.databases).not.toContain(doc.scratchDatabase);
    expect({ ...after, databases: [] }).toEqual({ ...before, databases: [] });
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('hb-drill-') && readLedger(s.backupDir, `select details from runs where job = 'restore-drill'`)[0].details.includes(n))).toEqual([]);
    const human = await runCli(['restore-test'], env);
    expect(human.stdout).toMatch(/PASSED: 2 tables, 1,500 rows exactly as the dump recorded; the data of 2 tables byte for byte/);
    expect(human.stdout).toMatch(/restored on a throwaway PostgreSQL server, now removed/);
    // the weekly drill is on by default, and can be switched off
    expect(JSON.parse((await runCli(['schedule', '--json'], env)).stdout).jobs.find((j: { name: string }) => j.name === 'restore-drill')).toMatchObject({ enabled: true });
    writeFileSync(path.join(s.dir, 'off.json'), JSON.stringify({ restoreTest: { enabled: false } }));
    const off = JSON.parse((await runCli(['schedule', '--json'], { ...env, HYBRID_BACKUP_CONFIG: path.join(s.dir, 'off.json') })).stdout);
    expect(off.jobs.find((j: { name: string }) => j.name === 'restore-drill')).toMatchObject({ enabled: false });
  });

  it('a row changed in the file (same row count, checksum re-recorded) fails the drill naming the table: the data is compared, not only counted', async () => {
    const s = setup();
    const env = { ...s.env, RESTORE_TEST_DATABASE_URL: '' };
    const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
    const text = readFileSync(b.file, 'utf8').replace('\tcustomer 42\n', '\tcustomer 4two\n');
    writeFileSync(b.file, text);
    rehash(s.backupDir, b.id, b.file);
    const r = await runCli(['restore-test', String(b.id), '--json'], env);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(false);
    expect(doc.mismatches).toEqual([]); // the counts agree: only the data tells
    expect(doc.fidelity.differences).toEqual([expect.stringMatching(/^public\.customers: data differs/)]);
    const mon = JSON.parse((await runCli(['monitor', '--json'], env)).stdout).checks.find((c: { name: string }) => c.name === 'restore-drill');
    expect(mon).toMatchObject({ status: 'critical', message: expect.stringMatching(/public\.customers: data differs/) });
  });

  it('a drill killed with SIGKILL leaves its throwaway server; the next drill stops and removes it', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], { ...s.env, RESTORE_TEST_DATABASE_URL: '' })).stdout);
    const bin = await hangingPsqlBin(s.dir);
    writeFileSync(path.join(s.dir, 'slow.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const env = { ...s.env, RESTORE_TEST_DATABASE_URL: '', HYBRID_BACKUP_CONFIG: path.join(s.dir, 'slow.json') };
    const drill = startCli(['restore-test', String(b.id)], env);
    let dir = '';
    await until(() => {
      const d = readLedger(s.backupDir, `select json_extract(details, '$.throwaway') as d from runs where job = 'restore-drill'`)[0]?.d;
      dir = d ?? '';
      return !!dir;
    }, 'the drill to start its throwaway server', 60_000);
    drill.kill('SIGKILL');
    await drill;
    expect(existsSync(dir)).toBe(true);
    const next = await runCli(['restore-test', String(b.id), '--json'], { ...s.env, RESTORE_TEST_DATABASE_URL: '' });
    expect(next.exitCode, next.stderr).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(readLedger(s.backupDir, `select status from runs where job = 'restore-drill' order by id`)).toEqual([{ status: 'interrupted' }, { status: 'ok' }]);
  });

  it('a supabase-profile backup: the scratch database first gets the platform as the backup recorded it, without the source database', async () => {
    const src = await createDatabase('drsb');
    dbs.push(src.name);
    await supabaseShaped(src.url, true);
    const s = setup({ dump: { profile: 'supabase' } });
    const b = JSON.parse((await runCli(['manual', '--json'], { ...s.env, DATABASE_URL: src.url })).stdout);
    expect(JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8')).platform.schemas).toContain('auth');
    // At drill time the source database cannot be reached.
    const r = await runCli(['restore-test', String(b.id), '--json'], { ...s.env, DATABASE_URL: UNREACHABLE });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: true, tables: b.tableCount, rowsChecked: b.rowCount, mismatches: [], scratchDropped: true });
    expect(doc.rowsChecked).toBeGreaterThan(50);
    expect(r.stderr).not.toMatch(/source database/);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
  });

  it('a supabase-profile backup whose sidecar lacks the platform layout (an older version) reads the source database, saying so', async () => {
    const src = await createDatabase('drsbold');
    dbs.push(src.name);
    await supabaseShaped(src.url, true);
    const s = setup({ dump: { profile: 'supabase' } });
    const b = JSON.parse((await runCli(['manual', '--json'], { ...s.env, DATABASE_URL: src.url })).stdout);
    const sidecarFile = `${b.file}.meta.json`;
    const { platform, ...older } = JSON.parse(readFileSync(sidecarFile, 'utf8'));
    expect(platform.ddl).toMatch(/CREATE TABLE auth\.users/);
    writeFileSync(sidecarFile, JSON.stringify(older, null, 2));

    const r = await runCli(['restore-test', String(b.id), '--json'], { ...s.env, DATABASE_URL: src.url });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, rowsChecked: b.rowCount, scratchDropped: true });
    const note = new RegExp(`backup ${b.id} has no platform layout \\(taken by an older version\\): reading the platform schemas from the source database \\(DATABASE_URL\\) as it is now`);
    expect(r.stderr).toMatch(note);
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(note);

    // and without the source database such a drill cannot prepare its scratch database
    const off = await runCli(['restore-test', String(b.id), '--json'], { ...s.env, DATABASE_URL: UNREACHABLE });
    expect(off.exitCode).toBe(1);
    const doc = JSON.parse(off.stdout);
    expect(doc).toMatchObject({ ok: false, scratchDropped: true, error: { code: 'restore-test-failed' } });
    expect(doc.error.message).toMatch(/cannot read the platform schemas of the source database: cannot reach database "nowhere" on 127\.0\.0\.1:1/);
    expect(off.stderr).toMatch(note);
    expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
  });

  it('a scratch database that cannot be dropped is reported as left, with how to drop it by hand; the next drill drops it', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    // psql restores, then makes the scratch database a template, which DROP DATABASE refuses
    const bin = await fakePgBin(s.dir, 'exec "$REAL" "$@"');
    const real = await realPgBin();
    writeFileSync(
      path.join(bin, 'psql'),
      `#!/bin/sh
${real}/psql "$@" || exit $?
db=
for a in "$@"; do case "$a" in --dbname=*) db="\${a#--dbname=}";; esac; done
[ -n "$db" ] || exit 0
exec ${real}/psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I IS_TEMPLATE true', current_database()); END $$;
SQL
`,
    );
    writeFileSync(path.join(s.dir, 'stuck.json'), JSON.stringify({ dump: { pgBinDir: bin } }));
    const stuck = { ...s.env, HYBRID_BACKUP_CONFIG: path.join(s.dir, 'stuck.json') };
    const left: string[] = [];
    try {
      const r = await runCli(['restore-test', String(b.id), '--json'], stuck);
      // the backup restored and counted: the drill passed; only the clean-up failed
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      left.push(doc.scratchDatabase);
      expect(doc).toMatchObject({ ok: true, rowsChecked: 1500, scratchDropped: false });
      expect(doc.scratchDropError).toMatch(/cannot drop a template database/);
      expect(await scratchDatabases(b.id, s.backupDir)).toEqual([doc.scratchDatabase]);

      const human = await runCli(['restore-test', String(b.id)], stuck);
      expect(human.exitCode, human.stderr).toBe(0);
      const name = /scratch database (hb_drill_\S+) was NOT dropped/.exec(human.stdout)?.[1];
      expect(name, human.stdout).toBeDefined();
      left.push(name!);
      expect(human.stdout).toMatch(/PASSED: 2 tables, 1,500 rows/);
      expect(human.stdout).toContain(`scratch database ${name} was NOT dropped: `);
      expect(human.stdout).toContain(`hint: drop it by hand: psql "$RESTORE_TEST_DATABASE_URL" -c 'DROP DATABASE "${name}"' (the next drill also tries)`);
      expect(human.stdout).not.toMatch(/ dropped$/m);
      expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toContain(`could not drop scratch database ${name}`);
      expect((await scratchDatabases(b.id, s.backupDir)).sort()).toEqual([...left].sort());

      // once droppable again, the next drill drops what the earlier ones left
      for (const d of left) await query(ADMIN_URL, `ALTER DATABASE "${d}" IS_TEMPLATE false`);
      const next = await runCli(['restore-test', String(b.id)], s.env);
      expect(next.exitCode, next.stderr).toBe(0);
      expect(next.stdout).toMatch(/ scratch database hb_drill_\S+ dropped$/m);
      expect(await scratchDatabases(b.id, s.backupDir)).toEqual([]);
    } finally {
      for (const d of left) {
        await query(ADMIN_URL, `ALTER DATABASE "${d}" IS_TEMPLATE false`).catch(() => {});
        await dropDatabase(d);
      }
    }
  });
});
