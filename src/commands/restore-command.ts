/** `restore <id|latest> --target <url> [--yes] [--create]` */
import { z } from 'zod';
import type { RestoreResult } from '../backup/restore.js';
import { formatBytes, formatCount, formatDuration, plural } from '../util/format.js';
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
    ],
    help: 'Examples:\n  hybrid-backup restore latest --target postgresql://postgres@127.0.0.1:5432/app_copy --create\n  hybrid-backup restore latest --from offsite --offsite-target b2 --target postgresql://postgres@127.0.0.1:5432/app --create   (the server is gone)',
    toArgs: ([backup], o) => ({
      backup,
      target: o.target,
      yes: !!o.yes,
      create: !!o.create,
      from: o.from,
      ...(o.offsiteTarget !== undefined ? { offsiteTarget: o.offsiteTarget } : {}),
    }),
  },
  args: z.object({
    backup: z.string().default('latest'),
    target: z.string().min(1),
    yes: z.boolean().default(false),
    create: z.boolean().default(false),
    from: z.enum(['local', 'offsite']).default('local'),
    offsiteTarget: z.string().min(1).optional(),
  }),
  async run(ctx, args): Promise<RestoreResult> {
    const { restoreBackup } = await import('../backup/restore.js');
    return restoreBackup(ctx, args);
  },
  render(r) {
    return [
      `restored backup ${r.backupId} into database "${r.database}"${r.createdDatabase ? ' (created)' : ''}`,
      `  from    ${r.from === 'offsite' ? `offsite copy in "${r.offsiteTarget}" ` : ''}${r.file} (${formatBytes(r.bytes)}, ${r.from === 'offsite' ? 'both checksums verified' : 'checksum verified'})`,
      `  into    ${r.target}`,
      `  content ${plural(r.tables, 'table')}, ${plural(r.rows, 'row')}, in one transaction`,
      `  took    ${formatDuration(r.durationMs)}`,
      ...(r.fidelity === null
        ? ['  checked row counts only: this backup recorded no data digests or catalog fingerprint (an older version took it)']
        : r.fidelity.differences.length === 0
          ? [`  checked the data of ${plural(r.fidelity.tablesDigested, 'table')} byte for byte${r.fidelity.objects ? ` and ${formatCount(r.fidelity.objects)} catalog objects` : ''}: as the backup recorded them`]
          : [`  DIFFERS from what the backup recorded (${r.fidelity.differences.length}):`, ...r.fidelity.differences.map((d) => `    ${d}`)]),
    ].join('\n');
  },
  exitCode: (r) => (r.fidelity && r.fidelity.differences.length ? 1 : 0),
});
