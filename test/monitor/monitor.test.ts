/**
 * The hybrid monitor, alerts and metrics, end to end: a real database and backups, the fake
 * Management API for the managed layer, a local HTTP receiver for the webhook, and a Prometheus
 * text-format parser for metrics.prom.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseOneRow, readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { dailyProject, FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql } from '../helpers/pg.js';

let db: { name: string; url: string };
let api: FakeManagementApi;
const dirs: string[] = [];

/** A webhook receiver that records what it is sent. */
class Receiver {
  readonly received: any[] = [];
  private server!: http.Server;
  url = '';
  async start(): Promise<this> {
    this.server = http.createServer(async (req, res) => {
      let body = '';
      for await (const c of req) body += c;
      this.received.push({ path: req.url, body: JSON.parse(body) });
      res.writeHead(200).end('ok');
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/T000/B000/s3cr3t-webhook-part`;
    return this;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

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
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ supabase: { requestTimeoutSeconds: 2, maxRetries: 0 } }));
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
  });

  it('a flipped byte in the newest file is critical, naming the checksum', async () => {
    const s = setup();
    const b = await healthy(s.env);
    const buf = readFileSync(b.file);
    buf[500] = buf[500]! ^ 1;
    writeFileSync(b.file, buf);
    const m = await monitor(s.env);
    expect(m.exitCode).toBe(2);
    expect(m.check('local-backup-checksum').status).toBe('critical');
    expect(m.check('local-backup-checksum').message).toMatch(new RegExp(`checksum mismatch: backup ${b.id}: checksum mismatch \\(sha256 [0-9a-f]{64}, recorded ${b.sha256}\\)`));
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
});

/** A port nothing listens on (taken, then given back). */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

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

  it('a receiver that is down: retried, logged, and the backup neither delayed nor failed', async () => {
    const port = await closedPort();
    const s = setup({ ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/down-secret-part` });
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ alerts: { retries: 2 } }));
    const t0 = Date.now();
    const ok = await runCli(['manual', '--json'], s.env);
    expect(ok.exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    const r = await runCli(['manual'], { ...s.env, DATABASE_URL: `${db.url}_gone` });
    expect(r.exitCode).toBe(1);
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
    expect(log).toMatch(new RegExp(`alert to 127\\.0\\.0\\.1:${port} failed after 3 attempts \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`));
    expect(log).not.toContain('down-secret-part');
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
  });
});
