/**
 * A backup's Supabase Storage files (issue 15), as the backup, restore, verify, drill and retention
 * paths use them. The work itself is src/storage's; this is where it meets the ledger and the
 * configuration:
 *
 * - {@link readStorageRows}: the dump's `storage.objects` row keys, read in the dump's snapshot.
 * - {@link captureForBackup}: the capture right after the dump. It never throws: a capture that
 *   fails leaves the backup `ok` for its database, with its files recorded as incomplete and why.
 * - {@link backupManifest}: a backup's manifest, read back and checked against its recorded SHA-256.
 * - {@link storageTarget}: the target project of a restore of the files, with its key.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import type { SidecarStorage } from '../dump/sidecar.js';
import type { NewStorageCapture } from '../ledger/ledger.js';
import type { RecoveryKit } from '../offsite/kit.js';
import type { StoreFetchResult } from '../offsite/storage-copies.js';
import type { OffsiteTarget } from '../offsite/target.js';
import type { Manifest, ManifestSummary, RetryNotice, RowKey } from '../storage/index.js';
import { redactor } from '../util/redact.js';

/** The manifest's file, beside the backup. */
export const STORAGE_MANIFEST_SUFFIX = '.storage.json';

export type { SidecarStorage } from '../dump/sidecar.js';

/**
 * The `storage.objects` rows (bucket_id, name) in the client's transaction — the dump's snapshot —
 * or null when the database has no readable `storage.objects` (bucket_id, name). Never makes a
 * statement fail (which would abort the snapshot's transaction): it checks before it reads.
 */
export async function readStorageRows(client: pg.Client): Promise<RowKey[] | null> {
  const probe = await client.query<{ ok: boolean }>(
    `select coalesce((select has_table_privilege(c.oid, 'SELECT')
                        and (select count(*) from pg_attribute a where a.attrelid = c.oid and a.attname in ('bucket_id', 'name') and not a.attisdropped) = 2
                      from pg_class c where c.oid = to_regclass('storage.objects')), false) as ok`,
  );
  if (!probe.rows[0]?.ok) return null;
  const r = await client.query<{ bucket: string | null; path: string | null }>('select bucket_id as bucket, name as path from storage.objects');
  return r.rows.filter((x): x is RowKey => typeof x.bucket === 'string' && typeof x.path === 'string');
}

export interface CaptureOutcome {
  /** For the ledger; null when storage is off for this backup (nothing captured, nothing said). */
  ledger: NewStorageCapture | null;
  sidecar: SidecarStorage | null;
}

/**
 * Captures the Storage files for the backup at `finalPath` (`rows` from {@link readStorageRows};
 * `undefined` when they were not read). Never throws.
 */
export async function captureForBackup(ctx: RunContext, o: { runId: number; finalPath: string; rows: RowKey[] | null | undefined }): Promise<CaptureOutcome> {
  const { config, log } = ctx;
  if (config.storageCapture === 'off') return { ledger: null, sidecar: null };
  if (config.storageCapture === 'auto' && o.rows === null) {
    log.info(`backup run ${o.runId}: the database has no storage.objects: Storage files not captured`, { runId: o.runId });
    return { ledger: null, sidecar: null };
  }
  const manifestFile = o.finalPath + STORAGE_MANIFEST_SUFFIX;
  const started = Date.now();
  const failed = (e: unknown): CaptureOutcome => {
    const err = toHbError(e);
    const summary = `files INCOMPLETE: the capture of the Storage files failed: ${err.message}`;
    log.warn(`backup run ${o.runId}: ${summary}`, { runId: o.runId, code: err.code });
    ctx.reporter.notice(`WARNING: the database backup is ok, but its Storage files are INCOMPLETE: the capture failed: ${err.message}${err.hint ? ` (${err.hint})` : ''}`);
    const error = { code: err.code, message: err.message };
    return {
      ledger: { complete: false, objects: 0, bytes: 0, files: 0, missing: 0, rowsWithoutFiles: 0, filesWithoutRows: 0, manifestFile: null, manifestSha256: null, summary, error },
      sidecar: { file: null, sha256: null, summary, complete: false, objects: 0, bytes: 0, error },
    };
  };
  try {
    const { StorageApi, StorageStore, captureStorage, checkFreeSpace, summarize, writeManifestFile } = await import('../storage/index.js');
    const previous = await previousManifest(ctx);
    const api = StorageApi.open({
      url: config.supabase.url!,
      serviceRoleKey: config.supabase.serviceRoleKey!,
      maxSockets: config.storage.concurrency + 2,
      signal: ctx.signal,
      onRetry: (n) => log.warn(`backup run ${o.runId}: Storage: ${describeRetry(n)}`, { runId: o.runId }),
    });
    let r;
    try {
      const store = await StorageStore.open(config.backupDir);
      r = await captureStorage({
        api,
        store,
        buckets: config.storage.buckets,
        excludeBuckets: ownBuckets(ctx),
        previous,
        rows: o.rows ?? null,
        concurrency: config.storage.concurrency,
        signal: ctx.signal,
        beforeFetch: (p) => checkFreeSpace(store.root, p.bytesToFetch),
        onProgress: (p) => p.phase === 'fetching' && ctx.reporter.progress({ phase: 'download', bytes: p.bytesFetched, total: p.bytesToFetch, elapsedMs: Date.now() - started }),
      });
    } finally {
      api.close();
    }
    await writeManifestFile(manifestFile, r.manifest);
    const sha256 = createHash('sha256').update(await readFile(manifestFile)).digest('hex');
    const s = summarize(r.manifest);
    const st = r.manifest.stats;
    log.info(`backup run ${o.runId}: ${r.summary} (${st.fetched} fetched, ${st.reused} unchanged, ${st.newFiles} new files in the store)`, {
      runId: o.runId,
      objects: s.objects,
      bytes: s.bytes,
      fetched: st.fetched,
      reused: st.reused,
      missing: s.missing,
    });
    if (!r.complete) ctx.reporter.notice(`WARNING: the database backup is ok, but its Storage ${r.summary}`);
    const path = await import('node:path');
    return {
      ledger: captureRecord({ ...s, complete: r.complete }, manifestFile, sha256, r.summary),
      sidecar: { file: path.basename(manifestFile), sha256, summary: r.summary, complete: r.complete, objects: s.objects, bytes: s.bytes },
    };
  } catch (e) {
    return failed(e);
  }
}

/** The ledger's record of a manifest that was written and read back whole. */
function captureRecord(sum: ManifestSummary, manifestFile: string, manifestSha256: string, summary: string): NewStorageCapture {
  const { complete, objects, bytes, files, missing, rowsWithoutFiles, filesWithoutRows } = sum;
  return { complete, objects, bytes, files, missing, rowsWithoutFiles, filesWithoutRows, manifestFile, manifestSha256, summary, error: null };
}

/** The buckets of the same project holding this program's offsite copies: never captured as the app's files. */
function ownBuckets(ctx: RunContext): string[] {
  const norm = (s: string) => s.replace(/\/+$/, '');
  const url = norm(ctx.config.supabase.url ?? '');
  const out = new Set<string>([ctx.config.offsite.bucket]);
  for (const t of ctx.config.offsite.targets) if (t.type === 'supabase-storage' && norm(t.url) === url) out.add(t.bucket);
  return [...out];
}

export function describeRetry(n: RetryNotice): string {
  return `${n.what}: ${n.status ?? n.reason}; retrying in ${Math.round(n.waitMs / 100) / 10} s (attempt ${n.attempt} of ${n.of})`;
}

/** The manifest of the newest ok backup that has one (what the next capture need not fetch again), or null. */
async function previousManifest(ctx: RunContext): Promise<Manifest | null> {
  for (const b of ctx.ledger.listBackups({ statuses: ['ok'], limit: 20 })) {
    if (!b.storage?.manifestFile) continue;
    try {
      return await backupManifest(b);
    } catch (e) {
      ctx.log.warn(`the Storage manifest of backup ${b.id} cannot be read (every file is fetched again): ${toHbError(e).message}`);
      return null;
    }
  }
  return null;
}

/**
 * The manifests of every backup still in the ledger (not pruned) that holds Storage files: what no
 * collection of unreferenced files, local or in a target, may take a file from. When one cannot be
 * read, that backup and why instead: the caller then removes nothing.
 */
export async function keptManifests(ctx: RunContext): Promise<{ manifests: Manifest[] } | { unreadable: Backup; error: HbError }> {
  const manifests: Manifest[] = [];
  for (const b of ctx.ledger.listBackups()) {
    if (b.status === 'pruned' || !b.storage?.manifestFile) continue;
    try {
      manifests.push(await backupManifest(b));
    } catch (e) {
      return { unreadable: b, error: toHbError(e) };
    }
  }
  return { manifests };
}

/**
 * The backup's manifest, checked against the SHA-256 the ledger recorded.
 * @throws HbError `storage-off` (the backup holds no files), `file-missing`, `checksum-mismatch`
 */
export async function backupManifest(b: Backup): Promise<Manifest> {
  return (await backupManifestFile(b)).manifest;
}

/** {@link backupManifest}, with the file's bytes (what an offsite copy of it sends). */
export async function backupManifestFile(b: Backup): Promise<{ manifest: Manifest; bytes: Buffer }> {
  const s = b.storage;
  if (!s?.manifestFile) {
    throw new HbError('storage-off', `backup ${b.id} holds no Storage files${s?.error ? ` (its capture failed: ${s.error.message})` : ''}`, 'take a backup with SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY set');
  }
  const { parseManifest } = await import('../storage/index.js');
  let bytes: Buffer;
  try {
    bytes = await readFile(s.manifestFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HbError('file-missing', `the Storage manifest of backup ${b.id} (${s.manifestFile}) is missing`);
    throw e;
  }
  if (s.manifestSha256) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== s.manifestSha256) throw new HbError('checksum-mismatch', `the Storage manifest of backup ${b.id} (${s.manifestFile}) does not match its recorded SHA-256`, 'it was edited or damaged');
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new HbError('checksum-mismatch', `the Storage manifest ${s.manifestFile} is not valid JSON`);
  }
  return { manifest: parseManifest(json, `the Storage manifest of backup ${b.id}`), bytes };
}

/**
 * The project the files go to, with its service-role key: from the variable `keyEnv` (default
 * SUPABASE_TARGET_SERVICE_ROLE_KEY); the service's own key only when the target is the configured
 * SUPABASE_URL and the variable is not set.
 * @throws HbError `usage` (not a URL), `storage-off` (no key)
 */
export function storageTarget(ctx: RunContext, url: string, keyEnv?: string | null): { url: string; key: string } {
  let u: URL;
  try {
    u = new URL(url);
    if (!/^https?:$/.test(u.protocol)) throw new Error('not http');
  } catch {
    throw new HbError('usage', `--storage-to ${JSON.stringify(url)} is not a project URL`, 'give the target project\'s URL, e.g. https://<ref>.supabase.co');
  }
  const name = keyEnv || 'SUPABASE_TARGET_SERVICE_ROLE_KEY';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new HbError('usage', `--storage-key-env ${JSON.stringify(name)} is not an environment variable name`);
  const key = process.env[name];
  const norm = (s: string) => s.replace(/\/+$/, '');
  if (key) {
    redactor.addSecret(key);
    return { url: norm(url), key };
  }
  const own = ctx.config.supabase.url;
  if (own && norm(own) === norm(url) && ctx.config.supabase.serviceRoleKey) return { url: norm(url), key: ctx.config.supabase.serviceRoleKey };
  throw new HbError('storage-off', `no service-role key for ${norm(url)}: ${name} is not set`, `set ${name} to the target project's service-role key (the service's own key is used only for SUPABASE_URL itself)`);
}

/** What a restore of a backup's Storage files did (`restore --storage-to`, `restore-storage`). */
export interface StorageRestoreDoc {
  backupId: number;
  /** The target project URL (no key). */
  target: string;
  /** Every file of the backup's manifest is in the target, with its SHA-256. */
  complete: boolean;
  objects: number;
  uploaded: number;
  skipped: number;
  bytesUploaded: number;
  failed: Array<{ bucket: string; path: string; error: string }>;
  buckets: { created: string[]; updated: string[]; unchanged: string[] };
  /** Objects the backup itself could not capture: not restorable from it. */
  notInBackup: number;
  /** Whether the backup's own capture was complete (its summary says what it lacks). */
  backupComplete: boolean;
  backupSummary: string;
  durationMs: number;
}

/**
 * Uploads the backup's Storage files into the target project; records a `restore-storage` run.
 * @throws HbError `storage-off` (no files in the backup), `storage-failed`, `aborted`, …
 */
export async function restoreBackupFiles(ctx: RunContext, b: Backup, to: { url: string; key: string }): Promise<StorageRestoreDoc> {
  const manifest = await backupManifest(b);
  const { RunScope } = await import('../jobs/runs.js');
  const { StorageApi, StorageStore, restoreStorage, describeCompleteness } = await import('../storage/index.js');
  const run = RunScope.start(ctx, 'restore-storage', { backupId: b.id, target: to.url });
  const started = Date.now();
  const api = StorageApi.open({ url: to.url, serviceRoleKey: to.key, maxSockets: ctx.config.storage.concurrency + 2, signal: ctx.signal, onRetry: (n) => ctx.log.warn(`restore-storage run ${run.id}: ${describeRetry(n)}`, { runId: run.id }) });
  try {
    ctx.log.info(`restoring the Storage files of backup ${b.id} (${manifest.objects.length} objects) into ${to.url}`, { runId: run.id, backupId: b.id });
    const store = await StorageStore.open(ctx.config.backupDir);
    const r = await restoreStorage({
      api,
      store,
      manifest,
      concurrency: ctx.config.storage.concurrency,
      signal: ctx.signal,
      onProgress: (p) => ctx.reporter.progress({ phase: 'upload', bytes: p.bytesDone, total: p.bytesTotal, elapsedMs: Date.now() - started }),
    });
    const doc: StorageRestoreDoc = {
      backupId: b.id,
      target: r.target,
      complete: r.complete,
      objects: r.objects,
      uploaded: r.uploaded,
      skipped: r.skipped,
      bytesUploaded: r.bytesUploaded,
      failed: r.failed,
      buckets: r.buckets,
      notInBackup: r.notInBackup,
      backupComplete: manifest.complete,
      backupSummary: describeCompleteness(manifest),
      durationMs: Date.now() - started,
    };
    const details = { objects: r.objects, uploaded: r.uploaded, skipped: r.skipped, failed: r.failed.length, bytesUploaded: r.bytesUploaded };
    if (r.complete) {
      run.ok(details);
      ctx.log.info(`restored the Storage files of backup ${b.id} into ${r.target}: ${r.uploaded} uploaded, ${r.skipped} already there`, { runId: run.id, backupId: b.id });
    } else {
      const message = `${r.failed.length} of ${r.objects} Storage files of backup ${b.id} could not be restored into ${r.target}${r.failed[0] ? ` (first: ${r.failed[0].bucket}/${r.failed[0].path}: ${r.failed[0].error})` : ''}`;
      run.failed({ code: 'storage-incomplete', message }, details);
      ctx.log.error(`restore-storage run ${run.id}: ${message}`, { runId: run.id, backupId: b.id });
    }
    if (!manifest.complete) ctx.reporter.notice(`note: backup ${b.id}'s own ${doc.backupSummary}`);
    return doc;
  } catch (e) {
    const err = run.fail(e);
    ctx.log.error(`restore-storage run ${run.id} ${run.statusFor(err)}: ${err.message}`, { runId: run.id, code: err.code });
    throw err;
  } finally {
    api.close();
  }
}

/**
 * Brings a backup's Storage files back from its offsite copy (a fresh install, or a store that lost
 * them): its manifest, checked against the kit's digests, to `<backup file>.storage.json` and into
 * the ledger as the backup's files; then, with `fetchFiles`, every file of it the local store lacks
 * (each kept only when it hashes to its name). Returns the backup as the ledger now has it.
 * @throws HbError `storage-off` (the copy holds no files), `identity-missing`, `decrypt-failed`,
 *   `checksum-mismatch`, `offsite-not-found`, `offsite-failed`, `aborted`
 */
export async function filesFromOffsite(
  ctx: RunContext,
  target: OffsiteTarget,
  b: Backup,
  kit: RecoveryKit,
  o: { fetchFiles: boolean; identities?: readonly string[] },
): Promise<{ backup: Backup; fetched: StoreFetchResult | null }> {
  const s = kit.copy.storage;
  if (!s) {
    const why = kit.storage?.error ? `its capture failed: ${kit.storage.error.message}` : 'the backup captured none, or its copy was made by a version before Storage files went offsite';
    throw new HbError('storage-off', `the offsite copy of backup ${b.id} in "${target.name}" holds no Storage files (${why})`, 'restore the database alone (without --storage-to), or a backup whose copy holds its files');
  }
  const { fetchManifestCopy, fetchStoreFiles } = await import('../offsite/storage-copies.js');
  const { parseManifest, StorageStore, summarize, describeCompleteness } = await import('../storage/index.js');
  let manifest: Manifest | null = null;
  if (b.storage?.manifestFile && b.storage.manifestSha256 === s.plainManifestSha256) {
    manifest = await backupManifest(b).catch(() => null);
  }
  if (!manifest) {
    const dest = b.file + STORAGE_MANIFEST_SUFFIX;
    const bytes = await fetchManifestCopy(ctx, target, s, dest, o.identities);
    manifest = parseManifest(JSON.parse(bytes.toString('utf8')), `the Storage manifest of backup ${b.id} in "${target.name}"`);
    const sum = summarize(manifest);
    ctx.ledger.recordStorageCapture(b.id, captureRecord(sum, dest, s.plainManifestSha256, describeCompleteness(manifest)));
    ctx.log.info(`the Storage manifest of backup ${b.id} came back from "${target.name}" (${sum.objects} objects)`, { backupId: b.id, target: target.name });
  }
  let fetched: StoreFetchResult | null = null;
  if (o.fetchFiles) {
    const store = await StorageStore.open(ctx.config.backupDir);
    fetched = await fetchStoreFiles(ctx, target, s, manifest, store, o.identities);
    ctx.log.info(`Storage files of backup ${b.id} from "${target.name}": ${fetched.fetched} downloaded, ${fetched.present} already in the store${fetched.failed.length ? `, ${fetched.failed.length} FAILED` : ''}`, { backupId: b.id, target: target.name });
  }
  return { backup: ctx.ledger.getBackup(b.id)!, fetched };
}

/** Records a backup's files as incomplete here, with why: never a backup that looks whole, or that looks as if it had none. */
function recordIncomplete(ctx: RunContext, b: Backup, code: string, message: string, counts: { objects: number; bytes: number }): Backup {
  ctx.ledger.recordStorageCapture(b.id, {
    complete: false, objects: counts.objects, bytes: counts.bytes, files: 0, missing: 0, rowsWithoutFiles: 0, filesWithoutRows: 0,
    manifestFile: null, manifestSha256: null, summary: `files INCOMPLETE: ${message}`, error: { code, message },
  });
  return ctx.ledger.getBackup(b.id)!;
}

/**
 * ledger-rebuild --from-offsite: records what a copy's recovery kit says of the backup's Storage
 * files — their manifest itself when it can be brought back here (an encrypted one needs the
 * identity), otherwise the files as incomplete here, saying why and where the manifest stays. A
 * backup that captured files never comes back looking as if it had none.
 */
export async function storageFromKit(ctx: RunContext, target: OffsiteTarget, b: Backup, kit: RecoveryKit): Promise<Backup> {
  const s = kit.copy.storage;
  if (!s) {
    if (!kit.storage) return b; // it captured none
    const why = kit.storage.error?.message ?? `the copy in "${target.name}" does not hold them (${kit.storage.summary})`;
    return recordIncomplete(ctx, b, kit.storage.error?.code ?? 'storage-failed', why, kit.storage);
  }
  if (s.encrypted && !ctx.config.ageIdentityFile) {
    return recordIncomplete(
      ctx, b, 'identity-missing',
      `their manifest (${s.objects} objects) is in "${target.name}", encrypted, and not read here: set HYBRID_BACKUP_AGE_IDENTITY_FILE and run ledger-rebuild --from-offsite ${target.name} again, or restore with --from offsite (it brings the files back with it)`,
      s,
    );
  }
  try {
    return (await filesFromOffsite(ctx, target, b, kit, { fetchFiles: false })).backup;
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    const err = toHbError(e);
    ctx.log.warn(`ledger-rebuild: the Storage manifest of backup ${b.id} was not brought back from "${target.name}": ${err.message}`, { backupId: b.id });
    return recordIncomplete(ctx, b, err.code, `their manifest was not brought back from "${target.name}": ${err.message}`, s);
  }
}

/**
 * ledger-rebuild: records what a backup's sidecar says of its Storage files — its manifest, when
 * that file is beside it and matches the SHA-256 the sidecar recorded; otherwise the files as
 * incomplete, saying why (never a backup that looks whole when its manifest is gone).
 */
export async function storageFromSidecar(ctx: RunContext, b: Backup, s: SidecarStorage, dir: string): Promise<void> {
  const { parseManifest, summarize, describeCompleteness } = await import('../storage/index.js');
  const path = await import('node:path');
  const incomplete = (code: string, message: string) => void recordIncomplete(ctx, b, code, message, s);
  if (!s.file) return incomplete(s.error?.code ?? 'storage-failed', s.error?.message ?? s.summary);
  const file = path.join(dir, path.basename(s.file));
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return incomplete('file-missing', `the Storage manifest ${path.basename(file)} is gone`);
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (s.sha256 && sha !== s.sha256) return incomplete('checksum-mismatch', `the Storage manifest ${path.basename(file)} does not match its sidecar's SHA-256`);
  let m: Manifest;
  try {
    m = parseManifest(JSON.parse(bytes.toString('utf8')), `the Storage manifest ${path.basename(file)}`);
  } catch (e) {
    return incomplete('checksum-mismatch', toHbError(e).message);
  }
  ctx.ledger.recordStorageCapture(b.id, captureRecord(summarize(m), file, sha, describeCompleteness(m)));
}

/**
 * For a restore of the files from an offsite copy (`latest`: the newest copy in the named target,
 * or in any): finds the copy, then brings its manifest and every file the local store lacks down
 * (see {@link filesFromOffsite}). Returns the backup as the ledger now has it, the target's name,
 * and what came down (its `failed` files, if any, are not in the store).
 * @throws HbError `storage-off` (the copy holds no files), and what filesFromOffsite throws
 */
export async function offsiteFilesForRestore(ctx: RunContext, which: string, targetName: string | undefined): Promise<{ backup: Backup; target: string; fetched: StoreFetchResult }> {
  const { offsiteSource } = await import('./restore.js');
  const src = await offsiteSource(ctx, which, targetName);
  try {
    if (!src.kit) throw new HbError('storage-off', `the offsite copy of backup ${src.backup.id} in "${src.target.name}" has no recovery kit, so no Storage files`, 'restore the database alone (without --storage-to)');
    const { backup, fetched } = await filesFromOffsite(ctx, src.target, src.backup, src.kit, { fetchFiles: true });
    return { backup, target: src.target.name, fetched: fetched! };
  } finally {
    src.target.close?.();
  }
}
