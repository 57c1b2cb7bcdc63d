/**
 * Metrics for Prometheus, in the text exposition format, for node_exporter's textfile collector:
 * `BACKUP_DIR/metrics.prom` (or `metrics.path`), replaced atomically after every job. Built from
 * the ledger alone, so any process can write it.
 */
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { JOB_NAMES } from '../jobs/runs.js';
import type { Ledger } from '../ledger/ledger.js';
import { atomicWriteFile } from '../util/fs.js';

/** Every kind of run but the service's own: a new job gets its metrics by being declared in jobs/runs.ts. */
const JOBS = JOB_NAMES.filter((j) => j !== 'service');
const STATUS_VALUE = { ok: 0, warning: 1, critical: 2, unknown: 3 } as const;

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const seconds = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : null);

class Exposition {
  private readonly out: string[] = [];
  metric(name: string, type: 'gauge' | 'counter', help: string, samples: Array<[Record<string, string>, number | null]>): void {
    const present = samples.filter(([, v]) => v !== null && Number.isFinite(v));
    if (present.length === 0) return;
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of present) {
      const l = Object.entries(labels);
      this.out.push(`${name}${l.length ? `{${l.map(([k, x]) => `${k}="${esc(x)}"`).join(',')}}` : ''} ${v}`);
    }
  }
  toString(): string {
    return `${this.out.join('\n')}\n`;
  }
}

/** The metrics as Prometheus text. */
export function renderMetrics(ledger: Ledger, now = Date.now()): string {
  const e = new Exposition();
  const last = JOBS.map((job) => ({ job, any: ledger.lastRun(job), ok: ledger.lastRun(job, undefined, 'ok') }));
  e.metric('hybrid_backup_job_last_success_timestamp_seconds', 'gauge', 'When each job last finished ok (unix seconds).', last.map((j) => [{ job: j.job }, seconds(j.ok?.finishedAt)]));
  e.metric(
    'hybrid_backup_job_last_duration_seconds',
    'gauge',
    'How long the last finished run of each job took.',
    last.map((j) => [{ job: j.job }, j.any?.finishedAt ? (Date.parse(j.any.finishedAt) - Date.parse(j.any.startedAt)) / 1000 : null]),
  );
  e.metric('hybrid_backup_job_last_run_ok', 'gauge', '1 when the last run of each job finished ok, 0 when it failed or was interrupted.', last.map((j) => [{ job: j.job }, j.any && j.any.status !== 'running' ? (j.any.status === 'ok' ? 1 : 0) : null]));

  const newest = ledger.latestBackup(['ok']);
  e.metric('hybrid_backup_newest_backup_bytes', 'gauge', 'Size of the newest ok local backup as stored.', [[{}, newest ? newest.bytes : null]]);
  e.metric('hybrid_backup_newest_backup_timestamp_seconds', 'gauge', 'When the newest ok local backup was taken.', [[{}, seconds(newest?.createdAt)]]);
  e.metric('hybrid_backup_newest_backup_age_seconds', 'gauge', 'Age of the newest ok local backup when the file was written.', [[{}, newest ? (now - Date.parse(newest.createdAt)) / 1000 : null]]);
  e.metric('hybrid_backup_ok_backups', 'gauge', 'Ok local backups kept.', [[{}, ledger.countBackups({ statuses: ['ok'] })]]);
  const files = newest?.storage ?? null;
  e.metric('hybrid_backup_storage_objects', 'gauge', 'Supabase Storage objects the newest ok backup holds.', [[{}, files ? files.objects : null]]);
  e.metric('hybrid_backup_storage_bytes', 'gauge', 'Bytes of the Supabase Storage objects the newest ok backup holds.', [[{}, files ? files.bytes : null]]);
  e.metric('hybrid_backup_storage_complete', 'gauge', '1 when the newest ok backup holds every Supabase Storage file, 0 when its files are incomplete.', [[{}, files ? (files.complete ? 1 : 0) : null]]);

  const copies = ledger.copyStats();
  e.metric('hybrid_backup_offsite_newest_copy_timestamp_seconds', 'gauge', 'When the newest backup with a good copy in each offsite target was taken.', copies.map((c) => [{ target: c.target }, seconds(c.newestCreatedAt)]));
  e.metric('hybrid_backup_offsite_newest_copy_bytes', 'gauge', 'Size of that copy as stored (encrypted, when it is).', copies.map((c) => [{ target: c.target }, c.newestBytes]));
  e.metric('hybrid_backup_offsite_copies', 'gauge', 'Good copies each offsite target holds.', copies.map((c) => [{ target: c.target }, c.uploaded]));
  e.metric('hybrid_backup_offsite_failed_copies', 'gauge', 'Copies whose last upload to each target failed (retried at the next run).', copies.map((c) => [{ target: c.target }, c.failed]));

  const mon = ledger.listMonitors(1)[0];
  if (mon) {
    e.metric('hybrid_backup_monitor_status', 'gauge', 'Overall monitor status: 0 ok, 1 warning, 2 critical, 3 unknown.', [[{}, STATUS_VALUE[mon.status]]]);
    e.metric(
      'hybrid_backup_monitor_check_status',
      'gauge',
      'Status of each monitor check: 0 ok, 1 warning, 2 critical, 3 unknown (off checks are left out).',
      mon.checks.filter((c) => c.status !== 'off').map((c) => [{ check: c.name }, STATUS_VALUE[c.status as keyof typeof STATUS_VALUE]]),
    );
    e.metric('hybrid_backup_monitor_timestamp_seconds', 'gauge', 'When the monitor last ran.', [[{}, seconds(mon.at)]]);
  }

  const poll = ledger.latestPoll();
  const snap = poll?.snapshot;
  if (snap?.configured) {
    e.metric('hybrid_backup_supabase_newest_backup_timestamp_seconds', 'gauge', 'When the newest completed managed (Supabase) backup was taken.', [[{}, seconds(snap.latestBackupAt)]]);
    e.metric('hybrid_backup_supabase_pitr_enabled', 'gauge', '1 when point-in-time recovery is on.', [[{}, snap.pitrEnabled ? 1 : 0]]);
    e.metric('hybrid_backup_supabase_pitr_latest_timestamp_seconds', 'gauge', 'The newest PITR restore point.', [[{}, seconds(snap.physical.latest)]]);
  }
  // Only a poll that looked at something can have succeeded: with the managed layer not configured there is nothing to say.
  if (poll && (snap?.configured || poll.error)) e.metric('hybrid_backup_supabase_poll_ok', 'gauge', '1 when the last Supabase poll succeeded.', [[{}, poll.error ? 0 : 1]]);

  const [drill] = ledger.listDrills(1);
  if (drill) {
    // a drill run that failed before it could restore (no copy, no key) is the newest drill's outcome too
    e.metric('hybrid_backup_restore_drill_ok', 'gauge', '1 when the newest restore drill passed.', [[{}, drill.ok && !ledger.drillRunFailedSinceLastDrill() ? 1 : 0]]);
    e.metric('hybrid_backup_restore_drill_timestamp_seconds', 'gauge', 'When the newest restore drill ran.', [[{}, seconds(drill.startedAt)]]);
    e.metric('hybrid_backup_restore_drill_rows_checked', 'gauge', 'Rows the newest restore drill counted.', [[{}, drill.rowsChecked]]);
  }
  return e.toString();
}

export function metricsPath(config: Config): string {
  return config.metrics.path ?? path.join(config.backupDir, 'metrics.prom');
}

/** Writes the metrics file atomically (mode 0644: it holds no secrets, and node_exporter reads it). */
export async function writeMetrics(config: Config, ledger: Ledger): Promise<void> {
  await atomicWriteFile(metricsPath(config), renderMetrics(ledger), 0o644);
}
