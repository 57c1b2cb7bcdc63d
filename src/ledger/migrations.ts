/**
 * The ledger's schema, as an ordered list of migrations. `PRAGMA user_version` holds how many
 * have been applied. Append only: a released migration is never edited.
 */
import type Database from 'better-sqlite3';
import { HbError } from '../domain/errors.js';

/** Migration i (0-based) takes a ledger from schema version i to i + 1. */
export const MIGRATIONS: readonly string[] = [
  // 1: runs, backups, per-table row counts, the cross-process backup lock
  `
  CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    job            TEXT NOT NULL,
    trigger        TEXT NOT NULL CHECK (trigger IN ('schedule','socket','cli','startup')),
    status         TEXT NOT NULL CHECK (status IN ('running','ok','failed','interrupted')),
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    pid            INTEGER,
    pid_start      TEXT,
    host           TEXT,
    error_code     TEXT,
    error_message  TEXT,
    partial_path   TEXT,
    final_path     TEXT,
    backup_id      INTEGER,
    details        TEXT
  );
  CREATE INDEX runs_started ON runs (started_at);
  CREATE INDEX runs_job ON runs (job, started_at);
  CREATE INDEX runs_running ON runs (status) WHERE status = 'running';

  CREATE TABLE backups (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES runs (id),
    kind              TEXT NOT NULL CHECK (kind IN ('daily','manual','pre-change')),
    description       TEXT,
    file              TEXT NOT NULL,
    bytes             INTEGER NOT NULL DEFAULT 0,
    sha256            TEXT,
    compression       TEXT NOT NULL CHECK (compression IN ('none','gzip')),
    profile           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ok','failed','interrupted','pruned','corrupt')),
    created_at        TEXT NOT NULL,
    finished_at       TEXT,
    duration_ms       INTEGER,
    database          TEXT,
    source            TEXT,
    source_system_id  TEXT,
    server_version    TEXT,
    pg_dump_version   TEXT,
    table_count       INTEGER,
    row_count         INTEGER,
    verified_at       TEXT,
    checked_at        TEXT,
    pinned            INTEGER NOT NULL DEFAULT 0,
    pruned_at         TEXT,
    error_code        TEXT,
    error_message     TEXT
  );
  CREATE INDEX backups_created ON backups (created_at);
  CREATE INDEX backups_status ON backups (status, created_at);

  CREATE TABLE backup_tables (
    backup_id   INTEGER NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (backup_id, table_name)
  ) WITHOUT ROWID;

  CREATE TABLE locks (
    name         TEXT PRIMARY KEY,
    run_id       INTEGER,
    pid          INTEGER NOT NULL,
    pid_start    TEXT,
    host         TEXT NOT NULL,
    acquired_at  TEXT NOT NULL,
    purpose      TEXT
  );
  `,

  // 2: what the Supabase poller saw, one row per poll
  `
  CREATE TABLE supabase_snapshots (
    id                  INTEGER PRIMARY KEY,
    run_id              INTEGER REFERENCES runs (id),
    taken_at            TEXT NOT NULL,
    configured          INTEGER NOT NULL,
    ok                  INTEGER NOT NULL,
    project_ref         TEXT,
    project_status      TEXT,
    region              TEXT,
    pitr_enabled        INTEGER,
    walg_enabled        INTEGER,
    latest_backup_at    TEXT,
    earliest_physical_at TEXT,
    latest_physical_at  TEXT,
    failed_backups      INTEGER,
    error_code          TEXT,
    error_message       TEXT,
    snapshot            TEXT
  );
  CREATE INDEX supabase_snapshots_taken ON supabase_snapshots (taken_at);
  `,

  // 3: restore drills, and offsite copies of backups
  `
  CREATE TABLE restore_drills (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER REFERENCES runs (id),
    backup_id     INTEGER REFERENCES backups (id),
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    ok            INTEGER NOT NULL,
    duration_ms   INTEGER,
    tables        INTEGER,
    rows_checked  INTEGER,
    mismatches    TEXT,
    scratch_db    TEXT,
    amcheck       TEXT,
    error_code    TEXT,
    error_message TEXT
  );
  CREATE INDEX restore_drills_started ON restore_drills (started_at);

  ALTER TABLE backups ADD COLUMN offsite_path TEXT;
  ALTER TABLE backups ADD COLUMN offsite_status TEXT;
  ALTER TABLE backups ADD COLUMN offsite_bytes INTEGER;
  ALTER TABLE backups ADD COLUMN offsite_at TEXT;
  ALTER TABLE backups ADD COLUMN offsite_error TEXT;
  `,

  // 4: the hybrid monitor's results
  `
  CREATE TABLE monitor_results (
    id       INTEGER PRIMARY KEY,
    run_id   INTEGER REFERENCES runs (id),
    at       TEXT NOT NULL,
    status   TEXT NOT NULL CHECK (status IN ('ok','warning','critical','unknown')),
    checks   TEXT NOT NULL
  );
  CREATE INDEX monitor_results_at ON monitor_results (at);
  `,

  // 5: a revision per backup row, so a reader can fetch only the rows changed since it last looked
  //    (the service keeps list --json of every backup without re-reading 10,000 rows each time).
  //    The counter lives in its own row: it never goes back, even when the newest row is deleted.
  `
  ALTER TABLE backups ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE backups_rev (n INTEGER NOT NULL);
  INSERT INTO backups_rev (n) SELECT coalesce(max(id), 0) FROM backups;
  UPDATE backups SET rev = id;
  CREATE INDEX backups_by_rev ON backups (rev);
  CREATE TRIGGER backups_rev_insert AFTER INSERT ON backups BEGIN
    UPDATE backups_rev SET n = n + 1;
    UPDATE backups SET rev = (SELECT n FROM backups_rev) WHERE id = NEW.id;
  END;
  CREATE TRIGGER backups_rev_update AFTER UPDATE ON backups WHEN NEW.rev = OLD.rev BEGIN
    UPDATE backups_rev SET n = n + 1;
    UPDATE backups SET rev = (SELECT n FROM backups_rev) WHERE id = NEW.id;
  END;
  `,

  // 6: status 'missing' (the file is gone from disk). SQLite cannot change a CHECK constraint, so
  //    the table is rebuilt (foreign keys are off while migrations run), with its indexes and triggers.
  `
  CREATE TABLE backups_new (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES runs (id),
    kind              TEXT NOT NULL CHECK (kind IN ('daily','manual','pre-change')),
    description       TEXT,
    file              TEXT NOT NULL,
    bytes             INTEGER NOT NULL DEFAULT 0,
    sha256            TEXT,
    compression       TEXT NOT NULL CHECK (compression IN ('none','gzip')),
    profile           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ok','failed','interrupted','pruned','corrupt','missing')),
    created_at        TEXT NOT NULL,
    finished_at       TEXT,
    duration_ms       INTEGER,
    database          TEXT,
    source            TEXT,
    source_system_id  TEXT,
    server_version    TEXT,
    pg_dump_version   TEXT,
    table_count       INTEGER,
    row_count         INTEGER,
    verified_at       TEXT,
    checked_at        TEXT,
    pinned            INTEGER NOT NULL DEFAULT 0,
    pruned_at         TEXT,
    error_code        TEXT,
    error_message     TEXT,
    offsite_path      TEXT,
    offsite_status    TEXT,
    offsite_bytes     INTEGER,
    offsite_at        TEXT,
    offsite_error     TEXT,
    rev               INTEGER NOT NULL DEFAULT 0
  );
  INSERT INTO backups_new (id, run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, finished_at,
    duration_ms, database, source, source_system_id, server_version, pg_dump_version, table_count, row_count, verified_at, checked_at,
    pinned, pruned_at, error_code, error_message, offsite_path, offsite_status, offsite_bytes, offsite_at, offsite_error, rev)
  SELECT id, run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, finished_at,
    duration_ms, database, source, source_system_id, server_version, pg_dump_version, table_count, row_count, verified_at, checked_at,
    pinned, pruned_at, error_code, error_message, offsite_path, offsite_status, offsite_bytes, offsite_at, offsite_error, rev
  FROM backups;
  DROP TABLE backups;
  ALTER TABLE backups_new RENAME TO backups;
  CREATE INDEX backups_created ON backups (created_at);
  CREATE INDEX backups_status ON backups (status, created_at);
  CREATE INDEX backups_by_rev ON backups (rev);
  CREATE TRIGGER backups_rev_insert AFTER INSERT ON backups BEGIN
    UPDATE backups_rev SET n = n + 1;
    UPDATE backups SET rev = (SELECT n FROM backups_rev) WHERE id = NEW.id;
  END;
  CREATE TRIGGER backups_rev_update AFTER UPDATE ON backups WHEN NEW.rev = OLD.rev BEGIN
    UPDATE backups_rev SET n = n + 1;
    UPDATE backups SET rev = (SELECT n FROM backups_rev) WHERE id = NEW.id;
  END;

  -- who waits for a lock, in the order they asked (across processes): the lock goes to the first
  CREATE TABLE lock_waiters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    run_id     INTEGER,
    pid        INTEGER NOT NULL,
    pid_start  TEXT,
    host       TEXT NOT NULL,
    since      TEXT NOT NULL,
    purpose    TEXT
  );
  `,

  // 7: what a restore drill compares besides row counts: each table's data digest (CRC-32 of its
  //    COPY rows, their bytes, the COPY's column list), the catalog fingerprint taken in the
  //    backup's snapshot (with the session settings the digests were taken in), the roles and
  //    extensions a drill server needs first; and what each drill found
  `
  ALTER TABLE backup_tables ADD COLUMN crc32 INTEGER;
  ALTER TABLE backup_tables ADD COLUMN data_bytes INTEGER;
  ALTER TABLE backup_tables ADD COLUMN copy_columns TEXT;
  CREATE TABLE backup_evidence (
    backup_id    INTEGER PRIMARY KEY REFERENCES backups (id) ON DELETE CASCADE,
    fingerprint  TEXT,   -- JSON: the catalog fingerprint
    session      TEXT,   -- JSON: {timeZone, byteaOutput, encoding} the digests were taken in
    roles        TEXT,   -- JSON: the source cluster's role names
    extensions   TEXT,   -- JSON: [{name, schema}] of the source database
    sequences    TEXT,   -- JSON: {name: {value, called}} as the dump sets them
    supautils_sql TEXT   -- what a drill runs as superuser for what supautils allows postgres (event triggers)
  );
  ALTER TABLE restore_drills ADD COLUMN fidelity TEXT;
  `,
  // 8: offsite copies per target (several destinations, encrypted or not). The backups table's
  //    offsite_* columns stay as a summary kept by triggers: the copy in the worst state.
  `
  CREATE TABLE offsite_copies (
    backup_id  INTEGER NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    target     TEXT NOT NULL,      -- the target's configured name ("supabase", "b2-eu", …)
    key        TEXT NOT NULL,      -- the object's key inside the target's bucket and prefix
    location   TEXT NOT NULL,      -- where, for people: bucket/prefix/key or s3://bucket/prefix/key
    status     TEXT NOT NULL CHECK (status IN ('uploaded','failed','deleted','delete-failed')),
    bytes      INTEGER,            -- the stored object's size (the ciphertext's when encrypted)
    sha256     TEXT,               -- the stored object's SHA-256
    encrypted  INTEGER NOT NULL DEFAULT 0,
    at         TEXT,
    error      TEXT,
    PRIMARY KEY (backup_id, target)
  );
  CREATE INDEX offsite_copies_target ON offsite_copies (target, status);
  -- where a drill's file came from: "local", or "offsite:<target>"
  ALTER TABLE restore_drills ADD COLUMN source TEXT;
  INSERT INTO offsite_copies (backup_id, target, key, location, status, bytes, sha256, encrypted, at, error)
    SELECT id, 'supabase', replace(file, rtrim(file, replace(file, '/', '')), ''), coalesce(offsite_path, ''), offsite_status,
           offsite_bytes, CASE WHEN offsite_status IN ('uploaded', 'delete-failed') THEN sha256 END, 0, offsite_at, offsite_error
    FROM backups WHERE offsite_status IS NOT NULL AND offsite_status <> '';
  CREATE TRIGGER offsite_copies_summary_insert AFTER INSERT ON offsite_copies BEGIN
    UPDATE backups SET (offsite_status, offsite_path, offsite_bytes, offsite_at, offsite_error) = (
      SELECT status, location, bytes, at, CASE WHEN error IS NULL THEN NULL ELSE target || ': ' || error END FROM offsite_copies
      WHERE backup_id = NEW.backup_id
      ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'delete-failed' THEN 1 WHEN 'uploaded' THEN 2 ELSE 3 END, target LIMIT 1)
    WHERE id = NEW.backup_id;
  END;
  CREATE TRIGGER offsite_copies_summary_update AFTER UPDATE ON offsite_copies BEGIN
    UPDATE backups SET (offsite_status, offsite_path, offsite_bytes, offsite_at, offsite_error) = (
      SELECT status, location, bytes, at, CASE WHEN error IS NULL THEN NULL ELSE target || ': ' || error END FROM offsite_copies
      WHERE backup_id = NEW.backup_id
      ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'delete-failed' THEN 1 WHEN 'uploaded' THEN 2 ELSE 3 END, target LIMIT 1)
    WHERE id = NEW.backup_id;
  END;
  `,
  // 9: the Storage files each backup captured (issue 15): a summary of its manifest (the manifest
  //    itself is the file <backup>.storage.json beside the backup, its SHA-256 recorded here), or
  //    why the capture failed. A change here bumps the backup's rev (list --json's cache).
  `
  CREATE TABLE storage_captures (
    backup_id           INTEGER PRIMARY KEY REFERENCES backups (id) ON DELETE CASCADE,
    complete            INTEGER NOT NULL DEFAULT 0,  -- 1: every object and every row of the dump has its file
    objects             INTEGER NOT NULL DEFAULT 0,
    bytes               INTEGER NOT NULL DEFAULT 0,
    files               INTEGER NOT NULL DEFAULT 0,  -- distinct SHA-256 in the store
    missing             INTEGER NOT NULL DEFAULT 0,  -- objects or folders listed but not captured
    rows_without_files  INTEGER NOT NULL DEFAULT 0,
    files_without_rows  INTEGER NOT NULL DEFAULT 0,
    manifest_file       TEXT,                        -- absolute path; NULL when the capture failed
    manifest_sha256     TEXT,
    summary             TEXT NOT NULL,               -- one sentence: files complete: … / files INCOMPLETE: …
    error_code          TEXT,
    error               TEXT,                        -- why the capture failed (redacted), NULL otherwise
    at                  TEXT
  );
  CREATE TRIGGER storage_captures_rev_insert AFTER INSERT ON storage_captures BEGIN
    UPDATE backups SET id = id WHERE id = NEW.backup_id;
  END;
  CREATE TRIGGER storage_captures_rev_update AFTER UPDATE ON storage_captures BEGIN
    UPDATE backups SET id = id WHERE id = NEW.backup_id;
  END;
  `,
];

/**
 * Brings the ledger in `file` forward to the newest schema, in one write transaction.
 * @throws HbError `ledger-too-new` for a schema newer than this program knows
 */
export function migrate(db: Database.Database, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new HbError(
      'ledger-too-new',
      `ledger ${file} has schema version ${version}, newer than this hybrid-backup knows (${MIGRATIONS.length})`,
      'upgrade hybrid-backup; never downgrade it over a newer ledger',
    );
  }
  if (version === MIGRATIONS.length) return;
  const apply = db.transaction(() => {
    // Re-read inside the write transaction: another process may have migrated meanwhile.
    const v = db.pragma('user_version', { simple: true }) as number;
    for (let i = v; i < MIGRATIONS.length; i++) {
      db.exec(MIGRATIONS[i]!);
      db.pragma(`user_version = ${i + 1}`);
    }
    // A rebuilt table must leave every reference whole.
    const broken = db.pragma('foreign_key_check') as unknown[];
    if (broken.length) throw new Error(`the migration left ${broken.length} broken references`);
  });
  // Rebuilding a table (SQLite's way to change a constraint) drops the old one: with foreign
  // keys on, that would cascade into the rows that reference it. Off only while migrating
  // (the pragma is a no-op inside a transaction, so it is set around it).
  db.pragma('foreign_keys = OFF');
  try {
    apply.immediate();
  } finally {
    db.pragma('foreign_keys = ON');
  }
}
