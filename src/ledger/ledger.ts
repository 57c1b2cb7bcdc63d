/**
 * The ledger: `BACKUP_DIR/ledger.db` (SQLite, WAL). Records every run of every job and every
 * backup attempt, and holds the cross-process backup lock.
 *
 * Guarantees:
 * - opening it migrates the schema forward and recovers from crashes: runs left `running` by a
 *   process that no longer exists become `interrupted`, and their partial files are deleted;
 * - writes are durable on return (synchronous=FULL);
 * - error messages are redacted before they are stored.
 *
 * `Ledger` is the entry point and a thin facade over one connection shared by its parts, each
 * preparing its statements once (sql.ts): runs.ts, backups.ts (with backup-json.ts, the one shape
 * of a backup, and backup-list.ts, the cached `list --json`), copies.ts, drills.ts, monitor.ts,
 * snapshots.ts, locks.ts; open.ts, migrations.ts and recovery.ts open it, errors.ts says what a
 * refusing disk means.
 */
import type Database from 'better-sqlite3';
import type { Backup, BackupEvidence, BackupStatus, BackupStorage, DrillResult, MonitorDoc, Run, RunStatus, RunTrigger, SupabaseSnapshot, TableCounts, TargetCopy } from '../domain/types.js';
import type { JobName } from '../jobs/runs.js';
import type { BackupFilter } from './backup-json.js';
import { Backups, type BackupSource, type NewBackup, type NewStorageCapture } from './backups.js';
import { Copies, type CopyStats } from './copies.js';
import { Drills } from './drills.js';
import { isStorageFailure, storageError } from './errors.js';
import { Locks, type LockHolder } from './locks.js';
import { migrate } from './migrations.js';
import { Monitors } from './monitor.js';
import { openConnection, openReadOnlyConnection } from './open.js';
import { recoverAbandoned, type RecoveredRun } from './recovery.js';
import { Runs } from './runs.js';
import { Snapshots, type Poll } from './snapshots.js';
import { Sql } from './sql.js';

export type { BackupFilter } from './backup-json.js';
export type { BackupSource, NewBackup, NewStorageCapture } from './backups.js';
export type { CopyStats } from './copies.js';
export { isStorageFailure, storageError } from './errors.js';
export type { LockHolder } from './locks.js';
export { LEDGER_FILE, sidecarNames } from './open.js';
export type { RecoveredRun } from './recovery.js';
export type { Poll } from './snapshots.js';
export type { Backups, Copies, Drills, Locks, Monitors, Runs, Snapshots };

export class Ledger {
  readonly file: string;
  /** Runs this open found abandoned by dead processes and closed as interrupted. */
  readonly recovered: RecoveredRun[];
  readonly runs: Runs;
  readonly backups: Backups;
  readonly copies: Copies;
  readonly drills: Drills;
  readonly monitors: Monitors;
  readonly snapshots: Snapshots;
  readonly locks: Locks;
  private readonly db: Database.Database;
  private closed = false;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
    migrate(db, file);
    const sql = new Sql(db);
    this.runs = new Runs(sql, file);
    this.backups = new Backups(sql, this.runs);
    this.copies = new Copies(sql, this.backups);
    this.drills = new Drills(sql);
    this.monitors = new Monitors(sql);
    this.snapshots = new Snapshots(sql);
    this.locks = new Locks(sql);
    let recovered: RecoveredRun[] = [];
    try {
      recovered = recoverAbandoned(sql, this.runs, this.backups, this.locks);
    } catch (e) {
      // A full disk must not keep the monitor from saying so: recovery waits for the next open.
      if (!isStorageFailure(e)) throw e;
    }
    this.recovered = recovered;
  }

  /**
   * Opens (creating if needed) the ledger in `dir`, which must exist.
   *
   * A ledger that is new or empty (truncated to nothing) in a directory that holds backup sidecars
   * is refused, and nothing is written: the backups are there, and an empty ledger would say
   * "no backups" about them. A ledger that cannot be read is refused too. `recover` (for
   * `ledger-rebuild`) accepts an empty ledger, and moves one that cannot be read aside under a
   * dated name (never deleting it) to start a new one.
   * @throws HbError `ledger-lost`, `ledger-unreadable`, `ledger-too-new`, `ledger-unavailable`, `disk-full`
   */
  static open(dir: string, opts: { recover?: boolean } = {}): Ledger {
    const { file, db, movedAside } = openConnection(dir, opts);
    let ledger: Ledger;
    try {
      ledger = new Ledger(file, db);
    } catch (e) {
      db.close();
      throw isStorageFailure(e) ? storageError(file, dir, e) : e;
    }
    if (movedAside !== undefined) ledger.movedAside = movedAside;
    return ledger;
  }

  /** Set by {@link open} with `recover` when an unreadable ledger was moved aside: where it went. */
  movedAside?: string;
  /** Set by {@link openReadOnlyCopy}: why this is a read-only copy, and what it may not show. */
  readOnlyCopy?: string;

  /**
   * A read-only, in-memory copy of the ledger's main file, for looking when the ledger cannot be
   * opened for writing (its disk is full): enough for the monitor to say what is wrong. Changes
   * still in the write-ahead log are not in it. Every write throws (SQLITE_READONLY), which the
   * run bookkeeping treats like a full disk.
   * @throws HbError `ledger-unavailable` when even that cannot be read
   */
  static openReadOnlyCopy(dir: string, why: string): Ledger {
    const { file, db } = openReadOnlyConnection(dir);
    const l = new Ledger(file, db);
    l.readOnlyCopy = `${why}; read from a copy of ${file} (the newest changes may be missing)`;
    return l;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  // ---- runs (runs.ts) ------------------------------------------------------------------------

  /**
   * Records a run as started.
   * @throws HbError `disk-full` (or `ledger-unavailable`) when the ledger cannot be written
   */
  startRun(job: JobName, trigger: RunTrigger, details?: Record<string, unknown>): Run {
    return this.runs.start(job, trigger, details);
  }

  /** Records a run that failed before it could record its start; never throws for a full disk ({@link Runs.recordFailed}). */
  recordFailedRun(job: string, trigger: RunTrigger, startedAt: string, error: { code: string; message: string }): Run {
    return this.runs.recordFailed(job, trigger, startedAt, error);
  }

  /** Run outcomes not yet in the ledger because it could not be written, oldest first. */
  pendingRuns(): Run[] {
    return this.runs.pending();
  }

  /** Writes held run outcomes; returns how many are still held. Never throws. */
  flushPending(): number {
    return this.runs.flushPending();
  }

  /** Records the files a run is writing, so a crash can be cleaned up. */
  setRunFiles(runId: number, files: { partialPath?: string | null; finalPath?: string | null }): void {
    this.runs.setFiles(runId, files);
  }

  mergeRunDetails(runId: number, details: Record<string, unknown>): void {
    this.runs.mergeDetails(runId, details);
  }

  /** Records how a run ended and tells the listeners; never throws for a full disk ({@link Runs.finish}). */
  finishRun(runId: number, status: Exclude<RunStatus, 'running'>, error?: { code: string; message: string } | null, details?: Record<string, unknown>): Run {
    return this.runs.finish(runId, status, error, details);
  }

  /** Calls `fn` with every run this process finishes (for alerts and metrics). */
  onRunFinished(fn: (run: Run) => void): void {
    this.runs.onFinished(fn);
  }

  getRun(id: number): Run | undefined {
    return this.runs.get(id);
  }

  listRuns(filter: { since?: string; job?: string; limit?: number } = {}): Run[] {
    return this.runs.list(filter);
  }

  /** The newest finished backup run started by the schedule (or its start-up catch-up), up to `beforeIso`. */
  newestScheduledBackupRun(beforeIso: string): Run | undefined {
    return this.runs.newestScheduledBackup(beforeIso);
  }

  /** The oldest run of a job (for `service`: when the service was first started on this ledger). */
  firstRun(job: string): Run | undefined {
    return this.runs.first(job);
  }

  /** The newest run of a job, optionally only with some triggers, or only with a status (a held outcome included). */
  lastRun(job: string, triggers?: readonly string[], status?: RunStatus): Run | undefined {
    return this.runs.last(job, triggers, status);
  }

  /** How many runs of a job (optionally with a status) started since `sinceIso`. */
  countRuns(job: string, sinceIso: string, status?: RunStatus): number {
    return this.runs.count(job, sinceIso, status);
  }

  // ---- backups (backups.ts) --------------------------------------------------------------------

  /** Records a backup attempt and closes its run, in one transaction. */
  recordBackup(b: NewBackup): Backup {
    return this.backups.record(b);
  }

  /** Adds a backup found on disk by `ledger-rebuild` (no run produced it here). */
  addRebuiltBackup(b: Omit<NewBackup, 'runId'>): Backup {
    return this.backups.addRebuilt(b);
  }

  /** Records (or replaces) what a backup holds of the Storage files. */
  recordStorageCapture(backupId: number, c: NewStorageCapture): void {
    this.backups.recordStorageCapture(backupId, c);
  }

  /** What the backup holds of the Storage files, or null when it captured none. */
  storageCapture(backupId: number): BackupStorage | null {
    return this.backups.storageCapture(backupId);
  }

  /** The backup whose file this is, or undefined. */
  backupByFile(file: string): Backup | undefined {
    return this.backups.byFile(file);
  }

  /** Whether a backup row already names this file. */
  hasBackupFile(file: string): boolean {
    return this.backups.hasFile(file);
  }

  getBackup(id: number): Backup | undefined {
    return this.backups.get(id);
  }

  backupSource(id: number): BackupSource | undefined {
    return this.backups.source(id);
  }

  /** The newest backup in one of `statuses`. */
  latestBackup(statuses: readonly BackupStatus[] = ['ok']): Backup | undefined {
    return this.backups.latest(statuses);
  }

  /** Backups, newest first. */
  listBackups(filter: BackupFilter & { limit?: number } = {}): Backup[] {
    return this.backups.list(filter);
  }

  /**
   * The same backups as {@link listBackups}, as a JSON array built by SQLite: at 10,000 backups
   * this is ~8× faster than building objects and serialising them, which is what lets the
   * service answer `list --json` quickly. The answer is cached until the ledger changes (in this
   * connection or any other). Its objects equal `listBackups`' (the tests hold them to it).
   */
  listBackupsJson(filter: BackupFilter & { limit?: number } = {}): string {
    return this.backups.listRaw(filter).toString('utf8');
  }

  /**
   * {@link listBackupsJson} as the service sends it: every backup (no filter) as the cached UTF-8
   * bytes, so a `list --json` of 10,000 backups costs no serialising at all while nothing changed.
   */
  listBackupsRaw(filter: BackupFilter & { limit?: number } = {}): Buffer {
    return this.backups.listRaw(filter);
  }

  countBackups(filter: BackupFilter = {}): number {
    return this.backups.count(filter);
  }

  /** What the backup recorded for its drill besides row counts; null for backups taken before it was recorded. */
  evidence(backupId: number): BackupEvidence | null {
    return this.backups.evidence(backupId);
  }

  tableCounts(backupId: number): TableCounts {
    return this.backups.tableCounts(backupId);
  }

  /** What a check of the file found ({@link Backups.setIntegrity}); true when the status changed. */
  setIntegrity(id: number, status: 'ok' | 'corrupt' | 'missing'): boolean {
    return this.backups.setIntegrity(id, status);
  }

  markChecked(id: number, at?: string): void {
    this.backups.markChecked(id, at);
  }

  /** Marks an ok, unpinned backup pruned; false when it no longer is one (pinned or checked meanwhile). */
  markPruned(id: number, at?: string): boolean {
    return this.backups.markPruned(id, at);
  }

  setPinned(id: number, pinned: boolean): void {
    this.backups.setPinned(id, pinned);
  }

  markVerified(id: number, at?: string): void {
    this.backups.markVerified(id, at);
  }

  // ---- offsite copies (copies.ts) --------------------------------------------------------------

  /** Records the state of a backup's copy in one target (one row per backup and target). */
  setCopy(backupId: number, target: string, copy: { status: TargetCopy['status']; key: string; location: string; bytes?: number | null; sha256?: string | null; encrypted?: boolean; error?: string | null }): void {
    this.copies.set(backupId, target, copy);
  }

  /** A backup's copy in one target, or undefined. */
  copy(backupId: number, target: string): TargetCopy | undefined {
    return this.copies.get(backupId, target);
  }

  /** Ok backups without a good copy in `target` (never uploaded, or the upload failed), newest first. */
  backupsToUpload(target: string): Backup[] {
    return this.copies.toUpload(target);
  }

  /** Copies of pruned backups that still have to be deleted, in any target. */
  copiesToDelete(): Array<{ backup: Backup; copy: TargetCopy }> {
    return this.copies.toDelete();
  }

  /** Per target that holds or held copies: its newest good copy, and how many copies are uploaded and failed. */
  copyStats(): CopyStats[] {
    return this.copies.stats();
  }

  /** The newest backup with a good copy in `target` and its copy, or undefined. */
  latestCopy(target: string): { backup: Backup; copy: TargetCopy } | undefined {
    return this.copies.latest(target);
  }

  // ---- restore drills (drills.ts) ----------------------------------------------------------------

  recordDrill(runId: number, startedAt: string, r: DrillResult): void {
    this.drills.record(runId, startedAt, r);
  }

  /** Drills, newest first. */
  listDrills(limit?: number): Array<DrillResult & { startedAt: string; finishedAt: string | null; runId: number | null }> {
    return this.drills.list(limit);
  }

  /**
   * The newest restore-drill run when it failed (or was interrupted) without recording a drill —
   * before it could restore (no copy, no key) — after the newest recorded drill: that drill's
   * outcome no longer stands. Undefined otherwise.
   */
  drillRunFailedSinceLastDrill(): Run | undefined {
    const run = this.lastRun('restore-drill');
    const [last] = this.listDrills(1);
    if (!run || (run.status !== 'failed' && run.status !== 'interrupted')) return undefined;
    return run.id !== last?.runId && (!last || run.startedAt >= last.startedAt) ? run : undefined;
  }

  /** Scratch databases of finished or abandoned drill runs not known to be dropped. */
  scratchDatabasesToDrop(): Array<{ runId: number; database: string }> {
    return this.drills.scratchDatabasesToDrop();
  }

  // ---- the monitor (monitor.ts) and the managed layer (snapshots.ts) ----------------------------

  recordMonitor(runId: number | null, doc: MonitorDoc): void {
    this.monitors.record(runId, doc);
  }

  /** Monitor results, newest first. */
  listMonitors(limit?: number): MonitorDoc[] {
    return this.monitors.list(limit);
  }

  /** Records what a poll saw, or why it failed (`snapshot` null). */
  recordSnapshot(runId: number | null, takenAt: string, snapshot: SupabaseSnapshot | null, error?: { code: string; message: string }): void {
    this.snapshots.record(runId, takenAt, snapshot, error);
  }

  /** The newest poll: its snapshot when it succeeded, else its error. */
  latestPoll(): Poll | undefined {
    return this.snapshots.latestPoll();
  }

  /** The newest successful snapshot of a configured project. */
  latestSnapshot(): SupabaseSnapshot | undefined {
    return this.snapshots.latest();
  }

  // ---- the backup lock (locks.ts) ----------------------------------------------------------------

  /**
   * Takes the named lock for this process if it is free or its holder is dead. Atomic across
   * processes (an IMMEDIATE transaction). Returns null on success, else the live holder.
   */
  tryLock(name: string, runId: number | null, purpose: string, ticket?: number): LockHolder | null {
    return this.locks.tryLock(name, runId, purpose, ticket);
  }

  /** Takes a place in the queue for a lock; the ticket orders {@link tryLock} across processes. */
  queueForLock(name: string, runId: number | null, purpose: string): number {
    return this.locks.queue(name, runId, purpose);
  }

  /** Leaves the queue (the wait was given up). Never throws. */
  leaveQueue(ticket: number): void {
    this.locks.leaveQueue(ticket);
  }

  /** Releases this process's lock. Never throws for a full disk (the row then names this live process). */
  unlock(name: string): void {
    this.locks.unlock(name);
  }
}
