/** What verify, the drill and retention do with the store: check it against manifests, and collect what none needs. */
import { HbError } from '../domain/errors.js';
import { type Manifest, referencedShas } from './manifest.js';
import type { StorageStore } from './store.js';

export interface StorageVerifyResult {
  /** Every file the manifest needs is in the store with its size (and, re-hashed, its SHA-256). */
  ok: boolean;
  objects: number;
  /** Distinct files the manifest needs. */
  files: number;
  /** Files checked, and their bytes (read when re-hashed). */
  checked: number;
  bytes: number;
  /** Files not in the store (or not of the manifest's size), with the objects that need them. */
  missing: Array<{ sha256: string; objects: string[] }>;
  /** Files whose bytes no longer hash to their name. */
  corrupt: Array<{ sha256: string; actual: string; objects: string[] }>;
}

/**
 * What re-hashing found of each file, shared by the manifests of one verify run: a file many
 * backups reference is read once (`ok`, `missing`, or the SHA-256 its bytes have now).
 */
export type RehashCache = Map<string, { state: 'ok' | 'missing' } | { state: 'corrupt'; actual: string }>;

/**
 * Checks that the store holds every file of the manifest: by re-hashing each (verify;
 * `rehash: true`, the default; once per `cache`) or by presence and size alone (the drill's quick check).
 */

export async function verifyManifest(store: StorageStore, manifest: Manifest, opts: { rehash?: boolean; signal?: AbortSignal; onBytes?: (delta: number) => void; cache?: RehashCache } = {}): Promise<StorageVerifyResult> {
  const users = new Map<string, { bytes: number; objects: string[] }>();
  for (const o of manifest.objects) {
    const u = users.get(o.sha256);
    if (u) u.objects.push(`${o.bucket}/${o.path}`);
    else users.set(o.sha256, { bytes: o.bytes, objects: [`${o.bucket}/${o.path}`] });
  }
  const out: StorageVerifyResult = { ok: false, objects: manifest.objects.length, files: users.size, checked: 0, bytes: 0, missing: [], corrupt: [] };
  const present: string[] = [];
  for (const [sha, u] of users) {
    if (opts.signal?.aborted) throw new HbError('aborted', 'verifying the storage files was stopped before it finished', undefined, { cause: opts.signal.reason });
    const size = await store.size(sha);
    if (size !== u.bytes) out.missing.push({ sha256: sha, objects: u.objects });
    else present.push(sha);
  }
  if (opts.rehash ?? true) {
    const cache = opts.cache;
    const fresh = cache ? present.filter((sha) => !cache.has(sha)) : present;
    const r = await store.verify(fresh, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onBytes ? { onBytes: opts.onBytes } : {}) });
    if (cache) {
      for (const sha of fresh) cache.set(sha, { state: 'ok' });
      for (const sha of r.missing) cache.set(sha, { state: 'missing' });
      for (const c of r.corrupt) cache.set(c.sha256, { state: 'corrupt', actual: c.actual });
      out.checked = present.length;
      out.bytes = present.reduce((n, s) => n + users.get(s)!.bytes, 0);
      for (const sha of present) {
        const known = cache.get(sha)!;
        if (known.state === 'missing') out.missing.push({ sha256: sha, objects: users.get(sha)!.objects });
        else if (known.state === 'corrupt') out.corrupt.push({ sha256: sha, actual: known.actual, objects: users.get(sha)!.objects });
      }
    } else {
      out.checked = r.checked;
      out.bytes = r.bytes;
      for (const sha of r.missing) out.missing.push({ sha256: sha, objects: users.get(sha)!.objects });
      for (const c of r.corrupt) out.corrupt.push({ sha256: c.sha256, actual: c.actual, objects: users.get(c.sha256)!.objects });
    }
  } else {
    out.checked = present.length;
    out.bytes = present.reduce((n, s) => n + users.get(s)!.bytes, 0);
  }
  out.ok = out.missing.length === 0 && out.corrupt.length === 0;
  return out;
}

export interface GcResult {
  removed: Array<{ sha256: string; bytes: number }>;
  bytes: number;
  /** Files kept because the kept manifests reference them. */
  referenced: number;
  dryRun: boolean;
}

/**
 * Retention for the store: removes every file that none of `kept` (the manifests of every backup
 * retention keeps) references. A referenced file is never removed. Files written within
 * `graceMs` (1 hour) are kept too, for a capture whose manifest is not recorded yet; run under
 * the backup lock all the same.
 *
 * An empty `kept` would remove the whole store: refused unless `allowEmpty` (no backup with a
 * manifest is kept at all), so that a manifest the caller failed to read cannot empty it.
 * @throws HbError `prune-refused` for an empty `kept` without `allowEmpty`
 */
export async function collectGarbage(store: StorageStore, kept: Iterable<Manifest>, opts: { dryRun?: boolean; graceMs?: number; allowEmpty?: boolean; signal?: AbortSignal } = {}): Promise<GcResult> {
  const manifests = [...kept];
  if (manifests.length === 0 && !opts.allowEmpty) {
    throw new HbError('prune-refused', 'no manifest of a kept backup was given: refusing to remove every storage file', 'pass allowEmpty when no kept backup has captured files');
  }
  const referenced = referencedShas(manifests);
  const r = await store.removeUnreferenced(referenced, { graceMs: opts.graceMs ?? 3_600_000, dryRun: opts.dryRun ?? false, ...(opts.signal ? { signal: opts.signal } : {}) });
  return { ...r, referenced: referenced.size, dryRun: opts.dryRun ?? false };
}
