/** `list`, `verify`, `runs`: read (and for verify, re-check) what the ledger knows. */
import path from 'node:path';
import { z } from 'zod';
import type { VerifyResult } from '../backup/verify.js';
import { isJobName, JOB_NAMES, RunScope } from '../jobs/runs.js';
import type { OffsiteTarget } from '../offsite/target.js';
import { HbError, toHbError } from '../domain/errors.js';
import { BACKUP_KINDS, BACKUP_STATUSES, type Backup, type Run } from '../domain/types.js';
import { formatAge, formatBytes, formatCount, formatDuration, formatTime, parseDuration, plural, printable, table } from '../util/format.js';
import { RawJson, type WireDocument } from '../util/raw-json.js';
import type { RebuildOutcome } from '../backup/rebuild.js';
import { defineCommand } from './command.js';

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** How many backups `list` shows unless told otherwise. */
export const LIST_DEFAULT_LIMIT = 100;

/** What `list` answers (SPEC): the backups, newest first, and how many match in all. */
export interface ListDoc {
  backups: Backup[];
  total: number;
}

/**
 * The list document over the ledger's cached JSON bytes: the service sends those bytes as they are
 * (10,000 backups in a few milliseconds, {@link WireDocument}); read in this process, they are
 * parsed once, when first asked for.
 */
export class BackupList implements ListDoc, WireDocument {
  private parsed: Backup[] | undefined;

  constructor(
    private readonly bytes: Buffer,
    readonly total: number,
  ) {}

  get backups(): Backup[] {
    return (this.parsed ??= JSON.parse(this.bytes.toString('utf8')) as Backup[]);
  }

  toJSON(): ListDoc {
    return { backups: this.backups, total: this.total };
  }

  wireForm(): unknown {
    return { backups: new RawJson(this.bytes), total: this.total };
  }
}

export const listCommand = defineCommand({
  name: 'list',
  worksOnFullDisk: true,
  summary: 'list backups, newest first',
  cli: {
    options: [
      { flags: '--status <statuses>', description: `only these statuses, comma-separated (${BACKUP_STATUSES.join(', ')})` },
      { flags: '--kind <kind>', description: 'only this kind', choices: BACKUP_KINDS },
      { flags: '--limit <n>', description: 'at most n backups (default: the newest 100 on screen, every one with --json)', int: true },
      { flags: '--all', description: 'every backup, however many' },
    ],
    toArgs: (_, o) => ({
      status: (o.status as string | undefined)?.split(',').map((s) => s.trim()),
      kind: o.kind,
      limit: o.limit,
      // a program reading --json gets the whole ledger unless it asks for less
      all: !!o.all || (!!o.json && o.limit === undefined),
    }),
  },
  args: z.object({
    status: z.array(z.enum(BACKUP_STATUSES)).optional(),
    kind: z.enum(BACKUP_KINDS).optional(),
    limit: z.int().positive().optional(),
    all: z.boolean().default(false),
  }),
  async run(ctx, args): Promise<ListDoc> {
    const filter = { statuses: args.status, kind: args.kind };
    const limit = args.all ? undefined : (args.limit ?? LIST_DEFAULT_LIMIT);
    return new BackupList(ctx.ledger.listBackupsRaw({ ...filter, limit }), ctx.ledger.countBackups(filter));
  },
  render(doc, view) {
    if (doc.backups.length === 0) return 'no backups yet; take one with: npm run backup:manual';
    const rows = doc.backups.map((b) => [
      String(b.id),
      formatTime(b.createdAt, view.timeZone),
      b.kind,
      b.status + (b.pinned ? ' (pinned)' : ''),
      b.status === 'ok' || b.status === 'corrupt' || b.status === 'missing' ? formatBytes(b.bytes) : '-',
      b.verifiedAt ? formatAge(b.verifiedAt, view.now) : '-',
      b.offsite ? b.offsite.status : '-',
      !b.storage ? '-' : b.storage.complete ? `${formatCount(b.storage.objects)} (${formatBytes(b.storage.bytes)})` : 'INCOMPLETE',
      b.status === 'failed' || b.status === 'interrupted' ? truncate(b.error?.message ?? '-', 70) : truncate(b.description ?? '-', 70),
    ]);
    const ok = doc.backups.filter((b) => b.status === 'ok');
    const total = ok.reduce((a, b) => a + b.bytes, 0);
    const shown = doc.backups.length < doc.total ? `showing the newest ${formatCount(doc.backups.length)} of ${plural(doc.total, 'backup')} (--all for every one); ` : `${plural(doc.total, 'backup')}, `;
    return `${table(['ID', 'CREATED', 'KIND', 'STATUS', 'SIZE', 'DRILLED', 'OFFSITE', 'FILES', 'DESCRIPTION / ERROR'], rows)}\n\n${shown}${formatCount(ok.length)} ok shown (${formatBytes(total)})`;
  },
});

export const verifyCommand = defineCommand({
  name: 'verify',
  summary: 're-hash backup files and compare them with the ledger; exit 1 if any does not match',
  cli: {
    arguments: [{ name: '[which]', description: 'latest, all, or a backup id', default: 'latest' }],
    toArgs: ([which]) => ({ which }),
  },
  args: z.object({ which: z.string().default('latest') }),
  async run(ctx, args): Promise<{ results: VerifyResult[] }> {
    const { listTargetStoreFiles, readManifest, selectBackups, verifyOffsite, verifyOne, verifyStorageFiles } = await import('../backup/verify.js');
    const { openTargets } = await import('../offsite/targets.js');
    const backups = selectBackups(ctx, args.which);
    const run = RunScope.start(ctx, 'verify', { which: args.which });
    let targets: OffsiteTarget[] = [];
    try {
      const results: VerifyResult[] = [];
      targets = await openTargets(ctx.config);
      // A Storage file many backups reference is re-hashed once per verify; each target's store is
      // listed once; each backup's manifest is read once for all its checks.
      const rehashed = new Map() as import('../storage/index.js').RehashCache;
      const listed = new Map<string, ReturnType<typeof listTargetStoreFiles>>();
      const heldBy = (t: OffsiteTarget) => () => {
        let p = listed.get(t.name);
        if (!p) listed.set(t.name, (p = listTargetStoreFiles(t, ctx.signal)));
        return p;
      };
      for (const b of backups) {
        const r = await verifyOne(ctx, b, (e) => ctx.reporter.progress(e));
        const manifest = b.storage?.manifestFile ? await readManifest(b) : undefined;
        if (targets.length) {
          const now = ctx.ledger.getBackup(b.id)!;
          r.offsiteCopies = [];
          for (const t of targets) {
            r.offsiteCopies.push(await verifyOffsite(t, now, ctx.signal, manifest && { manifest, held: heldBy(t) }).catch((e) => ({ target: t.name, ok: false, location: now.offsiteCopies.find((c) => c.target === t.name)?.location ?? null, bytes: null, error: toHbError(e).message })));
          }
          const { target: _t, ...summary } = r.offsiteCopies.find((c) => !c.ok) ?? r.offsiteCopies[0]!;
          r.offsite = summary;
          r.ok = r.ok && r.offsiteCopies.every((c) => c.ok);
        }
        const files = await verifyStorageFiles(ctx, b, true, rehashed, manifest).catch((e: unknown) => ({ ok: false, objects: 0, files: 0, checked: 0, bytes: 0, missing: 0, corrupt: 0, error: toHbError(e).message }));
        if (files) {
          r.storage = files;
          r.ok = r.ok && files.ok;
        }
        results.push(r);
      }
      const bad = results.filter((r) => !r.ok);
      if (bad.length) run.failed({ code: 'checksum-mismatch', message: `${bad.length} of ${plural(results.length, 'backup')} failed verification: ${bad.map((r) => r.id).join(', ')}` }, { checked: results.length });
      else run.ok({ checked: results.length });
      return { results };
    } catch (e) {
      throw run.fail(e);
    } finally {
      for (const t of targets) t.close?.();
    }
  },
  render(doc) {
    if (doc.results.length === 0) return 'no backups to verify';
    const rows = doc.results.map((r) => {
      const local = r.error ? `${r.error}${r.actual ? ` (expected ${r.expected}, got ${r.actual})` : ''}` : `sha256 ${r.actual}`;
      const offsite = (r.offsiteCopies ?? []).map((c) => (c.ok ? `; "${c.target}" copy ok (${c.location})` : `; "${c.target}": ${c.error}`)).join('') + (r.storage ? (r.storage.ok ? `; ${r.storage.files} Storage files ok` : `; Storage files: ${r.storage.error}`) : '');
      return [r.ok ? 'ok' : 'FAILED', `backup ${r.id}`, path.basename(r.file), `${local}${offsite}`];
    });
    const bad = doc.results.filter((r) => !r.ok).length;
    const summary = bad ? `${formatCount(bad)} of ${plural(doc.results.length, 'backup')} FAILED verification` : `${plural(doc.results.length, 'backup')} verified`;
    return `${table(['RESULT', 'BACKUP', 'FILE', 'SHA-256 / PROBLEM'], rows)}\n\n${summary}`;
  },
  exitCode: (doc) => (doc.results.every((r) => r.ok) ? 0 : 1),
});

export const runsCommand = defineCommand({
  name: 'runs',
  worksOnFullDisk: true,
  summary: 'the ledger\'s run history, newest first',
  cli: {
    options: [
      { flags: '--since <duration>', description: 'only runs started within this duration (24h, 7d) or since this time' },
      { flags: '--job <name>', description: `only runs of this job (${JOB_NAMES.join(', ')})` },
      { flags: '--limit <n>', description: 'at most n runs (default 100)', int: true },
    ],
    toArgs: (_, o) => ({ since: o.since, job: o.job, limit: o.limit }),
  },
  args: z.object({
    since: z.string().optional(),
    job: z.string().optional(),
    limit: z.int().positive().default(100),
  }),
  async run(ctx, args): Promise<{ runs: Run[] }> {
    let since: string | undefined;
    if (args.since) {
      const ms = parseDuration(args.since);
      if (ms === null) {
        const t = Date.parse(args.since);
        if (Number.isNaN(t)) throw new HbError('usage', `--since "${args.since}" is neither a duration nor a time`, 'use a duration such as 24h, 7d, 30m, or an ISO time');
        since = new Date(t).toISOString();
      } else {
        since = new Date(Date.now() - ms).toISOString();
      }
    }
    if (args.job !== undefined && !isJobName(args.job)) throw new HbError('usage', `--job "${printable(args.job)}" is not a job`, `use one of: ${JOB_NAMES.join(', ')}`);
    return { runs: ctx.ledger.listRuns({ since, job: args.job, limit: args.limit }) };
  },
  render(doc, view) {
    if (doc.runs.length === 0) return 'no runs recorded';
    const rows = doc.runs.map((r) => [
      String(r.id),
      formatTime(r.startedAt, view.timeZone),
      r.job,
      r.trigger,
      r.status,
      r.finishedAt ? formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt)) : '-',
      r.error ? truncate(`${r.error.code}: ${r.error.message}`, 90) : r.backupId ? `backup ${r.backupId}` : '',
    ]);
    return table(['RUN', 'STARTED', 'JOB', 'TRIGGER', 'STATUS', 'TOOK', 'RESULT'], rows);
  },
});

export const ledgerRebuildCommand = defineCommand({
  name: 'ledger-rebuild',
  summary: 're-create the ledger\'s backups from the .meta.json sidecars in the backup directory, re-hashing each file (ok, corrupt or missing); an unreadable ledger is moved aside under a dated name first, never deleted; exit 1 when a file does not match or is gone',
  cli: {
    options: [{ flags: '--from-offsite <target>', description: 'from the recovery kits in this offsite target instead (a new server): backups whose file is not here are added as missing, restorable with --from offsite' }],
    toArgs: (_, o) => (o.fromOffsite !== undefined ? { fromOffsite: o.fromOffsite } : {}),
  },
  recoversLedger: true,
  grace: true,
  args: z.object({ fromOffsite: z.string().min(1).optional() }),
  async run(ctx, args): Promise<RebuildOutcome> {
    const { rebuildFromOffsite, rebuildFromSidecars } = await import('../backup/rebuild.js');
    const movedAside = ctx.ledger.movedAside ?? null;
    return args.fromOffsite === undefined ? rebuildFromSidecars(ctx, movedAside) : rebuildFromOffsite(ctx, args.fromOffsite, movedAside);
  },
  render(doc, view) {
    const lines: string[] = [];
    if (doc.movedAside) lines.push(`the unreadable ledger was moved aside to ${doc.movedAside} (kept, not deleted)`);
    const by = (st: string) => doc.added.filter((b) => b.status === st).length;
    lines.push(
      doc.fromOffsite
        ? `${doc.added.length} backup${doc.added.length === 1 ? '' : 's'} added from the recovery kits in offsite target "${doc.fromOffsite}" (${by('missing')} with no local file: restore them with --from offsite; ${by('ok')} whose file is here and matches; ${by('corrupt')} whose local file does not match); ${doc.alreadyKnown} already in the ledger`
        : `${doc.added.length} backup${doc.added.length === 1 ? '' : 's'} added from sidecars (${by('ok')} ok, ${by('corrupt')} corrupt: the file does not match, ${by('missing')} missing: the file is gone); ${doc.alreadyKnown} already in the ledger`,
    );
    if (doc.added.length) {
      lines.push('', table(['ID', 'CREATED', 'KIND', 'STATUS', 'SIZE', 'FILE'], doc.added.map((b) => [String(b.id), formatTime(b.createdAt, view.timeZone), b.kind, b.status, formatBytes(b.bytes), path.basename(b.file)])));
    }
    for (const b of doc.added) if (b.storage && !b.storage.complete) lines.push(`backup ${b.id}: Storage ${b.storage.summary}`);
    for (const u of doc.unreadable) lines.push(`not used: ${u.sidecar}: ${u.error}`);
    for (const f of doc.withoutSidecar) lines.push(`not added: ${f} has no .meta.json sidecar saying what it is`);
    if (doc.added.length || doc.alreadyKnown) lines.push('', 'the run history before the rebuild is not recoverable from sidecars; see hybrid-backup list');
    return lines.join('\n');
  },
  // From a target, a backup without its local file is what is expected: only a local file that
  // does not match, or a kit that cannot be read, fails.
  exitCode: (doc) => (doc.added.some((b) => (doc.fromOffsite ? b.status === 'corrupt' : b.status !== 'ok')) || doc.unreadable.length ? 1 : 0),
});
