/** `restore <id|latest> --target <url> [--yes] [--create]` */
import { z } from 'zod';
import { restoreBackup, type RestoreResult } from '../backup/restore.js';
import { formatBytes, formatCount, formatDuration } from '../util/format.js';
import { defineCommand } from './command.js';

export const restoreCommand = defineCommand({
  name: 'restore',
  meansDatabase: true,
  grace: true,
  summary: 'restore a backup into a database (checksum first; all or nothing)',
  args: z.object({
    backup: z.string().default('latest'),
    target: z.string().min(1),
    yes: z.boolean().default(false),
    create: z.boolean().default(false),
    from: z.enum(['local', 'offsite']).default('local'),
    offsiteTarget: z.string().min(1).optional(),
  }),
  async run(ctx, args): Promise<RestoreResult> {
    return restoreBackup(ctx, args);
  },
  render(r) {
    return [
      `restored backup ${r.backupId} into database "${r.database}"${r.createdDatabase ? ' (created)' : ''}`,
      `  from    ${r.from === 'offsite' ? `offsite copy in "${r.offsiteTarget}" ` : ''}${r.file} (${formatBytes(r.bytes)}, ${r.from === 'offsite' ? 'both checksums verified' : 'checksum verified'})`,
      `  into    ${r.target}`,
      `  content ${formatCount(r.tables)} tables, ${formatCount(r.rows)} rows, in one transaction`,
      `  took    ${formatDuration(r.durationMs)}`,
      ...(r.fidelity === null
        ? ['  checked row counts only: this backup recorded no data digests or catalog fingerprint (an older version took it)']
        : r.fidelity.differences.length === 0
          ? [`  checked the data of ${formatCount(r.fidelity.tablesDigested)} tables byte for byte${r.fidelity.objects ? ` and ${formatCount(r.fidelity.objects)} catalog objects` : ''}: as the backup recorded them`]
          : [`  DIFFERS from what the backup recorded (${r.fidelity.differences.length}):`, ...r.fidelity.differences.map((d) => `    ${d}`)]),
    ].join('\n');
  },
  exitCode: (r) => (r.fidelity && r.fidelity.differences.length ? 1 : 0),
});
