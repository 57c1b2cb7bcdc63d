/**
 * What every operation runs with: the configuration, the open ledger, loggers, how it was
 * triggered, a cancellation signal, and a reporter for progress and notices (a terminal, a
 * socket client, or nobody).
 */
import type { Alerter } from './alerts/webhook.js';
import type { Config } from './config/schema.js';
import type { ProgressEvent, RunTrigger } from './domain/types.js';
import type { Ledger } from './ledger/ledger.js';
import type { Logger, Logs } from './log/logger.js';
import type { FifoMutex } from './util/fifo-mutex.js';
import type { RateLimiter } from './util/rate-limiter.js';

export interface Reporter {
  /** Progress of a long operation; shown on terminals, streamed to socket clients. */
  progress(e: ProgressEvent): void;
  /** A one-line message the operator should see now (waiting for a lock, a warning). */
  notice(message: string): void;
}

export const silentReporter: Reporter = { progress() {}, notice() {} };

/** What a running service tells about itself (absent when a command runs in-process). */
export interface ServiceView {
  pid: number;
  startedAt: string;
  /** Live job state: running now, next time. */
  jobState(name: string): { running: boolean; nextRun: string | null } | undefined;
  /** Work that goes on after a reply (an upload); a stopping service waits for it within its grace period. */
  background(work: Promise<unknown>): void;
}

export interface RunContext {
  config: Config;
  ledger: Ledger;
  logs: Logs;
  /** The `backup` channel (backup.log). */
  log: Logger;
  trigger: RunTrigger;
  signal: AbortSignal;
  reporter: Reporter;
  /** Serialises this process's backups, in the order they were asked for. */
  backupSlot: FifoMutex;
  /** One offsite sync at a time in this process. */
  offsiteSlot: FifoMutex;
  /** At most 60 Management API requests a minute from this process. */
  apiLimiter: RateLimiter;
  /** Webhook alerts (a no-op without ALERT_WEBHOOK_URL). */
  alerts: Alerter;
  service?: ServiceView;
}
