/**
 * Reading copies back from a target: its recovery kits (what it holds, read from the target
 * alone), and a copy itself — streamed down, decrypted, and checked against both digests (the
 * stored object's and the plain file's) before anything uses it. What a fresh install needs to
 * restore, drill or rebuild its ledger from a target, with no local file and no ledger row.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import type { RunContext } from '../context.js';
import { createDecryptStream, readIdentityFile } from '../crypto/age.js';
import { HbError, toHbError } from '../domain/errors.js';
import { type Backup, BACKUP_KINDS, type TargetCopy } from '../domain/types.js';
import { hashFile } from '../backup/verify.js';
import type { Sidecar } from '../dump/sidecar.js';
import { howToRestore, isRecoveryKit, KIT_SUFFIX, type RecoveryKit } from './kit.js';
import type { OffsiteTarget } from './target.js';

/** A kit's key: a backup's file name (time first, so names sort by time) and `.meta.json`. */
const KIT_KEY = /^\d{8}T\d{6}Z(-\d+)?_[a-z-]+(_[a-z0-9-]+)?\.sql(\.gz)?(\.age)?\.meta\.json$/;

/** The age identities to decrypt with. @throws HbError `identity-missing` when none is configured */
export async function loadIdentities(ctx: RunContext, what: string): Promise<string[]> {
  const file = ctx.config.ageIdentityFile;
  if (!file) {
    throw new HbError(
      'identity-missing',
      `${what} is encrypted, and no age identity (private key) is configured to decrypt it`,
      'set HYBRID_BACKUP_AGE_IDENTITY_FILE to the file age-keygen wrote (AGE-SECRET-KEY-1…), or give the service a systemd credential named age-identity',
    );
  }
  return readIdentityFile(file);
}

/** The keys of the kits a target holds, newest first (by name: names start with the UTC time). */
export async function kitKeys(target: OffsiteTarget, signal?: AbortSignal): Promise<string[]> {
  const keys: string[] = [];
  for await (const e of target.list('', signal)) if (KIT_KEY.test(e.key)) keys.push(e.key);
  return keys.sort().reverse();
}

/** Reads and checks one kit. @throws HbError `offsite-not-found`, `offsite-mismatch` (not a kit) */
export async function readKit(target: OffsiteTarget, key: string, signal?: AbortSignal): Promise<RecoveryKit> {
  const body = await target.get(key, signal);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += (c as Buffer).length;
    if (size > 16 * 1024 * 1024) {
      body.destroy();
      throw new HbError('offsite-mismatch', `${target.location(key)} is larger than any recovery kit`, 'it is not a file hybrid-backup wrote; remove it from the target');
    }
    chunks.push(c as Buffer);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    parsed = null;
  }
  parsed = legacyKit(parsed, key, target) ?? parsed;
  if (!isRecoveryKit(parsed)) {
    throw new HbError('offsite-mismatch', `${target.location(key)} is not a recovery kit hybrid-backup can read`, 'copies uploaded by versions before offsite targets have no kit: use a newer copy, or restore that one by hand (README, "The server is gone")');
  }
  if (parsed.copy.key + KIT_SUFFIX !== key) {
    throw new HbError('offsite-mismatch', `the recovery kit ${target.location(key)} describes another object (${parsed.copy.key})`, 'the kit was moved or edited; use another copy');
  }
  return parsed;
}

/**
 * Copies uploaded before recovery kits existed travelled with the plain sidecar: the copy is the
 * backup file itself, unencrypted, so the sidecar says all a kit would.
 */
function legacyKit(x: unknown, key: string, target: OffsiteTarget): RecoveryKit | null {
  const s = x as Sidecar | null;
  if (!s || typeof s !== 'object' || 'copy' in s || typeof s.file !== 'string' || s.file + KIT_SUFFIX !== key) return null;
  if (!/^[0-9a-f]{64}$/.test(String(s.sha256)) || !Number.isSafeInteger(s.bytes)) return null;
  const copy = { target: target.name, key: s.file, location: target.location(s.file), bytes: s.bytes, sha256: s.sha256, encryption: null, plainBytes: s.bytes, plainSha256: s.sha256, uploadedAt: s.finishedAt ?? s.createdAt };
  return { ...s, copy, howToRestore: howToRestore(copy, s.compression, s.file) };
}

/**
 * The newest copy a target holds whose kit reads, with that kit. Unreadable kits are skipped
 * (and said on the log). @throws HbError `offsite-not-found` when the target holds none
 */
export async function newestKit(ctx: RunContext, target: OffsiteTarget): Promise<RecoveryKit> {
  const keys = await kitKeys(target, ctx.signal);
  for (const key of keys) {
    try {
      return await readKit(target, key, ctx.signal);
    } catch (e) {
      if (ctx.signal.aborted) throw e;
      ctx.log.warn(`skipping ${target.location(key)}: ${toHbError(e).message}`, { target: target.name });
    }
  }
  throw new HbError('offsite-not-found', `the offsite target "${target.name}" (${target.location()}) holds no backup copy`, 'check the target\'s bucket and prefix (`hybrid-backup config`), or list it with `hybrid-backup offsite-list`');
}

class HashTap extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** What a copy must be, from the ledger or its kit. */
export interface ExpectedCopy {
  key: string;
  location: string;
  /** The stored object. */
  bytes: number;
  sha256: string;
  encrypted: boolean;
  /** The plain file inside (the same as the stored object when not encrypted). */
  plainBytes: number;
  plainSha256: string;
}

/** What a kit says its copy is. */
export function expectedFromKit(kit: RecoveryKit): ExpectedCopy {
  const c = kit.copy;
  return { key: c.key, location: c.location, bytes: c.bytes, sha256: c.sha256, encrypted: !!c.encryption, plainBytes: c.plainBytes, plainSha256: c.plainSha256 };
}

/**
 * Streams a copy down into `dest` (created new, mode 0600), decrypting it when it is encrypted,
 * and checks the stored bytes and the plain bytes against `expect`. On any failure `dest` is
 * removed and the error says what was wrong: `decrypt-failed` (a wrong identity, a truncated or
 * altered object), `checksum-mismatch` (a digest or size differs), `offsite-not-found`.
 */
export async function fetchCopy(ctx: RunContext, target: OffsiteTarget, expect: ExpectedCopy, dest: string, what: string, identities?: readonly string[]): Promise<void> {
  if (expect.encrypted && !identities?.length) identities = await loadIdentities(ctx, what);
  const t0 = Date.now();
  const stored = new HashTap((n) => ctx.reporter.progress({ phase: 'download', bytes: n, total: expect.bytes, elapsedMs: Date.now() - t0 }));
  const plain = new HashTap();
  try {
    const body = await target.get(expect.key, ctx.signal);
    await pipeline([body, stored, ...(expect.encrypted ? [createDecryptStream(identities!)] : []), plain, createWriteStream(dest, { flags: 'wx', mode: 0o600 })], { signal: ctx.signal });
    const storedSha = stored.digest();
    const plainSha = plain.digest();
    if (stored.bytes !== expect.bytes || storedSha !== expect.sha256) {
      throw new HbError('checksum-mismatch', `the offsite copy ${expect.location} of ${what} does not match what was uploaded (${stored.bytes} bytes, sha256 ${storedSha}; expected ${expect.bytes} bytes, sha256 ${expect.sha256}); nothing was restored`, 'the object was replaced or damaged in the target: use another copy or another target');
    }
    if (plain.bytes !== expect.plainBytes || plainSha !== expect.plainSha256) {
      throw new HbError('checksum-mismatch', `the file inside the offsite copy ${expect.location} of ${what} is not the backup (${plain.bytes} bytes, sha256 ${plainSha}; expected ${expect.plainBytes} bytes, sha256 ${expect.plainSha256}); nothing was restored`, 'the copy was made from another file: use another copy or another target');
    }
  } catch (e) {
    await rm(dest, { force: true });
    const err = toHbError(e);
    if (err.code === 'decrypt-failed') throw new HbError('decrypt-failed', `cannot decrypt the offsite copy ${expect.location} of ${what}: ${err.message}; nothing was restored`, err.hint);
    throw err;
  }
}

/**
 * The ledger row for the backup a kit describes: the one the ledger has (same file name), or a
 * new one made from the kit — `missing` when its file is not in BACKUP_DIR, `ok`/`corrupt` when
 * it is (re-hashed). Either way the copy in this target is recorded as uploaded.
 */
export async function adoptKit(ctx: RunContext, target: OffsiteTarget, kit: RecoveryKit): Promise<{ backup: Backup; added: boolean }> {
  const file = path.join(ctx.config.backupDir, path.basename(kit.file));
  let backup = ctx.ledger.backupByFile(file);
  let added = false;
  if (!backup) {
    let status: Backup['status'] = 'missing';
    try {
      const got = await hashFile(file, undefined, ctx.signal);
      status = got.sha256 === kit.sha256 && got.bytes === kit.bytes ? 'ok' : 'corrupt';
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    backup = ctx.ledger.addRebuiltBackup({
      kind: (BACKUP_KINDS as readonly string[]).includes(kit.kind) ? kit.kind : 'manual',
      description: typeof kit.description === 'string' ? kit.description : null,
      file,
      bytes: kit.bytes,
      sha256: kit.sha256,
      compression: kit.compression,
      profile: kit.profile === 'supabase' ? 'supabase' : 'full',
      status,
      createdAt: kit.createdAt,
      finishedAt: kit.finishedAt ?? null,
      durationMs: kit.durationMs ?? null,
      database: kit.database ?? null,
      source: kit.source ?? null,
      sourceSystemId: kit.sourceSystemId ?? null,
      serverVersion: kit.serverVersion ?? null,
      pgDumpVersion: kit.pgDumpVersion ?? null,
      tables: kit.tables && typeof kit.tables === 'object' ? kit.tables : null,
      evidence: kit.evidence && typeof kit.evidence === 'object' && kit.evidence.digests ? kit.evidence : null,
      error: status === 'ok' ? null : status === 'missing' ? { code: 'file-missing', message: `found in offsite target "${target.name}"; its local file is not in ${ctx.config.backupDir}` } : { code: 'checksum-mismatch', message: `${kit.file} does not match its recovery kit's SHA-256` },
    });
    added = true;
  }
  const known: TargetCopy | undefined = ctx.ledger.copy(backup.id, target.name);
  if (known?.status !== 'uploaded' || known.key !== kit.copy.key) {
    ctx.ledger.setCopy(backup.id, target.name, { status: 'uploaded', key: kit.copy.key, location: target.location(kit.copy.key), bytes: kit.copy.bytes, sha256: kit.copy.sha256, encrypted: !!kit.copy.encryption });
  }
  return { backup: ctx.ledger.getBackup(backup.id)!, added };
}
