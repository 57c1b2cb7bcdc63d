/**
 * The hybrid monitor, alerts and metrics, end to end: a real database and backups, the fake
 * Management API for the managed layer, a local HTTP receiver for the webhook, and a Prometheus
 * text-format parser for metrics.prom.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseOneRow, readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { dailyProject, FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { Receiver } from '../helpers/webhook-receiver.js';

let db: { name: string; url: string };
let api: FakeManagementApi;
const dirs: string[] = [];

beforeAll(async () => {
  db = await createDatabase('mon');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, repeat(md5(g::text), 10) from generate_series(1, 5000) g;`);
  api = await new FakeManagementApi().start();
});
afterAll(async () => {
  await api.stop();
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup(extraEnv: Record<string, string> = {}) {
  const dir = tempDir('hbm');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ supabase: { requestTimeoutSeconds: 30, maxRetries: 0 } }));
  const backupDir = path.join(dir, 'b');
  const env = {
    DATABASE_URL: db.url,
    BACKUP_DIR: backupDir,
    HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'),
    RESTORE_TEST_DATABASE_URL: ADMIN_URL,
    SUPABASE_API_URL: api.url,
    SUPABASE_PROJECT_REF: REF,
    SUPABASE_ACCESS_TOKEN: TOKEN,
    ...extraEnv,
  };
  return { dir, backupDir, env };
}

/** Everything in order: a backup, retention, a drill, a poll. */
async function healthy(env: Record<string, string>) {
  api.state = dailyProject();
  const b = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
  for (const cmd of [['prune'], ['restore-test'], ['supabase-status']]) {
    const r = await runCli(cmd, env);
    expect(r.exitCode, `${cmd}: ${r.stderr}`).toBe(0);
  }
  return b;
}

async function monitor(env: Record<string, string>) {
  const r = await runCli(['monitor', '--json'], env);
  const doc = JSON.parse(r.stdout);
  return { exitCode: r.exitCode, doc, check: (name: string) => doc.checks.find((c: { name: string }) => c.name === name) };
}

async function manual(env: Record<string, string>) {
  const r = await runCli(['manual', '--json'], env);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** Flips one bit of a backup file, as a failing disk would. */
function flipByte(file: string) {
  const buf = readFileSync(file);
  buf[500] = buf[500]! ^ 1;
  writeFileSync(file, buf);
}

function setCreatedAt(backupDir: string, id: number, hoursAgo: number) {
  const l = new Database(path.join(backupDir, 'ledger.db'));
  l.prepare('update backups set created_at = ? where id = ?').run(new Date(Date.now() - hoursAgo * 3_600_000).toISOString(), id);
  l.close();
}

describe('monitor', () => {
  it('healthy: every check ok (offsite off does not count), exit 0', async () => {
    const s = setup();
    await healthy(s.env);
    const m = await monitor(s.env);
    expect(m.doc.checks.filter((c: { status: string }) => c.status !== 'ok' && c.status !== 'off'), JSON.stringify(m.doc.checks)).toEqual([]);
    expect(m.doc.status).toBe('ok');
    expect(m.exitCode).toBe(0);
    expect(m.check('offsite-copy').status).toBe('off');
    expect(m.doc.checks.map((c: { name: string }) => c.name)).toEqual(
      expect.arrayContaining(['local-backup-age', 'local-backup-checksum', 'local-backup-size', 'disk-space', 'retention', 'restore-drill', 'supabase-poll', 'supabase-backup-age', 'supabase-pitr', 'supabase-project']),
    );
    const human = await runCli(['monitor'], s.env);
    expect(human.stdout).toMatch(/^hybrid monitor: OK/);
    expect(readFileSync(path.join(s.backupDir, 'hybrid-monitor.log'), 'utf8')).toMatch(/"message":"monitor: OK"/);
    expect(readLedger(s.backupDir, 'select status from monitor_results')).toEqual([{ status: 'ok' }, { status: 'ok' }]);
  });

  it('a check that cannot run is UNKNOWN (exit 3), never WARNING or CRITICAL: bad config, bad flag', async () => {
    const s = setup();
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ retention: { days: -1 } }));
    for (const cmd of ['monitor', 'sync-check']) {
      const bad = await runCli([cmd, '--json'], s.env);
      expect(bad.exitCode, bad.stderr).toBe(3);
      expect(JSON.parse(bad.stdout).error.message).toMatch(/retention\.days/);
      const flag = await runCli([cmd, '--no-such-flag'], { ...s.env, HYBRID_BACKUP_CONFIG: '' });
      expect(flag.exitCode, flag.stderr).toBe(3);
      expect(flag.stderr).toMatch(/no-such-flag/);
    }
    // other commands keep the SPEC's 2 for bad configuration
    expect((await runCli(['list'], s.env)).exitCode).toBe(2);
  });

  it('the newest backup\'s age: warning past 26 h, critical past 50 h (exit 1, 2)', async () => {
    const s = setup();
    const b = await healthy(s.env);
    setCreatedAt(s.backupDir, b.id, 30);
    let m = await monitor(s.env);
    expect(m.check('local-backup-age')).toMatchObject({ status: 'warning' });
    expect(m.check('local-backup-age').message).toMatch(/newest ok backup is 30h0\dm old/);
    expect(m.exitCode).toBe(1);
    setCreatedAt(s.backupDir, b.id, 60);
    m = await monitor(s.env);
    expect(m.check('local-backup-age').status).toBe('critical');
    expect(m.exitCode).toBe(2);
    // a backup dated in the future (a clock set back) does not pass for fresh: the age is the
    // newest one's that is not, and the skew is said
    const later = await manual(s.env);
    setCreatedAt(s.backupDir, later.id, -24 * 365);
    m = await monitor(s.env);
    expect(m.check('local-backup-age')).toMatchObject({ status: 'critical', message: expect.stringMatching(new RegExp(`newest ok backup is 2d12h old \\(backup ${b.id}.*backup ${later.id} is dated in the future`)) });
    // and `latest` for a restore or a drill is not the future-dated one either
    const drill = await runCli(['restore-test', 'latest', '--json'], s.env);
    expect(JSON.parse(drill.stdout).backupId, drill.stderr).toBe(b.id);
  });

  it('a flipped byte in the newest file is critical, naming the checksum, on every run until a good backup is taken', async () => {
    const s = setup();
    const good = await healthy(s.env);
    setCreatedAt(s.backupDir, good.id, 30);
    const b = await manual(s.env);
    flipByte(b.file);
    const mismatch = new RegExp(`checksum mismatch: backup ${b.id}: checksum mismatch \\(sha256 [0-9a-f]{64}, recorded ${b.sha256}\\)`);
    const since: string[] = [];
    for (const run of ['first', 'second']) {
      const m = await monitor(s.env);
      expect(m.exitCode, run).toBe(2);
      expect(m.check('local-backup-checksum'), run).toMatchObject({ status: 'critical', corrupt: [{ id: b.id, since: expect.any(String) }] });
      expect(m.check('local-backup-checksum').message, run).toMatch(mismatch);
      expect(m.check('local-backup-checksum').message, run).toMatch(new RegExp(`the newest good backup is ${good.id}: critical until a good backup is taken`));
      since.push(m.check('local-backup-checksum').corrupt[0].since);
      // the age is the newest GOOD backup's (30 h: a warning), not the corrupt one's
      expect(m.check('local-backup-age'), run).toMatchObject({ status: 'warning' });
      expect(m.check('local-backup-age').message, run).toMatch(new RegExp(`^newest ok backup is 30h0\\dm old \\(backup ${good.id}, .*; backup ${b.id}, newer, is corrupt$`));
      expect(m.check('local-backup-size').message, run).toMatch(new RegExp(`not enough backups to compare sizes \\(corrupt backup ${b.id} not compared\\)`));
    }
    expect(since[1]).toBe(since[0]);
    expect(readLedger(s.backupDir, 'select status from backups where id = ?', b.id)).toEqual([{ status: 'corrupt' }]);
    // a fresh good backup clears it
    const fresh = await manual(s.env);
    const m = await monitor(s.env);
    expect(m.check('local-backup-checksum'), JSON.stringify(m.doc.checks)).toMatchObject({ status: 'ok', corrupt: [] });
    expect(m.check('local-backup-checksum').message).toMatch(new RegExp(`^SHA-256 matches for the newest backup and 1 older \\(${good.id}\\)$`));
    expect(m.check('local-backup-age').message).toMatch(new RegExp(`^newest ok backup is \\d+(\\.\\d)?(ms|s) old \\(backup ${fresh.id},`));
    expect(m.doc.status).toBe('ok');
    expect(m.exitCode).toBe(0);
  });

  it('an older backup the daily sample finds corrupt stays critical, by name, until a good backup is taken after it', async () => {
    const s = setup();
    const oldest = await healthy(s.env);
    await manual(s.env);
    await manual(s.env);
    flipByte(oldest.file);
    // 2 older samples (the default) of 2 older backups: this run re-hashes them all
    let m = await monitor(s.env);
    expect(m.exitCode).toBe(2);
    expect(m.check('local-backup-checksum').message).toMatch(new RegExp(`checksum mismatch: backup ${oldest.id}: checksum mismatch \\(sha256 [0-9a-f]{64}`));
    // no longer ok, so no longer sampled: the finding is carried
    m = await monitor(s.env);
    expect(m.exitCode).toBe(2);
    expect(m.check('local-backup-checksum')).toMatchObject({ status: 'critical', corrupt: [{ id: oldest.id }] });
    expect(m.check('local-backup-checksum').message).toMatch(new RegExp(`checksum mismatch: backup ${oldest.id}: found corrupt \\d+(\\.\\d)?(ms|s|m\\d\\ds) ago; the newest good backup is `));
    expect(m.check('local-backup-age').status).toBe('ok');
    await manual(s.env);
    m = await monitor(s.env);
    expect(m.check('local-backup-checksum'), JSON.stringify(m.doc.checks)).toMatchObject({ status: 'ok', corrupt: [] });
    expect(m.exitCode).toBe(0);
  });

  it('a backup much smaller than the previous one is a warning', async () => {
    const small = await createDatabase('monsmall');
    try {
      await psql(small.url, `create table t (id int primary key, v text); insert into t select g, repeat(md5(g::text), 10) from generate_series(1, 5000) g;`);
      const s = setup({ DATABASE_URL: small.url });
      await healthy(s.env);
      await psql(small.url, 'truncate t');
      await runCli(['manual'], s.env);
      const m = await monitor(s.env);
      expect(m.check('local-backup-size').status).toBe('warning');
      expect(m.check('local-backup-size').message).toMatch(/\d+ % of the previous one .*: an empty or partial dump can look like a success/);
    } finally {
      await dropDatabase(small.name);
    }
  });

  it('the managed layer: stale, failed, and a failed poll', async () => {
    const s = setup();
    await healthy(s.env);
    api.state = dailyProject(Date.now() - 3 * 86_400_000);
    await runCli(['supabase-status'], s.env);
    let m = await monitor(s.env);
    expect(m.check('supabase-backup-age')).toMatchObject({ status: 'critical' });
    expect(m.check('supabase-backup-age').message).toMatch(/newest completed managed backup is 3d\d\dh old/);

    api.state = dailyProject();
    api.state.backups.unshift({ id: 5, status: 'FAILED', inserted_at: new Date().toISOString(), is_physical_backup: false });
    await runCli(['supabase-status'], s.env);
    m = await monitor(s.env);
    expect(m.check('supabase-backup-age')).toMatchObject({ status: 'warning' });
    expect(m.check('supabase-backup-age').message).toMatch(/the newest managed backup FAILED/);

    api.queue('GET /database/backups', { status: 401, raw: '' });
    await runCli(['supabase-status'], s.env);
    m = await monitor(s.env);
    expect(m.check('supabase-poll')).toMatchObject({ status: 'warning' });
    expect(m.check('supabase-poll').message).toMatch(/the last poll \(.*\) failed: the Supabase access token is invalid or expired/);
    // unconfigured is a warning; switched off is off
    m = await monitor({ ...s.env, SUPABASE_ACCESS_TOKEN: '' });
    expect(m.check('supabase-configured').status).toBe('warning');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ supabase: { enabled: false } }));
    m = await monitor(s.env);
    expect(m.check('supabase')).toMatchObject({ status: 'off' });
    expect(m.doc.status).toBe('ok');
  });

  it('a failing restore drill is critical', async () => {
    const s = setup();
    const b = await healthy(s.env);
    // (the supabase profile is the default here: SUPABASE_PROJECT_REF is set, identifiers are quoted)
    loseOneRow(s.backupDir, b, 'COPY "public"."t"');
    expect((await runCli(['restore-test'], s.env)).exitCode).toBe(1);
    const m = await monitor(s.env);
    expect(m.exitCode).toBe(2);
    expect(m.check('restore-drill')).toMatchObject({ status: 'critical' });
    expect(m.check('restore-drill').message).toMatch(/FAILED: "public"\."t" 4999\/5000/);
  });

  it('a scheduled backup or drill that failed is critical, though a manual backup since keeps the age green', async () => {
    const s = setup();
    await healthy(s.env);
    // what the service records when a scheduled job fails before it has anything else to record
    const scheduledRun = (job: string, status: 'failed' | 'ok') => {
      const l = new Database(path.join(s.backupDir, 'ledger.db'));
      const at = new Date().toISOString();
      l.prepare(`insert into runs (job, trigger, status, started_at, finished_at, error_code, error_message) values (?, 'schedule', ?, ?, ?, ?, ?)`).run(job, status, at, at, status === 'failed' ? 'dump-failed' : null, status === 'failed' ? 'connection refused' : null);
      l.close();
    };
    scheduledRun('backup', 'failed');
    scheduledRun('restore-drill', 'failed');
    await manual(s.env);
    const m = await monitor(s.env);
    expect(m.exitCode).toBe(2);
    expect(m.check('local-backup-age').status).toBe('ok');
    expect(m.check('local-backup-schedule')).toMatchObject({ status: 'critical', message: expect.stringMatching(/^the scheduled backup of .* FAILED: connection refused; it is critical until a scheduled backup succeeds/) });
    expect(m.check('restore-drill')).toMatchObject({ status: 'critical', message: expect.stringMatching(/before it could restore: connection refused/) });
    scheduledRun('backup', 'ok');
    expect((await monitor(s.env)).check('local-backup-schedule')).toMatchObject({ status: 'ok', message: expect.stringMatching(/^the last scheduled backup succeeded/) });
  });

  it('retention: ok backups the rules would have deleted over a day ago are a warning, naming how many and the oldest', async () => {
    const s = setup();
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ supabase: { requestTimeoutSeconds: 30, maxRetries: 0 }, retention: { days: 30, minKeep: 1 } }));
    const b0 = await manual(s.env);
    let m = await monitor(s.env);
    expect(m.check('retention')).toMatchObject({ status: 'warning' });
    expect(m.check('retention').message).toMatch(/^retention has never run/);
    const b1 = await healthy(s.env); // runs prune: nothing is old yet
    const b2 = await manual(s.env);
    m = await monitor(s.env);
    expect(m.check('retention'), JSON.stringify(m.doc.checks)).toMatchObject({ status: 'ok' });
    expect(m.check('retention').message).toMatch(/^retention ran .* ago \(ok\); no backup is past retention$/);

    // (b1's drill would keep it as the newest proven backup: that rule has its own test, in retention)
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    l.prepare('update backups set verified_at = null').run();
    l.close();
    // 40 days old: past retention for over a day; 30.5 days: just crossed, left to the next daily prune
    setCreatedAt(s.backupDir, b0.id, 40 * 24);
    setCreatedAt(s.backupDir, b1.id, 30.5 * 24);
    m = await monitor(s.env);
    expect(m.check('retention')).toMatchObject({ status: 'warning' });
    expect(m.check('retention').message).toMatch(new RegExp(`^1 ok backup is past retention and still kept, the oldest backup ${b0.id} \\(manual, created 40d00h ago; limit 30 days\\)`));
    expect(m.exitCode).toBe(1);
    // as of a day ago b2 did not exist yet, so minKeep (1) still kept b1 then: b2 must be older
    setCreatedAt(s.backupDir, b1.id, 35 * 24);
    m = await monitor(s.env);
    expect(m.check('retention').message).toMatch(new RegExp(`^1 ok backup is past retention and still kept, the oldest backup ${b0.id} \\(`));
    setCreatedAt(s.backupDir, b2.id, 27);
    m = await monitor(s.env);
    expect(m.check('retention').message).toMatch(new RegExp(`^2 ok backups are past retention and still kept, the oldest backup ${b0.id} \\(`));
    // the same rules as prune: a pinned backup is kept, so it is not flagged
    expect((await runCli(['pin', String(b0.id)], s.env)).exitCode).toBe(0);
    m = await monitor(s.env);
    expect(m.check('retention').message).toMatch(new RegExp(`^1 ok backup is past retention and still kept, the oldest backup ${b1.id} \\(`));
    const pruned = await runCli(['prune', '--json'], s.env);
    expect(JSON.parse(pruned.stdout).deleted.map((d: { id: number }) => d.id)).toEqual([b1.id]);
    m = await monitor(s.env);
    expect(m.check('retention'), JSON.stringify(m.doc.checks)).toMatchObject({ status: 'ok' });
    expect(readLedger(s.backupDir, "select id from backups where status = 'ok' order by id")).toEqual([{ id: b0.id }, { id: b2.id }]);
  });
});

describe('alerts', () => {
  it('a failed backup and monitor status changes (recovery included) are POSTed; the URL\'s secret never logged', async () => {
    const rx = await new Receiver().start();
    try {
      const s = setup({ ALERT_WEBHOOK_URL: rx.url });
      const b = await healthy(s.env);
      await monitor(s.env); // ok
      setCreatedAt(s.backupDir, b.id, 60);
      await monitor(s.env); // critical
      const fail = await runCli(['manual'], { ...s.env, DATABASE_URL: `${db.url}_gone` });
      expect(fail.exitCode).toBe(1);
      setCreatedAt(s.backupDir, b.id, 1);
      await monitor(s.env); // ok again
      const events = rx.received.map((r) => r.body);
      expect(rx.received.every((r) => r.path === '/hooks/T000/B000/s3cr3t-webhook-part')).toBe(true);
      expect(events.map((e) => e.event)).toEqual(['monitor-status-changed', 'backup-failed', 'monitor-status-changed']);
      expect(events[0]).toMatchObject({ severity: 'critical', details: { from: 'ok', to: 'critical' } });
      expect(events[0].text).toMatch(/^:red_circle: hybrid-backup on .*: the monitor went from OK to CRITICAL: newest ok backup is 2d12h old/);
      expect(events[1]).toMatchObject({ event: 'backup-failed', severity: 'critical', details: { job: 'backup', code: 'db-not-found' } });
      expect(events[1].text).toMatch(/backup failed: database ".*_gone" .* does not exist/);
      expect(events[2]).toMatchObject({ severity: 'ok', details: { from: 'critical', to: 'ok' } });
      expect(events[2].text).toMatch(/recovered: the monitor is OK again \(was CRITICAL\)/);
      for (const f of readdirSync(s.backupDir).filter((f) => f.endsWith('.log'))) {
        const log = readFileSync(path.join(s.backupDir, f), 'utf8');
        expect(log).not.toContain('s3cr3t-webhook-part');
      }
      expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(/alert sent to 127\.0\.0\.1:\d+: backup-failed/);
    } finally {
      await rx.stop();
    }
  });
});

describe('monitor alerts beyond a change of status', () => {
  it('a first run that is not OK, and a new problem under an unchanged CRITICAL, are POSTed', async () => {
    const rx = await new Receiver().start();
    try {
      const s = setup({ ALERT_WEBHOOK_URL: rx.url });
      const b = await healthy(s.env);
      setCreatedAt(s.backupDir, b.id, 60);
      await monitor(s.env); // the first run: critical
      await monitor(s.env); // the same: nothing new
      flipByte(b.file);
      await monitor(s.env); // still critical, and now a checksum mismatch too
      const events = rx.received.map((r) => r.body).filter((e) => e.event.startsWith('monitor-'));
      expect(events.map((e) => e.event)).toEqual(['monitor-new-problem', 'monitor-new-problem']);
      expect(events[0]).toMatchObject({ severity: 'critical', details: { status: 'critical', firstRun: true } });
      expect(events[0].details.checks.map((c: any) => c.name)).toEqual(['local-backup-age']);
      expect(events[1]).toMatchObject({ severity: 'critical', details: { status: 'critical', firstRun: false } });
      // the checksum, and what follows from it (no ok backup left to look into); never the standing age
      expect(events[1].details.checks.map((c: any) => c.name)).toEqual(expect.arrayContaining(['local-backup-checksum']));
      expect(events[1].details.checks.map((c: any) => c.name)).not.toContain('local-backup-age');
      expect(events[1].text).toMatch(/the monitor is CRITICAL \(as before\), and now: checksum mismatch/);
    } finally {
      await rx.stop();
    }
  });
});

describe('metrics', () => {
  it('metrics.prom parses as Prometheus text and carries the promised families; replaced atomically', async () => {
    const s = setup();
    await healthy(s.env);
    await monitor(s.env);
    const file = path.join(s.backupDir, 'metrics.prom');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(readdirSync(s.backupDir).filter((f) => f.includes('.tmp'))).toEqual([]);
    const families = parsePrometheusTextFormat(readFileSync(file, 'utf8')) as Array<{ name: string; type: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>;
    const by = Object.fromEntries(families.map((f) => [f.name, f]));
    for (const name of [
      'hybrid_backup_job_last_success_timestamp_seconds',
      'hybrid_backup_job_last_duration_seconds',
      'hybrid_backup_newest_backup_bytes',
      'hybrid_backup_newest_backup_age_seconds',
      'hybrid_backup_monitor_status',
      'hybrid_backup_monitor_check_status',
      'hybrid_backup_supabase_newest_backup_timestamp_seconds',
      'hybrid_backup_supabase_pitr_enabled',
      'hybrid_backup_restore_drill_ok',
    ]) {
      expect(by[name], name).toBeDefined();
      expect(by[name]!.type).toBe('GAUGE');
    }
    const jobs = by.hybrid_backup_job_last_success_timestamp_seconds!.metrics.map((m) => m.labels!.job);
    expect(jobs).toEqual(expect.arrayContaining(['backup', 'prune', 'restore-drill', 'supabase-poll', 'monitor']));
    expect(Number(by.hybrid_backup_monitor_status!.metrics[0]!.value)).toBe(0);
    expect(by.hybrid_backup_monitor_check_status!.metrics.find((m) => m.labels!.check === 'local-backup-age')!.value).toBe('0');
    expect(Number(by.hybrid_backup_supabase_pitr_enabled!.metrics[0]!.value)).toBe(0);
    expect(Number(by.hybrid_backup_restore_drill_ok!.metrics[0]!.value)).toBe(1);
    expect(Number(by.hybrid_backup_newest_backup_bytes!.metrics[0]!.value)).toBeGreaterThan(0);
    expect(Number(by.hybrid_backup_supabase_poll_ok!.metrics[0]!.value)).toBe(1);

    // a drill run that failed before it could restore: the drill is not ok any more
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    const at = new Date().toISOString();
    l.prepare(`insert into runs (job, trigger, status, started_at, finished_at, error_code, error_message) values ('restore-drill', 'schedule', 'failed', ?, ?, 'identity-missing', 'no key')`).run(at, at);
    l.close();
    // and a poll of a managed layer that is not configured says nothing of success
    expect((await runCli(['supabase-status'], { ...s.env, SUPABASE_PROJECT_REF: '', SUPABASE_ACCESS_TOKEN: '' })).exitCode).toBe(0);
    await monitor(s.env);
    const after = Object.fromEntries((parsePrometheusTextFormat(readFileSync(file, 'utf8')) as typeof families).map((f) => [f.name, f]));
    expect(Number(after.hybrid_backup_restore_drill_ok!.metrics[0]!.value)).toBe(0);
    expect(after.hybrid_backup_supabase_poll_ok).toBeUndefined();
  });
});
