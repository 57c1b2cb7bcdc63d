/**
 * Domain types shared by every layer: backups, runs, their kinds and statuses, and the
 * progress events long operations emit. Pure data; nothing here does I/O.
 */

export const BACKUP_KINDS = ['daily', 'manual', 'pre-change'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];

/** `missing`: the file is gone from disk (found by prune, verify or the monitor). */
export const BACKUP_STATUSES = ['ok', 'failed', 'interrupted', 'pruned', 'corrupt', 'missing'] as const;
export type BackupStatus = (typeof BACKUP_STATUSES)[number];

export const RUN_STATUSES = ['running', 'ok', 'failed', 'interrupted'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const RUN_TRIGGERS = ['schedule', 'socket', 'cli', 'startup'] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

export type Compression = 'none' | 'gzip';
export type DumpProfile = 'full' | 'supabase';

/** A backup as the SPEC shows it (`--json`), plus the ledger's extra facts. */
export interface Backup {
  id: number;
  kind: BackupKind;
  description: string | null;
  /** Absolute path of the backup file (where it is or would have been). */
  file: string;
  bytes: number;
  /** SHA-256 of the file's bytes as stored; null when no file was completed. */
  sha256: string | null;
  /** When the dump started (ISO-8601 UTC). */
  createdAt: string;
  status: BackupStatus;
  finishedAt: string | null;
  durationMs: number | null;
  compression: Compression;
  profile: DumpProfile;
  database: string | null;
  serverVersion: string | null;
  pgDumpVersion: string | null;
  tableCount: number | null;
  rowCount: number | null;
  /** Set when a restore drill passed. */
  verifiedAt: string | null;
  /** Set when `verify` last found the file matching its checksum. */
  checkedAt: string | null;
  pinned: boolean;
  runId: number | null;
  error: { code: string; message: string } | null;
  /**
   * A summary of the offsite copies: the copy in the worst state (failed, then delete-failed,
   * then uploaded, then deleted), its error prefixed with its target's name; null when none.
   */
  offsite: OffsiteCopy | null;
  /** Every offsite copy, one per target, by target name. */
  offsiteCopies: TargetCopy[];
  /** The Supabase Storage files this backup captured (issue 15); null when it captured none (storage off). */
  storage: BackupStorage | null;
}

/** What a backup holds of the project's Storage files: its manifest in brief. */
/** What a Storage manifest holds, in counts: its summary, and what the ledger records of a backup's files. */
export interface StorageCounts {
  /** Every object of the captured buckets, and every `storage.objects` row of the dump, has its file. */
  complete: boolean;
  objects: number;
  bytes: number;
  /** Distinct files (SHA-256) in the store. */
  files: number;
  /** Objects or folders listed but not captured. */
  missing: number;
  rowsWithoutFiles: number;
  filesWithoutRows: number;
}

export interface BackupStorage extends StorageCounts {
  /** The manifest (`<backup>.storage.json`); null when the capture failed. */
  manifestFile: string | null;
  manifestSha256: string | null;
  /** One sentence: `files complete: …` or `files INCOMPLETE: …`. */
  summary: string;
  /** Why the capture failed as a whole; null when it ran (complete or not). */
  error: { code: string; message: string } | null;
}

export interface OffsiteCopy {
  /** uploaded; failed (retried at the next run); deleted (with the local backup); delete-failed (retried at the next prune). */
  status: 'uploaded' | 'failed' | 'deleted' | 'delete-failed';
  /** Where the object is: `bucket/prefix/key` (Supabase Storage) or `s3://bucket/prefix/key`. */
  location: string;
  bytes: number | null;
  at: string | null;
  error: string | null;
}

/** A backup's copy in one offsite target. */
export interface TargetCopy extends OffsiteCopy {
  target: string;
  /** The object's key inside the target's bucket and prefix. */
  key: string;
  /** The stored object's SHA-256 (the ciphertext's, when encrypted). */
  sha256: string | null;
  encrypted: boolean;
}

/** The outcome of a restore drill (SPEC `restore-test --json`, plus more). */
export interface DrillResult {
  backupId: number;
  ok: boolean;
  tables: number;
  rowsChecked: number;
  durationMs: number;
  mismatches: Array<{ table: string; expected: number; actual: number | null; error?: string }>;
  scratchDatabase: string;
  amcheck: 'off' | 'ok' | 'failed';
  /**
   * What was compared besides row counts (SPEC `fidelity`): catalog objects fingerprinted, tables
   * whose data digest was compared, and every difference, in words. `ok` needs none.
   */
  fidelity: { objects: number; tablesDigested: number; differences: string[]; notes?: string[] };
  /** Where it ran: a throwaway server the drill started, or the shared RESTORE_TEST_DATABASE_URL server. */
  server?: 'throwaway' | 'shared';
  error?: { code: string; message: string; hint?: string };
  /** Where the restored file came from: `local`, or `offsite:<target>` (downloaded, decrypted, checked). */
  source?: string;
}

/** One entry of the ledger's run history. */
export interface Run {
  id: number;
  job: string;
  trigger: RunTrigger;
  status: RunStatus;
  startedAt: string;
  finishedAt: string | null;
  error?: { code: string; message: string };
  backupId?: number | null;
  details?: Record<string, unknown>;
}

/** Per-table row counts, keyed by the qualified table name exactly as pg_dump wrote it. */
export type TableCounts = Record<string, number>;

/**
 * What a table's data was in the dump: CRC-32 (zlib's) of its COPY rows exactly as pg_dump wrote
 * them (each row with its newline, not the `\.` line), their bytes, and the COPY's column list
 * (`("a", "b")`): `COPY <table> <columns> TO STDOUT` on a restored database, in a session set like
 * pg_dump's ({@link DigestSession}), gives the same bytes when the data came back whole.
 */
export interface TableDigest {
  crc32: number;
  bytes: number;
  columns: string;
}

/** The source session's settings that shape COPY's text (pg_dump fixes DateStyle, IntervalStyle, extra_float_digits). */
export interface DigestSession {
  timeZone: string;
  byteaOutput: string;
  encoding: string;
}

/** What a backup recorded for its drill to compare, besides row counts. */
export interface BackupEvidence {
  /** Each table's data digest, keyed like {@link TableCounts}. */
  digests: Record<string, TableDigest>;
  session: DigestSession | null;
  /** The catalog fingerprint taken in the backup's snapshot (src/fidelity/fingerprint.ts). */
  fingerprint: unknown | null;
  /** The source cluster's roles (not pg_*): a drill on a throwaway server creates them, as a dump's grants name them. */
  roles: string[];
  /** Every extension the source database had, for a drill to create first. */
  extensions: Array<{ name: string; schema: string }>;
  /** Each sequence's position as the dump sets it, keyed by the name as pg_dump wrote it. */
  sequences: Record<string, { value: string; called: boolean }>;
  /**
   * Supabase profile: what only supautils lets `postgres` do on the platform (create the user's
   * event triggers), as SQL a drill's plain server runs as its superuser after the restore.
   */
  supautilsSql?: string;
}

/** Progress of a long operation: emitted to terminals and streamed over the socket. */
export interface ProgressEvent {
  phase: 'dump' | 'restore' | 'verify' | 'upload' | 'download' | 'drill';
  /** Bytes processed so far. */
  bytes: number;
  /** Total bytes, when known in advance. */
  total?: number;
  elapsedMs: number;
}

/** A managed backup as the Management API lists it. */
export interface ManagedBackup {
  /** Absent in older API responses. */
  id: number | null;
  /** COMPLETED, FAILED, PENDING, REMOVED, ARCHIVED, CANCELLED, or a value added later. */
  status: string;
  insertedAt: string;
  physical: boolean;
}

/** What one poll of the Management API saw. */
export interface SupabaseSnapshot {
  takenAt: string;
  /** False when the project ref or access token is not set (or the layer is switched off). */
  configured: boolean;
  enabled: boolean;
  projectRef: string | null;
  project: { name: string; status: string; region: string; postgresVersion: string | null } | null;
  region: string | null;
  pitrEnabled: boolean | null;
  walgEnabled: boolean | null;
  backups: ManagedBackup[];
  /** The newest COMPLETED backup. */
  latestBackupAt: string | null;
  failedBackups: number;
  /** The point-in-time recovery window (PITR projects). */
  physical: { earliest: string | null; latest: string | null };
  /** Selected add-on variants: pitr (pitr_7, pitr_14, pitr_28) and compute (ci_micro, ci_small, …). */
  addons: { pitr: string | null; compute: string | null } | null;
  /** The daily backup time, HH:MM:SS UTC; null on plans or projects without one. */
  schedule: { scheduleFor: string; updatedAt: string | null } | null;
  /** Why a part could not be read, when the rest could. */
  notes: string[];
}

/** A monitor check's status; `off` checks (a capability switched off) do not count. */
export type CheckStatus = 'ok' | 'warning' | 'critical' | 'unknown' | 'off';
export type OverallStatus = Exclude<CheckStatus, 'off'>;

export interface MonitorCheck {
  name: string;
  status: CheckStatus;
  message: string;
}

/** SPEC `monitor --json`. */
export interface MonitorDoc {
  status: OverallStatus;
  checks: MonitorCheck[];
  at: string;
}

const RANK: Record<CheckStatus, number> = { off: -1, ok: 0, unknown: 1, warning: 2, critical: 3 };

/** The worst status among checks: critical > warning > unknown > ok; `off` never counts. */
export function worstStatus(statuses: readonly CheckStatus[]): OverallStatus {
  let worst: OverallStatus = 'ok';
  for (const s of statuses) if (s !== 'off' && RANK[s] > RANK[worst]) worst = s;
  return worst;
}

/** The monitoring-plugin exit code of a status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
export function pluginExitCode(s: OverallStatus): number {
  return { ok: 0, warning: 1, critical: 2, unknown: 3 }[s];
}
