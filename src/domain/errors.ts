/**
 * The error catalogue: every failure an operator can meet has a stable code, an exit code
 * and a lowercase message naming the object, with an optional hint saying what to do.
 *
 * Anything thrown that is not a {@link HbError} is a bug: entry points print it with its stack
 * and exit 1.
 */

/** Exit codes of the product (SPEC): 0 success, 1 the operation failed, 2 bad usage or configuration. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Every error code, with the exit code it maps to. Declared as data so the catalogue is one table. */
export const ERROR_CATALOGUE = {
  // usage and configuration: nothing was done
  'usage': { exit: EXIT_USAGE, summary: 'the command line is not valid' },
  'config-invalid': { exit: EXIT_USAGE, summary: 'a configuration value is not valid' },
  'config-file-missing': { exit: EXIT_USAGE, summary: 'the configuration file named does not exist' },
  'config-file-unreadable': { exit: EXIT_USAGE, summary: 'the configuration file is not valid JSON or cannot be read' },
  'description-invalid': { exit: EXIT_USAGE, summary: 'a backup description is empty or too long' },
  'backup-not-found': { exit: EXIT_USAGE, summary: 'no backup with that id' },
  'restore-target-is-source': { exit: EXIT_USAGE, summary: 'the restore target is the database the backup came from' },
  'restore-profile-mismatch': { exit: EXIT_USAGE, summary: 'a full-profile backup cannot restore into a Supabase project; use a supabase-profile backup' },
  'restore-target-missing': { exit: EXIT_USAGE, summary: 'restore needs --target' },
  'database-url-invalid': { exit: EXIT_USAGE, summary: 'a connection string cannot be parsed' },
  'database-not-configured': { exit: EXIT_USAGE, summary: 'nothing names the database to back up (DATABASE_URL, or PGHOST/PGDATABASE/PGSERVICE)' },
  'database-mismatch': { exit: EXIT_USAGE, summary: 'the command means another database than the one the service protects' },
  'report-out-refused': { exit: EXIT_USAGE, summary: 'report --out names a place a report must not be written' },
  'unsafe-path': { exit: EXIT_FAILED, summary: 'a file or directory the program writes is a symbolic link' },
  'service-running': { exit: EXIT_USAGE, summary: 'a service already answers on the control socket' },

  'supabase-not-configured': { exit: EXIT_USAGE, summary: 'the Management API is not configured (project ref and access token)' },
  'pitr-out-of-window': { exit: EXIT_USAGE, summary: 'the recovery time is outside the point-in-time recovery window' },
  'confirm-mismatch': { exit: EXIT_USAGE, summary: 'a destructive command was not confirmed with the right project ref' },
  'offsite-off': { exit: EXIT_USAGE, summary: 'offsite copies are not configured (SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or offsite.targets)' },
  'offsite-target-unknown': { exit: EXIT_USAGE, summary: 'no offsite target of that name is configured' },
  'identity-missing': { exit: EXIT_USAGE, summary: 'an encrypted backup needs the age identity (HYBRID_BACKUP_AGE_IDENTITY_FILE) to be restored or drilled' },
  'restore-test-off': { exit: EXIT_USAGE, summary: 'restore drills are not configured (RESTORE_TEST_DATABASE_URL)' },
  'transaction-pooler': { exit: EXIT_USAGE, summary: 'the connection goes through Supabase\'s transaction pooler, which pg_dump cannot use' },

  // the operation failed
  'supabase-unauthorized': { exit: EXIT_FAILED, summary: 'the Management API refused the access token' },
  'supabase-forbidden': { exit: EXIT_FAILED, summary: 'the access token lacks a permission' },
  'supabase-not-found': { exit: EXIT_FAILED, summary: 'no Supabase project with that ref' },
  'supabase-plan': { exit: EXIT_FAILED, summary: 'the feature needs a higher Supabase plan' },
  'supabase-rate-limited': { exit: EXIT_FAILED, summary: 'the Management API rate limit held after retries' },
  'supabase-unavailable': { exit: EXIT_FAILED, summary: 'the Management API failed or could not be reached after retries' },
  'supabase-timeout': { exit: EXIT_FAILED, summary: 'the Management API did not answer in time' },
  'supabase-bad-response': { exit: EXIT_FAILED, summary: 'the Management API answered with something unexpected' },
  'supabase-schedule-limit': { exit: EXIT_FAILED, summary: 'the daily backup schedule was already changed 3 times in 24 hours' },
  'offsite-failed': { exit: EXIT_FAILED, summary: 'an offsite target (Supabase Storage, S3) refused or failed an operation' },
  'storage-failed': { exit: EXIT_FAILED, summary: 'Supabase Storage refused or failed an operation on the project\'s files' },
  'storage-write-failed': { exit: EXIT_FAILED, summary: 'a Storage file could not be written into BACKUP_DIR/storage' },
  'storage-incomplete': { exit: EXIT_FAILED, summary: 'a restore of the Storage files left some out, or a backup\'s files are incomplete' },
  'storage-off': { exit: EXIT_USAGE, summary: 'the backup holds no Storage files, or no target project\'s service-role key is set' },
  'offsite-not-found': { exit: EXIT_FAILED, summary: 'no offsite copy under that name' },
  'offsite-mismatch': { exit: EXIT_FAILED, summary: 'an offsite copy does not match its backup' },
  'restore-test-failed': { exit: EXIT_FAILED, summary: 'a restore drill could not run to the end' },
  'pitr-not-enabled': { exit: EXIT_FAILED, summary: 'point-in-time recovery is not enabled for the project' },
  'db-auth-failed': { exit: EXIT_FAILED, summary: 'the database refused the credentials' },
  'db-not-found': { exit: EXIT_FAILED, summary: 'the database does not exist on the server' },
  'db-unreachable': { exit: EXIT_FAILED, summary: 'the database server cannot be reached' },
  'db-error': { exit: EXIT_FAILED, summary: 'the database answered with an error' },
  'pg-tool-not-found': { exit: EXIT_FAILED, summary: 'no suitable pg_dump or psql is installed' },
  'pg-tool-too-old': { exit: EXIT_FAILED, summary: 'the installed client tools are older than the server' },
  'disk-space-low': { exit: EXIT_FAILED, summary: 'not enough free space for the next backup' },
  'dump-failed': { exit: EXIT_FAILED, summary: 'pg_dump exited with an error' },
  'dump-empty': { exit: EXIT_FAILED, summary: 'pg_dump wrote nothing' },
  'dump-incomplete': { exit: EXIT_FAILED, summary: 'the dump lacks pg_dump\'s closing line' },
  'dump-write-failed': { exit: EXIT_FAILED, summary: 'the backup file could not be written' },
  'dump-aborted': { exit: EXIT_FAILED, summary: 'the backup was stopped before it finished' },
  'backup-lock-timeout': { exit: EXIT_FAILED, summary: 'another backup held the lock for too long' },
  'backup-not-restorable': { exit: EXIT_FAILED, summary: 'the backup has no usable file' },
  'decrypt-failed': { exit: EXIT_FAILED, summary: 'an encrypted backup cannot be decrypted: no matching identity, or the file is truncated or altered' },
  'checksum-mismatch': { exit: EXIT_FAILED, summary: 'a backup file does not match its recorded SHA-256' },
  'file-missing': { exit: EXIT_FAILED, summary: 'a backup file is missing' },
  'restore-failed': { exit: EXIT_FAILED, summary: 'psql failed while restoring' },
  'ledger-too-new': { exit: EXIT_FAILED, summary: 'the ledger was written by a newer hybrid-backup' },
  'ledger-unavailable': { exit: EXIT_FAILED, summary: 'the ledger cannot be opened or written' },
  'ledger-unreadable': { exit: EXIT_FAILED, summary: 'the ledger file is damaged and cannot be read (ledger-rebuild moves it aside)' },
  'ledger-lost': { exit: EXIT_FAILED, summary: 'the ledger is empty or missing while backups are on disk (run ledger-rebuild)' },
  'disk-full': { exit: EXIT_FAILED, summary: 'the disk holding the backup directory is full' },
  'prune-refused': { exit: EXIT_FAILED, summary: 'retention refused to run because the newest scheduled backup failed' },
  'service-stopping': { exit: EXIT_FAILED, summary: 'the service is shutting down and takes no new work' },
  'socket-protocol': { exit: EXIT_USAGE, summary: 'a control-socket request is malformed' },
  'aborted': { exit: EXIT_FAILED, summary: 'the operation was stopped before it finished' },
  'interrupted': { exit: EXIT_FAILED, summary: 'the process running this stopped before it finished' },
  'socket-error': { exit: EXIT_FAILED, summary: 'the control socket failed' },
  'socket-untrusted': { exit: EXIT_USAGE, summary: 'the control socket is where another user could have put it' },
  'socket-busy': { exit: EXIT_FAILED, summary: 'the service is answering as many clients as it allows' },
  'service-not-answering': { exit: EXIT_FAILED, summary: 'the service accepted the connection but sends nothing' },
  'internal': { exit: EXIT_FAILED, summary: 'an unexpected error (a bug)' },
} as const satisfies Record<string, { exit: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error meant for the operator: printed plainly, never with a stack. */
export class HbError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HbError';
    this.code = code;
    this.hint = hint;
  }

  get exitCode(): number {
    return ERROR_CATALOGUE[this.code].exit;
  }

  /** The SPEC's `--json` error document body. */
  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint ? { code: this.code, message: this.message, hint: this.hint } : { code: this.code, message: this.message };
  }
}

/** Wraps anything thrown into an HbError; unknown errors become `internal`, keeping the cause. */
export function toHbError(e: unknown): HbError {
  if (e instanceof HbError) return e;
  const message = e instanceof Error ? e.message : String(e);
  // A full disk is the operator's to fix, not a bug: say it plainly wherever it surfaced.
  const code = (e as { code?: unknown })?.code;
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') {
    return new HbError('disk-full', `the disk is full: ${message}`, 'free space on the disk holding BACKUP_DIR (prune old backups, remove other files) or move BACKUP_DIR to a larger disk', { cause: e });
  }
  return new HbError('internal', message, 'this is a bug in hybrid-backup; the log has the stack', { cause: e });
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CATALOGUE, code);
}
