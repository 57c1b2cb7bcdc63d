/**
 * The report's data: everything an operator needs to judge both layers, gathered once and
 * rendered as Markdown, JSON or a self-contained HTML page.
 */
import os from 'node:os';
import type { RunContext } from '../context.js';
import type { Backup, DrillResult, MonitorDoc, Run, SupabaseSnapshot } from '../domain/types.js';
import { evaluate } from '../monitor/monitor.js';
import { type SyncDoc, syncCheck } from '../monitor/sync-check.js';
import { checkPolicy, type PolicyVerdict } from '../supabase/policy.js';

export interface ReportData {
  generatedAt: string;
  host: string;
  timezone: string;
  database: string | null;
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
    database: all.find((b) => b.database)?.database ?? null,
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
