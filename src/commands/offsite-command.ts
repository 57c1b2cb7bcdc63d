/** `offsite-sync`: upload now every backup that lacks a good offsite copy. */
import { z } from 'zod';
import { HbError } from '../domain/errors.js';
import { type SyncOutcome, syncOffsite } from '../offsite/sync.js';
import { defineCommand } from './command.js';

export const offsiteSyncCommand = defineCommand({
  name: 'offsite-sync',
  grace: true,
  summary: 'upload every ok backup that has no good offsite copy yet (normally done after each backup)',
  args: z.object({}),
  async run(ctx): Promise<SyncOutcome> {
    const out = await syncOffsite(ctx);
    if (!out) throw new HbError('offsite-off', 'offsite copies are not configured', 'set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (and keep offsite.enabled true)');
    return out;
  },
  render(o) {
    if (o.uploaded.length === 0 && o.failed.length === 0) return 'every ok backup already has its offsite copy';
    const lines = [`uploaded ${o.uploaded.length} backup${o.uploaded.length === 1 ? '' : 's'}${o.uploaded.length ? `: ${o.uploaded.join(', ')}` : ''}`];
    for (const f of o.failed) lines.push(`FAILED backup ${f.id}: ${f.error}`);
    return lines.join('\n');
  },
  exitCode: (o) => (o.failed.length ? 1 : 0),
});
