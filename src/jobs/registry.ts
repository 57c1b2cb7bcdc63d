/**
 * The job registry: the one place scheduled jobs are listed. Each job has the name of its
 * `schedules.<name>` cron expression and its runs in the ledger, whether a missed run is caught
 * up at start-up, and a plain function that does the work (recording its own run).
 */
import { prune } from '../backup/retention.js';
import { takeBackup } from '../backup/take-backup.js';
import type { Config, ScheduleName } from '../config/schema.js';
import type { RunContext } from '../context.js';
import { type DrillFrom, restoreDrill } from '../backup/drill.js';
import { HbError } from '../domain/errors.js';
import { plural } from '../util/format.js';
import { runMonitor } from '../monitor/monitor.js';
import { syncOffsite } from '../offsite/sync.js';
import { pollSupabase } from '../supabase/poll.js';

export type JobName = ScheduleName;

export interface Job {
  name: JobName;
  /** What it does, for `schedule` and logs. */
  title: string;
  /**
   * What happens at start-up: `missed` runs the job once when its time passed while the
   * service was down; `stale` runs it when its last run is older than `maxAgeMs` (or never ran).
   */
  startup: { kind: 'missed' } | { kind: 'stale'; maxAgeMs: number } | { kind: 'none' };
  /** Whether the job is scheduled at all with this configuration. */
  enabled?(config: Config): boolean;
  /**
   * It writes (a backup, a database, deletions): a stopping service lets it finish within the
   * grace period. Without it, a stop aborts the job at once.
   */
  grace?: boolean;
  /** Does the work; records its own run; resolves with a one-line summary. */
  run(ctx: RunContext): Promise<string>;
}

/**
 * The weekly drill alternates: the local file one week, an offsite copy the next (the targets in
 * turn), so the copy that would save the operator after losing the server is proven too.
 */
export function nextDrillSource(ctx: RunContext): DrillFrom {
  const targets = ctx.config.offsiteTargets.map((t) => t.name);
  // Encrypted copies need the private key, which an operator may keep off this server on purpose.
  const keyHere = ctx.config.encryption.ageRecipients.length === 0 || ctx.config.ageIdentityFile !== null;
  if (targets.length === 0 || !keyHere) return { offsite: false };
  const drills = ctx.ledger.listDrills(50);
  if ((drills[0]?.source ?? 'local') !== 'local') return { offsite: false };
  const lastOffsite = drills.find((d) => d.source?.startsWith('offsite:'))?.source?.slice('offsite:'.length);
  const next = lastOffsite && targets.includes(lastOffsite) ? targets[(targets.indexOf(lastOffsite) + 1) % targets.length]! : targets[0]!;
  return drills.length === 0 ? { offsite: false } : { offsite: true, target: next };
}

export const JOBS: readonly Job[] = [
  {
    name: 'backup',
    title: 'daily local backup',
    grace: true,
    startup: { kind: 'missed' },
    async run(ctx) {
      const b = await takeBackup(ctx, { kind: 'daily' });
      const offsite = await syncOffsite(ctx);
      return `backup ${b.id} ok (${b.bytes} bytes)${offsite ? `; offsite: ${offsite.uploaded.length} uploaded, ${offsite.failed.length} failed` : ''}`;
    },
  },
  {
    name: 'prune',
    title: 'retention',
    grace: true,
    startup: { kind: 'missed' },
    async run(ctx) {
      const { plan } = await prune(ctx, { dryRun: false });
      return `pruned ${plan.delete.length}, kept ${plan.keep.length}`;
    },
  },
  {
    name: 'monitor',
    title: 'daily hybrid monitor',
    startup: { kind: 'missed' },
    async run(ctx) {
      const doc = await runMonitor(ctx);
      return `status ${doc.status}`;
    },
  },
  {
    name: 'restore-drill',
    title: 'weekly restore drill',
    grace: true,
    startup: { kind: 'none' },
    enabled: (config) => config.restoreTest.enabled,
    async run(ctx) {
      const r = await restoreDrill(ctx, 'latest', nextDrillSource(ctx));
      if (!r.ok) throw new HbError('restore-test-failed', `drill of backup ${r.backupId} failed${r.error ? `: ${r.error.message}` : ''}`);
      return `drill of backup ${r.backupId} passed (${plural(r.rowsChecked, 'row')})`;
    },
  },
  {
    name: 'supabase-poll',
    title: 'poll Supabase\'s managed backups',
    startup: { kind: 'stale', maxAgeMs: 6 * 3_600_000 },
    enabled: (config) => config.supabase.enabled,
    async run(ctx) {
      const s = await pollSupabase(ctx);
      return s.configured ? `PITR ${s.pitrEnabled ? 'on' : 'off'}, newest backup ${s.latestBackupAt ?? 'none'}` : 'not configured';
    },
  },
];

export function findJob(name: string): Job | undefined {
  return JOBS.find((j) => j.name === name);
}
