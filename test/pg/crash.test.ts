/**
 * Crashes in the middle of a dump of a database of a few hundred MB: pg_dump killed under the
 * CLI, and the CLI itself killed with SIGKILL. Nothing may appear under a final name; the ledger
 * must say what happened; the next command cleans up.
 */
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { until } from '../helpers/wait.js';

let db: { name: string; url: string };
const dirs: string[] = [];

beforeAll(async () => {
  db = await createDatabase('big');
  // ~600 MB of table data, ~530 MB of dump: long enough to be caught mid-stream.
  await psql(db.url, `create unlogged table big as select g as id, repeat(md5(g::text), 8) as payload from generate_series(1, 2000000) g;`);
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup() {
  const dir = tempDir('hbc');
  dirs.push(dir);
  const backupDir = path.join(dir, 'backups');
  writeFileSync(path.join(dir, 'c.json'), '{}');
  return { backupDir, env: { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') } };
}

/** Waits until a .partial in `dir` has grown past `bytes` (polled often: the dump must still be going); returns its path. */
async function partialPast(dir: string, bytes: number): Promise<string> {
  let found = '';
  await until(
    () => {
      const p = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.partial')) : undefined;
      if (!p) return false;
      try {
        if (statSync(path.join(dir, p)).size <= bytes) return false;
      } catch {
        return false; // renamed or removed meanwhile
      }
      found = path.join(dir, p);
      return true;
    },
    `a .partial over ${bytes} bytes in ${dir}`,
    60_000,
    5,
  );
  return found;
}

function childrenOf(pid: number): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(p), comm });
    } catch {
      // process gone
    }
  }
  return out;
}

const finalFiles = (dir: string) => readdirSync(dir).filter((f) => /\.sql(\.gz)?(\.meta\.json)?$/.test(f));

describe('crash safety', () => {
  it('pg_dump killed mid-stream: exit 1, no file under a final name, no partial, run failed', async () => {
    const s = setup();
    const cli = startCli(['manual', 'will be killed'], s.env);
    await partialPast(s.backupDir, 5 * 1024 * 1024);
    const dump = childrenOf(cli.pid!).find((c) => c.comm === 'pg_dump');
    expect(dump, 'pg_dump should be a child of the CLI').toBeDefined();
    process.kill(dump!.pid, 'SIGKILL');
    const r = await cli;
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/pg_dump was killed by SIGKILL/);
    expect(readdirSync(s.backupDir).filter((f) => f.includes('.sql'))).toEqual([]);
    expect(readLedger(s.backupDir, 'select status, error_code from runs')).toEqual([{ status: 'failed', error_code: 'dump-failed' }]);
    expect(readLedger(s.backupDir, 'select status, description from backups')).toEqual([{ status: 'failed', description: 'will be killed' }]);
  });

  it('kill -9 of the CLI mid-dump: nothing under a final name; the next command marks the run interrupted and removes the partial', async () => {
    const s = setup();
    const cli = startCli(['manual', 'crash me'], s.env);
    const partial = await partialPast(s.backupDir, 5 * 1024 * 1024);
    cli.kill('SIGKILL');
    await cli;
    expect(finalFiles(s.backupDir)).toEqual([]);
    expect(readLedger(s.backupDir, 'select status from runs')).toEqual([{ status: 'running' }]);

    const next = await runCli(['list', '--json'], s.env);
    expect(next.exitCode).toBe(0);
    expect(next.stderr).toMatch(/run 1 \(backup\) was left running by process \d+, which is gone: marked interrupted, removed .*\.partial/);
    expect(existsSync(partial)).toBe(false);
    expect(readdirSync(s.backupDir).filter((f) => f.includes('.sql'))).toEqual([]);
    const runs = readLedger(s.backupDir, 'select status, error_code, finished_at from runs');
    expect(runs).toMatchObject([{ status: 'interrupted', error_code: 'interrupted' }]);
    expect(runs[0].finished_at).not.toBeNull();
    const { backups } = JSON.parse(next.stdout);
    expect(backups).toMatchObject([{ status: 'interrupted', kind: 'manual', description: 'crash me', sha256: null }]);

    // and the directory still works: a full backup of the same database lands whole
    const ok = await runCli(['manual', '--json'], s.env);
    expect(ok.exitCode).toBe(0);
    const b = JSON.parse(ok.stdout);
    expect(b.status).toBe('ok');
    expect(b.rowCount).toBe(2_000_000);
    expect((await runCli(['verify', String(b.id)], s.env)).exitCode).toBe(0);
  });

  it('temporary files of a writer that died are removed at the next start; a live writer\'s and fresh ones are left', async () => {
    const s = setup();
    expect((await runCli(['list'], s.env)).exitCode).toBe(0);
    const child = execa('true');
    const dead = child.pid!;
    await child; // a pid that has exited
    const old = new Date(Date.now() - 3_600_000);
    const names = {
      deadTmp: `.metrics.prom.${dead}.${Date.now()}.tmp`,
      deadDownload: `.offsite-3-${dead}.download`,
      freshDead: `.ledger-note.${dead}.${Date.now() + 1}.tmp`,
      live: `.metrics.prom.${process.pid}.${Date.now()}.tmp`,
      other: `.${dead}.notours`,
    };
    for (const [k, n] of Object.entries(names)) {
      const f = path.join(s.backupDir, n);
      writeFileSync(f, 'x');
      if (k !== 'freshDead') utimesSync(f, old, old);
    }
    expect((await runCli(['list'], s.env)).exitCode).toBe(0);
    const left = readdirSync(s.backupDir);
    expect(left).not.toContain(names.deadTmp);
    expect(left).not.toContain(names.deadDownload);
    expect(left).toEqual(expect.arrayContaining([names.freshDead, names.live, names.other]));
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(/removed 2 temporary file\(s\) left by a process that died mid-write/);
  });
});
