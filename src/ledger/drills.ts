/** Restore drills: what each one restored, compared and found. */
import type { DrillResult } from '../domain/types.js';
import { redact } from '../util/redact.js';
import { now, type Prepared, type Sql } from './sql.js';

interface DrillRow {
  run_id: number | null;
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
}

const SQL = {
  insert: `INSERT INTO restore_drills (run_id, backup_id, started_at, finished_at, ok, duration_ms, tables, rows_checked, mismatches, scratch_db, amcheck, error_code, error_message, fidelity, source)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  list: 'SELECT * FROM restore_drills ORDER BY started_at DESC, id DESC LIMIT ?',
  scratchToDrop: `SELECT id, json_extract(details, '$.scratchDb') AS db FROM runs
                   WHERE job = 'restore-drill' AND status != 'running'
                     AND json_extract(details, '$.scratchDb') IS NOT NULL AND json_extract(details, '$.scratchDropped') IS NULL
                     AND json_extract(details, '$.throwaway') IS NULL`,
};

export class Drills {
  private readonly q: Prepared<typeof SQL>;

  constructor(sql: Sql) {
    this.q = sql.prepared(SQL);
  }

  record(runId: number, startedAt: string, r: DrillResult): void {
    this.q.insert.run(runId, r.backupId, startedAt, now(), r.ok ? 1 : 0, r.durationMs, r.tables, r.rowsChecked, JSON.stringify(r.mismatches), r.scratchDatabase, r.amcheck, r.error?.code ?? null, r.error ? redact(r.error.message) : null, redact(JSON.stringify(r.fidelity)), r.source ?? 'local');
  }

  /** Drills, newest first. */
  list(limit = 100): Array<DrillResult & { startedAt: string; finishedAt: string | null; runId: number | null }> {
    return (this.q.list.all(limit) as DrillRow[]).map((r) => ({
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
      runId: r.run_id ?? null,
    }));
  }

  /** Scratch databases of finished or abandoned drill runs not known to be dropped. */
  scratchDatabasesToDrop(): Array<{ runId: number; database: string }> {
    return (this.q.scratchToDrop.all() as Array<{ id: number; db: string }>).map((r) => ({ runId: r.id, database: r.db }));
  }
}
