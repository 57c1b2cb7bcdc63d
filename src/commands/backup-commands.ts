/** `manual` and `pre-change`: take a local backup now. */
import { z } from 'zod';
import { emptyDumpWarning, validateDescription } from '../backup/describe.js';
import { HbError } from '../domain/errors.js';
import type { Backup, OffsiteCopy } from '../domain/types.js';
import { formatBytes, formatDuration, formatTime, plural, printable } from '../util/format.js';
import { defineCommand, type RenderView } from './command.js';

/** The description argument, checked before anything is done (exit 2 and nothing recorded when bad). */
function description(required: boolean) {
  return z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      try {
        validateDescription(v, required);
      } catch (e) {
        if (!(e instanceof HbError)) throw e;
        ctx.addIssue({ code: 'custom', message: e.message, params: { code: e.code, hint: e.hint } });
      }
    });
}

/** The backup document of `manual` and `pre-change`: the backup, and what the operator must know about it. */
export type BackupDoc = Backup & { warnings: string[] };

function withWarnings(b: Backup): BackupDoc {
  const warnings = b.status === 'ok' && b.tableCount === 0 ? [emptyDumpWarning(b.database)] : [];
  return { ...b, warnings };
}

function renderBackup(b: BackupDoc, view: RenderView): string {
  const lines = [
    `backup ${b.id} ok (${b.kind}${b.description ? `: ${printable(b.description)}` : ''})`,
    `  file     ${b.file}`,
    `  size     ${formatBytes(b.bytes)}${b.compression === 'gzip' ? ' (gzip)' : ''}`,
    `  sha256   ${b.sha256}`,
    `  created  ${formatTime(b.createdAt, view.timeZone)}, took ${formatDuration(b.durationMs)}`,
    `  content  ${plural(b.tableCount, 'table')}, ${plural(b.rowCount, 'row')} from ${b.database ?? '?'} (PostgreSQL ${b.serverVersion ?? '?'})`,
  ];
  if (b.storage) lines.push(`  files    ${b.storage.summary}`);
  // Every target's copy, each in its own state (the summary `offsite` names only the worst one).
  const copies: Array<OffsiteCopy & { encrypted?: boolean }> = b.offsiteCopies.length > 0 ? b.offsiteCopies : b.offsite ? [b.offsite] : [];
  for (const c of copies) lines.push(`  offsite  ${c.status === 'uploaded' ? `copied to ${c.location}${c.encrypted ? ' (encrypted)' : ''}` : `${c.status}: ${c.error ?? ''} (retried at the next run)`}`);
  for (const w of b.warnings ?? []) lines.push(`  WARNING  ${w}`);
  return lines.join('\n');
}

export const manualCommand = defineCommand({
  name: 'manual',
  summary: 'take a local backup now (kind manual)',
  cli: {
    arguments: [{ name: '[description...]', description: 'what this backup is for (optional)' }],
    toArgs: ([d]) => ({ description: (d as string[]).length ? (d as string[]).join(' ') : undefined }),
  },
  isBackup: true,
  meansDatabase: true,
  grace: true,
  args: z.object({ description: description(false) }),
  async run(ctx, args): Promise<BackupDoc> {
    const { takeBackup } = await import('../backup/take-backup.js');
    const { afterLocalBackup } = await import('../offsite/sync.js');
    const b = await takeBackup(ctx, { kind: 'manual', description: args.description ?? null });
    await afterLocalBackup(ctx, b);
    return withWarnings(ctx.ledger.getBackup(b.id)!);
  },
  render: renderBackup,
});

export const preChangeCommand = defineCommand({
  name: 'pre-change',
  summary: 'take a backup before a risky change; exits 0 only once the file is durable and recorded',
  cli: {
    arguments: [{ name: '[description...]', description: 'what is about to change (1-500 characters, required)' }],
    help: 'Example, in a migration script:\n  npm run backup:pre-change "Add orders.discount column" && npm run migrate',
    toArgs: ([d]) => ({ description: (d as string[]).length ? (d as string[]).join(' ') : undefined }),
  },
  isBackup: true,
  meansDatabase: true,
  grace: true,
  args: z.object({ description: description(true) }),
  async run(ctx, args): Promise<BackupDoc> {
    const { takeBackup } = await import('../backup/take-backup.js');
    const { afterLocalBackup } = await import('../offsite/sync.js');
    const b = await takeBackup(ctx, { kind: 'pre-change', description: args.description });
    await afterLocalBackup(ctx, b);
    return withWarnings(ctx.ledger.getBackup(b.id)!);
  },
  render: renderBackup,
});
