/**
 * Retention: which backups may go, and removing them.
 *
 * Rules (only `ok` backups count, and only they are ever deleted):
 * - a backup older than `retention.days` (`retention.preChangeDays` for pre-change backups) is
 *   deleted unless it is one of the newest `retention.minKeep` ok backups of its database (a dump
 *   holding no user table does not count among them), the newest one a restore drill proved,
 *   pinned, or the newest ok backup of one of the last `keepWeekly` weeks / `keepMonthly` months
 *   (in the configured zone);
 * - nothing is pruned while the newest finished scheduled backup failed: pruning after silent
 *   failures is how backup tools lose every backup;
 * - only files the ledger lists are touched, and only inside the backup directory.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { RunContext } from '../context.js';
import { HbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import { isStop, RunScope } from '../jobs/runs.js';
import { deletePrunedCopies } from '../offsite/sync.js';
import { acquireBackupLock } from './lock.js';
import { checkFilesPresent } from './verify.js';
import { keptManifests, STORAGE_MANIFEST_SUFFIX } from './storage-files.js';
import { exists } from '../util/fs.js';
import { formatTime } from '../util/format.js';

export interface RetentionPolicy {
  days: number;
  preChangeDays: number;
  minKeep: number;
  keepWeekly: number;
  keepMonthly: number;
  timeZone: string;
  /**
   * Which database a backup is of (its server's system identifier and its name): `minKeep` holds
   * for each, so that backups of another database — DATABASE_URL pointed elsewhere, by mistake or
   * for a while — never push the protected one's out. Without it, by database name.
   */
  sourceOf?: (b: Backup) => string;
}

export interface PlannedDeletion {
  backup: Backup;
  reason: string;
}

export interface PlannedKeep {
  backup: Backup;
  reasons: string[];
}

export interface RetentionPlan {
  asOf: string;
  delete: PlannedDeletion[];
  keep: PlannedKeep[];
}

const DAY = 86_400_000;

/** Calendar parts of an instant in a time zone. */
function localParts(iso: string, timeZone: string): { year: number; month: number; day: number } {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(new Date(iso));
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  return { year: get('year'), month: get('month'), day: get('day') };
}

/** ISO-8601 week label (`2026-W48`) of an instant, in a time zone. */
export function isoWeek(iso: string, timeZone: string): string {
  const { year, month, day } = localParts(iso, timeZone);
  const d = new Date(Date.UTC(year, month - 1, day));
  const dow = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - dow); // the Thursday of this week decides its year
  const weekYear = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(weekYear, 0, 1)) / DAY + 1) / 7);
  return `${weekYear}-W${String(week).padStart(2, '0')}`;
}

export function monthLabel(iso: string, timeZone: string): string {
  const { year, month } = localParts(iso, timeZone);
  return `${year}-${String(month).padStart(2, '0')}`;
}

/**
 * The labels of the `n` most recent periods up to and including `asOf`'s, walking back a day at a
 * time: steps of a whole period (7 × 24 h) skip one where a DST change makes a day 23 hours long.
 */
export function recentLabels(asOf: Date, n: number, label: (iso: string) => string, periodDays: number): Set<string> {
  const out = new Set<string>();
  for (let i = 0; out.size < n && i <= (n + 1) * periodDays * 2; i++) out.add(label(new Date(asOf.getTime() - i * DAY).toISOString()));
  return out;
}

/**
 * Decides, without touching anything, what retention would delete at `asOf` among `backups`
 * (any statuses; only ok ones created at or before `asOf` are considered).
 */
export function planRetention(backups: readonly Backup[], asOf: Date, p: RetentionPolicy): RetentionPlan {
  const ok = backups
    .filter((b) => b.status === 'ok' && Date.parse(b.createdAt) <= asOf.getTime())
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id - a.id);
  const reasons = new Map<number, string[]>(ok.map((b) => [b.id, []]));
  const why = (b: Backup, r: string) => reasons.get(b.id)!.push(r);

  // The newest minKeep of each database; a dump that holds no user table (an empty or a wrong
  // database) does not count among them.
  const bySource = new Map<string, Backup[]>();
  for (const b of ok) {
    const k = p.sourceOf ? p.sourceOf(b) : (b.database ?? '');
    bySource.set(k, [...(bySource.get(k) ?? []), b]);
  }
  const several = bySource.size > 1;
  for (const group of bySource.values()) {
    const counted = group.filter((b) => b.tableCount !== 0);
    counted.slice(0, p.minKeep).forEach((b, i) => {
      const of = several ? ` of database "${b.database ?? '?'}"` : '';
      why(b, p.minKeep === 1 ? `the newest ok backup${of}` : `one of the newest ${p.minKeep} ok backups${of} (#${i + 1})`);
    });
    // The newer ones are known only by their size until drilled or verified: the newest one a
    // restore drill proved stays, whatever its age.
    const proven = counted.find((b) => b.verifiedAt);
    if (proven) why(proven, `the newest backup${several ? ` of database "${proven.database ?? '?'}"` : ''} a restore drill proved (${proven.verifiedAt!.slice(0, 10)})`);
  }
  for (const b of ok) if (b.pinned) why(b, 'pinned');
  const gfs = (n: number, label: (iso: string) => string, step: number, what: string) => {
    if (n <= 0) return;
    const wanted = recentLabels(asOf, n, label, step);
    const seen = new Set<string>();
    for (const b of ok) {
      const l = label(b.createdAt);
      if (wanted.has(l) && !seen.has(l)) {
        seen.add(l);
        why(b, `${what} keep (${l})`);
      }
    }
  };
  gfs(p.keepWeekly, (iso) => isoWeek(iso, p.timeZone), 7, 'weekly');
  gfs(p.keepMonthly, (iso) => monthLabel(iso, p.timeZone), 28, 'monthly');

  const plan: RetentionPlan = { asOf: asOf.toISOString(), delete: [], keep: [] };
  for (const b of ok) {
    const limit = b.kind === 'pre-change' ? p.preChangeDays : p.days;
    const ageDays = (asOf.getTime() - Date.parse(b.createdAt)) / DAY;
    const r = reasons.get(b.id)!;
    if (ageDays <= limit) r.unshift(`within ${limit} days (${ageDays.toFixed(1)} days old)`);
    if (r.length) plan.keep.push({ backup: b, reasons: r });
    else plan.delete.push({ backup: b, reason: `${ageDays.toFixed(1)} days old, older than ${limit} days${b.kind === 'pre-change' ? ' (pre-change)' : ''}` });
  }
  return plan;
}

/** @throws HbError `prune-refused` when the newest finished scheduled backup failed. */
export function assertSafeToPrune(ctx: RunContext, asOf: Date): void {
  const newest = ctx.ledger.newestScheduledBackupRun(asOf.toISOString());
  if (newest && newest.status !== 'ok') {
    throw new HbError(
      'prune-refused',
      `not pruning: the newest scheduled backup (run ${newest.id}, ${formatTime(newest.startedAt, ctx.config.timezone)}) ${newest.status}${newest.error ? `: ${newest.error.message}` : ''}`,
      'fix the backup first (see `hybrid-backup runs --job backup`); retention resumes after the next good scheduled backup',
    );
  }
}

export interface PruneOutcome {
  plan: RetentionPlan;
  dryRun: boolean;
  /** Backups whose file is gone from disk: they count for nothing. */
  missing: Backup[];
  /** What the operator should know about this run (fewer good files than minKeep, …). */
  notes: string[];
  /** Storage files no kept backup references, removed from BACKUP_DIR/storage (absent: not collected). */
  storageFiles?: { removed: number; bytes: number; referenced: number } | null;
}

/**
 * Looks at the disk before deciding: every ok (or missing) backup's file must be there with its
 * recorded size. Those gone become `missing` (alerted), those of another size `corrupt`; neither
 * counts as a backup to keep, so the newest `minKeep` kept are ones that really exist.
 */
async function planFromDisk(ctx: RunContext, asOf: Date, policy: RetentionPolicy, record: boolean): Promise<Omit<PruneOutcome, 'dryRun'>> {
  const disk = await checkFilesPresent(ctx, ctx.ledger.listBackups({ statuses: ['ok', 'missing'] }), record);
  const gone = new Set([...disk.missing, ...disk.wrongSize].map((b) => b.id));
  const backups = ctx.ledger.listBackups().map((b) => (gone.has(b.id) ? { ...b, status: disk.missing.some((m) => m.id === b.id) ? ('missing' as const) : ('corrupt' as const) } : b));
  const plan = planRetention(backups, asOf, policy);
  const notes: string[] = [];
  if (disk.missing.length) notes.push(`${disk.missing.length} backup${disk.missing.length === 1 ? '' : 's'} ${disk.missing.length === 1 ? 'has' : 'have'} no file on disk (${disk.missing.map((b) => b.id).join(', ')}): marked missing; they count for nothing`);
  if (disk.wrongSize.length) notes.push(`backup ${disk.wrongSize.map((b) => b.id).join(', ')}: the file's size differs from the ledger: marked corrupt`);
  const present = disk.present.filter((b) => Date.parse(b.createdAt) <= asOf.getTime()).length;
  if (present <= policy.minKeep && plan.delete.length === 0 && (disk.missing.length || disk.wrongSize.length)) {
    notes.push(`only ${present} ok backup${present === 1 ? '' : 's'} with ${present === 1 ? 'its file' : 'their files'} on disk, not more than retention.minKeep (${policy.minKeep}): nothing is deleted`);
  }
  return { plan, missing: disk.missing, notes };
}

/** The configured policy, each backup's database told by its server's system identifier and its name. */
export function retentionPolicy(ctx: RunContext): RetentionPolicy {
  return {
    ...ctx.config.retention,
    timeZone: ctx.config.timezone,
    sourceOf: (b) => `${ctx.ledger.backupSource(b.id)?.sourceSystemId ?? ''}/${b.database ?? ''}`,
  };
}

/** Applies retention (or only plans it, with `dryRun`). Records a `prune` run unless dry. */
export async function prune(ctx: RunContext, opts: { dryRun: boolean; asOf?: Date }): Promise<PruneOutcome> {
  const { backupDir } = ctx.config;
  const policy = retentionPolicy(ctx);
  if (opts.dryRun) {
    const asOf = opts.asOf ?? new Date();
    assertSafeToPrune(ctx, asOf);
    return { ...(await planFromDisk(ctx, asOf, policy, false)), dryRun: true };
  }
  const run = RunScope.start(ctx, 'prune', opts.asOf ? { asOf: opts.asOf.toISOString() } : {});
  let release: (() => void) | undefined;
  try {
    // Wait for a backup being written (the daily one runs just before): its outcome decides
    // whether pruning is safe, and nothing is deleted while a file is being added.
    release = await acquireBackupLock(ctx, run.id, `prune run ${run.id}`);
    const asOf = opts.asOf ?? new Date();
    assertSafeToPrune(ctx, asOf);
    const { plan, missing, notes } = await planFromDisk(ctx, asOf, policy, true);
    for (const n of notes) ctx.log.warn(`prune: ${n}`, { runId: run.id });
    const deleted: PlannedDeletion[] = [];
    for (const d of plan.delete) {
      // Ledger first: a crash after this leaves a pruned entry whose file the next prune removes.
      // Pinned or found corrupt since the plan was made: it stays.
      if (!ctx.ledger.markPruned(d.backup.id)) continue;
      deleted.push(d);
      await removeBackupFiles(ctx, d.backup, backupDir);
      ctx.log.info(`pruned backup ${d.backup.id} (${path.basename(d.backup.file)}): ${d.reason}`, { backupId: d.backup.id });
    }
    // Files of entries pruned earlier whose deletion was cut short.
    for (const b of ctx.ledger.listBackups({ statuses: ['pruned'] })) await removeBackupFiles(ctx, b, backupDir);
    // The Storage files no kept backup references.
    const storageFiles = await collectStorage(ctx, run.id);
    // Their offsite copies go too (failures are recorded and retried at the next prune), without
    // holding up a backup that waits for the lock.
    release();
    release = undefined;
    await deletePrunedCopies(ctx);
    run.ok({ deleted: deleted.map((d) => d.backup.id), kept: plan.keep.length, missing: missing.map((b) => b.id), ...(storageFiles ? { storageFiles } : {}) });
    return { plan: { ...plan, delete: deleted.map((d) => ({ ...d, backup: ctx.ledger.getBackup(d.backup.id)! })) }, dryRun: false, missing: missing.map((b) => ctx.ledger.getBackup(b.id)!), notes, storageFiles };
  } catch (e) {
    const err = run.fail(e);
    ctx.log.error(`prune ${isStop(err, ctx.signal) ? 'stopped' : 'failed'}: ${err.message}`, { runId: run.id, code: err.code });
    throw err;
  } finally {
    release?.();
  }
}

async function removeBackupFiles(ctx: RunContext, b: Backup, backupDir: string): Promise<void> {
  const inside = path.relative(backupDir, b.file);
  if (inside.startsWith('..') || path.isAbsolute(inside)) {
    ctx.log.warn(`backup ${b.id}: not deleting ${b.file}, which is outside the backup directory ${backupDir}`, { backupId: b.id });
    return;
  }
  for (const f of [b.file, b.file + SIDECAR_SUFFIX, b.file + STORAGE_MANIFEST_SUFFIX]) {
    try {
      await fs.unlink(f);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/**
 * Removes the Storage files (BACKUP_DIR/storage) that no backup still in the ledger (not pruned)
 * references. Skipped, with a log line, when a kept backup's manifest cannot be read: a file it
 * needs must never go. Run under the backup lock (no capture is writing). Null when skipped.
 */
async function collectStorage(ctx: RunContext, runId: number): Promise<PruneOutcome['storageFiles']> {
  if (!(await exists(path.join(ctx.config.backupDir, 'storage', 'objects')))) return null;
  const kept = await keptManifests(ctx);
  if ('unreadable' in kept) {
    ctx.log.warn(`prune: not collecting unreferenced Storage files: the manifest of backup ${kept.unreadable.id} cannot be read: ${kept.error.message}`, { runId, backupId: kept.unreadable.id });
    return null;
  }
  const { manifests } = kept;
  const { StorageStore, collectGarbage } = await import('../storage/index.js');
  const store = await StorageStore.open(ctx.config.backupDir);
  const r = await collectGarbage(store, manifests, { allowEmpty: manifests.length === 0, signal: ctx.signal, graceMs: ctx.config.storage.gcGraceMinutes * 60_000 });
  if (r.removed.length) ctx.log.info(`prune: removed ${r.removed.length} Storage file${r.removed.length === 1 ? '' : 's'} no kept backup references (${r.bytes} bytes)`, { runId });
  return { removed: r.removed.length, bytes: r.bytes, referenced: r.referenced };
}
