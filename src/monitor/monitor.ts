/**
 * The hybrid monitor: one check per concern, each `ok | warning | critical | unknown` (or `off`
 * for a capability switched off, which does not count) with a one-line message. The overall
 * status is the worst check. Recorded runs (`monitor` job) go to the ledger and
 * `hybrid-monitor.log`, and a change of the overall status (recovery included) is alerted.
 */
import type { RunContext } from '../context.js';
import { toHbError } from '../domain/errors.js';
import { type Backup, type MonitorCheck, type MonitorDoc, worstStatus } from '../domain/types.js';
import { planRetention, retentionPolicy } from '../backup/retention.js';
import { emptyDumpWarning } from '../backup/describe.js';
import { checkFilesPresent, FUTURE_SLACK_MS, type VerifyResult, verifyOne, verifyStorageFiles } from '../backup/verify.js';
import { RunScope } from '../jobs/runs.js';
import { freeBytes } from '../util/fs.js';
import { formatAge, formatBytes, formatCountUpTo, formatDuration, plural } from '../util/format.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/**
 * Retention is judged as of this long ago: a backup that crossed its limit since then is left to
 * the next daily prune, so only one the prune should already have removed is flagged.
 */
const RETENTION_GRACE = 26 * HOUR;

/** Backups that should have a good file and do not: it does not match (corrupt) or is gone (missing). */
const UNUSABLE = ['corrupt', 'missing'] as const;

const check = (name: string, status: MonitorCheck['status'], message: string): MonitorCheck => ({ name, status, message });

/** A corrupt backup the checksum check reports, and when a run first found it so. */
export interface CorruptEntry {
  id: number;
  since: string;
}

/**
 * `local-backup-checksum`, with the corrupt backups it reports (also in `--json`): the next run
 * reads them back, so a finding stays critical until a good backup is taken after it.
 */
export interface ChecksumCheck extends MonitorCheck {
  corrupt: CorruptEntry[];
}

const ids = (bs: readonly Backup[]) => bs.map((b) => b.id).join(', ');

/** Corrupt backups newer than the newest ok one (all of them when there is no ok one). */
function newerCorrupt(ctx: RunContext, newestOk: Backup | undefined): Backup[] {
  const after = newestOk ? Date.parse(newestOk.createdAt) : -Infinity;
  return ctx.ledger.listBackups({ statuses: UNUSABLE }).filter((b) => Date.parse(b.createdAt) > after);
}

function localAge(ctx: RunContext, newest: Backup | undefined, corrupt: readonly Backup[], now: number): MonitorCheck {
  const m = ctx.config.monitor;
  const bad = corrupt.length ? `backup ${ids(corrupt)}, newer, ${corrupt.length === 1 ? 'is' : 'are'} corrupt` : '';
  // A backup dated in the future would look fresh for as long as the skew: the age is judged by
  // the newest one that is not, and the skew is said.
  const future = newest && Date.parse(newest.createdAt) > now + FUTURE_SLACK_MS ? ctx.ledger.listBackups({ statuses: ['ok'] }).filter((b) => Date.parse(b.createdAt) > now + FUTURE_SLACK_MS) : [];
  const skew = future.length ? `backup ${ids(future)} ${future.length === 1 ? 'is' : 'are'} dated in the future (${future[0]!.createdAt}: a clock set back, or a ledger rebuilt from another host's sidecars)` : '';
  if (future.length) newest = ctx.ledger.listBackups({ statuses: ['ok'] }).find((b) => Date.parse(b.createdAt) <= now + FUTURE_SLACK_MS);
  if (!newest) return check('local-backup-age', 'critical', `no ok local backup at all${bad ? ` (${bad})` : ''}${skew ? ` (${skew})` : ''}: take one with npm run backup:manual`);
  const h = (now - Date.parse(newest.createdAt)) / HOUR;
  const byAge = h > m.localCritHours ? 'critical' : h > m.localWarnHours ? 'warning' : 'ok';
  const status = skew && byAge === 'ok' ? 'warning' : byAge;
  return check('local-backup-age', status, `newest ok backup is ${formatDuration(now - Date.parse(newest.createdAt))} old (backup ${newest.id}, ${newest.kind}, ${formatBytes(newest.bytes)})${byAge === 'ok' ? '' : `; limits ${m.localWarnHours} h / ${m.localCritHours} h`}${bad ? `; ${bad}` : ''}${skew ? `; ${skew}` : ''}`);
}

/**
 * The scheduled backup's last run: critical when it failed or was interrupted. A manual or
 * pre-change backup taken meanwhile keeps the age check green, but does not stand in for the
 * daily one — the schedule itself is broken until a scheduled run succeeds.
 */
function scheduledBackup(ctx: RunContext, now: number): MonitorCheck {
  const name = 'local-backup-schedule';
  const last = ctx.ledger.lastRun('backup', ['schedule', 'startup']);
  if (!last) return check(name, 'ok', 'no scheduled backup has run yet (the service runs it; the age check says when one is due)');
  if (last.status === 'failed' || last.status === 'interrupted') {
    return check(name, 'critical', `the scheduled backup of ${formatAge(last.startedAt, now)} ${last.status === 'failed' ? 'FAILED' : 'was interrupted'}${last.error ? `: ${last.error.message}` : ''}; it is critical until a scheduled backup succeeds`);
  }
  if (last.status === 'running') return check(name, 'ok', `the scheduled backup is running (started ${formatAge(last.startedAt, now)})`);
  return check(name, 'ok', `the last scheduled backup succeeded ${formatAge(last.startedAt, now)}`);
}

/** The corrupt backups the previous recorded run reported, id → since. */
function previouslyCorrupt(ctx: RunContext): Map<number, string> {
  const prev = ctx.ledger.listMonitors(1)[0]?.checks.find((c) => c.name === 'local-backup-checksum') as Partial<ChecksumCheck> | undefined;
  const out = new Map<number, string>();
  for (const e of Array.isArray(prev?.corrupt) ? prev.corrupt : []) {
    if (typeof e?.id === 'number' && typeof e.since === 'string' && !Number.isNaN(Date.parse(e.since))) out.set(e.id, e.since);
  }
  return out;
}

/** What a failed re-hash found, in one phrase. */
function describeFailure(b: Backup, r: VerifyResult): string {
  return `backup ${b.id}: ${r.error}${r.actual ? ` (sha256 ${r.actual}, recorded ${r.expected})` : ''}`;
}

/**
 * Re-hashes, in this order: every corrupt backup newer than the newest ok one (a file put back
 * makes it ok again); the newest ok backup, fully, and when that fails the next one down until one
 * matches; and, in daily rotation, `integritySamples` older ok ones.
 *
 * Critical while a corrupt backup is newer than the newest good one, or was found corrupt (by
 * this run or, carried in {@link ChecksumCheck.corrupt}, an earlier one) after the newest good one
 * was taken: the finding stands, run after run, until a good backup is taken after it.
 */
async function integrity(ctx: RunContext, now: number): Promise<ChecksumCheck> {
  const found = new Map<number, string>();
  const rehash = async (b: Backup): Promise<boolean> => {
    const r = await verifyOne(ctx, b);
    if (!r.ok) found.set(b.id, describeFailure(b, r));
    return r.ok;
  };
  // Every ok file is looked at (a stat each, cheap): one deleted by hand is found the same day.
  for (const b of (await checkFilesPresent(ctx, ctx.ledger.listBackups({ statuses: ['ok'] }))).missing) found.set(b.id, `backup ${b.id}: file missing (${b.file})`);
  for (const b of newerCorrupt(ctx, ctx.ledger.latestBackup(['ok']))) await rehash(b);
  let newestGood: Backup | undefined;
  for (const b of ctx.ledger.listBackups({ statuses: ['ok'] })) {
    if (await rehash(b)) {
      newestGood = b;
      break;
    }
  }
  const older = newestGood ? ctx.ledger.listBackups({ statuses: ['ok'] }).filter((b) => b.id !== newestGood.id) : [];
  const n = Math.min(ctx.config.monitor.integritySamples, older.length);
  const start = older.length ? Math.floor(now / DAY) % older.length : 0;
  const sample = Array.from({ length: n }, (_, i) => older[(start + i) % older.length]!);
  for (const b of sample) await rehash(b);

  const known = previouslyCorrupt(ctx);
  const goodAt = newestGood ? Date.parse(newestGood.createdAt) : -Infinity;
  const corrupt: CorruptEntry[] = [];
  const lines: string[] = [];
  for (const b of ctx.ledger.listBackups({ statuses: UNUSABLE })) {
    const since = known.get(b.id) ?? (found.has(b.id) ? new Date(now).toISOString() : undefined);
    if (Date.parse(b.createdAt) <= goodAt && (!since || Date.parse(since) < goodAt)) continue; // a good backup was taken since
    corrupt.push({ id: b.id, since: since ?? new Date(now).toISOString() });
    lines.push(found.get(b.id) ?? `backup ${b.id}: found corrupt ${formatAge(since, now)}`);
  }
  if (corrupt.length) {
    const good = newestGood ? `the newest good backup is ${newestGood.id}` : 'no good local backup is left';
    return { ...check('local-backup-checksum', 'critical', `${lines.some((l) => !l.includes('file missing')) ? 'checksum mismatch' : 'file missing'}: ${lines.join('; ')}; ${good}: critical until a good backup is taken (npm run backup:manual)`), corrupt };
  }
  if (!newestGood) return { ...check('local-backup-checksum', 'unknown', 'no ok backup to check'), corrupt };
  return { ...check('local-backup-checksum', 'ok', `SHA-256 matches for the newest backup${n ? ` and ${n} older (${ids(sample)})` : ''}`), corrupt };
}

/** Warning when the newest good backup holds no user table: a backup of an empty (or the wrong) database. */
function content(newest: Backup | undefined): MonitorCheck {
  if (!newest) return check('local-backup-content', 'unknown', 'no ok backup to look into');
  if (newest.tableCount === 0) return check('local-backup-content', 'warning', `backup ${newest.id}: ${emptyDumpWarning(newest.database)}`);
  return check('local-backup-content', 'ok', `backup ${newest.id} holds ${plural(newest.tableCount, 'table')}, ${plural(newest.rowCount, 'row')} of database "${newest.database ?? '?'}"`);
}

/**
 * The newest ok backup's Storage files (issue 15): a warning when its capture was incomplete;
 * critical when the store has lost a file its manifest needs, or the manifest cannot be read —
 * looked at every run (presence and size: one directory read per shard), so that files deleted
 * from the store are found the same day, not at the next verify or restore.
 */
async function storageFiles(ctx: RunContext, newest: Backup | undefined): Promise<MonitorCheck> {
  const name = 'storage-files';
  if (ctx.config.storageCapture === 'off') return check(name, 'off', 'Storage files are not captured (storage off: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY unset, or storage.enabled false)');
  if (!newest) return check(name, 'unknown', 'no ok backup to look into');
  const s = newest.storage;
  if (!s) {
    return ctx.config.storageCapture === 'on'
      ? check(name, 'warning', `backup ${newest.id} captured no Storage files`)
      : check(name, 'off', `backup ${newest.id} captured no Storage files (the database has no storage.objects)`);
  }
  const held = await verifyStorageFiles(ctx, newest, false);
  if (held && !held.ok) return check(name, 'critical', `backup ${newest.id}: ${held.error}: a restore cannot bring them back (hybrid-backup verify ${newest.id} says which)`);
  if (!s.complete) return check(name, 'warning', `backup ${newest.id}: ${s.summary}`);
  return check(name, 'ok', `backup ${newest.id}: ${s.summary}${held ? `; the store holds its ${plural(held.files, 'file')}` : ''}`);
}

/** Compares the two newest ok backups: what a restore would use (corrupt ones are the checksum check's). */
function sizeDrop(ctx: RunContext, ok: Backup[], corrupt: readonly Backup[]): MonitorCheck {
  const [newest, prev] = ok;
  const skipped = corrupt.length ? ` (corrupt backup ${ids(corrupt)} not compared)` : '';
  if (!newest || !prev) return check('local-backup-size', 'ok', `not enough backups to compare sizes${skipped}`);
  const ratio = newest.bytes / Math.max(1, prev.bytes);
  if (ratio < ctx.config.monitor.sizeDropRatio) {
    return check('local-backup-size', 'warning', `backup ${newest.id} is ${formatBytes(newest.bytes)}, ${Math.round(ratio * 100)} % of the previous one (${formatBytes(prev.bytes)}): an empty or partial dump can look like a success${skipped}`);
  }
  return check('local-backup-size', 'ok', `${formatBytes(newest.bytes)}, ${Math.round(ratio * 100)} % of the previous backup${skipped}`);
}

/** Below this, the disk is full whatever the backups' size: the ledger and logs cannot be written. */
const DISK_FULL_BYTES = 16 * 1024 * 1024;

async function disk(ctx: RunContext, newest: Backup | undefined): Promise<MonitorCheck> {
  const free = await freeBytes(ctx.config.backupDir);
  if (free < DISK_FULL_BYTES) return check('disk-space', 'critical', `the disk holding ${ctx.config.backupDir} is full: ${formatBytes(free)} free${newest ? `; the next backup needs about ${formatBytes(newest.bytes * ctx.config.dump.freeSpaceFactor)}` : ''}`);
  if (!newest) return check('disk-space', 'ok', `${formatBytes(free)} free`);
  const need = newest.bytes * ctx.config.dump.freeSpaceFactor;
  if (free < need) return check('disk-space', 'critical', `${formatBytes(free)} free, the next backup needs about ${formatBytes(need)}: it will be refused`);
  if (free < need * 2) return check('disk-space', 'warning', `${formatBytes(free)} free: room for fewer than 2 more backups of ${formatBytes(newest.bytes)}`);
  return check('disk-space', 'ok', `${formatBytes(free)} free, room for ${formatCountUpTo(Math.floor(free / Math.max(1, newest.bytes)), 1000)} backups of this size`);
}

/**
 * Ok backups the retention rules (planned as of {@link RETENTION_GRACE} ago) would have deleted:
 * still here means prune is not doing its job. Oldest last.
 */
function pastRetention(ctx: RunContext, now: number): Backup[] {
  const plan = planRetention(ctx.ledger.listBackups({ statuses: ['ok'] }), new Date(now - RETENTION_GRACE), retentionPolicy(ctx));
  return plan.delete.map((d) => d.backup);
}

/** Warning when prune never ran, failed, has not run for 2 days, or left backups it should have deleted. */
function retention(ctx: RunContext, now: number): MonitorCheck {
  const problems: string[] = [];
  const last = ctx.ledger.lastRun('prune');
  if (!last) problems.push('retention has never run (the service runs it daily; or npm run backup:prune)');
  else if (last.status === 'failed') problems.push(`the last retention run failed: ${last.error?.message ?? 'unknown error'}`);
  else if (now - Date.parse(last.startedAt) > 2 * DAY) problems.push(`retention last ran ${formatAge(last.startedAt, now)}`);
  const late = pastRetention(ctx, now);
  const oldest = late[late.length - 1];
  if (oldest) {
    const limit = oldest.kind === 'pre-change' ? ctx.config.retention.preChangeDays : ctx.config.retention.days;
    problems.push(
      `${late.length} ok backup${late.length === 1 ? ' is' : 's are'} past retention and still kept, the oldest backup ${oldest.id} (${oldest.kind}, created ${formatAge(oldest.createdAt, now)}; limit ${plural(limit, 'day')}): see npm run backup:prune -- --dry-run`,
    );
  }
  if (problems.length) return check('retention', 'warning', problems.join('; '));
  return check('retention', 'ok', `retention ran ${formatAge(last!.startedAt, now)} (${last!.status}); no backup is past retention`);
}

function drill(ctx: RunContext, now: number): MonitorCheck {
  if (!ctx.config.restoreTest.enabled) return check('restore-drill', 'off', 'the weekly restore drill is off (restoreTest.enabled: false)');
  const [last] = ctx.ledger.listDrills(1);
  // A drill can fail before it has a result to record (no copy to fetch, no key, no backup): its
  // run is the only trace, and it stands against the older drill's pass.
  const run = ctx.ledger.drillRunFailedSinceLastDrill();
  if (run) {
    return check('restore-drill', 'critical', `the newest restore drill (${formatAge(run.startedAt, now)}) ${run.status === 'failed' ? 'FAILED' : 'was interrupted'} before it could restore: ${run.error?.message ?? 'no reason recorded'}`);
  }
  if (!last) return check('restore-drill', 'warning', 'no restore drill yet: run npm run backup:restore-test');
  if (!last.ok) {
    const why = last.error?.message ?? [...last.mismatches.map((m) => `${m.table} ${m.actual}/${m.expected}`), ...last.fidelity.differences].slice(0, 5).join(', ');
    return check('restore-drill', 'critical', `the newest drill (${formatAge(last.startedAt, now)}, backup ${last.backupId}) FAILED: ${why}`);
  }
  const days = (now - Date.parse(last.startedAt)) / DAY;
  if (days > ctx.config.monitor.drillMaxAgeDays) return check('restore-drill', 'warning', `the newest drill passed but is ${formatAge(last.startedAt, now)}`);
  return check('restore-drill', 'ok', `backup ${last.backupId} restored and checked ${formatAge(last.startedAt, now)} (${plural(last.rowsChecked, 'row')})`);
}

/** One check per offsite target: does it hold the newest backup? */
function offsite(ctx: RunContext, newest: Backup | undefined, now: number): MonitorCheck[] {
  const targets = ctx.config.offsiteTargets;
  if (targets.length === 0) return [check('offsite-copy', 'off', 'offsite copies are off (set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, or add offsite.targets)')];
  return targets.map(({ name }) => {
    const id = `offsite-copy:${name}`;
    if (!newest) return check(id, 'unknown', 'no ok backup to copy');
    const copy = newest.offsiteCopies.find((c) => c.target === name);
    if (copy?.status === 'uploaded') return check(id, 'ok', `backup ${newest.id} is copied to ${copy.location}${copy.encrypted ? ' (encrypted)' : ''}`);
    const held = ctx.ledger.latestCopy(name);
    const fallback = held ? `; the newest copy there is backup ${held.backup.id} (${formatAge(held.backup.createdAt, now)})` : '; it holds no copy yet';
    return check(id, 'warning', `backup ${newest.id} has no copy in "${name}"${copy?.error ? `: ${copy.error}` : ' yet'} (retried at the next run)${fallback}`);
  });
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

/** Runs a check; one that throws becomes an `unknown` check instead of failing the monitor. */
async function guarded(run: () => MonitorCheck | Promise<MonitorCheck>): Promise<MonitorCheck> {
  try {
    return await run();
  } catch (e) {
    return check('monitor', 'unknown', `a check could not run: ${toHbError(e).message}`);
  }
}

/** Runs every check now. */
export async function evaluate(ctx: RunContext, now = Date.now()): Promise<MonitorDoc> {
  const checksum = await guarded(() => integrity(ctx, now));
  // Read after the checksum check: a backup it found corrupt is no longer one to count on.
  const ok = ctx.ledger.listBackups({ statuses: ['ok'] });
  const newest = ok[0];
  const corrupt = newerCorrupt(ctx, newest);
  const checks: MonitorCheck[] = [localAge(ctx, newest, corrupt, now), scheduledBackup(ctx, now), checksum, content(newest), await guarded(() => sizeDrop(ctx, ok, corrupt)), await guarded(() => disk(ctx, newest))];
  checks.push(await guarded(() => retention(ctx, now)), drill(ctx, now), await guarded(() => storageFiles(ctx, newest)), ...offsite(ctx, newest, now), ...supabase(ctx, now));
  return { status: worstStatus(checks.map((c) => c.status)), checks, at: new Date(now).toISOString() };
}

/** Runs the monitor as a recorded job: ledger, log, and an alert when the status changed. */
export async function runMonitor(ctx: RunContext): Promise<MonitorDoc> {
  const log = ctx.logs.channel('monitor');
  // A ledger that cannot be written (a full disk) is the monitor's finding, not its failure.
  let run: RunScope | null = null;
  let ledgerProblem: string | null = ctx.ledger.readOnlyCopy ?? null;
  if (!ledgerProblem) {
    try {
      run = RunScope.start(ctx, 'monitor');
    } catch (e) {
      ledgerProblem = toHbError(e).message;
    }
  }
  const previous = ctx.ledger.listMonitors(1)[0];
  try {
    const doc = await evaluate(ctx);
    const held = ctx.ledger.pendingRuns();
    if (held.length) ledgerProblem ??= `the ledger cannot be written: ${held.length} run outcome${held.length === 1 ? ' is' : 's are'} held in memory, not yet written (the newest: ${held[held.length - 1]!.job} ${held[held.length - 1]!.status})`;
    if (!ledgerProblem) {
      try {
        ctx.ledger.recordMonitor(run!.id, doc);
      } catch (e) {
        ledgerProblem = toHbError(e).message;
      }
    }
    if (ledgerProblem) {
      doc.checks.push(check('ledger', 'critical', ledgerProblem));
      doc.status = worstStatus(doc.checks.map((c) => c.status));
    }
    const bad = doc.checks.filter((c) => c.status !== 'ok' && c.status !== 'off');
    run?.ok({ status: doc.status });
    const line = `monitor: ${doc.status.toUpperCase()}${bad.length ? ` — ${bad.map((c) => `${c.name}: ${c.message}`).join('; ')}` : ''}`;
    if (doc.status === 'ok') log.info(line, { runId: run?.id });
    else if (doc.status === 'warning' || doc.status === 'unknown') log.warn(line, { runId: run?.id });
    else log.error(line, { runId: run?.id });
    if (previous && previous.status !== doc.status) {
      ctx.alerts.send({
        event: 'monitor-status-changed',
        severity: doc.status === 'ok' ? 'ok' : doc.status === 'critical' ? 'critical' : 'warning',
        summary: doc.status === 'ok' ? `recovered: the monitor is OK again (was ${previous.status.toUpperCase()})` : `the monitor went from ${previous.status.toUpperCase()} to ${doc.status.toUpperCase()}: ${bad.map((c) => c.message).join('; ')}`,
        details: { from: previous.status, to: doc.status, checks: bad },
      });
    } else if (doc.status !== 'ok') {
      // The same status, or a first run, can still bring news: a check that was not failing now is
      // (a checksum mismatch on top of a standing PITR breach), or a first run that is not OK.
      const before = new Set((previous?.checks ?? []).filter((c) => c.status !== 'ok' && c.status !== 'off').map((c) => `${c.name} ${c.status}`));
      const fresh = bad.filter((c) => !before.has(`${c.name} ${c.status}`));
      if (fresh.length) {
        ctx.alerts.send({
          event: 'monitor-new-problem',
          severity: doc.status === 'critical' ? 'critical' : 'warning',
          summary: `the monitor is ${doc.status.toUpperCase()}${previous ? ' (as before)' : ''}, and now: ${fresh.map((c) => c.message).join('; ')}`,
          details: { status: doc.status, firstRun: !previous, checks: fresh },
        });
      }
    }
    return doc;
  } catch (e) {
    const err = run ? run.fail(e) : toHbError(e);
    log.error(`monitor failed: ${err.message}`, { runId: run?.id });
    throw err;
  }
}
