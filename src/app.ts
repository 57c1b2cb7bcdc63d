/**
 * The composition root: builds every component from a configuration and hands each its
 * dependencies. No module-level state beyond the redactor's secret list.
 */
import type { Config } from './config/schema.js';
import { type Reporter, type RunContext, type ServiceView, silentReporter } from './context.js';
import type { RunTrigger } from './domain/types.js';
import { Ledger } from './ledger/ledger.js';
import { type Level, Logs } from './log/logger.js';
import { FifoMutex } from './util/fifo-mutex.js';
import { ensurePrivateDir } from './util/fs.js';
import { RateLimiter } from './util/rate-limiter.js';

export interface AppOptions {
  consoleLevel: Level | 'silent';
}

export class App {
  private closing: Promise<void> | undefined;
  /** One backup at a time in this process, in order; the ledger lock covers other processes. */
  readonly backupSlot = new FifoMutex();
  /** Supabase allows 60 Management API requests a minute per token. */
  readonly apiLimiter = new RateLimiter(60, 60_000);

  private constructor(
    readonly config: Config,
    readonly ledger: Ledger,
    readonly logs: Logs,
  ) {}

  /** Creates the backup directory (0700), opens the logs and the ledger (recovering crashed runs). */
  static async open(config: Config, opts: AppOptions): Promise<App> {
    await ensurePrivateDir(config.backupDir);
    const logs = new Logs({ dir: config.backupDir, fileLevel: config.log.level, consoleLevel: opts.consoleLevel });
    let ledger: Ledger;
    try {
      ledger = Ledger.open(config.backupDir);
    } catch (e) {
      await logs.close();
      throw e;
    }
    const log = logs.channel('backup');
    for (const r of ledger.recovered) {
      log.warn(`run ${r.runId} (${r.job}) was left running by process ${r.pid ?? '?'}, which is gone: marked interrupted`, {
        runId: r.runId,
        removed: r.removed,
      });
    }
    return new App(config, ledger, logs);
  }

  context(trigger: RunTrigger, opts: { reporter?: Reporter; signal?: AbortSignal; config?: Config; service?: ServiceView } = {}): RunContext {
    return {
      config: opts.config ?? this.config,
      ledger: this.ledger,
      logs: this.logs,
      log: this.logs.channel('backup'),
      trigger,
      signal: opts.signal ?? new AbortController().signal,
      reporter: opts.reporter ?? silentReporter,
      backupSlot: this.backupSlot,
      apiLimiter: this.apiLimiter,
      ...(opts.service ? { service: opts.service } : {}),
    };
  }

  /** Closes the ledger and flushes the logs; concurrent and repeated calls share one close. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ledger.close();
      await this.logs.close();
    })();
    return this.closing;
  }
}
