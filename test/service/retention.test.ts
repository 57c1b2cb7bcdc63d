/**
 * Retention through the real CLI: minKeep, pins, pre-change days, a failed newest scheduled
 * backup, files the ledger does not list, grandfather-father-son keeps, --dry-run and --as-of.
 * Ages are set by moving backups' times in the ledger; the files are real.
 */
import { copyFileSync, existsSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { fakePgBin } from '../helpers/pgbin.js';
import { until } from '../helpers/wait.js';
import { Receiver } from '../helpers/webhook-receiver.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';

let db: { name: string; url: string };
const dirs: string[] = [];
beforeAll(async () => {
  db = await createDatabase('ret');
  await psql(db.url, 'create table t (id int); insert into t values (1), (2);');
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup(retention: Record<string, number> = {}) {
  const dir = tempDir('hbr');
  dirs.push(dir);
  const backupDir = path.join(dir, 'b');
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ timezone: 'UTC', retention }));
  const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') };
  return { dir, backupDir, env };
}

function ledger(backupDir: string): Database.Database {
  return new Database(path.join(backupDir, 'ledger.db'));
}

/** Takes `n` real backups, then spreads them back in time: the newest `newestAgeDays` old, one a day before that. */
async function backups(env: Record<string, string>, n: number, newestAgeDays: number, asOf = Date.now()): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await runCli(['manual', `backup ${i}`, '--json'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    ids.push(JSON.parse(r.stdout).id);
  }
  const l = ledger(env.BACKUP_DIR!);
  ids.forEach((id, i) => {
    const at = new Date(asOf - (newestAgeDays + (n - 1 - i)) * 86_400_000).toISOString();
    l.prepare('update backups set created_at = ? where id = ?').run(at, id);
  });
  l.close();
  return ids;
}

const prune = async (env: Record<string, string>, ...args: string[]) => {
  const r = await runCli(['prune', '--json', ...args], env);
  return { ...r, doc: r.exitCode === 0 ? JSON.parse(r.stdout) : JSON.parse(r.stdout || '{}') };
};
const ids = (list: Array<{ id: number }>) => list.map((b) => b.id).sort((a, b) => a - b);

describe('retention', () => {
  it('never deletes the newest minKeep ok backups, whatever their age; deletes files and sidecars of the rest', async () => {
    const s = setup({ days: 30, minKeep: 7 });
    const all = await backups(s.env, 10, 40);
    const files = readLedger(s.backupDir, 'select id, file from backups order by id');
    const r = await prune(s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.doc.dryRun).toBe(false);
    expect(ids(r.doc.deleted)).toEqual(all.slice(0, 3));
    expect(ids(r.doc.kept)).toEqual(all.slice(3));
    expect(r.doc.deleted[0].status).toBe('pruned');
    expect(r.doc.kept.every((b: { keptBecause: string[] }) => /newest 7 ok backups/.test(b.keptBecause.join()))).toBe(true);
    for (const f of files) {
      const gone = all.slice(0, 3).includes(f.id);
      expect(existsSync(f.file), f.file).toBe(!gone);
      expect(existsSync(`${f.file}.meta.json`)).toBe(!gone);
    }
    expect(readLedger(s.backupDir, `select count(*) as n from backups where status = 'pruned' and pruned_at is not null`)[0].n).toBe(3);
    expect(readLedger(s.backupDir, `select status from runs where job = 'prune'`)).toEqual([{ status: 'ok' }]);
    // prune again: nothing more to do
    expect((await prune(s.env)).doc.deleted).toEqual([]);
  });

  it('keeps the newest minKeep of each database: backups of another (or an empty) one never push them out', async () => {
    const s = setup({ days: 30, minKeep: 3 });
    const ours = await backups(s.env, 4, 40);
    // DATABASE_URL pointed at an empty database for a while: five backups of it, newer
    const empty = await createDatabase('retempty');
    try {
      const theirs = await backups({ ...s.env, DATABASE_URL: empty.url }, 5, 0);
      const r = await prune(s.env, '--dry-run');
      expect(r.exitCode, r.stderr).toBe(0);
      // the protected database keeps its newest three; the empty dumps count for none of them
      expect(ids(r.doc.deleted)).toEqual([ours[0]]);
      expect(r.doc.kept.find((b: any) => b.id === ours[3]).keptBecause.join()).toMatch(new RegExp(`newest 3 ok backups of database "${db.name}"`));
      expect(ids(r.doc.kept)).toEqual([...ours.slice(1), ...theirs].sort((a, b) => a - b));
    } finally {
      await dropDatabase(empty.name);
    }
  });

  it('keeps the newest backup a restore drill proved, however old, beside the newest minKeep', async () => {
    const s = setup({ days: 30, minKeep: 2 });
    const all = await backups(s.env, 5, 40);
    const l = ledger(s.backupDir);
    l.prepare('update backups set verified_at = ? where id in (?, ?)').run(new Date().toISOString(), all[0], all[1]);
    l.close();
    const r = await prune(s.env, '--dry-run');
    expect(r.exitCode, r.stderr).toBe(0);
    // the two newest, and of the drilled ones the newest; the older drilled one and the rest go
    expect(ids(r.doc.kept)).toEqual([all[1], all[3], all[4]]);
    expect(r.doc.kept.find((b: any) => b.id === all[1]).keptBecause.join()).toMatch(/the newest backup a restore drill proved/);
    expect(ids(r.doc.deleted)).toEqual([all[0], all[2]]);
  });

  it('keeps pinned backups and pre-change backups within preChangeDays', async () => {
    const s = setup({ days: 30, preChangeDays: 90, minKeep: 1 });
    const all = await backups(s.env, 5, 40);
    const l = ledger(s.backupDir);
    l.prepare(`update backups set kind = 'pre-change' where id = ?`).run(all[1]);
    l.close();
    const pin = await runCli(['pin', String(all[0])], s.env);
    expect(pin.exitCode).toBe(0);
    expect(pin.stdout).toMatch(new RegExp(`backup ${all[0]} pinned`));
    const r = await prune(s.env);
    expect(ids(r.doc.deleted)).toEqual([all[2], all[3]]);
    const reasons = Object.fromEntries(r.doc.kept.map((b: { id: number; keptBecause: string[] }) => [b.id, b.keptBecause.join('; ')]));
    expect(reasons[all[0]!]).toMatch(/pinned/);
    expect(reasons[all[1]!]).toMatch(/within 90 days/);
    expect(reasons[all[4]!]).toMatch(/the newest ok backup/);
    expect((await runCli(['unpin', String(all[0])], s.env)).exitCode).toBe(0);
    expect(ids((await prune(s.env)).doc.deleted)).toEqual([all[0]]);
  });

  it('refuses to prune while the newest scheduled backup failed, and deletes nothing', async () => {
    const s = setup({ days: 30, minKeep: 1 });
    await backups(s.env, 3, 40);
    const l = ledger(s.backupDir);
    const now = new Date().toISOString();
    l.prepare(`insert into runs (job, trigger, status, started_at, finished_at, error_code, error_message) values ('backup', 'schedule', 'failed', ?, ?, 'db-auth-failed', 'authentication failed')`).run(now, now);
    l.close();
    const r = await runCli(['prune'], s.env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/not pruning: the newest scheduled backup \(run \d+, .*\) failed: authentication failed/);
    const dry = await runCli(['prune', '--dry-run'], s.env);
    expect(dry.exitCode).toBe(1);
    expect(readLedger(s.backupDir, `select count(*) as n from backups where status = 'ok'`)[0].n).toBe(3);
    expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'prune'`)).toEqual([{ status: 'failed', error_code: 'prune-refused' }]);
  });

  it('waits for a backup being written, then prunes; the new backup is never judged or touched mid-write', async () => {
    const s = setup({ days: 1, minKeep: 1 });
    await backups(s.env, 3, 10);
    const slowCfg = path.join(s.dir, 'slow.json');
    writeFileSync(slowCfg, JSON.stringify({ timezone: 'UTC', retention: { days: 1, minKeep: 1 }, dump: { pgBinDir: await fakePgBin(s.dir, 'sleep 3; exec "$REAL" "$@"') } }));
    const writing = startCli(['manual', 'in flight', '--json'], { ...s.env, HYBRID_BACKUP_CONFIG: slowCfg });
    for (let i = 0; i < 200 && readLedger(s.backupDir, 'select 1 from locks').length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    const r = await runCli(['prune', '--json'], s.env);
    const w = await writing;
    expect(w.exitCode, String(w.stderr)).toBe(0);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/waiting for backup run \d+ \(pid \d+, since .*\) to finish/);
    const fresh = JSON.parse(String(w.stdout));
    // the three old ones go; the one written meanwhile is the newest and stays
    expect(JSON.parse(r.stdout).deleted).toHaveLength(3);
    expect(readLedger(s.backupDir, 'select id, status from backups where id = ?', fresh.id)).toEqual([{ id: fresh.id, status: 'ok' }]);
    const [pruneRun] = readLedger(s.backupDir, `select started_at, finished_at from runs where job = 'prune'`);
    expect(Date.parse(pruneRun.finished_at)).toBeGreaterThanOrEqual(Date.parse(fresh.finishedAt));
  });

  it('--as-of plans each rule for another time without moving a clock: minKeep, pins, a failed newest run', async () => {
    const s = setup({ days: 30, preChangeDays: 30, minKeep: 2 });
    const made = await backups(s.env, 4, 0);
    expect((await runCli(['pin', String(made[0])], s.env)).exitCode).toBe(0);
    const in40days = new Date(Date.now() + 40 * 86_400_000).toISOString();
    const plan = await prune(s.env, '--as-of', in40days);
    expect(plan.exitCode, plan.stderr).toBe(0);
    expect(plan.doc.dryRun).toBe(true);
    // all four are past 30 days then: the pinned one and the newest two (minKeep) stay
    expect(ids(plan.doc.deleted)).toEqual([made[1]]);
    expect(plan.doc.kept.find((b: { id: number }) => b.id === made[0]).keptBecause.join("; ")).toMatch(/pinned/);
    expect(plan.doc.kept.find((b: { id: number }) => b.id === made[3]).keptBecause.join("; ")).toMatch(/newest 2/);
    // a scheduled backup that fails in 10 days stops any plan after it, not one before it
    const l = ledger(s.backupDir);
    const failedAt = new Date(Date.now() + 10 * 86_400_000).toISOString();
    l.prepare(`insert into runs (job, trigger, status, started_at, finished_at, error_code, error_message) values ('backup', 'schedule', 'failed', ?, ?, 'db-unreachable', 'connection refused')`).run(failedAt, failedAt);
    l.close();
    const after = await runCli(['prune', '--as-of', in40days], s.env);
    expect(after.exitCode).toBe(1);
    expect(after.stderr).toMatch(/not pruning: the newest scheduled backup .* failed: connection refused/);
    expect((await prune(s.env, '--as-of', new Date(Date.now() + 5 * 86_400_000).toISOString())).doc.deleted).toEqual([]);
    // planning changed nothing
    expect(readLedger(s.backupDir, `select count(*) as n from backups where status = 'ok'`)[0].n).toBe(4);
  });

  it('never touches files the ledger does not list', async () => {
    const s = setup({ days: 1, minKeep: 1 });
    await backups(s.env, 3, 10);
    const strays = ['20200101T030000Z_daily.sql', '20200101T030000Z_daily.sql.meta.json', 'notes.txt', 'old.sql.gz'];
    for (const f of strays) writeFileSync(path.join(s.backupDir, f), 'not mine');
    const r = await prune(s.env);
    expect(r.doc.deleted).toHaveLength(2);
    for (const f of strays) expect(existsSync(path.join(s.backupDir, f)), f).toBe(true);
  });

  it('--dry-run changes nothing; --as-of plans for another time', async () => {
    const s = setup({ days: 30, minKeep: 1 });
    const all = await backups(s.env, 3, 20);
    const before = readdirSync(s.backupDir).sort();
    const now = await prune(s.env, '--dry-run');
    expect(now.doc).toMatchObject({ dryRun: true, deleted: [] });
    const later = await prune(s.env, '--dry-run', '--as-of', new Date(Date.now() + 15 * 86_400_000).toISOString());
    expect(ids(later.doc.deleted)).toEqual([all[0], all[1]]);
    const human = await runCli(['prune', '--dry-run', '--as-of', new Date(Date.now() + 15 * 86_400_000).toISOString()], s.env);
    expect(human.stdout).toMatch(/would delete 2 backups/);
    expect(human.stdout).toMatch(/dry run: nothing was changed/);
    expect(readdirSync(s.backupDir).sort()).toEqual(before);
    expect(readLedger(s.backupDir, `select count(*) as n from backups where status = 'ok'`)[0].n).toBe(3);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'prune'`)[0].n).toBe(0);
    const bad = await runCli(['prune', '--as-of', 'next tuesday'], s.env);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/invalid asOf for prune: is not an ISO-8601 time/);
  });

  it('keeps the newest backup of recent weeks and months (grandfather-father-son)', async () => {
    const s = setup({ days: 7, minKeep: 1, keepWeekly: 4, keepMonthly: 3 });
    const [first] = await backups(s.env, 1, 0);
    const l = ledger(s.backupDir);
    const row = l.prepare('select * from backups where id = ?').get(first) as Record<string, unknown>;
    // one daily backup at 03:00 UTC from 1 April to 30 June 2026, as copies of the real one
    const days: string[] = [];
    for (let d = Date.UTC(2026, 3, 1, 3); d <= Date.UTC(2026, 5, 30, 3); d += 86_400_000) days.push(new Date(d).toISOString());
    const insert = l.prepare(
      `insert into backups (run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, database, source, source_system_id, table_count) values (null, 'daily', null, ?, ?, ?, 'none', 'full', 'ok', ?, ?, ?, ?, ?)`,
    );
    const byDay = new Map<string, number>();
    for (const at of days) {
      const file = path.join(s.backupDir, `${at.replace(/[-:]/g, '').replace(/\.\d+Z/, 'Z')}_daily.sql`);
      copyFileSync(row.file as string, file);
      // copies of the same database's backup (minKeep counts per database)
      byDay.set(at.slice(0, 10), Number(insert.run(file, row.bytes, row.sha256, at, row.database, row.source, row.source_system_id, row.table_count).lastInsertRowid));
    }
    l.prepare('update backups set created_at = ? where id = ?').run('2026-03-01T03:00:00.000Z', first);
    l.close();

    const r = await prune(s.env, '--as-of', '2026-06-30T12:00:00Z');
    expect(r.exitCode, r.stderr).toBe(0);
    const keptDays = ['2026-04-30', '2026-05-31', '2026-06-14', '2026-06-21', '2026-06-24', '2026-06-25', '2026-06-26', '2026-06-27', '2026-06-28', '2026-06-29', '2026-06-30'];
    expect(ids(r.doc.kept)).toEqual(keptDays.map((d) => byDay.get(d)!).sort((a, b) => a - b));
    expect(r.doc.deleted).toHaveLength(days.length + 1 - keptDays.length);
    const why = Object.fromEntries(r.doc.kept.map((b: { id: number; keptBecause: string[] }) => [b.id, b.keptBecause.join('; ')]));
    expect(why[byDay.get('2026-06-14')!]).toBe('weekly keep (2026-W24)');
    expect(why[byDay.get('2026-04-30')!]).toBe('monthly keep (2026-04)');
    expect(why[byDay.get('2026-06-28')!]).toMatch(/within 7 days.*weekly keep \(2026-W26\)/);
    expect(why[byDay.get('2026-06-30')!]).toMatch(/the newest ok backup.*weekly keep \(2026-W27\).*monthly keep \(2026-06\)/);
  });

  it('finishes deleting the file of a backup pruned by a run that was cut short', async () => {
    const s = setup({ days: 30, minKeep: 1 });
    const all = await backups(s.env, 2, 5);
    const [b] = readLedger(s.backupDir, 'select file from backups where id = ?', all[0]);
    const l = ledger(s.backupDir);
    l.prepare(`update backups set status = 'pruned' where id = ?`).run(all[0]);
    l.close();
    expect(existsSync(b.file)).toBe(true);
    expect((await prune(s.env)).exitCode).toBe(0);
    expect(existsSync(b.file)).toBe(false);
  });
  it('trusts the disk: backups whose files were deleted by hand become missing, count for nothing, and nothing else is deleted', async () => {
    const receiver = await new Receiver().start();
    try {
      const s = setup({ days: 30, minKeep: 3 });
      const env = { ...s.env, ALERT_WEBHOOK_URL: receiver.url };
      const all = await backups(env, 6, 31); // 31 to 36 days old: every one past retention
      const files = readLedger<{ id: number; file: string }>(s.backupDir, 'select id, file from backups order by id');
      copyFileSync(files[3]!.file, path.join(s.dir, 'kept-aside'));
      for (const f of files.slice(3)) unlinkSync(f.file); // the newest three, gone
      const dry = await prune(env, '--dry-run');
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect(dry.doc.deleted).toEqual([]);
      expect(ids(dry.doc.missing)).toEqual(all.slice(3));
      expect(readLedger(s.backupDir, `select count(*) as n from backups where status = 'missing'`)[0].n).toBe(0); // a dry run changes nothing

      const r = await prune(env);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.doc.deleted).toEqual([]);
      expect(ids(r.doc.kept)).toEqual(all.slice(0, 3));
      expect(ids(r.doc.missing)).toEqual(all.slice(3));
      expect(r.doc.notes.join('\n')).toMatch(/only 3 ok backups with their files on disk, not more than retention.minKeep \(3\): nothing is deleted/);
      for (const f of files.slice(0, 3)) expect(existsSync(f.file), f.file).toBe(true); // the only files left stay
      expect(readLedger(s.backupDir, 'select id, status from backups order by id').map((b: any) => b.status)).toEqual(['ok', 'ok', 'ok', 'missing', 'missing', 'missing']);

      const human = await runCli(['prune', '--dry-run'], env);
      expect(human.stdout).toMatch(/nothing to delete/);
      const list = await runCli(['list'], env);
      expect(list.stdout.match(/ missing /g)?.length).toBe(3);
      const monitor = await runCli(['monitor', '--json'], env);
      const checksum = JSON.parse(monitor.stdout).checks.find((c: any) => c.name === 'local-backup-checksum');
      expect(checksum).toMatchObject({ status: 'critical' });
      expect(checksum.message).toMatch(/file missing/);
      await until(() => receiver.received.filter((x) => x.body.event === 'backup-missing').length === 3, 'three backup-missing alerts');
      expect(receiver.received.find((x) => x.body.event === 'backup-missing')!.body.severity).toBe('critical');
      const restore = await runCli(['restore', String(all[5]), '--target', 'postgresql://postgres@127.0.0.1:5432/nowhere_hb'], env);
      expect(restore.exitCode).toBe(1);
      expect(restore.stderr).toMatch(/cannot be restored: its file is gone from disk/);

      // a file put back makes its backup ok again
      copyFileSync(path.join(s.dir, 'kept-aside'), files[3]!.file);
      const verify = await runCli(['verify', String(all[3]), '--json'], env);
      expect(verify.exitCode, verify.stderr).toBe(0);
      expect(readLedger(s.backupDir, 'select status from backups where id = ?', all[3])[0].status).toBe('ok');
    } finally {
      await receiver.stop();
    }
  });
});
