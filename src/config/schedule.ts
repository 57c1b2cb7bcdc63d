/** Reading cron schedules: next and previous run times of a job in the configured zone. */
import { Cron } from 'croner';
import { cronZone } from '../util/time-zone.js';
import type { Config, ScheduleName } from './schema.js';

export function cronFor(config: Config, job: ScheduleName): Cron {
  return new Cron(config.schedules[job], { ...cronZone(config.timezone), paused: true });
}

export function nextRunOf(config: Config, job: ScheduleName, after = new Date()): Date | null {
  const c = cronFor(config, job);
  try {
    return c.nextRun(after);
  } finally {
    c.stop();
  }
}

/** The most recent time the job was due, at or before `ref`. */
export function previousRunOf(config: Config, job: ScheduleName, ref = new Date()): Date | null {
  const c = cronFor(config, job);
  try {
    return c.previousRuns(1, ref)[0] ?? null;
  } finally {
    c.stop();
  }
}
