/** Driving the real CLI as a subprocess, the way an operator runs it. */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { execa, type ResultPromise } from 'execa';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/src/cli.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A short private temp directory (socket paths must stay under ~107 bytes). */
export function tempDir(prefix = 'hbt'): string {
  return mkdtempSync(`/tmp/${prefix}-`);
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** The environment a test CLI runs with: nothing inherited that could point it elsewhere. */
export function cliEnv(env: Record<string, string | undefined>): Record<string, string> {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8', TZ: 'UTC' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) base[k] = v;
  return base;
}

export function startCli(args: string[], env: Record<string, string | undefined>, opts: { cwd?: string } = {}): ResultPromise<{ reject: false; extendEnv: false; env: Record<string, string>; cwd: string }> {
  return execa('node', [CLI, ...args], { reject: false, extendEnv: false, env: cliEnv(env), cwd: opts.cwd ?? '/tmp' });
}

export async function runCli(args: string[], env: Record<string, string | undefined>, opts: { cwd?: string } = {}): Promise<CliResult> {
  const r = await startCli(args, env, opts);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Opens a ledger read-only, to check what the CLI recorded. */
export function readLedger<T = any>(backupDir: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(path.join(backupDir, 'ledger.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/**
 * Removes one data row from a backup's COPY block and records the file's new checksum in the
 * ledger, as if pg_dump had silently lost the row: the file passes its checksum, only a restore
 * drill can tell. `copyHeader` is how the block starts (`COPY public.t`).
 */
export function loseOneRow(backupDir: string, backup: { id: number; file: string }, copyHeader: string): void {
  const lines = readFileSync(backup.file, 'utf8').split('\n');
  const at = lines.findIndex((l) => l.startsWith(copyHeader));
  if (at < 0) throw new Error(`no "${copyHeader}" block in ${backup.file}`);
  lines.splice(at + 3, 1);
  const damaged = lines.join('\n');
  writeFileSync(backup.file, damaged);
  const db = new Database(path.join(backupDir, 'ledger.db'));
  db.prepare('update backups set sha256 = ?, bytes = ? where id = ?').run(createHash('sha256').update(damaged).digest('hex'), Buffer.byteLength(damaged), backup.id);
  db.close();
}
