/**
 * The error codes of the Storage module (all in src/domain/errors.ts's catalogue).
 *
 *   storage-failed        Supabase Storage refused or failed an operation on the project's files
 *   storage-write-failed  a file could not be written into BACKUP_DIR/storage
 *   storage-incomplete    a restore of the files left some out
 */
import { type ErrorCode, HbError } from '../domain/errors.js';

export const STORAGE_CODES = {
  failed: 'storage-failed',
  writeFailed: 'storage-write-failed',
  incomplete: 'storage-incomplete',
} as const satisfies Record<string, ErrorCode>;

/** The HbError for an operation stopped by the caller's signal (its reason as the cause). */
export function abortedError(what: string, signal: AbortSignal): HbError {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  return new HbError('aborted', `${what} was stopped before it finished${timedOut ? ' (time limit)' : ''}`, undefined, { cause: reason });
}

/** A write into the store failed: a full disk says so, anything else names the file. */
export function writeError(file: string, e: unknown): HbError {
  if (e instanceof HbError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT') {
    return new HbError('disk-full', `the disk is full: cannot write ${file}`, 'free space on the disk holding BACKUP_DIR (prune old backups) or move BACKUP_DIR to a larger disk', { cause: e });
  }
  return new HbError(STORAGE_CODES.writeFailed, `cannot write ${file}: ${err?.message ?? String(e)}`, undefined, { cause: e });
}
