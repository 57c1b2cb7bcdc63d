/** supabase-config (policy, --apply-schedule), supabase-restore-pitr, and the poller in the service. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { until } from '../helpers/wait.js';
import { dailyProject, FakeManagementApi, pitrProject, REF, TOKEN } from '../helpers/fake-supabase.js';

let api: FakeManagementApi;
const dirs: string[] = [];
beforeAll(async () => {
  api = await new FakeManagementApi().start();
});
afterEach(() => expect(api.violations).toEqual([]));
afterAll(async () => {
  await api.stop();
  dirs.forEach(removeDir);
});

function setup(config: Record<string, unknown> = {}) {
  const dir = tempDir('hbsp');
  dirs.push(dir);
  const write = (c: Record<string, unknown>) => writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ timezone: 'UTC', supabase: { requestTimeoutSeconds: 30, maxRetries: 1 }, ...c }));
  write(config);
  const backupDir = path.join(dir, 'b');
  const env = { DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/postgres', BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), SUPABASE_API_URL: api.url, SUPABASE_PROJECT_REF: REF, SUPABASE_ACCESS_TOKEN: TOKEN, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') };
  return { dir, backupDir, env, write };
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout);
const item = (doc: { items: Array<{ id: string }> }, id: string) => doc.items.find((i) => i.id === id) as any;

describe('supabase-config', () => {
  it('a PITR project meeting a PITR policy: every item met, exit 0', async () => {
    const s = setup({ supabase: { requestTimeoutSeconds: 30, policy: { requirePitr: true, minPitrDays: 7, maxBackupAgeHours: 1 } } });
    api.state = pitrProject();
    const r = await runCli(['supabase-config', '--json'], s.env);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = json(r);
    expect(doc.met).toBe(true);
    expect(doc.items.filter((i: { status: string }) => i.status === 'not-met')).toEqual([]);
    expect(item(doc, 'pitr')).toMatchObject({ status: 'met', detail: 'PITR on (7 days)' });
    expect(item(doc, 'backup-age').detail).toMatch(/newest PITR restore point is 0\.0 h old/);
  });

  it('a daily-backup project under a PITR policy: each missing item NOT MET with its fix, exit 1', async () => {
    const s = setup({ supabase: { requestTimeoutSeconds: 30, policy: { requirePitr: true, minPitrDays: 14 } } });
    api.state = dailyProject();
    const r = await runCli(['supabase-config', '--json'], s.env);
    expect(r.exitCode).toBe(1);
    const doc = json(r);
    expect(doc.met).toBe(false);
    expect(item(doc, 'pitr')).toMatchObject({ status: 'not-met' });
    expect(item(doc, 'pitr').fix).toMatch(/Project Settings → Add-ons → Point in time recovery .*Pro plan or above and at least the Small compute add-on. API: PATCH \/v1\/projects\/abcdefghijklmnopqrst\/billing\/addons/);
    expect(item(doc, 'pitr-compute')).toMatchObject({ status: 'not-met', detail: 'compute ci_micro' });
    expect(item(doc, 'pitr-days').fix).toMatch(/"addon_variant":"pitr_14"/);
    expect(item(doc, 'retention').fix).toMatch(/7 days on Pro, 14 on Team, up to 30 on Enterprise/);
    const human = await runCli(['supabase-config'], s.env);
    expect(human.stdout).toMatch(/^Supabase backup policy for abcdefghijklmnopqrst: NOT met/);
    expect(human.stdout).toMatch(/NOT MET {2}point-in-time recovery enabled: PITR is off/);
    expect(human.stdout).toMatch(/ {9}fix: Dashboard → Project Settings → Add-ons/);
  });

  it('a stale or failed managed backup, and an unhealthy project, are not met', async () => {
    const s = setup({ supabase: { requestTimeoutSeconds: 30, policy: { maxBackupAgeHours: 26 } } });
    api.state = dailyProject(Date.now() - 3 * 86_400_000);
    api.state.status = 'ACTIVE_UNHEALTHY';
    api.state.backups.unshift({ id: 7, status: 'FAILED', inserted_at: new Date().toISOString(), is_physical_backup: false });
    const doc = json(await runCli(['supabase-config', '--json'], s.env));
    expect(item(doc, 'backup-age').status).toBe('not-met');
    expect(item(doc, 'backup-age').detail).toMatch(/newest completed daily backup is 8\d\.\d h old/);
    expect(item(doc, 'backup-failed')).toMatchObject({ status: 'not-met' });
    expect(item(doc, 'project-health')).toMatchObject({ status: 'not-met', detail: 'project status ACTIVE_UNHEALTHY' });
  });

  it('no access is reported as the one unmet item, with the API error and hint', async () => {
    const s = setup();
    api.queue('GET /database/backups', { status: 403, raw: '' });
    const r = await runCli(['supabase-config', '--json'], s.env);
    expect(r.exitCode).toBe(1);
    expect(json(r).items).toEqual([expect.objectContaining({ id: 'access', status: 'not-met', fix: expect.stringMatching(/read access/) })]);
  });

  it('--apply-schedule moves the daily backup 12 h from the local one, and stops at 3 changes a day', async () => {
    // local daily backup at 03:00 UTC → managed backup at 15:00 UTC
    const s = setup({ schedules: { backup: '0 3 * * *' } });
    api.state = dailyProject();
    const before = json(await runCli(['supabase-config', '--json'], s.env));
    expect(item(before, 'schedule').detail).toMatch(/daily backup at 04:00:00 UTC; 15:00:00 UTC would be 12 h from the local backup/);
    const r = await runCli(['supabase-config', '--apply-schedule', '--json'], s.env);
    const doc = json(r);
    expect(doc.applied).toEqual({ scheduleFor: '15:00:00', previous: '04:00:00' });
    const patch = api.requests.filter((q) => q.method === 'PATCH').at(-1)!;
    expect(JSON.parse(patch.body)).toEqual({ schedule_for: '15:00:00' });
    expect(item(doc, 'schedule').detail).toMatch(/12 h from the local backup: the two layers are evenly spread/);
    // already aligned: nothing sent
    const patches = api.requests.filter((q) => q.method === 'PATCH').length;
    expect(json(await runCli(['supabase-config', '--apply-schedule', '--json'], s.env)).applied).toBeNull();
    expect(api.requests.filter((q) => q.method === 'PATCH').length).toBe(patches);
    // two more changes are allowed, the fourth in 24 hours is refused
    for (const [cron, want] of [['0 4 * * *', '16:00:00'], ['0 5 * * *', '17:00:00']] as const) {
      s.write({ schedules: { backup: cron } });
      expect(json(await runCli(['supabase-config', '--apply-schedule', '--json'], s.env)).applied.scheduleFor).toBe(want);
    }
    s.write({ schedules: { backup: '0 6 * * *' } });
    const refused = await runCli(['supabase-config', '--apply-schedule'], s.env);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/changed 3 times in the last 24 hours; Supabase allows 3/);
  });
});

describe('supabase-restore-pitr', () => {
  it('refuses without the matching --confirm, saying plainly what it would do', async () => {
    const s = setup();
    api.state = pitrProject();
    const to = new Date(Date.now() - 3600_000).toISOString();
    for (const confirm of [[], ['--confirm', 'someotherprojectxxxx']]) {
      const r = await runCli(['supabase-restore-pitr', '--to', to, ...confirm], s.env);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/refusing: this restores the WHOLE project abcdefghijklmnopqrst to .* the project is unavailable until the restore finishes .*--confirm abcdefghijklmnopqrst/);
    }
    expect(api.requests.filter((q) => q.method === 'POST')).toEqual([]);
  });

  it('refuses a time outside the window, and a project without PITR', async () => {
    const s = setup();
    api.state = pitrProject();
    const early = await runCli(['supabase-restore-pitr', '--to', new Date(Date.now() - 30 * 86_400_000).toISOString(), '--confirm', REF], s.env);
    expect(early.exitCode).toBe(2);
    expect(early.stderr).toMatch(/is outside the recovery window/);
    const future = await runCli(['supabase-restore-pitr', '--to', new Date(Date.now() + 3600_000).toISOString(), '--confirm', REF], s.env);
    expect(future.exitCode).toBe(2);
    api.state = dailyProject();
    const daily = await runCli(['supabase-restore-pitr', '--to', new Date().toISOString(), '--confirm', REF], s.env);
    expect(daily.exitCode).toBe(1);
    expect(daily.stderr).toMatch(/does not have point-in-time recovery/);
    expect(api.requests.filter((q) => q.method === 'POST')).toEqual([]);
  });

  it('inside the window: warns, then POSTs integer unix seconds', async () => {
    const s = setup();
    api.state = pitrProject();
    const to = '2026-11-24T09:30:15.789Z';
    api.state.physical = { earliest_physical_backup_date_unix: Date.parse('2026-11-20T00:00:00Z') / 1000, latest_physical_backup_date_unix: Date.parse('2026-11-24T10:00:00Z') / 1000 };
    const r = await runCli(['supabase-restore-pitr', '--to', to, '--confirm', REF, '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/this restores the WHOLE project abcdefghijklmnopqrst to 2026-11-24T09:30:15\.789Z.*starting now/);
    const post = api.requests.filter((q) => q.method === 'POST').at(-1)!;
    expect(post.path).toBe(`/v1/projects/${REF}/database/backups/restore-pitr`);
    expect(JSON.parse(post.body)).toEqual({ recovery_time_target_unix: 1795512615 });
    expect(json(r)).toMatchObject({ projectRef: REF, recoveryTimeTargetUnix: 1795512615 });
    expect(readLedger(s.backupDir, `select status from runs where job = 'supabase-restore-pitr'`)).toEqual([{ status: 'ok' }]);
  });

  it('a restore request the API fails is sent once, never retried, and reported as failed (exit 1)', async () => {
    const s = setup({ supabase: { requestTimeoutSeconds: 30, maxRetries: 3 } });
    api.state = pitrProject();
    const posts = api.requests.filter((q) => q.method === 'POST').length;
    api.queue('POST /database/backups/restore-pitr', { status: 500, raw: '{"message":"internal error"}' });
    const r = await runCli(['supabase-restore-pitr', '--to', new Date(Date.now() - 3_600_000).toISOString(), '--confirm', REF, '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(json(r).error.code).toBe('supabase-unavailable');
    expect(json(r).error.message).toMatch(/500/);
    // a restore may have started: repeating it blindly could restore twice
    expect(api.requests.filter((q) => q.method === 'POST').length - posts).toBe(1);
    expect(readLedger(s.backupDir, `select status from runs where job = 'supabase-restore-pitr'`)).toEqual([{ status: 'failed' }]);
  });
});

describe('the poller in the service', () => {
  it('polls at start-up when the last poll is stale, then on its schedule, logging to supabase-backup.log', async () => {
    const s = setup({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *', 'supabase-poll': '*/2 * * * * *' } });
    api.state = pitrProject();
    const d = await startDaemon(s.env);
    try {
      let runs: any[] = [];
      await until(() => {
        runs = readLedger(s.backupDir, `select trigger, status from runs where job = 'supabase-poll' and status != 'running' order by id`);
        return runs.length >= 2;
      }, 'the start-up poll and a scheduled one to finish', 60_000);
      expect(runs[0]).toEqual({ trigger: 'startup', status: 'ok' });
      expect(runs[1]).toEqual({ trigger: 'schedule', status: 'ok' });
      // a failing poll is recorded and the service carries on
      api.queue('GET /database/backups', { status: 401, raw: '' });
      await until(() => readLedger(s.backupDir, `select 1 from runs where job = 'supabase-poll' and status = 'failed'`).length > 0, 'a scheduled poll to fail on the 401', 60_000);
      expect(readLedger(s.backupDir, `select error_code from runs where job = 'supabase-poll' and status = 'failed'`)[0].error_code).toBe('supabase-unauthorized');
      expect((await runCli(['schedule', '--json'], s.env)).exitCode).toBe(0);
    } finally {
      await stopDaemon(d);
    }
    const log = readFileSync(path.join(s.backupDir, 'supabase-backup.log'), 'utf8');
    expect(log).toMatch(/"message":"project abcdefghijklmnopqrst ACTIVE_HEALTHY; PITR on/);
    expect(log).toMatch(/Supabase poll failed: the Supabase access token is invalid or expired/);
    expect(log).not.toContain(TOKEN);
  });

  it('does not poll at start-up when the last poll is recent, and not at all with supabase.enabled false', async () => {
    const s = setup({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *' } });
    api.state = pitrProject();
    expect((await runCli(['supabase-status'], s.env)).exitCode).toBe(0);
    const d = await startDaemon(s.env);
    // Stopped, the service's log is complete and a start-up poll it began would be in the ledger
    // (finished or interrupted): what the start decided is then known, with no guess at how long it takes.
    expect(await stopDaemon(d)).toBe(0);
    expect(d.output()).toMatch(/service started/);
    expect(d.output()).not.toMatch(/supabase-poll now/);
    expect(readLedger(s.backupDir, `select trigger from runs where job = 'supabase-poll'`)).toEqual([{ trigger: 'cli' }]);
    s.write({ supabase: { enabled: false } });
    const off = await runCli(['schedule', '--json'], s.env);
    expect(json(off).jobs.find((j: { name: string }) => j.name === 'supabase-poll')).toMatchObject({ enabled: false, nextRun: null });
  });
});
