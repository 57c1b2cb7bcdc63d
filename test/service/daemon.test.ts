/**
 * The resident service as an operator runs it: a real daemon process, driven by the real CLI
 * over the real socket, stopped with real signals.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, readLedger, removeDir, ROOT, runCli, startCli, tempDir } from '../helpers/cli.js';
import { FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { type Daemon, hasResult, ping, rawExchange, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { fakePgBin } from '../helpers/pgbin.js';
import { until } from '../helpers/wait.js';
import { Ledger } from '../../src/ledger/ledger.js';

let db: { name: string; url: string };
const dirs: string[] = [];
const daemons: Daemon[] = [];

beforeAll(async () => {
  db = await createDatabase('svc');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g;`);
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await stopDaemon(d, 'SIGKILL');
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

/** A backup directory, a short socket path and a config file (schedules that never fire during a test). */
function setup(config: Record<string, unknown> = {}) {
  const dir = tempDir('hbs');
  dirs.push(dir);
  const backupDir = path.join(dir, 'b');
  const cfg = path.join(dir, 'c.json');
  const write = (c: Record<string, unknown>) =>
    writeFileSync(cfg, JSON.stringify({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *' }, timezone: 'UTC', ...c }));
  write(config);
  const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: cfg, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') };
  return { dir, backupDir, env, write };
}

async function daemon(env: Record<string, string>): Promise<Daemon> {
  const d = await startDaemon(env);
  daemons.push(d);
  return d;
}

const files = (dir: string, re: RegExp) => readdirSync(dir).filter((f) => re.test(f));
/** Whether a process runs (a zombie nobody reaped counts as gone). */
const alive = (pid: number) => {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};
/**
 * A pg_dump that waits, before it dumps, until the test opens its gate (a file): the backup runs
 * exactly as long as the test needs, however slow the machine. It gives up when the process that
 * started it is gone (a service killed with SIGKILL).
 */
async function gatedPgBin(dir: string): Promise<{ pgBinDir: string; open: () => void }> {
  const gate = path.join(dir, 'gate');
  const pgBinDir = await fakePgBin(dir, `while [ ! -e '${gate}' ] && kill -0 $PPID 2>/dev/null; do sleep 0.05; done\n[ -e '${gate}' ] || exit 1\nexec "$REAL" "$@"`);
  return { pgBinDir, open: () => writeFileSync(gate, '') };
}
/** pg_dump writes the first 4000 bytes of the dump, then stalls until it is killed or the process that started it is gone. */
const STALLS = '"$REAL" "$@" | head -c 4000; while kill -0 $PPID 2>/dev/null; do sleep 0.1; done';

/**
 * SIGTERM, then the service's exit awaited for at most `ms` (a bound on a failure: the stalled
 * pg_dump never finishes on its own, so only the abort after the grace period ends the stop).
 */
async function stopWithin(d: Daemon, ms: number, what: string): Promise<number | null> {
  process.kill(d.proc.pid!, 'SIGTERM');
  await until(() => d.proc.exitCode !== null || d.proc.signalCode !== null, what, ms);
  return (await d.proc).exitCode ?? null;
}

/** Backup runs the ledger shows running now. */
const runningBackups = (backupDir: string) => readLedger(backupDir, `select count(*) as n from runs where job = 'backup' and status = 'running'`)[0].n as number;

describe('the service', () => {
  it('serves commands over the socket: same output as in-process, runs recorded as socket', async () => {
    const s = setup();
    const d = await daemon(s.env);
    expect(statSync(d.socket).mode & 0o777).toBe(0o600);
    const viaService = await runCli(['manual', 'through the service', '--json'], s.env);
    expect(viaService.exitCode).toBe(0);
    const b = JSON.parse(viaService.stdout);
    expect(b).toMatchObject({ kind: 'manual', status: 'ok', description: 'through the service' });
    expect(readLedger(s.backupDir, 'select trigger from runs where id = ?', b.runId)[0].trigger).toBe('socket');

    const listed = await runCli(['list'], s.env);
    const direct = await runCli(['list', '--direct'], s.env);
    expect(listed.stdout).toBe(direct.stdout);
    const j1 = JSON.parse((await runCli(['list', '--json'], s.env)).stdout);
    const j2 = JSON.parse((await runCli(['list', '--json', '--direct'], s.env)).stdout);
    expect(j1).toEqual(j2);

    const sched = await runCli(['schedule', '--json'], s.env);
    const doc = JSON.parse(sched.stdout);
    expect(doc.service).toMatchObject({ running: true, pid: d.proc.pid });
    expect(doc.jobs.map((j: { name: string }) => j.name)).toEqual(['backup', 'prune', 'monitor', 'restore-drill', 'supabase-poll']);
    // LAST RESULT is the job's newest run, whatever started it: here the backup asked through the socket
    expect(doc.jobs[0]).toMatchObject({ cron: '0 0 1 1 *', nextRun: expect.stringMatching(/-01-01T00:00:00\.000Z$/), running: false, lastRun: { id: b.runId, status: 'ok', trigger: 'socket' } });
    expect(doc.jobs.find((j: { name: string }) => j.name === 'prune').lastRun).toBeNull();
    expect((await runCli(['prune', '--direct'], s.env)).exitCode).toBe(0);
    const afterPrune = JSON.parse((await runCli(['schedule', '--json'], s.env)).stdout);
    expect(afterPrune.jobs.find((j: { name: string }) => j.name === 'prune').lastRun).toMatchObject({ status: 'ok', trigger: 'cli' });
    expect((await runCli(['schedule'], s.env)).stdout).toMatch(/prune +.* ok .* ago \(cli\)/);
    // --direct still knows a service runs
    const direct2 = JSON.parse((await runCli(['schedule', '--json', '--direct'], s.env)).stdout);
    expect(direct2.service).toEqual({ running: true, pid: d.proc.pid, startedAt: doc.service.startedAt, viaDirect: true });
    expect((await runCli(['schedule', '--direct'], s.env)).stdout).toMatch(new RegExp(`^service running \\(pid ${d.proc.pid}, .*\\); shown from this process's configuration`));

    // errors cross the socket with their exit codes
    const bad = await runCli(['pre-change', ''], s.env);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/the description is empty/);
    const missing = await runCli(['verify', '4242'], s.env);
    expect(missing.exitCode).toBe(2);
    expect(await stopDaemon(d)).toBe(0);
    expect(existsSync(d.socket)).toBe(false);
    const offline = JSON.parse((await runCli(['schedule', '--json'], s.env)).stdout);
    expect(offline.service).toEqual({ running: false });
  });

  it('list: on screen the newest 100, with --json every backup; the same document in-process and through the service', async () => {
    const s = setup();
    expect((await runCli(['manual', 'real one', '--json'], s.env)).exitCode).toBe(0);
    const l = Ledger.open(s.backupDir);
    const t0 = Date.parse('2026-01-01T03:00:00Z');
    for (let i = 0; i < 149; i++) {
      const at = new Date(t0 + i * 86_400_000 / 4).toISOString();
      l.recordBackup({
        runId: null, kind: 'daily', description: null, file: path.join(s.backupDir, `x${i}.sql`), bytes: 1000 + i, sha256: 'cd'.repeat(32), compression: 'none', profile: 'full',
        status: i % 10 === 0 ? 'failed' : 'ok', createdAt: at, finishedAt: at, durationMs: 5, database: 'app', source: null, sourceSystemId: null, serverVersion: '15.20',
        pgDumpVersion: '15.20', tables: { 'public.t': i }, error: i % 10 === 0 ? { code: 'dump-failed', message: `failure "${i}"` } : null,
      });
    }
    l.close();
    const direct = await runCli(['list', '--json', '--direct'], s.env);
    const screen = await runCli(['list', '--direct'], s.env);
    await daemon(s.env);
    const served = await runCli(['list', '--json'], s.env);
    const limited = await runCli(['list', '--json', '--limit', '7'], s.env);
    const servedScreen = await runCli(['list'], s.env);
    expect(direct.exitCode, direct.stderr).toBe(0);
    const all = JSON.parse(direct.stdout);
    expect(all.total).toBe(150);
    expect(all.backups).toHaveLength(150);
    expect(all.backups[0].description).toBe('real one'); // newest first
    expect(JSON.parse(served.stdout)).toEqual(all);
    expect(JSON.parse(limited.stdout).backups).toEqual(all.backups.slice(0, 7));
    expect(screen.stdout).toMatch(/showing the newest 100 of 150 backups \(--all for every one\)/);
    expect(servedScreen.stdout).toBe(screen.stdout);
  });

  it('20 concurrent pre-change requests all succeed, one at a time, in order', async () => {
    const s = setup();
    await daemon(s.env);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => runCli(['pre-change', `change number ${i}`, '--json'], s.env)));
    for (const r of results) expect(r.exitCode, r.stderr + r.stdout).toBe(0);
    const backups = results.map((r) => JSON.parse(r.stdout));
    expect(new Set(backups.map((b) => b.file)).size).toBe(20);
    const rows = readLedger<{ created_at: string; finished_at: string }>(s.backupDir, `select created_at, finished_at from backups where status = 'ok' order by created_at`);
    expect(rows).toHaveLength(20);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.created_at >= rows[i - 1]!.finished_at).toBe(true);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'backup' and trigger = 'socket' and status = 'ok'`)[0].n).toBe(20);
  });

  it('survives garbage of every kind on the socket, then answers a normal command', async () => {
    const s = setup({ socket: { idleTimeoutSeconds: 1 } });
    const d = await daemon(s.env);
    const cases: Array<[string, Buffer | string, RegExp]> = [
      ['malformed JSON', '{"command": "list",\n', /not valid UTF-8 JSON/],
      ['not an object', '[1,2,3]\n', /invalid request/],
      ['unknown command', '{"command":"rm-rf"}\n', /unknown command rm-rf/],
      ['unknown field', '{"command":"list","sudo":true}\n', /invalid request/],
      ['bad arguments', '{"command":"list","args":{"limit":"many"}}\n', /invalid limit for list/],
      ['a misspelt argument is refused, not dropped (a dry run must not turn real)', '{"command":"prune","args":{"dry_run":true}}\n', /invalid arguments for prune: .*dry_run/],
      ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0xfd, 0x0a]), /not valid UTF-8 JSON/],
      // many newlines among the bytes: whichever refusal comes first, it is refused and the connection closed
      ['binary garbage', Buffer.concat([Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 256)), Buffer.from('\n')]), /not valid UTF-8 JSON|invalid request|more than 8 requests sent without waiting/],
      ['oversize line', 'x'.repeat(70 * 1024), /longer than 65536 bytes/],
      ['the daemon command itself', '{"command":"daemon"}\n', /unknown command daemon/],
    ];
    for (const [what, payload, message] of cases) {
      const { replies } = await rawExchange(d.socket, payload, 60_000, hasResult);
      const result = replies.find((r) => r.type === 'result');
      expect(result, what).toBeDefined();
      expect(result.ok, what).toBe(false);
      expect(result.error.message, what).toMatch(message);
    }
    // an idle client is disconnected
    const idle = await rawExchange(d.socket, '', 60_000); // resolves when the service hangs up
    expect(idle.closed).toBe(true);
    // a half-sent request and a hang-up mid-line
    await rawExchange(d.socket, '{"command":"li', 200);
    // two requests on one connection are answered in order
    const two = await rawExchange(d.socket, '{"command":"ping","id":"a"}\n{"command":"list","id":"b","args":{"limit":1}}\n', 60_000, (replies) => replies.filter((r) => r.type === 'result').length === 2);
    expect(two.replies.map((r) => r.id)).toEqual(['a', 'b']);

    const r = await runCli(['list', '--json'], s.env);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ backups: [], total: 0 });
    expect(d.proc.exitCode).toBeNull();
  });

  it('a client killed mid-backup: the backup still lands', async () => {
    const s = setup();
    const pgDump = await gatedPgBin(s.dir);
    s.write({ dump: { pgBinDir: pgDump.pgBinDir } });
    await daemon(s.env);
    const cli = startCli(['pre-change', 'client goes away'], s.env);
    await until(() => runningBackups(s.backupDir) === 1, 'the service to start the backup', 60_000);
    cli.kill('SIGKILL');
    await cli;
    pgDump.open(); // the client is gone before the dump begins
    await until(() => readLedger(s.backupDir, `select * from backups where status = 'ok'`).length === 1, 'the backup to land', 60_000);
    const rows = readLedger(s.backupDir, `select * from backups where status = 'ok'`);
    expect(rows).toHaveLength(1);
    expect(rows[0].description).toBe('client goes away');
    expect(existsSync(rows[0].file)).toBe(true);
  });

  it('SIGTERM during a backup lets it finish within the grace period, then exits 0', async () => {
    const s = setup({ service: { shutdownGraceSeconds: 30 } });
    const pgDump = await gatedPgBin(s.dir);
    s.write({ service: { shutdownGraceSeconds: 30 }, dump: { pgBinDir: pgDump.pgBinDir } });
    const d = await daemon(s.env);
    const cli = startCli(['manual', 'finish me', '--json'], s.env);
    await until(() => runningBackups(s.backupDir) === 1, 'the service to start the backup', 60_000);
    process.kill(d.proc.pid!, 'SIGTERM');
    // the stop has begun while the backup runs; only then may the dump go on
    await until(() => /waiting up to 30s for 1 running operation/.test(d.output()), 'the service to wait for the running backup', 60_000);
    pgDump.open();
    expect((await d.proc).exitCode, d.output()).toBe(0);
    const r = await cli;
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(String(r.stdout)).status).toBe('ok');
    expect(existsSync(d.socket)).toBe(false);
    expect(readLedger(s.backupDir, `select status from runs where job = 'service'`)).toEqual([{ status: 'ok' }]);
    expect(d.output()).toMatch(/waiting up to 30s for 1 running operation/);
  });

  it('SIGTERM past the grace period aborts the backup cleanly: no partial, run interrupted, exit 0', async () => {
    const s = setup();
    // pg_dump writes part of the dump, then stalls
    s.write({ service: { shutdownGraceSeconds: 1 }, dump: { pgBinDir: await fakePgBin(s.dir, STALLS) } });
    const d = await daemon(s.env);
    const cli = startCli(['manual', 'abort me'], s.env);
    await until(() => files(s.backupDir, /\.partial$/).length > 0, 'pg_dump to start writing the .partial', 60_000);
    expect(files(s.backupDir, /\.partial$/)).toHaveLength(1);
    const code = await stopWithin(d, 60_000, 'the service to abort the stalled backup after its 1 s grace period and exit');
    expect(code, d.output()).toBe(0);
    const r = await cli;
    expect(r.exitCode).toBe(1);
    expect(files(s.backupDir, /\.sql/)).toEqual([]);
    expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'backup'`)).toEqual([{ status: 'interrupted', error_code: 'dump-aborted' }]);
    expect(readLedger(s.backupDir, `select status from backups`)).toEqual([{ status: 'interrupted' }]);
    expect(d.output()).toMatch(/grace period over: aborting running work/);
  });

  it('a stop uses the grace period of the configuration SIGHUP reloaded, not the one it started with', async () => {
    const s = setup();
    const pgBinDir = await fakePgBin(s.dir, STALLS);
    s.write({ service: { shutdownGraceSeconds: 600 }, dump: { pgBinDir } });
    const d = await daemon(s.env);
    s.write({ service: { shutdownGraceSeconds: 1 }, dump: { pgBinDir } });
    d.proc.kill('SIGHUP');
    await until(() => /configuration reloaded/.test(d.output()), 'the service to reload its configuration', 60_000);
    const cli = startCli(['manual', 'abort me after the reloaded grace'], s.env);
    await until(() => files(s.backupDir, /\.partial$/).length > 0, 'pg_dump to start writing the .partial', 60_000);
    // 600 s had the old configuration been used: the stall would outlast the deadline
    expect(await stopWithin(d, 60_000, 'the service to stop after the reloaded 1 s grace period, not the 600 s it started with'), d.output()).toBe(0);
    expect(d.output()).toMatch(/waiting up to 1s for 1 running operation/);
    expect((await cli).exitCode).toBe(1);
    expect(readLedger(s.backupDir, `select status from runs where job = 'backup'`)).toEqual([{ status: 'interrupted' }]);
  });

  it('kill -9 of the service mid-backup, then a restart: stale socket replaced, run interrupted, partial removed', async () => {
    const s = setup();
    s.write({ dump: { pgBinDir: await fakePgBin(s.dir, STALLS) } });
    const d = await daemon(s.env);
    const cli = startCli(['manual', 'crash'], s.env);
    await until(() => files(s.backupDir, /\.partial$/).length > 0, 'pg_dump to start writing the .partial', 60_000);
    await stopDaemon(d, 'SIGKILL');
    await cli;
    expect(existsSync(d.socket)).toBe(true); // the stale socket file remains
    expect(files(s.backupDir, /\.partial$/)).toHaveLength(1);

    s.write({});
    const again = await daemon(s.env);
    expect(again.output()).toMatch(/removed a stale control socket/);
    expect(files(s.backupDir, /\.partial$/)).toEqual([]);
    const runs = readLedger(s.backupDir, `select job, status from runs where job in ('service', 'backup') order by id`);
    expect(runs.slice(0, 2)).toEqual([
      { job: 'service', status: 'interrupted' },
      { job: 'backup', status: 'interrupted' },
    ]);
    expect((await runCli(['manual', '--json'], s.env)).exitCode).toBe(0);
    expect(await ping(again.socket)).toMatchObject({ ok: true });
  });

  it('opens the socket to a configured group (0660), and refuses a group that does not exist', async () => {
    const s = setup({ socket: { group: 'root' } });
    const d = await daemon(s.env);
    expect(statSync(d.socket).mode & 0o777).toBe(0o660);
    expect(statSync(d.socket).gid).toBe(0);
    await stopDaemon(d);
    s.write({ socket: { group: 'no-such-group-hb' } });
    const r = await runCli(['daemon'], s.env);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/socket\.group "no-such-group-hb" is not a group on this system/);
    expect(existsSync(d.socket)).toBe(false);
  });

  it('a second service on the same socket exits 2 with a clear message', async () => {
    const s = setup();
    await daemon(s.env);
    const second = await runCli(['daemon'], s.env);
    expect(second.exitCode).toBe(2);
    expect(second.stderr).toMatch(/a hybrid-backup service already answers on .*s\.sock/);
  });

  it('daemon --json logs one JSON object per line, and reports a start-up error as {error}', async () => {
    const s = setup();
    const d = await startDaemon(s.env, { args: ['--json'] });
    daemons.push(d);
    expect(await stopDaemon(d)).toBe(0);
    const lines = d.output().split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ level: expect.any(String), message: expect.any(String), timestamp: expect.any(String) });
    expect(lines.map((l) => JSON.parse(l).message).join('\n')).toMatch(/listening on .*s\.sock/);
    s.write({ retention: { days: 'thirty' } });
    const bad = await runCli(['daemon', '--json'], s.env);
    expect(bad.exitCode).toBe(2);
    expect(JSON.parse(bad.stdout).error).toMatchObject({ code: 'config-invalid', message: expect.stringMatching(/retention\.days/) });
  });

  it('catches up a daily backup missed while the service was down, once — not one due before it was installed', async () => {
    const s = setup(); // backup due 00:00 on 1 January, prune 01:00
    // What a start decided is known once the service has run its whole life: stopped, its log is
    // complete, and a start-up job it began would be in the ledger (finished or interrupted).
    const first = await daemon(s.env);
    // a fresh install does not catch up: nothing was missed while it was down
    expect(await stopDaemon(first)).toBe(0);
    expect(first.output()).toMatch(/service started/);
    expect(first.output()).not.toMatch(/catching up/);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'backup'`)[0].n).toBe(0);

    // Restarted: the 1 January due time passed before the service was first started, so again nothing.
    const again = await daemon(s.env);
    expect(await stopDaemon(again)).toBe(0);
    expect(again.output()).toMatch(/service started/);
    expect(again.output()).not.toMatch(/catching up/);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'backup'`)[0].n).toBe(0);

    // Now say the service was installed, and stopped, before the last 1 January: that due time
    // passed while it was down.
    const due = new Date(Date.UTC(new Date().getUTCFullYear(), 0, 1));
    const before = new Date(due.getTime() - 86_400_000).toISOString();
    const l = new Database(path.join(s.backupDir, 'ledger.db'));
    l.prepare(`update runs set started_at = ?, finished_at = ? where job = 'service'`).run(before, before);
    l.close();
    const second = await daemon(s.env);
    let runs: any[] = [];
    await until(() => {
      runs = readLedger(s.backupDir, `select job, trigger, status from runs where job in ('backup', 'prune') and status != 'running' order by id`);
      return runs.length >= 2;
    }, 'the caught-up backup and prune to finish', 60_000);
    expect(runs).toEqual([
      { job: 'backup', trigger: 'startup', status: 'ok' },
      { job: 'prune', trigger: 'startup', status: 'ok' },
    ]);
    expect(readLedger(s.backupDir, `select kind from backups`)).toEqual([{ kind: 'daily' }]);
    expect(second.output()).toMatch(/catching up backup, prune, monitor: due while the service was down/);
    await stopDaemon(second);

    const third = await daemon(s.env);
    expect(await stopDaemon(third)).toBe(0);
    expect(third.output()).toMatch(/service started/);
    expect(third.output()).not.toMatch(/catching up/);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'backup'`)[0].n).toBe(1);
  });

  it('runs a scheduled job on time, records it, and never overlaps it', async () => {
    const s = setup();
    const pgDump = await gatedPgBin(s.dir);
    s.write({ schedules: { backup: '* * * * * *', prune: '0 1 1 1 *' }, dump: { pgBinDir: pgDump.pgBinDir } });
    const d = await daemon(s.env);
    // the first scheduled backup holds at its dump until a later second's run has come and been skipped
    await until(() => /job backup: the previous run is still going; this schedule run is skipped/.test(d.output()), 'a schedule run to come while the first one is still going', 60_000);
    pgDump.open();
    await until(() => readLedger(s.backupDir, `select 1 from runs where job = 'backup' and status = 'ok'`).length > 0, 'a scheduled backup to finish', 60_000);
    await stopDaemon(d);
    const runs = readLedger<{ trigger: string; started_at: string; finished_at: string; status: string }>(s.backupDir, `select trigger, started_at, finished_at, status from runs where job = 'backup' order by id`);
    expect(runs.length).toBeGreaterThanOrEqual(1);
    // every second is a due time: the first run may be the start-up catch-up of the second that
    // passed before the service was up, or the first scheduled one; the skipped line shows the schedule
    expect(runs[0]).toMatchObject({ status: 'ok' });
    expect(['schedule', 'startup']).toContain(runs[0]!.trigger);
    for (let i = 1; i < runs.length; i++) expect(runs[i]!.started_at >= runs[i - 1]!.finished_at).toBe(true);
    expect(d.output()).toMatch(/job backup: the previous run is still going; this schedule run is skipped/);
  });

  it('SIGHUP reloads the configuration; a bad one is refused and the old one kept', async () => {
    const s = setup();
    const d = await daemon(s.env);
    s.write({ schedules: { backup: '15 4 * * *', prune: '0 1 1 1 *' } });
    d.proc.kill('SIGHUP');
    await until(() => /configuration reloaded/.test(d.output()), 'the service to reload its configuration', 60_000);
    const first = await runCli(['schedule', '--json'], s.env);
    let doc = JSON.parse(first.stdout);
    expect(doc.jobs, first.stderr + d.output()).toBeDefined();
    expect(doc.jobs[0].cron).toBe('15 4 * * *');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ retention: { days: 'forever' } }));
    d.proc.kill('SIGHUP');
    await until(() => /reload refused/.test(d.output()), 'the service to refuse the bad configuration', 60_000);
    expect(d.output()).toMatch(/reload refused, keeping the running configuration: invalid configuration: retention\.days/);
    // a valid file again, not yet reloaded: the service still runs with what it had
    s.write({ schedules: { backup: '45 5 * * *', prune: '0 1 1 1 *' } });
    doc = JSON.parse((await runCli(['schedule', '--json'], s.env)).stdout);
    expect(doc.jobs[0].cron).toBe('15 4 * * *');
    expect(d.proc.exitCode).toBeNull();
  });

  it('a failing scheduled job is recorded and the service carries on', async () => {
    const s = setup();
    s.write({ schedules: { backup: '* * * * * *', prune: '0 1 1 1 *' } });
    const d = await daemon({ ...s.env, DATABASE_URL: `${db.url}_gone` });
    await until(() => readLedger(s.backupDir, `select 1 from runs where job = 'backup' and status = 'failed'`).length >= 2, 'two scheduled backups to fail', 60_000);
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'backup' and status = 'failed' and trigger = 'schedule'`)[0].n).toBeGreaterThanOrEqual(2);
    expect(await ping(d.socket)).toMatchObject({ ok: true });
    expect(d.output()).toMatch(/job backup failed: database .* does not exist/);
  });
  it('refuses, whole, a request whose arguments carry __proto__ or constructor: nothing runs', async () => {
    const s = setup({ retention: { days: 1, minKeep: 1 } });
    const d = await daemon(s.env);
    for (const args of ['{"__proto__":{"dryRun":true}}', '{"constructor":{"dryRun":true}}', '{"dryRun":true,"x":{"__proto__":{}}}']) {
      const r = await rawExchange(d.socket, `{"command":"prune","args":${args}}\n`, 60_000, hasResult);
      const result = r.replies.find((x) => x.type === 'result');
      expect(result, args).toMatchObject({ ok: false, exitCode: 2 });
      expect(result.error.message).toMatch(/__proto__|constructor/);
    }
    const top = await rawExchange(d.socket, '{"command":"prune","__proto__":{"args":{}}}\n', 60_000, hasResult);
    expect(top.replies.find((x) => x.type === 'result')).toMatchObject({ ok: false, exitCode: 2 });
    expect(readLedger(s.backupDir, `select count(*) as n from runs where job = 'prune'`)[0].n).toBe(0);
  });

  it('backups run in the order asked, across processes: a --direct backup asked first runs before socket backups asked later', async () => {
    const s = setup();
    const pgDump = await gatedPgBin(s.dir);
    s.write({ dump: { pgBinDir: pgDump.pgBinDir } });
    const d = await daemon(s.env);
    const first = startCli(['manual', 'first through the service', '--json'], s.env);
    await until(() => runningBackups(s.backupDir) === 1 && readLedger(s.backupDir, 'select count(*) as n from locks')[0].n === 1, 'the first backup to hold the lock', 60_000);
    const direct = startCli(['manual', 'direct, asked second', '--json', '--direct'], s.env);
    await until(() => readLedger(s.backupDir, 'select count(*) as n from lock_waiters where pid != ?', d.proc.pid)[0].n === 1, 'the --direct backup to take its place in line', 60_000);
    const later = Array.from({ length: 4 }, (_, i) => startCli(['manual', `later ${i}`, '--json'], s.env));
    await until(() => readLedger(s.backupDir, 'select count(*) as n from lock_waiters where pid = ?', d.proc.pid)[0].n === 4, 'the later backups to take their places in line', 60_000);
    pgDump.open(); // every backup was asked while the first one held the lock
    const results = await Promise.all([first, direct, ...later]);
    for (const r of results) expect(r.exitCode, String(r.stderr)).toBe(0);
    const docs = results.map((r) => JSON.parse(String(r.stdout)));
    const directDoc = docs[1];
    for (const l of docs.slice(2)) expect(Date.parse(l.createdAt), `${l.description} started before the --direct backup asked earlier`).toBeGreaterThan(Date.parse(directDoc.finishedAt));
    expect(Date.parse(directDoc.createdAt)).toBeGreaterThanOrEqual(Date.parse(docs[0].finishedAt));
    expect(String(results[1].stderr)).toMatch(/waiting for backup run \d+ \(pid \d+/);
    expect(readLedger(s.backupDir, 'select count(*) as n from lock_waiters')[0].n).toBe(0);
  });

  it('npm start, then kill -TERM of npm: the service stops too; kill -KILL of npm: the service notices and stops', async () => {
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const s = setup();
      const npm = execa('npm', ['start', '--silent'], { cwd: ROOT, env: cliEnv(s.env), extendEnv: false, reject: false, all: true });
      const socket = s.env.HYBRID_BACKUP_SOCKET;
      let servicePid = 0;
      await until(async () => {
        const r = await ping(socket);
        servicePid = r?.ok ? r.doc.pid : 0;
        return servicePid > 0;
      }, 'npm start to bring the service up', 60_000);
      expect(servicePid).not.toBe(npm.pid);
      npm.kill(signal);
      await npm;
      await until(() => !alive(servicePid), `the service (pid ${servicePid}) to stop after npm got ${signal}`, 60_000);
      expect(existsSync(socket)).toBe(false);
      expect(readLedger(s.backupDir, `select status from runs where job = 'service'`)).toEqual([{ status: 'ok' }]);
    }
  });

  it('a stop aborts read-only work at once: a hung Supabase poll does not hold it for the grace period', async () => {
    const api = await new FakeManagementApi().start();
    try {
      api.queue('GET /database/backups', { hang: true });
      // the poll would hang 300 s, the grace period 600 s: only the abort ends the stop within the deadline
      const s = setup({ service: { shutdownGraceSeconds: 600 }, supabase: { requestTimeoutSeconds: 300, maxRetries: 0 } });
      const d = await daemon({ ...s.env, SUPABASE_API_URL: api.url, SUPABASE_PROJECT_REF: REF, SUPABASE_ACCESS_TOKEN: TOKEN });
      await until(() => api.count('GET', '/database/backups') === 1, 'the start-up poll to hang on the backups list', 60_000);
      expect(await stopWithin(d, 60_000, 'the service to stop without waiting for the hung poll')).toBe(0);
      expect(readLedger(s.backupDir, `select status from runs where job = 'supabase-poll'`)).toEqual([{ status: 'interrupted' }]);
    } finally {
      await api.stop();
    }
  });
});
