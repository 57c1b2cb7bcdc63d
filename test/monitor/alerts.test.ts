/**
 * Alerts end to end: the real CLI as a subprocess, a real database, real HTTP receivers (one that
 * answers, one that never does, a port that refuses), the fake Management API and fake Storage.
 * What is promised: each failure event reaches the receiver with its JSON fields; no secret in a
 * body, a log or the ledger; and sending never delays or fails the work — a failing backup exits
 * with its own code, soon, whatever the receiver does.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseOneRow, readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { FakeStorage, SERVICE_KEY } from '../helpers/fake-storage.js';
import { dailyProject, FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { ADMIN_URL, createDatabase, dbUrl, dropDatabase, psql } from '../helpers/pg.js';
import { closedPort, Receiver } from '../helpers/webhook-receiver.js';

let db: { name: string; url: string };
let api: FakeManagementApi;
let storage: FakeStorage;
const dirs: string[] = [];

/** The promised bound: a closing process waits this long at most for pending alerts. */
const EXIT_WAIT_MS = 5_000;
/** Slack for a loaded machine on top of it (the old bound, 15 s, is well beyond both). */
const SLACK_MS = 3_000;

/**
 * A connection URL with a password (the server trusts 127.0.0.1, so it is never asked for):
 * a secret that must not show anywhere.
 */
function withPassword(url: string, password: string): { url: string; password: string } {
  const u = new URL(url);
  if (u.password) return { url, password: decodeURIComponent(u.password) };
  u.password = password;
  return { url: u.toString(), password };
}

beforeAll(async () => {
  db = await createDatabase('alr');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g;`);
  api = await new FakeManagementApi().start();
  storage = await new FakeStorage().start();
});
afterAll(async () => {
  await storage.stop();
  await api.stop();
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup(config: Record<string, unknown>, env: Record<string, string>) {
  const dir = tempDir('hba');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  const backupDir = path.join(dir, 'b');
  return { dir, backupDir, env: { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), ...env } };
}

/** Every log file's text. */
function logs(backupDir: string): string {
  return readdirSync(backupDir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(path.join(backupDir, f), 'utf8'))
    .join('\n');
}

/** The ledger's bytes (and its WAL's), as text: a secret stored anywhere in it shows. */
function ledgerBytes(backupDir: string): string {
  return ['ledger.db', 'ledger.db-wal']
    .map((f) => path.join(backupDir, f))
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f).toString('latin1'))
    .join('\n');
}

/** Runs a CLI command and how long it took, wall clock. */
async function timed(args: string[], env: Record<string, string>) {
  const t0 = Date.now();
  const r = await runCli(args, env);
  return { ...r, ms: Date.now() - t0 };
}

describe('alerts never delay or fail the work', () => {
  it('a receiver that is down: retried with backoff, then logged with only its host', async () => {
    const port = await closedPort();
    const s = setup({ alerts: { retries: 2 } }, { ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/down-secret-part` });
    const r = await runCli(['manual'], { ...s.env, DATABASE_URL: dbUrl(`${db.name}_gone`) });
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/does not exist/);
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
    // attempts at 0, 1 and 3 s: done inside the exit bound, so the real outcome is logged
    expect(log).toMatch(new RegExp(`alert to 127\\.0\\.0\\.1:${port} failed after 3 attempts \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\): .*backup failed`));
    expect(log).not.toContain('down-secret-part');
  });

  it('a failing pre-change backup, receiver refusing: exits 1 with the backup\'s own error, at most ~5 s later than without alerts', async () => {
    const port = await closedPort();
    // 10 retries with backoff would take minutes: only the exit bound can end the wait
    const s = setup({ alerts: { retries: 10 } }, { DATABASE_URL: dbUrl(`${db.name}_gone`) });
    const baseline = await timed(['pre-change', 'Add orders.discount column', '--json'], s.env);
    expect(baseline.exitCode, baseline.stderr).toBe(1);
    const r = await timed(['pre-change', 'Add orders.discount column', '--json'], { ...s.env, ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/refused-secret-part` });
    expect(r.exitCode, r.stderr).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: 'db-not-found' });
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(baseline.stdout));
    expect(r.ms - baseline.ms, `${r.ms} ms with the receiver down, ${baseline.ms} ms without alerts`).toBeLessThan(EXIT_WAIT_MS + SLACK_MS);
    const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
    expect(log).toMatch(new RegExp(`alert to 127\\.0\\.0\\.1:${port} given up at exit after [2-4] attempts \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\): .*backup failed`));
    expect(log).not.toContain('refused-secret-part');
    expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'backup'`)).toEqual([
      { status: 'failed', error_code: 'db-not-found' },
      { status: 'failed', error_code: 'db-not-found' },
    ]);
  });

  it('a failing backup (no server on the port), receiver accepting but never answering: exits 1, at most ~5 s later than without alerts', async () => {
    const hung = await new Receiver({ answer: false }).start('/hooks/hung-secret-part');
    try {
      // the default POST timeout (10 s) is longer than the exit bound: the bound decides
      const s = setup({}, { DATABASE_URL: `postgresql://postgres@127.0.0.1:${await closedPort()}/app` });
      const baseline = await timed(['manual'], s.env);
      expect(baseline.exitCode, baseline.stderr).toBe(1);
      const r = await timed(['manual'], { ...s.env, ALERT_WEBHOOK_URL: hung.url });
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toBe(baseline.stderr);
      expect(r.ms - baseline.ms, `${r.ms} ms with the receiver hanging, ${baseline.ms} ms without alerts`).toBeLessThan(EXIT_WAIT_MS + SLACK_MS);
      expect(hung.received.map((x) => x.body.event)).toEqual(['backup-failed']);
      const log = readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8');
      expect(log).toMatch(/alert to 127\.0\.0\.1:\d+ given up at exit after 1 attempt \(no answer yet\): .*backup failed/);
      expect(log).not.toContain('hung-secret-part');
    } finally {
      await hung.stop();
    }
  });
});

describe('alert events', () => {
  it('a failed Supabase poll, restore drill and offsite upload each reach the receiver with the promised fields; no secret in bodies, logs or the ledger', async () => {
    const rx = await new Receiver().start();
    try {
      const source = withPassword(db.url, 'db-s3cret-pw');
      const drillServer = withPassword(ADMIN_URL, 'drill-s3cret-pw');
      const s = setup(
        { supabase: { requestTimeoutSeconds: 2, maxRetries: 0 }, offsite: { prefix: `${Date.now()}-alerts/` } },
        {
          DATABASE_URL: source.url,
          ALERT_WEBHOOK_URL: rx.url,
          RESTORE_TEST_DATABASE_URL: drillServer.url,
          SUPABASE_API_URL: api.url,
          SUPABASE_PROJECT_REF: REF,
          SUPABASE_ACCESS_TOKEN: TOKEN,
          SUPABASE_URL: storage.url,
          SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY,
        },
      );
      const t0 = new Date().toISOString();
      const outputs: string[] = [];
      const run = async (args: string[], exitCode: number) => {
        const r = await runCli(args, s.env);
        outputs.push(r.stdout, r.stderr);
        expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(exitCode);
        return r;
      };

      // offsite: Storage answers 503 to the upload; the backup itself is ok
      storage.inject({ method: 'POST', path: /\.sql$/, status: 503 });
      const b = JSON.parse((await run(['manual', '--json'], 0)).stdout);
      expect(b.offsite).toMatchObject({ status: 'failed' });
      // poll: the token is refused
      api.state = dailyProject();
      api.queue('GET /database/backups', { status: 401, raw: '' });
      await run(['supabase-status'], 1);
      // drill: the dump lost a row
      loseOneRow(s.backupDir, b, 'COPY "public"."t"');
      await run(['restore-test'], 1);

      const events = rx.received.map((r) => r.body);
      expect(events.map((e) => e.event)).toEqual(['offsite-failed', 'poll-failed', 'drill-failed']);
      const runs = readLedger<{ id: number; job: string; trigger: string; error_code: string; started_at: string }>(
        s.backupDir,
        `select id, job, trigger, error_code, started_at from runs where status = 'failed' order by id`,
      );
      expect(runs.map((r) => r.job)).toEqual(['offsite-upload', 'supabase-poll', 'restore-drill']);
      const expected = [
        { event: 'offsite-failed', severity: 'warning', text: /^:warning: hybrid-backup on .+: offsite copy failed \(retried at the next run\): .*503/ },
        { event: 'poll-failed', severity: 'warning', text: /^:warning: hybrid-backup on .+: Supabase poll failed: the Supabase access token is invalid or expired/ },
        { event: 'drill-failed', severity: 'critical', text: /^:red_circle: hybrid-backup on .+: restore drill failed: drill of backup \d+ failed: .*"public"\."t"/ },
      ];
      for (const [i, e] of events.entries()) {
        const want = expected[i]!;
        const ran = runs[i]!;
        expect(e).toMatchObject({ event: want.event, severity: want.severity, host: os.hostname() });
        expect(e.text).toMatch(want.text);
        expect(e.details).toMatchObject({ runId: ran.id, job: ran.job, trigger: 'cli', code: ran.error_code, startedAt: ran.started_at });
        expect(Date.parse(e.at)).toBeGreaterThanOrEqual(Date.parse(t0));
        expect(Date.parse(e.at)).toBeLessThanOrEqual(Date.now());
      }
      expect(rx.received.every((r) => r.path === '/hooks/T000/B000/s3cr3t-webhook-part')).toBe(true);

      const bodies = JSON.stringify(events);
      const everything = [bodies, logs(s.backupDir), ledgerBytes(s.backupDir), ...outputs].join('\n');
      for (const secret of [TOKEN, SERVICE_KEY, source.password, drillServer.password, 's3cr3t-webhook-part']) {
        expect(everything.includes(secret), `a secret (${secret.slice(0, 4)}…) leaked`).toBe(false);
      }
      expect(logs(s.backupDir)).toMatch(/alert sent to 127\.0\.0\.1:\d+: drill-failed/);
    } finally {
      await rx.stop();
    }
  });
});
