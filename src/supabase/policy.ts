/**
 * Checking the managed layer against the operator's policy (`supabase.policy`), item by item,
 * each with the dashboard path or API call that fixes it. Pure: takes a snapshot (or the error
 * of the poll that failed), returns the verdict.
 *
 * Supabase facts this encodes: daily backups are kept 7 days on Pro, 14 on Team, up to 30 on
 * Enterprise, and none on Free; point-in-time recovery is an add-on (7, 14 or 28 days) on Pro and
 * above that needs at least the Small compute add-on, and when it is on, daily backups stop.
 */
import type { Config } from '../config/schema.js';
import type { SupabaseSnapshot } from '../domain/types.js';
import { nextRunOf } from '../config/schedule.js';
import { formatTime, plural } from '../util/format.js';

export type ItemStatus = 'met' | 'not-met' | 'advice';

export interface PolicyItem {
  id: string;
  title: string;
  status: ItemStatus;
  detail: string;
  fix?: string;
}

export interface PolicyVerdict {
  met: boolean;
  projectRef: string | null;
  items: PolicyItem[];
}

const HOUR = 3_600_000;
const DASHBOARD = 'https://supabase.com/dashboard/project';

/** Days of PITR a variant id gives (`pitr_7` → 7). */
export function pitrDays(variant: string | null | undefined): number | null {
  const m = /^pitr_(\d+)$/.exec(variant ?? '');
  return m ? Number(m[1]) : null;
}

/** The daily managed backup time (`HH:MM:SS`, UTC) 12 hours from the next local daily backup. */
export function idealScheduleFor(config: Config, now = new Date()): string | null {
  const next = nextRunOf(config, 'backup', now);
  if (!next) return null;
  const t = new Date(next.getTime() + 12 * HOUR);
  const hh = String(t.getUTCHours()).padStart(2, '0');
  const mm = String(t.getUTCMinutes()).padStart(2, '0');
  return `${hh}:${mm}:00`;
}

export function checkPolicy(config: Config, snap: SupabaseSnapshot | null, pollError: { message: string; hint?: string } | null, now = Date.now()): PolicyVerdict {
  const p = config.supabase.policy;
  const ref = config.supabase.projectRef ?? snap?.projectRef ?? '<ref>';
  const items: PolicyItem[] = [];
  const add = (i: PolicyItem) => items.push(i);
  const verdict = (): PolicyVerdict => ({ met: items.every((i) => i.status !== 'not-met'), projectRef: config.supabase.projectRef ?? null, items });

  if (!config.supabase.enabled) {
    add({ id: 'access', title: 'managed layer watched', status: 'not-met', detail: 'supabase.enabled is false', fix: 'set supabase.enabled to true in config/hybrid-backup.json' });
    return verdict();
  }
  if (pollError || !snap || !snap.configured) {
    add({
      id: 'access',
      title: 'Management API access',
      status: 'not-met',
      detail: pollError ? pollError.message : 'not configured: no project ref or no access token',
      fix:
        pollError?.hint ??
        'set SUPABASE_PROJECT_REF (the 20 letters in the dashboard URL) and SUPABASE_ACCESS_TOKEN (supabase.com/dashboard/account/tokens) in the service environment',
    });
    return verdict();
  }
  add({ id: 'access', title: 'Management API access', status: 'met', detail: `token reads project ${snap.projectRef} and its backups` });

  if (p.requireHealthy) {
    const status = snap.project?.status ?? 'UNKNOWN';
    add({
      id: 'project-health',
      title: 'project healthy',
      status: status === 'ACTIVE_HEALTHY' ? 'met' : 'not-met',
      detail: `project status ${status}`,
      fix: status === 'INACTIVE' ? `the project is paused: restore it at ${DASHBOARD}/${ref}` : `check ${DASHBOARD}/${ref} and status.supabase.com`,
    });
  }

  const days = pitrDays(snap.addons?.pitr);
  if (p.requirePitr) {
    add({
      id: 'pitr',
      title: 'point-in-time recovery enabled',
      status: snap.pitrEnabled ? 'met' : 'not-met',
      detail: snap.pitrEnabled ? `PITR on${days ? ` (${days} days)` : ''}` : 'PITR is off: only daily backups, up to 24 hours apart',
      fix: `Dashboard → Project Settings → Add-ons → Point in time recovery (${DASHBOARD}/${ref}/settings/addons); needs the Pro plan or above and at least the Small compute add-on. API: PATCH /v1/projects/${ref}/billing/addons {"addon_type":"pitr","addon_variant":"pitr_7"}`,
    });
    const compute = snap.addons?.compute ?? null;
    const micro = compute === null || compute === 'ci_micro';
    add({
      id: 'pitr-compute',
      title: 'compute size allows PITR',
      status: snap.addons === null ? 'advice' : micro ? 'not-met' : 'met',
      detail: snap.addons === null ? 'compute add-on not readable with this token' : `compute ${compute ?? 'none (Micro)'}`,
      fix: `PITR needs at least Small compute: Dashboard → Project Settings → Compute and Disk (${DASHBOARD}/${ref}/settings/compute-and-disk). API: PATCH /v1/projects/${ref}/billing/addons {"addon_type":"compute_instance","addon_variant":"ci_small"}`,
    });
  }
  if (p.requirePitr || snap.pitrEnabled) {
    const span = snap.physical.earliest && snap.physical.latest ? (Date.parse(snap.physical.latest) - Date.parse(snap.physical.earliest)) / 86_400_000 : null;
    const have = days ?? span;
    add({
      id: 'pitr-days',
      title: `at least ${p.minPitrDays} days of point-in-time recovery`,
      status: !snap.pitrEnabled ? 'not-met' : have === null ? 'advice' : have + 0.01 >= p.minPitrDays ? 'met' : 'not-met',
      detail: days ? `PITR add-on ${snap.addons?.pitr} keeps ${days} days` : span !== null ? `restorable window spans ${span.toFixed(1)} days` : 'PITR window unknown',
      fix: `choose a longer PITR add-on (7, 14 or 28 days): Dashboard → Project Settings → Add-ons (${DASHBOARD}/${ref}/settings/addons). API: PATCH /v1/projects/${ref}/billing/addons {"addon_type":"pitr","addon_variant":"pitr_${[7, 14, 28].find((d) => d >= p.minPitrDays) ?? 28}"}`,
    });
  }

  // The newest point the managed layer can restore to.
  const newest = snap.pitrEnabled ? snap.physical.latest : snap.latestBackupAt;
  const ageH = newest ? (now - Date.parse(newest)) / HOUR : null;
  add({
    id: 'backup-age',
    title: `newest managed restore point under ${p.maxBackupAgeHours} h old`,
    status: ageH !== null && ageH <= p.maxBackupAgeHours ? 'met' : 'not-met',
    detail:
      ageH === null
        ? snap.pitrEnabled
          ? 'no PITR restore point reported'
          : 'no completed managed backup at all'
        : `${snap.pitrEnabled ? 'newest PITR restore point' : 'newest completed daily backup'} is ${ageH.toFixed(1)} h old (${formatTime(newest, config.timezone)})`,
    fix:
      ageH === null && !snap.pitrEnabled
        ? 'the Free plan has no managed backups: upgrade to Pro or above (Dashboard → Organization → Billing)'
        : `check Dashboard → Database → Backups (${DASHBOARD}/${ref}/database/backups/scheduled) and status.supabase.com; contact Supabase support if backups stopped`,
  });
  const newestBackup = snap.backups[0];
  if (newestBackup) {
    add({
      id: 'backup-failed',
      title: 'newest managed backup did not fail',
      status: newestBackup.status === 'FAILED' ? 'not-met' : 'met',
      detail: `newest backup (${formatTime(newestBackup.insertedAt, config.timezone)}) is ${newestBackup.status}; ${snap.failedBackups} failed in the list`,
      fix: `Dashboard → Database → Backups (${DASHBOARD}/${ref}/database/backups/scheduled); contact Supabase support with the failed backup's time`,
    });
  }

  const completed = snap.backups.filter((b) => b.status === 'COMPLETED');
  const oldest = completed[completed.length - 1];
  add({
    id: 'retention',
    title: 'managed backup retention',
    status: 'advice',
    detail: snap.pitrEnabled
      ? `PITR keeps ${days ?? '?'} days; daily backups stop while PITR is on`
      : oldest
        ? `${plural(completed.length, 'completed daily backup')}, the oldest ${((now - Date.parse(oldest.insertedAt)) / 86_400_000).toFixed(1)} days old`
        : 'no completed daily backups',
    fix: 'daily backups are kept 7 days on Pro, 14 on Team, up to 30 on Enterprise (Dashboard → Organization → Billing); the local layer keeps retention.days beyond that',
  });

  if (!snap.pitrEnabled) {
    const ideal = idealScheduleFor(config);
    const current = snap.schedule?.scheduleFor ?? null;
    add({
      id: 'schedule',
      title: 'managed backup 12 h from the local one',
      status: 'advice',
      detail: current
        ? current.slice(0, 5) === ideal?.slice(0, 5)
          ? `daily backup at ${current} UTC, 12 h from the local backup: the two layers are evenly spread`
          : `daily backup at ${current} UTC; ${ideal} UTC would be 12 h from the local backup (${config.schedules.backup} ${config.timezone}) and halve the worst gap between the layers`
        : 'daily backup time not readable',
      fix: current && current.slice(0, 5) !== ideal?.slice(0, 5) ? `run: hybrid-backup supabase-config --apply-schedule (sets ${ideal} UTC; Supabase allows 3 changes a day)` : undefined,
    });
  }
  return verdict();
}
