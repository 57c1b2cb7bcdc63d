/**
 * Issue 15, item 4 and the loss of the server: a backup's Supabase Storage files travel to the
 * offsite targets with it — each store file once per target, age-encrypted, beside the backup's
 * encrypted manifest, named in the recovery kit — and come back from a target alone: a fresh
 * install with an empty BACKUP_DIR restores the database and every file into a new project
 * (`restore --from offsite --storage-to`), `restore-storage --from offsite` does the files alone,
 * and says which file it could not bring back; `ledger-rebuild --from-offsite` brings the
 * manifests back; retention removes from the target the files no kept copy references, never
 * one that is referenced.
 *
 * Real things: the CLI as a subprocess, PostgreSQL, a real S3 server (radosgw), Debian's `age`;
 * the Supabase Storage API is the local fake project.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runCli, tempDir } from '../helpers/cli.js';
import { FakeStorageProject, PROJECT_KEY } from '../helpers/fake-storage-project.js';
import { ADMIN_URL, createDatabase, databaseExists, dropDatabase, query, uniqueName, dbUrl } from '../helpers/pg.js';
import { ageKey } from '../helpers/age.js';
import { rawS3Client, type S3Server, startS3Server } from '../helpers/s3-server.js';
import { recipientsFingerprint } from '../../src/offsite/storage-copies.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A store file's key in the target: its digest and the fingerprint of the recipients it is encrypted to. */
const skey = (digest: string) => `storage/${digest.slice(0, 2)}/${digest}.${recipientsFingerprint([keys.recipient])}.age`;
const BUCKET = 'hb-offsite-files';

let rgw: S3Server;
let s3: S3Client;
let source: FakeStorageProject;
let db: { name: string; url: string };
const dbs: string[] = [];
const dirs: string[] = [];
let keys: { identity: string; recipient: string };
let prefix: string;
let home: ReturnType<typeof server>;
const files = new Map<string, { bucket: string; name: string; contentType: string; bytes: Buffer }>();

const FILES: Array<[string, string, string]> = [
  ['avatars', 'alice/me.png', 'image/png'],
  ['avatars', 'bob/me.png', 'image/png'],
  ['docs', 'reports/2026/été résumé.pdf', 'application/pdf'],
  ['docs', 'readme.txt', 'text/plain'],
  ['docs', 'copy of readme.txt', 'text/plain'],
];

function server(opts: { identity?: boolean } = {}) {
  const dir = tempDir('hbof');
  dirs.push(dir);
  const config = {
    offsite: { prefix, targets: [{ name: 'b2', type: 's3', endpoint: rgw.endpoint, region: rgw.region, bucket: BUCKET, prefix, forcePathStyle: true, createBucket: true, accessKeyIdEnv: 'B2_KEY_ID', secretAccessKeyEnv: 'B2_SECRET' }] },
    encryption: { ageRecipients: [keys.recipient] },
    retention: { days: 1, minKeep: 1 },
    storage: { gcGraceMinutes: 0, concurrency: 3 },
  };
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    BACKUP_DIR: path.join(dir, 'b'),
    HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'),
    B2_KEY_ID: rgw.accessKeyId,
    B2_SECRET: rgw.secretAccessKey,
    SUPABASE_URL: source.url,
    SUPABASE_SERVICE_ROLE_KEY: PROJECT_KEY,
    ...(opts.identity === false ? {} : { HYBRID_BACKUP_AGE_IDENTITY_FILE: keys.identity }),
  };
  return { dir, env, backupDir: env.BACKUP_DIR! };
}

async function keysUnder(sub: string): Promise<Map<string, { bytes: number }>> {
  const out = new Map<string, { bytes: number }>();
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix + sub, ContinuationToken: token }));
    for (const o of r.Contents ?? []) out.set(o.Key!.slice(prefix.length), { bytes: o.Size! });
    token = r.NextContinuationToken;
  } while (token);
  return out;
}

async function getObject(key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: prefix + key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function manual(env: Record<string, string>, description: string) {
  const r = await runCli(['manual', description, '--json'], env);
  expect(r.exitCode, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect(doc.storage, r.stderr).toMatchObject({ complete: true });
  return doc;
}

function putFile(bucket: string, name: string, contentType: string, bytes: Buffer): void {
  files.set(`${bucket}/${name}`, { bucket, name, contentType, bytes });
  source.put(bucket, name, bytes, { contentType, ...(bucket === 'docs' ? { userMetadata: { owner: 'alice' } } : {}) });
}

beforeAll(async () => {
  rgw = await startS3Server();
  s3 = rawS3Client(rgw);
  source = await new FakeStorageProject().start();
  db = await createDatabase('offfiles');
  dbs.push(db.name);
  await query(
    db.url,
    `create schema storage;
     create table storage.objects (id uuid primary key default gen_random_uuid(), bucket_id text, name text, metadata jsonb);
     create table public.notes (id int primary key, body text);
     insert into public.notes select g, 'note ' || g from generate_series(1, 300) g;`,
  );
  source.addBucket('avatars', { public: true });
  source.addBucket('docs');
  const readme = randomBytes(4000);
  for (const [bucket, name, contentType] of FILES) {
    // two objects with the same bytes: one file in the store and in the target
    putFile(bucket, name, contentType, name.endsWith('readme.txt') ? readme : randomBytes(600 + Math.floor(Math.random() * 6000)));
    await query(db.url, 'insert into storage.objects (bucket_id, name) values ($1, $2)', [bucket, name]);
  }
  const kd = tempDir('hbofk');
  dirs.push(kd);
  const k = ageKey(kd, 'key.txt');
  keys = { identity: k.file, recipient: k.recipient };
  prefix = `${path.basename(kd)}/`;
  home = server();
}, 180_000);

afterAll(async () => {
  s3?.destroy();
  await Promise.all([rgw?.stop(), source?.stop()]);
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

describe('Storage files in offsite targets', () => {
  let first: any;
  let second: any;

  it('a backup sends each of its files once, encrypted, with its encrypted manifest, named in the kit; age -d gives each file back', async () => {
    first = await manual(home.env, 'first');
    const store = await keysUnder('storage/');
    const distinct = new Set([...files.values()].map((f) => sha(f.bytes)));
    expect(store.size).toBe(distinct.size); // the two readmes are one file
    for (const f of files.values()) {
      const key = skey(sha(f.bytes));
      expect(store.has(key), key).toBe(true);
    }
    // Debian's age decrypts a file to its exact bytes
    const one = [...files.values()][2]!;
    const enc = path.join(home.dir, 'one.age');
    writeFileSync(enc, await getObject(skey(sha(one.bytes))));
    expect(sha(execFileSync('age', ['-d', '-i', keys.identity, enc]))).toBe(sha(one.bytes));
    expect((await getObject(skey(sha(one.bytes)))).includes(one.bytes.subarray(0, 64))).toBe(false);

    const kitKey = `${path.basename(first.file)}.age.meta.json`;
    const kit = JSON.parse((await getObject(kitKey)).toString('utf8'));
    expect(kit.copy.storage).toMatchObject({ manifestKey: `${path.basename(first.file)}.storage.json.age`, encrypted: true, recipients: [keys.recipient], objects: FILES.length, files: distinct.size, complete: true });
    expect(kit.howToRestore.join('\n')).toContain(`storage/<first two hex digits>/<sha256>.${recipientsFingerprint([keys.recipient])}.age`);
    const manifestEnc = path.join(home.dir, 'manifest.age');
    writeFileSync(manifestEnc, await getObject(kit.copy.storage.manifestKey));
    const manifest = JSON.parse(execFileSync('age', ['-d', '-i', keys.identity, manifestEnc], { encoding: 'utf8' }));
    expect(manifest.objects.map((o: any) => `${o.bucket}/${o.path}`).sort()).toEqual([...files.keys()].sort());
    // nothing of a path or a name travels in the clear
    for (const k of (await keysUnder('')).keys()) expect(k).not.toMatch(/alice|readme|avatars/);
  });

  it('the next backup sends only the file that changed', async () => {
    const before = await keysUnder('storage/');
    putFile('avatars', 'bob/me.png', 'image/png', randomBytes(2500));
    second = await manual(home.env, 'second');
    const after = await keysUnder('storage/');
    const added = [...after.keys()].filter((k) => !before.has(k));
    expect(added).toEqual([skey(sha(files.get('avatars/bob/me.png')!.bytes))]);
  });

  it('the server is gone: a fresh install restores the database and every file into a new project from the target alone', async () => {
    const fresh = server();
    const target = await new FakeStorageProject('new-project-key').start();
    const name = uniqueName('offnew');
    dbs.push(name);
    try {
      const r = await runCli(['restore', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--target', dbUrl(name), '--create', '--storage-to', target.url, '--json'], { ...fresh.env, SUPABASE_TARGET_SERVICE_ROLE_KEY: 'new-project-key' });
      expect(r.exitCode, r.stderr + r.stdout).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ backupId: expect.any(Number), from: 'offsite', storage: { complete: true, objects: FILES.length, uploaded: FILES.length, failed: [] } });
      const [{ n }] = await query(dbUrl(name), 'select count(*)::int as n from public.notes');
      expect(n).toBe(300);
      for (const f of files.values()) {
        const o = target.get(f.bucket, f.name);
        expect(o, `${f.bucket}/${f.name}`).toBeDefined();
        expect(o!.contentType).toBe(f.contentType);
        expect(await target.sha256(f.bucket, f.name)).toBe(sha(f.bytes));
      }
      expect(target.get('docs', 'readme.txt')!.userMetadata).toEqual({ owner: 'alice' });
      // the fresh install's ledger now knows the backup's files, and its store holds them
      const l = new Database(path.join(fresh.backupDir, 'ledger.db'), { readonly: true });
      const row = l.prepare('select complete, objects, manifest_file from storage_captures where backup_id = ?').get(doc.backupId) as any;
      l.close();
      expect(row).toMatchObject({ complete: 1, objects: FILES.length });
      const v = await runCli(['verify', String(doc.backupId), '--json'], fresh.env);
      expect(JSON.parse(v.stdout).results[0].storage).toMatchObject({ ok: true, objects: FILES.length });
    } finally {
      await target.stop();
    }
  });

  it('a file damaged in the target: restore-storage --from offsite brings back the rest and names it, exit 1', async () => {
    const fresh = server();
    const target = await new FakeStorageProject('new-project-key').start();
    const lost = files.get('docs/reports/2026/été résumé.pdf')!;
    const lostKey = skey(sha(lost.bytes));
    const original = await getObject(lostKey);
    // damaged in the target
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + lostKey, Body: randomBytes(original.length + 100) }));
    expect(sha(await getObject(lostKey))).not.toBe(sha(original));
    try {
      const r = await runCli(['restore-storage', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--storage-to', target.url, '--json'], { ...fresh.env, SUPABASE_TARGET_SERVICE_ROLE_KEY: 'new-project-key' });
      expect(r.exitCode, r.stderr + r.stdout).toBe(1);
      const doc = JSON.parse(r.stdout);
      expect(doc.complete).toBe(false);
      expect(doc.failed.map((f: any) => `${f.bucket}/${f.path}`)).toEqual(['docs/reports/2026/été résumé.pdf']);
      expect(doc.uploaded).toBe(FILES.length - 1);
      expect(target.get('docs', 'reports/2026/été résumé.pdf')).toBeUndefined();
      // restore with --storage-to refuses before the database is touched
      const other = server();
      const name = uniqueName('offdmg');
      const withDb = await runCli(['restore', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--target', dbUrl(name), '--create', '--storage-to', target.url, '--json'], { ...other.env, SUPABASE_TARGET_SERVICE_ROLE_KEY: 'new-project-key' });
      expect(withDb.exitCode, withDb.stderr).toBe(1);
      expect(JSON.parse(withDb.stdout).error).toMatchObject({ code: 'storage-incomplete', message: expect.stringContaining('the database was not touched') });
      expect(await databaseExists(name)).toBe(false);
      // and the damaged file was not kept in the store
      expect((await import('node:fs')).existsSync(path.join(fresh.backupDir, 'storage', 'objects', sha(lost.bytes).slice(0, 2), sha(lost.bytes)))).toBe(false);
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + lostKey, Body: original }));
      // without the identity nothing is fetched, and the error says what to set
      const noKey = server({ identity: false });
      const n = await runCli(['restore-storage', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--storage-to', target.url, '--json'], { ...noKey.env, SUPABASE_TARGET_SERVICE_ROLE_KEY: 'new-project-key' });
      expect(n.exitCode).toBe(2);
      expect(JSON.parse(n.stdout).error.code).toBe('identity-missing');
    } finally {
      await target.stop();
    }
  });

  it('verify says which Storage file a target lost', async () => {
    const lost = files.get('avatars/alice/me.png')!;
    const key = skey(sha(lost.bytes));
    const original = await getObject(key);
    const ok = await runCli(['verify', String(second.id), '--json'], home.env);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: prefix + key }));
    try {
      const r = await runCli(['verify', String(second.id), '--json'], home.env);
      expect(r.exitCode, r.stderr).toBe(1);
      const b2 = JSON.parse(r.stdout).results[0].offsiteCopies.find((c: any) => c.target === 'b2');
      expect(b2).toMatchObject({ ok: false, error: expect.stringContaining('avatars/alice/me.png') });
      // cut short under its own name: not the size age gives its bytes, so not there
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + key, Body: original.subarray(0, original.length - 16) }));
      const cut = await runCli(['verify', String(second.id), '--json'], home.env);
      expect(cut.exitCode, cut.stderr).toBe(1);
      expect(JSON.parse(cut.stdout).results[0].offsiteCopies.find((c: any) => c.target === 'b2')).toMatchObject({ ok: false, error: expect.stringContaining('avatars/alice/me.png') });
      // under another set of recipients' name (what a restore with this kit does not fetch): not there either
      const other = `storage/${key.split('/')[1]}/${sha(lost.bytes)}.${'0'.repeat(16)}.age`;
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + other, Body: original }));
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: prefix + key }));
      const moved = await runCli(['verify', String(second.id), '--json'], home.env);
      expect(moved.exitCode, moved.stderr).toBe(1);
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: prefix + other }));
    } finally {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + key, Body: original }));
    }
    expect((await runCli(['verify', String(second.id), '--json'], home.env)).exitCode).toBe(0);
  });

  it('a drill of the copy in the target checks the files it names are there: one lost fails it, naming the file', async () => {
    const fresh = server();
    const env = { ...fresh.env, RESTORE_TEST_DATABASE_URL: ADMIN_URL };
    const drill = () => runCli(['restore-test', 'latest', '--from', 'offsite:b2', '--json'], env);
    const ok = await drill();
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, source: 'offsite:b2', storageFiles: { ok: true, objects: FILES.length, missing: 0 } });
    const key = skey(sha(files.get('avatars/bob/me.png')!.bytes));
    const original = await getObject(key);
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: prefix + key }));
    try {
      const r = await drill();
      expect(r.exitCode, r.stderr).toBe(1);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ ok: false, storageFiles: { ok: false, missing: 1 } });
      expect(doc.storageFiles.error).toContain('avatars/bob/me.png');
    } finally {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: prefix + key, Body: original }));
    }
  });

  it('ledger-rebuild --from-offsite brings the manifests back into the ledger', async () => {
    const fresh = server();
    const r = await runCli(['ledger-rebuild', '--from-offsite', 'b2', '--json'], fresh.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.added.length).toBeGreaterThanOrEqual(2);
    for (const b of doc.added) expect(b.storage, JSON.stringify(b)).toMatchObject({ complete: true, objects: FILES.length });
  });

  it('without the identity, ledger-rebuild --from-offsite records the files as not known here, never as none; with it, a second run reads them', async () => {
    const fresh = server({ identity: false });
    const r = await runCli(['ledger-rebuild', '--from-offsite', 'b2', '--json'], fresh.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.added.length).toBeGreaterThanOrEqual(2);
    for (const b of doc.added) {
      expect(b.storage, JSON.stringify(b)).toMatchObject({ complete: false, objects: FILES.length, manifestFile: null, error: { code: 'identity-missing' } });
      expect(b.storage.summary).toMatch(/INCOMPLETE: their manifest \(\d+ objects\) is in "b2", encrypted, and not read here: set HYBRID_BACKUP_AGE_IDENTITY_FILE/);
    }
    const human = await runCli(['list'], fresh.env);
    expect(human.stdout).toMatch(/INCOMPLETE/);
    const again = await runCli(['ledger-rebuild', '--from-offsite', 'b2', '--json'], { ...fresh.env, HYBRID_BACKUP_AGE_IDENTITY_FILE: keys.identity });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ added: [], alreadyKnown: doc.added.length });
    const list = JSON.parse((await runCli(['list', '--json'], fresh.env)).stdout);
    for (const b of list.backups) expect(b.storage, JSON.stringify(b)).toMatchObject({ complete: true, objects: FILES.length, error: null });
  });

  it('retention removes from the target the files no kept copy references, never a referenced one', async () => {
    // The second backup is the one kept (minKeep 1); the first, made old, is pruned.
    const l = new Database(path.join(home.backupDir, 'ledger.db'));
    l.prepare('update backups set created_at = ? where id = ?').run(new Date(Date.now() - 5 * 86_400_000).toISOString(), first.id);
    l.close();
    const firstManifest = JSON.parse((await import('node:fs')).readFileSync(first.storage.manifestFile, 'utf8'));
    const secondManifest = JSON.parse((await import('node:fs')).readFileSync(second.storage.manifestFile, 'utf8'));
    const keep = new Set<string>(secondManifest.objects.map((o: any) => o.sha256));
    const onlyFirst = firstManifest.objects.map((o: any) => o.sha256).filter((s: string) => !keep.has(s));
    expect(onlyFirst).toHaveLength(1);
    const r = await runCli(['prune', '--json'], home.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).deleted.map((b: any) => b.id)).toEqual([first.id]);
    const store = await keysUnder('storage/');
    expect(store.has(skey(onlyFirst[0]))).toBe(false);
    // every file the kept backup references is still there
    for (const s of keep) expect(store.has(skey(s)), s).toBe(true);
    expect(store.size).toBe(keep.size);
    const all = await keysUnder('');
    expect([...all.keys()].some((k) => k.startsWith(path.basename(first.file)))).toBe(false);
  });

  it('after a key change the files are sent again, encrypted to the new recipients, and the new identity restores them', async () => {
    const kd = tempDir('hbofk2');
    dirs.push(kd);
    const { file: identity2, recipient: recipient2 } = ageKey(kd, 'key2.txt');
    const cfg = JSON.parse((await import('node:fs')).readFileSync(home.env.HYBRID_BACKUP_CONFIG!, 'utf8'));
    cfg.encryption.ageRecipients = [recipient2];
    writeFileSync(home.env.HYBRID_BACKUP_CONFIG!, JSON.stringify(cfg));
    const third = await manual(home.env, 'third');
    const fp2 = recipientsFingerprint([recipient2]);
    const store = await keysUnder('storage/');
    const m = JSON.parse((await import('node:fs')).readFileSync(third.storage.manifestFile, 'utf8'));
    for (const o of m.objects) expect(store.has(`storage/${o.sha256.slice(0, 2)}/${o.sha256}.${fp2}.age`), o.path).toBe(true);
    // only the new identity is needed to bring them back
    const fresh = server();
    const target = await new FakeStorageProject('new-project-key').start();
    try {
      const r = await runCli(['restore-storage', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--storage-to', target.url, '--json'], { ...fresh.env, HYBRID_BACKUP_AGE_IDENTITY_FILE: identity2, SUPABASE_TARGET_SERVICE_ROLE_KEY: 'new-project-key' });
      expect(r.exitCode, r.stderr + r.stdout).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ complete: true, objects: FILES.length });
    } finally {
      await target.stop();
    }
  });

  it('retention on another installation sharing the target never removes the files of copies its ledger does not hold', async () => {
    // the home installation's second backup holds the only copy of alice's first avatar
    const secondManifest = JSON.parse(readFileSync(second.storage.manifestFile, 'utf8'));
    const oldAlice = secondManifest.objects.find((o: any) => o.path === 'alice/me.png').sha256 as string;
    expect((await keysUnder('storage/')).has(skey(oldAlice))).toBe(true);
    putFile('avatars', 'alice/me.png', 'image/png', randomBytes(3100));
    // a new server on the same target, its ledger empty: two backups, the older one then pruned
    const other = server();
    const a = await manual(other.env, 'other a');
    await manual(other.env, 'other b');
    const l = new Database(path.join(other.backupDir, 'ledger.db'));
    l.prepare('update backups set created_at = ? where id = ?').run(new Date(Date.now() - 5 * 86_400_000).toISOString(), a.id);
    l.close();
    const r = await runCli(['prune', '--json'], other.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).deleted.map((b: any) => b.id)).toEqual([a.id]);
    // its copy is gone from the target, but no file another installation's copies reference
    expect([...(await keysUnder('')).keys()].some((k) => k.startsWith(path.basename(a.file)))).toBe(false);
    expect((await keysUnder('storage/')).has(skey(oldAlice)), 'a file only the home installation\'s copy references').toBe(true);
    expect(readFileSync(path.join(other.backupDir, 'backup.log'), 'utf8')).toMatch(/unused Storage files are not removed: the target holds the Storage manifest of a copy this ledger does not keep/);
  });

  it('a backup whose files this ledger cannot read never replaces a copy whose kit names them', async () => {
    // The ledger is lost while the dumps are still here: rebuilt from the target without the identity.
    const { renameSync, rmSync } = await import('node:fs');
    const kept = path.join(home.dir, 'ledger.kept.db');
    renameSync(path.join(home.backupDir, 'ledger.db'), kept);
    for (const x of ['-wal', '-shm']) rmSync(path.join(home.backupDir, `ledger.db${x}`), { force: true });
    const noKey: Record<string, string> = { ...home.env };
    delete noKey.HYBRID_BACKUP_AGE_IDENTITY_FILE;
    try {
      const rebuilt = await runCli(['ledger-rebuild', '--from-offsite', 'b2', '--json'], noKey);
      expect(rebuilt.exitCode, rebuilt.stderr).toBe(0);
      const readable = JSON.parse(rebuilt.stdout).added.filter((b: any) => b.status === 'ok');
      expect(readable.length).toBeGreaterThan(0);
      for (const b of readable) expect(b.storage).toMatchObject({ complete: false, error: { code: 'identity-missing' } });
      // a second target that is the same place (a copy the ledger does not know it has)
      const cfg = JSON.parse(readFileSync(home.env.HYBRID_BACKUP_CONFIG!, 'utf8'));
      const alias = path.join(home.dir, 'alias.json');
      writeFileSync(alias, JSON.stringify({ ...cfg, offsite: { ...cfg.offsite, targets: [...cfg.offsite.targets, { ...cfg.offsite.targets[0], name: 'b3' }] } }));
      const kitKey = `${path.basename(readable[0].file)}.age.meta.json`;
      const before = await getObject(kitKey);
      const sync = await runCli(['offsite-sync', '--json'], { ...noKey, HYBRID_BACKUP_CONFIG: alias });
      expect(sync.exitCode, sync.stderr).toBe(1);
      const doc = JSON.parse(sync.stdout);
      expect(doc.targets.b3.failed.sort()).toEqual(readable.map((b: any) => b.id).sort());
      const failed = doc.failed.filter((f: any) => f.target === 'b3');
      expect(failed[0].error).toMatch(/names its \d+ Storage files, whose manifest this ledger cannot read .*it was not replaced/);
      expect((await getObject(kitKey)).equals(before)).toBe(true);
      expect(JSON.parse(before.toString('utf8')).copy.storage).toBeDefined();
    } finally {
      rmSync(path.join(home.backupDir, 'ledger.db'), { force: true });
      for (const x of ['-wal', '-shm']) rmSync(path.join(home.backupDir, `ledger.db${x}`), { force: true });
      renameSync(kept, path.join(home.backupDir, 'ledger.db'));
    }
  });
});
