/** `restore-test [id|latest]`: a restore drill now. */
import { z } from 'zod';
import { type DrillOutcome, restoreDrill } from '../backup/drill.js';
import { formatCount, formatDuration } from '../util/format.js';
import { defineCommand } from './command.js';

export const restoreTestCommand = defineCommand({
  name: 'restore-test',
  meansDatabase: true,
  grace: true,
  summary: 'restore a backup into a scratch database, check every table\'s row count, drop it',
  args: z.object({ which: z.string().default('latest') }),
  async run(ctx, args): Promise<DrillOutcome> {
    return restoreDrill(ctx, args.which);
  },
  render(r) {
    const head = r.ok
      ? `drill of backup ${r.backupId} PASSED: ${formatCount(r.tables)} tables, ${formatCount(r.rowsChecked)} rows exactly as the dump recorded, in ${formatDuration(r.durationMs)}`
      : `drill of backup ${r.backupId} FAILED${r.error ? `: ${r.error.message}` : ''}`;
    const lines = [head];
    for (const m of r.mismatches) lines.push(m.actual === null ? `  ${m.table}: ${m.error}` : `  ${m.table}: ${formatCount(m.actual)} rows restored, the dump recorded ${formatCount(m.expected)}`);
    if (r.amcheck !== 'off') lines.push(`  pg_amcheck: ${r.amcheck}`);
    if (r.scratchDropped === false) {
      lines.push(`  scratch database ${r.scratchDatabase} was NOT dropped: ${r.scratchDropError ?? 'the drop failed'}`);
      lines.push(`  hint: drop it by hand: psql "$RESTORE_TEST_DATABASE_URL" -c 'DROP DATABASE "${r.scratchDatabase}"' (the next drill also tries)`);
    } else if (r.scratchDropped === null) lines.push('  no scratch database was created');
    else lines.push(`  scratch database ${r.scratchDatabase} dropped`);
    return lines.join('\n');
  },
  exitCode: (r) => (r.ok ? 0 : 1),
});
