/**
 * A backup's Supabase Storage files in an offsite target (issue 15), so a target alone can bring a
 * project back whole:
 *
 * - the files of the local content-addressed store go to `storage/<aa>/<sha256>` — `.age` when
 *   they are encrypted on the way — each stored once per target however many backups reference it;
 * - the backup's manifest goes beside its copy: `<file>.storage.json` (`.storage.json.age`
 *   encrypted: it holds the paths, content types and metadata of the app's files);
 * - the recovery kit says where both are ({@link CopyStorage}), and is written last, so a copy whose
 *   kit is there has its files there too.
 *
 * The files' keys are their plain SHA-256 (that is what lets a target hold each once): someone who
 * can list the bucket learns which digests it holds — not a byte, a name or a path — and can test
 * whether a file they already have is among them. The README says so.
 *
 * Reading back ({@link fetchManifestCopy}, {@link fetchStoreFiles}) checks every byte: the manifest
 * against both its digests, each file against the SHA-256 it is named by, before the local store
 * keeps it. Retention ({@link collectTargetStore}) removes from a target the files no kept copy's
 * manifest references — and removes nothing when it cannot read every such manifest.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RunContext } from '../context.js';
import { createDecryptStream, createEncryptStream, encryptedSize } from '../crypto/age.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import type { Manifest } from '../storage/manifest.js';
import type { StorageStore } from '../storage/store.js';
import { atomicWriteFile } from '../util/fs.js';
import type { OffsiteTarget } from './target.js';

/** Where a target keeps the store's files. */
export const STORE_PREFIX = 'storage/';
/** The manifest's key: the copy's plain name and this (and `.age` when encrypted). */
export const MANIFEST_KEY_SUFFIX = '.storage.json';

const STORE_KEY = /^storage\/([0-9a-f]{2})\/([0-9a-f]{64})(?:\.([0-9a-f]{16})\.age)?$/;

/** What a recovery kit says of the backup's files in the target (absent: the backup holds none). */
export interface CopyStorage {
  /** The manifest's key, its stored size and SHA-256 (the ciphertext's when encrypted). */
  manifestKey: string;
  manifestBytes: number;
  manifestSha256: string;
  /** The plain manifest's SHA-256: the local `.storage.json` file's. */
  plainManifestSha256: string;
  /** Whether the manifest and the files are age-encrypted in the target. */
  encrypted: boolean;
  /** The age recipients they are encrypted to (public keys; empty when not encrypted). */
  recipients: string[];
  /** Objects in the manifest, distinct files they need, and those files' plain bytes. */
  objects: number;
  files: number;
  bytes: number;
  /** Whether the backup's own capture was complete (its manifest says what it lacks). */
  complete: boolean;
}

/**
 * The key of a store file in a target: `storage/<2 hex>/<sha256>`, or encrypted
 * `storage/<2 hex>/<sha256>.<recipients' fingerprint>.age` — the recipients are part of the name, so
 * that after a key change (a lost or compromised identity) the files are sent again, encrypted to
 * the new recipients, and never taken for done because a file of the same size is there.
 */
export function storeObjectKey(sha256: string, recipients: readonly string[]): string {
  return `${STORE_PREFIX}${sha256.slice(0, 2)}/${sha256}${recipients.length ? `.${recipientsFingerprint(recipients)}.age` : ''}`;
}

/** 16 hex digits naming a set of recipients (order and repeats aside). */
export function recipientsFingerprint(recipients: readonly string[]): string {
  return createHash('sha256').update([...new Set(recipients)].sort().join(',')).digest('hex').slice(0, 16);
}

/** The SHA-256 a store key names (and its recipients' fingerprint when encrypted), or null when it is not one. */
export function parseStoreKey(key: string): { sha256: string; fingerprint: string | null } | null {
  const m = STORE_KEY.exec(key);
  return m && m[1] === m[2]!.slice(0, 2) ? { sha256: m[2]!, fingerprint: m[3] ?? null } : null;
}

/** The key of a backup's manifest in a target, beside its copy `copyKey`. */
export function manifestKeyFor(copyKey: string, encrypted: boolean): string {
  return `${copyKey.replace(/\.age$/, '')}${MANIFEST_KEY_SUFFIX}${encrypted ? '.age' : ''}`;
}

/** What the target holds under `storage/`: key → stored size. Read once per sync and target. */
export async function listStoreKeys(target: OffsiteTarget, signal?: AbortSignal): Promise<Map<string, number>> {
  const held = new Map<string, number>();
  for await (const e of target.list(STORE_PREFIX, signal)) if (parseStoreKey(e.key)) held.set(e.key, e.bytes);
  return held;
}

/**
 * Uploads what the target lacks of the backup's files — each store file its manifest references,
 * read through a check of its size and SHA-256, encrypted when `recipients` are given — then its
 * manifest. `held` (from {@link listStoreKeys}) is updated as files arrive, so the next backup of
 * the same sync does not send them again. Call it before the kit is written.
 * @throws HbError `file-missing` (a store file is gone: the local backup is damaged too),
 *   `checksum-mismatch`, `offsite-failed`, `aborted`
 */
export async function uploadStorageCopy(
  ctx: RunContext,
  o: { target: OffsiteTarget; backup: Backup; manifest: Manifest; manifestBytes: Buffer; copyKey: string; recipients: readonly string[]; held: Map<string, number>; signal: AbortSignal },
): Promise<CopyStorage> {
  const { target, manifest, recipients, held, signal } = o;
  const encrypted = recipients.length > 0;
  const { StorageStore } = await import('../storage/store.js');
  const { forEachLimit } = await import('../storage/pool.js');
  const store = await StorageStore.open(ctx.config.backupDir);
  const files = new Map<string, number>();
  for (const ob of manifest.objects) files.set(ob.sha256, ob.bytes);
  const todo = [...files].filter(([sha, bytes]) => held.get(storeObjectKey(sha, recipients)) !== storedSize(bytes, recipients));
  const total = todo.reduce((n, [, b]) => n + b, 0);
  let sent = 0;
  const t0 = Date.now();
  await forEachLimit(
    todo,
    ctx.config.storage.concurrency,
    async ([sha, bytes]) => {
      const key = storeObjectKey(sha, recipients);
      const body = store.verifiedReader(sha, bytes, `the Storage file ${sha} of backup ${o.backup.id}`, (d) => {
        sent += d;
        ctx.reporter.progress({ phase: 'upload', bytes: sent, total, elapsedMs: Date.now() - t0 });
      });
      const size = storedSize(bytes, recipients);
      const stream = encrypted ? chain(body, createEncryptStream(recipients)) : body;
      try {
        await target.put(key, stream, { contentType: encrypted ? 'application/age' : 'application/octet-stream', metadata: { bytes: String(size), 'plain-sha256': sha, encrypted: encrypted ? 'age' : 'no' }, bytes: size, signal });
      } catch (e) {
        // The store's own check is the real error when it is what ended the body.
        const readErr = body.errored as Error | null;
        throw readErr instanceof HbError ? readErr : e;
      }
      held.set(key, size);
    },
    signal,
  );
  const manifestKey = manifestKeyFor(o.copyKey, encrypted);
  const plainSha = createHash('sha256').update(o.manifestBytes).digest('hex');
  const stored = encrypted ? await encryptBuffer(o.manifestBytes, recipients) : o.manifestBytes;
  await target.put(manifestKey, Readable.from([stored]), { contentType: encrypted ? 'application/age' : 'application/json', metadata: { bytes: String(stored.length), 'plain-sha256': plainSha, encrypted: encrypted ? 'age' : 'no' }, bytes: stored.length, signal });
  if (todo.length) ctx.log.info(`offsite "${target.name}": ${todo.length} Storage file${todo.length === 1 ? '' : 's'} of backup ${o.backup.id} stored (${files.size - todo.length} already there)`, { backupId: o.backup.id, target: target.name });
  return {
    manifestKey,
    manifestBytes: stored.length,
    manifestSha256: createHash('sha256').update(stored).digest('hex'),
    plainManifestSha256: plainSha,
    encrypted,
    recipients: encrypted ? [...recipients] : [],
    objects: manifest.objects.length,
    files: files.size,
    bytes: [...files.values()].reduce((n, b) => n + b, 0),
    complete: manifest.complete,
  };
}

/**
 * `from` piped into `through`, errors of either ending `through` with them: a listener is on both
 * at once, so a failure before the consumer attaches (a damaged ciphertext, a missing file) is
 * never an unhandled 'error' — the consumer finds `through` already failed.
 */
function chain<T extends Transform>(from: Readable, through: T): T {
  pipeline(from, through).catch(() => {});
  return through;
}

/** A store file's size in a target: its own, or as age encrypts it to these recipients. */
export function storedSize(bytes: number, recipients: readonly string[]): number {
  return recipients.length ? encryptedSize(bytes, recipients.length) : bytes;
}

async function encryptBuffer(plain: Buffer, recipients: readonly string[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(Readable.from([plain]), createEncryptStream(recipients), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

/** Hashes (and counts) what passes. */
class Tap extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly limit = Number.POSITIVE_INFINITY) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return cb(new HbError('offsite-mismatch', 'the object is larger than it should be'));
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Downloads a copy's manifest, decrypts it, checks both digests and writes it (atomically, 0600)
 * to `dest`. Returns its bytes.
 * @throws HbError `offsite-not-found`, `checksum-mismatch`, `decrypt-failed`, `identity-missing`
 */
export async function fetchManifestCopy(ctx: RunContext, target: OffsiteTarget, s: CopyStorage, dest: string, identities?: readonly string[]): Promise<Buffer> {
  const where = target.location(s.manifestKey);
  if (s.encrypted && !identities?.length) {
    const { loadIdentities } = await import('./fetch.js');
    identities = await loadIdentities(ctx, `the Storage manifest ${where}`);
  }
  const stored = new Tap(s.manifestBytes);
  const plain = new Tap(64 * 1024 * 1024);
  const chunks: Buffer[] = [];
  try {
    const body = await target.get(s.manifestKey, ctx.signal);
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    });
    await pipeline([body, stored, ...(s.encrypted ? [createDecryptStream(identities!)] : []), plain, sink], { signal: ctx.signal });
  } catch (e) {
    const err = toHbError(e);
    if (err.code === 'decrypt-failed') throw new HbError('decrypt-failed', `cannot decrypt the Storage manifest ${where}: ${err.message}`, err.hint);
    throw err;
  }
  const bytes = Buffer.concat(chunks);
  if (stored.bytes !== s.manifestBytes || stored.digest() !== s.manifestSha256 || plain.digest() !== s.plainManifestSha256) {
    throw new HbError('checksum-mismatch', `the Storage manifest ${where} is not the one uploaded (its digest differs from its recovery kit's)`, 'the object was replaced or damaged in the target: use another copy or another target');
  }
  await mkdir(path.dirname(dest), { recursive: true });
  await atomicWriteFile(dest, bytes);
  return bytes;
}

export interface StoreFetchResult {
  /** Files downloaded into the local store, and their plain bytes. */
  fetched: number;
  bytes: number;
  /** Files the local store already held. */
  present: number;
  /** Files the target could not give (absent, damaged): their objects cannot be restored. */
  failed: Array<{ sha256: string; error: string }>;
}

/**
 * Brings into the local store every file of `manifest` it lacks, from the target: each streamed
 * down, decrypted when the copy is encrypted, and kept only when it hashes to its name. A file
 * that fails is reported and the others go on (the restore then says which objects could not
 * come back); a stop, or the target itself failing (`offsite-failed`), stops everything.
 */
export async function fetchStoreFiles(ctx: RunContext, target: OffsiteTarget, s: CopyStorage, manifest: Manifest, store: StorageStore, identities?: readonly string[]): Promise<StoreFetchResult> {
  if (s.encrypted && !identities?.length) {
    const { loadIdentities } = await import('./fetch.js');
    identities = await loadIdentities(ctx, `the Storage files in "${target.name}"`);
  }
  const { forEachLimit } = await import('../storage/pool.js');
  const files = new Map<string, number>();
  for (const ob of manifest.objects) files.set(ob.sha256, ob.bytes);
  const out: StoreFetchResult = { fetched: 0, bytes: 0, present: 0, failed: [] };
  const todo: Array<[string, number]> = [];
  for (const [sha, bytes] of files) {
    if ((await store.size(sha)) === bytes) out.present++;
    else todo.push([sha, bytes]);
  }
  const total = todo.reduce((n, [, b]) => n + b, 0);
  const t0 = Date.now();
  await forEachLimit(
    todo,
    ctx.config.storage.concurrency,
    async ([sha, bytes]) => {
      const key = storeObjectKey(sha, s.recipients);
      let body: Readable | null = null;
      try {
        body = await target.get(key, ctx.signal);
        // Joined at once: a failure before the store listens is the stream's, never unhandled.
        const source = chain(body, s.encrypted ? createDecryptStream(identities!) : new PassThrough({ highWaterMark: 1 << 20 }));
        await store.put(source, { expectedSha256: sha, expectedBytes: bytes, what: target.location(key), signal: ctx.signal });
        out.fetched++;
        out.bytes += bytes;
        ctx.reporter.progress({ phase: 'download', bytes: out.bytes, total, elapsedMs: Date.now() - t0 });
      } catch (e) {
        body?.destroy();
        const err = toHbError(e);
        // The target failing (unreachable, refusing the key) stops everything; one file's own
        // trouble (absent, damaged, not decryptable) is reported and the others go on.
        if (ctx.signal.aborted || err.code === 'offsite-failed' || err.code === 'aborted') throw err;
        out.failed.push({ sha256: sha, error: err.message });
        ctx.log.warn(`cannot bring the Storage file ${sha} back from "${target.name}": ${err.message}`, { target: target.name });
      }
    },
    ctx.signal,
  );
  return out;
}

/**
 * Removes from the target the store files no backup still in the ledger references: the union of
 * the manifests of every backup that is not pruned, whatever the state of its copies (a backup
 * being copied right now counts, so a file a new copy reuses is never taken from under it).
 * Removes nothing (and says why) when such a manifest cannot be read here, or when the target holds
 * any manifest that is not one of those: a kept backup's whose files this ledger does not know (a
 * copy adopted without them), or a copy this ledger does not hold at all — another installation's
 * sharing the target, a server's before it was lost, a pruned copy whose deletion failed. Their
 * files are referenced by what this ledger cannot see. Files younger than `graceMs` stay too.
 */
export async function collectTargetStore(ctx: RunContext, target: OffsiteTarget, graceMs: number): Promise<{ removed: number; kept: number } | null> {
  const storeKeys: Array<{ key: string; sha256: string; lastModified: string | null }> = [];
  const manifestsInTarget = new Set<string>();
  for await (const e of target.list('', ctx.signal)) {
    const k = parseStoreKey(e.key);
    if (k) storeKeys.push({ key: e.key, sha256: k.sha256, lastModified: e.lastModified });
    else if (e.key.endsWith(MANIFEST_KEY_SUFFIX) || e.key.endsWith(`${MANIFEST_KEY_SUFFIX}.age`)) manifestsInTarget.add(e.key);
  }
  if (storeKeys.length === 0) return { removed: 0, kept: 0 };
  const skip = (why: string) => {
    ctx.log.warn(`offsite "${target.name}": unused Storage files are not removed: ${why}`, { target: target.name });
    return null;
  };
  const accounted = new Set<string>();
  for (const b of ctx.ledger.listBackups()) {
    if (b.status === 'pruned') continue;
    const copy = b.offsiteCopies.find((c) => c.target === target.name);
    if (!copy) continue;
    for (const key of [false, true].map((enc) => manifestKeyFor(copy.key, enc)).filter((k) => manifestsInTarget.has(k))) {
      if (!b.storage?.manifestFile) return skip(`backup ${b.id} has a Storage manifest in the target (${key}) that this ledger has no local copy of`);
      accounted.add(key);
    }
  }
  const stranger = [...manifestsInTarget].find((k) => !accounted.has(k));
  if (stranger !== undefined) {
    return skip(
      `the target holds the Storage manifest of a copy this ledger does not keep (${stranger}): another installation's, or one from before this ledger (ledger-rebuild --from-offsite ${target.name} adopts those), or a pruned copy not yet deleted`,
    );
  }
  const { keptManifests } = await import('../backup/storage-files.js');
  const kept = await keptManifests(ctx);
  if ('unreadable' in kept) return skip(`the manifest of backup ${kept.unreadable.id} cannot be read here (${kept.error.message})`);
  const { referencedShas } = await import('../storage/manifest.js');
  const referenced = referencedShas(kept.manifests);
  const cutoff = Date.now() - graceMs;
  const doomed = storeKeys.filter((k) => !referenced.has(k.sha256) && (k.lastModified === null ? false : Date.parse(k.lastModified) < cutoff)).map((k) => k.key);
  for (let i = 0; i < doomed.length; i += 500) await target.remove(doomed.slice(i, i + 500), ctx.signal);
  if (doomed.length) ctx.log.info(`offsite "${target.name}": removed ${doomed.length} Storage file${doomed.length === 1 ? '' : 's'} no backup references`, { target: target.name });
  return { removed: doomed.length, kept: storeKeys.length - doomed.length };
}
