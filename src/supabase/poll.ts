/**
 * Polling the managed layer: what Supabase's own backups look like right now. Every poll is a
 * `supabase-poll` run and a snapshot row in the ledger, and a line in `supabase-backup.log`.
 *
 * Not configured (no project ref or no access token) is a state: the poll records a snapshot
 * with `configured: false` and succeeds. A failed poll is a recorded, logged failure.
 */
import type { Config } from '../config/schema.js';
import type { RunContext } from '../context.js';
import { toHbError } from '../domain/errors.js';
import type { ManagedBackup, SupabaseSnapshot } from '../domain/types.js';
import { formatAge } from '../util/format.js';
import { RunScope } from '../jobs/runs.js';
import { ManagementApi } from './management-api.js';
import { BACKUP_STATUS } from './schemas.js';

/** A client for the configured project, or null when the ref or token is missing. */
export function managementApi(ctx: RunContext, config: Config = ctx.config): ManagementApi | null {
  const { projectRef, accessToken, apiUrl, requestTimeoutSeconds, maxRetries } = config.supabase;
  if (!projectRef || !accessToken) return null;
  const log = ctx.logs.channel('supabase');
  return new ManagementApi({
    baseUrl: apiUrl,
    token: accessToken,
    projectRef,
    timeoutMs: requestTimeoutSeconds * 1000,
    maxRetries,
    limiter: ctx.apiLimiter,
    signal: ctx.signal,
    onRetry: (r) => {
      log.warn(`Management API ${r.path}: ${r.reason}; retry ${r.attempt} in ${(r.waitMs / 1000).toFixed(1)}s`);
      // A person waiting at a terminal sees each retry, not a minute of silence.
      ctx.reporter.notice(`Management API ${r.path}: ${r.reason}; retrying in ${Math.max(1, Math.round(r.waitMs / 1000))} s (attempt ${r.attempt + 1} of ${maxRetries + 1})`);
    },
  });
}

function emptySnapshot(takenAt: string, config: Config): SupabaseSnapshot {
  return {
    takenAt,
    configured: false,
    enabled: config.supabase.enabled,
    projectRef: config.supabase.projectRef ?? null,
    project: null,
    region: null,
    pitrEnabled: null,
    walgEnabled: null,
    backups: [],
    latestBackupAt: null,
    failedBackups: 0,
    physical: { earliest: null, latest: null },
    addons: null,
    schedule: null,
    notes: [],
  };
}

const unixToIso = (n: number | undefined) => (n === undefined ? null : new Date(n * 1000).toISOString());

/** Polls the Management API now and records the result. Throws the recorded failure. */
export async function pollSupabase(ctx: RunContext): Promise<SupabaseSnapshot> {
  const log = ctx.logs.channel('supabase');
  const takenAt = new Date().toISOString();
  const run = RunScope.start(ctx, 'supabase-poll');
  const api = ctx.config.supabase.enabled ? managementApi(ctx) : null;
  if (!api) {
    const snap = emptySnapshot(takenAt, ctx.config);
    const why = !ctx.config.supabase.enabled
      ? 'the managed layer is switched off (supabase.enabled: false)'
      : `not configured: set ${[!ctx.config.supabase.projectRef && 'SUPABASE_PROJECT_REF', !ctx.config.supabase.accessToken && 'SUPABASE_ACCESS_TOKEN'].filter(Boolean).join(' and ')}`;
    snap.notes.push(why);
    ctx.ledger.recordSnapshot(run.id, takenAt, snap);
    run.ok({ configured: false });
    log.info(`Supabase poll: ${why}`, { runId: run.id });
    return snap;
  }
  try {
    const [backups, project] = [await api.listBackups(), await api.getProject()];
    const snap = emptySnapshot(takenAt, ctx.config);
    snap.configured = true;
    snap.project = { name: project.name, status: project.status, region: project.region, postgresVersion: project.database?.version ?? null };
    snap.region = backups.region;
    snap.pitrEnabled = backups.pitr_enabled;
    snap.walgEnabled = backups.walg_enabled;
    snap.backups = backups.backups
      .map((b): ManagedBackup => ({ id: b.id ?? null, status: b.status, insertedAt: new Date(b.inserted_at).toISOString(), physical: b.is_physical_backup }))
      .sort((a, b) => b.insertedAt.localeCompare(a.insertedAt));
    snap.latestBackupAt = snap.backups.find((b) => b.status === BACKUP_STATUS.completed)?.insertedAt ?? null;
    snap.failedBackups = snap.backups.filter((b) => b.status === BACKUP_STATUS.failed).length;
    snap.physical = {
      earliest: unixToIso(backups.physical_backup_data.earliest_physical_backup_date_unix),
      latest: unixToIso(backups.physical_backup_data.latest_physical_backup_date_unix),
    };
    // The rest describes settings; a project can be checked without them.
    try {
      const addons = await api.listAddons();
      const pick = (type: string) => addons.selected_addons.find((a) => a.type === type)?.variant.id ?? null;
      snap.addons = { pitr: pick('pitr'), compute: pick('compute_instance') };
    } catch (e) {
      snap.notes.push(`add-ons not readable: ${toHbError(e).message}`);
    }
    if (!snap.pitrEnabled) {
      try {
        const s = await api.getBackupSchedule();
        snap.schedule = { scheduleFor: s.schedule_for, updatedAt: s.updated_at ?? null };
      } catch (e) {
        snap.notes.push(`backup schedule not readable: ${toHbError(e).message}`);
      }
    }
    ctx.ledger.recordSnapshot(run.id, takenAt, snap);
    run.ok({ configured: true, pitrEnabled: snap.pitrEnabled, latestBackupAt: snap.latestBackupAt });
    log.info(describeSnapshot(snap), { runId: run.id, projectRef: snap.projectRef, status: snap.project.status, pitr: snap.pitrEnabled, backups: snap.backups.length });
    return snap;
  } catch (e) {
    const err = toHbError(e);
    ctx.ledger.recordSnapshot(run.id, takenAt, null, { code: err.code, message: err.message });
    run.fail(err);
    log.error(`Supabase poll failed: ${err.message}${err.hint ? ` (hint: ${err.hint})` : ''}`, { runId: run.id, code: err.code });
    throw err;
  }
}

/** One line for logs. */
export function describeSnapshot(s: SupabaseSnapshot, now = Date.now()): string {
  if (!s.configured) return `managed layer not configured`;
  const parts = [`project ${s.projectRef} ${s.project?.status ?? '?'}`];
  if (s.pitrEnabled) parts.push(`PITR on, restorable ${s.physical.earliest ?? '?'} .. ${s.physical.latest ?? '?'} (newest ${formatAge(s.physical.latest, now)})`);
  else parts.push(`PITR off, newest completed backup ${s.latestBackupAt ? formatAge(s.latestBackupAt, now) : 'none'}`);
  if (s.failedBackups) parts.push(`${s.failedBackups} failed`);
  return parts.join('; ');
}
