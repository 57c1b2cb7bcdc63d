/**
 * `list --json` fast: the backups as one JSON array built by SQLite (see backup-json.ts), kept as
 * UTF-8 bytes until the ledger changes. At 10,000 backups this is ~8× faster than building objects
 * and serialising them, and a list asked for again while nothing changed costs nothing.
 */
import { backupWhere, BACKUP_JSON, SELECT_BACKUPS, type BackupFilter, type BackupRow } from './backup-json.js';
import type { Prepared, Sql } from './sql.js';

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

const SQL = {
  dataVersion: { pluck: 'PRAGMA data_version' },
  totalChanges: { pluck: 'SELECT total_changes()' },
  count: { pluck: 'SELECT count(*) FROM backups' },
  all: SELECT_BACKUPS,
  changedSince: `${SELECT_BACKUPS} WHERE rev > ?`,
};

const toEntry = (r: BackupRow): CachedBackupJson => ({ id: r.id, createdAt: r.createdAt, json: Buffer.from(r.json, 'utf8') });

export class BackupJsonList {
  private readonly q: Prepared<typeof SQL>;
  /** Reads the changes since `c` (all of it without one) in one read transaction. */
  private readonly refresh: (stamp: string, c: AllBackupsCache | undefined) => AllBackupsCache;
  /** The last filtered answer, reused while the ledger has not changed. */
  private listCache: { key: string; bytes: Buffer } | undefined;
  /** Every backup's JSON, refreshed row by row from `rev` (see {@link all}). */
  private allCache: AllBackupsCache | undefined;

  constructor(private readonly sql: Sql) {
    this.q = sql.prepared(SQL);
    this.refresh = sql.db.transaction((stamp: string, c: AllBackupsCache | undefined): AllBackupsCache => {
      // one read transaction: the count and the rows come from the same snapshot
      const count = this.q.count.get() as number;
      let maxRev = c?.maxRev ?? -1;
      let byId = c?.byId ?? new Map<number, CachedBackupJson>();
      let ordered = c?.ordered ?? [];
      let resort = !c;
      for (const r of this.q.changedSince.iterate(maxRev) as IterableIterator<BackupRow>) {
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
        for (const r of this.q.all.iterate() as IterableIterator<BackupRow>) {
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
  }

  /**
   * The backups, newest first, as a JSON array in UTF-8: every backup (no filter) from the cache
   * kept row by row, a filtered list from the last answer while nothing changed.
   */
  raw(filter: BackupFilter & { limit?: number } = {}): Buffer {
    if (!filter.statuses && !filter.kind && !filter.limit) return this.all();
    const key = `${JSON.stringify([filter.statuses ?? null, filter.kind ?? null, filter.limit ?? null])}@${this.changeStamp()}`;
    if (this.listCache?.key === key) return this.listCache.bytes;
    const { where, args } = backupWhere(filter);
    const limit = filter.limit ? ' LIMIT ?' : '';
    if (filter.limit) args.push(filter.limit);
    const text = `SELECT coalesce(json_group_array(json(j)), '[]') FROM (SELECT ${BACKUP_JSON} AS j FROM backups ${where} ORDER BY created_at DESC, id DESC${limit})`;
    const bytes = Buffer.from(this.sql.cached({ pluck: text }).get(...args) as string, 'utf8');
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
  private all(): Buffer {
    const stamp = this.changeStamp();
    if (this.allCache?.stamp === stamp) return this.allCache.bytes;
    const c = this.allCache;
    this.allCache = undefined; // a refresh that throws leaves no half-updated cache behind
    this.allCache = this.refresh(stamp, c);
    return this.allCache.bytes;
  }

  /** Changes whenever anything commits to the ledger, from this connection or another. */
  private changeStamp(): string {
    const dv = this.q.dataVersion.get() as number;
    const own = this.q.totalChanges.get() as number;
    return `${dv}.${own}`;
  }
}
