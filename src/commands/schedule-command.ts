/** `schedule`: the jobs, their cron expressions, next runs and last results. */
import { z } from 'zod';
import type { Run } from '../domain/types.js';
import { formatAge, formatTime, table } from '../util/format.js';
import { pingService } from '../service/ping.js';
import { defineCommand } from './command.js';

export interface ScheduleDoc {
  /**
   * Whether a service runs on this backup directory's socket. `viaDirect`: this document was made
   * in-process (--direct) while a service answers: the next run times are this configuration's.
   */
  service: { running: boolean; pid?: number; startedAt?: string; viaDirect?: boolean };
  /** Schedules the configuration allows but that do not do what their job is for. */
  warnings: string[];
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
  worksOnFullDisk: true,
  summary: 'the scheduled jobs: cron expression, next run, last result',
  args: z.object({}),
  async run(ctx): Promise<ScheduleDoc> {
    const { JOBS } = await import('../jobs/registry.js');
    const { nextRunOf } = await import('../config/schedule.js');
    const svc = ctx.service;
    // In-process, a service may still be running on this socket (--direct): say so.
    const other = svc ? null : await pingService(ctx.config.socket.path);
    return {
      service: svc ? { running: true, pid: svc.pid, startedAt: svc.startedAt } : other ? { running: true, pid: other.pid, startedAt: other.startedAt, viaDirect: true } : { running: false },
      warnings: ctx.config.warnings,
      timezone: ctx.config.timezone,
      jobs: JOBS.map((j) => {
        const live = svc?.jobState(j.name);
        // Whatever started it: a prune or drill run from the command line is the job's last result too.
        const last = ctx.ledger.lastRun(j.name);
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
    const head = !doc.service.running
      ? `no service is running: these are the configured times (start it with npm start); times in ${doc.timezone}`
      : doc.service.viaDirect
        ? `service running (pid ${doc.service.pid}, since ${formatTime(doc.service.startedAt, view.timeZone)}); shown from this process's configuration (--direct); times in ${doc.timezone}`
        : `service running (pid ${doc.service.pid}, since ${formatTime(doc.service.startedAt, view.timeZone)}); times in ${doc.timezone}`;
    const rows = doc.jobs.map((j) => [
      j.name,
      j.cron,
      !j.enabled ? 'off' : j.running ? 'running now' : j.nextRun ? `${formatTime(j.nextRun, view.timeZone)} (${formatAge(j.nextRun, view.now)})` : '-',
      j.lastRun ? `${j.lastRun.status} ${formatAge(j.lastRun.startedAt, view.now)} (${j.lastRun.trigger})${j.lastRun.error ? `: ${j.lastRun.error.message}` : ''}` : 'never run',
    ]);
    const warnings = doc.warnings.map((w) => `\nwarning: ${w}`).join('');
    return `${head}\n\n${table(['JOB', 'CRON', 'NEXT RUN', 'LAST RESULT'], rows)}${warnings}`;
  },
});
