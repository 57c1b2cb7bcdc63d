/** The npm scripts exactly as an operator (or a migration script) types them. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, readLedger, removeDir, ROOT, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';

let db: { name: string; url: string };
let dir: string;
beforeAll(async () => {
  db = await createDatabase('npm');
  await psql(db.url, 'create table orders (id int primary key, total numeric); insert into orders values (1, 9.5);');
  dir = tempDir('hbn');
  writeFileSync(path.join(dir, 'c.json'), '{}');
});
afterAll(async () => {
  await dropDatabase(db.name);
  removeDir(dir);
});

describe('npm scripts', () => {
  it('npm run backup:pre-change "…" && next step: runs the next step only after a durable, recorded backup', async () => {
    const backupDir = path.join(dir, 'backups');
    const env = cliEnv({ DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') });
    const r = await execa('sh', ['-c', 'npm run backup:pre-change "Add orders.discount column" && echo MIGRATING'], { cwd: ROOT, env, extendEnv: false, reject: false });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/backup 1 ok \(pre-change: Add orders\.discount column\)/);
    expect(r.stdout.trim().endsWith('MIGRATING')).toBe(true);
    expect(readLedger(backupDir, 'select kind, description, status from backups')).toEqual([{ kind: 'pre-change', description: 'Add orders.discount column', status: 'ok' }]);

    const list = await execa('npm', ['run', '-s', 'backup:list', '--', '--json'], { cwd: ROOT, env, extendEnv: false });
    expect(JSON.parse(list.stdout).backups).toHaveLength(1);
  });

  it('a failing pre-change backup stops the chain', async () => {
    const env = cliEnv({ DATABASE_URL: `${db.url}_missing`, BACKUP_DIR: path.join(dir, 'b2'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') });
    const r = await execa('sh', ['-c', 'npm run backup:pre-change "Drop column" && echo MIGRATING'], { cwd: ROOT, env, extendEnv: false, reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).not.toContain('MIGRATING');
    expect(r.stderr).toMatch(/does not exist/);
  });
});
