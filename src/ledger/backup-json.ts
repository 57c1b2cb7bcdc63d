/**
 * A backup as the ledger gives it, declared once: SQLite builds each backup's JSON (with its
 * offsite copies and Storage capture) from these expressions, `list --json` sends those bytes as
 * they are, and every `Backup` object the ledger returns is that JSON parsed. There is no second
 * mapper to keep equal to it.
 *
 * Each field map is typed against the domain type, so a field added to `Backup`, `TargetCopy` or
 * `BackupStorage` without its column does not compile. Key order is the maps' order: it is the
 * order of the keys on the wire, which must not change (clients and tests compare bytes).
 */
import type { Backup, BackupKind, BackupStatus, BackupStorage, OffsiteCopy, TargetCopy } from '../domain/types.js';

/** Every key of `T`, with the SQL expression of its value. */
type Fields<T> = { readonly [K in keyof T]-?: string };

const jsonObject = (fields: Record<string, string>): string => `json_object(${Object.entries(fields).map(([key, expr]) => `'${key}', ${expr}`).join(', ')})`;

const bool = (column: string) => `json(CASE ${column} WHEN 1 THEN 'true' ELSE 'false' END)`;

/** A `storage_captures` row aliased `s`, as a `BackupStorage`. */
const STORAGE_FIELDS: Fields<BackupStorage> = {
  complete: bool('s.complete'),
  objects: 's.objects',
  bytes: 's.bytes',
  files: 's.files',
  missing: 's.missing',
  rowsWithoutFiles: 's.rows_without_files',
  filesWithoutRows: 's.files_without_rows',
  manifestFile: 's.manifest_file',
  manifestSha256: 's.manifest_sha256',
  summary: 's.summary',
  error: `CASE WHEN s.error_code IS NULL THEN NULL ELSE json_object('code', s.error_code, 'message', coalesce(s.error, '')) END`,
};

/** An `offsite_copies` row aliased `o`, as a `TargetCopy`. */
const COPY_FIELDS: Fields<TargetCopy> = {
  target: 'o.target',
  status: 'o.status',
  location: 'o.location',
  key: 'o.key',
  bytes: 'o.bytes',
  sha256: 'o.sha256',
  encrypted: bool('o.encrypted'),
  at: 'o.at',
  error: 'o.error',
};

/** The trigger-kept summary columns of a `backups` row, as its `OffsiteCopy`. */
const OFFSITE_FIELDS: Fields<OffsiteCopy> = {
  status: 'offsite_status',
  location: `coalesce(offsite_path, '')`,
  bytes: 'offsite_bytes',
  at: 'offsite_at',
  error: 'offsite_error',
};

export const STORAGE_JSON = jsonObject(STORAGE_FIELDS);
export const COPY_JSON = jsonObject(COPY_FIELDS);

/** A `backups` row (not aliased: the subqueries name it `backups`), as a `Backup`. */
const BACKUP_FIELDS: Fields<Backup> = {
  id: 'id',
  kind: 'kind',
  description: 'description',
  file: 'file',
  bytes: 'bytes',
  sha256: 'sha256',
  createdAt: 'created_at',
  status: 'status',
  finishedAt: 'finished_at',
  durationMs: 'duration_ms',
  compression: 'compression',
  profile: 'profile',
  database: 'database',
  serverVersion: 'server_version',
  pgDumpVersion: 'pg_dump_version',
  tableCount: 'table_count',
  rowCount: 'row_count',
  verifiedAt: 'verified_at',
  checkedAt: 'checked_at',
  pinned: bool('pinned'),
  runId: 'run_id',
  error: `CASE WHEN error_code IS NULL OR error_code = '' THEN NULL ELSE json_object('code', error_code, 'message', coalesce(error_message, '')) END`,
  offsite: `CASE WHEN offsite_status IS NULL OR offsite_status = '' THEN NULL ELSE ${jsonObject(OFFSITE_FIELDS)} END`,
  offsiteCopies: `(SELECT coalesce(json_group_array(json(c)), '[]') FROM (SELECT ${COPY_JSON} AS c FROM offsite_copies o WHERE o.backup_id = backups.id ORDER BY o.target))`,
  storage: `(SELECT json(${STORAGE_JSON}) FROM storage_captures s WHERE s.backup_id = backups.id)`,
};

export const BACKUP_JSON = jsonObject(BACKUP_FIELDS);

/** The one row a backup is read as: its JSON, and what the list cache orders and refreshes it by. */
export interface BackupRow {
  id: number;
  createdAt: string;
  rev: number;
  json: string;
}

/** Selects {@link BackupRow}s; append `WHERE …` and `ORDER BY …`. */
export const SELECT_BACKUPS = `SELECT id, created_at AS createdAt, rev, ${BACKUP_JSON} AS json FROM backups`;

/** The one mapper: a {@link BackupRow} as a `Backup`. */
export const toBackup = (r: BackupRow): Backup => JSON.parse(r.json) as Backup;

/** Which backups: a status among `statuses`, of one `kind`. */
export interface BackupFilter {
  statuses?: readonly BackupStatus[];
  kind?: BackupKind;
}

/** `filter` as a WHERE clause over `backups` (empty for none) and its arguments. */
export function backupWhere(filter: BackupFilter): { where: string; args: unknown[] } {
  const clauses: string[] = [];
  const args: unknown[] = [];
  if (filter.statuses?.length) {
    clauses.push(`status IN (${filter.statuses.map(() => '?').join(',')})`);
    args.push(...filter.statuses);
  }
  if (filter.kind) {
    clauses.push('kind = ?');
    args.push(filter.kind);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', args };
}
