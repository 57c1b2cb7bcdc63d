/**
 * What an operator reads: progress on a terminal (and nothing extra off one), the run history,
 * and the JSON log lines. Each test has a backup directory of its own and makes the history it
 * reads: none depends on another having run first.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cliEnv, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dbUrl, dropDatabase, psql, uniqueName } from '../helpers/pg.js';

let db: { name: string; url: string };
/** A one-table database for the tests that read what was recorded, not how a long dump looks. */
let small: { name: string; url: string };
const dirs: string[] = [];
const restored: string[] = [];
beforeAll(async () => {
  db = await createDatabase('out');
  // big enough that progress is drawn more than once
  await psql(db.url, `create table t as select g, repeat(md5(g::text), 8) as v from generate_series(1, 300000) g;`);
  small = await createDatabase('outs');
  await psql(small.url, `create table t (id int primary key); insert into t select generate_series(1, 10);`);
});
afterAll(async () => {
  await dropDatabase(db.name);
  await dropDatabase(small.name);
  for (const r of restored) await dropDatabase(r);
  dirs.forEach(removeDir);
});

/** A fresh backup directory and configuration of the test's own. */
function setup(source = db): Record<string, string> {
  const dir = tempDir('hbo');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), '{}');
  return { DATABASE_URL: source.url, BACKUP_DIR: path.join(dir, 'backups'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') };
}

/** A database name to restore into, dropped after the file. */
function restoreTarget(): string {
  const name = uniqueName('out');
  restored.push(name);
  return name;
}

/** Runs the CLI under a pseudo-terminal (util-linux `script`), as a person at a terminal would. */
async function onTerminal(args: string[], env: Record<string, string>): Promise<string> {
  const cmd = ['node', CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = await execa('script', ['-qec', cmd, '/dev/null'], { env: cliEnv(env), extendEnv: false, reject: false });
  expect(r.exitCode).toBe(0);
  return String(r.stdout);
}

describe('output', () => {
  it('shows progress (bytes, rate, elapsed) on a terminal, and clears it before the result', async () => {
    const env = setup();
    const out = await onTerminal(['manual', 'progress'], env);
    expect(out).toMatch(/\r\x1b\[Kdumping {2}\d+(\.\d+)? (KB|MB) {2}\d+(\.\d+)? (KB|MB|GB)\/s {2}0:\d\d/);
    expect(out).toMatch(/backup 1 ok \(manual: progress\)/);
    const restore = await onTerminal(['restore', 'latest', '--target', dbUrl(restoreTarget()), '--create'], env);
    expect(restore).toMatch(/restoring {2}\d+(\.\d+)? (KB|MB) \/ \d+(\.\d+)? MB \(\d+%\)/);
    expect(restore).toMatch(/restored backup 1 into database/);
  });

  it('shows no progress off a terminal, and --json prints exactly one document', async () => {
    const env = setup();
    const r = await runCli(['manual', '--json'], env);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(() => JSON.parse(r.stdout)).not.toThrow();
    const plain = await runCli(['manual', 'quiet'], env);
    expect(plain.stderr).toBe('');
    expect(plain.stdout).not.toContain('\r');
  });

  it('runs: the history, filtered by job and time, with the SPEC fields', async () => {
    const env = setup(small);
    // a history of its own: two backups, a restore and a failed backup
    expect((await runCli(['manual', 'one'], env)).exitCode).toBe(0);
    expect((await runCli(['manual', 'two'], env)).exitCode).toBe(0);
    const restore = await runCli(['restore', 'latest', '--target', dbUrl(restoreTarget()), '--create'], env);
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect((await runCli(['manual', 'fails'], { ...env, DATABASE_URL: `${small.url}_gone` })).exitCode).toBe(1);

    const all = JSON.parse((await runCli(['runs', '--json'], env)).stdout).runs;
    expect(all).toHaveLength(4);
    expect(all.map((r: { job: string; status: string }) => `${r.job} ${r.status}`).sort()).toEqual(['backup failed', 'backup ok', 'backup ok', 'restore ok']);
    for (const r of all) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['id', 'job', 'trigger', 'status', 'startedAt', 'finishedAt']));
      expect(['schedule', 'socket', 'cli', 'startup']).toContain(r.trigger);
      expect(['running', 'ok', 'failed', 'interrupted']).toContain(r.status);
    }
    const restores = JSON.parse((await runCli(['runs', '--job', 'restore', '--json'], env)).stdout).runs;
    expect(restores.map((r: { job: string }) => r.job)).toEqual(['restore']);
    expect(JSON.parse((await runCli(['runs', '--since', '1h', '--json'], env)).stdout).runs).toHaveLength(all.length);
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect(JSON.parse((await runCli(['runs', '--since', future, '--json'], env)).stdout).runs).toEqual([]);
    const bad = await runCli(['runs', '--since', 'yesterday-ish'], env);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/--since "yesterday-ish" is neither a duration nor a time/);
    const human = await runCli(['runs'], env);
    expect(human.stdout).toMatch(/^RUN +STARTED +JOB +TRIGGER +STATUS +TOOK +RESULT/);
  });

  it('logs JSON lines to backup.log', async () => {
    const env = setup(small);
    // a backup and a failed one: info and error lines
    expect((await runCli(['manual', 'logged'], env)).exitCode).toBe(0);
    expect((await runCli(['manual', 'fails'], { ...env, DATABASE_URL: `${small.url}_gone` })).exitCode).toBe(1);
    const lines = readFileSync(path.join(env.BACKUP_DIR!, 'backup.log'), 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) {
      const rec = JSON.parse(l);
      expect(rec).toMatchObject({ level: expect.any(String), message: expect.any(String), timestamp: expect.any(String) });
    }
    expect(lines.some((l) => /backup 1 ok/.test(l))).toBe(true);
    expect(lines.map((l) => JSON.parse(l).level)).toEqual(expect.arrayContaining(['info', 'error']));
  });
});
