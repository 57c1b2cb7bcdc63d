/**
 * Issue 15 end to end, through the real CLI: a backup of a database with `storage.objects` also
 * captures the project's Storage files (a fake project); a changed file alone is fetched again;
 * a capture that fails leaves the backup ok with its files INCOMPLETE (list, monitor); the files
 * come back into an empty project with `restore-storage`; prune collects what no backup needs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runCli, tempDir } from '../helpers/cli.js';
import { FakeStorageProject, PROJECT_KEY } from '../helpers/fake-storage-project.js';
import { createDatabase, databaseExists, dbUrl, dropDatabase, query, uniqueName } from '../helpers/pg.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let db: { name: string; url: string };
let dir: string;
let backupDir: string;
let source: FakeStorageProject;
const files = new Map<string, Buffer>(); // "bucket/path" → bytes

const FILES: Array<[string, string, string]> = [
  ['avatars', 'alice/me.png', 'image/png'],
  ['avatars', 'bob/me.png', 'image/png'],
  ['docs', 'reports/2026/été résumé.pdf', 'application/pdf'],
  ['docs', 'reports/2026/q1 numbers.csv', 'text/csv'],
  ['docs', 'readme.txt', 'text/plain'],
];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    BACKUP_DIR: backupDir,
    HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'),
    SUPABASE_URL: source.url,
    SUPABASE_SERVICE_ROLE_KEY: PROJECT_KEY,
    ...extra,
  };
}

async function backup(): Promise<any> {
  const r = await runCli(['manual', 'with files', '--json'], env());
  expect(r.exitCode, r.stderr).toBe(0);
  return { ...JSON.parse(r.stdout), stderr: r.stderr };
}

const downloads = () => source.count(/^GET \/storage\/v1\/object\/authenticated\//);

/** Runs `fn` with the store file of `objectPath` (in backup `b`'s manifest) gone, and puts it back after. */
async function withoutStoreFile<T>(b: { storage: { manifestFile: string } }, objectPath: string, fn: () => Promise<T>): Promise<T> {
  const fs = await import('node:fs');
  const m = JSON.parse(fs.readFileSync(b.storage.manifestFile, 'utf8'));
  const victim = m.objects.find((o: any) => o.path === objectPath);
  const file = path.join(backupDir, 'storage', 'objects', victim.sha256.slice(0, 2), victim.sha256);
  const saved = fs.readFileSync(file);
  fs.rmSync(file);
  try {
    return await fn();
  } finally {
    writeFileSync(file, saved);
  }
}

beforeAll(async () => {
  db = await createDatabase('stfiles');
  await query(
    db.url,
    `create schema storage;
     create table storage.objects (id uuid primary key default gen_random_uuid(), bucket_id text, name text, metadata jsonb);
     create table public.notes (id int primary key, body text);
     insert into public.notes values (1, 'hello');`,
  );
  dir = tempDir('hbsf');
  backupDir = path.join(dir, 'backups');
  // Offsite copies off (they would go to the same fake project); files written just now may be collected.
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ offsite: { enabled: false }, storage: { gcGraceMinutes: 0, concurrency: 3 } }));
  source = await new FakeStorageProject().start();
  source.addBucket('avatars', { public: true });
  source.addBucket('docs');
  for (const [bucket, name, contentType] of FILES) {
    const bytes = randomBytes(500 + Math.floor(Math.random() * 5000));
    files.set(`${bucket}/${name}`, bytes);
    source.put(bucket, name, bytes, { contentType, ...(bucket === 'docs' ? { userMetadata: { owner: 'alice' } } : {}) });
    await query(db.url, 'insert into storage.objects (bucket_id, name) values ($1, $2)', [bucket, name]);
  }
});

afterAll(async () => {
  await source?.stop();
  if (db) await dropDatabase(db.name);
  if (dir) removeDir(dir);
});

describe('Storage files in backups, through the CLI', () => {
  let first: any;
  let second: any;

  it('a backup captures every file into the store, with a manifest beside it, in the sidecar and the ledger', async () => {
    first = await backup();
    expect(first.status).toBe('ok');
    expect(first.storage).toMatchObject({ complete: true, objects: FILES.length, missing: 0, rowsWithoutFiles: 0, error: null });
    expect(first.storage.bytes).toBe([...files.values()].reduce((n, b) => n + b.length, 0));
    expect(first.storage.manifestFile).toBe(`${first.file}.storage.json`);
    expect(existsSync(first.storage.manifestFile)).toBe(true);
    for (const b of files.values()) expect(existsSync(path.join(backupDir, 'storage', 'objects', sha(b).slice(0, 2), sha(b)))).toBe(true);
    const sidecar = JSON.parse((await import('node:fs')).readFileSync(`${first.file}.meta.json`, 'utf8'));
    expect(sidecar.storage).toMatchObject({ file: path.basename(first.storage.manifestFile), sha256: first.storage.manifestSha256, complete: true, objects: FILES.length });
    expect(downloads()).toBe(FILES.length);
  });

  it('a changed file is fetched again, and only it', async () => {
    const before = downloads();
    const changed = randomBytes(3000);
    files.set('docs/readme.txt', changed);
    source.put('docs', 'readme.txt', changed, { contentType: 'text/plain', userMetadata: { owner: 'alice' } });
    second = await backup();
    expect(second.storage).toMatchObject({ complete: true, objects: FILES.length });
    expect(downloads() - before).toBe(1);
    expect(source.count(/^GET \/storage\/v1\/object\/authenticated\/docs\/readme\.txt$/)).toBe(2);
  });

  it('a capture that fails (401) leaves the backup ok for its database, its files plainly INCOMPLETE in list and monitor', async () => {
    source.inject({ match: /^GET \/storage\/v1\/bucket$/, status: 401, times: 10 });
    const third = await backup();
    source.clearInjections();
    expect(third.status).toBe('ok');
    expect(third.storage).toMatchObject({ complete: false, manifestFile: null, error: { code: 'storage-failed' } });
    expect(third.stderr).toMatch(/Storage files are INCOMPLETE/);
    expect(third.stderr).not.toContain(PROJECT_KEY);

    const list = await runCli(['list', '--json'], env());
    expect(list.exitCode).toBe(0);
    const listed = JSON.parse(list.stdout).backups.find((b: any) => b.id === third.id);
    expect(listed.storage).toMatchObject({ complete: false, error: { code: 'storage-failed' } });
    const human = await runCli(['list'], env());
    expect(human.stdout).toMatch(/INCOMPLETE/);

    const mon = await runCli(['monitor', '--json'], env());
    const check = JSON.parse(mon.stdout).checks.find((c: any) => c.name === 'storage-files');
    expect(check).toMatchObject({ status: 'warning' });
    expect(check.message).toMatch(/INCOMPLETE/);
  });

  it('restore-storage brings every file back into an empty project, each with its digest, and a second run skips them all', async () => {
    const target = await new FakeStorageProject('target-key').start();
    try {
      const run = () => runCli(['restore-storage', String(second.id), '--storage-to', target.url, '--json'], env({ SUPABASE_TARGET_SERVICE_ROLE_KEY: 'target-key' }));
      const r = await run();
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ backupId: second.id, complete: true, objects: FILES.length, uploaded: FILES.length, failed: [] });
      for (const [bucket, name, contentType] of FILES) {
        const o = target.get(bucket, name);
        expect(o, `${bucket}/${name}`).toBeDefined();
        expect(o!.contentType).toBe(contentType);
        const chunks: Buffer[] = [];
        for await (const c of target.body(o!)) chunks.push(c as Buffer);
        expect(sha(Buffer.concat(chunks))).toBe(sha(files.get(`${bucket}/${name}`)!));
      }
      expect(target.get('docs', 'readme.txt')!.userMetadata).toEqual({ owner: 'alice' });
      const again = JSON.parse((await run()).stdout);
      expect(again).toMatchObject({ complete: true, uploaded: 0, skipped: FILES.length });

      // without a key for the target, nothing is done
      const nokey = await runCli(['restore-storage', String(second.id), '--storage-to', target.url, '--json'], env());
      expect(nokey.exitCode).toBe(2);
      expect(JSON.parse(nokey.stdout).error.code).toBe('storage-off');
    } finally {
      await target.stop();
    }
  });

  it('restore --storage-to restores the database, then every file, into a new project', async () => {
    const target = await new FakeStorageProject('target-key').start();
    const name = uniqueName('stnew');
    try {
      const r = await runCli(['restore', String(second.id), '--target', dbUrl(name), '--create', '--storage-to', target.url, '--json'], env({ SUPABASE_TARGET_SERVICE_ROLE_KEY: 'target-key' }));
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ backupId: second.id, createdDatabase: true, storage: { complete: true, objects: FILES.length, uploaded: FILES.length } });
      expect(await query(dbUrl(name), 'select body from public.notes')).toEqual([{ body: 'hello' }]);
      // the rows of the restored storage.objects and the files agree
      const rows = await query(dbUrl(name), 'select bucket_id, name from storage.objects order by 1, 2');
      expect(rows).toHaveLength(FILES.length);
      for (const row of rows) expect(await target.sha256(row.bucket_id, row.name)).toBe(sha(files.get(`${row.bucket_id}/${row.name}`)!));

      // a key for the files that is not there: refused before the database is touched
      const other = uniqueName('stnew');
      const nokey = await runCli(['restore', String(second.id), '--target', dbUrl(other), '--create', '--storage-to', 'http://127.0.0.1:9/', '--json'], env());
      expect(nokey.exitCode).toBe(2);
      expect(JSON.parse(nokey.stdout).error.code).toBe('storage-off');
      expect(await databaseExists(other)).toBe(false);
    } finally {
      await target.stop();
      await dropDatabase(name);
    }
  });

  it('a drill fails naming a file the store lost', async () => {
    await withoutStoreFile(second, 'alice/me.png', async () => {
      const r = await runCli(['restore-test', String(second.id), '--json'], env());
      expect(r.exitCode, r.stderr).toBe(1);
      const doc = JSON.parse(r.stdout);
      expect(doc.ok).toBe(false);
      expect(doc.storageFiles).toMatchObject({ ok: false, missing: 1 });
      expect(doc.storageFiles.error).toContain('avatars/alice/me.png');
    });
  });

  it('the monitor finds a file the store lost the same day: storage-files critical, naming it', async () => {
    const newest = await backup();
    const storageCheck = async () => {
      const r = await runCli(['monitor', '--json'], env());
      return JSON.parse(r.stdout).checks.find((c: any) => c.name === 'storage-files');
    };
    expect(await storageCheck()).toMatchObject({ status: 'ok', message: expect.stringContaining(`the store holds its ${FILES.length} files`) });
    await withoutStoreFile(newest, 'reports/2026/q1 numbers.csv', async () => {
      expect(await storageCheck()).toMatchObject({ status: 'critical', message: expect.stringMatching(new RegExp(`^backup ${newest.id}: 1 Storage file missing from the store: docs/reports/2026/q1 numbers.csv`)) });
    });
    expect((await storageCheck()).status).toBe('ok');
  });

  it('prune collects store files no kept backup references, and never a referenced one', async () => {
    const stray = randomBytes(100);
    const straySha = sha(stray);
    mkdirSync(path.join(backupDir, 'storage', 'objects', straySha.slice(0, 2)), { recursive: true });
    writeFileSync(path.join(backupDir, 'storage', 'objects', straySha.slice(0, 2), straySha), stray);
    const r = await runCli(['prune', '--json'], env());
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).storageFiles).toMatchObject({ removed: 1 });
    expect(existsSync(path.join(backupDir, 'storage', 'objects', straySha.slice(0, 2), straySha))).toBe(false);
    // every file of both manifests is still there (the old readme.txt too: the first backup needs it)
    const held = new Set(readdirSync(path.join(backupDir, 'storage', 'objects'), { recursive: true }).map((f) => path.basename(String(f))));
    for (const b of [first, second]) {
      const m = JSON.parse((await import('node:fs')).readFileSync(b.storage.manifestFile, 'utf8'));
      for (const o of m.objects) expect(held.has(o.sha256)).toBe(true);
    }
    const v = await runCli(['verify', 'all', '--json'], env());
    expect(v.exitCode, v.stdout + v.stderr).toBe(0);
  });

  it('ledger-rebuild brings the files of each backup back from its sidecar, and says so when a manifest is gone', async () => {
    const { renameSync, rmSync } = await import('node:fs');
    renameSync(path.join(backupDir, 'ledger.db'), path.join(dir, 'ledger.before-rebuild.db'));
    rmSync(path.join(backupDir, 'ledger.db-wal'), { force: true });
    rmSync(path.join(backupDir, 'ledger.db-shm'), { force: true });
    rmSync(first.storage.manifestFile);
    const r = await runCli(['ledger-rebuild', '--json'], env());
    expect(r.exitCode, r.stderr).toBe(0);
    const added = JSON.parse(r.stdout).added;
    const byFile = (f: string) => added.find((b: any) => b.file === f);
    expect(byFile(second.file).storage).toMatchObject({ complete: true, objects: FILES.length, manifestFile: second.storage.manifestFile, manifestSha256: second.storage.manifestSha256 });
    expect(byFile(first.file).storage).toMatchObject({ complete: false, manifestFile: null, error: { code: 'file-missing' } });
  });

  it('a backup whose capture missed a file restores what it holds, and says the project is not whole: exit 1', async () => {
    // a row of storage.objects whose file is not in the project: the capture is incomplete
    await query(db.url, "insert into storage.objects (bucket_id, name) values ('docs', 'ghost.txt')");
    const target = await new FakeStorageProject('target-key').start();
    try {
      const partial = await backup();
      expect(partial.storage).toMatchObject({ complete: false, objects: FILES.length });
      const run = (json: boolean) => runCli(['restore-storage', String(partial.id), '--storage-to', target.url, ...(json ? ['--json'] : [])], env({ SUPABASE_TARGET_SERVICE_ROLE_KEY: 'target-key' }));
      const r = await run(true);
      expect(r.exitCode, r.stderr).toBe(1);
      // every file it holds came back
      expect(JSON.parse(r.stdout)).toMatchObject({ complete: true, backupComplete: false, uploaded: FILES.length, failed: [] });
      for (const [bucket, name] of FILES) expect(target.get(bucket, name), `${bucket}/${name}`).toBeDefined();
      const human = await run(false);
      expect(human.exitCode).toBe(1);
      expect(human.stdout).toMatch(/^INCOMPLETE: restored the Storage files of backup \d+/);
      expect(human.stdout).toMatch(/the backup's own capture was incomplete, so the project's files are not all here: files INCOMPLETE: 1 row of the dump has no file/);
    } finally {
      await target.stop();
      await query(db.url, "delete from storage.objects where name = 'ghost.txt'");
    }
  });
});
