/**
 * Every scheduled job doing its real work inside the running service, fired by croner (second-level
 * cron expressions so the test does not wait for 03:00): the daily backup and its offsite upload,
 * retention, the restore drill, the Supabase poll against the fake Management API, the monitor and
 * its alert, and metrics.prom rewritten after the jobs.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, tempDir } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { dailyProject, FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { SERVICE_KEY } from '../helpers/fake-storage.js';
import { FakeStorageWithList } from '../helpers/fake-storage-list.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql, query } from '../helpers/pg.js';
import { until } from '../helpers/wait.js';
import { Receiver } from '../helpers/webhook-receiver.js';

let db: { name: string; url: string };
let api: FakeManagementApi;
// with the list endpoint: the drill after a local one drills the offsite copy, which lists the target
let storage: FakeStorageWithList;
let hook: Receiver;
const dirs: string[] = [];

beforeAll(async () => {
  db = await createDatabase('sch');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1500) g;`);
  api = await new FakeManagementApi().start();
  api.state = dailyProject();
  storage = await new FakeStorageWithList().start();
  hook = await new Receiver().start();
});
afterAll(async () => {
  await api.stop();
  await storage.stop();
  await hook.stop();
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

type Run = { job: string; trigger: string; status: string; details: string | null; error_message: string | null };

describe('scheduled jobs in the service', () => {
  it('backup (with its offsite copy), prune, restore drill, Supabase poll and monitor all run on their schedule and do their work', { timeout: 240_000 }, async () => {
    const dir = tempDir('hbj');
    dirs.push(dir);
    const backupDir = path.join(dir, 'b');
    const cfg = path.join(dir, 'c.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        timezone: 'UTC',
        dump: { profile: 'full' },
        offsite: { prefix: `${path.basename(dir)}/` },
        supabase: { requestTimeoutSeconds: 30, maxRetries: 0 }, // the fake API answers at once: the timeout only bounds a failure
        // every job every 2 seconds, staggered; the monitor last, once there is something to see
        schedules: { backup: '*/2 * * * * *', prune: '1-59/2 * * * * *', 'restore-drill': '1-59/2 * * * * *', 'supabase-poll': '*/2 * * * * *', monitor: '1-59/2 * * * * *' },
      }),
    );
    const env = {
      DATABASE_URL: db.url,
      BACKUP_DIR: backupDir,
      HYBRID_BACKUP_CONFIG: cfg,
      HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock'),
      RESTORE_TEST_DATABASE_URL: ADMIN_URL,
      SUPABASE_URL: storage.url,
      SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY,
      SUPABASE_API_URL: api.url,
      SUPABASE_PROJECT_REF: REF,
      SUPABASE_ACCESS_TOKEN: TOKEN,
      ALERT_WEBHOOK_URL: hook.url,
    };
    const started = Date.now();
    const d = await startDaemon(env);
    const jobs = ['backup', 'prune', 'restore-drill', 'supabase-poll', 'monitor'];
    const scheduledOk = () =>
      new Set(readLedger<{ job: string }>(backupDir, `select distinct job from runs where trigger = 'schedule' and status = 'ok'`).map((r) => r.job));
    // done when every job has run ok on schedule, a drill has verified a backup, a backup is offsite,
    // and the drill after the first has drilled that offsite copy (the weekly drill alternates)
    const done = () =>
      jobs.every((j) => scheduledOk().has(j)) &&
      readLedger(backupDir, `select 1 from backups where verified_at is not null`).length > 0 &&
      readLedger(backupDir, `select 1 from backups where offsite_status = 'uploaded'`).length > 0 &&
      readLedger(backupDir, `select 1 from restore_drills where ok = 1 and source = 'offsite:supabase'`).length > 0;
    // the deadline only bounds a failure, which the expectations below then explain
    const finished = await until(done, 'every job to run ok on its schedule, a drill to verify a backup and a backup to be offsite', 150_000, 200).then(
      () => true,
      () => false,
    );
    await stopDaemon(d);

    const runs = readLedger<Run>(backupDir, `select job, trigger, status, details, error_message from runs where trigger = 'schedule' order by id`);
    // a drill that fires before the first backup exists fails, saying so (nothing has been proven yet)
    const failed = runs.filter((r) => r.status !== 'ok' && r.status !== 'interrupted' && !(r.job === 'restore-drill' && r.error_message === 'there is no ok backup yet'));
    expect(failed, JSON.stringify(failed) + d.output()).toEqual([]);
    for (const j of jobs) expect(scheduledOk().has(j), `${j} never ran ok on schedule:\n${d.output()}`).toBe(true);
    expect(finished, `no drill verified a backup, no backup went offsite, or no drill of the offsite copy passed, in 150 s:\n${d.output()}`).toBe(true);

    // the scheduled backup's offsite copy: in Storage, with its checksum
    const up = readLedger<{ id: number; file: string; sha256: string; offsite_path: string }>(backupDir, `select id, file, sha256, offsite_path from backups where offsite_status = 'uploaded' order by id limit 1`)[0]!;
    expect(storage.objects.get(up.offsite_path)?.metadata).toMatchObject({ sha256: up.sha256 });
    expect(readLedger(backupDir, `select kind from backups where id = ?`, up.id)).toEqual([{ kind: 'daily' }]);

    // the scheduled drill: passed with the dump's own row count, and left no scratch database
    const drill = readLedger<{ ok: number; rows_checked: number; scratch_db: string; source: string }>(backupDir, `select ok, rows_checked, scratch_db, source from restore_drills order by id limit 1`)[0]!;
    expect(drill).toMatchObject({ ok: 1, rows_checked: 1500, source: 'local' });
    // the next one drilled the copy in the target, downloaded from the fake Storage
    const offsite = readLedger<{ ok: number; rows_checked: number; source: string }>(backupDir, `select ok, rows_checked, source from restore_drills where id > (select min(id) from restore_drills) order by id limit 1`)[0]!;
    expect(offsite).toMatchObject({ ok: 1, rows_checked: 1500, source: 'offsite:supabase' });
    expect(await query(ADMIN_URL, 'select 1 from pg_database where datname = $1', [drill.scratch_db])).toEqual([]);

    // the scheduled poll saw the managed layer through the fake Management API
    expect(readLedger(backupDir, `select ok, project_ref from supabase_snapshots order by id limit 1`)).toEqual([{ ok: 1, project_ref: REF }]);
    expect(api.violations).toEqual([]);

    // the scheduled monitor recorded its checks, and every change of its status reached the webhook
    const mons = readLedger<{ status: string; checks: string }>(backupDir, `select status, checks from monitor_results order by id`);
    expect(mons.length).toBeGreaterThan(0);
    expect(JSON.parse(mons.at(-1)!.checks).map((c: { name: string }) => c.name)).toEqual(expect.arrayContaining(['local-backup-age', 'restore-drill', 'offsite-copy:supabase']));
    const changes = mons.slice(1).map((m, i) => [mons[i]!.status, m.status]).filter(([from, to]) => from !== to);
    const alerted = hook.received.filter((r) => r.body?.event === 'monitor-status-changed').map((r) => [r.body.details.from, r.body.details.to]);
    expect(alerted).toEqual(changes);

    // metrics.prom: rewritten after the jobs, parseable, with each scheduled job's last success
    const prom = path.join(backupDir, 'metrics.prom');
    expect(existsSync(prom)).toBe(true);
    const families = parsePrometheusTextFormat(readFileSync(prom, 'utf8')) as Array<{ name: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>;
    const success = families.find((f) => f.name === 'hybrid_backup_job_last_success_timestamp_seconds')!;
    for (const j of jobs) {
      const m = success.metrics.find((x) => x.labels?.job === j);
      expect(Number(m?.value), `metrics for ${j}`).toBeGreaterThanOrEqual(Math.floor(started / 1000)); // a success of this service's
    }
  });
});
