/** `schedule`: the jobs, their cron expressions, next runs and last results. */
import { z } from 'zod';
import type { Run } from '../domain/types.js';
import { JOBS } from '../jobs/registry.js';
import { nextRunOf } from '../config/schedule.js';
import { formatAge, formatTime, table } from '../util/format.js';
import { defineCommand } from './command.js';

export interface ScheduleDoc {
  service: { running: boolean; pid?: number; startedAt?: string };
  timezone: string;
  jobs: Array<{
    name: string;
    title: string;
    cron: string;
    /** False when this configuration switches the job off (e.g. supabase.enabled: false). */
    enabled: boolean;
    nextRun: string | null;
    running: boolean;
    lastRun: Pick<Run, 'id' | 'status' | 'trigger' | 'startedAt' | 'finishedAt' | 'error'> | null;
  }>;
}

export const scheduleCommand = defineCommand({
  name: 'schedule',
  summary: 'the scheduled jobs: cron, next run, last result',
  args: z.object({}),
  async run(ctx): Promise<ScheduleDoc> {
    const svc = ctx.service;
    return {
      service: svc ? { running: true, pid: svc.pid, startedAt: svc.startedAt } : { running: false },
      timezone: ctx.config.timezone,
      jobs: JOBS.map((j) => {
        const live = svc?.jobState(j.name);
        const last = ctx.ledger.lastRun(j.name, ['schedule', 'startup']);
        const enabled = j.enabled?.(ctx.config) ?? true;
        return {
          name: j.name,
          title: j.title,
          cron: ctx.config.schedules[j.name],
          enabled,
          nextRun: !enabled ? null : live ? live.nextRun : (nextRunOf(ctx.config, j.name)?.toISOString() ?? null),
          running: live?.running ?? false,
          lastRun: last ? { id: last.id, status: last.status, trigger: last.trigger, startedAt: last.startedAt, finishedAt: last.finishedAt, ...(last.error ? { error: last.error } : {}) } : null,
        };
      }),
    };
  },
  render(doc, view) {
    const head = doc.service.running
      ? `service running (pid ${doc.service.pid}, since ${formatTime(doc.service.startedAt, view.timeZone)}); times in ${doc.timezone}`
      : `no service is running: these are the configured times (start it with npm start); times in ${doc.timezone}`;
    const rows = doc.jobs.map((j) => [
      j.name,
      j.cron,
      !j.enabled ? 'off' : j.running ? 'running now' : j.nextRun ? `${formatTime(j.nextRun, view.timeZone)} (${formatAge(j.nextRun, view.now)})` : '-',
      j.lastRun ? `${j.lastRun.status} ${formatAge(j.lastRun.startedAt, view.now)}${j.lastRun.error ? `: ${j.lastRun.error.message}` : ''}` : 'never run',
    ]);
    return `${head}\n\n${table(['JOB', 'CRON', 'NEXT RUN', 'LAST RESULT'], rows)}`;
  },
});
