/**
 * Backups: one row per backup attempt, with what it recorded for its drill (per-table row counts
 * and digests, the evidence), the Storage files it captured, and what later checks, pins and
 * prunes said about it. Every backup is read through the one shape of backup-json.ts.
 */
import type { Backup, BackupEvidence, BackupKind, BackupStatus, BackupStorage, Compression, DigestSession, DumpProfile, TableCounts } from '../domain/types.js';
import { redact } from '../util/redact.js';
import { backupWhere, SELECT_BACKUPS, STORAGE_JSON, toBackup, type BackupFilter, type BackupRow } from './backup-json.js';
import { BackupJsonList } from './backup-list.js';
import type { Runs } from './runs.js';
import { now, type Prepared, type Sql } from './sql.js';

/** A backup attempt to record. */
export interface NewBackup {
  runId: number | null;
  kind: BackupKind;
  description: string | null;
  file: string;
  bytes: number;
  sha256: string | null;
  compression: Compression;
  profile: DumpProfile;
  status: BackupStatus;
  createdAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  database: string | null;
  source: string | null;
  sourceSystemId: string | null;
  serverVersion: string | null;
  pgDumpVersion: string | null;
  tables: TableCounts | null;
  error: { code: string; message: string } | null;
  /** What the drill compares besides row counts (absent for failed attempts and older backups). */
  evidence?: BackupEvidence | null;
  /** The Storage files captured with it (absent: storage off). */
  storage?: NewStorageCapture | null;
}

/** A backup's Storage capture to record (see {@link Backups.recordStorageCapture}). */
export type NewStorageCapture = Omit<BackupStorage, 'error'> & { error: { code: string; message: string } | null };

/** Extra ledger facts about a backup that the SPEC shape does not carry. */
export interface BackupSource {
  source: string | null;
  sourceSystemId: string | null;
}

const SQL = {
  insert: `INSERT INTO backups (run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, finished_at,
             duration_ms, database, source, source_system_id, server_version, pg_dump_version, table_count, row_count, error_code, error_message)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  insertTable: 'INSERT INTO backup_tables (backup_id, table_name, rows, crc32, data_bytes, copy_columns) VALUES (?, ?, ?, ?, ?, ?)',
  insertEvidence: 'INSERT INTO backup_evidence (backup_id, fingerprint, session, roles, extensions, sequences, supautils_sql) VALUES (?, ?, ?, ?, ?, ?, ?)',
  writeStorage: `INSERT INTO storage_captures (backup_id, complete, objects, bytes, files, missing, rows_without_files, files_without_rows, manifest_file, manifest_sha256, summary, error_code, error, at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (backup_id) DO UPDATE SET complete=excluded.complete, objects=excluded.objects, bytes=excluded.bytes, files=excluded.files, missing=excluded.missing,
                   rows_without_files=excluded.rows_without_files, files_without_rows=excluded.files_without_rows, manifest_file=excluded.manifest_file,
                   manifest_sha256=excluded.manifest_sha256, summary=excluded.summary, error_code=excluded.error_code, error=excluded.error, at=excluded.at`,
  storage: { pluck: `SELECT ${STORAGE_JSON} FROM storage_captures s WHERE s.backup_id = ?` },
  byId: `${SELECT_BACKUPS} WHERE id = ?`,
  byFile: `${SELECT_BACKUPS} WHERE file = ? ORDER BY id DESC LIMIT 1`,
  hasFile: { pluck: 'SELECT 1 FROM backups WHERE file = ? LIMIT 1' },
  source: 'SELECT source, source_system_id FROM backups WHERE id=?',
  digests: 'SELECT table_name, crc32, data_bytes, copy_columns FROM backup_tables WHERE backup_id=? AND crc32 IS NOT NULL',
  evidence: 'SELECT fingerprint, session, roles, extensions, sequences, supautils_sql FROM backup_evidence WHERE backup_id=?',
  tableCounts: 'SELECT table_name, rows FROM backup_tables WHERE backup_id=? ORDER BY table_name',
  setIntegrity: `UPDATE backups SET status=? WHERE id=? AND status IN ('ok','corrupt','missing') AND status != ?`,
  markChecked: 'UPDATE backups SET checked_at=? WHERE id=?',
  markPruned: `UPDATE backups SET status='pruned', pruned_at=? WHERE id=? AND status='ok' AND pinned=0`,
  setPinned: 'UPDATE backups SET pinned=? WHERE id=?',
  markVerified: 'UPDATE backups SET verified_at=? WHERE id=?',
};

export class Backups {
  private readonly q: Prepared<typeof SQL>;
  private readonly json: BackupJsonList;
  private readonly recordTx: (b: NewBackup) => number;
  private readonly insertTx: (b: NewBackup) => number;

  /** `runs`: a recorded backup ends its run. */
  constructor(
    private readonly sql: Sql,
    private readonly runs: Runs,
  ) {
    this.q = sql.prepared(SQL);
    this.json = new BackupJsonList(sql);
    this.insertTx = sql.db.transaction((b: NewBackup) => this.insert(b));
    this.recordTx = sql.db.transaction((b: NewBackup) => {
      const id = this.insert(b);
      if (b.runId !== null) this.runs.finishWithBackup(b.runId, id, b);
      return id;
    });
  }

  /**
   * Writes a backup row with its table counts, evidence and Storage capture; returns its id. Call
   * inside a transaction.
   */
  insert(b: NewBackup): number {
    const info = this.q.insert.run(
      b.runId,
      b.kind,
      b.description,
      b.file,
      b.bytes,
      b.sha256,
      b.compression,
      b.profile,
      b.status,
      b.createdAt,
      b.finishedAt,
      b.durationMs,
      b.database,
      b.source,
      b.sourceSystemId,
      b.serverVersion,
      b.pgDumpVersion,
      b.tables ? Object.keys(b.tables).length : null,
      b.tables ? Object.values(b.tables).reduce((a, n) => a + n, 0) : null,
      b.error?.code ?? null,
      b.error ? redact(b.error.message) : null,
    );
    const id = Number(info.lastInsertRowid);
    if (b.tables) {
      const digests = b.evidence?.digests ?? {};
      for (const [t, n] of Object.entries(b.tables)) {
        const d = digests[t];
        this.q.insertTable.run(id, t, n, d?.crc32 ?? null, d?.bytes ?? null, d?.columns ?? null);
      }
    }
    if (b.evidence) {
      const e = b.evidence;
      this.q.insertEvidence.run(id, e.fingerprint ? JSON.stringify(e.fingerprint) : null, e.session ? JSON.stringify(e.session) : null, JSON.stringify(e.roles), JSON.stringify(e.extensions), JSON.stringify(e.sequences ?? {}), e.supautilsSql ?? null);
    }
    if (b.storage) this.writeStorageCapture(id, b.storage, b.finishedAt ?? now());
    return id;
  }

  /**
   * Records a backup attempt and closes its run, in one transaction: the run is `ok` when the
   * backup is, `failed` otherwise.
   */
  record(b: NewBackup): Backup {
    const id = this.recordTx(b);
    if (b.runId !== null) this.runs.announce(b.runId);
    return this.get(id)!;
  }

  /** Adds a backup found on disk by `ledger-rebuild` (no run produced it here). */
  addRebuilt(b: Omit<NewBackup, 'runId'>): Backup {
    const id = this.insertTx({ ...b, runId: null });
    return this.get(id)!;
  }

  private writeStorageCapture(backupId: number, c: NewStorageCapture, at: string): void {
    this.q.writeStorage.run(
      backupId,
      c.complete ? 1 : 0,
      c.objects,
      c.bytes,
      c.files,
      c.missing,
      c.rowsWithoutFiles,
      c.filesWithoutRows,
      c.manifestFile,
      c.manifestSha256,
      redact(c.summary),
      c.error?.code ?? null,
      c.error ? redact(c.error.message) : null,
      at,
    );
  }

  /** Records (or replaces) what a backup holds of the Storage files. */
  recordStorageCapture(backupId: number, c: NewStorageCapture): void {
    this.writeStorageCapture(backupId, c, now());
  }

  /** What the backup holds of the Storage files, or null when it captured none. */
  storageCapture(backupId: number): BackupStorage | null {
    const json = this.q.storage.get(backupId) as string | undefined;
    return json === undefined ? null : (JSON.parse(json) as BackupStorage);
  }

  /** The backup whose file this is, or undefined. */
  byFile(file: string): Backup | undefined {
    const r = this.q.byFile.get(file) as BackupRow | undefined;
    return r ? toBackup(r) : undefined;
  }

  /** Whether a backup row already names this file. */
  hasFile(file: string): boolean {
    return this.q.hasFile.get(file) !== undefined;
  }

  get(id: number): Backup | undefined {
    const r = this.q.byId.get(id) as BackupRow | undefined;
    return r ? toBackup(r) : undefined;
  }

  source(id: number): BackupSource | undefined {
    const r = this.q.source.get(id) as { source: string | null; source_system_id: string | null } | undefined;
    return r ? { source: r.source, sourceSystemId: r.source_system_id } : undefined;
  }

  /** The newest backup in one of `statuses`. */
  latest(statuses: readonly BackupStatus[] = ['ok']): Backup | undefined {
    const r = this.sql.cached(`${SELECT_BACKUPS} WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY created_at DESC, id DESC LIMIT 1`).get(...statuses) as BackupRow | undefined;
    return r ? toBackup(r) : undefined;
  }

  /** Backups, newest first. */
  list(filter: BackupFilter & { limit?: number } = {}): Backup[] {
    const { where, args } = backupWhere(filter);
    const limit = filter.limit ? ' LIMIT ?' : '';
    if (filter.limit) args.push(filter.limit);
    return (this.sql.cached(`${SELECT_BACKUPS} ${where} ORDER BY created_at DESC, id DESC${limit}`).all(...args) as BackupRow[]).map(toBackup);
  }

  /**
   * The same backups as {@link list}, as a JSON array built by SQLite, in UTF-8: every backup (no
   * filter) as the cached bytes, so a `list --json` of 10,000 backups costs no serialising at all
   * while nothing changed. The answer is cached until the ledger changes (in this connection or
   * any other). Its objects equal `list`'s: both are the JSON of backup-json.ts.
   */
  listRaw(filter: BackupFilter & { limit?: number } = {}): Buffer {
    return this.json.raw(filter);
  }

  count(filter: BackupFilter = {}): number {
    const { where, args } = backupWhere(filter);
    return (this.sql.cached(`SELECT count(*) AS n FROM backups ${where}`).get(...args) as { n: number }).n;
  }

  /** What the backup recorded for its drill besides row counts; null for backups taken before it was recorded. */
  evidence(backupId: number): BackupEvidence | null {
    const rows = this.q.digests.all(backupId) as Array<{ table_name: string; crc32: number; data_bytes: number; copy_columns: string }>;
    const e = this.q.evidence.get(backupId) as
      | { fingerprint: string | null; session: string | null; roles: string | null; extensions: string | null; sequences: string | null; supautils_sql: string | null }
      | undefined;
    if (!rows.length && !e) return null;
    return {
      digests: Object.fromEntries(rows.map((r) => [r.table_name, { crc32: r.crc32, bytes: r.data_bytes, columns: r.copy_columns }])),
      session: e?.session ? (JSON.parse(e.session) as DigestSession) : null,
      fingerprint: e?.fingerprint ? (JSON.parse(e.fingerprint) as unknown) : null,
      roles: e?.roles ? (JSON.parse(e.roles) as string[]) : [],
      extensions: e?.extensions ? (JSON.parse(e.extensions) as BackupEvidence['extensions']) : [],
      sequences: e?.sequences ? (JSON.parse(e.sequences) as BackupEvidence['sequences']) : {},
      ...(e?.supautils_sql ? { supautilsSql: e.supautils_sql } : {}),
    };
  }

  tableCounts(backupId: number): TableCounts {
    const rows = this.q.tableCounts.all(backupId) as Array<{ table_name: string; rows: number }>;
    return Object.fromEntries(rows.map((r) => [r.table_name, r.rows]));
  }

  /**
   * What a check of the file found: `corrupt` (it does not match), `missing` (it is gone), or `ok`
   * again. Only a backup that should have a file (ok, corrupt or missing) changes; a pruned or
   * failed one keeps its status. True when the status changed.
   */
  setIntegrity(id: number, status: 'ok' | 'corrupt' | 'missing'): boolean {
    return this.q.setIntegrity.run(status, id, status).changes === 1;
  }

  markChecked(id: number, at = now()): void {
    this.q.markChecked.run(at, id);
  }

  /** Marks an ok, unpinned backup pruned; false when it no longer is one (pinned or checked meanwhile). */
  markPruned(id: number, at = now()): boolean {
    return this.q.markPruned.run(at, id).changes === 1;
  }

  setPinned(id: number, pinned: boolean): void {
    this.q.setPinned.run(pinned ? 1 : 0, id);
  }

  markVerified(id: number, at = now()): void {
    this.q.markVerified.run(at, id);
  }
}
