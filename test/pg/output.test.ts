/**
 * What an operator reads: progress on a terminal (and nothing extra off one), the run history,
 * and the JSON log lines.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cliEnv, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dbUrl, dropDatabase, psql, uniqueName } from '../helpers/pg.js';

let db: { name: string; url: string };
let dir: string;
let env: Record<string, string>;
const restored = uniqueName('out');
beforeAll(async () => {
  db = await createDatabase('out');
  // big enough that progress is drawn more than once
  await psql(db.url, `create table t as select g, repeat(md5(g::text), 8) as v from generate_series(1, 300000) g;`);
  dir = tempDir('hbo');
  writeFileSync(path.join(dir, 'c.json'), '{}');
  env = { DATABASE_URL: db.url, BACKUP_DIR: path.join(dir, 'backups'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') };
});
afterAll(async () => {
  await dropDatabase(db.name);
  await dropDatabase(restored);
  removeDir(dir);
});

/** Runs the CLI under a pseudo-terminal (util-linux `script`), as a person at a terminal would. */
async function onTerminal(args: string[]): Promise<string> {
  const cmd = ['node', CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = await execa('script', ['-qec', cmd, '/dev/null'], { env: cliEnv(env), extendEnv: false, reject: false });
  expect(r.exitCode).toBe(0);
  return String(r.stdout);
}

describe('output', () => {
  it('shows progress (bytes, rate, elapsed) on a terminal, and clears it before the result', async () => {
    const out = await onTerminal(['manual', 'progress']);
    expect(out).toMatch(/\r\x1b\[Kdumping {2}\d+(\.\d+)? (KB|MB) {2}\d+(\.\d+)? (KB|MB|GB)\/s {2}0:\d\d/);
    expect(out).toMatch(/backup 1 ok \(manual: progress\)/);
    const restore = await onTerminal(['restore', 'latest', '--target', dbUrl(restored), '--create']);
    expect(restore).toMatch(/restoring {2}\d+(\.\d+)? (KB|MB) \/ \d+(\.\d+)? MB \(\d+%\)/);
    expect(restore).toMatch(/restored backup 1 into database/);
  });

  it('shows no progress off a terminal, and --json prints exactly one document', async () => {
    const r = await runCli(['manual', '--json'], env);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(() => JSON.parse(r.stdout)).not.toThrow();
    const plain = await runCli(['manual', 'quiet'], env);
    expect(plain.stderr).toBe('');
    expect(plain.stdout).not.toContain('\r');
  });

  it('runs: the history, filtered by job and time, with the SPEC fields', async () => {
    const all = JSON.parse((await runCli(['runs', '--json'], env)).stdout).runs;
    expect(all.length).toBeGreaterThanOrEqual(4);
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

  it('logs JSON lines to backup.log', () => {
    const lines = readFileSync(path.join(env.BACKUP_DIR!, 'backup.log'), 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) {
      const rec = JSON.parse(l);
      expect(rec).toMatchObject({ level: expect.any(String), message: expect.any(String), timestamp: expect.any(String) });
    }
    expect(lines.some((l) => /backup 1 ok/.test(l))).toBe(true);
  });
});
