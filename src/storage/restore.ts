/**
 * Restore: a manifest's buckets and files into a project's Storage (the same project, or a new
 * one after the database went there).
 *
 * 1. Buckets: each is created with the manifest's settings (public, file size limit, allowed
 *    MIME types), or, when it exists (a restored dump brings `storage.buckets` rows), its
 *    settings are set to the manifest's.
 * 2. Files: up to `concurrency` at a time, each uploaded to the same path (x-upsert) with its
 *    content type, cache control and user metadata, streamed from the store through a check of
 *    its size and SHA-256: a damaged store file is never uploaded (the request body ends short,
 *    so Storage keeps nothing), and is reported.
 * 3. Resumable: a file whose stored copy in the target (HEAD: the file itself, not only its row —
 *    a restored dump holds rows whose files are not there yet) has the manifest's size and either
 *    the manifest's ETag or the ETag this restore recorded after uploading that very SHA-256 (the
 *    journal, `BACKUP_DIR/storage/restores/<target>.jsonl`), is skipped.
 *
 * A file that fails is reported and the others go on; a refused key stops everything.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { HbError } from '../domain/errors.js';
import { ensurePrivateDir } from '../util/fs.js';
import { type BucketSettings, StorageRequestError, type StorageApi } from './api.js';
import { type Manifest, type ManifestObject, objectKey } from './manifest.js';
import { forEachLimit } from './pool.js';
import type { StorageStore } from './store.js';

export interface RestoreOptions {
  /** The target project's Storage (its URL and service-role key). */
  api: StorageApi;
  store: StorageStore;
  manifest: Manifest;
  /** Only these buckets (all the manifest's when absent). */
  buckets?: readonly string[] | null;
  /** Files uploaded at a time (config `storage.concurrency`, 4). */
  concurrency?: number;
  /** The resume journal: a file path, null for none, absent for the default under the store. */
  journal?: string | null;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
}

export interface RestoreProgress {
  total: number;
  done: number;
  uploaded: number;
  skipped: number;
  failed: number;
  bytesTotal: number;
  /** Bytes of the files done (uploaded or skipped) plus those of the uploads under way. */
  bytesDone: number;
  /** The file just done. */
  current?: { bucket: string; path: string; action: 'uploaded' | 'skipped' | 'failed' };
}

export interface RestoreResult {
  /** The target project URL (no key). */
  target: string;
  buckets: { created: string[]; updated: string[]; unchanged: string[] };
  objects: number;
  uploaded: number;
  skipped: number;
  bytesUploaded: number;
  failed: Array<{ bucket: string; path: string; error: string }>;
  /** Objects the backup itself could not capture (manifest.missing): not restorable from it. */
  notInBackup: number;
  /** Every object of the manifest is in the target. */
  complete: boolean;
}

/**
 * Restores the manifest's buckets and files into the target (see the module comment).
 * @throws HbError `storage-failed` (the key refused, a bucket not creatable), `aborted`
 */
export async function restoreStorage(o: RestoreOptions): Promise<RestoreResult> {
  const wanted = o.buckets && o.buckets.length > 0 ? new Set(o.buckets) : null;
  const buckets = o.manifest.buckets.filter((b) => !wanted || wanted.has(b.id));
  const objects = o.manifest.objects.filter((x) => !wanted || wanted.has(x.bucket));
  const result: RestoreResult = {
    target: o.api.source,
    buckets: { created: [], updated: [], unchanged: [] },
    objects: objects.length,
    uploaded: 0,
    skipped: 0,
    bytesUploaded: 0,
    failed: [],
    notInBackup: o.manifest.missing.filter((m) => !wanted || wanted.has(m.bucket)).length,
    complete: false,
  };

  for (const b of buckets) {
    const settings: BucketSettings = { id: b.id, name: b.name, public: b.public, fileSizeLimit: b.fileSizeLimit, allowedMimeTypes: b.allowedMimeTypes };
    if (await o.api.createBucket(settings)) {
      result.buckets.created.push(b.id);
      continue;
    }
    const now = await o.api.getBucket(b.id);
    if (now && sameSettings(now, settings)) result.buckets.unchanged.push(b.id);
    else {
      await o.api.updateBucket(settings);
      result.buckets.updated.push(b.id);
    }
  }

  const journal = o.journal === null ? null : await Journal.open(o.journal ?? (await defaultJournal(o.store, o.api.source)));
  const progress: RestoreProgress = { total: objects.length, done: 0, uploaded: 0, skipped: 0, failed: 0, bytesTotal: objects.reduce((n, x) => n + x.bytes, 0), bytesDone: 0 };
  const finish = (x: ManifestObject, action: 'uploaded' | 'skipped' | 'failed') => {
    progress.done++;
    progress[action]++;
    o.onProgress?.({ ...progress, current: { bucket: x.bucket, path: x.path, action } });
  };
  // Biggest first, as capture does.
  const order = [...objects].sort((a, b) => b.bytes - a.bytes);
  try {
    await forEachLimit(order, Math.max(1, o.concurrency ?? 4), async (x) => {
      const what = `${x.bucket}/${x.path}`;
      try {
        const there = await o.api.head(x.bucket, x.path);
        if (there && there.size === x.bytes && there.etag && (there.etag === x.etag || journal?.says(x, there.etag))) {
          result.skipped++;
          progress.bytesDone += x.bytes;
          return finish(x, 'skipped');
        }
        if ((await o.store.size(x.sha256)) !== x.bytes) {
          throw new HbError('file-missing', `the store has no file ${x.sha256} of ${x.bytes} bytes for ${what}`, 'the store lost it (removed by hand?): run hybrid-backup verify; restore from another backup');
        }
        let sent = 0;
        await o.api.upload(
          x.bucket,
          x.path,
          () => {
            progress.bytesDone -= sent; // a retry starts again
            sent = 0;
            return o.store.verifiedReader(x.sha256, x.bytes, `the store file of ${what}`, (n) => {
              sent += n;
              progress.bytesDone += n;
            });
          },
          { bytes: x.bytes, contentType: x.contentType, cacheControl: x.cacheControl, userMetadata: x.userMetadata, ...(o.signal ? { signal: o.signal } : {}) },
        );
        result.uploaded++;
        result.bytesUploaded += x.bytes;
        const after = await o.api.head(x.bucket, x.path);
        if (after?.etag && journal) await journal.record(x, after.etag);
        finish(x, 'uploaded');
      } catch (e) {
        if (o.signal?.aborted) throw new HbError('aborted', 'the Storage restore was stopped before it finished', undefined, { cause: o.signal.reason });
        if (e instanceof StorageRequestError && e.kind === 'auth') throw e;
        if (!(e instanceof HbError)) throw e;
        result.failed.push({ bucket: x.bucket, path: x.path, error: e.message });
        finish(x, 'failed');
      }
    }, o.signal);
  } finally {
    await journal?.close();
  }
  result.failed.sort((a, b) => (a.bucket + '\0' + a.path < b.bucket + '\0' + b.path ? -1 : 1));
  result.complete = result.failed.length === 0 && result.uploaded + result.skipped === objects.length;
  return result;
}

function sameSettings(a: BucketSettings, b: BucketSettings): boolean {
  const types = (t: string[] | null) => JSON.stringify(t ? [...t].sort() : null);
  return a.public === b.public && (a.fileSizeLimit ?? null) === (b.fileSizeLimit ?? null) && types(a.allowedMimeTypes) === types(b.allowedMimeTypes);
}

async function defaultJournal(store: StorageStore, target: string): Promise<string> {
  const dir = path.join(store.root, 'restores');
  await ensurePrivateDir(dir, { noLink: true });
  return path.join(dir, `${createHash('sha256').update(target).digest('hex').slice(0, 16)}.jsonl`);
}

/**
 * What this machine uploaded to a target: one line per file, `{b, p, s, e}` (bucket, path,
 * SHA-256, the ETag the target gave it). Lost or damaged lines only cost an upload again.
 */
class Journal {
  private constructor(
    private readonly fh: fs.FileHandle,
    private readonly seen: Map<string, string>,
  ) {}

  static async open(file: string): Promise<Journal> {
    const seen = new Map<string, string>();
    const text = await fs.readFile(file, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return '';
      throw e;
    });
    for (const line of text.split('\n')) {
      try {
        const r = JSON.parse(line) as { b: string; p: string; s: string; e: string };
        seen.set(objectKey(r.b, r.p), `${r.s} ${r.e}`);
      } catch {
        // a torn last line
      }
    }
    const fh = await fs.open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    return new Journal(fh, seen);
  }

  says(x: ManifestObject, etag: string): boolean {
    return this.seen.get(objectKey(x.bucket, x.path)) === `${x.sha256} ${etag}`;
  }

  async record(x: ManifestObject, etag: string): Promise<void> {
    this.seen.set(objectKey(x.bucket, x.path), `${x.sha256} ${etag}`);
    await this.fh.appendFile(`${JSON.stringify({ b: x.bucket, p: x.path, s: x.sha256, e: etag })}\n`);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}
