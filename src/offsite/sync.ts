/**
 * Keeping the offsite copies in step with the ledger: after each ok backup every backup without a
 * good copy is uploaded (so a failed upload is retried at the next run), and retention's deletions
 * are carried to Storage. A failure here is recorded (an `offsite-upload` run, the backup's offsite
 * state) and logged, and never fails the local backup.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type RunContext, silentReporter } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import { exists } from '../util/fs.js';
import { formatBytes } from '../util/format.js';
import { OffsiteStore, offsiteSettings } from './store.js';

/** The configured Storage bucket, or null when offsite copies are off. */
export async function openOffsite(ctx: RunContext): Promise<OffsiteStore | null> {
  const s = offsiteSettings(ctx.config);
  return s ? OffsiteStore.open(s, ctx.signal) : null;
}

export interface SyncOutcome {
  uploaded: number[];
  failed: Array<{ id: number; error: string }>;
}

/**
 * Uploads every ok backup that has no good offsite copy (or only those in `only`), newest
 * first. One sync at a time per process: a second waits, then finds less to do. Null when
 * offsite copies are off.
 */
export async function syncOffsite(ctx: RunContext, opts: { only?: number[] } = {}): Promise<SyncOutcome | null> {
  if (!offsiteSettings(ctx.config)) return null;
  const release = await ctx.offsiteSlot.acquire({ signal: ctx.signal });
  try {
    return await syncUnlocked(ctx, opts);
  } finally {
    release();
  }
}

async function syncUnlocked(ctx: RunContext, opts: { only?: number[] }): Promise<SyncOutcome | null> {
  const store = await openOffsite(ctx);
  if (!store) return null;
  const pending = ctx.ledger.backupsToUpload().filter((b) => !opts.only || opts.only.includes(b.id));
  if (pending.length === 0) return { uploaded: [], failed: [] };
  const run = ctx.ledger.startRun('offsite-upload', ctx.trigger, { backups: pending.map((b) => b.id) });
  const out: SyncOutcome = { uploaded: [], failed: [] };
  try {
    await store.ensureBucket();
  } catch (e) {
    const err = toHbError(e);
    for (const b of pending) {
      ctx.ledger.setOffsite(b.id, { status: 'failed', location: store.location(store.objectPath(path.basename(b.file))), error: err.message });
      out.failed.push({ id: b.id, error: err.message });
    }
    ctx.ledger.finishRun(run.id, 'failed', { code: err.code, message: err.message });
    ctx.log.error(`offsite copies: ${err.message}`, { runId: run.id });
    return out;
  }
  for (const b of pending) {
    const name = path.basename(b.file);
    const objectPath = store.objectPath(name);
    const location = store.location(objectPath);
    // Each upload has its own time limit: a stalled one is stopped and retried at the next run.
    const timeoutMs = ctx.config.offsite.timeoutMinutes * 60_000;
    const limited = await OffsiteStore.open(store.settings, AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]));
    try {
      if (!(await exists(b.file))) throw new Error(`the local file ${b.file} is missing`);
      const t0 = Date.now();
      await limited.upload(b.file, objectPath, { sha256: b.sha256!, bytes: b.bytes, contentType: b.compression === 'gzip' ? 'application/gzip' : 'application/sql' }, (n) =>
        ctx.reporter.progress({ phase: 'upload', bytes: n, total: b.bytes, elapsedMs: Date.now() - t0 }),
      );
      // The sidecar travels too, so the bucket describes itself without the ledger.
      const sidecar = b.file + SIDECAR_SUFFIX;
      if (await exists(sidecar)) await limited.upload(sidecar, objectPath + SIDECAR_SUFFIX, { bytes: (await stat(sidecar)).size, contentType: 'application/json' });
      ctx.ledger.setOffsite(b.id, { status: 'uploaded', location, bytes: b.bytes });
      out.uploaded.push(b.id);
      ctx.log.info(`offsite copy of backup ${b.id} stored at ${location} (${formatBytes(b.bytes)})`, { runId: run.id, backupId: b.id });
    } catch (e) {
      let err = toHbError(e);
      if (!ctx.signal.aborted && (e as Error).name === 'TimeoutError') err = new HbError('offsite-failed', `the upload took longer than ${ctx.config.offsite.timeoutMinutes} minutes and was stopped`);
      if (err.code === 'offsite-mismatch' && /no longer matches its recorded SHA-256/.test(err.message)) ctx.ledger.setIntegrity(b.id, 'corrupt');
      if (err.code === 'aborted' || ctx.signal.aborted) {
        ctx.ledger.setOffsite(b.id, { status: 'failed', location, error: 'stopped before the upload finished' });
        out.failed.push({ id: b.id, error: 'stopped' });
        break;
      }
      ctx.ledger.setOffsite(b.id, { status: 'failed', location, error: err.message });
      out.failed.push({ id: b.id, error: err.message });
      ctx.log.error(`offsite copy of backup ${b.id} failed (retried at the next run): ${err.message}`, { runId: run.id, backupId: b.id, code: err.code });
    }
  }
  const failed = out.failed.length;
  ctx.ledger.finishRun(
    run.id,
    failed ? 'failed' : 'ok',
    failed ? { code: 'offsite-failed', message: `${failed} of ${pending.length} uploads failed: ${out.failed.map((f) => `backup ${f.id}: ${f.error}`).join('; ')}` } : null,
    { uploaded: out.uploaded },
  );
  return out;
}

/**
 * After a local backup: the offsite copies. In a service, every pending copy, in the background
 * after the reply. In a one-off process, now: every pending copy (earlier failures are retried at
 * the next run), except for a pre-change backup, which uploads only its own so that a migration
 * never waits for old retries. Never throws.
 */
export async function afterLocalBackup(ctx: RunContext, backup: { id: number; kind: string }): Promise<void> {
  if (!offsiteSettings(ctx.config)) return;
  if (ctx.service) {
    // After the reply: the client may be gone, so no progress goes to it.
    ctx.service.background(syncOffsite({ ...ctx, reporter: silentReporter }));
    return;
  }
  await syncOffsite(ctx, backup.kind === 'pre-change' ? { only: [backup.id] } : {}).catch((e) => ctx.log.error(`offsite copies: ${toHbError(e).message}`));
}

/** Deletes the offsite copies of pruned backups (retried at the next prune when it fails). */
export async function deletePrunedCopies(ctx: RunContext): Promise<void> {
  const store = await openOffsite(ctx);
  if (!store) return;
  for (const b of ctx.ledger.offsiteToDelete()) await deleteCopy(ctx, store, b);
}

async function deleteCopy(ctx: RunContext, store: OffsiteStore, b: Backup): Promise<void> {
  // The bucket it was stored in, even if offsite.bucket changed since.
  const location = b.offsite!.location;
  try {
    await store.remove(location, location + SIDECAR_SUFFIX);
    ctx.ledger.setOffsite(b.id, { status: 'deleted', location });
    ctx.log.info(`deleted offsite copy ${location} of pruned backup ${b.id}`, { backupId: b.id });
  } catch (e) {
    const err = toHbError(e);
    ctx.ledger.setOffsite(b.id, { status: 'delete-failed', location, error: err.message });
    ctx.log.error(`could not delete offsite copy ${location} (retried at the next prune): ${err.message}`, { backupId: b.id });
  }
}
