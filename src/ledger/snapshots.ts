/** The managed layer: what each poll of the Supabase Management API saw, or why it failed. */
import type { SupabaseSnapshot } from '../domain/types.js';
import { redact } from '../util/redact.js';
import type { Prepared, Sql } from './sql.js';

export interface Poll {
  takenAt: string;
  snapshot: SupabaseSnapshot | null;
  error: { code: string; message: string } | null;
}

const SQL = {
  insert: `INSERT INTO supabase_snapshots (run_id, taken_at, configured, ok, project_ref, project_status, region, pitr_enabled, walg_enabled,
             latest_backup_at, earliest_physical_at, latest_physical_at, failed_backups, error_code, error_message, snapshot)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  latestPoll: 'SELECT taken_at, snapshot, error_code, error_message FROM supabase_snapshots ORDER BY taken_at DESC, id DESC LIMIT 1',
  latest: 'SELECT snapshot FROM supabase_snapshots WHERE ok = 1 AND configured = 1 ORDER BY taken_at DESC, id DESC LIMIT 1',
};

const flag = (b: boolean | null | undefined) => (b === null || b === undefined ? null : b ? 1 : 0);

export class Snapshots {
  private readonly q: Prepared<typeof SQL>;

  constructor(sql: Sql) {
    this.q = sql.prepared(SQL);
  }

  /** Records what a poll saw, or why it failed (`snapshot` null). */
  record(runId: number | null, takenAt: string, snapshot: SupabaseSnapshot | null, error?: { code: string; message: string }): void {
    const s = snapshot;
    this.q.insert.run(
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
  latestPoll(): Poll | undefined {
    const r = this.q.latestPoll.get() as { taken_at: string; snapshot: string | null; error_code: string | null; error_message: string | null } | undefined;
    if (!r) return undefined;
    return {
      takenAt: r.taken_at,
      snapshot: r.snapshot ? (JSON.parse(r.snapshot) as SupabaseSnapshot) : null,
      error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    };
  }

  /** The newest successful snapshot of a configured project. */
  latest(): SupabaseSnapshot | undefined {
    const r = this.q.latest.get() as { snapshot: string } | undefined;
    return r ? (JSON.parse(r.snapshot) as SupabaseSnapshot) : undefined;
  }
}
