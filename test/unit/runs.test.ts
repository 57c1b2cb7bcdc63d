import { afterAll, describe, expect, it } from 'vitest';
import { HbError } from '../../src/domain/errors.js';
import type { Run } from '../../src/domain/types.js';
import { alertFor, JOB_NAMES, JOBS, RunScope } from '../../src/jobs/runs.js';
import { Ledger } from '../../src/ledger/ledger.js';
import { renderMetrics } from '../../src/monitor/metrics.js';
import { removeDir, tempDir } from '../helpers/cli.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

function ledger(): Ledger {
  const d = tempDir('hbruns');
  dirs.push(d);
  return Ledger.open(d);
}

const ctx = (l: Ledger, signal = new AbortController().signal) => ({ ledger: l, signal, trigger: 'cli' as const });

describe('RunScope', () => {
  it('records ok, failed and interrupted runs, and only the first ending counts', () => {
    const l = ledger();
    const ok = RunScope.start(ctx(l), 'verify', { which: 'all' });
    expect(l.getRun(ok.id)?.status).toBe('running');
    ok.ok({ checked: 3 });
    ok.fail(new Error('late'));
    expect(l.getRun(ok.id)).toMatchObject({ status: 'ok', details: { which: 'all', checked: 3 } });

    const failed = RunScope.start(ctx(l), 'prune');
    expect(failed.fail(new HbError('disk-full', 'no space')).code).toBe('disk-full');
    expect(l.getRun(failed.id)).toMatchObject({ status: 'failed', error: { code: 'disk-full', message: 'no space' } });

    // every code that means "stopped" is interrupted, whichever module threw it
    for (const code of ['aborted', 'dump-aborted', 'service-stopping'] as const) {
      const r = RunScope.start(ctx(l), 'restore');
      r.fail(new HbError(code, 'stopped'));
      expect(l.getRun(r.id)?.status, code).toBe('interrupted');
    }
    // and so is any error once the run's signal was aborted
    const ac = new AbortController();
    const r = RunScope.start(ctx(l, ac.signal), 'offsite-upload');
    ac.abort();
    r.failed({ code: 'offsite-failed', message: 'cut short' });
    expect(l.getRun(r.id)?.status).toBe('interrupted');
    l.close();
  });

  it('settles a job that threw: open runs end with its error; a failure before any run is not recorded', () => {
    const l = ledger();
    const job = ctx(l);
    const open = RunScope.start(job, 'backup');
    const err = new HbError('dump-failed', 'pg_dump exited with code 1');
    expect(RunScope.settle(job, err)).toBe(true);
    expect(l.getRun(open.id)).toMatchObject({ status: 'failed', error: { code: 'dump-failed' } });

    // a run that ended well, then a failure outside any run: the caller must record it
    const job2 = ctx(l);
    RunScope.start(job2, 'backup').ok();
    expect(RunScope.settle(job2, new HbError('offsite-failed', 'no target'))).toBe(false);
    // nothing started at all
    expect(RunScope.settle(ctx(l), new HbError('config-invalid', 'bad'))).toBe(false);
    // a failure the run recorded itself, thrown on
    const job3 = ctx(l);
    const s = RunScope.start(job3, 'monitor');
    const thrown = s.fail(new Error('boom'));
    expect(RunScope.settle(job3, thrown)).toBe(true);
    expect(l.getRun(s.id)?.error?.code).toBe('internal');
    l.close();
  });
});

describe('the job list', () => {
  const run = (job: string, status: Run['status'], code = 'x'): Run => ({ id: 1, job, trigger: 'schedule', status, startedAt: '2026-11-28T00:00:00Z', finishedAt: '2026-11-28T00:01:00Z', error: { code, message: 'why' } });

  it('gives every failing scheduled job an alert, and none for a shutdown or what an operator watches', () => {
    for (const job of ['backup', 'offsite-upload', 'prune', 'monitor', 'supabase-poll', 'restore-drill', 'verify'] as const) {
      expect(alertFor(run(job, 'failed')), job).not.toBeNull();
    }
    expect(alertFor(run('backup', 'interrupted'))?.event).toBe('backup-failed');
    expect(alertFor(run('prune', 'interrupted'))).toBeNull();
    expect(alertFor(run('backup', 'failed', 'service-stopping'))).toBeNull();
    expect(alertFor(run('restore', 'failed'))).toBeNull();
    expect(alertFor(run('offsite-upload', 'failed'))?.summary).toBe('offsite copy failed (retried at the next run): why');
    // a job recorded by a newer version still alerts
    expect(alertFor(run('something-new', 'failed'))?.event).toBe('job-failed');
  });

  it('gives every job a metric, derived from the one list', () => {
    const l = ledger();
    for (const job of JOB_NAMES) RunScope.start(ctx(l), job).ok();
    const prom = renderMetrics(l);
    for (const job of JOB_NAMES.filter((j) => j !== 'service')) expect(prom).toContain(`hybrid_backup_job_last_success_timestamp_seconds{job="${job}"}`);
    expect(Object.keys(JOBS)).toEqual(JOB_NAMES);
    l.close();
  });
});
