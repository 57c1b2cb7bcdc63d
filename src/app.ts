/**
 * The composition root: builds every component from a configuration and hands each its
 * dependencies. No module-level state beyond the redactor's secret list.
 */
import { setMaxListeners } from 'node:events';
import path from 'node:path';
import { Alerter } from './alerts/webhook.js';
import type { Config } from './config/schema.js';
import { type Reporter, type RunContext, type ServiceView, silentReporter } from './context.js';
import { HbError } from './domain/errors.js';
import type { RunTrigger } from './domain/types.js';
import { Ledger } from './ledger/ledger.js';
import { type Level, Logs } from './log/logger.js';
import { metricsPath, writeMetrics } from './monitor/metrics.js';
import { alertFor } from './jobs/runs.js';
import { FifoMutex } from './util/fifo-mutex.js';
import { ensurePrivateDir, removeStaleTempFiles } from './util/fs.js';
import { isAlive } from './util/process.js';
import { RateLimiter } from './util/rate-limiter.js';

export interface AppOptions {
  consoleLevel: Level | 'silent';
  consoleJson?: boolean;
  /** For `ledger-rebuild`: accept an empty ledger beside sidecars, move an unreadable one aside. */
  recoverLedger?: boolean;
  /** For commands that only look (the monitor): when the disk is full, read a copy of the ledger. */
  readOnlyOnFullDisk?: boolean;
}

/** Listeners a command's signal may have at once before Node warns of a leak. */
const CONTEXT_SIGNAL_LISTENERS = 256;

export class App {
  private closing: Promise<void> | undefined;
  /** One backup at a time in this process, in order; the ledger lock covers other processes. */
  readonly backupSlot = new FifoMutex();
  readonly offsiteSlot = new FifoMutex();
  /** Supabase allows 60 Management API requests a minute per token. */
  readonly apiLimiter = new RateLimiter(60, 60_000);

  readonly alerts: Alerter;
  private metricsTimer: NodeJS.Timeout | undefined;
  private metricsDirty = false;

  private constructor(
    readonly config: Config,
    readonly ledger: Ledger,
    readonly logs: Logs,
    private readonly consoleSilent: boolean,
  ) {
    this.alerts = new Alerter({ url: config.alerts.webhookUrl, timeoutMs: config.alerts.timeoutSeconds * 1000, retries: config.alerts.retries, exitWaitMs: config.alerts.exitWaitSeconds * 1000, log: logs.channel('backup') });
    ledger.onRunFinished((run) => {
      const alert = alertFor(run);
      if (alert) this.alerts.send(alert);
      this.scheduleMetrics();
    });
  }

  /** Rewrites metrics.prom soon after runs finish (one write for a burst). */
  private scheduleMetrics(): void {
    this.metricsDirty = true;
    if (this.metricsTimer) return;
    this.metricsTimer = setTimeout(() => void this.flushMetrics(), 500);
  }

  private async flushMetrics(): Promise<void> {
    if (this.metricsTimer) clearTimeout(this.metricsTimer);
    this.metricsTimer = undefined;
    if (!this.metricsDirty) return;
    this.metricsDirty = false;
    try {
      await writeMetrics(this.config, this.ledger);
    } catch (e) {
      // The metrics file is how a failure reaches Prometheus; when it cannot be written (a full
      // disk), say so where someone will see it.
      const msg = `cannot write metrics to ${metricsPath(this.config)}: ${(e as Error).message}`;
      this.logs.channel('backup').warn(msg);
      if (this.consoleSilent) process.stderr.write(`hybrid-backup: ${msg}\n`);
    }
  }

  /** Creates the backup directory (0700), opens the logs and the ledger (recovering crashed runs). */
  static async open(config: Config, opts: AppOptions): Promise<App> {
    await ensurePrivateDir(config.backupDir);
    const logs = new Logs({ dir: config.backupDir, fileLevel: config.log.level, consoleLevel: opts.consoleLevel, consoleJson: opts.consoleJson });
    let ledger: Ledger;
    try {
      ledger = Ledger.open(config.backupDir, { recover: opts.recoverLedger });
    } catch (e) {
      // A full disk must not keep the monitor (or list) from looking: a read-only copy will do.
      if (opts.readOnlyOnFullDisk && e instanceof HbError && e.code === 'disk-full') {
        try {
          ledger = Ledger.openReadOnlyCopy(config.backupDir, e.message);
        } catch {
          await logs.close();
          throw e;
        }
      } else {
        await logs.close();
        throw e;
      }
    }
    const log = logs.channel('backup');
    for (const r of ledger.recovered) {
      log.warn(`run ${r.runId} (${r.job}) was left running by process ${r.pid ?? '?'}, which is gone: marked interrupted`, {
        runId: r.runId,
        removed: r.removed,
      });
    }
    for (const dir of [config.backupDir, path.join(config.backupDir, 'reports')]) {
      const removed = await removeStaleTempFiles(dir, (pid) => isAlive({ pid, start: null, host: null }));
      if (removed.length) log.warn(`removed ${removed.length} temporary file(s) left by a process that died mid-write: ${removed.join(', ')}`, { dir });
    }
    return new App(config, ledger, logs, opts.consoleLevel === 'silent');
  }

  context(trigger: RunTrigger, opts: { reporter?: Reporter; signal?: AbortSignal; config?: Config; service?: ServiceView } = {}): RunContext {
    const signal = opts.signal ?? new AbortController().signal;
    // One signal stops a whole command, whose concurrent requests and file writes each listen to
    // it while they run (a restore of Storage files keeps dozens going): Node's warning at 10
    // listeners, "possible memory leak", would be a false alarm on the operator's terminal.
    setMaxListeners(CONTEXT_SIGNAL_LISTENERS, signal);
    return {
      config: opts.config ?? this.config,
      ledger: this.ledger,
      logs: this.logs,
      log: this.logs.channel('backup'),
      trigger,
      signal,
      reporter: opts.reporter ?? silentReporter,
      backupSlot: this.backupSlot,
      offsiteSlot: this.offsiteSlot,
      apiLimiter: this.apiLimiter,
      alerts: this.alerts,
      ...(opts.service ? { service: opts.service } : {}),
    };
  }

  /** Closes the ledger and flushes the logs; concurrent and repeated calls share one close. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flushMetrics();
      this.ledger.flushPending();
      this.ledger.close();
      await this.alerts.flush();
      await this.logs.close();
    })();
    return this.closing;
  }
}

