/**
 * One backup at a time per backup directory, in the order they were asked for, whichever process
 * asked: a backup takes a ticket in the ledger's queue as it is asked for, then this process's
 * FIFO slot, then the ledger's `backup` lock — which goes to the live waiter with the oldest
 * ticket. A backup waits (telling the operator once, then every minute) up to
 * `dump.lockWaitSeconds` in all, then fails with `backup-lock-timeout`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunContext } from '../context.js';
import { HbError } from '../domain/errors.js';
import { MutexAborted } from '../util/fifo-mutex.js';
import { formatDuration } from '../util/format.js';

export const BACKUP_LOCK = 'backup';

function timeoutError(waitedMs: number, who: string): HbError {
  return new HbError(
    'backup-lock-timeout',
    `gave up after waiting ${formatDuration(waitedMs)} for ${who} to finish`,
    'one backup runs at a time per backup directory; raise dump.lockWaitSeconds or try again later',
  );
}

/**
 * Takes this process's backup slot, then the ledger lock, for `runId`; returns a release function
 * for both. Retention takes it too, so it never judges or deletes while a backup is being written.
 */
export async function acquireBackupLock(ctx: RunContext, runId: number, purpose = `backup run ${runId}`): Promise<() => void> {
  const waitMs = ctx.config.dump.lockWaitSeconds * 1000;
  const start = Date.now();
  // A place in line first, as the request arrives: backups run in the order they were asked
  // for, whichever process asked.
  const ticket = ctx.ledger.queueForLock(BACKUP_LOCK, runId, purpose);
  try {
    return await acquireInLine(ctx, runId, purpose, ticket, start, waitMs);
  } catch (e) {
    ctx.ledger.leaveQueue(ticket);
    throw e;
  }
}

async function acquireInLine(ctx: RunContext, runId: number, purpose: string, ticket: number, start: number, waitMs: number): Promise<() => void> {
  let releaseSlot: () => void;
  try {
    releaseSlot = await ctx.backupSlot.acquire({
      signal: ctx.signal,
      timeoutMs: waitMs,
      onWait: (ahead) => {
        const msg = `waiting for ${ahead} earlier backup${ahead === 1 ? '' : 's'} in this service to finish; will wait up to ${formatDuration(waitMs)}`;
        ctx.reporter.notice(msg);
        ctx.log.info(msg, { runId });
      },
    });
  } catch (e) {
    if (e instanceof MutexAborted) throw new HbError('aborted', 'the backup was stopped while waiting for earlier backups to finish');
    if (e instanceof HbError) throw e;
    throw timeoutError(Date.now() - start, 'earlier backups in this service');
  }
  try {
    const releaseLock = await acquireLedgerLock(ctx, runId, start, waitMs, purpose, ticket);
    return () => {
      // the slot is released whatever the ledger says: a full disk must not wedge every later backup
      try {
        releaseLock();
      } finally {
        releaseSlot();
      }
    };
  } catch (e) {
    releaseSlot();
    throw e;
  }
}

async function acquireLedgerLock(ctx: RunContext, runId: number, start: number, waitMs: number, purpose: string, ticket: number): Promise<() => void> {
  let lastNotice = 0;
  for (let attempt = 0; ; attempt++) {
    const holder = ctx.ledger.tryLock(BACKUP_LOCK, runId, purpose, ticket);
    if (!holder) return () => ctx.ledger.unlock(BACKUP_LOCK);
    const waited = Date.now() - start;
    const who = `${holder.purpose ?? 'another backup'} (pid ${holder.pid}, since ${holder.acquiredAt})`;
    if (waited >= waitMs) throw timeoutError(waited, who);
    if (attempt === 0 || Date.now() - lastNotice >= 60_000) {
      lastNotice = Date.now();
      const msg = `waiting for ${who} to finish; will wait up to ${formatDuration(waitMs - waited)}`;
      ctx.reporter.notice(msg);
      ctx.log.info(msg, { runId });
    }
    try {
      await sleep(Math.min(500, Math.max(50, waitMs - waited)), undefined, { signal: ctx.signal });
    } catch {
      throw new HbError('aborted', 'the backup was stopped while waiting for another backup to finish');
    }
  }
}
