/**
 * Every kind of run the ledger records, declared once — with the alert its failure raises — and
 * the one way to record a run: {@link RunScope} starts it and finishes it, and decides alone when
 * a run that ended by an error was stopped (`interrupted`) rather than `failed`. Metrics, alerts
 * and `runs --job` derive from {@link JOB_NAMES}, so a new job cannot go unmeasured or unheard.
 */
import type { AlertEvent } from '../alerts/webhook.js';
import type { RunContext } from '../context.js';
import { type HbError, toHbError } from '../domain/errors.js';
import type { Run } from '../domain/types.js';

interface JobInfo {
  /** What a person calls it, in alerts. */
  title: string;
  /** Said after the status in the alert, e.g. that it is retried. */
  note?: string;
  /** The alert a failed run raises; null for what an operator runs by hand and watches. */
  alert: { event: AlertEvent['event']; severity: AlertEvent['severity'] } | null;
  /** Whether an interrupted run is alerted too (a backup stopped is a backup missing). */
  alertInterrupted?: boolean;
}

export const JOBS = {
  backup: { title: 'backup', alert: { event: 'backup-failed', severity: 'critical' }, alertInterrupted: true },
  'offsite-upload': { title: 'offsite copy', note: ' (retried at the next run)', alert: { event: 'offsite-failed', severity: 'warning' } },
  prune: { title: 'retention', alert: { event: 'job-failed', severity: 'warning' } },
  monitor: { title: 'monitor', alert: { event: 'job-failed', severity: 'warning' } },
  'supabase-poll': { title: 'Supabase poll', alert: { event: 'poll-failed', severity: 'warning' } },
  'restore-drill': { title: 'restore drill', alert: { event: 'drill-failed', severity: 'critical' } },
  verify: { title: 'verify', alert: { event: 'job-failed', severity: 'warning' } },
  restore: { title: 'restore', alert: null },
  'restore-storage': { title: 'restore of Storage files', alert: null },
  'ledger-rebuild': { title: 'ledger-rebuild', alert: null },
  'supabase-schedule': { title: 'Supabase backup schedule change', alert: null },
  'supabase-restore-pitr': { title: 'Supabase point-in-time restore', alert: null },
  service: { title: 'service', alert: null },
} as const satisfies Record<string, JobInfo>;

export type JobName = keyof typeof JOBS;
export const JOB_NAMES = Object.keys(JOBS) as JobName[];

export function isJobName(s: string): s is JobName {
  return Object.hasOwn(JOBS, s);
}

/** Error codes that mean "stopped before it finished", not "failed". */
const STOP_CODES = new Set(['aborted', 'dump-aborted', 'service-stopping', 'interrupted']);

/** Whether an error ended a run by stopping it (an abort, a shutdown) rather than by failing. */
export function isStop(err: HbError, signal?: AbortSignal): boolean {
  return STOP_CODES.has(err.code) || !!signal?.aborted;
}

/** The alert a finished run deserves, if any (from {@link JOBS}). */
export function alertFor(run: Run): AlertEvent | null {
  const info: JobInfo | undefined = isJobName(run.job) ? JOBS[run.job] : { title: run.job, alert: { event: 'job-failed', severity: 'warning' } };
  if (!info?.alert) return null;
  if (run.status !== 'failed' && !(run.status === 'interrupted' && info.alertInterrupted)) return null;
  if (run.error?.code === 'service-stopping') return null; // queued when the service stopped: it never started
  const why = run.error?.message ?? run.status;
  const details: Record<string, unknown> = { runId: run.id, job: run.job, trigger: run.trigger, code: run.error?.code, startedAt: run.startedAt };
  if (run.backupId !== undefined) details.backupId = run.backupId;
  return { event: info.alert.event, severity: info.alert.severity, summary: `${info.title} ${run.status}${info.note ?? ''}: ${why}`, details };
}

/**
 * One run in the ledger, from its start to its end: `ok()`, `failed()` for a run that completed
 * and found something wrong, `fail(e)` for one an error ended (interrupted when it was stopped).
 * The first ending counts; later ones are ignored, so a `finally` may end it safely.
 */
/** The runs started in each context (one per job run, request or command), to settle them when the job throws. */
const scopesOf = new WeakMap<object, RunScope[]>();

export class RunScope {
  private ended = false;
  /** The error this run was ended with, as thrown (so that whoever catches it knows it is recorded). */
  private endedBy: unknown = undefined;

  private constructor(
    private readonly ctx: Pick<RunContext, 'ledger' | 'signal'>,
    readonly run: Run,
  ) {}

  static start(ctx: Pick<RunContext, 'ledger' | 'signal' | 'trigger'>, job: JobName, details?: Record<string, unknown>): RunScope {
    const scope = new RunScope(ctx, ctx.ledger.startRun(job, ctx.trigger, details));
    const list = scopesOf.get(ctx);
    if (list) list.push(scope);
    else scopesOf.set(ctx, [scope]);
    return scope;
  }

  /**
   * After a job run in `ctx` threw `e`: ends the runs it left open with `e`, and says whether the
   * failure is in the ledger — false when it was thrown before any run started or after the last
   * one ended well (the caller records it then, under the job's name).
   */
  static settle(ctx: object, e: unknown): boolean {
    let recorded = false;
    for (const scope of scopesOf.get(ctx) ?? []) {
      if (!scope.ended) scope.fail(e);
      if (scope.endedBy === e) recorded = true;
    }
    return recorded;
  }

  get id(): number {
    return this.run.id;
  }

  get finished(): boolean {
    return this.ended;
  }

  /** The run was finished by a ledger write that records it with its result (a backup's row), ended by `error` if it failed. */
  recorded(error?: unknown): void {
    this.ended = true;
    this.endedBy = error;
  }

  /** The status an error ends this run with: interrupted when it was stopped, else failed. */
  statusFor(err: HbError): 'interrupted' | 'failed' {
    return isStop(err, this.ctx.signal) ? 'interrupted' : 'failed';
  }

  ok(details?: Record<string, unknown>): void {
    this.end('ok', null, details);
  }

  /**
   * Ended without success, with the error recorded as given (a checksum that does not match, a
   * drill that found differences): interrupted when it was stopped, else failed.
   */
  failed(error: { code: string; message: string }, details?: Record<string, unknown>): void {
    this.end(STOP_CODES.has(error.code) || this.ctx.signal?.aborted ? 'interrupted' : 'failed', error, details);
  }

  /** Ended by an error: recorded as interrupted when it was stopped, else failed. Returns the error as an HbError. */
  fail(e: unknown, details?: Record<string, unknown>): HbError {
    const err = toHbError(e);
    if (!this.ended) this.endedBy = err;
    this.end(this.statusFor(err), { code: err.code, message: err.message }, details);
    return err;
  }

  private end(status: 'ok' | 'failed' | 'interrupted', error: { code: string; message: string } | null, details?: Record<string, unknown>): void {
    if (this.ended) return;
    this.ended = true;
    this.ctx.ledger.finishRun(this.run.id, status, error, details);
  }
}
