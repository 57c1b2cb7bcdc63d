/**
 * The resident service: runs the scheduled jobs and answers commands on the control socket.
 *
 * Guarantees:
 * - a job never overlaps itself; backups run one at a time, in the order asked for, whatever
 *   started them (the app's backup slot);
 * - a daily job whose time passed while the service was down runs once at start-up;
 * - a job that throws is recorded failed and the service carries on;
 * - `stop()` stops taking work, lets running work finish within the grace period, then aborts
 *   it (partials removed, runs `interrupted`), closes the socket and the ledger; safe to call
 *   twice (callers share one stop);
 * - `reload()` swaps in a new configuration only when it is valid.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Cron } from 'croner';
import type { App } from '../app.js';
import { parseCommandArgs } from '../commands/command.js';
import { findCommand } from '../commands/index.js';
import { loadConfig } from '../config/load.js';
import { type DatabaseIdentity, databaseIdentity, describeIdentity, sameDatabase, sourceConnInfo } from '../pg/connection.js';
import type { Config } from '../config/schema.js';
import type { Reporter, ServiceView } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { RunTrigger } from '../domain/types.js';
import { type Job, JOBS } from '../jobs/registry.js';
import { RunScope } from '../jobs/runs.js';
import { previousRunOf } from '../config/schedule.js';
import type { Logger } from '../log/logger.js';
import type { Reply, Request } from './protocol.js';
import { ControlServer } from './socket-server.js';
import { cronZone } from '../util/time-zone.js';

type Result = Extract<Reply, { type: 'result' }>;

export interface ServiceOptions {
  /** `--config`, re-read on reload. */
  configFile?: string;
  version: string;
}

export class Service implements ServiceView {
  readonly pid = process.pid;
  startedAt = new Date().toISOString();
  private config: Config;
  private readonly log: Logger;
  private readonly server: ControlServer;
  private crons: Cron[] = [];
  private readonly running = new Set<string>();
  private readonly work = new Set<Promise<unknown>>();
  /** Aborted when the grace period of a stop is over: backups, restores, drills, retention. */
  private readonly abort = new AbortController();
  /** Aborted as a stop begins: read-only work (polls, the monitor, reports) has nothing to finish. */
  private readonly abortNow = new AbortController();
  /** The service's own run, from start to stop. */
  private serviceRun: RunScope | null = null;
  private flushTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly app: App,
    private readonly opts: ServiceOptions,
  ) {
    this.config = app.config;
    this.log = app.logs.channel('backup');
    this.server = new ControlServer({
      path: this.config.socket.path,
      group: this.config.socket.group,
      idleTimeoutMs: this.config.socket.idleTimeoutSeconds * 1000,
      requestTimeoutMs: this.config.socket.requestTimeoutSeconds * 1000,
      maxConnections: this.config.socket.maxConnections,
      handler: (req, reporter) => this.handle(req, reporter),
      log: this.log,
    });
  }

  /**
   * Listens, schedules, records the service run, and starts missed daily jobs in the background.
   * @throws HbError `service-running` when another service answers on the socket.
   */
  async start(): Promise<void> {
    await this.server.listen();
    this.serviceRun = RunScope.start({ ledger: this.app.ledger, signal: this.abortNow.signal, trigger: 'cli' }, 'service', { socket: this.config.socket.path, version: this.opts.version });
    this.schedule();
    // Outcomes the ledger could not write (a full disk) are written as soon as it takes them.
    this.flushTimer = setInterval(() => {
      const before = this.app.ledger.pendingRuns().length;
      if (before && this.app.ledger.flushPending() === 0) this.log.info(`the ledger takes writes again: ${before} held run outcome${before === 1 ? '' : 's'} recorded`);
    }, 60_000);
    this.flushTimer.unref();
    this.log.info(`service started (pid ${this.pid}, backups in ${this.config.backupDir}, times in ${this.config.timezone})`);
    for (const w of this.config.warnings) this.log.warn(`configuration: ${w}`);
    const missed = this.jobs().filter((j) => j.startup.kind === 'missed' && this.missed(j));
    const stale = this.jobs().filter((j) => j.startup.kind === 'stale' && this.stale(j, j.startup.maxAgeMs));
    if (missed.length) this.log.info(`catching up ${missed.map((j) => j.name).join(', ')}: due while the service was down`);
    if (stale.length) this.log.info(`running ${stale.map((j) => j.name).join(', ')} now: the last run is too old`);
    if (missed.length || stale.length) {
      void (async () => {
        for (const j of [...missed, ...stale]) await this.runJob(j, 'startup');
      })();
    }
  }

  /** The jobs this configuration schedules. */
  private jobs(): Job[] {
    return JOBS.filter((j) => j.enabled?.(this.config) ?? true);
  }

  private stale(job: Job, maxAgeMs: number): boolean {
    const last = this.app.ledger.lastRun(job.name);
    return !last || Date.now() - Date.parse(last.startedAt) > maxAgeMs;
  }

  /**
   * Whether the job's last due time passed with no good scheduled run since: missed while the
   * service was down, or cut short by a crash or restart. A due time before the service was
   * first started on this backup directory was never the service's to keep.
   */
  private missed(job: Job): boolean {
    const due = previousRunOf(this.config, job.name);
    if (!due) return false;
    const installed = this.app.ledger.firstRun('service');
    if (!installed || installed.startedAt > due.toISOString()) return false;
    const last = this.app.ledger.lastRun(job.name, ['schedule', 'startup'], 'ok');
    return !last || last.startedAt < due.toISOString();
  }

  private schedule(): void {
    for (const c of this.crons) c.stop();
    this.crons = this.jobs().map(
      (job) =>
        new Cron(
          this.config.schedules[job.name],
          {
            ...cronZone(this.config.timezone),
            catch: true,
            // croner's own guard; runJob guards too, for start-up and socket triggers
            protect: () => this.log.warn(`job ${job.name}: the previous run is still going; this schedule run is skipped`),
          },
          () => this.runJob(job, 'schedule'),
        ),
    );
    for (const [i, job] of this.jobs().entries()) {
      this.log.info(`job ${job.name} (${job.title}): "${this.config.schedules[job.name]}", next at ${this.crons[i]!.nextRun()?.toISOString() ?? 'never'}`);
    }
  }

  jobState(name: string): { running: boolean; nextRun: string | null } | undefined {
    const i = this.jobs().findIndex((j) => j.name === name);
    if (i < 0) return undefined;
    return { running: this.running.has(name), nextRun: this.crons[i]?.nextRun()?.toISOString() ?? null };
  }

  background(work: Promise<unknown>): void {
    void this.track(work.catch((e) => this.log.error(`background work failed: ${toHbError(e).message}`)));
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.work.add(p);
    const done = () => this.work.delete(p);
    p.then(done, done);
    return p;
  }

  /** Runs a job unless it is already running; never throws. */
  async runJob(job: Job, trigger: RunTrigger): Promise<void> {
    if (this.stopping) return;
    if (this.running.has(job.name)) {
      this.log.warn(`job ${job.name}: the previous run is still going; this ${trigger} run is skipped`);
      return;
    }
    this.running.add(job.name);
    const startedAt = new Date().toISOString();
    const signal = job.grace ? this.abort.signal : this.abortNow.signal;
    const ctx = this.app.context(trigger, { signal, config: this.config, service: this });
    this.log.info(`job ${job.name} starting (${trigger})`);
    try {
      const summary = await this.track(job.run(ctx));
      this.log.info(`job ${job.name} done: ${summary}`);
    } catch (e) {
      const err = toHbError(e);
      // The failure is heard whatever broke: the console (the journal) first, then the ledger —
      // which holds it and writes it later when its disk is full — and through the ledger the
      // alert and the metrics.
      this.log.error(`job ${job.name} failed: ${err.message}${err.hint ? ` (hint: ${err.hint})` : ''}`, { code: err.code, ...(err.code === 'internal' ? { stack: (err.cause as Error)?.stack } : {}) });
      try {
        if (!RunScope.settle(ctx, err)) this.app.ledger.recordFailedRun(job.name, trigger, startedAt, { code: err.code, message: err.message });
      } catch (again) {
        this.log.error(`job ${job.name}: its failure could not be recorded in the ledger either: ${toHbError(again).message}`);
        this.app.alerts.send({ event: job.name === 'backup' ? 'backup-failed' : 'job-failed', severity: 'critical', summary: `${job.name} failed and could not be recorded: ${err.message}`, details: { job: job.name, trigger, code: err.code, startedAt } });
      }
    } finally {
      this.running.delete(job.name);
    }
  }

  /** Answers one control-socket request. */
  async handle(req: Request, reporter: Reporter): Promise<Result> {
    const fail = (e: HbError): Result => ({ type: 'result', ok: false, exitCode: e.exitCode, error: e.toJSON() });
    if (this.stopping) return fail(new HbError('service-stopping', 'the service is shutting down and takes no new work', 'try again once it is back, or use --direct'));
    if (req.command === 'ping') return { type: 'result', ok: true, exitCode: 0, doc: { pid: this.pid, startedAt: this.startedAt, version: this.opts.version } };
    const cmd = findCommand(req.command);
    if (!cmd) return fail(new HbError('usage', `unknown command ${req.command}`, 'see hybrid-backup --help'));
    try {
      const args = parseCommandArgs(cmd, req.args);
      if (cmd.meansDatabase && req.database) this.assertSameDatabase(cmd.name, req.database);
      const signal = cmd.grace ? this.abort.signal : this.abortNow.signal;
      const ctx = this.app.context('socket', { reporter, signal, config: this.config, service: this });
      const doc = await this.track(cmd.run(ctx, args));
      return { type: 'result', ok: true, exitCode: cmd.exitCode?.(doc) ?? 0, doc };
    } catch (e) {
      return fail(toHbError(e));
    }
  }

  /**
   * A command that dumps or restores must mean the database this service protects: a pre-change
   * gate that passes with a backup of another database is the worst false success.
   * @throws HbError `database-mismatch` (exit 2) naming both
   */
  private assertSameDatabase(command: string, asked: DatabaseIdentity): void {
    const mine = databaseIdentity(sourceConnInfo(this.config.databaseUrl, this.config.environment.libpq));
    if (sameDatabase(mine, asked)) return;
    throw new HbError(
      'database-mismatch',
      `refusing ${command}: this command means ${describeIdentity(asked)} (its DATABASE_URL), but the service on ${this.config.socket.path} protects ${describeIdentity(mine)}`,
      'point DATABASE_URL at the database the service protects, talk to the service that protects the other one (HYBRID_BACKUP_SOCKET), or run with --direct to back it up from this process',
    );
  }

  /** Re-reads the configuration; a bad one is refused and the running one kept. */
  reload(): void {
    let next: Config;
    try {
      next = loadConfig({ configFile: this.opts.configFile });
    } catch (e) {
      const err = toHbError(e);
      this.log.error(`reload refused, keeping the running configuration: ${err.message}${err.hint ? ` (hint: ${err.hint})` : ''}`);
      return;
    }
    for (const [what, a, b] of [
      ['backupDir', this.config.backupDir, next.backupDir],
      ['socket.path', this.config.socket.path, next.socket.path],
    ] as const) {
      if (a !== b) this.log.warn(`reload: ${what} changed (${a} -> ${b}); that takes effect only after a restart`);
    }
    this.config = { ...next, backupDir: this.config.backupDir, socket: this.config.socket };
    for (const w of next.warnings) this.log.warn(`configuration: ${w}`);
    this.schedule();
    this.log.info('configuration reloaded');
  }

  /** Stops the service; see the class comment. */
  /** How long a stop lets running work finish, from the current (possibly reloaded) configuration. */
  shutdownGraceMs(): number {
    return this.config.service.shutdownGraceSeconds * 1000;
  }

  stop(graceMs = this.shutdownGraceMs()): Promise<void> {
    this.stopping ??= (async () => {
      const busy = this.work.size;
      this.log.info(`stopping: taking no new work${busy ? `; waiting up to ${graceMs / 1000}s for ${busy} running operation${busy === 1 ? '' : 's'}` : ''}`);
      this.server.stopAccepting();
      for (const c of this.crons) c.stop();
      clearInterval(this.flushTimer);
      // Read-only work stops now; only work that writes a backup or a database gets the grace period.
      this.abortNow.abort();
      this.app.backupSlot.rejectWaiting(new HbError('service-stopping', 'the service is shutting down; this backup did not start', 'run it again once the service is back'));
      // Until nothing runs: work may start work (a backup its upload) during the grace period.
      const deadline = Date.now() + graceMs;
      while (this.work.size > 0 && Date.now() < deadline) {
        await Promise.race([Promise.allSettled([...this.work]), sleep(deadline - Date.now())]);
      }
      if (this.work.size > 0) {
        this.log.warn('grace period over: aborting running work (partial files are removed, runs recorded interrupted)');
        this.abort.abort();
        while (this.work.size > 0) await Promise.allSettled([...this.work]);
      }
      await this.server.close();
      this.serviceRun?.ok();
      this.log.info('service stopped');
      await this.app.close();
    })();
    return this.stopping;
  }
}
