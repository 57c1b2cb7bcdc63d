/**
 * The hybrid monitor: one check per concern, each `ok | warning | critical | unknown` (or `off`
 * for a capability switched off, which does not count) with a one-line message. The overall
 * status is the worst check. Recorded runs (`monitor` job) go to the ledger and
 * `hybrid-monitor.log`, and a change of the overall status (recovery included) is alerted.
 */
import type { RunContext } from '../context.js';
import { toHbError } from '../domain/errors.js';
import { type Backup, type MonitorCheck, type MonitorDoc, worstStatus } from '../domain/types.js';
import { offsiteSettings } from '../offsite/store.js';
import { verifyOne } from '../backup/verify.js';
import { freeBytes } from '../util/fs.js';
import { formatAge, formatBytes, formatCount, formatDuration } from '../util/format.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const check = (name: string, status: MonitorCheck['status'], message: string): MonitorCheck => ({ name, status, message });

function localAge(ctx: RunContext, newest: Backup | undefined, now: number): MonitorCheck {
  const m = ctx.config.monitor;
  if (!newest) return check('local-backup-age', 'critical', 'no ok local backup at all: take one with npm run backup:manual');
  const h = (now - Date.parse(newest.createdAt)) / HOUR;
  const status = h > m.localCritHours ? 'critical' : h > m.localWarnHours ? 'warning' : 'ok';
  return check('local-backup-age', status, `newest ok backup is ${formatDuration(now - Date.parse(newest.createdAt))} old (backup ${newest.id}, ${newest.kind}, ${formatBytes(newest.bytes)})${status === 'ok' ? '' : `; limits ${m.localWarnHours} h / ${m.localCritHours} h`}`);
}

/** Re-hashes the newest ok backup and, in daily rotation, `integritySamples` older ones. */
async function integrity(ctx: RunContext, ok: Backup[], now: number): Promise<MonitorCheck> {
  if (ok.length === 0) return check('local-backup-checksum', 'unknown', 'no ok backup to check');
  const older = ok.slice(1);
  const n = Math.min(ctx.config.monitor.integritySamples, older.length);
  const start = older.length ? Math.floor(now / DAY) % older.length : 0;
  const sample = [ok[0]!, ...Array.from({ length: n }, (_, i) => older[(start + i) % older.length]!)];
  const bad: string[] = [];
  for (const b of sample) {
    const r = await verifyOne(ctx, b);
    if (!r.ok) bad.push(`backup ${b.id}: ${r.error}${r.actual ? ` (sha256 ${r.actual}, recorded ${r.expected})` : ''}`);
  }
  if (bad.length) return check('local-backup-checksum', 'critical', `checksum mismatch: ${bad.join('; ')}`);
  return check('local-backup-checksum', 'ok', `SHA-256 matches for the newest backup${n ? ` and ${n} older (${sample.slice(1).map((b) => b.id).join(', ')})` : ''}`);
}

function sizeDrop(ctx: RunContext, ok: Backup[]): MonitorCheck {
  const [newest, prev] = ok;
  if (!newest || !prev) return check('local-backup-size', 'ok', 'not enough backups to compare sizes');
  const ratio = newest.bytes / Math.max(1, prev.bytes);
  if (ratio < ctx.config.monitor.sizeDropRatio) {
    return check('local-backup-size', 'warning', `backup ${newest.id} is ${formatBytes(newest.bytes)}, ${Math.round(ratio * 100)} % of the previous one (${formatBytes(prev.bytes)}): an empty or partial dump can look like a success`);
  }
  return check('local-backup-size', 'ok', `${formatBytes(newest.bytes)}, ${Math.round(ratio * 100)} % of the previous backup`);
}

async function disk(ctx: RunContext, newest: Backup | undefined): Promise<MonitorCheck> {
  const free = await freeBytes(ctx.config.backupDir);
  if (!newest) return check('disk-space', 'ok', `${formatBytes(free)} free`);
  const need = newest.bytes * ctx.config.dump.freeSpaceFactor;
  if (free < need) return check('disk-space', 'critical', `${formatBytes(free)} free, the next backup needs about ${formatBytes(need)}: it will be refused`);
  if (free < need * 2) return check('disk-space', 'warning', `${formatBytes(free)} free: room for fewer than 2 more backups of ${formatBytes(newest.bytes)}`);
  return check('disk-space', 'ok', `${formatBytes(free)} free, room for ${formatCount(Math.floor(free / Math.max(1, newest.bytes)))} backups of this size`);
}

function retention(ctx: RunContext, now: number): MonitorCheck {
  const last = ctx.ledger.lastRun('prune');
  if (!last) return check('retention', 'warning', 'retention has never run (the service runs it daily; or npm run backup:prune)');
  if (last.status === 'failed') return check('retention', 'warning', `the last retention run failed: ${last.error?.message ?? 'unknown error'}`);
  const age = now - Date.parse(last.startedAt);
  if (age > 2 * DAY) return check('retention', 'warning', `retention last ran ${formatAge(last.startedAt, now)}`);
  return check('retention', 'ok', `retention ran ${formatAge(last.startedAt, now)} (${last.status})`);
}

function drill(ctx: RunContext, now: number): MonitorCheck {
  if (!ctx.config.restoreTest.databaseUrl) return check('restore-drill', 'off', 'restore drills are off (set RESTORE_TEST_DATABASE_URL)');
  const [last] = ctx.ledger.listDrills(1);
  if (!last) return check('restore-drill', 'warning', 'no restore drill yet: run npm run backup:restore-test');
  if (!last.ok) return check('restore-drill', 'critical', `the newest drill (${formatAge(last.startedAt, now)}, backup ${last.backupId}) FAILED: ${last.error?.message ?? last.mismatches.map((m) => `${m.table} ${m.actual}/${m.expected}`).join(', ')}`);
  const days = (now - Date.parse(last.startedAt)) / DAY;
  if (days > ctx.config.monitor.drillMaxAgeDays) return check('restore-drill', 'warning', `the newest drill passed but is ${formatAge(last.startedAt, now)}`);
  return check('restore-drill', 'ok', `backup ${last.backupId} restored and checked ${formatAge(last.startedAt, now)} (${last.rowsChecked} rows)`);
}

function offsite(ctx: RunContext, newest: Backup | undefined): MonitorCheck {
  if (!offsiteSettings(ctx.config)) return check('offsite-copy', 'off', 'offsite copies are off (set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY)');
  if (!newest) return check('offsite-copy', 'unknown', 'no ok backup to copy');
  if (newest.offsite?.status === 'uploaded') return check('offsite-copy', 'ok', `backup ${newest.id} is copied to ${newest.offsite.location}`);
  return check('offsite-copy', 'warning', `backup ${newest.id} has no offsite copy${newest.offsite?.error ? `: ${newest.offsite.error}` : ' yet'} (retried at the next run)`);
}

function supabase(ctx: RunContext, now: number): MonitorCheck[] {
  const m = ctx.config.monitor;
  if (!ctx.config.supabase.enabled) return [check('supabase', 'off', 'the managed layer is switched off (supabase.enabled: false)')];
  if (!ctx.config.supabase.projectRef || !ctx.config.supabase.accessToken) {
    return [check('supabase-configured', 'warning', 'the managed layer is not configured: set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN (or supabase.enabled: false)')];
  }
  const out: MonitorCheck[] = [];
  const poll = ctx.ledger.latestPoll();
  if (!poll) out.push(check('supabase-poll', 'warning', 'Supabase has not been polled yet (npm run backup:supabase-status)'));
  else if (poll.error) out.push(check('supabase-poll', 'warning', `the last poll (${formatAge(poll.takenAt, now)}) failed: ${poll.error.message}`));
  else if (now - Date.parse(poll.takenAt) > m.pollWarnHours * HOUR) out.push(check('supabase-poll', 'warning', `the last poll was ${formatAge(poll.takenAt, now)}`));
  else out.push(check('supabase-poll', 'ok', `polled ${formatAge(poll.takenAt, now)}`));

  const snap = poll?.snapshot?.configured ? poll.snapshot : (ctx.ledger.latestSnapshot() ?? null);
  if (!snap || !snap.configured) {
    out.push(check('supabase-backup-age', 'unknown', 'no successful poll to judge the managed backups by'));
    return out;
  }
  const seen = ` (as of the poll ${formatAge(snap.takenAt, now)})`;
  if (snap.pitrEnabled) {
    const latest = snap.physical.latest;
    const ageMs = latest ? now - Date.parse(latest) : Infinity;
    const status = !latest || ageMs > m.managedCritHours * HOUR ? 'critical' : ageMs > m.pitrWarnMinutes * 60_000 ? 'warning' : 'ok';
    out.push(check('supabase-backup-age', status, latest ? `newest PITR restore point is ${formatDuration(ageMs)} old${seen}` : `PITR is on but reports no restore point${seen}`));
  } else {
    const latest = snap.latestBackupAt;
    const ageMs = latest ? now - Date.parse(latest) : Infinity;
    const status = !latest || ageMs > m.managedCritHours * HOUR ? 'critical' : ageMs > m.managedWarnHours * HOUR ? 'warning' : 'ok';
    const failed = snap.backups[0]?.status === 'FAILED' ? '; the newest managed backup FAILED' : '';
    out.push(check('supabase-backup-age', failed && status === 'ok' ? 'warning' : status, latest ? `newest completed managed backup is ${formatDuration(ageMs)} old${failed}${seen}` : `no completed managed backup${seen}`));
  }
  if (ctx.config.supabase.policy.requirePitr && !snap.pitrEnabled) out.push(check('supabase-pitr', 'critical', 'the policy requires point-in-time recovery and it is off (see supabase-config)'));
  else out.push(check('supabase-pitr', 'ok', snap.pitrEnabled ? 'point-in-time recovery is on' : 'point-in-time recovery is off, and the policy does not require it'));
  const st = snap.project?.status ?? 'UNKNOWN';
  out.push(check('supabase-project', st === 'ACTIVE_HEALTHY' ? 'ok' : /INACTIVE|REMOVED|FAILED|PAUSING/.test(st) ? 'critical' : 'warning', `project ${snap.projectRef} is ${st}`));
  return out;
}

/** Runs every check now. */
export async function evaluate(ctx: RunContext, now = Date.now()): Promise<MonitorDoc> {
  const ok = ctx.ledger.listBackups({ statuses: ['ok'] });
  const newest = ok[0];
  const checks: MonitorCheck[] = [localAge(ctx, newest, now)];
  for (const c of [() => integrity(ctx, ok, now), () => Promise.resolve(sizeDrop(ctx, ok)), () => disk(ctx, newest)]) {
    try {
      checks.push(await c());
    } catch (e) {
      checks.push(check('monitor', 'unknown', `a check could not run: ${toHbError(e).message}`));
    }
  }
  checks.push(retention(ctx, now), drill(ctx, now), offsite(ctx, newest), ...supabase(ctx, now));
  return { status: worstStatus(checks.map((c) => c.status)), checks, at: new Date(now).toISOString() };
}

/** Runs the monitor as a recorded job: ledger, log, and an alert when the status changed. */
export async function runMonitor(ctx: RunContext): Promise<MonitorDoc> {
  const run = ctx.ledger.startRun('monitor', ctx.trigger);
  const log = ctx.logs.channel('monitor');
  const previous = ctx.ledger.listMonitors(1)[0];
  try {
    const doc = await evaluate(ctx);
    ctx.ledger.recordMonitor(run.id, doc);
    const bad = doc.checks.filter((c) => c.status !== 'ok' && c.status !== 'off');
    ctx.ledger.finishRun(run.id, 'ok', null, { status: doc.status });
    const line = `monitor: ${doc.status.toUpperCase()}${bad.length ? ` — ${bad.map((c) => `${c.name}: ${c.message}`).join('; ')}` : ''}`;
    if (doc.status === 'ok') log.info(line, { runId: run.id });
    else if (doc.status === 'warning' || doc.status === 'unknown') log.warn(line, { runId: run.id });
    else log.error(line, { runId: run.id });
    if (previous && previous.status !== doc.status) {
      ctx.alerts.send({
        event: 'monitor-status-changed',
        severity: doc.status === 'ok' ? 'ok' : doc.status === 'critical' ? 'critical' : 'warning',
        summary: doc.status === 'ok' ? `recovered: the monitor is OK again (was ${previous.status.toUpperCase()})` : `the monitor went from ${previous.status.toUpperCase()} to ${doc.status.toUpperCase()}: ${bad.map((c) => c.message).join('; ')}`,
        details: { from: previous.status, to: doc.status, checks: bad },
      });
    }
    return doc;
  } catch (e) {
    const err = toHbError(e);
    ctx.ledger.finishRun(run.id, 'failed', { code: err.code, message: err.message });
    log.error(`monitor failed: ${err.message}`, { runId: run.id });
    throw err;
  }
}
