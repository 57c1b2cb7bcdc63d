/**
 * Keeping the offsite copies in step with the ledger: after each ok backup every backup without a
 * good copy in a target is uploaded there (so a failed upload is retried at the next run), target
 * by target, and retention's deletions are carried to every target. With `encryption.ageRecipients`
 * each copy is encrypted on its way out (age, in-stream), and each travels with its recovery kit.
 * A failure here is recorded (an `offsite-upload` run, the copy's state per target), logged and
 * alerted, and never fails the local backup.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import { type RunContext, silentReporter } from '../context.js';
import { AGE_FORMAT, encryptedSize } from '../crypto/age.js';
import { FileCopyBody } from './copy-body.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup, TargetCopy } from '../domain/types.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import { readSidecar, SIDECAR_FORMAT, type Sidecar } from '../dump/sidecar.js';
import { RunScope } from '../jobs/runs.js';
import { exists } from '../util/fs.js';
import { formatBytes } from '../util/format.js';
import { type CopyDescription, howToRestore, KIT_SUFFIX, plainName, type RecoveryKit } from './kit.js';
import type { OffsiteTarget } from './target.js';
import { openTargets } from './targets.js';

export interface SyncOutcome {
  /** Backup ids with a new copy in at least one target (and none failed). */
  uploaded: number[];
  failed: Array<{ id: number; target: string; error: string }>;
  /** Per target: what was uploaded and what failed. */
  targets: Record<string, { uploaded: number[]; failed: number[] }>;
}

/** Whether any offsite target is configured. */
export function offsiteOn(ctx: RunContext): boolean {
  return ctx.config.offsiteTargets.length > 0;
}

/**
 * Uploads to every target every ok backup that has no good copy there (or only those in `only`),
 * newest first. One sync at a time per process: a second waits, then finds less to do. Null when
 * no target is configured.
 */
export async function syncOffsite(ctx: RunContext, opts: { only?: number[] } = {}): Promise<SyncOutcome | null> {
  if (!offsiteOn(ctx)) return null;
  const release = await ctx.offsiteSlot.acquire({ signal: ctx.signal });
  try {
    return await syncUnlocked(ctx, opts);
  } finally {
    release();
  }
}

async function syncUnlocked(ctx: RunContext, opts: { only?: number[] }): Promise<SyncOutcome> {
  const out: SyncOutcome = { uploaded: [], failed: [], targets: {} };
  const targets = await openTargets(ctx.config);
  try {
    return await syncTargets(ctx, opts, targets, out);
  } finally {
    for (const t of targets) t.close?.();
  }
}

async function syncTargets(ctx: RunContext, opts: { only?: number[] }, targets: OffsiteTarget[], out: SyncOutcome): Promise<SyncOutcome> {
  const pending = new Map(targets.map((t) => [t.name, ctx.ledger.backupsToUpload(t.name).filter((b) => !opts.only || opts.only.includes(b.id))]));
  const all = [...pending.values()].flat();
  if (all.length === 0) return out;
  const ids = [...new Set(all.map((b) => b.id))];
  const run = RunScope.start(ctx, 'offsite-upload', { backups: ids, targets: targets.filter((t) => pending.get(t.name)!.length).map((t) => t.name) });
  try {
    await uploadAll(ctx, targets, pending, run, out);
  } catch (e) {
    throw run.fail(e, { targets: out.targets });
  }
  const failedIds = new Set(out.failed.map((f) => f.id));
  out.uploaded = ids.filter((id) => !failedIds.has(id) && Object.values(out.targets).some((t) => t.uploaded.includes(id)));
  const failed = out.failed.length;
  const attempts = Object.values(out.targets).reduce((n, t) => n + t.uploaded.length + t.failed.length, 0);
  const details = { uploaded: out.uploaded, targets: out.targets };
  if (ctx.signal.aborted) run.fail(new HbError('aborted', 'stopped before every upload finished'), details);
  else if (failed) run.failed({ code: 'offsite-failed', message: `${failed} of ${attempts} uploads failed: ${out.failed.map((f) => `backup ${f.id} to "${f.target}": ${f.error}`).join('; ')}` }, details);
  else run.ok(details);
  return out;
}

/** Uploads each target's pending backups, recording every copy's state; a target that fails is skipped, not fatal. */
async function uploadAll(ctx: RunContext, targets: OffsiteTarget[], pending: Map<string, Backup[]>, run: RunScope, out: SyncOutcome): Promise<void> {
  for (const target of targets) {
    const todo = pending.get(target.name)!;
    if (todo.length === 0) continue;
    const mine = (out.targets[target.name] = { uploaded: [] as number[], failed: [] as number[] });
    try {
      await target.ensureReady(AbortSignal.any([ctx.signal, AbortSignal.timeout(5 * 60_000)]));
    } catch (e) {
      const err = toHbError(e);
      for (const b of todo) {
        const key = copyKey(ctx, b);
        ctx.ledger.setCopy(b.id, target.name, { status: 'failed', key, location: target.location(key), error: err.message });
        out.failed.push({ id: b.id, target: target.name, error: err.message });
        mine.failed.push(b.id);
      }
      ctx.log.error(`offsite target "${target.name}": ${err.message}`, { runId: run.id, target: target.name, code: err.code });
      continue;
    }
    // What the target holds of the Storage files, listed once, when the first backup with files comes.
    let held: Promise<Map<string, number>> | null = null;
    const storeKeys = () => (held ??= import('./storage-copies.js').then((m) => m.listStoreKeys(target, ctx.signal)));
    for (const b of todo) {
      if (ctx.signal.aborted) break;
      const key = copyKey(ctx, b);
      try {
        const copy = await uploadOne(ctx, target, b, key, storeKeys);
        ctx.ledger.setCopy(b.id, target.name, { status: 'uploaded', key, location: copy.location, bytes: copy.bytes, sha256: copy.sha256, encrypted: !!copy.encryption });
        mine.uploaded.push(b.id);
        ctx.log.info(`offsite copy of backup ${b.id} stored in "${target.name}" at ${copy.location} (${formatBytes(copy.bytes)}${copy.encryption ? ', encrypted' : ''})`, { runId: run.id, backupId: b.id, target: target.name });
      } catch (e) {
        let err = toHbError(e);
        // Stopped, but not by us: the upload's own time limit.
        if (!ctx.signal.aborted && (err.code === 'aborted' || (e as Error).name === 'TimeoutError')) err = new HbError('offsite-failed', `the upload took longer than ${ctx.config.offsite.timeoutMinutes} minutes and was stopped`);
        if (err.code === 'checksum-mismatch') ctx.ledger.setIntegrity(b.id, 'corrupt');
        const stopped = ctx.signal.aborted;
        const message = stopped ? 'stopped before the upload finished' : err.message;
        ctx.ledger.setCopy(b.id, target.name, { status: 'failed', key, location: target.location(key), error: message });
        out.failed.push({ id: b.id, target: target.name, error: message });
        mine.failed.push(b.id);
        if (stopped) break;
        ctx.log.error(`offsite copy of backup ${b.id} to "${target.name}" failed (retried at the next run): ${err.message}`, { runId: run.id, backupId: b.id, target: target.name, code: err.code });
      }
    }
  }
}

/**
 * The key of a backup's copy: its file name, with `.age` when it is encrypted on the way out
 * (a file already encrypted locally keeps its name).
 */
export function copyKey(ctx: RunContext, b: Backup): string {
  const name = path.basename(b.file);
  return encryptsOnTheWay(ctx, b) ? `${name}.age` : name;
}

function encryptsOnTheWay(ctx: RunContext, b: Backup): boolean {
  return ctx.config.encryption.ageRecipients.length > 0 && !b.file.endsWith('.age');
}

/** The backup's sidecar, or — when it is gone or unreadable — one made from the ledger. */
export async function sidecarOf(ctx: RunContext, b: Backup): Promise<Sidecar> {
  try {
    const sc = await readSidecar(b.file + SIDECAR_SUFFIX);
    if (sc.sha256 === b.sha256 && sc.file === path.basename(b.file)) return sc;
  } catch {
    // made from the ledger below
  }
  const src = ctx.ledger.backupSource(b.id);
  const tables = ctx.ledger.tableCounts(b.id);
  return {
    format: SIDECAR_FORMAT,
    kind: b.kind,
    description: b.description,
    file: path.basename(b.file),
    bytes: b.bytes,
    sha256: b.sha256!,
    compression: b.compression,
    profile: b.profile,
    createdAt: b.createdAt,
    finishedAt: b.finishedAt ?? b.createdAt,
    durationMs: b.durationMs ?? 0,
    database: b.database ?? '',
    source: src?.source ?? undefined,
    sourceSystemId: src?.sourceSystemId ?? null,
    serverVersion: b.serverVersion ?? '',
    pgDumpVersion: b.pgDumpVersion,
    uncompressedBytes: b.bytes,
    tableCount: b.tableCount ?? Object.keys(tables).length,
    rowCount: b.rowCount ?? Object.values(tables).reduce((a, n) => a + n, 0),
    tables,
    evidence: ctx.ledger.evidence(b.id) ?? null,
  };
}

/**
 * Streams one backup to one target — read, checked against its recorded SHA-256 as it is read,
 * encrypted when recipients are configured, hashed as stored — then its Storage files and their
 * manifest (when it has some), then its recovery kit. The copy is complete only once all are stored.
 */
async function uploadOne(ctx: RunContext, target: OffsiteTarget, b: Backup, key: string, storeKeys: () => Promise<Map<string, number>>): Promise<CopyDescription> {
  if (!(await exists(b.file))) throw new HbError('file-missing', `the local file ${b.file} is missing`, 'run `hybrid-backup verify all`');
  // The backup's Storage files go with it: its manifest is read (and checked) before anything is sent.
  const files = b.storage?.manifestFile
    ? await (await import('../backup/storage-files.js')).backupManifestFile(b).catch((e: unknown) => {
        const err = toHbError(e);
        throw new HbError('storage-failed', `the Storage manifest of backup ${b.id} cannot be read: ${err.message}`, 'run `hybrid-backup verify all`; the database copy waits for it');
      })
    : null;
  // A backup whose files this ledger cannot read (adopted from a target without the identity) must
  // not replace a copy whose kit names them: the new kit could not, and they would be lost to it.
  if (!files && b.storage) {
    const { readKit } = await import('./fetch.js');
    const there = await readKit(target, key + KIT_SUFFIX, ctx.signal).catch(() => null);
    if (there?.copy.storage) {
      throw new HbError(
        'storage-failed',
        `the copy of backup ${b.id} in "${target.name}" names its ${there.copy.storage.objects} Storage files, whose manifest this ledger cannot read (${b.storage.summary}); it was not replaced`,
        `set HYBRID_BACKUP_AGE_IDENTITY_FILE and run \`hybrid-backup ledger-rebuild --from-offsite ${target.name}\`, which reads the manifests in`,
      );
    }
  }
  const sidecar = await sidecarOf(ctx, b);
  const recipients = ctx.config.encryption.ageRecipients;
  const encrypt = encryptsOnTheWay(ctx, b);
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(ctx.config.offsite.timeoutMinutes * 60_000)]);
  const body = new FileCopyBody(b.file, { sha256: b.sha256!, bytes: b.bytes }, encrypt ? recipients : null);
  const bytes = encrypt ? encryptedSize(b.bytes, recipients.length) : b.bytes;
  const t0 = Date.now();
  let put: { bytes: number };
  try {
    put = await target.put(key, body, {
      contentType: encrypt || b.file.endsWith('.age') ? 'application/age' : b.compression === 'gzip' ? 'application/gzip' : 'application/sql',
      // The SHA-256 of the file inside (what `age -d` gives), and of the object itself when it is
      // the local file's bytes; an encrypted object's own digest is known at its end: in the kit.
      metadata: { bytes: String(bytes), 'plain-sha256': sidecar.plainSha256 ?? b.sha256!, encrypted: encrypt || !!sidecar.encryption ? 'age' : 'no', ...(encrypt ? {} : { sha256: b.sha256! }) },
      bytes,
      signal,
      onBytes: (n) => ctx.reporter.progress({ phase: 'upload', bytes: n, total: bytes, elapsedMs: Date.now() - t0 }),
    });
  } finally {
    await body.close();
  }
  const localEnc = sidecar.encryption ?? null;
  const copy: CopyDescription = {
    target: target.name,
    key,
    location: target.location(key),
    bytes: put.bytes,
    sha256: body.digest(),
    encryption: encrypt ? { format: AGE_FORMAT, recipients: [...recipients] } : localEnc ? { format: AGE_FORMAT, recipients: localEnc.recipients } : null,
    plainBytes: localEnc ? (sidecar.plainBytes ?? 0) : b.bytes,
    plainSha256: localEnc ? (sidecar.plainSha256 ?? '') : b.sha256!,
    uploadedAt: new Date().toISOString(),
  };
  if (files) {
    const { uploadStorageCopy } = await import('./storage-copies.js');
    try {
      copy.storage = await uploadStorageCopy(ctx, { target, backup: b, manifest: files.manifest, manifestBytes: files.bytes, copyKey: key, recipients: recipients.length ? recipients : (localEnc?.recipients ?? []), held: await storeKeys(), signal });
    } catch (e) {
      const err = toHbError(e);
      // The database copy is fine: a store file's trouble is the files', never the dump's (corrupt).
      if (err.code === 'aborted' || err.code === 'offsite-failed') throw err;
      throw new HbError('storage-failed', `the Storage files of backup ${b.id} could not be copied: ${err.message}`, err.hint ?? 'run `hybrid-backup verify all`: a store file or manifest is damaged or gone');
    }
  }
  const kit: RecoveryKit = { ...sidecar, copy, howToRestore: howToRestore(copy, b.compression, plainName(sidecar.file)) };
  const json = Buffer.from(`${JSON.stringify(kit, null, 2)}\n`);
  await target.put(key + KIT_SUFFIX, Readable.from([json]), { contentType: 'application/json', metadata: {}, bytes: json.length, signal });
  return copy;
}

/**
 * After a local backup: the offsite copies. In a service, every pending copy, in the background
 * after the reply. In a one-off process, now: every pending copy (earlier failures are retried at
 * the next run), except for a pre-change backup, which uploads only its own so that a migration
 * never waits for old retries. Never throws.
 */
export async function afterLocalBackup(ctx: RunContext, backup: { id: number; kind: string }): Promise<void> {
  if (!offsiteOn(ctx)) return;
  if (ctx.service) {
    // After the reply: the client may be gone, so no progress goes to it.
    ctx.service.background(syncOffsite({ ...ctx, reporter: silentReporter }));
    return;
  }
  await syncOffsite(ctx, backup.kind === 'pre-change' ? { only: [backup.id] } : {}).catch((e) => ctx.log.error(`offsite copies: ${toHbError(e).message}`));
}

/**
 * Deletes the copies of pruned backups from every target (a failure is recorded and retried at
 * the next prune). A copy in a target no longer configured stays recorded as delete-failed.
 */
export async function deletePrunedCopies(ctx: RunContext): Promise<void> {
  const all = ctx.ledger.copiesToDelete();
  if (all.length === 0) return;
  // A target whose uploads have been failing holds only old copies: pruning them by the local
  // rules would empty it. Its pruned copies stay until it holds `minKeep` copies of kept backups.
  const need = Math.max(1, ctx.config.retention.minKeep);
  const kept = ctx.ledger.listBackups({ statuses: ['ok'] });
  const starved = new Set<string>();
  for (const name of new Set(all.map((w) => w.copy.target))) {
    const held = kept.filter((b) => b.offsiteCopies.some((c) => c.target === name && c.status === 'uploaded')).length;
    if (held < need) {
      starved.add(name);
      const what = `offsite "${name}" holds copies of only ${held} of the kept backups (retention.minKeep is ${ctx.config.retention.minKeep}): the copies of pruned backups there are kept until it holds enough; see why its uploads fail (hybrid-backup list, OFFSITE)`;
      ctx.log.warn(what, { target: name });
      ctx.alerts.send({ event: 'offsite-failed', severity: 'warning', summary: what, details: { target: name, keptCopies: held, minKeep: ctx.config.retention.minKeep } });
    }
  }
  const work = all.filter((w) => !starved.has(w.copy.target));
  if (work.length === 0) return;
  const opened = await openTargets(ctx.config);
  const targets = new Map(opened.map((t) => [t.name, t]));
  try {
    for (const { backup, copy } of work) await deleteCopy(ctx, targets.get(copy.target), backup, copy);
    // The Storage files no kept copy references any more, target by target.
    const { collectTargetStore } = await import('./storage-copies.js');
    for (const name of new Set(work.map((w) => w.copy.target))) {
      const target = targets.get(name);
      if (!target) continue;
      await collectTargetStore(ctx, target, ctx.config.storage.gcGraceMinutes * 60_000).catch((e: unknown) =>
        ctx.log.error(`offsite "${name}": unused Storage files were not removed (retried at the next prune): ${toHbError(e).message}`, { target: name }),
      );
    }
  } finally {
    for (const t of opened) t.close?.();
  }
}

async function deleteCopy(ctx: RunContext, target: OffsiteTarget | undefined, b: Backup, copy: TargetCopy): Promise<void> {
  const set = (status: TargetCopy['status'], error: string | null) => ctx.ledger.setCopy(b.id, copy.target, { status, key: copy.key, location: copy.location, encrypted: copy.encrypted, error });
  if (!target) {
    set('delete-failed', `the offsite target "${copy.target}" is no longer configured; delete ${copy.location} by hand`);
    ctx.log.warn(`cannot delete offsite copy ${copy.location} of pruned backup ${b.id}: the target "${copy.target}" is no longer configured`, { backupId: b.id });
    return;
  }
  try {
    const { manifestKeyFor } = await import('./storage-copies.js');
    await target.remove([copy.key, copy.key + KIT_SUFFIX, manifestKeyFor(copy.key, false), manifestKeyFor(copy.key, true)], AbortSignal.any([ctx.signal, AbortSignal.timeout(5 * 60_000)]));
    set('deleted', null);
    ctx.log.info(`deleted offsite copy ${copy.location} of pruned backup ${b.id} from "${copy.target}"`, { backupId: b.id, target: copy.target });
  } catch (e) {
    const err = toHbError(e);
    set('delete-failed', err.message);
    ctx.log.error(`could not delete offsite copy ${copy.location} from "${copy.target}" (retried at the next prune): ${err.message}`, { backupId: b.id, target: copy.target });
  }
}
