/** `restore <id|latest> --target <url> [--yes] [--create]` */
import { z } from 'zod';
import type { RestoreResult } from '../backup/restore.js';
import type { StorageRestoreDoc } from '../backup/storage-files.js';
import { formatBytes, formatCount, formatDuration, plural } from '../util/format.js';
import { HbError } from '../domain/errors.js';
import { defineCommand } from './command.js';

export const restoreCommand = defineCommand({
  name: 'restore',
  meansDatabase: true,
  grace: true,
  summary: 'restore a backup into a database: checksum first, then psql in one transaction',
  cli: {
    arguments: [{ name: '<backup>', description: 'a backup id, or latest' }],
    options: [
      { flags: '--target <url>', description: 'connection string of the database to restore into', required: true },
      { flags: '--yes', description: 'allow restoring into the database the backup was taken from' },
      { flags: '--create', description: 'create the target database if it does not exist' },
      { flags: '--from <where>', description: 'restore the local file, or an offsite copy (downloaded, decrypted, checked); works on a fresh install with an empty BACKUP_DIR', choices: ['local', 'offsite'], default: 'local' },
      { flags: '--offsite-target <name>', description: 'with --from offsite: the target to restore from (default: the newest copy in any configured target)' },
      { flags: '--storage-to <url>', description: 'then restore the backup\'s Supabase Storage files into this project (its SUPABASE_URL); exit 1 unless every file is there (a backup whose capture missed files never restores whole)' },
      { flags: '--storage-key-env <name>', description: 'with --storage-to: the environment variable holding the target project\'s service-role key', default: 'SUPABASE_TARGET_SERVICE_ROLE_KEY' },
    ],
    help: 'Examples:\n  hybrid-backup restore latest --target postgresql://postgres@127.0.0.1:5432/app_copy --create\n  hybrid-backup restore latest --from offsite --offsite-target b2 --target postgresql://postgres@127.0.0.1:5432/app --create   (the server is gone)',
    toArgs: ([backup], o) => ({
      backup,
      target: o.target,
      yes: !!o.yes,
      create: !!o.create,
      from: o.from,
      ...(o.offsiteTarget !== undefined ? { offsiteTarget: o.offsiteTarget } : {}),
      ...(o.storageTo !== undefined ? { storageTo: o.storageTo, storageKeyEnv: o.storageKeyEnv } : {}),
    }),
  },
  args: z.object({
    backup: z.string().default('latest'),
    target: z.string().min(1),
    yes: z.boolean().default(false),
    create: z.boolean().default(false),
    from: z.enum(['local', 'offsite']).default('local'),
    offsiteTarget: z.string().min(1).optional(),
    storageTo: z.string().min(1).optional(),
    storageKeyEnv: z.string().min(1).optional(),
  }),
  async run(ctx, args): Promise<RestoreResult & { storage?: StorageRestoreDoc }> {
    const { storageTo, storageKeyEnv, ...req } = args;
    const { restoreBackup } = await import('../backup/restore.js');
    if (!storageTo) return restoreBackup(ctx, req);
    // Everything the files need is checked before the database is touched.
    const files = await import('../backup/storage-files.js');
    const { resolveBackup } = await import('../backup/verify.js');
    const to = files.storageTarget(ctx, storageTo, storageKeyEnv);
    if (req.from === 'offsite') {
      // The copy's manifest and every file the local store lacks come down (and are checked)
      // before the database is touched; then the database, then the files into the project.
      const src = await files.offsiteFilesForRestore(ctx, req.backup, req.offsiteTarget);
      if (src.fetched.failed.length) {
        const first = src.fetched.failed[0]!;
        throw new HbError(
          'storage-incomplete',
          `${src.fetched.failed.length} Storage file${src.fetched.failed.length === 1 ? '' : 's'} of backup ${src.backup.id} could not be brought back from "${src.target}" (first: ${first.sha256}: ${first.error}); the database was not touched`,
          'restore the database without --storage-to, then the files that can come back with `restore-storage --from offsite` (it names each one that cannot)',
        );
      }
      const r = await restoreBackup(ctx, { ...req, backup: String(src.backup.id), offsiteTarget: src.target });
      return { ...r, storage: await files.restoreBackupFiles(ctx, ctx.ledger.getBackup(r.backupId)!, to) };
    }
    await files.backupManifest(resolveBackup(ctx, req.backup));
    const r = await restoreBackup(ctx, req);
    return { ...r, storage: await files.restoreBackupFiles(ctx, ctx.ledger.getBackup(r.backupId)!, to) };
  },
  render(r) {
    return [
      `restored backup ${r.backupId} into database "${r.database}"${r.createdDatabase ? ' (created)' : ''}`,
      `  from    ${r.from === 'offsite' ? `offsite copy in "${r.offsiteTarget}" ` : ''}${r.file} (${formatBytes(r.bytes)}, ${r.from === 'offsite' ? 'both checksums verified' : 'checksum verified'})`,
      `  into    ${r.target}`,
      `  content ${plural(r.tables, 'table')}, ${plural(r.rows, 'row')}, in one transaction`,
      `  took    ${formatDuration(r.durationMs)}`,
      ...(r.fidelity === null
        ? ['  NOT CHECKED against the backup: it recorded no data digests or catalog fingerprint (an older version took it); the counts above are what it recorded, not what was restored']
        : r.fidelity.differences.length === 0
          ? [`  checked the data of ${plural(r.fidelity.tablesDigested, 'table')} byte for byte${r.fidelity.objects ? ` and ${formatCount(r.fidelity.objects)} catalog objects` : ''}: as the backup recorded them`]
          : [`  DIFFERS from what the backup recorded (${r.fidelity.differences.length}):`, ...r.fidelity.differences.map((d) => `    ${d}`)]),
      ...(r.storage ? ['', ...renderStorage(r.storage)] : []),
    ].join('\n');
  },
  exitCode: (r) => ((r.fidelity && r.fidelity.differences.length) || (r.storage && !wholeFiles(r.storage)) ? 1 : 0),
});

/**
 * Every file of the project is back: every file of the manifest restored, and the backup's own
 * capture whole. A capture that missed files (gone, unreadable, a row without its file) restores
 * what it holds, but the project is not whole: exit 1, whatever came back.
 */
function wholeFiles(d: StorageRestoreDoc): boolean {
  return d.complete && d.backupComplete;
}

function renderStorage(d: StorageRestoreDoc): string[] {
  const lines = [
    `${wholeFiles(d) ? 'restored' : 'INCOMPLETE: restored'} the Storage files of backup ${d.backupId} into ${d.target}`,
    `  files   ${d.objects} (${d.uploaded} uploaded, ${d.skipped} already there with the same digest${d.failed.length ? `, ${d.failed.length} FAILED` : ''})`,
    `  buckets ${[...d.buckets.created.map((x) => `${x} (created)`), ...d.buckets.updated.map((x) => `${x} (settings set)`), ...d.buckets.unchanged].join(', ') || 'none'}`,
  ];
  for (const f of d.failed.slice(0, 20)) lines.push(`  FAILED  ${f.bucket}/${f.path}: ${f.error}`);
  if (d.failed.length > 20) lines.push(`  … and ${d.failed.length - 20} more`);
  if (!d.backupComplete) lines.push(`  the backup's own capture was incomplete, so the project's files are not all here: ${d.backupSummary}`);
  return lines;
}

/** `restore-storage <backup> --storage-to <url>`: the backup's Storage files alone. */
export const restoreStorageCommand = defineCommand({
  name: 'restore-storage',
  grace: true,
  summary: 'restore a backup\'s Supabase Storage files (buckets with their settings, every file with its content type and metadata, each SHA-256 checked) into a project; resumable',
  cli: {
    arguments: [{ name: '<backup>', description: 'a backup id, or latest' }],
    options: [
      { flags: '--storage-to <url>', description: 'the target project\'s URL (its SUPABASE_URL)', required: true },
      { flags: '--storage-key-env <name>', description: 'the environment variable holding the target project\'s service-role key', default: 'SUPABASE_TARGET_SERVICE_ROLE_KEY' },
      { flags: '--from <where>', description: 'the files of this BACKUP_DIR\'s store, or of an offsite copy (the manifest and the files the store lacks are downloaded, decrypted and checked first)', choices: ['local', 'offsite'], default: 'local' },
      { flags: '--offsite-target <name>', description: 'with --from offsite: the target to take them from (default: the newest copy in any configured target)' },
    ],
    help: 'Examples:\n  SUPABASE_TARGET_SERVICE_ROLE_KEY=… hybrid-backup restore-storage latest --storage-to https://<new-ref>.supabase.co\n  SUPABASE_TARGET_SERVICE_ROLE_KEY=… hybrid-backup restore-storage latest --from offsite --offsite-target b2 --storage-to https://<new-ref>.supabase.co   (the server is gone)',
    toArgs: ([backup], o) => ({ backup, storageTo: o.storageTo, storageKeyEnv: o.storageKeyEnv, from: o.from, ...(o.offsiteTarget !== undefined ? { offsiteTarget: o.offsiteTarget } : {}) }),
  },
  args: z.object({
    backup: z.string().default('latest'),
    storageTo: z.string().min(1),
    storageKeyEnv: z.string().min(1).optional(),
    from: z.enum(['local', 'offsite']).default('local'),
    offsiteTarget: z.string().min(1).optional(),
  }),
  async run(ctx, args): Promise<StorageRestoreDoc> {
    const files = await import('../backup/storage-files.js');
    const to = files.storageTarget(ctx, args.storageTo, args.storageKeyEnv);
    if (args.from === 'local') {
      if (args.offsiteTarget !== undefined) throw new HbError('usage', '--offsite-target goes with --from offsite', 'add --from offsite, or leave --offsite-target out');
      const { resolveBackup } = await import('../backup/verify.js');
      return files.restoreBackupFiles(ctx, resolveBackup(ctx, args.backup), to);
    }
    const src = await files.offsiteFilesForRestore(ctx, args.backup, args.offsiteTarget);
    return files.restoreBackupFiles(ctx, src.backup, to);
  },
  render: (d) => renderStorage(d).join('\n'),
  exitCode: (d) => (wholeFiles(d) ? 0 : 1),
});
