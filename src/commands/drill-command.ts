/** `restore-test [id|latest]`: a restore drill now. */
import { z } from 'zod';
import type { DrillOutcome } from '../backup/drill.js';
import { formatCount, formatDuration, plural } from '../util/format.js';
import { defineCommand } from './command.js';

export const restoreTestCommand = defineCommand({
  name: 'restore-test',
  meansDatabase: true,
  grace: true,
  summary: 'restore drill: restore a backup on a throwaway PostgreSQL of its own (or RESTORE_TEST_DATABASE_URL\'s server), compare rows, data, sequences and the catalog with what the backup recorded, remove it; exit 1 when anything differs',
  cli: {
    arguments: [{ name: '[which]', description: 'a backup id, or latest', default: 'latest' }],
    options: [{ flags: '--from <where>', description: 'local (the file in BACKUP_DIR), offsite (the newest copy in any target) or offsite:<target>: the copy is downloaded, decrypted and checked first', default: 'local' }],
    toArgs: ([which], o) => ({ which, from: o.from }),
  },
  args: z.object({
    which: z.string().default('latest'),
    from: z
      .string()
      .regex(/^(local|offsite(:[a-z0-9][a-z0-9-]{0,31})?)$/, { message: 'is not local, offsite or offsite:<target name>' })
      .default('local'),
  }),
  async run(ctx, args): Promise<DrillOutcome> {
    const { restoreDrill } = await import('../backup/drill.js');
    const [where, target] = args.from.split(':');
    return restoreDrill(ctx, args.which, where === 'offsite' ? { offsite: true, ...(target ? { target } : {}) } : { offsite: false });
  },
  render(r) {
    const f = r.fidelity;
    const proved = [`${plural(r.tables, 'table')}, ${plural(r.rowsChecked, 'row')} exactly as the dump recorded`];
    if (f.tablesDigested) proved.push(`the data of ${plural(f.tablesDigested, 'table')} byte for byte`);
    if (f.objects) proved.push(`${formatCount(f.objects)} catalog objects as they were`);
    const copy = r.source && r.source !== 'local' ? ` (its copy in "${r.source.slice('offsite:'.length)}", downloaded, decrypted and checked)` : '';
    const head = r.ok ? `drill of backup ${r.backupId}${copy} PASSED: ${proved.join('; ')}, in ${formatDuration(r.durationMs)}` : `drill of backup ${r.backupId}${copy} FAILED${r.error ? `: ${r.error.message}` : ''}`;
    const lines = [head];
    if (r.error?.hint && !r.ok) lines.push(`  hint: ${r.error.hint}`);
    for (const m of r.mismatches) lines.push(m.actual === null ? `  ${m.table}: ${m.error}` : `  ${m.table}: ${plural(m.actual, 'row')} restored, the dump recorded ${formatCount(m.expected)}`);
    for (const d of f.differences) lines.push(`  ${d}`);
    for (const n of f.notes ?? []) lines.push(`  note: ${n}`);
    if (r.amcheck !== 'off') lines.push(`  pg_amcheck: ${r.amcheck}`);
    if (r.scratchDropped === false) {
      lines.push(`  scratch database ${r.scratchDatabase} was NOT dropped: ${r.scratchDropError ?? 'the drop failed'}`);
      lines.push(`  hint: drop it by hand: psql "$RESTORE_TEST_DATABASE_URL" -c 'DROP DATABASE "${r.scratchDatabase}"' (the next drill also tries)`);
    } else if (r.scratchDropped === null) lines.push('  no scratch database was created');
    else lines.push(r.server === 'throwaway' ? `  restored on a throwaway PostgreSQL server, now removed` : `  scratch database ${r.scratchDatabase} dropped`);
    return lines.join('\n');
  },
  exitCode: (r) => (r.ok ? 0 : 1),
});
