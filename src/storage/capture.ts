/**
 * Capture: a project's Storage into the store, and a manifest saying what it holds.
 *
 * 1. List: every bucket (or those asked for), folder by folder (POST object/list, paged), up to
 *    `concurrency` folders at a time. A folder whose listing fails after the retries is recorded
 *    as missing (`listing`), the rest goes on.
 * 2. Plan: an object whose listing (size, ETag, last-modified, updated-at) equals the previous
 *    manifest's entry, and whose file the store still holds (one readdir per shard), is reused as
 *    it is; every other one is fetched. `beforeFetch` sees the plan (how many bytes are new) before a byte is fetched:
 *    the free-space check goes there.
 * 3. Fetch: up to `concurrency` objects at a time, each read (info: content type, user metadata,
 *    ETag), downloaded and streamed into the store (hashed on the way, written atomically). An
 *    object deleted since the listing is recorded as missing (`gone`); one that keeps changing
 *    under the download (`changing`) or fails after the retries (`error`) too. A refused key
 *    (401/403) stops the capture: it is a configuration error, not a partial capture.
 * 4. Check: against the dump's `storage.objects` rows, when given — rows without files, files
 *    without rows.
 *
 * The manifest is returned only once every file it names is durable in the store
 * (StorageStore.sync). Memory is bounded whatever the file sizes: bodies stream with
 * backpressure; what grows with the number of objects is the manifest (~300 bytes an object).
 */
import { HbError } from '../domain/errors.js';
import { freeBytes } from '../util/fs.js';
import { StorageRequestError, type ListEntry, type StorageApi, type StorageBucket } from './api.js';
import { type Manifest, MANIFEST_FORMAT, type ManifestBucket, type ManifestMissing, type ManifestObject, objectKey, type RowCheck, type RowKey, describeCompleteness } from './manifest.js';
import { forEachLimit } from './pool.js';
import type { StorageStore } from './store.js';

export interface CaptureOptions {
  api: StorageApi;
  store: StorageStore;
  /** The buckets to capture (config `storage.buckets`); all the project has when absent or empty. */
  buckets?: readonly string[] | null;
  /** Buckets never captured when all are (the bucket holding this program's own offsite copies). */
  excludeBuckets?: readonly string[] | null;
  /** The manifest of the last capture: objects unchanged since are not fetched again. */
  previous?: Manifest | null;
  /** The dump's `storage.objects` rows (bucket_id → bucket, name → path), to hold the capture against. */
  rows?: Iterable<RowKey> | null;
  /** Folders listed and objects fetched at a time (config `storage.concurrency`, 4). */
  concurrency?: number;
  /** Rows asked for per list request (1000). */
  pageSize?: number;
  /** Times a fetch is tried again when the object changes under it (2). */
  changeRetries?: number;
  signal?: AbortSignal;
  /**
   * Called once the listing is done and before anything is fetched, with what will be fetched.
   * Throw to stop the capture (a disk-space check: {@link checkFreeSpace}).
   */
  beforeFetch?: (plan: CapturePlan) => void | Promise<void>;
  onProgress?: (p: CaptureProgress) => void;
  now?: () => Date;
}

export interface CapturePlan {
  listed: number;
  /** Objects to fetch (new, changed, or whose file the store lost). */
  toFetch: number;
  /** Their bytes, as listed: the most the capture adds to the store. */
  bytesToFetch: number;
  /** Objects unchanged since the previous manifest. */
  reused: number;
}

export interface CaptureProgress {
  phase: 'listing' | 'fetching' | 'done';
  listed: number;
  toFetch: number;
  fetched: number;
  bytesToFetch: number;
  bytesFetched: number;
  missing: number;
}

export interface CaptureResult {
  manifest: Manifest;
  /** Same as `manifest.complete`. */
  complete: boolean;
  /** One plain sentence: `files complete: …` or `files INCOMPLETE: …` (see describeCompleteness). */
  summary: string;
  /** SHA-256 of the files this capture added to the store (for offsite targets to receive). */
  added: string[];
}

/** One object as the listing shows it. */
interface Listed {
  bucket: string;
  path: string;
  entry: ListEntry;
}

/**
 * Captures the project's Storage (see the module comment).
 * @throws HbError `storage-failed` (the key refused, the bucket list unreadable), `aborted`,
 *   `disk-full`, or what `beforeFetch` throws. Everything else is recorded in the manifest.
 */
export async function captureStorage(o: CaptureOptions): Promise<CaptureResult> {
  const now = o.now ?? (() => new Date());
  const takenAt = now().toISOString();
  const concurrency = Math.max(1, o.concurrency ?? 4);
  const missing: ManifestMissing[] = [];
  const progress: CaptureProgress = { phase: 'listing', listed: 0, toFetch: 0, fetched: 0, bytesToFetch: 0, bytesFetched: 0, missing: 0 };
  const tell = () => o.onProgress?.({ ...progress, missing: missing.length });

  const buckets = await chooseBuckets(o.api, o.buckets ?? null, missing, o.excludeBuckets ?? []);
  // Listing is light (JSON pages): twice the fetch concurrency, within the client's sockets.
  const listed = await listObjects(o.api, buckets, { concurrency: Math.max(concurrency, Math.min(2 * concurrency, 8)), pageSize: o.pageSize ?? 1000, missing, signal: o.signal, onPage: (n) => ((progress.listed += n), tell()) });

  // Plan: reuse what is unchanged and still held.
  const prev = new Map<string, ManifestObject>();
  for (const p of o.previous?.objects ?? []) prev.set(objectKey(p.bucket, p.path), p);
  const objects: ManifestObject[] = [];
  const toFetch: Listed[] = [];
  const held = prev.size > 0 ? await o.store.held() : new Set<string>();
  for (const l of listed) {
    const p = prev.get(objectKey(l.bucket, l.path));
    if (p && unchanged(p, l.entry) && held.has(p.sha256)) objects.push(refreshed(p, l.entry));
    else toFetch.push(l);
  }
  const plan: CapturePlan = { listed: listed.length, toFetch: toFetch.length, bytesToFetch: toFetch.reduce((n, l) => n + (l.entry.size ?? 0), 0), reused: objects.length };
  await o.beforeFetch?.(plan);

  progress.phase = 'fetching';
  progress.toFetch = plan.toFetch;
  progress.bytesToFetch = plan.bytesToFetch;
  tell();
  const added: string[] = [];
  let bytesFetched = 0;
  // Biggest first: the long downloads start early, the small ones fill in around them.
  toFetch.sort((a, b) => (b.entry.size ?? 0) - (a.entry.size ?? 0));
  // storage.search (POST object/list) matches a folder with ILIKE: `_` and `%` in a folder's name
  // are wildcards and case does not count, so `a_b/` also lists the files of `aXb/` (and `Photos/`
  // those of `photos/`), under the wrong folder. Such a row carries the id of an object listed
  // under its own path too: when it turns out not to exist, it is dropped, not reported missing.
  const ids = new Map<string, number>();
  for (const l of listed) if (l.entry.id) ids.set(l.entry.id, (ids.get(l.entry.id) ?? 0) + 1);
  let phantoms = 0;
  try {
    await forEachLimit(toFetch, concurrency, async (l) => {
      const r = await fetchObject(o, l);
      if ('reason' in r && r.reason === 'gone' && l.entry.id && (ids.get(l.entry.id) ?? 0) > 1) phantoms++;
      else if ('reason' in r) missing.push(r);
      else {
        objects.push(r.object);
        if (r.added) added.push(r.object.sha256);
        bytesFetched += r.object.bytes;
      }
      progress.fetched++;
      progress.bytesFetched = bytesFetched;
      tell();
    }, o.signal);
  } finally {
    // Whatever happened, what was renamed into the store is made durable.
    await o.store.sync();
  }

  objects.sort((a, b) => cmp(a.bucket, b.bucket) || cmp(a.path, b.path));
  missing.sort((a, b) => cmp(a.bucket, b.bucket) || cmp(a.path, b.path));
  const rows = o.rows ? checkRows(o.rows, buckets.map((b) => b.id), objects) : null;
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    source: o.api.source,
    takenAt,
    finishedAt: now().toISOString(),
    buckets: buckets.map(toManifestBucket),
    objects,
    missing,
    rows,
    complete: missing.length === 0 && (rows?.rowsWithoutFiles.length ?? 0) === 0,
    stats: {
      listed: listed.length - phantoms,
      fetched: toFetch.length - phantoms - missing.filter((m) => m.reason !== 'listing').length,
      reused: plan.reused,
      bytesFetched,
      missing: missing.length,
      newFiles: added.length,
      newBytes: 0,
    },
  };
  const addedSet = new Set(added);
  manifest.stats.newBytes = objects.reduce((n, x) => (addedSet.delete(x.sha256) ? n + x.bytes : n), 0);
  progress.phase = 'done';
  tell();
  return { manifest, complete: manifest.complete, summary: describeCompleteness(manifest), added };
}

/**
 * What a capture would fetch now, without fetching: the listing and the plan. For a free-space
 * check outside a capture (a capture checks through `beforeFetch`, without listing twice).
 */
export async function planCapture(o: Omit<CaptureOptions, 'beforeFetch' | 'rows' | 'onProgress'>): Promise<CapturePlan> {
  let plan: CapturePlan | null = null;
  const stop = new Error('planned');
  try {
    await captureStorage({ ...o, beforeFetch: (p) => ((plan = p), Promise.reject(stop)) });
  } catch (e) {
    if (e !== stop) throw e;
  }
  return plan!;
}

/**
 * Refuses a capture that would leave less than `reserveBytes` free on the disk holding the store
 * (the margin the dump's own check keeps). Use as `beforeFetch: (p) => checkFreeSpace(store.root, p.bytesToFetch)`.
 * @throws HbError `disk-space-low`
 */
export async function checkFreeSpace(dir: string, bytesToFetch: number, reserveBytes = 512 << 20): Promise<void> {
  const free = await freeBytes(dir);
  if (free - bytesToFetch < reserveBytes) {
    const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
    throw new HbError('disk-space-low', `not enough free space in ${dir} for the new Storage files: ${gb(bytesToFetch)} to fetch, ${gb(free)} free (keeping ${gb(reserveBytes)} spare)`, 'free space on the disk holding BACKUP_DIR (prune old backups) or limit storage.buckets');
  }
}

async function chooseBuckets(api: StorageApi, wanted: readonly string[] | null, missing: ManifestMissing[], exclude: readonly string[]): Promise<StorageBucket[]> {
  const all = await api.listBuckets();
  if (!wanted || wanted.length === 0) return all.filter((b) => !exclude.includes(b.id)).sort((a, b) => cmp(a.id, b.id));
  const byId = new Map(all.map((b) => [b.id, b]));
  const out: StorageBucket[] = [];
  for (const id of wanted) {
    const b = byId.get(id);
    if (b) out.push(b);
    else missing.push({ bucket: id, path: '', reason: 'listing', error: `the project has no bucket "${id}" (storage.buckets names it)` });
  }
  return out;
}

/** Every object of the buckets, folder by folder, `concurrency` folders at a time. */
async function listObjects(
  api: StorageApi,
  buckets: StorageBucket[],
  o: { concurrency: number; pageSize: number; missing: ManifestMissing[]; signal?: AbortSignal | undefined; onPage: (n: number) => void },
): Promise<Listed[]> {
  const out: Listed[] = [];
  const seen = new Set<string>();
  const queue: Array<{ bucket: string; prefix: string }> = buckets.map((b) => ({ bucket: b.id, prefix: '' }));
  let active = 0;
  let fatal: unknown = null;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (fatal || o.signal?.aborted) {
        if (active === 0) resolve();
        return;
      }
      while (active < o.concurrency && queue.length > 0) {
        const folder = queue.shift()!;
        active++;
        listFolder(folder.bucket, folder.prefix)
          .catch((e: unknown) => {
            if (e instanceof StorageRequestError && e.kind !== 'auth') {
              o.missing.push({ bucket: folder.bucket, path: folder.prefix ? `${folder.prefix}/` : '', reason: 'listing', error: e.message });
            } else fatal ??= e;
          })
          .finally(() => {
            active--;
            pump();
          });
      }
      if (active === 0) resolve();
    };
    const listFolder = async (bucket: string, prefix: string): Promise<void> => {
      // Stop on a short page; a page of 100 or more shorter than asked may be a server's own cap: ask on.
      for (let offset = 0; ; ) {
        const page = await api.listFolder(bucket, prefix, offset, o.pageSize);
        for (const e of page) {
          const path = prefix ? `${prefix}/${e.name}` : e.name;
          if (e.id === null) {
            if (!seen.has(`/${bucket}\0${path}`)) queue.push({ bucket, prefix: path });
            seen.add(`/${bucket}\0${path}`);
          } else if (!seen.has(objectKey(bucket, path))) {
            // Once per path: an ILIKE listing (see captureStorage) may name a path twice.
            seen.add(objectKey(bucket, path));
            out.push({ bucket, path, entry: e });
          }
        }
        o.onPage(page.length);
        offset += page.length;
        if (page.length === 0 || page.length < Math.min(o.pageSize, 100)) break;
      }
    };
    pump();
  });
  if (o.signal?.aborted) throw new HbError('aborted', 'the Storage capture was stopped before it finished', undefined, { cause: o.signal.reason });
  if (fatal) throw fatal;
  return out;
}

/** The listing says the object is the one the previous manifest holds. */
function unchanged(p: ManifestObject, e: ListEntry): boolean {
  if (e.size === null || e.size !== p.bytes) return false;
  if (e.etag !== null ? e.etag !== p.etag : p.etag !== undefined) return false;
  if (e.lastModified !== null && p.lastModified !== null && e.lastModified !== p.lastModified) return false;
  if (e.updatedAt !== null && p.updatedAt !== null && e.updatedAt !== p.updatedAt) return false;
  // With neither an ETag nor a time to compare, only the size would say it: fetch again.
  return e.etag !== null || e.lastModified !== null || e.updatedAt !== null;
}

/** A reused entry, with what the listing says now (its id may differ after a restore). */
function refreshed(p: ManifestObject, e: ListEntry): ManifestObject {
  return { ...p, ...(e.id ? { id: e.id } : {}) };
}

type Fetched = { object: ManifestObject; added: boolean } | ManifestMissing;

/** Fetches one object into the store (see the module comment, step 3). */
async function fetchObject(o: CaptureOptions, l: Listed): Promise<Fetched> {
  const { api, store } = o;
  const what = `${l.bucket}/${l.path}`;
  const changeRetries = o.changeRetries ?? 2;
  let changes = 0;
  let lastError = '';
  for (let attempt = 1; ; attempt++) {
    let transient: StorageRequestError | Error | null = null;
    try {
      const info = await api.info(l.bucket, l.path);
      if (!info) return { bucket: l.bucket, path: l.path, reason: 'gone', error: 'deleted after it was listed' };
      const dl = await api.download(l.bucket, l.path, o.signal);
      if (info.etag && dl.etag && info.etag !== dl.etag) {
        dl.body.destroy();
        lastError = `its ETag changed from ${info.etag} to ${dl.etag} while it was read`;
        if (++changes > changeRetries) return { bucket: l.bucket, path: l.path, reason: 'changing', error: lastError };
        attempt--;
        continue;
      }
      const expected = dl.bytes ?? info.size;
      let put;
      try {
        put = await store.put(dl.body, { expectedBytes: expected, what, ...(o.signal ? { signal: o.signal } : {}) });
      } catch (e) {
        if (e instanceof HbError && e.code === 'checksum-mismatch') {
          lastError = e.message;
          if (++changes > changeRetries) return { bucket: l.bucket, path: l.path, reason: 'changing', error: lastError };
          attempt--;
          continue;
        }
        if (e instanceof HbError) throw e; // disk-full, aborted, unsafe-path: the capture stops
        throw new StorageRequestError('network', null, `the download of ${what} was cut off: ${(e as Error).message}`);
      }
      if (put.bytes !== info.size && changes < changeRetries && dl.bytes === null) {
        // No Content-Length and not the size the row says: it changed between info and download.
        changes++;
        attempt--;
        continue;
      }
      const userMetadata = info.userMetadata && Object.keys(info.userMetadata).length > 0 ? info.userMetadata : undefined;
      const etag = dl.etag ?? info.etag ?? l.entry.etag;
      const object: ManifestObject = {
        bucket: l.bucket,
        path: l.path,
        bytes: put.bytes,
        sha256: put.sha256,
        contentType: info.contentType ?? l.entry.mimetype ?? 'application/octet-stream',
        ...(info.cacheControl ?? l.entry.cacheControl ? { cacheControl: (info.cacheControl ?? l.entry.cacheControl)! } : {}),
        ...(userMetadata ? { userMetadata } : {}),
        ...(etag ? { etag } : {}),
        ...((l.entry.id ?? info.id) ? { id: (l.entry.id ?? info.id)! } : {}),
        createdAt: l.entry.createdAt ?? info.createdAt,
        updatedAt: l.entry.updatedAt,
        lastModified: l.entry.lastModified ?? info.lastModified,
      };
      return { object, added: put.added };
    } catch (e) {
      if (o.signal?.aborted) throw new HbError('aborted', 'the Storage capture was stopped before it finished', undefined, { cause: o.signal.reason });
      if (e instanceof StorageRequestError) {
        if (e.kind === 'auth') throw e;
        if (e.kind === 'not-found') return { bucket: l.bucket, path: l.path, reason: 'gone', error: 'deleted after it was listed' };
        if (e.kind === 'retryable' || e.kind === 'network') transient = e;
        else return { bucket: l.bucket, path: l.path, reason: 'error', error: e.message };
      } else throw e;
    }
    if (attempt >= api.retry.attempts) return { bucket: l.bucket, path: l.path, reason: 'error', error: transient.message };
    await api.retry.wait(`fetch ${what}`, attempt, (transient as StorageRequestError).status ?? null, transient.message, (transient as StorageRequestError).retryAfterMs ?? null);
  }
}

/** The capture against the dump's rows (of the captured buckets only). */
function checkRows(rows: Iterable<RowKey>, bucketIds: string[], objects: ManifestObject[]): RowCheck {
  const captured = new Set(bucketIds);
  const have = new Set(objects.map((x) => objectKey(x.bucket, x.path)));
  const seen = new Set<string>();
  const rowsWithoutFiles: RowKey[] = [];
  let n = 0;
  for (const r of rows) {
    if (!captured.has(r.bucket)) continue;
    const k = objectKey(r.bucket, r.path);
    if (seen.has(k)) continue;
    seen.add(k);
    n++;
    if (!have.has(k)) rowsWithoutFiles.push({ bucket: r.bucket, path: r.path });
  }
  const filesWithoutRows = objects.filter((x) => !seen.has(objectKey(x.bucket, x.path))).map((x) => ({ bucket: x.bucket, path: x.path }));
  rowsWithoutFiles.sort((a, b) => cmp(a.bucket, b.bucket) || cmp(a.path, b.path));
  return { rows: n, rowsWithoutFiles, filesWithoutRows };
}

function toManifestBucket(b: StorageBucket): ManifestBucket {
  return { id: b.id, name: b.name, public: b.public, fileSizeLimit: b.fileSizeLimit, allowedMimeTypes: b.allowedMimeTypes };
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
