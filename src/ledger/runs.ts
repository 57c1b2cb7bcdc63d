/**
 * Runs: one row per run of a job, started and finished here, with the outcomes a full disk would
 * not take held in memory (seen by readers, written as soon as the ledger takes them).
 */
import path from 'node:path';
import type { BackupStatus, Run, RunStatus, RunTrigger } from '../domain/types.js';
import type { JobName } from '../jobs/runs.js';
import { redact } from '../util/redact.js';
import { selfIdentity } from '../util/process.js';
import { isStorageFailure, storageError } from './errors.js';
import { now, type Prepared, type Sql } from './sql.js';

/** A `runs` row as stored. */
export interface RunRow {
  id: number;
  job: string;
  trigger: RunTrigger;
  status: RunStatus;
  started_at: string;
  finished_at: string | null;
  pid: number | null;
  pid_start: string | null;
  host: string | null;
  error_code: string | null;
  error_message: string | null;
  partial_path: string | null;
  final_path: string | null;
  backup_id: number | null;
  details: string | null;
}

function toRun(r: RunRow): Run {
  const run: Run = {
    id: r.id,
    job: r.job,
    trigger: r.trigger,
    status: r.status,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
  if (r.error_code) run.error = { code: r.error_code, message: r.error_message ?? '' };
  if (r.backup_id !== null) run.backupId = r.backup_id;
  if (r.details) run.details = JSON.parse(r.details) as Record<string, unknown>;
  return run;
}

interface PendingRun {
  run: Run;
  /** true: the run was never recorded (insert it); false: it was started, finish it. */
  insert: boolean;
  details?: Record<string, unknown>;
}

type RunError = { code: string; message: string };
type Ended = Exclude<RunStatus, 'running'>;

const SQL = {
  start: `INSERT INTO runs (job, trigger, status, started_at, pid, pid_start, host, details) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)`,
  insertFinished: `INSERT INTO runs (job, trigger, status, started_at, finished_at, pid, pid_start, host, error_code, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  finish: `UPDATE runs SET status=?, finished_at=?, error_code=?, error_message=? WHERE id=?`,
  finishWithBackup: `UPDATE runs SET status=?, finished_at=?, error_code=?, error_message=?, backup_id=? WHERE id=?`,
  setFiles: 'UPDATE runs SET partial_path = COALESCE(?, partial_path), final_path = COALESCE(?, final_path) WHERE id = ?',
  details: 'SELECT details FROM runs WHERE id=?',
  setDetails: 'UPDATE runs SET details=? WHERE id=?',
  byId: 'SELECT * FROM runs WHERE id=?',
  first: 'SELECT * FROM runs WHERE job=? ORDER BY started_at ASC, id ASC LIMIT 1',
  newestScheduledBackup: `SELECT * FROM runs WHERE job='backup' AND trigger IN ('schedule','startup') AND status != 'running' AND started_at <= ? ORDER BY started_at DESC, id DESC LIMIT 1`,
  running: `SELECT * FROM runs WHERE status = 'running'`,
  interrupt: `UPDATE runs SET status='interrupted', finished_at=?, error_code='interrupted', error_message=? WHERE id=? AND status='running'`,
  setBackup: 'UPDATE runs SET backup_id=? WHERE id=?',
};

export class Runs {
  private readonly q: Prepared<typeof SQL>;
  private readonly writeFinish: (runId: number, status: Ended, finishedAt: string, error: RunError | null, details?: Record<string, unknown>) => void;
  private readonly finishedListeners: Array<(run: Run) => void> = [];
  /** Run outcomes the ledger could not write (a full disk): held here, seen by readers, written by {@link flushPending}. */
  private readonly held: PendingRun[] = [];
  private nextPendingId = -1;

  /** `file`: the ledger's, for the error a refused write becomes. */
  constructor(
    private readonly sql: Sql,
    private readonly file: string,
  ) {
    this.q = sql.prepared(SQL);
    this.writeFinish = sql.db.transaction((runId: number, status: Ended, finishedAt: string, error: RunError | null, details?: Record<string, unknown>) => {
      if (details) this.mergeDetails(runId, details);
      this.q.finish.run(status, finishedAt, error?.code ?? null, error ? redact(error.message) : null, runId);
    });
  }

  /**
   * Records a run as started.
   * @throws HbError `disk-full` (or `ledger-unavailable`) when the ledger cannot be written
   */
  start(job: JobName, trigger: RunTrigger, details?: Record<string, unknown>): Run {
    this.flushPending();
    const me = selfIdentity();
    const startedAt = now();
    try {
      const info = this.q.start.run(job, trigger, startedAt, me.pid, me.start, me.host, details ? JSON.stringify(redactDetails(details)) : null);
      return this.get(Number(info.lastInsertRowid))!;
    } catch (e) {
      throw isStorageFailure(e) ? storageError(this.file, path.dirname(this.file), e) : e;
    }
  }

  /**
   * Records a run that failed before it could record its start. Never throws for a full disk:
   * the outcome is held (see {@link pending}) and written as soon as the ledger takes it.
   */
  recordFailed(job: string, trigger: RunTrigger, startedAt: string, error: RunError): Run {
    const finishedAt = now();
    try {
      const me = selfIdentity();
      const info = this.q.insertFinished.run(job, trigger, 'failed', startedAt, finishedAt, me.pid, me.start, me.host, error.code, redact(error.message));
      const run = this.get(Number(info.lastInsertRowid))!;
      this.emitFinished(run);
      return run;
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
      const run: Run = { id: this.nextPendingId--, job, trigger, status: 'failed', startedAt, finishedAt, error: { code: error.code, message: redact(error.message) } };
      this.held.push({ run, insert: true });
      this.emitFinished(run);
      return run;
    }
  }

  /** Run outcomes not yet in the ledger because it could not be written, oldest first. */
  pending(): Run[] {
    return this.held.map((p) => p.run);
  }

  /** Writes held run outcomes; returns how many are still held. Never throws. */
  flushPending(): number {
    while (this.held.length) {
      const p = this.held[0]!;
      const r = p.run;
      try {
        if (p.insert) {
          const me = selfIdentity();
          this.q.insertFinished.run(r.job, r.trigger, r.status, r.startedAt, r.finishedAt, me.pid, me.start, me.host, r.error?.code ?? null, r.error?.message ?? null);
        } else {
          this.writeFinish(r.id, r.status as Ended, r.finishedAt!, r.error ?? null, p.details);
        }
      } catch {
        return this.held.length;
      }
      this.held.shift();
    }
    return 0;
  }

  /** Records the files a run is writing, so a crash can be cleaned up. */
  setFiles(runId: number, files: { partialPath?: string | null; finalPath?: string | null }): void {
    this.q.setFiles.run(files.partialPath ?? null, files.finalPath ?? null, runId);
  }

  /** Adds `details` (redacted) to the run's, replacing keys it already has. */
  mergeDetails(runId: number, details: Record<string, unknown>): void {
    const row = this.q.details.get(runId) as { details: string | null } | undefined;
    const merged = { ...(row?.details ? (JSON.parse(row.details) as object) : {}), ...redactDetails(details) };
    this.q.setDetails.run(JSON.stringify(merged), runId);
  }

  /**
   * Records how a run ended, and tells the listeners (alerts, metrics). Never throws for a full
   * disk: the outcome is held, seen by {@link last} and {@link pending}, still reaches the
   * listeners, and is written as soon as the ledger takes it ({@link flushPending}).
   */
  finish(runId: number, status: Ended, error?: RunError | null, details?: Record<string, unknown>): Run {
    const finishedAt = now();
    try {
      this.writeFinish(runId, status, finishedAt, error ?? null, details);
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
      const started = this.get(runId);
      const run: Run = { id: runId, job: started?.job ?? 'unknown', trigger: started?.trigger ?? 'cli', status, startedAt: started?.startedAt ?? finishedAt, finishedAt, ...(error ? { error: { code: error.code, message: redact(error.message) } } : {}) };
      this.held.push({ run, insert: false, details });
      this.emitFinished(run);
      return run;
    }
    const run = this.get(runId)!;
    this.emitFinished(run);
    return run;
  }

  /**
   * Ends a backup's run as its backup ended (`ok`, `interrupted`, else `failed`) and links the
   * backup to it. Part of recording the backup: call inside its transaction, then {@link announce}.
   */
  finishWithBackup(runId: number, backupId: number, b: { status: BackupStatus; finishedAt: string | null; error: RunError | null }): void {
    const status: RunStatus = b.status === 'ok' ? 'ok' : b.status === 'interrupted' ? 'interrupted' : 'failed';
    this.q.finishWithBackup.run(status, b.finishedAt ?? now(), b.error?.code ?? null, b.error ? redact(b.error.message) : null, backupId, runId);
  }

  /** Tells the listeners how a run that was written elsewhere ({@link finishWithBackup}) ended. */
  announce(runId: number): void {
    this.emitFinished(this.get(runId)!);
  }

  /** Calls `fn` with every run this process finishes (for alerts and metrics). */
  onFinished(fn: (run: Run) => void): void {
    this.finishedListeners.push(fn);
  }

  private emitFinished(run: Run): void {
    for (const fn of this.finishedListeners) {
      try {
        fn(run);
      } catch {
        // a listener's failure is not the run's
      }
    }
  }

  get(id: number): Run | undefined {
    const r = this.q.byId.get(id) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  list(filter: { since?: string; job?: string; limit?: number } = {}): Run[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.since) {
      where.push('started_at >= ?');
      args.push(filter.since);
    }
    if (filter.job) {
      where.push('job = ?');
      args.push(filter.job);
    }
    const text = `SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, id DESC LIMIT ?`;
    return (this.sql.cached(text).all(...args, filter.limit ?? 1000) as RunRow[]).map(toRun);
  }

  /** The newest finished backup run started by the schedule (or its start-up catch-up), up to `beforeIso`. */
  newestScheduledBackup(beforeIso: string): Run | undefined {
    const r = this.q.newestScheduledBackup.get(beforeIso) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  /** The oldest run of a job (for `service`: when the service was first started on this ledger). */
  first(job: string): Run | undefined {
    const r = this.q.first.get(job) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  /** The newest run of a job, optionally only with some triggers, or only with a status. */
  last(job: string, triggers?: readonly string[], status?: RunStatus): Run | undefined {
    const where = `${triggers?.length ? ` AND trigger IN (${triggers.map(() => '?').join(',')})` : ''}${status ? ' AND status = ?' : ''}`;
    const args: unknown[] = [job, ...(triggers ?? []), ...(status ? [status] : [])];
    const r = this.sql.cached(`SELECT * FROM runs WHERE job=?${where} ORDER BY started_at DESC, id DESC LIMIT 1`).get(...args) as RunRow | undefined;
    const stored = r ? toRun(r) : undefined;
    // An outcome the disk could not take yet is still the newest word on the job.
    const held = this.held
      .map((p) => p.run)
      .filter((x) => x.job === job && (!triggers?.length || triggers.includes(x.trigger)) && (!status || x.status === status))
      .pop();
    if (!held) return stored;
    return !stored || held.startedAt >= stored.startedAt || held.id === stored.id ? held : stored;
  }

  /** How many runs of a job (optionally with a status) started since `sinceIso`. */
  count(job: string, sinceIso: string, status?: RunStatus): number {
    const args: unknown[] = status ? [job, sinceIso, status] : [job, sinceIso];
    return (this.sql.cached(`SELECT count(*) AS n FROM runs WHERE job = ? AND started_at >= ?${status ? ' AND status = ?' : ''}`).get(...args) as { n: number }).n;
  }

  // ---- for crash recovery (see recovery.ts) ----

  /** Every run still marked running, whoever runs it. */
  running(): RunRow[] {
    return this.q.running.all() as RunRow[];
  }

  /** Ends a run whose process died as interrupted; false when it was no longer running (another process recovered it first). */
  interrupt(runId: number, message: string): boolean {
    return this.q.interrupt.run(now(), message, runId).changes !== 0;
  }

  /** Links a run to the backup it produced. */
  setBackup(runId: number, backupId: number): void {
    this.q.setBackup.run(backupId, runId);
  }
}

function redactDetails(d: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(redact(JSON.stringify(d))) as Record<string, unknown>;
}
