/**
 * The report's data: everything an operator needs to judge both layers, gathered once and
 * rendered as Markdown, JSON or a self-contained HTML page.
 */
import os from 'node:os';
import type { Config } from '../config/schema.js';
import type { RunContext } from '../context.js';
import type { Backup, DrillResult, MonitorCheck, MonitorDoc, Run, SupabaseSnapshot } from '../domain/types.js';
import { evaluate } from '../monitor/monitor.js';
import { type SyncDoc, syncCheck } from '../monitor/sync-check.js';
import { effective, sourceConnInfo } from '../pg/connection.js';
import { checkPolicy, type PolicyVerdict } from '../supabase/policy.js';
import { formatBytes, formatCount, plural } from '../util/format.js';

export interface ReportData {
  generatedAt: string;
  host: string;
  timezone: string;
  /** The database this installation backs up (DATABASE_URL's, or libpq's variables'); null when none is configured. */
  database: string | null;
  /** The database the newest ok backup was taken from (differs from `database` after DATABASE_URL changed). */
  backupDatabase: string | null;
  window: SyncDoc['window'];
  monitor: MonitorDoc;
  sync: SyncDoc;
  backups: Backup[];
  sizes: Array<{ at: string; bytes: number; kind: Backup['kind']; id: number }>;
  successRate: { ok: number; failed: number; total: number; rate: number | null };
  failures: Array<Pick<Run, 'id' | 'job' | 'trigger' | 'status' | 'startedAt'> & { code: string | null; message: string }>;
  drills: Array<DrillResult & { startedAt: string }>;
  supabase: { snapshot: SupabaseSnapshot | null; pollError: { code: string; message: string } | null; policy: PolicyVerdict };
}

export async function buildReport(ctx: RunContext, now = Date.now()): Promise<ReportData> {
  const all = ctx.ledger.listBackups();
  const poll = ctx.ledger.latestPoll() ?? null;
  const snap = poll?.snapshot?.configured ? poll.snapshot : (ctx.ledger.latestSnapshot() ?? null);
  const sync = syncCheck(ctx.config, all, snap, now, poll ?? undefined);
  const from = sync.window.from;
  const inWindow = all.filter((b) => b.createdAt >= from);
  // Failures and the success rate come from runs alone. Every backup attempt is a `backup` run:
  // the ledger records a backup and closes its run in one transaction, and crash recovery records
  // an interrupted attempt against its run. So a failed backup row always has its failed run, and
  // counting failed backup rows as well would count each failure twice.
  const runs = ctx.ledger.listRuns({ since: from, limit: 100_000 });
  const backupRuns = runs.filter((r) => r.job === 'backup' && r.status !== 'running');
  const ok = backupRuns.filter((r) => r.status === 'ok').length;
  return {
    generatedAt: new Date(now).toISOString(),
    host: os.hostname(),
    timezone: ctx.config.timezone,
    database: configuredDatabase(ctx.config),
    backupDatabase: all.find((b) => b.status === 'ok' && b.database)?.database ?? null,
    window: sync.window,
    monitor: await evaluate(ctx, now),
    sync,
    backups: inWindow,
    sizes: inWindow
      .filter((b) => b.status === 'ok' || b.status === 'pruned')
      .map((b) => ({ at: b.createdAt, bytes: b.bytes, kind: b.kind, id: b.id }))
      .reverse(),
    successRate: { ok, failed: backupRuns.length - ok, total: backupRuns.length, rate: backupRuns.length ? ok / backupRuns.length : null },
    failures: runs
      .filter((r) => r.status === 'failed' || r.status === 'interrupted')
      .map((r) => ({ id: r.id, job: r.job, trigger: r.trigger, status: r.status, startedAt: r.startedAt, code: r.error?.code ?? null, message: r.error?.message ?? '' })),
    drills: ctx.ledger.listDrills(20),
    supabase: { snapshot: snap, pollError: poll?.error ?? null, policy: checkPolicy(ctx.config, snap, poll?.error ?? null, now) },
  };
}

/** The configured database's name, never its password; null when none is configured (or the string is invalid). */
export function configuredDatabase(config: Config): string | null {
  try {
    return effective(sourceConnInfo(config.databaseUrl, config.environment.libpq)).database;
  } catch {
    return null;
  }
}

const RANK: Record<string, number> = { critical: 0, warning: 1, unknown: 2 };

/**
 * The checks that make the verdict (those at the worst status) and the others that are not OK,
 * worst first: the report's header says what the first say and names the rest.
 */
export function attention(r: Pick<ReportData, 'monitor'>): { worst: MonitorCheck[]; others: MonitorCheck[] } {
  const bad = r.monitor.checks.filter((c) => c.status in RANK).sort((a, b) => RANK[a.status]! - RANK[b.status]!);
  const top = bad[0]?.status;
  return { worst: bad.filter((c) => c.status === top), others: bad.filter((c) => c.status !== top) };
}

/** Why a drill failed, in words: its error, the tables whose rows differ, or the catalog's differences. */
export function drillFailure(d: DrillResult): string {
  if (d.error) return d.error.message;
  const rows = d.mismatches.map((m) => `${m.table}: ${m.actual === null ? (m.error ?? 'not restored') : `${formatCount(m.actual)} of ${plural(m.expected, 'row')}`}`);
  return [...rows, ...d.fidelity.differences].join(', ') || 'no reason recorded';
}

/** A backup's Storage files in a table cell: `1,204 (3.1 GB)`, `INCOMPLETE: 1,200 (3.0 GB)`, or `-` for none. */
export function filesCell(b: Backup): string {
  const s = b.storage;
  if (!s) return '-';
  const what = `${formatCount(s.objects)} (${formatBytes(s.bytes)})`;
  return s.complete ? what : `INCOMPLETE: ${what}`;
}
