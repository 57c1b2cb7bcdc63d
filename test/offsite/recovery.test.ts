/**
 * Surviving the loss of the server, end to end through the CLI: backups copied, encrypted with
 * age, to a real S3 server (Ceph's radosgw, test/helpers/s3-server.ts) and to Supabase Storage
 * (the fake), each with its recovery kit; then a fresh install with an empty BACKUP_DIR lists,
 * restores, drills and rebuilds its ledger from the S3 target alone. Debian's `age` decrypts what
 * hybrid-backup encrypted, and what `age` encrypted restores. A wrong identity, a truncated
 * object, a tampered ciphertext and an object whose plain digest differs each fail clearly, with
 * nothing restored.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { SERVICE_KEY } from '../helpers/fake-storage.js';
import { FakeStorageWithList } from '../helpers/fake-storage-list.js';
import { createDatabase, databaseExists, dbUrl, dropDatabase, psql, query, uniqueName } from '../helpers/pg.js';
import { ageKey } from '../helpers/age.js';
import { rawS3Client, type S3Server, startS3Server } from '../helpers/s3-server.js';

const BUCKET = 'hb-recovery';
let rgw: S3Server;
let storage: FakeStorageWithList;
let s3: S3Client;
let db: { name: string; url: string };
const dbs: string[] = [];
const dirs: string[] = [];
let keys: { dir: string; identity: string; recipient: string; other: string };

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  [rgw, storage] = await Promise.all([startS3Server(), new FakeStorageWithList().start()]);
  s3 = rawS3Client(rgw);
  db = await createDatabase('rec');
  dbs.push(db.name);
  await psql(db.url, `create table orders (id int primary key, note text, amount numeric(10,2));
    insert into orders select g, repeat(md5(g::text), 8), g * 1.25 from generate_series(1, 5000) g;
    create table customers (id bigint generated always as identity primary key, email text unique);
    insert into customers (email) select 'c' || g || '@example.com' from generate_series(1, 700) g;`);
  const dir = tempDir('hbk');
  dirs.push(dir);
  const a = ageKey(dir, 'key.txt');
  const b = ageKey(dir, 'other.txt');
  keys = { dir, identity: a.file, recipient: a.recipient, other: b.file };
}, 120_000);

afterAll(async () => {
  s3?.destroy();
  await Promise.all([rgw?.stop(), storage?.stop()]);
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

/** A server's setup: its config file, its BACKUP_DIR, its environment. */
function server(opts: { prefix?: string; local?: boolean; supabase?: boolean; identity?: string | null; recipients?: string[] } = {}) {
  const dir = tempDir('hbr');
  dirs.push(dir);
  const prefix = opts.prefix ?? `${path.basename(dir)}/`;
  const config = {
    offsite: { prefix, targets: [{ name: 'b2', type: 's3', endpoint: rgw.endpoint, region: rgw.region, bucket: BUCKET, prefix, forcePathStyle: true, createBucket: true, accessKeyIdEnv: 'B2_KEY_ID', secretAccessKeyEnv: 'B2_SECRET' }] },
    encryption: { ageRecipients: opts.recipients ?? [keys.recipient], local: !!opts.local },
    restoreTest: { timeoutMinutes: 5 },
  };
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    BACKUP_DIR: path.join(dir, 'b'),
    HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'),
    B2_KEY_ID: rgw.accessKeyId,
    B2_SECRET: rgw.secretAccessKey,
    ...(opts.supabase === false ? {} : { SUPABASE_URL: storage.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY }),
    ...(opts.identity === null ? {} : { HYBRID_BACKUP_AGE_IDENTITY_FILE: opts.identity ?? keys.identity }),
  };
  return { dir, prefix, env, backupDir: env.BACKUP_DIR! };
}

async function getObject(key: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}
const putObject = (key: string, body: Buffer) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

async function manual(env: Record<string, string>, description = 'nightly') {
  const r = await runCli(['manual', description, '--json'], env);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function count(url: string): Promise<number> {
  const [{ n }] = await query(url, 'select (select count(*) from orders) + (select count(*) from customers) as n');
  return Number(n);
}

describe('offsite targets, encryption and recovery from a target alone', () => {
  it('copies every backup to every target, encrypted, each with a recovery kit; age -d gives back the exact file', async () => {
    const s = server();
    const b = await manual(s.env);
    expect(b.offsiteCopies.map((c: { target: string; status: string; encrypted: boolean }) => [c.target, c.status, c.encrypted])).toEqual([
      ['b2', 'uploaded', true],
      ['supabase', 'uploaded', true],
    ]);
    const name = path.basename(b.file);
    const object = await getObject(`${s.prefix}${name}.age`);
    expect(object.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    expect(object.includes(Buffer.from('CREATE TABLE'))).toBe(false);
    // Debian's age decrypts it into the very file the ledger recorded.
    writeFileSync(path.join(s.dir, 'copy.age'), object);
    execFileSync('age', ['-d', '-i', keys.identity, '-o', path.join(s.dir, 'plain.sql'), path.join(s.dir, 'copy.age')]);
    expect(sha(readFileSync(path.join(s.dir, 'plain.sql')))).toBe(b.sha256);
    // The kit: what the copy is, with no secret in it, and how to restore it by hand.
    const kit = JSON.parse((await getObject(`${s.prefix}${name}.age.meta.json`)).toString());
    expect(kit.copy).toMatchObject({ key: `${name}.age`, bytes: object.length, sha256: sha(object), plainSha256: b.sha256, plainBytes: b.bytes, encryption: { recipients: [keys.recipient] } });
    expect(kit).toMatchObject({ kind: 'manual', description: 'nightly', file: name, compression: 'none', tableCount: 2, rowCount: 5700 });
    expect(kit.howToRestore.join('\n')).toMatch(/age -d -i key.txt .*\n.*sha256sum/);
    const text = JSON.stringify(kit);
    for (const secret of [rgw.secretAccessKey, SERVICE_KEY, readFileSync(keys.identity, 'utf8').match(/AGE-SECRET-KEY-\w+/)![0]]) expect(text).not.toContain(secret);
    // Storage got its own encrypted copy and kit.
    expect(storage.objects.has(`hybrid-backups/${s.prefix}${name}.age`)).toBe(true);
    expect(storage.objects.has(`hybrid-backups/${s.prefix}${name}.age.meta.json`)).toBe(true);
    // verify all checks each target's copy; the monitor has one check per target; metrics by target.
    const v = await runCli(['verify', 'all', '--json'], s.env);
    expect(v.exitCode, v.stdout).toBe(0);
    expect(JSON.parse(v.stdout).results[0].offsiteCopies.map((c: { target: string; ok: boolean }) => [c.target, c.ok])).toEqual([
      ['supabase', true],
      ['b2', true],
    ]);
    const m = JSON.parse((await runCli(['monitor', '--json'], s.env)).stdout);
    const checks = Object.fromEntries(m.checks.map((c: { name: string; status: string }) => [c.name, c.status]));
    expect(checks).toMatchObject({ 'offsite-copy:supabase': 'ok', 'offsite-copy:b2': 'ok' });
    const prom = readFileSync(path.join(s.backupDir, 'metrics.prom'), 'utf8');
    expect(prom).toMatch(/hybrid_backup_offsite_copies\{target="b2"\} 1/);
    expect(prom).toMatch(/hybrid_backup_offsite_copies\{target="supabase"\} 1/);
  });

  it('a target that fails never fails the backup: recorded, alerted by the run, retried at the next run', async () => {
    const s = server();
    const bad = await manual({ ...s.env, B2_SECRET: 'wrong-secret-wrong-secret' });
    expect(bad.status).toBe('ok');
    const copies = Object.fromEntries(bad.offsiteCopies.map((c: { target: string; status: string }) => [c.target, c.status]));
    expect(copies).toEqual({ b2: 'failed', supabase: 'uploaded' });
    const run = readLedger(s.backupDir, `select status, error_code, error_message from runs where job = 'offsite-upload'`)[0];
    expect(run).toMatchObject({ status: 'failed', error_code: 'offsite-failed' });
    expect(run.error_message).toMatch(/to "b2"/);
    expect(run.error_message).not.toContain('wrong-secret');
    const m = JSON.parse((await runCli(['monitor', '--json'], { ...s.env, B2_SECRET: 'wrong-secret-wrong-secret' })).stdout);
    expect(m.checks.find((c: { name: string }) => c.name === 'offsite-copy:b2')).toMatchObject({ status: 'warning' });
    const next = await manual(s.env, 'next');
    expect(next.offsiteCopies.every((c: { status: string }) => c.status === 'uploaded')).toBe(true);
    expect(readLedger(s.backupDir, `select target, status from offsite_copies where backup_id = ? order by target`, bad.id)).toEqual([
      { target: 'b2', status: 'uploaded' },
      { target: 'supabase', status: 'uploaded' },
    ]);
  });

  it('the server is gone: a fresh install lists, rebuilds its ledger and restores from the S3 target alone', async () => {
    const old = server();
    const first = await manual(old.env, 'first');
    await psql(db.url, 'insert into customers (email) values (\'late@example.com\')');
    const second = await manual(old.env, 'second');
    await psql(db.url, 'delete from customers where email = \'late@example.com\'');

    // A new machine: an empty BACKUP_DIR, the Supabase account lost, only the S3 credentials and the key.
    const fresh = server({ prefix: old.prefix, supabase: false });
    const list = await runCli(['offsite-list', '--target', 'b2', '--json'], fresh.env);
    expect(list.exitCode, list.stderr).toBe(0);
    const held = JSON.parse(list.stdout).backups;
    expect(held.map((e: { description: string; encrypted: boolean; target: string }) => [e.description, e.encrypted, e.target])).toEqual([
      ['second', true, 'b2'],
      ['first', true, 'b2'],
    ]);
    expect(held[0]).toMatchObject({ kind: 'manual', key: `${path.basename(second.file)}.age`, createdAt: second.createdAt });

    const target = uniqueName('gone');
    dbs.push(target);
    const r = await runCli(['restore', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--target', dbUrl(target), '--create', '--json'], fresh.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ from: 'offsite', offsiteTarget: 'b2', createdDatabase: true, fidelity: { differences: [] } });
    expect(await count(dbUrl(target))).toBe(5701);
    // The restored backup is now in the new ledger, its file missing here, its copy recorded.
    const rows = readLedger(fresh.backupDir, 'select b.description, b.status, o.target, o.status as copy from backups b join offsite_copies o on o.backup_id = b.id');
    expect(rows).toEqual([{ description: 'second', status: 'missing', target: 'b2', copy: 'uploaded' }]);

    // ledger-rebuild --from-offsite adds the rest; restore by id then works too.
    const rb = await runCli(['ledger-rebuild', '--from-offsite', 'b2', '--json'], fresh.env);
    expect(rb.exitCode, rb.stdout + rb.stderr).toBe(0);
    expect(JSON.parse(rb.stdout)).toMatchObject({ fromOffsite: 'b2', alreadyKnown: 1, unreadable: [] });
    const listed = JSON.parse((await runCli(['list', '--json'], fresh.env)).stdout).backups;
    expect(listed.map((b: { description: string; status: string }) => [b.description, b.status])).toEqual([
      ['second', 'missing'],
      ['first', 'missing'],
    ]);
    const firstId = listed[1].id;
    const t2 = uniqueName('gone1');
    dbs.push(t2);
    const r2 = await runCli(['restore', String(firstId), '--from', 'offsite', '--target', dbUrl(t2), '--create'], fresh.env);
    expect(r2.exitCode, r2.stderr).toBe(0);
    expect(r2.stdout).toMatch(/offsite copy in "b2" s3:\/\/hb-recovery\/.*both checksums verified/);
    expect(await count(dbUrl(t2))).toBe(5700);
    expect(first.id).toBeGreaterThan(0);

    // A drill of the copy in the target, on a throwaway server.
    const drill = await runCli(['restore-test', 'latest', '--from', 'offsite:b2', '--json'], fresh.env);
    expect(drill.exitCode, drill.stdout + drill.stderr).toBe(0);
    expect(JSON.parse(drill.stdout)).toMatchObject({ ok: true, source: 'offsite:b2', rowsChecked: 5701 });
    expect(readLedger(fresh.backupDir, `select source from restore_drills`)).toEqual([{ source: 'offsite:b2' }]);
  }, 240_000);

  it('without the identity, with a wrong one, or with a damaged copy: a clear error and nothing restored', async () => {
    const s = server();
    const b = await manual(s.env);
    const key = `${s.prefix}${path.basename(b.file)}.age`;
    const attempt = async (env: Record<string, string>) => {
      const name = uniqueName('nr');
      const r = await runCli(['restore', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--target', dbUrl(name), '--create'], env);
      expect(await databaseExists(name)).toBe(false);
      return r;
    };
    const { HYBRID_BACKUP_AGE_IDENTITY_FILE: _, ...noKey } = s.env;
    const none = await attempt(noKey);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toMatch(/^hybrid-backup: backup \d+ \(s3:\/\/.*\.age\) is encrypted, and no age identity .* is configured .*hint: set HYBRID_BACKUP_AGE_IDENTITY_FILE/);
    const wrong = await attempt({ ...s.env, HYBRID_BACKUP_AGE_IDENTITY_FILE: keys.other });
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/cannot decrypt the offsite copy .*: .*identit/i);
    expect(wrong.stderr).not.toContain(readFileSync(keys.other, 'utf8').match(/AGE-SECRET-KEY-1\w+/)![0]);

    const original = await getObject(key);
    const kitKey = `${key}.meta.json`;
    const kit = JSON.parse((await getObject(kitKey)).toString());
    try {
      // truncated at a chunk boundary, past the header
      await putObject(key, original.subarray(0, original.length - 1000));
      const cut = await attempt(s.env);
      expect(cut.exitCode).toBe(1);
      expect(cut.stderr).toMatch(/cannot decrypt the offsite copy .*(cut short|truncated|ends)/i);
      // one flipped byte in the ciphertext
      const flipped = Buffer.from(original);
      flipped[flipped.length - 5000] ^= 0x01;
      await putObject(key, flipped);
      const tampered = await attempt(s.env);
      expect(tampered.exitCode).toBe(1);
      expect(tampered.stderr).toMatch(/cannot decrypt the offsite copy .*(damaged|tampered|altered)/i);
      // a well-formed copy of another file, with a kit that matches the object but not the backup
      const otherPlain = path.join(s.dir, 'other.sql');
      writeFileSync(otherPlain, readFileSync(b.file).toString().replace('CREATE TABLE', 'CREATE  TABLE'));
      execFileSync('age', ['-r', keys.recipient, '-o', `${otherPlain}.age`, otherPlain]);
      const other = readFileSync(`${otherPlain}.age`);
      await putObject(key, other);
      await putObject(kitKey, Buffer.from(JSON.stringify({ ...kit, copy: { ...kit.copy, bytes: other.length, sha256: sha(other) } })));
      const swapped = await attempt(s.env);
      expect(swapped.exitCode).toBe(1);
      expect(swapped.stderr).toMatch(/the file inside the offsite copy .* is not the backup/);
      // and a copy encrypted by Debian's age from the real file restores
      execFileSync('age', ['-r', keys.recipient, '-o', path.join(s.dir, 'real.sql.age'), b.file]);
      const byAge = readFileSync(path.join(s.dir, 'real.sql.age'));
      await putObject(key, byAge);
      await putObject(kitKey, Buffer.from(JSON.stringify({ ...kit, copy: { ...kit.copy, bytes: byAge.length, sha256: sha(byAge) } })));
      const name = uniqueName('byage');
      dbs.push(name);
      const ok = await runCli(['restore', 'latest', '--from', 'offsite', '--offsite-target', 'b2', '--target', dbUrl(name), '--create'], s.env);
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(await count(dbUrl(name))).toBe(5700);
    } finally {
      await putObject(key, original);
      await putObject(kitKey, Buffer.from(JSON.stringify(kit)));
    }
    expect(readLedger(s.backupDir, `select error_code from runs where job = 'restore' and status = 'failed' order by id`).map((r: { error_code: string }) => r.error_code)).toEqual([
      'decrypt-failed',
      'decrypt-failed',
      'decrypt-failed',
      'checksum-mismatch',
    ]);
  }, 120_000);

  it('retention deletes the copies and kits from every target', async () => {
    const s = server({ recipients: [] });
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ ...JSON.parse(readFileSync(path.join(s.dir, 'c.json'), 'utf8')), retention: { days: 1, minKeep: 1 } }));
    const old = await manual(s.env, 'old');
    const kept = path.basename((await manual(s.env, 'new')).file);
    const name = path.basename(old.file);
    expect(old.offsiteCopies.map((c: { encrypted: boolean }) => c.encrypted)).toEqual([false, false]);
    execFileSync('sqlite3', [path.join(s.backupDir, 'ledger.db'), `update backups set created_at = '${new Date(Date.now() - 5 * 86_400_000).toISOString()}' where id = ${old.id}`]);
    const r = await runCli(['prune', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readLedger(s.backupDir, 'select target, status from offsite_copies where backup_id = ? order by target', old.id)).toEqual([
      { target: 'b2', status: 'deleted' },
      { target: 'supabase', status: 'deleted' },
    ]);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: s.prefix }));
    expect((left.Contents ?? []).map((o) => o.Key!.slice(s.prefix.length)).sort()).toEqual([kept, `${kept}.meta.json`]);
    expect(storage.objects.has(`hybrid-backups/${s.prefix}${name}`)).toBe(false);
    expect(storage.objects.has(`hybrid-backups/${s.prefix}${name}.meta.json`)).toBe(false);
  });

  it('encryption.local: the file on disk is an age file; verify, restore and drill decrypt it with the identity', async () => {
    const s = server({ local: true, supabase: false });
    const b = await manual(s.env);
    expect(b.file).toMatch(/\.sql\.age$/);
    const file = readFileSync(b.file);
    expect(sha(file)).toBe(b.sha256);
    const sidecar = JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8'));
    execFileSync('age', ['-d', '-i', keys.identity, '-o', path.join(s.dir, 'p.sql'), b.file]);
    expect(sha(readFileSync(path.join(s.dir, 'p.sql')))).toBe(sidecar.plainSha256);
    expect(sidecar.encryption).toEqual({ format: 'age-encryption.org/v1', recipients: [keys.recipient] });
    // the offsite copy is the same encrypted file, under the same name
    expect(b.offsiteCopies[0]).toMatchObject({ target: 'b2', key: path.basename(b.file), encrypted: true, sha256: b.sha256 });
    expect((await runCli(['verify', 'latest'], s.env)).exitCode).toBe(0);
    const name = uniqueName('loc');
    dbs.push(name);
    const r = await runCli(['restore', 'latest', '--target', dbUrl(name), '--create'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await count(dbUrl(name))).toBe(5700);
    const { HYBRID_BACKUP_AGE_IDENTITY_FILE: _, ...noKey } = s.env;
    const refused = await runCli(['restore', 'latest', '--target', dbUrl(uniqueName('lock')), '--create'], noKey);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/identity/);
    const drill = await runCli(['restore-test', '--json'], s.env);
    expect(drill.exitCode, drill.stdout).toBe(0);
    expect(JSON.parse(drill.stdout)).toMatchObject({ ok: true, source: 'local' });
    // and from the target, on a fresh install
    const fresh = server({ prefix: s.prefix, supabase: false, local: true });
    mkdirSync(fresh.backupDir, { recursive: true });
    const t = uniqueName('locfresh');
    dbs.push(t);
    const fr = await runCli(['restore', 'latest', '--from', 'offsite', '--target', dbUrl(t), '--create'], fresh.env);
    expect(fr.exitCode, fr.stderr).toBe(0);
    expect(await count(dbUrl(t))).toBe(5700);
  }, 180_000);
});
