/**
 * Offsite copies: one row per backup and target (a trigger keeps the backup's `offsite` summary),
 * and what is left to upload and to delete in each target.
 */
import type { Backup, TargetCopy } from '../domain/types.js';
import { redact } from '../util/redact.js';
import { COPY_JSON, SELECT_BACKUPS, toBackup, type BackupRow } from './backup-json.js';
import type { Backups } from './backups.js';
import { now, type Prepared, type Sql } from './sql.js';

/** A copy as read: its backup's id, and the copy as JSON (see backup-json.ts). */
interface CopyRow {
  backupId: number;
  json: string;
}

const toCopy = (r: CopyRow): TargetCopy => JSON.parse(r.json) as TargetCopy;

export interface CopyStats {
  target: string;
  newestCreatedAt: string | null;
  newestBytes: number | null;
  uploaded: number;
  failed: number;
}

const SQL = {
  set: `INSERT INTO offsite_copies (backup_id, target, key, location, status, bytes, sha256, encrypted, at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (backup_id, target) DO UPDATE SET key=excluded.key, location=excluded.location, status=excluded.status,
          bytes=COALESCE(excluded.bytes, bytes), sha256=COALESCE(excluded.sha256, sha256), encrypted=excluded.encrypted, at=excluded.at, error=excluded.error`,
  get: `SELECT o.backup_id AS backupId, ${COPY_JSON} AS json FROM offsite_copies o WHERE o.backup_id = ? AND o.target = ?`,
  // (the backups row is not aliased: its JSON names it `backups`)
  toUpload: `${SELECT_BACKUPS} WHERE status = 'ok'
               AND NOT EXISTS (SELECT 1 FROM offsite_copies o WHERE o.backup_id = backups.id AND o.target = ? AND o.status IN ('uploaded', 'deleted', 'delete-failed'))
             ORDER BY created_at DESC, id DESC`,
  toDelete: `SELECT o.backup_id AS backupId, ${COPY_JSON} AS json FROM offsite_copies o JOIN backups b ON b.id = o.backup_id
             WHERE b.status = 'pruned' AND o.status IN ('uploaded', 'delete-failed') ORDER BY o.backup_id, o.target`,
  stats: `SELECT o.target,
                 max(CASE WHEN o.status = 'uploaded' THEN b.created_at END) AS newestCreatedAt,
                 (SELECT o2.bytes FROM offsite_copies o2 JOIN backups b2 ON b2.id = o2.backup_id WHERE o2.target = o.target AND o2.status = 'uploaded' ORDER BY b2.created_at DESC LIMIT 1) AS newestBytes,
                 sum(o.status = 'uploaded') AS uploaded, sum(o.status = 'failed') AS failed
          FROM offsite_copies o JOIN backups b ON b.id = o.backup_id GROUP BY o.target ORDER BY o.target`,
  latest: `SELECT o.backup_id AS backupId, ${COPY_JSON} AS json FROM offsite_copies o JOIN backups b ON b.id = o.backup_id
           WHERE o.target = ? AND o.status = 'uploaded' AND b.status IN ('ok', 'corrupt', 'missing') ORDER BY b.created_at DESC, b.id DESC LIMIT 1`,
};

export class Copies {
  private readonly q: Prepared<typeof SQL>;

  constructor(
    sql: Sql,
    private readonly backups: Backups,
  ) {
    this.q = sql.prepared(SQL);
  }

  /** Records the state of a backup's copy in one target (one row per backup and target). */
  set(backupId: number, target: string, copy: { status: TargetCopy['status']; key: string; location: string; bytes?: number | null; sha256?: string | null; encrypted?: boolean; error?: string | null }): void {
    this.q.set.run(backupId, target, copy.key, copy.location, copy.status, copy.bytes ?? null, copy.sha256 ?? null, copy.encrypted ? 1 : 0, now(), copy.error ? redact(copy.error) : null);
  }

  /** A backup's copy in one target, or undefined. */
  get(backupId: number, target: string): TargetCopy | undefined {
    const r = this.q.get.get(backupId, target) as CopyRow | undefined;
    return r ? toCopy(r) : undefined;
  }

  /** Ok backups without a good copy in `target` (never uploaded, or the upload failed), newest first. */
  toUpload(target: string): Backup[] {
    return (this.q.toUpload.all(target) as BackupRow[]).map(toBackup);
  }

  /** Copies of pruned backups that still have to be deleted, in any target. */
  toDelete(): Array<{ backup: Backup; copy: TargetCopy }> {
    return (this.q.toDelete.all() as CopyRow[]).map((r) => ({ backup: this.backups.get(r.backupId)!, copy: toCopy(r) }));
  }

  /** Per target that holds or held copies: its newest good copy, and how many copies are uploaded and failed. */
  stats(): CopyStats[] {
    return this.q.stats.all() as CopyStats[];
  }

  /** The newest backup with a good copy in `target` and its copy, or undefined. */
  latest(target: string): { backup: Backup; copy: TargetCopy } | undefined {
    const r = this.q.latest.get(target) as CopyRow | undefined;
    return r ? { backup: this.backups.get(r.backupId)!, copy: toCopy(r) } : undefined;
  }
}
