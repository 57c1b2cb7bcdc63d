/**
 * What a person at a terminal sees while a long command runs: one progress line on stderr
 * (bytes, rate, elapsed), rewritten in place, and notices above it. Off a terminal, or with
 * --json, progress is silent and only notices are written.
 */
import type { Reporter } from '../context.js';
import type { ProgressEvent } from '../domain/types.js';
import { formatBytes, formatClock, printable } from '../util/format.js';

const VERB: Record<ProgressEvent['phase'], string> = {
  dump: 'dumping',
  restore: 'restoring',
  verify: 'verifying',
  upload: 'uploading',
  download: 'downloading',
  drill: 'drilling',
};

export class TerminalReporter implements Reporter {
  private shown = false;
  private lastDraw = 0;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly showProgress: boolean,
  ) {}

  progress(e: ProgressEvent): void {
    if (!this.showProgress) return;
    const now = Date.now();
    if (now - this.lastDraw < 200 && !(e.total !== undefined && e.bytes >= e.total)) return;
    this.lastDraw = now;
    const rate = e.elapsedMs > 0 ? (e.bytes / e.elapsedMs) * 1000 : 0;
    const pct = e.total ? ` / ${formatBytes(e.total)} (${Math.min(100, Math.floor((e.bytes / e.total) * 100))}%)` : '';
    this.out.write(`\r\x1b[K${VERB[e.phase]}  ${formatBytes(e.bytes)}${pct}  ${formatBytes(rate)}/s  ${formatClock(e.elapsedMs)}`);
    this.shown = true;
  }

  notice(message: string): void {
    this.clear();
    this.out.write(`hybrid-backup: ${printable(message)}\n`);
  }

  /** Removes the progress line (before the final output). */
  clear(): void {
    if (this.shown) {
      this.out.write('\r\x1b[K');
      this.shown = false;
    }
  }
}
