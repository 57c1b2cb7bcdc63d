/**
 * The recovery kit: the `.meta.json` stored beside every offsite copy. It is the backup's sidecar
 * (kind, description, versions, per-table row counts, what a drill compares) plus what the copy
 * is — its key, size and SHA-256 as stored, whether and to whom it is encrypted, the size and
 * SHA-256 of the plain file inside — and a few lines saying how to restore it by hand. With it a
 * target describes itself: `offsite-list`, `ledger-rebuild --from-offsite` and a restore on a
 * fresh install read nothing else. It holds no secret.
 */
import type { Compression } from '../domain/types.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import type { Sidecar } from '../dump/sidecar.js';
import { AGE_FORMAT } from '../crypto/age.js';
import { type CopyStorage, recipientsFingerprint } from './storage-copies.js';

/** The kit's key: the copy's key and this suffix. */
export const KIT_SUFFIX = SIDECAR_SUFFIX;

export interface CopyDescription {
  /** The target's name when the copy was made. */
  target: string;
  /** The object's key inside the target's bucket and prefix. */
  key: string;
  /** Where, for people: `bucket/prefix/key` or `s3://bucket/prefix/key`. */
  location: string;
  /** The stored object's size and SHA-256 (the ciphertext's when encrypted). */
  bytes: number;
  sha256: string;
  /** The age recipients it is encrypted to, or null when it is not encrypted. */
  encryption: { format: typeof AGE_FORMAT; recipients: string[] } | null;
  /** The file inside, once decrypted: what `age -d` gives (a `.sql` or `.sql.gz`). */
  plainBytes: number;
  plainSha256: string;
  uploadedAt: string;
  /** The backup's Supabase Storage files in the target: its manifest and what it holds (absent: none). */
  storage?: CopyStorage;
}

export interface RecoveryKit extends Sidecar {
  copy: CopyDescription;
  howToRestore: string[];
}

/** The name of the plain file inside a copy (`….sql` or `….sql.gz`). */
export function plainName(sidecarFile: string): string {
  return sidecarFile.replace(/\.age$/, '');
}

/** The lines a person follows to restore a copy without hybrid-backup. */
export function howToRestore(copy: Omit<CopyDescription, 'uploadedAt'>, compression: Compression, plainFile: string): string[] {
  const object = copy.key.split('/').pop()!;
  const lines = [
    `1. Download the object ${copy.location} (with aws s3 cp, rclone, the provider's console, or curl for Supabase Storage; see the hybrid-backup README, "The server is gone").`,
    `2. Check it: sha256sum ${object} must print ${copy.sha256} (${copy.bytes} bytes).`,
  ];
  let file = object;
  if (copy.encryption) {
    lines.push(`3. Decrypt it with the age identity (private key) of one of its recipients: age -d -i key.txt -o ${plainFile} ${object}`, `   sha256sum ${plainFile} must then print ${copy.plainSha256}.`);
    file = plainFile;
  }
  const feed = compression === 'gzip' ? `gunzip -c ${file} | psql -X -v ON_ERROR_STOP=1 --single-transaction -d "postgresql://user@host:5432/newdb"` : `psql -X -v ON_ERROR_STOP=1 --single-transaction -d "postgresql://user@host:5432/newdb" -f ${file}`;
  lines.push(
    `${copy.encryption ? 4 : 3}. Restore it into an empty database (createdb newdb first): ${feed}`,
    'It is a plain SQL dump (pg_dump --format=plain): psql of the same or a newer major version restores it.',
  );
  const st = copy.storage;
  if (st) {
    const age = st.encrypted ? ' (decrypt each with age -d -i key.txt, as above)' : '';
    lines.push(
      `Its Supabase Storage files (${st.objects} objects, ${st.files} distinct files): the manifest ${st.manifestKey}${age} lists every object (bucket, path, sha256, contentType, userMetadata);`,
      `each file is the object storage/<first two hex digits>/<sha256>${st.encrypted ? `.${recipientsFingerprint(st.recipients)}.age` : ''} of this target${age}; upload it to its bucket and path in the new project (hybrid-backup restore --from offsite --storage-to does all of this).`,
    );
  }
  return lines;
}

/** A SHA-256 in hex. */
const hex = (s: unknown) => typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);

/** Checks that parsed JSON is a kit this program can use (a kit is a file anyone could edit). */
export function isRecoveryKit(x: unknown): x is RecoveryKit {
  const k = x as RecoveryKit;
  return (
    !!k &&
    typeof k === 'object' &&
    typeof k.file === 'string' &&
    typeof k.kind === 'string' &&
    typeof k.createdAt === 'string' &&
    !Number.isNaN(Date.parse(k.createdAt)) &&
    (k.compression === 'none' || k.compression === 'gzip') &&
    !!k.copy &&
    typeof k.copy === 'object' &&
    typeof k.copy.key === 'string' &&
    Number.isSafeInteger(k.copy.bytes) &&
    hex(k.copy.sha256) &&
    Number.isSafeInteger(k.copy.plainBytes) &&
    hex(k.copy.plainSha256) &&
    (k.copy.encryption === null || (typeof k.copy.encryption === 'object' && Array.isArray(k.copy.encryption.recipients))) &&
    (k.copy.storage === undefined || validCopyStorage(k.copy.storage))
  );
}

/** The kit's account of the Storage files: what a restore reads from it, well-formed. */
function validCopyStorage(x: unknown): boolean {
  const s = x as CopyStorage;
  return (
    !!s &&
    typeof s === 'object' &&
    typeof s.manifestKey === 'string' &&
    Number.isSafeInteger(s.manifestBytes) &&
    hex(s.manifestSha256) &&
    hex(s.plainManifestSha256) &&
    typeof s.encrypted === 'boolean' &&
    Array.isArray(s.recipients) &&
    s.recipients.every((r) => typeof r === 'string') &&
    s.encrypted === s.recipients.length > 0
  );
}
