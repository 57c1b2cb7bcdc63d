/** `supabase-status`, `supabase-config [--apply-schedule]`, `supabase-restore-pitr --to <time> --confirm <ref>` */
import { z } from 'zod';
import { HbError, toHbError } from '../domain/errors.js';
import type { SupabaseSnapshot } from '../domain/types.js';
import { RunScope } from '../jobs/runs.js';
import { checkPolicy, idealScheduleFor, pitrDays, type PolicyVerdict } from '../supabase/policy.js';
import { formatAge, formatCount, formatTime } from '../util/format.js';
import { defineCommand, type RenderView } from './command.js';

function renderSnapshot(s: SupabaseSnapshot, view: RenderView): string {
  if (!s.configured) {
    // the poll's first note says why (switched off, or which variable is missing): said once
    const [why = 'not configured: set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN', ...more] = s.notes;
    return [`managed layer (Supabase): ${why.replace(/^the managed layer is /, '')}`, ...more.map((n) => `  ${n}`), '  (see README: the managed layer)'].join('\n');
  }
  const t = (iso: string | null) => (iso ? `${formatTime(iso, view.timeZone)} (${formatAge(iso, view.now)})` : '-');
  const lines = [`Supabase project ${s.projectRef} "${s.project?.name ?? ''}" in ${s.region ?? '?'}: ${s.project?.status ?? '?'}${s.project?.postgresVersion ? `, PostgreSQL ${s.project.postgresVersion}` : ''}`];
  if (s.pitrEnabled) {
    const days = pitrDays(s.addons?.pitr);
    lines.push(`  point-in-time recovery  on${days ? ` (${days} days)` : ''}: restorable from ${t(s.physical.earliest)}`);
    lines.push(`                          to ${t(s.physical.latest)}`);
    lines.push('  daily backups           replaced by PITR');
  } else {
    lines.push('  point-in-time recovery  off');
    lines.push(`  newest daily backup     ${t(s.latestBackupAt)}`);
    if (s.schedule) lines.push(`  daily backup time       ${s.schedule.scheduleFor} UTC`);
  }
  const completed = s.backups.filter((b) => b.status === 'COMPLETED').length;
  lines.push(`  backups listed          ${formatCount(s.backups.length)} (${formatCount(completed)} completed, ${formatCount(s.failedBackups)} failed)`);
  for (const b of s.backups.filter((x) => x.status !== 'COMPLETED').slice(0, 5)) lines.push(`    ${b.status.padEnd(9)} ${formatTime(b.insertedAt, view.timeZone)}${b.id !== null ? ` (id ${b.id})` : ''}`);
  for (const n of s.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}

export const supabaseStatusCommand = defineCommand({
  name: 'supabase-status',
  summary: 'poll the Management API now and show the managed layer: PITR and its window, newest backup and its age, failed backups, project health',
  args: z.object({}),
  async run(ctx): Promise<SupabaseSnapshot> {
    const { pollSupabase } = await import('../supabase/poll.js');
    return pollSupabase(ctx);
  },
  render: renderSnapshot,
});

export interface SupabaseConfigDoc extends PolicyVerdict {
  applied?: { scheduleFor: string; previous: string | null } | null;
}

export const supabaseConfigCommand = defineCommand({
  name: 'supabase-config',
  summary: 'check the Supabase project against supabase.policy: each item met or not, with the dashboard path or API call that fixes it; exit 0 only when the policy is met',
  cli: {
    options: [{ flags: '--apply-schedule', description: 'move the daily managed backup to 12 hours from the local daily backup (Supabase allows 3 changes a day)' }],
    toArgs: (_, o) => ({ applySchedule: !!o.applySchedule }),
  },
  args: z.object({ applySchedule: z.boolean().default(false) }),
  async run(ctx, args): Promise<SupabaseConfigDoc> {
    const { pollSupabase } = await import('../supabase/poll.js');
    let snap: SupabaseSnapshot | null = null;
    let pollError: HbError | null = null;
    try {
      snap = await pollSupabase(ctx);
    } catch (e) {
      pollError = toHbError(e);
      if (pollError.code === 'aborted') throw pollError;
    }
    let applied: SupabaseConfigDoc['applied'];
    if (args.applySchedule) {
      applied = await applySchedule(ctx, snap);
      if (applied && snap) snap = { ...snap, schedule: { scheduleFor: applied.scheduleFor, updatedAt: new Date().toISOString() } };
    }
    const verdict = checkPolicy(ctx.config, snap, pollError ? { message: pollError.message, hint: pollError.hint } : null);
    return applied === undefined ? verdict : { ...verdict, applied };
  },
  render(doc) {
    const mark = { met: 'met    ', 'not-met': 'NOT MET', advice: 'advice ' } as const;
    const lines = [`Supabase backup policy for ${doc.projectRef ?? '(no project)'}: ${doc.met ? 'met' : 'NOT met'}`, ''];
    for (const i of doc.items) {
      lines.push(`${mark[i.status]}  ${i.title}: ${i.detail}`);
      if (i.fix && i.status !== 'met') lines.push(`         fix: ${i.fix}`);
    }
    if (doc.applied) lines.push('', `applied: daily backup time set to ${doc.applied.scheduleFor} UTC (was ${doc.applied.previous ?? 'unknown'})`);
    if (doc.applied === null) lines.push('', 'schedule already 12 h from the local backup: nothing changed');
    return lines.join('\n');
  },
  exitCode: (doc) => (doc.met ? 0 : 1),
});

/** Supabase allows 3 changes of the backup time a day; this program counts its own. */
const SCHEDULE_CHANGES_PER_DAY = 3;

async function applySchedule(ctx: Parameters<typeof supabaseConfigCommand.run>[0], snap: SupabaseSnapshot | null): Promise<SupabaseConfigDoc['applied']> {
  const { managementApi } = await import('../supabase/poll.js');
  const api = managementApi(ctx);
  if (!api || !snap?.configured) throw new HbError('supabase-not-configured', 'cannot apply a schedule: the Management API is not configured or not reachable', 'set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN');
  if (snap.pitrEnabled) throw new HbError('usage', 'the project uses point-in-time recovery, which replaces daily backups: there is no daily schedule to move', 'nothing to do');
  const ideal = idealScheduleFor(ctx.config);
  if (!ideal) throw new HbError('usage', 'the local backup schedule has no next run to align with', 'check schedules.backup');
  const current = snap.schedule?.scheduleFor ?? null;
  if (current?.slice(0, 5) === ideal.slice(0, 5)) return null;
  const since = new Date(Date.now() - 86_400_000).toISOString();
  const changes = ctx.ledger.countRuns('supabase-schedule', since, 'ok');
  if (changes >= SCHEDULE_CHANGES_PER_DAY) {
    throw new HbError('supabase-schedule-limit', `the daily backup time was changed ${changes} times in the last 24 hours; Supabase allows ${SCHEDULE_CHANGES_PER_DAY}`, 'try again tomorrow');
  }
  const run = RunScope.start(ctx, 'supabase-schedule', { from: current, to: ideal });
  try {
    const r = await api.updateBackupSchedule(ideal);
    run.ok();
    ctx.logs.channel('supabase').info(`daily backup time of ${api.projectRef} set to ${r.schedule_for} UTC (was ${current ?? 'unknown'})`);
    return { scheduleFor: r.schedule_for, previous: current };
  } catch (e) {
    throw run.fail(e);
  }
}

export interface PitrRestoreDoc {
  projectRef: string;
  recoveryTime: string;
  recoveryTimeTargetUnix: number;
  window: { earliest: string | null; latest: string | null };
}

export const supabaseRestorePitrCommand = defineCommand({
  name: 'supabase-restore-pitr',
  summary: 'restore the WHOLE Supabase project to a time inside the point-in-time recovery window; the project is unavailable meanwhile',
  cli: {
    options: [
      { flags: '--to <time>', description: 'the time to go back to (ISO-8601, e.g. 2026-11-24T09:30:00Z)', required: true },
      { flags: '--confirm <project-ref>', description: 'the project ref, to confirm you mean it' },
    ],
    toArgs: (_, o) => ({ to: o.to, confirm: o.confirm }),
  },
  args: z.object({
    to: z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'is not a time such as 2026-11-24T09:30:00Z' }),
    confirm: z.string().optional(),
  }),
  async run(ctx, args): Promise<PitrRestoreDoc> {
    const { managementApi, pollSupabase } = await import('../supabase/poll.js');
    const api = managementApi(ctx);
    if (!api) throw new HbError('supabase-not-configured', 'the Management API is not configured', 'set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN');
    const ref = api.projectRef;
    const target = new Date(args.to);
    const unix = Math.floor(target.getTime() / 1000);
    const warning = `this restores the WHOLE project ${ref} to ${target.toISOString()}: every schema, auth user and storage object record returns to that moment, everything written after it is lost, and the project is unavailable until the restore finishes`;
    if (args.confirm !== ref) {
      throw new HbError('confirm-mismatch', `refusing: ${warning}`, `if that is what you want, run it again with --confirm ${ref}`);
    }
    const snap = await pollSupabase(ctx);
    if (!snap.pitrEnabled) {
      throw new HbError('pitr-not-enabled', `project ${ref} does not have point-in-time recovery`, 'enable the PITR add-on (see supabase-config), or restore a daily backup from the dashboard');
    }
    const { earliest, latest } = snap.physical;
    if (!earliest || !latest || target.getTime() < Date.parse(earliest) || target.getTime() > Date.parse(latest)) {
      throw new HbError('pitr-out-of-window', `${target.toISOString()} is outside the recovery window ${earliest ?? '?'} .. ${latest ?? '?'}`, 'choose a time inside the window shown by supabase-status');
    }
    ctx.reporter.notice(`${warning}; starting now`);
    const log = ctx.logs.channel('supabase');
    log.warn(`point-in-time restore requested: ${warning}`);
    const run = RunScope.start(ctx, 'supabase-restore-pitr', { projectRef: ref, target: target.toISOString(), unix });
    try {
      await api.restorePitr(unix);
      run.ok();
      log.warn(`point-in-time restore of ${ref} to ${target.toISOString()} started`);
    } catch (e) {
      throw run.fail(e);
    }
    return { projectRef: ref, recoveryTime: target.toISOString(), recoveryTimeTargetUnix: unix, window: { earliest, latest } };
  },
  render(d, view) {
    return [
      `point-in-time restore of project ${d.projectRef} started: back to ${formatTime(d.recoveryTime, view.timeZone)}`,
      '  the project is unavailable until it finishes; follow it in the dashboard and with supabase-status',
    ].join('\n');
  },
});
