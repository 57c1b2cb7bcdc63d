/**
 * Backup file names: `<UTC time>_<kind>[_<slug of description>].sql[.gz]`, e.g.
 * `20261124T031500Z_pre-change_add-orders-discount-column.sql`. Names sort by time, and the slug
 * can never carry a path separator, `..`, a control character or anything a shell must quote.
 */
import type { BackupKind, Compression } from '../domain/types.js';

const MAX_SLUG = 60;

/** A safe file-name fragment from free text: lowercase ASCII letters, digits and single hyphens. */
export function slugify(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // accents off their letters
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_SLUG)
    .replace(/-+$/g, '');
}

/** `20261124T031500Z` for an ISO time. */
export function compactUtc(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
}

export function backupExtension(compression: Compression): string {
  return compression === 'gzip' ? '.sql.gz' : '.sql';
}

/** The file name for a backup; `attempt` > 0 adds a suffix when the name is taken. */
export function backupFileName(createdAt: string, kind: BackupKind, description: string | null, compression: Compression, attempt = 0, encrypted = false): string {
  const slug = description ? slugify(description) : '';
  const time = compactUtc(createdAt) + (attempt > 0 ? `-${attempt}` : '');
  return `${time}_${kind}${slug ? `_${slug}` : ''}${backupExtension(compression)}${encrypted ? AGE_EXTENSION : ''}`;
}

/** Appended to the name of a file encrypted with age (`encryption.local`, or an encrypted offsite copy). */
export const AGE_EXTENSION = '.age';
export const PARTIAL_SUFFIX = '.partial';
export const SIDECAR_SUFFIX = '.meta.json';
