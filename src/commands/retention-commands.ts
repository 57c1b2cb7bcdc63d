/** `prune [--dry-run] [--as-of <time>]`, `pin <id>`, `unpin <id>` */
import path from 'node:path';
import { z } from 'zod';
import { HbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import { formatBytes, formatTime, table } from '../util/format.js';
import { defineCommand } from './command.js';

type Deleted = Backup & { reason: string };
type Kept = Backup & { keptBecause: string[] };

export interface PruneDoc {
  deleted: Deleted[];
  kept: Kept[];
  dryRun: boolean;
  asOf: string;
  /** Backups whose file is gone from disk (status `missing`): counted for nothing. */
  missing: Backup[];
  notes: string[];
  /** Storage files no kept backup references, removed from BACKUP_DIR/storage; null when not collected. */
  storageFiles: { removed: number; bytes: number; referenced: number } | null;
}

export const pruneCommand = defineCommand({
  name: 'prune',
  grace: true,
  summary: 'apply retention: delete ok backups past retention.days (pre-change: retention.preChangeDays), never the newest retention.minKeep ok ones or pinned ones; never while the newest scheduled backup failed',
  cli: {
    options: [
      { flags: '--dry-run', description: 'show what would be deleted; change nothing' },
      { flags: '--as-of <time>', description: 'plan as if it were this ISO-8601 time (planning only: implies --dry-run)' },
    ],
    toArgs: (_, o) => ({ dryRun: !!o.dryRun, asOf: o.asOf }),
  },
  args: z.object({
    dryRun: z.boolean().default(false),
    asOf: z
      .string()
      .refine((s) => !Number.isNaN(Date.parse(s)), { message: 'is not an ISO-8601 time such as 2026-12-24T03:00:00Z' })
      .optional(),
  }),
  async run(ctx, args): Promise<PruneDoc> {
    const { prune } = await import('../backup/retention.js');
    // --as-of is for planning: it never deletes (a time in the future would delete far more than now).
    const { plan, dryRun, missing, notes, storageFiles } = await prune(ctx, { dryRun: args.dryRun || !!args.asOf, asOf: args.asOf ? new Date(args.asOf) : undefined });
    return {
      deleted: plan.delete.map((d) => ({ ...d.backup, reason: d.reason })),
      kept: plan.keep.map((k) => ({ ...k.backup, keptBecause: k.reasons })),
      dryRun,
      asOf: plan.asOf,
      missing,
      notes,
      storageFiles: storageFiles ?? null,
    };
  },
  render(doc, view) {
    const lines: string[] = [];
    for (const b of doc.missing) lines.push(`MISSING: backup ${b.id} (${b.kind}, ${formatTime(b.createdAt, view.timeZone)}): its file ${b.file} is gone from disk`);
    for (const n of doc.notes) lines.push(`note: ${n}`);
    if (lines.length) lines.push('');
    const verb = doc.dryRun ? 'would delete' : 'deleted';
    if (doc.deleted.length) {
      lines.push(`${verb} ${doc.deleted.length} backup${doc.deleted.length === 1 ? '' : 's'} (${formatBytes(doc.deleted.reduce((a, b) => a + b.bytes, 0))}):`);
      lines.push(table(['ID', 'CREATED', 'KIND', 'SIZE', 'WHY'], doc.deleted.map((b) => [String(b.id), formatTime(b.createdAt, view.timeZone), b.kind, formatBytes(b.bytes), b.reason])));
    } else {
      lines.push(`nothing to ${doc.dryRun ? 'delete' : 'prune'} as of ${formatTime(doc.asOf, view.timeZone)}`);
    }
    lines.push('', `keeping ${doc.kept.length} ok backup${doc.kept.length === 1 ? '' : 's'}:`);
    lines.push(table(['ID', 'CREATED', 'KIND', 'FILE', 'KEPT BECAUSE'], doc.kept.map((b) => [String(b.id), formatTime(b.createdAt, view.timeZone), b.kind, path.basename(b.file), b.keptBecause.join('; ')])));
    if (doc.storageFiles?.removed) lines.push('', `removed ${doc.storageFiles.removed} Storage file${doc.storageFiles.removed === 1 ? '' : 's'} no kept backup references (${formatBytes(doc.storageFiles.bytes)})`);
    if (doc.dryRun) lines.push('', 'dry run: nothing was changed');
    return lines.join('\n');
  },
});

const pinArgs = z.object({ id: z.string() });

function setPinned(pinned: boolean) {
  return async (ctx: Parameters<typeof pruneCommand.run>[0], args: z.output<typeof pinArgs>): Promise<Backup> => {
    const { resolveBackup } = await import('../backup/verify.js');
    const b = resolveBackup(ctx, args.id);
    if (pinned && b.status !== 'ok') throw new HbError('backup-not-restorable', `backup ${b.id} is ${b.status}; only ok backups can be pinned`);
    ctx.ledger.setPinned(b.id, pinned);
    ctx.log.info(`backup ${b.id} ${pinned ? 'pinned' : 'unpinned'}`, { backupId: b.id });
    return ctx.ledger.getBackup(b.id)!;
  };
}

export const pinCommand = defineCommand({
  name: 'pin',
  summary: 'keep a backup whatever its age; retention never deletes a pinned backup',
  cli: {
    arguments: [{ name: '<id>', description: 'backup id' }],
    toArgs: ([id]) => ({ id }),
  },
  args: pinArgs,
  run: setPinned(true),
  render: (b: Backup) => `backup ${b.id} pinned: retention will keep ${path.basename(b.file)} until it is unpinned`,
});

export const unpinCommand = defineCommand({
  name: 'unpin',
  summary: 'let retention treat a pinned backup normally again',
  cli: {
    arguments: [{ name: '<id>', description: 'backup id' }],
    toArgs: ([id]) => ({ id }),
  },
  args: pinArgs,
  run: setPinned(false),
  render: (b: Backup) => `backup ${b.id} unpinned: retention applies to ${path.basename(b.file)} again`,
});
