/** The hybrid monitor's results, one row per check of everything. */
import type { MonitorDoc } from '../domain/types.js';
import { redact } from '../util/redact.js';
import type { Prepared, Sql } from './sql.js';

const SQL = {
  insert: 'INSERT INTO monitor_results (run_id, at, status, checks) VALUES (?, ?, ?, ?)',
  list: 'SELECT at, status, checks FROM monitor_results ORDER BY at DESC, id DESC LIMIT ?',
};

export class Monitors {
  private readonly q: Prepared<typeof SQL>;

  constructor(sql: Sql) {
    this.q = sql.prepared(SQL);
  }

  record(runId: number | null, doc: MonitorDoc): void {
    this.q.insert.run(runId, doc.at, doc.status, redact(JSON.stringify(doc.checks)));
  }

  /** Monitor results, newest first. */
  list(limit = 1): MonitorDoc[] {
    const rows = this.q.list.all(limit) as Array<{ at: string; status: MonitorDoc['status']; checks: string }>;
    return rows.map((r) => ({ at: r.at, status: r.status, checks: JSON.parse(r.checks) as MonitorDoc['checks'] }));
  }
}
