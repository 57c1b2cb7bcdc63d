/**
 * One timeline of both layers over the retention window: local ok backups, Supabase's completed
 * backups, and the PITR window as a continuous range. Where no layer could restore to — two
 * consecutive restore points further apart than `syncCheck.maxGapHours` — is a gap. The recovery
 * point is how many hours of writes would be lost restoring the newest point of any layer now.
 */
import type { Config } from '../config/schema.js';
import type { Backup, OverallStatus, SupabaseSnapshot } from '../domain/types.js';

const HOUR = 3_600_000;

export interface SyncDoc {
  status: OverallStatus;
  at: string;
  window: { from: string; to: string; days: number };
  local: { latest: string | null; count: number; points: string[] };
  supabase: {
    configured: boolean;
    latest: string | null;
    count: number;
    points: string[];
    pitr: { enabled: boolean; earliest: string | null; latest: string | null } | null;
    /** When the snapshot this is based on was taken. */
    asOf: string | null;
  };
  gaps: Array<{ from: string; to: string; hours: number }>;
  /** The threshold: restore points further apart than this are a gap. */
  maxGapHours: number;
  /** Hours since the newest restorable point in any layer; null when there is none. */
  recoveryPointHours: number | null;
  layers: { local: { hours: number | null }; supabase: { hours: number | null } };
  messages: string[];
}

const hours = (ms: number) => Math.round((ms / HOUR) * 10) / 10;

/** Builds the timeline from the ledger's backups and the newest Supabase snapshot. */
export function syncCheck(config: Config, backups: readonly Backup[], snap: SupabaseSnapshot | null, now = Date.now(), lastPoll?: { takenAt: string; error: { code: string; message: string } | null }): SyncDoc {
  const from = now - config.retention.days * 24 * HOUR;
  const inWindow = (iso: string) => Date.parse(iso) >= from && Date.parse(iso) <= now;
  const local = backups
    .filter((b) => b.status === 'ok' && inWindow(b.createdAt))
    .map((b) => b.createdAt)
    .sort();
  const configured = !!snap?.configured;
  const managed = configured ? snap!.backups.filter((b) => b.status === 'COMPLETED' && inWindow(b.insertedAt)).map((b) => b.insertedAt).sort() : [];
  const pitr = configured && snap!.pitrEnabled ? { enabled: true, earliest: snap!.physical.earliest, latest: snap!.physical.latest } : configured ? { enabled: false, earliest: null, latest: null } : null;

  // Restorable intervals: a backup is an instant, the PITR window a range.
  const intervals: Array<[number, number]> = [...local, ...managed].map((t) => [Date.parse(t), Date.parse(t)]);
  if (pitr?.enabled && pitr.earliest && pitr.latest) intervals.push([Math.max(from, Date.parse(pitr.earliest)), Math.min(now, Date.parse(pitr.latest))]);
  intervals.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const iv of intervals) {
    const last = merged[merged.length - 1];
    if (last && iv[0] <= last[1]) last[1] = Math.max(last[1], iv[1]);
    else merged.push([iv[0], iv[1]]);
  }
  const maxGap = config.syncCheck.maxGapHours * HOUR;
  const gaps: SyncDoc['gaps'] = [];
  for (let i = 1; i < merged.length; i++) {
    const d = merged[i]![0] - merged[i - 1]![1];
    if (d > maxGap) gaps.push({ from: new Date(merged[i - 1]![1]).toISOString(), to: new Date(merged[i]![0]).toISOString(), hours: hours(d) });
  }

  const newestLocal = local[local.length - 1] ?? null;
  const newestManaged = [managed[managed.length - 1], pitr?.enabled ? pitr.latest : null].filter((x): x is string => !!x).sort().pop() ?? null;
  const newest = merged.length ? merged[merged.length - 1]![1] : null;
  const rp = newest === null ? null : hours(now - newest);

  const m = config.monitor;
  const messages: string[] = [];
  let status: OverallStatus = 'ok';
  const raise = (s: OverallStatus, msg: string) => {
    messages.push(msg);
    const rank = { ok: 0, unknown: 1, warning: 2, critical: 3 };
    if (rank[s] > rank[status]) status = s;
  };
  if (rp === null) raise('critical', 'no layer has a restore point in the retention window');
  else if (rp > m.localCritHours) raise('critical', `the newest restore point is ${rp} h old`);
  else if (rp > m.localWarnHours) raise('warning', `the newest restore point is ${rp} h old`);
  if (gaps.length) raise('warning', `${gaps.length} gap${gaps.length === 1 ? '' : 's'} longer than ${config.syncCheck.maxGapHours} h where neither layer can restore to`);
  if (config.supabase.enabled) {
    const ago = lastPoll ? `${hours(now - Date.parse(lastPoll.takenAt))} h ago` : '';
    if (!configured && (!config.supabase.projectRef || !config.supabase.accessToken)) {
      raise('warning', 'the managed layer is not in the timeline: it is not configured (set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN, or supabase.enabled: false)');
    } else if (!configured) {
      raise('warning', lastPoll?.error ? `the managed layer is not in the timeline: the last Supabase poll (${ago}) failed: ${lastPoll.error.message}` : 'the managed layer is not in the timeline: Supabase has not been polled yet (npm run backup:supabase-status)');
    } else if (lastPoll?.error) {
      raise('warning', `the last Supabase poll (${ago}) failed: ${lastPoll.error.message}; the managed layer is shown as of the poll ${hours(now - Date.parse(snap!.takenAt))} h ago`);
    }
  }

  return {
    status,
    at: new Date(now).toISOString(),
    window: { from: new Date(from).toISOString(), to: new Date(now).toISOString(), days: config.retention.days },
    local: { latest: newestLocal, count: local.length, points: local },
    supabase: { configured, latest: newestManaged, count: managed.length, points: managed, pitr, asOf: snap?.takenAt ?? null },
    gaps,
    maxGapHours: config.syncCheck.maxGapHours,
    recoveryPointHours: rp,
    layers: { local: { hours: newestLocal ? hours(now - Date.parse(newestLocal)) : null }, supabase: { hours: newestManaged ? hours(now - Date.parse(newestManaged)) : null } },
    messages,
  };
}
