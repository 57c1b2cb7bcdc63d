/**
 * A lost ledger is rebuilt, never silently replaced: with the ledger truncated or garbled, every
 * command refuses and points at `ledger-rebuild`, which re-creates the backups from their
 * sidecars, re-hashing each file.
 */
import { appendFileSync, existsSync, readdirSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';

let db: { name: string; url: string };
const dirs: string[] = [];
beforeAll(async () => {
  db = await createDatabase('rebuild');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, 'row ' || g from generate_series(1, 300) g;`);
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

describe('ledger-rebuild', () => {
  it('after `truncate -s 0 ledger.db`: commands refuse with the hint, the daemon too; the rebuild re-hashes and re-creates every backup', async () => {
    const dir = tempDir('hbrb');
    dirs.push(dir);
    const backupDir = path.join(dir, 'b');
    const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') };
    const taken: any[] = [];
    for (const d of ['one', 'two', 'three', 'four']) {
      const r = await runCli(['manual', d, '--json'], env);
      expect(r.exitCode, r.stderr).toBe(0);
      taken.push(JSON.parse(r.stdout));
    }
    const before = readLedger(backupDir, 'select id, kind, description, file, bytes, sha256, created_at, table_count, row_count from backups order by created_at');
    truncateSync(path.join(backupDir, 'ledger.db'), 0);
    for (const f of readdirSync(backupDir).filter((n) => /^ledger\.db-(wal|shm)$/.test(n))) unlinkSync(path.join(backupDir, f));

    for (const args of [['list'], ['verify', 'all'], ['manual', 'on top'], ['prune']]) {
      const r = await runCli(args, env);
      expect(r.exitCode, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/the ledger .*ledger\.db is empty, but .* holds 4 backups \(\.meta\.json sidecars/);
      expect(r.stderr).toMatch(/hint: run `hybrid-backup ledger-rebuild`/);
    }
    expect(readdirSync(backupDir).filter((n) => n.endsWith('.sql'))).toHaveLength(4); // nothing was taken on top
    const daemon = await runCli(['daemon'], env);
    expect(daemon.exitCode).toBe(1);
    expect(daemon.stderr).toMatch(/ledger-rebuild/);

    // one file damaged, one gone
    appendFileSync(taken[1].file, '-- tampered\n');
    unlinkSync(taken[2].file);
    const r = await runCli(['ledger-rebuild', '--json'], env);
    expect(r.exitCode, r.stderr).toBe(1); // not everything is intact: said by the exit code
    const doc = JSON.parse(r.stdout);
    expect(doc.added).toHaveLength(4);
    const byFile = new Map(doc.added.map((b: any) => [b.file, b]));
    expect((byFile.get(taken[0].file) as any).status).toBe('ok');
    expect((byFile.get(taken[1].file) as any).status).toBe('corrupt');
    expect((byFile.get(taken[2].file) as any).status).toBe('missing');
    expect((byFile.get(taken[3].file) as any).status).toBe('ok');
    const after = readLedger(backupDir, 'select id, kind, description, file, bytes, sha256, created_at, table_count, row_count from backups order by created_at');
    expect(after.map(({ id: _id, ...rest }) => rest)).toEqual(before.map(({ id: _id, ...rest }) => rest));
    expect(readLedger(backupDir, `select rows from backup_tables where table_name = 'public.t'`)).toEqual(Array(4).fill({ rows: 300 }));
    const human = await runCli(['ledger-rebuild'], env);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(/0 backups added from sidecars .*; 4 already in the ledger/);
    // the rebuilt ledger works: a drill-free restore path, list, verify
    const list = JSON.parse((await runCli(['list', '--json'], env)).stdout);
    expect(list.backups.map((b: any) => b.status)).toEqual(['ok', 'missing', 'corrupt', 'ok']);
    expect((await runCli(['verify', String(list.backups[0].id)], env)).exitCode).toBe(0);
  });

  it('an unreadable ledger is moved aside under a dated name, never deleted, and the rebuild starts a new one', async () => {
    const dir = tempDir('hbrb');
    dirs.push(dir);
    const backupDir = path.join(dir, 'b');
    const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') };
    expect((await runCli(['manual'], env)).exitCode).toBe(0);
    for (const f of readdirSync(backupDir).filter((n) => /^ledger\.db-(wal|shm)$/.test(n))) unlinkSync(path.join(backupDir, f));
    writeFileSync(path.join(backupDir, 'ledger.db'), Buffer.alloc(8192, 0x41));
    const list = await runCli(['list'], env);
    expect(list.exitCode).toBe(1);
    expect(list.stderr).toMatch(/the ledger .* cannot be read: .*hint: run `hybrid-backup ledger-rebuild`: it moves this file aside/);
    const r = await runCli(['ledger-rebuild'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/the unreadable ledger was moved aside to .*ledger\.db\.unreadable-\d{8}T\d{6}Z \(kept, not deleted\)/);
    expect(r.stdout).toMatch(/1 backup added from sidecars \(1 ok/);
    const aside = readdirSync(backupDir).filter((n) => n.startsWith('ledger.db.unreadable-'));
    expect(aside).toHaveLength(1);
    expect(existsSync(path.join(backupDir, aside[0]!))).toBe(true);
    expect(JSON.parse((await runCli(['list', '--json'], env)).stdout).backups).toHaveLength(1);
  });
});
