/**
 * Report data for three moments of an installation, built in-process and deterministically (a
 * fixed clock, Europe/Berlin): a fresh install with an empty ledger, the first day, and a month
 * with a gap, failures and a failed drill. The timeline and the policy are computed by the real
 * sync-check and policy code; the monitor checks are the messages the monitor writes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import type { Backup, DrillResult, MonitorCheck, SupabaseSnapshot } from '../../src/domain/types.js';
import { worstStatus } from '../../src/domain/types.js';
import { syncCheck } from '../../src/monitor/sync-check.js';
import { configuredDatabase, type ReportData } from '../../src/report/build.js';
import { checkPolicy } from '../../src/supabase/policy.js';

export const NOW = Date.parse('2026-11-24T17:00:00Z'); // 18:00 CET
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const iso = (t: number) => new Date(t).toISOString();
export const REF = 'abcdefghijklmnopqrst';
export const DATABASE = 'app';
/** The database the older backups were taken of, before DATABASE_URL changed. */
export const OLD_DATABASE = 'app_staging';

export type Scenario = 'empty' | 'one-day' | 'month';
export const SCENARIOS: Scenario[] = ['empty', 'one-day', 'month'];

function config(env: Record<string, string>): Config {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'hbrender-'));
  try {
    return loadConfig({ cwd, env: { TZ: 'UTC', ...env }, systemFile: '/nonexistent/hybrid-backup.json', installDir: '/nonexistent' });
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

let nextId = 1;
function backup(at: number, kind: Backup['kind'], extra: Partial<Backup> = {}): Backup {
  const id = nextId++;
  const stamp = iso(at).replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return {
    id,
    kind,
    description: null,
    file: `/var/lib/hybrid-backup/${stamp}_${kind}.sql`,
    bytes: 412 * 1024 * 1024 + id * 997_000,
    sha256: 'ab'.repeat(32),
    createdAt: iso(at),
    status: 'ok',
    finishedAt: iso(at + 41_000),
    durationMs: 41_000,
    compression: 'none',
    profile: 'supabase',
    database: DATABASE,
    serverVersion: '15.8',
    pgDumpVersion: '15.8',
    tableCount: 42,
    rowCount: 1_204_311,
    verifiedAt: null,
    checkedAt: null,
    pinned: false,
    runId: id,
    error: null,
    offsite: null,
    offsiteCopies: [],
    storage: null,
    ...extra,
  };
}

const check = (name: string, status: MonitorCheck['status'], message: string): MonitorCheck => ({ name, status, message });

function snapshot(backups: number[], at: number): SupabaseSnapshot {
  return {
    configured: true,
    enabled: true,
    takenAt: iso(at),
    projectRef: REF,
    project: { name: 'shop', status: 'ACTIVE_HEALTHY', region: 'eu-central-1', postgresVersion: '15.8' },
    region: 'eu-central-1',
    pitrEnabled: false,
    walgEnabled: true,
    latestBackupAt: backups.length ? iso(Math.max(...backups)) : null,
    backups: backups.map((t, i) => ({ id: 300 + i, status: 'COMPLETED', insertedAt: iso(t), physical: false })),
    physical: { earliest: null, latest: null },
    failedBackups: 0,
    addons: { pitr: null, compute: 'ci_small' },
    schedule: { scheduleFor: '15:00:00', updatedAt: null },
    notes: [],
  };
}

/** The report data of one scenario, as buildReport would gather it at {@link NOW}. */
export function scenario(name: Scenario): ReportData {
  nextId = 1;
  const supabaseEnv: Record<string, string> = name === 'empty' ? {} : { SUPABASE_PROJECT_REF: REF, SUPABASE_ACCESS_TOKEN: `sbp_${'0'.repeat(40)}` };
  const cfg = config({ DATABASE_URL: `postgresql://postgres:secret@db.example.com:5432/${DATABASE}`, ...supabaseEnv });
  cfg.timezone = 'Europe/Berlin';
  let backups: Backup[] = [];
  let snap: SupabaseSnapshot | null = null;
  let checks: MonitorCheck[];
  let failures: ReportData['failures'] = [];
  let drills: ReportData['drills'] = [];
  if (name === 'empty') {
    checks = [
      check('local-backup-age', 'critical', 'no ok local backup at all: take one with npm run backup:manual'),
      check('local-backup-checksum', 'unknown', 'no ok backup to check'),
      check('local-backup-content', 'unknown', 'no ok backup to look into'),
      check('local-backup-size', 'ok', 'not enough backups to compare sizes'),
      check('disk-space', 'ok', '38.2 GB free'),
      check('retention', 'warning', 'retention has never run (the service runs it daily; or npm run backup:prune)'),
      check('restore-drill', 'warning', 'no restore drill yet: run npm run backup:restore-test'),
      check('offsite-copy', 'off', 'offsite copies are off (set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or add offsite.targets)'),
      check('supabase-configured', 'warning', 'the managed layer is not configured: set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN (or supabase.enabled: false)'),
    ];
  } else if (name === 'one-day') {
    // installed this morning: the first manual backup, then a pre-change one; Supabase polled once
    const first = backup(NOW - 7 * HOUR, 'manual', { description: 'first backup after the install' });
    backups = [backup(NOW - 2 * HOUR, 'pre-change', { description: 'Add orders.discount column' }), first];
    snap = snapshot([NOW - 26 * HOUR + 3 * 60_000], NOW - 3 * HOUR);
    checks = [
      check('local-backup-age', 'ok', 'newest ok backup is 2h00m old (backup 2, pre-change, 414 MB)'),
      check('local-backup-checksum', 'ok', 'SHA-256 matches for the newest backup and 1 older (1)'),
      check('local-backup-content', 'ok', `backup 2 holds 42 tables, 1,204,311 rows of database "${DATABASE}"`),
      check('local-backup-size', 'ok', '413 MB, 100 % of the previous backup'),
      check('disk-space', 'ok', '1.79 TB free, room for more than 1,000 backups of this size'),
      check('retention', 'warning', 'retention has never run (the service runs it daily; or npm run backup:prune)'),
      check('restore-drill', 'warning', 'no restore drill yet: run npm run backup:restore-test'),
      check('offsite-copy', 'off', 'offsite copies are off (set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or add offsite.targets)'),
      check('supabase-poll', 'ok', 'polled 3h00m ago'),
      check('supabase-backup-age', 'ok', 'newest completed managed backup is 25h57m old (as of the poll 3h00m ago)'),
      check('supabase-pitr', 'ok', 'point-in-time recovery is off, and the policy does not require it'),
      check('supabase-project', 'ok', `project ${REF} is ACTIVE_HEALTHY`),
    ];
  } else {
    // a month: daily backups at 04:00 CET, four days down, one failed dump, pre-change backups,
    // Supabase's daily backups 12 h apart from ours, two offsite targets, a failed drill
    const all: Backup[] = [];
    for (let d = 29; d >= 0; d--) {
      if (d >= 18 && d <= 21) continue;
      const at = NOW - d * DAY - 14 * HOUR;
      if (d === 10) {
        all.push(backup(at, 'daily', { status: 'failed', bytes: 0, sha256: null, error: { code: 'dump-failed', message: 'pg_dump exited with code 1: pg_dump: error: connection to server at "aws-0-eu-central-1.pooler.supabase.com" (3.66.140.212), port 5432 failed: FATAL:  Max client connections reached' } }));
        continue;
      }
      all.push(backup(at, 'daily', { database: d > 25 ? OLD_DATABASE : DATABASE, offsite: { status: 'uploaded', location: `hybrid-backups/prod/${iso(at)}_daily.sql`, bytes: 1, at: iso(at), error: null } }));
      if (d % 9 === 0) all.push(backup(at + 8 * HOUR, 'pre-change', { description: `release 2026.${30 - d}: add a very_long_column_name_without_any_spaces_at_all to public.order_line_items` }));
    }
    backups = all.reverse();
    snap = snapshot(Array.from({ length: 7 }, (_, i) => NOW - (i * 24 + 2) * HOUR), NOW - 5 * HOUR);
    checks = [
      check('local-backup-age', 'ok', 'newest ok backup is 14h00m old (backup 31, daily, 442 MB)'),
      check('local-backup-checksum', 'ok', 'SHA-256 matches for the newest backup and 2 older (12, 25)'),
      check('local-backup-content', 'ok', `backup 31 holds 42 tables, 1,204,311 rows of database "${DATABASE}"`),
      check('local-backup-size', 'ok', '442 MB, 100 % of the previous backup'),
      check('disk-space', 'warning', '790 MB free: room for fewer than 2 more backups of 442 MB'),
      check('retention', 'ok', 'retention ran 13h30m ago (ok); no backup is past retention'),
      check('restore-drill', 'critical', 'the newest drill (2d02h ago, backup 27) FAILED: public.order_line_items 1204310/1204311, sequence public.order_line_items_id_seq: last_value 1204311 in the backup, 1204310 restored'),
      check('offsite-copy:storage', 'ok', 'backup 31 is copied to hybrid-backups/prod/20261124T030000Z_daily.sql'),
      check('offsite-copy:s3-eu-backup-bucket-with-a-long-name', 'warning', 'backup 31 has no copy in "s3-eu-backup-bucket-with-a-long-name": PUT s3://eu-backup-bucket-with-a-long-name/prod/20261124T030000Z_daily.sql failed: 503 SlowDown (retried at the next run); the newest copy there is backup 29 (2d14h ago)'),
      check('supabase-poll', 'ok', 'polled 5h00m ago'),
      check('supabase-backup-age', 'ok', 'newest completed managed backup is 2h00m old (as of the poll 5h00m ago)'),
      check('supabase-pitr', 'ok', 'point-in-time recovery is off, and the policy does not require it'),
      check('supabase-project', 'ok', `project ${REF} is ACTIVE_HEALTHY`),
    ];
    const failed = backups.find((b) => b.status === 'failed')!;
    failures = [
      { id: 301, job: 'backup', trigger: 'schedule', status: 'failed', startedAt: iso(Date.parse(failed.createdAt) - 2_000), code: 'dump-failed', message: failed.error!.message },
      { id: 377, job: 'offsite-upload', trigger: 'schedule', status: 'failed', startedAt: iso(NOW - 14 * HOUR + 50_000), code: 'offsite-failed', message: 'PUT s3://eu-backup-bucket-with-a-long-name/prod/20261124T030000Z_daily.sql failed: 503 SlowDown' },
      { id: 360, job: 'restore-drill', trigger: 'schedule', status: 'failed', startedAt: iso(NOW - 2 * DAY - 2 * HOUR), code: 'drill-mismatch', message: 'public.order_line_items: 1,204,310 of 1,204,311 rows' },
    ];
    drills = [
      {
        backupId: 27,
        ok: false,
        tables: 42,
        rowsChecked: 1_204_310,
        durationMs: 312_000,
        mismatches: [{ table: 'public.order_line_items', expected: 1_204_311, actual: 1_204_310 }],
        scratchDatabase: 'hb_drill_27',
        amcheck: 'off',
        fidelity: { objects: 311, tablesDigested: 41, differences: ['sequence public.order_line_items_id_seq: last_value 1204311 in the backup, 1204310 restored'] },
        startedAt: iso(NOW - 2 * DAY - 2 * HOUR),
      } satisfies DrillResult & { startedAt: string },
    ];
  }
  const sync = syncCheck(cfg, backups, snap, NOW, snap ? { takenAt: snap.takenAt, error: null } : undefined);
  const inWindow = backups.filter((b) => b.createdAt >= sync.window.from);
  const runs = inWindow.length;
  const failedRuns = inWindow.filter((b) => b.status === 'failed').length;
  return {
    generatedAt: iso(NOW),
    host: 'db-backup-01',
    timezone: cfg.timezone,
    database: configuredDatabase(cfg),
    backupDatabase: backups.find((b) => b.status === 'ok' && b.database)?.database ?? null,
    window: sync.window,
    monitor: { status: worstStatus(checks.map((c) => c.status)), checks, at: iso(NOW) },
    sync,
    backups: inWindow,
    sizes: inWindow
      .filter((b) => b.status === 'ok' || b.status === 'pruned')
      .map((b) => ({ at: b.createdAt, bytes: b.bytes, kind: b.kind, id: b.id }))
      .reverse(),
    successRate: { ok: runs - failedRuns, failed: failedRuns, total: runs, rate: runs ? (runs - failedRuns) / runs : null },
    failures,
    drills,
    supabase: { snapshot: snap, pollError: null, policy: checkPolicy(cfg, snap, null, NOW) },
  };
}
