/** `restore-test [id|latest]`: a restore drill now. */
import { z } from 'zod';
import { restoreDrill } from '../backup/drill.js';
import type { DrillResult } from '../domain/types.js';
import { formatCount, formatDuration } from '../util/format.js';
import { defineCommand } from './command.js';

export const restoreTestCommand = defineCommand({
  name: 'restore-test',
  summary: 'restore a backup into a scratch database, check every table\'s row count, drop it',
  args: z.object({ which: z.string().default('latest') }),
  async run(ctx, args): Promise<DrillResult> {
    return restoreDrill(ctx, args.which);
  },
  render(r) {
    const head = r.ok
      ? `drill of backup ${r.backupId} PASSED: ${formatCount(r.tables)} tables, ${formatCount(r.rowsChecked)} rows exactly as the dump recorded, in ${formatDuration(r.durationMs)}`
      : `drill of backup ${r.backupId} FAILED${r.error ? `: ${r.error.message}` : ''}`;
    const lines = [head];
    for (const m of r.mismatches) lines.push(m.actual === null ? `  ${m.table}: ${m.error}` : `  ${m.table}: ${formatCount(m.actual)} rows restored, the dump recorded ${formatCount(m.expected)}`);
    if (r.amcheck !== 'off') lines.push(`  pg_amcheck: ${r.amcheck}`);
    lines.push(`  scratch database ${r.scratchDatabase} dropped`);
    return lines.join('\n');
  },
  exitCode: (r) => (r.ok ? 0 : 1),
});
