/**
 * Checking backup files against the ledger: re-hash each file (streamed) and compare with the
 * recorded SHA-256. A mismatch or a missing file marks the backup `corrupt`; a corrupt backup
 * whose file matches again (restored from elsewhere) becomes `ok` again.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { RunContext } from '../context.js';
import type { Manifest } from '../storage/manifest.js';
import type { RehashCache } from '../storage/maintenance.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup, BackupStatus, ProgressEvent } from '../domain/types.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import type { OffsiteTarget } from '../offsite/target.js';
import type { RecoveryKit } from '../offsite/kit.js';

/** Statuses of backups that should have a file: a check may find it back, or gone. */
export const FILE_STATUSES: readonly BackupStatus[] = ['ok', 'corrupt', 'missing'];

export interface VerifyResult {
  id: number;
  /** The local file matches, and (when offsite copies are on) so does the offsite copy. */
  ok: boolean;
  expected: string | null;
  actual: string | null;
  file: string;
  bytes: number | null;
  error?: string;
  /** The offsite copies together: the first that failed, or the first (when offsite copies are on). */
  offsite?: { ok: boolean; location: string | null; bytes: number | null; error?: string };
  /** Each configured target's copy. */
  offsiteCopies?: OffsiteVerify[];
  /** The Storage files of the backup's manifest, re-hashed in BACKUP_DIR/storage (absent: the backup holds none). */
  storage?: { ok: boolean; objects: number; files: number; checked: number; bytes: number; missing: number; corrupt: number; error?: string };
}

/**
 * Re-hashes (or, with `rehash: false`, checks the presence and size of) every store file the
 * backup's manifest needs — once per `cache`: a verify of many backups reads a shared file once.
 * Null when the backup holds no Storage files.
 */
export async function verifyStorageFiles(ctx: RunContext, b: Backup, rehash: boolean, cache?: RehashCache, read?: ManifestRead): Promise<NonNullable<VerifyResult['storage']> | null> {
  if (!b.storage?.manifestFile) return null;
  const { StorageStore, verifyManifest } = await import('../storage/index.js');
  const manifest = read ?? (await readManifest(b));
  if (manifest instanceof Error) {
    return { ok: false, objects: b.storage.objects, files: b.storage.files, checked: 0, bytes: 0, missing: 0, corrupt: 0, error: manifest.message };
  }
  const store = await StorageStore.open(ctx.config.backupDir);
  const r = await verifyManifest(store, manifest, { rehash, signal: ctx.signal, ...(cache ? { cache } : {}) });
  const first = r.missing[0] ? `missing from the store: ${r.missing[0].objects[0]} (${r.missing[0].sha256})` : r.corrupt[0] ? `damaged in the store: ${r.corrupt[0].objects[0]} (${r.corrupt[0].sha256})` : '';
  const n = r.missing.length + r.corrupt.length;
  return { ok: r.ok, objects: r.objects, files: r.files, checked: r.checked, bytes: r.bytes, missing: r.missing.length, corrupt: r.corrupt.length, ...(r.ok ? {} : { error: `${n} Storage file${n === 1 ? '' : 's'} ${first}${n > 1 ? ', …' : ''}` }) };
}

export interface OffsiteVerify {
  target: string;
  ok: boolean;
  location: string | null;
  bytes: number | null;
  error?: string;
}

/**
 * Checks a backup's copy in one target without downloading it: the object and its recovery kit
 * are there, the object has the size uploaded, and its metadata names the backup's SHA-256.
 */
/** A backup's manifest, read and checked once for every check of a verify run, or why it cannot be. */
export type ManifestRead = Manifest | HbError;

/** Reads and checks the backup's manifest (see backupManifest), the failure as a value. */
export async function readManifest(b: Backup): Promise<ManifestRead> {
  const { backupManifest } = await import('./storage-files.js');
  return backupManifest(b).catch((e: unknown) => toHbError(e));
}

/** What a target holds of the store, by digest: each stored form (plain, or encrypted to the recipients a fingerprint names) and its size. */
export type TargetStoreFiles = Map<string, Array<{ fingerprint: string | null; bytes: number }>>;

/** Lists a target's store once (one listing, each key parsed once) for every backup a verify checks. */
export async function listTargetStoreFiles(target: OffsiteTarget, signal?: AbortSignal): Promise<TargetStoreFiles> {
  const { listStoreKeys, parseStoreKey } = await import('../offsite/storage-copies.js');
  const out: TargetStoreFiles = new Map();
  for (const [key, bytes] of await listStoreKeys(target, signal)) {
    const k = parseStoreKey(key)!;
    out.set(k.sha256, [...(out.get(k.sha256) ?? []), { fingerprint: k.fingerprint, bytes }]);
  }
  return out;
}

/** With a backup's Storage files: its manifest as read for this run, and the target's store listing. */
export interface OffsiteFilesCheck {
  manifest: ManifestRead;
  held: () => Promise<TargetStoreFiles>;
}

export async function verifyOffsite(target: OffsiteTarget, b: Backup, signal?: AbortSignal, files?: OffsiteFilesCheck): Promise<OffsiteVerify> {
  const copy = b.offsiteCopies.find((c) => c.target === target.name);
  if (!copy || copy.status !== 'uploaded') {
    return { target: target.name, ok: false, location: copy?.location ?? null, bytes: null, error: copy?.error ? `no offsite copy in "${target.name}": ${copy.error}` : `no offsite copy in "${target.name}" yet (uploaded after each backup; retried at the next run)` };
  }
  const location = copy.location;
  const [st, kit] = await Promise.all([target.stat(copy.key, signal), target.stat(copy.key + SIDECAR_SUFFIX, signal)]);
  if (!st) return { target: target.name, ok: false, location, bytes: null, error: `the offsite copy is missing from "${target.name}"` };
  const expected = copy.bytes ?? b.bytes;
  if (st.bytes !== expected) return { target: target.name, ok: false, location, bytes: st.bytes, error: `the offsite copy has ${st.bytes} bytes, ${expected} were uploaded` };
  // What the backup's own file is in the copy: the plain file inside, or the object itself.
  const insidePlain = copy.encrypted && !b.file.endsWith('.age');
  const named = insidePlain ? st.metadata['plain-sha256'] : st.metadata.sha256;
  if (named && named !== b.sha256) return { target: target.name, ok: false, location, bytes: st.bytes, error: 'the offsite copy\'s recorded SHA-256 differs from the backup\'s' };
  if (!kit) return { target: target.name, ok: false, location, bytes: st.bytes, error: `the offsite copy's recovery kit (${SIDECAR_SUFFIX}) is missing from "${target.name}"` };
  // The kit is what a fresh install reads: it must describe this object and this backup.
  const { readKit } = await import('../offsite/fetch.js');
  const k = await readKit(target, copy.key + SIDECAR_SUFFIX, signal);
  if (k.copy.bytes !== st.bytes || (insidePlain ? k.copy.plainSha256 : k.copy.sha256) !== b.sha256) {
    return { target: target.name, ok: false, location, bytes: st.bytes, error: `the offsite copy's recovery kit does not describe this backup's copy (its size or SHA-256 differ): a restore from "${target.name}" would refuse it` };
  }
  const lacking = files && b.storage?.manifestFile ? await offsiteFilesMissing(target, k, files, signal) : null;
  if (lacking) return { target: target.name, ok: false, location, bytes: st.bytes, error: lacking.message };
  return { target: target.name, ok: true, location, bytes: st.bytes };
}

/**
 * What the target lacks of the backup's Storage files, as the copy's kit names them — its manifest
 * (of the size the kit recorded), and each file the local manifest references under the key a
 * restore fetches (encrypted to the kit's recipients) and of exactly its size — said in one
 * sentence; null when it holds them all. Without a readable local manifest the target cannot be
 * judged: that is a finding too.
 */
export async function offsiteFilesMissing(target: OffsiteTarget, kit: RecoveryKit, files: OffsiteFilesCheck, signal?: AbortSignal): Promise<{ message: string; files: number } | null> {
  const manifest = files.manifest;
  if (manifest instanceof Error) return { files: 0, message: `the backup's Storage manifest cannot be read, so its files in "${target.name}" cannot be checked: ${manifest.message}` };
  const s = kit.copy.storage;
  if (!s) return { files: 0, message: `the offsite copy's recovery kit names none of the backup's Storage files: a restore from "${target.name}" would bring none back` };
  const m = await target.stat(s.manifestKey, signal);
  if (!m) return { files: 0, message: `the offsite copy's Storage manifest is missing from "${target.name}"` };
  if (m.bytes !== s.manifestBytes) return { files: 0, message: `the offsite copy's Storage manifest in "${target.name}" has ${m.bytes} bytes, its kit says ${s.manifestBytes}` };
  const { recipientsFingerprint, storedSize } = await import('../offsite/storage-copies.js');
  const fingerprint = s.encrypted ? recipientsFingerprint(s.recipients) : null;
  const held = await files.held();
  const missing = manifest.objects.filter((o) => !(held.get(o.sha256) ?? []).some((h) => h.fingerprint === fingerprint && h.bytes === storedSize(o.bytes, s.recipients)));
  if (missing.length === 0) return null;
  const first = missing[0]!;
  return { files: missing.length, message: `${missing.length} Storage file${missing.length === 1 ? ' is' : 's are'} missing from "${target.name}" (first: ${first.bucket}/${first.path}); the next copy of a backup sends what its target lacks` };
}

/** SHA-256 and size of a file, streamed. */
export async function hashFile(file: string, onBytes?: (bytes: number) => void, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let last = 0;
  const stream = createReadStream(file, { highWaterMark: 1 << 20, signal });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (onBytes && Date.now() - last > 250) {
      last = Date.now();
      onBytes(bytes);
    }
  }
  onBytes?.(bytes);
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * Records that a backup's file is gone from disk: status `missing`, an error in the log and, the
 * first time, a critical alert. A missing backup counts for nothing (retention, restores) until
 * its file is back.
 */
export function markMissing(ctx: RunContext, b: Backup): void {
  if (!ctx.ledger.setIntegrity(b.id, 'missing')) return;
  const what = `backup ${b.id} is missing: its file ${b.file} is gone from disk`;
  ctx.log.error(what, { backupId: b.id });
  ctx.alerts.send({ event: 'backup-missing', severity: 'critical', summary: what, details: { backupId: b.id, file: b.file, kind: b.kind, createdAt: b.createdAt } });
}

/**
 * Checks, without reading it, that each backup's file is there with its recorded size: a file
 * gone becomes `missing`, one of another size `corrupt`, and a missing one whose file is back
 * `ok` again. Returns the backups ok with their file on disk (newest first, as given). `record: false` only tells
 * (a dry run changes nothing).
 */
export async function checkFilesPresent(ctx: RunContext, backups: readonly Backup[], record = true): Promise<{ present: Backup[]; missing: Backup[]; wrongSize: Backup[] }> {
  const out = { present: [] as Backup[], missing: [] as Backup[], wrongSize: [] as Backup[] };
  for (const b of backups) {
    let size: number | null = null;
    try {
      size = (await stat(b.file)).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    }
    if (size === null) {
      out.missing.push(b);
      if (record) markMissing(ctx, b);
    } else if (size !== b.bytes) {
      out.wrongSize.push(b);
      if (record && ctx.ledger.setIntegrity(b.id, 'corrupt')) ctx.log.error(`backup ${b.id}: ${b.file} has ${size} bytes, the ledger recorded ${b.bytes}: marked corrupt`, { backupId: b.id });
    } else {
      if (record && b.status === 'missing' && ctx.ledger.setIntegrity(b.id, 'ok')) ctx.log.info(`backup ${b.id}: its file is back with its recorded size: ok again`, { backupId: b.id });
      out.present.push({ ...b, status: 'ok' });
    }
  }
  return out;
}

/** Re-hashes one backup's file and records what was found. */
export async function verifyOne(ctx: RunContext, b: Backup, progress?: (e: ProgressEvent) => void): Promise<VerifyResult> {
  const base = { id: b.id, expected: b.sha256, file: b.file };
  let st;
  try {
    st = await stat(b.file);
  } catch {
    markMissing(ctx, b);
    return { ...base, ok: false, actual: null, bytes: null, error: 'file missing' };
  }
  const started = Date.now();
  const { sha256, bytes } = await hashFile(b.file, (n) => progress?.({ phase: 'verify', bytes: n, total: st.size, elapsedMs: Date.now() - started }), ctx.signal);
  const ok = sha256 === b.sha256 && bytes === b.bytes;
  if (ok) {
    ctx.ledger.markChecked(b.id);
    if (b.status !== 'ok') ctx.ledger.setIntegrity(b.id, 'ok');
  } else {
    ctx.ledger.setIntegrity(b.id, 'corrupt');
    ctx.log.error(`backup ${b.id}: ${b.file} does not match its checksum (expected ${b.sha256}, got ${sha256}; ${bytes} bytes, recorded ${b.bytes})`, { backupId: b.id });
  }
  const result: VerifyResult = { ...base, ok, actual: sha256, bytes };
  if (!ok) result.error = sha256 === b.sha256 ? 'size differs from the ledger' : 'checksum mismatch';
  return result;
}

/**
 * Resolves `latest`, `all` or an id to the backups to check: `all` is every backup that should
 * have a file (ok, corrupt or missing).
 * @throws HbError `backup-not-found`
 */
export function selectBackups(ctx: RunContext, which: string): Backup[] {
  if (which === 'all') return ctx.ledger.listBackups({ statuses: FILE_STATUSES });
  if (which === 'latest') {
    const b = ctx.ledger.latestBackup(FILE_STATUSES);
    if (!b) throw new HbError('backup-not-found', 'there is no backup yet', 'take one with: npm run backup:manual');
    return [b];
  }
  const b = resolveBackup(ctx, which);
  if (!FILE_STATUSES.includes(b.status)) {
    throw new HbError('backup-not-restorable', `backup ${b.id} is ${b.status}: it has no file to verify`, 'verify an ok backup, or all');
  }
  return [b];
}

/** A backup dated this far past the clock is not the clock's jitter: a clock set back, or a row from another host's. */
export const FUTURE_SLACK_MS = 5 * 60_000;

/**
 * Finds a backup by id (or `latest`: the newest ok backup that is not dated in the future — one
 * stamped by a clock that ran ahead, or rebuilt from another host's sidecars, would stay "latest"
 * for as long as the skew, and a restore would quietly take old data; it is named in the log).
 * @throws HbError `backup-not-found`, or `usage` for something that is not an id
 */
export function resolveBackup(ctx: RunContext, which: string): Backup {
  if (which === 'latest') {
    const b = ctx.ledger.latestBackup(['ok']);
    const horizon = Date.now() + FUTURE_SLACK_MS;
    if (b && Date.parse(b.createdAt) > horizon) {
      const past = ctx.ledger.listBackups({ statuses: ['ok'] }).find((x) => Date.parse(x.createdAt) <= horizon);
      ctx.log.warn(`backup ${b.id} is dated in the future (${b.createdAt}): latest is taken to be ${past ? `backup ${past.id}` : 'none'}`, { backupId: b.id });
      if (!past) throw new HbError('backup-not-found', `the only ok backups are dated in the future (backup ${b.id}: ${b.createdAt}); check the clock`, 'restore one by its id if it is the one you mean');
      return past;
    }
    if (!b) throw new HbError('backup-not-found', 'there is no ok backup yet', 'take one with: npm run backup:manual');
    return b;
  }
  if (!/^\d+$/.test(which)) throw new HbError('usage', `"${which}" is not a backup id`, 'use a number from `hybrid-backup list`, or latest');
  const b = ctx.ledger.getBackup(Number(which));
  if (!b) throw new HbError('backup-not-found', `there is no backup ${which}`, 'see the ids with: hybrid-backup list');
  return b;
}
