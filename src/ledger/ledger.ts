/**
 * The ledger: `BACKUP_DIR/ledger.db` (SQLite, WAL). Records every run of every job and every
 * backup attempt, and holds the cross-process backup lock.
 *
 * Guarantees:
 * - opening it migrates the schema forward and recovers from crashes: runs left `running` by a
 *   process that no longer exists become `interrupted`, and their partial files are deleted;
 * - writes are durable on return (synchronous=FULL);
 * - error messages are redacted before they are stored.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { HbError } from '../domain/errors.js';
import type { Backup, BackupEvidence, BackupStorage, BackupKind, BackupStatus, Compression, DigestSession, DrillResult, DumpProfile, MonitorDoc, OffsiteCopy, Run, TargetCopy, RunStatus, RunTrigger, SupabaseSnapshot, TableCounts } from '../domain/types.js';
import type { JobName } from '../jobs/runs.js';
import { formatBytes } from '../util/format.js';
import { redact } from '../util/redact.js';
import { isAlive, selfIdentity } from '../util/process.js';
import { MIGRATIONS } from './migrations.js';

export const LEDGER_FILE = 'ledger.db';

interface RunRow {
  id: number;
  job: string;
  trigger: RunTrigger;
  status: RunStatus;
  started_at: string;
  finished_at: string | null;
  pid: number | null;
  pid_start: string | null;
  host: string | null;
  error_code: string | null;
  error_message: string | null;
  partial_path: string | null;
  final_path: string | null;
  backup_id: number | null;
  details: string | null;
}

interface BackupRow {
  id: number;
  run_id: number | null;
  kind: BackupKind;
  description: string | null;
  file: string;
  bytes: number;
  sha256: string | null;
  compression: Compression;
  profile: DumpProfile;
  status: BackupStatus;
  created_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  database: string | null;
  source: string | null;
  source_system_id: string | null;
  server_version: string | null;
  pg_dump_version: string | null;
  table_count: number | null;
  row_count: number | null;
  verified_at: string | null;
  checked_at: string | null;
  pinned: number;
  pruned_at: string | null;
  error_code: string | null;
  error_message: string | null;
  offsite_path: string | null;
  offsite_status: OffsiteCopy['status'] | null;
  offsite_bytes: number | null;
  offsite_at: string | null;
  offsite_error: string | null;
}

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

/** Extra ledger facts about a backup that the SPEC shape does not carry. */
export interface BackupSource {
  source: string | null;
  sourceSystemId: string | null;
}

export interface RecoveredRun {
  runId: number;
  job: string;
  pid: number | null;
  removed: string[];
}

export interface LockHolder {
  runId: number | null;
  pid: number;
  host: string;
  acquiredAt: string;
  purpose: string | null;
  /** The lock is free, but this one asked earlier and is served first. */
  queued?: boolean;
}

interface StorageRow {
  backup_id: number;
  complete: number;
  objects: number;
  bytes: number;
  files: number;
  missing: number;
  rows_without_files: number;
  files_without_rows: number;
  manifest_file: string | null;
  manifest_sha256: string | null;
  summary: string;
  error_code: string | null;
  error: string | null;
  at: string | null;
}

function toStorage(r: StorageRow | undefined): BackupStorage | null {
  if (!r) return null;
  return {
    complete: r.complete === 1,
    objects: r.objects,
    bytes: r.bytes,
    files: r.files,
    missing: r.missing,
    rowsWithoutFiles: r.rows_without_files,
    filesWithoutRows: r.files_without_rows,
    manifestFile: r.manifest_file,
    manifestSha256: r.manifest_sha256,
    summary: r.summary,
    error: r.error_code ? { code: r.error_code, message: r.error ?? '' } : null,
  };
}

/** {@link toStorage} in SQL (over a `storage_captures` row aliased `s`). */
const STORAGE_JSON = `json_object('complete', json(CASE s.complete WHEN 1 THEN 'true' ELSE 'false' END), 'objects', s.objects, 'bytes', s.bytes,
  'files', s.files, 'missing', s.missing, 'rowsWithoutFiles', s.rows_without_files, 'filesWithoutRows', s.files_without_rows,
  'manifestFile', s.manifest_file, 'manifestSha256', s.manifest_sha256, 'summary', s.summary,
  'error', CASE WHEN s.error_code IS NULL THEN NULL ELSE json_object('code', s.error_code, 'message', coalesce(s.error, '')) END)`;

/** A backup's Storage capture to record (see {@link Ledger.recordStorageCapture}). */
export type NewStorageCapture = Omit<BackupStorage, 'error'> & { error: { code: string; message: string } | null };

function toBackup(r: BackupRow, copies: TargetCopy[], storage: StorageRow | undefined): Backup {
  return {
    id: r.id,
    kind: r.kind,
    description: r.description,
    file: r.file,
    bytes: r.bytes,
    sha256: r.sha256,
    createdAt: r.created_at,
    status: r.status,
    finishedAt: r.finished_at,
    durationMs: r.duration_ms,
    compression: r.compression,
    profile: r.profile,
    database: r.database,
    serverVersion: r.server_version,
    pgDumpVersion: r.pg_dump_version,
    tableCount: r.table_count,
    rowCount: r.row_count,
    verifiedAt: r.verified_at,
    checkedAt: r.checked_at,
    pinned: r.pinned === 1,
    runId: r.run_id,
    error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    offsite: r.offsite_status ? { status: r.offsite_status, location: r.offsite_path ?? '', bytes: r.offsite_bytes, at: r.offsite_at, error: r.offsite_error } : null,
    offsiteCopies: copies,
    storage: toStorage(storage),
  };
}

interface CopyRow {
  backup_id: number;
  target: string;
  key: string;
  location: string;
  status: TargetCopy['status'];
  bytes: number | null;
  sha256: string | null;
  encrypted: number;
  at: string | null;
  error: string | null;
}

function toCopy(r: CopyRow): TargetCopy {
  return { target: r.target, status: r.status, location: r.location, key: r.key, bytes: r.bytes, sha256: r.sha256, encrypted: r.encrypted === 1, at: r.at, error: r.error };
}

/** {@link toCopy} in SQL (over an `offsite_copies` row aliased `o`). */
const COPY_JSON = `json_object('target', o.target, 'status', o.status, 'location', o.location, 'key', o.key, 'bytes', o.bytes, 'sha256', o.sha256,
  'encrypted', json(CASE o.encrypted WHEN 1 THEN 'true' ELSE 'false' END), 'at', o.at, 'error', o.error)`;

/** {@link toBackup} in SQL, for {@link Ledger.listBackupsJson}: same keys, same order, same values. */
const BACKUP_JSON = `json_object(
  'id', id, 'kind', kind, 'description', description, 'file', file, 'bytes', bytes, 'sha256', sha256,
  'createdAt', created_at, 'status', status, 'finishedAt', finished_at, 'durationMs', duration_ms,
  'compression', compression, 'profile', profile, 'database', database, 'serverVersion', server_version,
  'pgDumpVersion', pg_dump_version, 'tableCount', table_count, 'rowCount', row_count, 'verifiedAt', verified_at,
  'checkedAt', checked_at, 'pinned', json(CASE pinned WHEN 1 THEN 'true' ELSE 'false' END), 'runId', run_id,
  'error', CASE WHEN error_code IS NULL OR error_code = '' THEN NULL ELSE json_object('code', error_code, 'message', coalesce(error_message, '')) END,
  'offsite', CASE WHEN offsite_status IS NULL OR offsite_status = '' THEN NULL ELSE json_object('status', offsite_status, 'location', coalesce(offsite_path, ''), 'bytes', offsite_bytes, 'at', offsite_at, 'error', offsite_error) END,
  'offsiteCopies', (SELECT coalesce(json_group_array(json(c)), '[]') FROM (SELECT ${COPY_JSON} AS c FROM offsite_copies o WHERE o.backup_id = backups.id ORDER BY o.target)),
  'storage', (SELECT json(${STORAGE_JSON}) FROM storage_captures s WHERE s.backup_id = backups.id)
)`;

function toRun(r: RunRow): Run {
  const run: Run = {
    id: r.id,
    job: r.job,
    trigger: r.trigger,
    status: r.status,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
  if (r.error_code) run.error = { code: r.error_code, message: r.error_message ?? '' };
  if (r.backup_id !== null) run.backupId = r.backup_id;
  if (r.details) run.details = JSON.parse(r.details) as Record<string, unknown>;
  return run;
}

const now = () => new Date().toISOString();

interface CachedBackupJson {
  id: number;
  createdAt: string;
  json: Buffer;
}

interface AllBackupsCache {
  stamp: string;
  maxRev: number;
  byId: Map<number, CachedBackupJson>;
  /** newest first, as `ORDER BY created_at DESC, id DESC` */
  ordered: CachedBackupJson[];
  bytes: Buffer;
}

const OPEN_BRACKET = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE_BRACKET = Buffer.from(']');

export class Ledger {
  readonly file: string;
  /** Runs this open found abandoned by dead processes and closed as interrupted. */
  readonly recovered: RecoveredRun[];
  private readonly db: Database.Database;
  private closed = false;
  /** The last filtered `listBackupsJson` answer, reused while the ledger has not changed. */
  private listCache: { key: string; bytes: Buffer } | undefined;
  /** Every backup's JSON, refreshed row by row from `rev` (see {@link allBackupsJson}). */
  private allCache: AllBackupsCache | undefined;
  private readonly finishedListeners: Array<(run: Run) => void> = [];

  /** Run outcomes the ledger could not write (a full disk): held here, seen by readers, written by {@link flushPending}. */
  private readonly pending: PendingRun[] = [];
  private nextPendingId = -1;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
    this.migrate();
    let recovered: RecoveredRun[] = [];
    try {
      recovered = this.recoverAbandoned();
    } catch (e) {
      // A full disk must not keep the monitor from saying so: recovery waits for the next open.
      if (!isStorageFailure(e)) throw e;
    }
    this.recovered = recovered;
  }

  /**
   * Opens (creating if needed) the ledger in `dir`, which must exist.
   *
   * A ledger that is new or empty (truncated to nothing) in a directory that holds backup sidecars
   * is refused, and nothing is written: the backups are there, and an empty ledger would say
   * "no backups" about them. A ledger that cannot be read is refused too. `recover` (for
   * `ledger-rebuild`) accepts an empty ledger, and moves one that cannot be read aside under a
   * dated name (never deleting it) to start a new one.
   * @throws HbError `ledger-lost`, `ledger-unreadable`, `ledger-too-new`, `ledger-unavailable`, `disk-full`
   */
  static open(dir: string, opts: { recover?: boolean } = {}): Ledger {
    const file = path.join(dir, LEDGER_FILE);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      // SQLite follows links: a ledger.db link would make it write into whatever file it names.
      if (lstatSync(f, { throwIfNoEntry: false })?.isSymbolicLink()) {
        throw new HbError('unsafe-path', `${f} is a symbolic link; refusing to open the ledger through it`, `remove the link (rm ${f})`);
      }
    }
    const existed = existsSync(file);
    let db: Database.Database;
    try {
      db = new Database(file);
    } catch (e) {
      throw openError(file, dir, e);
    }
    let fresh: boolean;
    try {
      // Reads only: nothing is written before we know the ledger is one to use. (Another process
      // may be creating it right now: wait for its lock rather than call it unreadable.)
      db.pragma('busy_timeout = 15000');
      fresh = (db.pragma('user_version', { simple: true }) as number) === 0 && (db.prepare('SELECT count(*) FROM sqlite_master').pluck().get() as number) === 0;
    } catch (e) {
      db.close();
      const code = (e as { code?: string }).code ?? '';
      if (code !== 'SQLITE_NOTADB' && code !== 'SQLITE_CORRUPT') throw openError(file, dir, e);
      if (!opts.recover) {
        throw new HbError(
          'ledger-unreadable',
          `the ledger ${file} cannot be read: ${(e as Error).message}`,
          'run `hybrid-backup ledger-rebuild`: it moves this file aside (never deleting it) and re-creates the backups from their .meta.json sidecars',
        );
      }
      const aside = `${file}.unreadable-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
      renameSync(file, aside);
      for (const ext of ['-wal', '-shm']) if (existsSync(file + ext)) renameSync(file + ext, aside + ext);
      return Object.assign(Ledger.open(dir, opts), { movedAside: aside });
    }
    if (fresh && !opts.recover) {
      const sidecars = sidecarNames(dir);
      if (sidecars.length) {
        db.close();
        if (!existed) rmSync(file, { force: true });
        throw new HbError(
          'ledger-lost',
          `the ledger ${file} is ${existed ? 'empty' : 'missing'}, but ${dir} holds ${sidecars.length} backup${sidecars.length === 1 ? '' : 's'} (.meta.json sidecars, e.g. ${sidecars[0]})`,
          'run `hybrid-backup ledger-rebuild` to re-create the ledger from the sidecars (each file is re-hashed); nothing was changed',
        );
      }
    }
    try {
      db.pragma('journal_mode = WAL');
      // the write-ahead log is cut back after each checkpoint: on a small or full disk it must not
      // keep the space of a burst of writes
      db.pragma('journal_size_limit = 1048576');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 15000');
      db.pragma('foreign_keys = ON');
    } catch (e) {
      db.close();
      throw openError(file, dir, e);
    }
    try {
      return new Ledger(file, db);
    } catch (e) {
      db.close();
      throw isStorageFailure(e) ? storageError(file, dir, e) : e;
    }
  }

  /** Set by {@link open} with `recover` when an unreadable ledger was moved aside: where it went. */
  movedAside?: string;
  /** Set by {@link openReadOnlyCopy}: why this is a read-only copy, and what it may not show. */
  readOnlyCopy?: string;

  /**
   * A read-only, in-memory copy of the ledger's main file, for looking when the ledger cannot be
   * opened for writing (its disk is full): enough for the monitor to say what is wrong. Changes
   * still in the write-ahead log are not in it. Every write throws (SQLITE_READONLY), which the
   * run bookkeeping treats like a full disk.
   * @throws HbError `ledger-unavailable` when even that cannot be read
   */
  static openReadOnlyCopy(dir: string, why: string): Ledger {
    const file = path.join(dir, LEDGER_FILE);
    let db: Database.Database;
    try {
      const bytes = readFileSync(file);
      // The header says WAL (bytes 18-19 = 2); an in-memory copy has no log to read: say "rollback".
      if (bytes.length >= 100 && bytes[18] === 2) bytes[18] = bytes[19] = 1;
      db = new Database(bytes, { readonly: true });
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    } catch (e) {
      throw new HbError('ledger-unavailable', `cannot read even a copy of the ledger ${file}: ${(e as Error).message}`, 'check the disk and the file', { cause: e });
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      db.close();
      throw new HbError('ledger-unavailable', `cannot use a read-only copy of the ledger ${file}: its schema (${version}) is not this program's (${MIGRATIONS.length})`, 'free disk space so the ledger can be opened and migrated');
    }
    const l = new Ledger(file, db);
    l.readOnlyCopy = `${why}; read from a copy of ${file} (the newest changes may be missing)`;
    return l;
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new HbError(
        'ledger-too-new',
        `ledger ${this.file} has schema version ${version}, newer than this hybrid-backup knows (${MIGRATIONS.length})`,
        'upgrade hybrid-backup; never downgrade it over a newer ledger',
      );
    }
    if (version === MIGRATIONS.length) return;
    const apply = this.db.transaction(() => {
      // Re-read inside the write transaction: another process may have migrated meanwhile.
      const v = this.db.pragma('user_version', { simple: true }) as number;
      for (let i = v; i < MIGRATIONS.length; i++) {
        this.db.exec(MIGRATIONS[i]!);
        this.db.pragma(`user_version = ${i + 1}`);
      }
      // A rebuilt table must leave every reference whole.
      const broken = this.db.pragma('foreign_key_check') as unknown[];
      if (broken.length) throw new Error(`the migration left ${broken.length} broken references`);
    });
    // Rebuilding a table (SQLite's way to change a constraint) drops the old one: with foreign
    // keys on, that would cascade into the rows that reference it. Off only while migrating
    // (the pragma is a no-op inside a transaction, so it is set around it).
    this.db.pragma('foreign_keys = OFF');
    try {
      apply.immediate();
    } finally {
      this.db.pragma('foreign_keys = ON');
    }
  }

  /** Closes runs whose process died; deletes their partial files and unrecorded outputs. */
  private recoverAbandoned(): RecoveredRun[] {
    const out: RecoveredRun[] = [];
    const running = this.db.prepare(`SELECT * FROM runs WHERE status = 'running'`).all() as RunRow[];
    for (const r of running) {
      if (isAlive({ pid: r.pid, start: r.pid_start, host: r.host })) continue;
      const removed: string[] = [];
      for (const f of [r.partial_path]) {
        if (!f) continue;
        try {
          rmSync(f, { force: false });
          removed.push(f);
        } catch {
          // already gone
        }
      }
      // A final file renamed into place but never recorded was never confirmed to anyone.
      if (r.final_path && r.backup_id === null) {
        for (const f of [r.final_path, `${r.final_path}.meta.json`]) {
          try {
            rmSync(f, { force: false });
            removed.push(f);
          } catch {
            // not there
          }
        }
      }
      const message = `process ${r.pid ?? '?'} stopped before the ${r.job} run finished`;
      this.db.transaction(() => {
        const changed = this.db
          .prepare(`UPDATE runs SET status='interrupted', finished_at=?, error_code='interrupted', error_message=? WHERE id=? AND status='running'`)
          .run(now(), message, r.id).changes;
        if (changed === 0) return; // another process recovered it first
        const d = r.details ? (JSON.parse(r.details) as Record<string, unknown>) : {};
        if (r.job === 'backup' && r.backup_id === null && typeof d.kind === 'string') {
          const id = this.insertBackupRow({
            runId: r.id,
            kind: d.kind as BackupKind,
            description: (d.description as string | null) ?? null,
            file: r.final_path ?? (d.file as string) ?? '',
            bytes: 0,
            sha256: null,
            compression: (d.compression as Compression) ?? 'none',
            profile: (d.profile as DumpProfile) ?? 'full',
            status: 'interrupted',
            createdAt: r.started_at,
            finishedAt: now(),
            durationMs: null,
            database: null,
            source: null,
            sourceSystemId: null,
            serverVersion: null,
            pgDumpVersion: null,
            tables: null,
            error: { code: 'interrupted', message },
          });
          this.db.prepare('UPDATE runs SET backup_id=? WHERE id=?').run(id, r.id);
        }
      })();
      out.push({ runId: r.id, job: r.job, pid: r.pid, removed });
    }
    // Locks held, and places in line taken, by dead processes are released too.
    for (const l of this.db.prepare('SELECT * FROM locks').all() as Array<{ name: string; pid: number; pid_start: string | null; host: string }>) {
      if (!isAlive({ pid: l.pid, start: l.pid_start, host: l.host })) this.db.prepare('DELETE FROM locks WHERE name=? AND pid=?').run(l.name, l.pid);
    }
    for (const w of this.db.prepare('SELECT * FROM lock_waiters').all() as Array<{ id: number; pid: number; pid_start: string | null; host: string }>) {
      if (!isAlive({ pid: w.pid, start: w.pid_start, host: w.host })) this.db.prepare('DELETE FROM lock_waiters WHERE id=?').run(w.id);
    }
    return out;
  }

  // ---- runs -------------------------------------------------------------------------------

  /**
   * Records a run as started.
   * @throws HbError `disk-full` (or `ledger-unavailable`) when the ledger cannot be written
   */
  startRun(job: JobName, trigger: RunTrigger, details?: Record<string, unknown>): Run {
    this.flushPending();
    const me = selfIdentity();
    const startedAt = now();
    try {
      const info = this.db
        .prepare(`INSERT INTO runs (job, trigger, status, started_at, pid, pid_start, host, details) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)`)
        .run(job, trigger, startedAt, me.pid, me.start, me.host, details ? JSON.stringify(redactDetails(details)) : null);
      return this.getRun(Number(info.lastInsertRowid))!;
    } catch (e) {
      throw isStorageFailure(e) ? storageError(this.file, path.dirname(this.file), e) : e;
    }
  }

  /**
   * Records a run that failed before it could record its start. Never throws for a full disk:
   * the outcome is held (see {@link pendingRuns}) and written as soon as the ledger takes it.
   */
  recordFailedRun(job: string, trigger: RunTrigger, startedAt: string, error: { code: string; message: string }): Run {
    const finishedAt = now();
    try {
      const me = selfIdentity();
      const info = this.db
        .prepare(`INSERT INTO runs (job, trigger, status, started_at, finished_at, pid, pid_start, host, error_code, error_message) VALUES (?, ?, 'failed', ?, ?, ?, ?, ?, ?, ?)`)
        .run(job, trigger, startedAt, finishedAt, me.pid, me.start, me.host, error.code, redact(error.message));
      const run = this.getRun(Number(info.lastInsertRowid))!;
      this.emitFinished(run);
      return run;
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
      const run: Run = { id: this.nextPendingId--, job, trigger, status: 'failed', startedAt, finishedAt, error: { code: error.code, message: redact(error.message) } };
      this.pending.push({ run, insert: true });
      this.emitFinished(run);
      return run;
    }
  }

  /** Run outcomes not yet in the ledger because it could not be written, oldest first. */
  pendingRuns(): Run[] {
    return this.pending.map((p) => p.run);
  }

  /** Writes held run outcomes; returns how many are still held. Never throws. */
  flushPending(): number {
    while (this.pending.length) {
      const p = this.pending[0]!;
      const r = p.run;
      try {
        if (p.insert) {
          const me = selfIdentity();
          this.db
            .prepare(`INSERT INTO runs (job, trigger, status, started_at, finished_at, pid, pid_start, host, error_code, error_message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(r.job, r.trigger, r.status, r.startedAt, r.finishedAt, me.pid, me.start, me.host, r.error?.code ?? null, r.error?.message ?? null);
        } else {
          this.writeFinish(r.id, r.status as Exclude<RunStatus, 'running'>, r.finishedAt!, r.error ?? null, p.details);
        }
      } catch {
        return this.pending.length;
      }
      this.pending.shift();
    }
    return 0;
  }

  private writeFinish(runId: number, status: Exclude<RunStatus, 'running'>, finishedAt: string, error: { code: string; message: string } | null, details?: Record<string, unknown>): void {
    this.db.transaction(() => {
      if (details) this.mergeRunDetails(runId, details);
      this.db.prepare(`UPDATE runs SET status=?, finished_at=?, error_code=?, error_message=? WHERE id=?`).run(status, finishedAt, error?.code ?? null, error ? redact(error.message) : null, runId);
    })();
  }

  /** Records the files a run is writing, so a crash can be cleaned up. */
  setRunFiles(runId: number, files: { partialPath?: string | null; finalPath?: string | null }): void {
    this.db
      .prepare('UPDATE runs SET partial_path = COALESCE(?, partial_path), final_path = COALESCE(?, final_path) WHERE id = ?')
      .run(files.partialPath ?? null, files.finalPath ?? null, runId);
  }

  mergeRunDetails(runId: number, details: Record<string, unknown>): void {
    const row = this.db.prepare('SELECT details FROM runs WHERE id=?').get(runId) as { details: string | null } | undefined;
    const merged = { ...(row?.details ? (JSON.parse(row.details) as object) : {}), ...redactDetails(details) };
    this.db.prepare('UPDATE runs SET details=? WHERE id=?').run(JSON.stringify(merged), runId);
  }

  /**
   * Records how a run ended, and tells the listeners (alerts, metrics). Never throws for a full
   * disk: the outcome is held, seen by {@link lastRun} and {@link pendingRuns}, still reaches the
   * listeners, and is written as soon as the ledger takes it ({@link flushPending}).
   */
  finishRun(runId: number, status: Exclude<RunStatus, 'running'>, error?: { code: string; message: string } | null, details?: Record<string, unknown>): Run {
    const finishedAt = now();
    try {
      this.writeFinish(runId, status, finishedAt, error ?? null, details);
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
      const started = this.getRun(runId);
      const run: Run = { id: runId, job: started?.job ?? 'unknown', trigger: started?.trigger ?? 'cli', status, startedAt: started?.startedAt ?? finishedAt, finishedAt, ...(error ? { error: { code: error.code, message: redact(error.message) } } : {}) };
      this.pending.push({ run, insert: false, details });
      this.emitFinished(run);
      return run;
    }
    const run = this.getRun(runId)!;
    this.emitFinished(run);
    return run;
  }

  /** Calls `fn` with every run this process finishes (for alerts and metrics). */
  onRunFinished(fn: (run: Run) => void): void {
    this.finishedListeners.push(fn);
  }

  private emitFinished(run: Run): void {
    for (const fn of this.finishedListeners) {
      try {
        fn(run);
      } catch {
        // a listener's failure is not the run's
      }
    }
  }

  getRun(id: number): Run | undefined {
    const r = this.db.prepare('SELECT * FROM runs WHERE id=?').get(id) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  listRuns(filter: { since?: string; job?: string; limit?: number } = {}): Run[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.since) {
      where.push('started_at >= ?');
      args.push(filter.since);
    }
    if (filter.job) {
      where.push('job = ?');
      args.push(filter.job);
    }
    const sql = `SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, filter.limit ?? 1000) as RunRow[]).map(toRun);
  }

  // ---- backups ----------------------------------------------------------------------------

  private insertBackupRow(b: NewBackup): number {
    const info = this.db
      .prepare(
        `INSERT INTO backups (run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, finished_at,
           duration_ms, database, source, source_system_id, server_version, pg_dump_version, table_count, row_count, error_code, error_message)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
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
      const ins = this.db.prepare('INSERT INTO backup_tables (backup_id, table_name, rows, crc32, data_bytes, copy_columns) VALUES (?, ?, ?, ?, ?, ?)');
      const digests = b.evidence?.digests ?? {};
      for (const [t, n] of Object.entries(b.tables)) {
        const d = digests[t];
        ins.run(id, t, n, d?.crc32 ?? null, d?.bytes ?? null, d?.columns ?? null);
      }
    }
    if (b.evidence) {
      const e = b.evidence;
      this.db
        .prepare('INSERT INTO backup_evidence (backup_id, fingerprint, session, roles, extensions, sequences, supautils_sql) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(id, e.fingerprint ? JSON.stringify(e.fingerprint) : null, e.session ? JSON.stringify(e.session) : null, JSON.stringify(e.roles), JSON.stringify(e.extensions), JSON.stringify(e.sequences ?? {}), e.supautilsSql ?? null);
    }
    if (b.storage) this.writeStorageCapture(id, b.storage, b.finishedAt ?? now());
    return id;
  }

  /**
   * Records a backup attempt and closes its run, in one transaction: the run is `ok` when the
   * backup is, `failed` otherwise.
   */
  recordBackup(b: NewBackup): Backup {
    const id = this.db.transaction(() => {
      const id = this.insertBackupRow(b);
      if (b.runId !== null) {
        const runStatus: RunStatus = b.status === 'ok' ? 'ok' : b.status === 'interrupted' ? 'interrupted' : 'failed';
        this.db
          .prepare(`UPDATE runs SET status=?, finished_at=?, error_code=?, error_message=?, backup_id=? WHERE id=?`)
          .run(runStatus, b.finishedAt ?? now(), b.error?.code ?? null, b.error ? redact(b.error.message) : null, id, b.runId);
      }
      return id;
    })();
    if (b.runId !== null) this.emitFinished(this.getRun(b.runId)!);
    return this.getBackup(id)!;
  }

  /** Adds a backup found on disk by `ledger-rebuild` (no run produced it here). */
  addRebuiltBackup(b: Omit<NewBackup, 'runId'>): Backup {
    const id = this.db.transaction(() => this.insertBackupRow({ ...b, runId: null }))();
    return this.getBackup(id)!;
  }

  private writeStorageCapture(backupId: number, c: NewStorageCapture, at: string): void {
    this.db
      .prepare(
        `INSERT INTO storage_captures (backup_id, complete, objects, bytes, files, missing, rows_without_files, files_without_rows, manifest_file, manifest_sha256, summary, error_code, error, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (backup_id) DO UPDATE SET complete=excluded.complete, objects=excluded.objects, bytes=excluded.bytes, files=excluded.files, missing=excluded.missing,
           rows_without_files=excluded.rows_without_files, files_without_rows=excluded.files_without_rows, manifest_file=excluded.manifest_file,
           manifest_sha256=excluded.manifest_sha256, summary=excluded.summary, error_code=excluded.error_code, error=excluded.error, at=excluded.at`,
      )
      .run(
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
    return toStorage(this.db.prepare('SELECT * FROM storage_captures WHERE backup_id = ?').get(backupId) as StorageRow | undefined);
  }

  /** The backup whose file this is, or undefined. */
  backupByFile(file: string): Backup | undefined {
    const r = this.db.prepare('SELECT * FROM backups WHERE file = ? ORDER BY id DESC LIMIT 1').get(file) as BackupRow | undefined;
    return r ? this.toBackup(r) : undefined;
  }

  /** Whether a backup row already names this file. */
  hasBackupFile(file: string): boolean {
    return this.db.prepare('SELECT 1 FROM backups WHERE file = ? LIMIT 1').pluck().get(file) !== undefined;
  }

  getBackup(id: number): Backup | undefined {
    const r = this.db.prepare('SELECT * FROM backups WHERE id=?').get(id) as BackupRow | undefined;
    return r ? this.toBackup(r) : undefined;
  }

  backupSource(id: number): BackupSource | undefined {
    const r = this.db.prepare('SELECT source, source_system_id FROM backups WHERE id=?').get(id) as { source: string | null; source_system_id: string | null } | undefined;
    return r ? { source: r.source, sourceSystemId: r.source_system_id } : undefined;
  }

  /** The newest backup in one of `statuses`. */
  latestBackup(statuses: readonly BackupStatus[] = ['ok']): Backup | undefined {
    const r = this.db
      .prepare(`SELECT * FROM backups WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY created_at DESC, id DESC LIMIT 1`)
      .get(...statuses) as BackupRow | undefined;
    return r ? this.toBackup(r) : undefined;
  }

  /** Backups, newest first. */
  listBackups(filter: BackupFilter & { limit?: number } = {}): Backup[] {
    const { where, args } = backupWhere(filter);
    const limit = filter.limit ? ' LIMIT ?' : '';
    if (filter.limit) args.push(filter.limit);
    return (this.db.prepare(`SELECT * FROM backups ${where} ORDER BY created_at DESC, id DESC${limit}`).all(...args) as BackupRow[]).map((r) => this.toBackup(r));
  }

  /**
   * The same backups as {@link listBackups}, as a JSON array built by SQLite: at 10,000 backups
   * this is ~8× faster than building objects and serialising them, which is what lets the
   * service answer `list --json` quickly. The answer is cached until the ledger changes (in this
   * connection or any other). Its objects equal `listBackups`' (the tests hold them to it).
   */
  listBackupsJson(filter: BackupFilter & { limit?: number } = {}): string {
    return this.listBackupsRaw(filter).toString('utf8');
  }

  /**
   * {@link listBackupsJson} as the service sends it: every backup (no filter) as the cached UTF-8
   * bytes, so a `list --json` of 10,000 backups costs no serialising at all while nothing changed.
   */
  listBackupsRaw(filter: BackupFilter & { limit?: number } = {}): Buffer {
    if (!filter.statuses && !filter.kind && !filter.limit) return this.allBackupsJson();
    const key = `${JSON.stringify([filter.statuses ?? null, filter.kind ?? null, filter.limit ?? null])}@${this.changeStamp()}`;
    if (this.listCache?.key === key) return this.listCache.bytes;
    const { where, args } = backupWhere(filter);
    const limit = filter.limit ? ' LIMIT ?' : '';
    if (filter.limit) args.push(filter.limit);
    const json = this.db.prepare(`SELECT coalesce(json_group_array(json(j)), '[]') FROM (SELECT ${BACKUP_JSON} AS j FROM backups ${where} ORDER BY created_at DESC, id DESC${limit})`).pluck().get(...args) as string;
    const bytes = Buffer.from(json, 'utf8');
    this.listCache = { key, bytes };
    return bytes;
  }

  /**
   * Every backup, newest first, as one JSON array in UTF-8. Each row's JSON is kept; when the
   * ledger has changed, only rows whose `rev` is newer than the newest one seen are read again (a
   * trigger bumps `rev` on every insert and update, whichever process writes), and the order is
   * re-sorted only when a row is new or its time changed. A row count that no longer matches (a
   * row deleted by hand) rebuilds the whole cache.
   */
  private allBackupsJson(): Buffer {
    const stamp = this.changeStamp();
    if (this.allCache?.stamp === stamp) return this.allCache.bytes;
    const c = this.allCache;
    this.allCache = undefined; // a refresh that throws leaves no half-updated cache behind
    const select = `SELECT id, created_at AS createdAt, rev, ${BACKUP_JSON} AS json FROM backups`;
    type Row = { id: number; createdAt: string; rev: number; json: string };
    const toEntry = (r: Row): CachedBackupJson => ({ id: r.id, createdAt: r.createdAt, json: Buffer.from(r.json, 'utf8') });
    const read = this.db.transaction((): AllBackupsCache => {
      // one read transaction: the count and the rows come from the same snapshot
      const count = this.db.prepare('SELECT count(*) FROM backups').pluck().get() as number;
      let maxRev = c?.maxRev ?? -1;
      let byId = c?.byId ?? new Map<number, CachedBackupJson>();
      let ordered = c?.ordered ?? [];
      let resort = !c;
      for (const r of this.db.prepare(`${select} WHERE rev > ?`).iterate(maxRev) as IterableIterator<Row>) {
        maxRev = Math.max(maxRev, r.rev);
        const known = byId.get(r.id);
        if (known && known.createdAt === r.createdAt) {
          known.json = Buffer.from(r.json, 'utf8');
        } else {
          byId.set(r.id, toEntry(r));
          resort = true;
        }
      }
      if (byId.size !== count) {
        byId = new Map();
        maxRev = -1;
        for (const r of this.db.prepare(select).iterate() as IterableIterator<Row>) {
          maxRev = Math.max(maxRev, r.rev);
          byId.set(r.id, toEntry(r));
        }
        resort = true;
      }
      if (resort) ordered = [...byId.values()].sort((x, y) => (x.createdAt === y.createdAt ? y.id - x.id : x.createdAt < y.createdAt ? 1 : -1));
      const pieces: Buffer[] = [OPEN_BRACKET];
      ordered.forEach((e, i) => {
        if (i > 0) pieces.push(COMMA);
        pieces.push(e.json);
      });
      pieces.push(CLOSE_BRACKET);
      // the stamp from before the read: a commit in between only costs one more (empty) refresh
      return { stamp, maxRev, byId, ordered, bytes: Buffer.concat(pieces) };
    });
    this.allCache = read();
    return this.allCache.bytes;
  }

  /** Changes whenever anything commits to the ledger, from this connection or another. */
  private changeStamp(): string {
    const dv = this.db.pragma('data_version', { simple: true }) as number;
    const own = this.db.prepare('SELECT total_changes()').pluck().get() as number;
    return `${dv}.${own}`;
  }

  countBackups(filter: BackupFilter = {}): number {
    const { where, args } = backupWhere(filter);
    return (this.db.prepare(`SELECT count(*) AS n FROM backups ${where}`).get(...args) as { n: number }).n;
  }

  /** What the backup recorded for its drill besides row counts; null for backups taken before it was recorded. */
  evidence(backupId: number): BackupEvidence | null {
    const rows = this.db.prepare('SELECT table_name, crc32, data_bytes, copy_columns FROM backup_tables WHERE backup_id=? AND crc32 IS NOT NULL').all(backupId) as Array<{ table_name: string; crc32: number; data_bytes: number; copy_columns: string }>;
    const e = this.db.prepare('SELECT fingerprint, session, roles, extensions, sequences, supautils_sql FROM backup_evidence WHERE backup_id=?').get(backupId) as
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
    const rows = this.db.prepare('SELECT table_name, rows FROM backup_tables WHERE backup_id=? ORDER BY table_name').all(backupId) as Array<{ table_name: string; rows: number }>;
    return Object.fromEntries(rows.map((r) => [r.table_name, r.rows]));
  }

  /**
   * What a check of the file found: `corrupt` (it does not match), `missing` (it is gone), or `ok`
   * again. Only a backup that should have a file (ok, corrupt or missing) changes; a pruned or
   * failed one keeps its status. True when the status changed.
   */
  setIntegrity(id: number, status: 'ok' | 'corrupt' | 'missing'): boolean {
    return this.db.prepare(`UPDATE backups SET status=? WHERE id=? AND status IN ('ok','corrupt','missing') AND status != ?`).run(status, id, status).changes === 1;
  }

  markChecked(id: number, at = now()): void {
    this.db.prepare('UPDATE backups SET checked_at=? WHERE id=?').run(at, id);
  }

  /** Marks an ok, unpinned backup pruned; false when it no longer is one (pinned or checked meanwhile). */
  markPruned(id: number, at = now()): boolean {
    return this.db.prepare(`UPDATE backups SET status='pruned', pruned_at=? WHERE id=? AND status='ok' AND pinned=0`).run(at, id).changes === 1;
  }

  setPinned(id: number, pinned: boolean): void {
    this.db.prepare('UPDATE backups SET pinned=? WHERE id=?').run(pinned ? 1 : 0, id);
  }

  /** The newest finished backup run started by the schedule (or its start-up catch-up), up to `beforeIso`. */
  newestScheduledBackupRun(beforeIso: string): Run | undefined {
    const r = this.db
      .prepare(`SELECT * FROM runs WHERE job='backup' AND trigger IN ('schedule','startup') AND status != 'running' AND started_at <= ? ORDER BY started_at DESC, id DESC LIMIT 1`)
      .get(beforeIso) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  /** The oldest run of a job (for `service`: when the service was first started on this ledger). */
  firstRun(job: string): Run | undefined {
    const r = this.db.prepare('SELECT * FROM runs WHERE job=? ORDER BY started_at ASC, id ASC LIMIT 1').get(job) as RunRow | undefined;
    return r ? toRun(r) : undefined;
  }

  /** The newest run of a job, optionally only with some triggers, or only with a status. */
  lastRun(job: string, triggers?: readonly string[], status?: RunStatus): Run | undefined {
    const where = `${triggers?.length ? ` AND trigger IN (${triggers.map(() => '?').join(',')})` : ''}${status ? ' AND status = ?' : ''}`;
    const args: unknown[] = [job, ...(triggers ?? []), ...(status ? [status] : [])];
    const r = this.db.prepare(`SELECT * FROM runs WHERE job=?${where} ORDER BY started_at DESC, id DESC LIMIT 1`).get(...args) as RunRow | undefined;
    const stored = r ? toRun(r) : undefined;
    // An outcome the disk could not take yet is still the newest word on the job.
    const held = this.pending
      .map((p) => p.run)
      .filter((x) => x.job === job && (!triggers?.length || triggers.includes(x.trigger)) && (!status || x.status === status))
      .pop();
    if (!held) return stored;
    return !stored || held.startedAt >= stored.startedAt || held.id === stored.id ? held : stored;
  }

  markVerified(id: number, at = now()): void {
    this.db.prepare('UPDATE backups SET verified_at=? WHERE id=?').run(at, id);
  }

  // ---- offsite copies ----------------------------------------------------------------------

  private toBackup(r: BackupRow): Backup {
    return toBackup(
      r,
      (this.db.prepare('SELECT * FROM offsite_copies WHERE backup_id = ? ORDER BY target').all(r.id) as CopyRow[]).map(toCopy),
      this.db.prepare('SELECT * FROM storage_captures WHERE backup_id = ?').get(r.id) as StorageRow | undefined,
    );
  }

  /** Records the state of a backup's copy in one target (one row per backup and target). */
  setCopy(backupId: number, target: string, copy: { status: TargetCopy['status']; key: string; location: string; bytes?: number | null; sha256?: string | null; encrypted?: boolean; error?: string | null }): void {
    this.db
      .prepare(
        `INSERT INTO offsite_copies (backup_id, target, key, location, status, bytes, sha256, encrypted, at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (backup_id, target) DO UPDATE SET key=excluded.key, location=excluded.location, status=excluded.status,
           bytes=COALESCE(excluded.bytes, bytes), sha256=COALESCE(excluded.sha256, sha256), encrypted=excluded.encrypted, at=excluded.at, error=excluded.error`,
      )
      .run(backupId, target, copy.key, copy.location, copy.status, copy.bytes ?? null, copy.sha256 ?? null, copy.encrypted ? 1 : 0, now(), copy.error ? redact(copy.error) : null);
  }

  /** A backup's copy in one target, or undefined. */
  copy(backupId: number, target: string): TargetCopy | undefined {
    const r = this.db.prepare('SELECT * FROM offsite_copies WHERE backup_id = ? AND target = ?').get(backupId, target) as CopyRow | undefined;
    return r ? toCopy(r) : undefined;
  }

  /** Ok backups without a good copy in `target` (never uploaded, or the upload failed), newest first. */
  backupsToUpload(target: string): Backup[] {
    return (
      this.db
        .prepare(
          `SELECT * FROM backups b WHERE status = 'ok'
             AND NOT EXISTS (SELECT 1 FROM offsite_copies o WHERE o.backup_id = b.id AND o.target = ? AND o.status IN ('uploaded', 'deleted', 'delete-failed'))
           ORDER BY created_at DESC, id DESC`,
        )
        .all(target) as BackupRow[]
    ).map((r) => this.toBackup(r));
  }

  /** Copies of pruned backups that still have to be deleted, in any target. */
  copiesToDelete(): Array<{ backup: Backup; copy: TargetCopy }> {
    const rows = this.db.prepare(`SELECT o.* FROM offsite_copies o JOIN backups b ON b.id = o.backup_id WHERE b.status = 'pruned' AND o.status IN ('uploaded', 'delete-failed') ORDER BY o.backup_id, o.target`).all() as CopyRow[];
    return rows.map((r) => ({ backup: this.getBackup(r.backup_id)!, copy: toCopy(r) }));
  }

  /** Per target that holds or held copies: its newest good copy, and how many copies are uploaded and failed. */
  copyStats(): Array<{ target: string; newestCreatedAt: string | null; newestBytes: number | null; uploaded: number; failed: number }> {
    return this.db
      .prepare(
        `SELECT o.target,
                max(CASE WHEN o.status = 'uploaded' THEN b.created_at END) AS newestCreatedAt,
                (SELECT o2.bytes FROM offsite_copies o2 JOIN backups b2 ON b2.id = o2.backup_id WHERE o2.target = o.target AND o2.status = 'uploaded' ORDER BY b2.created_at DESC LIMIT 1) AS newestBytes,
                sum(o.status = 'uploaded') AS uploaded, sum(o.status = 'failed') AS failed
         FROM offsite_copies o JOIN backups b ON b.id = o.backup_id GROUP BY o.target ORDER BY o.target`,
      )
      .all() as Array<{ target: string; newestCreatedAt: string | null; newestBytes: number | null; uploaded: number; failed: number }>;
  }

  /** The newest backup with a good copy in `target` and its copy, or undefined. */
  latestCopy(target: string): { backup: Backup; copy: TargetCopy } | undefined {
    const r = this.db
      .prepare(`SELECT o.* FROM offsite_copies o JOIN backups b ON b.id = o.backup_id WHERE o.target = ? AND o.status = 'uploaded' AND b.status IN ('ok', 'corrupt', 'missing') ORDER BY b.created_at DESC, b.id DESC LIMIT 1`)
      .get(target) as CopyRow | undefined;
    return r ? { backup: this.getBackup(r.backup_id)!, copy: toCopy(r) } : undefined;
  }

  // ---- restore drills ----------------------------------------------------------------------

  recordDrill(runId: number, startedAt: string, r: DrillResult): void {
    this.db
      .prepare(
        `INSERT INTO restore_drills (run_id, backup_id, started_at, finished_at, ok, duration_ms, tables, rows_checked, mismatches, scratch_db, amcheck, error_code, error_message, fidelity, source)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(runId, r.backupId, startedAt, now(), r.ok ? 1 : 0, r.durationMs, r.tables, r.rowsChecked, JSON.stringify(r.mismatches), r.scratchDatabase, r.amcheck, r.error?.code ?? null, r.error ? redact(r.error.message) : null, redact(JSON.stringify(r.fidelity)), r.source ?? 'local');
  }

  /** Drills, newest first. */
  listDrills(limit = 100): Array<DrillResult & { startedAt: string; finishedAt: string | null }> {
    const rows = this.db.prepare('SELECT * FROM restore_drills ORDER BY started_at DESC, id DESC LIMIT ?').all(limit) as Array<{
      backup_id: number;
      ok: number;
      tables: number | null;
      rows_checked: number | null;
      duration_ms: number | null;
      mismatches: string | null;
      scratch_db: string | null;
      amcheck: string | null;
      error_code: string | null;
      error_message: string | null;
      started_at: string;
      finished_at: string | null;
      fidelity: string | null;
      source: string | null;
    }>;
    return rows.map((r) => ({
      backupId: r.backup_id,
      ok: r.ok === 1,
      tables: r.tables ?? 0,
      rowsChecked: r.rows_checked ?? 0,
      durationMs: r.duration_ms ?? 0,
      mismatches: r.mismatches ? (JSON.parse(r.mismatches) as DrillResult['mismatches']) : [],
      scratchDatabase: r.scratch_db ?? '',
      amcheck: (r.amcheck as DrillResult['amcheck']) ?? 'off',
      fidelity: r.fidelity ? (JSON.parse(r.fidelity) as DrillResult['fidelity']) : { objects: 0, tablesDigested: 0, differences: [] },
      ...(r.error_code ? { error: { code: r.error_code, message: r.error_message ?? '' } } : {}),
      source: r.source ?? 'local',
      startedAt: r.started_at,
      finishedAt: r.finished_at,
    }));
  }

  /** Scratch databases of finished or abandoned drill runs not known to be dropped. */
  scratchDatabasesToDrop(): Array<{ runId: number; database: string }> {
    const rows = this.db
      .prepare(
        `SELECT id, json_extract(details, '$.scratchDb') AS db FROM runs
          WHERE job = 'restore-drill' AND status != 'running'
            AND json_extract(details, '$.scratchDb') IS NOT NULL AND json_extract(details, '$.scratchDropped') IS NULL
            AND json_extract(details, '$.throwaway') IS NULL`,
      )
      .all() as Array<{ id: number; db: string }>;
    return rows.map((r) => ({ runId: r.id, database: r.db }));
  }

  // ---- the monitor --------------------------------------------------------------------------

  recordMonitor(runId: number | null, doc: MonitorDoc): void {
    this.db.prepare('INSERT INTO monitor_results (run_id, at, status, checks) VALUES (?, ?, ?, ?)').run(runId, doc.at, doc.status, redact(JSON.stringify(doc.checks)));
  }

  /** Monitor results, newest first. */
  listMonitors(limit = 1): MonitorDoc[] {
    const rows = this.db.prepare('SELECT at, status, checks FROM monitor_results ORDER BY at DESC, id DESC LIMIT ?').all(limit) as Array<{ at: string; status: MonitorDoc['status']; checks: string }>;
    return rows.map((r) => ({ at: r.at, status: r.status, checks: JSON.parse(r.checks) as MonitorDoc['checks'] }));
  }

  // ---- the managed layer ------------------------------------------------------------------

  /** Records what a poll saw, or why it failed (`snapshot` null). */
  recordSnapshot(runId: number | null, takenAt: string, snapshot: SupabaseSnapshot | null, error?: { code: string; message: string }): void {
    const s = snapshot;
    const flag = (b: boolean | null | undefined) => (b === null || b === undefined ? null : b ? 1 : 0);
    this.db
      .prepare(
        `INSERT INTO supabase_snapshots (run_id, taken_at, configured, ok, project_ref, project_status, region, pitr_enabled, walg_enabled,
           latest_backup_at, earliest_physical_at, latest_physical_at, failed_backups, error_code, error_message, snapshot)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        runId,
        takenAt,
        s ? flag(s.configured) : 1,
        s ? 1 : 0,
        s?.projectRef ?? null,
        s?.project?.status ?? null,
        s?.region ?? null,
        flag(s?.pitrEnabled),
        flag(s?.walgEnabled),
        s?.latestBackupAt ?? null,
        s?.physical.earliest ?? null,
        s?.physical.latest ?? null,
        s?.failedBackups ?? null,
        error?.code ?? null,
        error ? redact(error.message) : null,
        s ? redact(JSON.stringify(s)) : null,
      );
  }

  /** The newest poll: its snapshot when it succeeded, else its error. */
  latestPoll(): { takenAt: string; snapshot: SupabaseSnapshot | null; error: { code: string; message: string } | null } | undefined {
    const r = this.db.prepare('SELECT taken_at, snapshot, error_code, error_message FROM supabase_snapshots ORDER BY taken_at DESC, id DESC LIMIT 1').get() as
      | { taken_at: string; snapshot: string | null; error_code: string | null; error_message: string | null }
      | undefined;
    if (!r) return undefined;
    return {
      takenAt: r.taken_at,
      snapshot: r.snapshot ? (JSON.parse(r.snapshot) as SupabaseSnapshot) : null,
      error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    };
  }

  /** The newest successful snapshot of a configured project. */
  latestSnapshot(): SupabaseSnapshot | undefined {
    const r = this.db.prepare('SELECT snapshot FROM supabase_snapshots WHERE ok = 1 AND configured = 1 ORDER BY taken_at DESC, id DESC LIMIT 1').get() as { snapshot: string } | undefined;
    return r ? (JSON.parse(r.snapshot) as SupabaseSnapshot) : undefined;
  }

  /** How many runs of a job (optionally with a status) started since `sinceIso`. */
  countRuns(job: string, sinceIso: string, status?: RunStatus): number {
    const args: unknown[] = status ? [job, sinceIso, status] : [job, sinceIso];
    return (this.db.prepare(`SELECT count(*) AS n FROM runs WHERE job = ? AND started_at >= ?${status ? ' AND status = ?' : ''}`).get(...args) as { n: number }).n;
  }

  // ---- the backup lock --------------------------------------------------------------------

  /**
   * Takes the named lock for this process if it is free or its holder is dead. Atomic across
   * processes (an IMMEDIATE transaction). Returns null on success, else the live holder.
   */
  tryLock(name: string, runId: number | null, purpose: string, ticket?: number): LockHolder | null {
    const me = selfIdentity();
    const take = this.db.transaction((): LockHolder | null => {
      if (ticket !== undefined) {
        // First come, first served across processes: a live waiter that asked earlier goes first.
        const ahead = this.db.prepare('SELECT * FROM lock_waiters WHERE name=? AND id<? ORDER BY id').all(name, ticket) as Array<{
          id: number;
          run_id: number | null;
          pid: number;
          pid_start: string | null;
          host: string;
          since: string;
          purpose: string | null;
        }>;
        for (const w of ahead) {
          if (isAlive({ pid: w.pid, start: w.pid_start, host: w.host })) return { runId: w.run_id, pid: w.pid, host: w.host, acquiredAt: w.since, purpose: `${w.purpose ?? 'another backup'}, which asked earlier`, queued: true };
          this.db.prepare('DELETE FROM lock_waiters WHERE id=?').run(w.id);
        }
      }
      const cur = this.db.prepare('SELECT * FROM locks WHERE name=?').get(name) as
        | { run_id: number | null; pid: number; pid_start: string | null; host: string; acquired_at: string; purpose: string | null }
        | undefined;
      if (cur && !(cur.pid === me.pid && cur.host === me.host) && isAlive({ pid: cur.pid, start: cur.pid_start, host: cur.host })) {
        return { runId: cur.run_id, pid: cur.pid, host: cur.host, acquiredAt: cur.acquired_at, purpose: cur.purpose };
      }
      this.db
        .prepare('INSERT OR REPLACE INTO locks (name, run_id, pid, pid_start, host, acquired_at, purpose) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(name, runId, me.pid, me.start, me.host, now(), purpose);
      if (ticket !== undefined) this.db.prepare('DELETE FROM lock_waiters WHERE id=?').run(ticket);
      return null;
    });
    return take.immediate();
  }

  /** Takes a place in the queue for a lock; the ticket orders {@link tryLock} across processes. */
  queueForLock(name: string, runId: number | null, purpose: string): number {
    const me = selfIdentity();
    const info = this.db.prepare('INSERT INTO lock_waiters (name, run_id, pid, pid_start, host, since, purpose) VALUES (?, ?, ?, ?, ?, ?, ?)').run(name, runId, me.pid, me.start, me.host, now(), purpose);
    return Number(info.lastInsertRowid);
  }

  /** Leaves the queue (the wait was given up). Never throws. */
  leaveQueue(ticket: number): void {
    try {
      this.db.prepare('DELETE FROM lock_waiters WHERE id=?').run(ticket);
    } catch {
      // the next waiter finds this process gone, or the ticket dropped at its next open
    }
  }

  /**
   * Releases this process's lock. Never throws for a full disk: the row then stays, naming this
   * live process, which takes it again at its next backup (and another process once it is gone).
   */
  unlock(name: string): void {
    const me = selfIdentity();
    try {
      this.db.prepare('DELETE FROM locks WHERE name=? AND pid=? AND host=?').run(name, me.pid, me.host);
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

interface PendingRun {
  run: Run;
  /** true: the run was never recorded (insert it); false: it was started, finish it. */
  insert: boolean;
  details?: Record<string, unknown>;
}

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

function openError(file: string, dir: string, e: unknown): HbError {
  const code = (e as { code?: string }).code ?? '';
  const free = freeOn(dir);
  if ((free !== null && free < 1024 * 1024) || /FULL|ENOSPC/.test(code)) return storageError(file, dir, e);
  if (code === 'SQLITE_CANTOPEN' || code === 'EACCES' || /READONLY/.test(code)) {
    return new HbError('ledger-unavailable', `cannot open ledger ${file}: ${(e as Error).message}`, 'check that the backup directory exists and is writable by this user', { cause: e });
  }
  return new HbError('ledger-unavailable', `cannot open ledger ${file}: ${(e as Error).message}`, 'a disk I/O error: check the disk (dmesg) and the filesystem', { cause: e });
}

/** Names of backup sidecars in a directory (what `ledger-rebuild` reads). */
export function sidecarNames(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.meta.json') && !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}

export interface BackupFilter {
  statuses?: readonly BackupStatus[];
  kind?: BackupKind;
}

function backupWhere(filter: BackupFilter): { where: string; args: unknown[] } {
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

function redactDetails(d: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(redact(JSON.stringify(d))) as Record<string, unknown>;
}
