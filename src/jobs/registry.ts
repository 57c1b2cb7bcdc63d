/**
 * The job registry: the one place scheduled jobs are listed. Each job has the name of its
 * `schedules.<name>` cron expression and its runs in the ledger, whether a missed run is caught
 * up at start-up, and a plain function that does the work (recording its own run).
 */
import { prune } from '../backup/retention.js';
import { takeBackup } from '../backup/take-backup.js';
import type { Config } from '../config/schema.js';
import type { RunContext } from '../context.js';

export type JobName = keyof Config['schedules'];

export interface Job {
  name: JobName;
  /** What it does, for `schedule` and logs. */
  title: string;
  /** A run whose time passed while the service was down runs once at start-up. */
  catchUp: boolean;
  /** Does the work; records its own run; resolves with a one-line summary. */
  run(ctx: RunContext): Promise<string>;
}

export const JOBS: readonly Job[] = [
  {
    name: 'backup',
    title: 'daily local backup',
    catchUp: true,
    async run(ctx) {
      const b = await takeBackup(ctx, { kind: 'daily' });
      return `backup ${b.id} ok (${b.bytes} bytes)`;
    },
  },
  {
    name: 'prune',
    title: 'retention',
    catchUp: true,
    async run(ctx) {
      const { plan } = await prune(ctx, { dryRun: false });
      return `pruned ${plan.delete.length}, kept ${plan.keep.length}`;
    },
  },
];

export function findJob(name: string): Job | undefined {
  return JOBS.find((j) => j.name === name);
}
