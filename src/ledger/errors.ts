/**
 * What the ledger says when its disk refuses: a full disk named as one, with the space left and
 * what to do, rather than SQLite's "database or disk is full".
 */
import { statfsSync } from 'node:fs';
import { HbError } from '../domain/errors.js';
import { formatBytes } from '../util/format.js';

const STORAGE_CODES = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)/;

/** A write the disk refused (full, read-only, failing), as opposed to a bug. */
export function isStorageFailure(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && (STORAGE_CODES.test(code) || code === 'ENOSPC' || code === 'EROFS' || code === 'EIO');
}

function freeOn(dir: string): number | null {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** The operator's error for a write the ledger's disk refused: a full disk named as one. */
export function storageError(file: string, dir: string, e: unknown): HbError {
  const free = freeOn(dir);
  const code = (e as { code?: string }).code ?? '';
  if ((free !== null && free < 1024 * 1024) || /FULL|ENOSPC/.test(code)) {
    return new HbError('disk-full', `the ledger ${file} cannot be written: the disk holding ${dir} is full (${free === null ? 'no' : formatBytes(free)} space left)`, 'free space on that disk (prune old backups, remove other files) or move BACKUP_DIR to a larger disk', { cause: e });
  }
  if (/READONLY|EROFS/.test(code)) return new HbError('ledger-unavailable', `the ledger ${file} cannot be written: ${(e as Error).message}`, 'the file or its filesystem is read-only: check the mount and the file\'s owner', { cause: e });
  return new HbError('ledger-unavailable', `the ledger ${file} cannot be written: ${(e as Error).message}`, 'a disk I/O error: check the disk (dmesg, SMART) and the filesystem', { cause: e });
}

/** The operator's error for a ledger that cannot be opened. */
export function openError(file: string, dir: string, e: unknown): HbError {
  const code = (e as { code?: string }).code ?? '';
  const free = freeOn(dir);
  if ((free !== null && free < 1024 * 1024) || /FULL|ENOSPC/.test(code)) return storageError(file, dir, e);
  if (code === 'SQLITE_CANTOPEN' || code === 'EACCES' || /READONLY/.test(code)) {
    return new HbError('ledger-unavailable', `cannot open ledger ${file}: ${(e as Error).message}`, 'check that the backup directory exists and is writable by this user', { cause: e });
  }
  return new HbError('ledger-unavailable', `cannot open ledger ${file}: ${(e as Error).message}`, 'a disk I/O error: check the disk (dmesg) and the filesystem', { cause: e });
}
