/**
 * What a capture of a project's Storage records: its buckets with their settings and every object
 * (bucket, path, size, SHA-256 of the bytes, content type, cache control, user metadata, times),
 * plus what could not be captured and why. A manifest is the whole of what `restoreStorage` needs
 * besides the store's files, so it goes into the backup's sidecar (or a file beside it) and the
 * ledger, and a later capture reads the previous one to fetch only what changed.
 *
 * A manifest holds no secret: the project URL only, never the service-role key.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { StorageCounts } from '../domain/types.js';
import { HbError } from '../domain/errors.js';
import { formatBytes, plural } from '../util/format.js';
import { atomicWriteFile } from '../util/fs.js';

export const MANIFEST_FORMAT = 'hybrid-backup-storage/1';

const SHA256 = /^[0-9a-f]{64}$/;

const bucketSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  public: z.boolean(),
  /** Bytes; null: the project's global limit applies. */
  fileSizeLimit: z.number().int().nonnegative().nullable(),
  /** null: any type. */
  allowedMimeTypes: z.array(z.string()).nullable(),
});

const objectSchema = z.object({
  bucket: z.string().min(1),
  /** The object's name in its bucket (`folder/file.png`), exactly as Storage has it. */
  path: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(SHA256),
  contentType: z.string(),
  cacheControl: z.string().optional(),
  /** The metadata the uploader gave (`x-metadata`), as Storage returns it; absent when none. */
  userMetadata: z.record(z.string(), z.unknown()).optional(),
  /** Storage's ETag, quotes included (for the next capture's change test, not a digest). */
  etag: z.string().optional(),
  /** storage.objects.id, when Storage said it. */
  id: z.string().optional(),
  createdAt: z.string().nullable(),
  updatedAt: z.string().nullable(),
  lastModified: z.string().nullable(),
});

const missingSchema = z.object({
  bucket: z.string(),
  /** The object's path, or the folder (ending in "/", "" for the bucket) whose listing failed. */
  path: z.string(),
  /**
   * `gone`: listed, then deleted before it could be fetched; `changing`: it kept changing while
   * it was fetched; `listing`: a folder (or a configured bucket) could not be listed; `error`:
   * anything else (the message says what).
   */
  reason: z.enum(['gone', 'changing', 'listing', 'error']),
  error: z.string(),
});

const rowKeySchema = z.object({ bucket: z.string(), path: z.string() });

/** The capture held against the `storage.objects` rows of the dump taken just before it. */
const rowsSchema = z.object({
  /** Rows in the dump (of the captured buckets). */
  rows: z.number().int().nonnegative(),
  /** Rows whose file is not in the manifest: a restore would give the app a broken link. */
  rowsWithoutFiles: z.array(rowKeySchema),
  /** Files captured without a row in the dump (uploaded after the dump, most often). */
  filesWithoutRows: z.array(rowKeySchema),
});

const statsSchema = z.object({
  /** Objects listed in the captured buckets. */
  listed: z.number().int().nonnegative(),
  /** Objects downloaded (new or changed since the previous manifest). */
  fetched: z.number().int().nonnegative(),
  /** Objects unchanged since the previous manifest, whose file the store already held. */
  reused: z.number().int().nonnegative(),
  bytesFetched: z.number().int().nonnegative(),
  /** Objects listed but not captured (see `missing`). */
  missing: z.number().int().nonnegative(),
  /** Files the store did not hold before this capture. */
  newFiles: z.number().int().nonnegative(),
  newBytes: z.number().int().nonnegative(),
});

export const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  /** The project's URL (https://<ref>.supabase.co), no key. */
  source: z.string(),
  /** When the listing started (ISO-8601 UTC): the capture shows Storage as it was from then… */
  takenAt: z.string(),
  /** …to then. */
  finishedAt: z.string(),
  buckets: z.array(bucketSchema),
  objects: z.array(objectSchema),
  /** Objects (or folders, or buckets) listed or asked for but not captured, with why. */
  missing: z.array(missingSchema),
  /** Held against the dump's `storage.objects` rows; null when none were given. */
  rows: rowsSchema.nullable(),
  /**
   * Every object of every captured bucket is in `objects` (nothing missing) and every row of the
   * dump has its file. False: the backup's files are incomplete (see {@link describeCompleteness}).
   */
  complete: z.boolean(),
  stats: statsSchema,
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestBucket = z.infer<typeof bucketSchema>;
export type ManifestObject = z.infer<typeof objectSchema>;
export type ManifestMissing = z.infer<typeof missingSchema>;
export type RowKey = z.infer<typeof rowKeySchema>;
export type RowCheck = z.infer<typeof rowsSchema>;
export type CaptureStats = z.infer<typeof statsSchema>;

/**
 * Checks a manifest read back (a sidecar, the ledger, an offsite kit).
 * @throws HbError `checksum-mismatch` naming the first problem, when it is not one
 */
export function parseManifest(value: unknown, where = 'the storage manifest'): Manifest {
  const r = manifestSchema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  throw new HbError('checksum-mismatch', `${where} is not a storage manifest hybrid-backup can read: ${issue.path.join('.') || '(top)'} ${issue.message}`, 'it was edited or damaged; take a new backup');
}

/** Writes a manifest as JSON, atomically (mode 0600). */
export async function writeManifestFile(file: string, manifest: Manifest): Promise<void> {
  await atomicWriteFile(file, `${JSON.stringify(manifest)}\n`);
}

/** Reads and checks a manifest file. @throws HbError `file-missing`, `checksum-mismatch` */
export async function readManifestFile(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HbError('file-missing', `the storage manifest ${file} is missing`);
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new HbError('checksum-mismatch', `the storage manifest ${file} is not valid JSON`, 'it was edited or damaged; take a new backup');
  }
  return parseManifest(json, `the storage manifest ${file}`);
}

/** The key of an object in maps: bucket and path, which no name can make ambiguous. */
export function objectKey(bucket: string, path: string): string {
  return `${bucket}\u0000${path}`;
}

/** What list, the monitor, the report and metrics show for a backup's files: its counts and buckets. */
export interface ManifestSummary extends StorageCounts {
  buckets: number;
}

export function summarize(m: Manifest): ManifestSummary {
  return {
    buckets: m.buckets.length,
    objects: m.objects.length,
    bytes: m.objects.reduce((n, o) => n + o.bytes, 0),
    files: new Set(m.objects.map((o) => o.sha256)).size,
    missing: m.missing.length,
    rowsWithoutFiles: m.rows?.rowsWithoutFiles.length ?? 0,
    filesWithoutRows: m.rows?.filesWithoutRows.length ?? 0,
    complete: m.complete,
  };
}

/** 1234567 → "1,234,567" (toLocaleString loads Intl: ~100 ms the first time). */
/**
 * One plain sentence on the manifest's completeness, for list, the monitor and the report:
 * `files complete: 1,204 objects, 3.10 GB in 4 buckets` or `files INCOMPLETE: 2 objects could not be
 * captured (gone 1, error 1); 1 row of the dump has no file`.
 */
export function describeCompleteness(m: Manifest): string {
  const s = summarize(m);
  // The same units as every other size the program shows (list's FILES column among them).
  const what = `${plural(s.objects, 'object')}, ${formatBytes(s.bytes)} in ${plural(s.buckets, 'bucket')}`;
  const extra = s.filesWithoutRows ? `; ${s.filesWithoutRows} file${s.filesWithoutRows === 1 ? '' : 's'} without a row in the dump` : '';
  if (m.complete) return `files complete: ${what}${extra}`;
  const parts: string[] = [];
  if (s.missing) {
    const by = new Map<string, number>();
    for (const f of m.missing) by.set(f.reason, (by.get(f.reason) ?? 0) + 1);
    parts.push(`${s.missing} object${s.missing === 1 ? '' : 's'} or folder${s.missing === 1 ? '' : 's'} could not be captured (${[...by].map(([r, n]) => `${r} ${n}`).join(', ')})`);
  }
  if (s.rowsWithoutFiles) parts.push(`${s.rowsWithoutFiles} row${s.rowsWithoutFiles === 1 ? '' : 's'} of the dump ha${s.rowsWithoutFiles === 1 ? 's' : 've'} no file`);
  return `files INCOMPLETE: ${parts.join('; ')}; captured ${what}${extra}`;
}

/** Every SHA-256 the manifests reference: what retention must keep in the store. */
export function referencedShas(manifests: Iterable<Manifest>): Set<string> {
  const out = new Set<string>();
  for (const m of manifests) for (const o of m.objects) out.add(o.sha256);
  return out;
}
