/**
 * Alerts: JSON POSTed to ALERT_WEBHOOK_URL — a Slack-compatible `text` plus structured fields —
 * on a failed backup, poll, drill or offsite upload, and on monitor status changes (recovery
 * included). Sending never delays or fails the work that caused it: it runs in the background,
 * retried with backoff, and a process waits for pending alerts only when it closes, for at most
 * {@link DEFAULT_EXIT_WAIT_MS} — a migration script waiting on a failed pre-change backup is not
 * held up by a receiver that is down; what is still unsent then is given up, and logged.
 * The URL carries a secret: only its host is ever logged.
 */
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.js';
import { redact } from '../util/redact.js';

export type AlertSeverity = 'critical' | 'warning' | 'ok' | 'info';

export interface AlertEvent {
  event: 'backup-failed' | 'backup-missing' | 'poll-failed' | 'drill-failed' | 'offsite-failed' | 'monitor-status-changed' | 'monitor-new-problem' | 'job-failed';
  severity: AlertSeverity;
  /** One line: what happened. */
  summary: string;
  details?: Record<string, unknown>;
}

const ICON: Record<AlertSeverity, string> = { critical: ':red_circle:', warning: ':warning:', ok: ':large_green_circle:', info: ':information_source:' };

/** How long a closing process waits for pending alerts before giving them up. */
export const DEFAULT_EXIT_WAIT_MS = 5_000;

export interface AlerterOptions {
  url: string | undefined;
  /** One POST's timeout. */
  timeoutMs: number;
  retries: number;
  log: Logger;
  /** How long {@link Alerter.flush} waits at close; default {@link DEFAULT_EXIT_WAIT_MS}. */
  exitWaitMs?: number;
}

export class Alerter {
  private readonly pending = new Set<Promise<void>>();
  private readonly host = os.hostname();
  /** Aborted when closing stops waiting: in-flight POSTs and backoff waits end at once. */
  private readonly giveUp = new AbortController();

  constructor(private readonly o: AlerterOptions) {}

  get enabled(): boolean {
    return !!this.o.url;
  }

  private get target(): string {
    try {
      return new URL(this.o.url!).host;
    } catch {
      return 'the webhook';
    }
  }

  /** The body sent for an event. */
  payload(e: AlertEvent): Record<string, unknown> {
    return {
      text: `${ICON[e.severity]} hybrid-backup on ${this.host}: ${e.summary}`,
      event: e.event,
      severity: e.severity,
      host: this.host,
      at: new Date().toISOString(),
      ...(e.details ? { details: JSON.parse(redact(JSON.stringify(e.details))) as unknown } : {}),
    };
  }

  /** Queues an alert; returns at once. */
  send(e: AlertEvent): void {
    if (!this.o.url) return;
    const p = this.deliver(this.payload(e)).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private async deliver(body: Record<string, unknown>): Promise<void> {
    const json = JSON.stringify(body);
    let why = '';
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(this.o.url!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: json,
          signal: AbortSignal.any([AbortSignal.timeout(this.o.timeoutMs), this.giveUp.signal]),
        });
        await res.body?.cancel();
        if (res.ok) {
          this.o.log.info(`alert sent to ${this.target}: ${String(body.event)}`);
          return;
        }
        why = `answered ${res.status}`;
        if (res.status >= 400 && res.status < 500 && res.status !== 429) attempt = this.o.retries; // will not get better
      } catch (e) {
        if (this.giveUp.signal.aborted) return this.givenUp(body, attempt + 1, `no answer yet${why ? `; before: ${why}` : ''}`);
        why = redact((e as Error & { cause?: Error }).cause?.message ?? (e as Error).message);
      }
      if (attempt >= this.o.retries) {
        this.o.log.error(`alert to ${this.target} failed after ${attempt + 1} attempts (${why}): ${String(body.text)}`);
        return;
      }
      try {
        await sleep(Math.min(30_000, 1000 * 2 ** attempt), undefined, { signal: this.giveUp.signal });
      } catch {
        return this.givenUp(body, attempt + 1, why);
      }
    }
  }

  /** Logs an alert the closing process stopped waiting for. */
  private givenUp(body: Record<string, unknown>, attempts: number, why: string): void {
    this.o.log.error(`alert to ${this.target} given up at exit after ${attempts} attempt${attempts === 1 ? '' : 's'} (${why}): ${String(body.text)}`, { event: body.event });
  }

  private get exitWaitMs(): number {
    return this.o.exitWaitMs ?? DEFAULT_EXIT_WAIT_MS;
  }

  /**
   * Waits for pending alerts, at most `maxMs` (the process is closing): then the ones still
   * unsent are given up — their POSTs aborted, a line logged for each — and it returns.
   */
  async flush(maxMs = this.exitWaitMs): Promise<void> {
    if (this.pending.size === 0) return;
    const timer = setTimeout(() => this.giveUp.abort(), maxMs);
    try {
      await Promise.allSettled([...this.pending]);
    } finally {
      clearTimeout(timer);
    }
  }
}
