/**
 * One backup at a time per backup directory, across processes: the ledger's `backup` lock.
 * A second backup waits (telling the operator once, then every minute) up to
 * `dump.lockWaitSeconds`, then fails with `backup-lock-timeout`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunContext } from '../context.js';
import { HbError } from '../domain/errors.js';
import { formatDuration } from '../util/format.js';

export const BACKUP_LOCK = 'backup';

/** Takes the backup lock for `runId`; returns a release function. */
export async function acquireBackupLock(ctx: RunContext, runId: number): Promise<() => void> {
  const waitMs = ctx.config.dump.lockWaitSeconds * 1000;
  const start = Date.now();
  let lastNotice = 0;
  for (let attempt = 0; ; attempt++) {
    const holder = ctx.ledger.tryLock(BACKUP_LOCK, runId, `backup run ${runId}`);
    if (!holder) return () => ctx.ledger.unlock(BACKUP_LOCK);
    const waited = Date.now() - start;
    const who = `${holder.purpose ?? 'another backup'} (pid ${holder.pid}, since ${holder.acquiredAt})`;
    if (waited >= waitMs) {
      throw new HbError(
        'backup-lock-timeout',
        `gave up after waiting ${formatDuration(waited)} for ${who} to finish`,
        'one backup runs at a time per backup directory; raise dump.lockWaitSeconds or try again later',
      );
    }
    if (attempt === 0 || Date.now() - lastNotice >= 60_000) {
      lastNotice = Date.now();
      const msg = `waiting for ${who} to finish; will wait up to ${formatDuration(waitMs - waited)}`;
      ctx.reporter.notice(msg);
      ctx.log.info(msg, { runId });
    }
    try {
      await sleep(Math.min(500, Math.max(50, waitMs - waited)), undefined, { signal: ctx.signal });
    } catch {
      throw new HbError('dump-aborted', 'the backup was stopped while waiting for another backup to finish');
    }
  }
}
