/**
 * The offsite target suite (target-suite.ts) for each implementation against a real server:
 * S3Target against Ceph's radosgw started here (test/helpers/s3-server.ts), SupabaseTarget
 * against the fake Storage API with its list endpoint (test/helpers/fake-storage-list.ts);
 * then what only one of them has: S3 permissions, public and missing buckets, multipart
 * cleanup, an unreachable endpoint; Supabase's name escaping and public buckets.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { PassThrough, Readable } from 'node:stream';
import { AbortMultipartUploadCommand, CreateBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutBucketAclCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HbError } from '../../src/domain/errors.js';
import { partPlan, S3Target, type S3TargetSettings } from '../../src/offsite/s3-target.js';
import { OffsiteStore } from '../../src/offsite/store.js';
import { fromStorageName, SupabaseTarget, toStorageName } from '../../src/offsite/supabase-target.js';
import type { OffsiteTarget } from '../../src/offsite/target.js';
import { SERVICE_KEY } from '../helpers/fake-storage.js';
import { FakeStorageWithList } from '../helpers/fake-storage-list.js';
import { rawS3Client, type S3Server, startS3Server } from '../helpers/s3-server.js';
import { describeTarget, startCountingProxy } from './target-suite.js';

const MiB = 1024 * 1024;
const BUCKET = 'hb-suite';
const PART = 5 * MiB;
const QUEUE = 2;

let rgw: S3Server;
let proxy: Awaited<ReturnType<typeof startCountingProxy>>;
let fake: FakeStorageWithList;
let fakeProxy: Awaited<ReturnType<typeof startCountingProxy>>;

beforeAll(async () => {
  [rgw, fake] = await Promise.all([startS3Server(), new FakeStorageWithList().start()]);
  proxy = await startCountingProxy(rgw.port);
  fakeProxy = await startCountingProxy(Number(new URL(fake.url).port));
  const t = await S3Target.open(s3Settings('', { createBucket: true }));
  await t.ensureReady();
  t.close();
  fake.buckets.set(BUCKET, { public: false });
});
afterAll(async () => {
  await Promise.all([proxy?.stop(), fakeProxy?.stop()]);
  await Promise.all([rgw?.stop(), fake?.stop()]);
});

function s3Settings(prefix: string, extra: Partial<S3TargetSettings> = {}): S3TargetSettings {
  return {
    name: 's3-test',
    // Through the counting proxy, so the suite sees what the server has received.
    endpoint: `http://127.0.0.1:${proxy.port}`,
    region: rgw.region,
    bucket: BUCKET,
    prefix,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    credentialsFrom: 'HB_TEST_S3_KEY_ID and HB_TEST_S3_SECRET',
    partSize: PART,
    queueSize: QUEUE,
    ...extra,
  };
}

const rawS3 = () => rawS3Client(rgw);

async function removeAll(t: OffsiteTarget): Promise<void> {
  const keys: string[] = [];
  for await (const e of t.list('')) keys.push(e.key);
  await t.remove(keys);
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const folder = () => `t-${randomUUID().slice(0, 8)}/`;

async function rejection(p: Promise<unknown>): Promise<HbError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(HbError);
  return e as HbError;
}

describeTarget('s3 (Ceph radosgw)', async () => {
  const settings = s3Settings(folder());
  const target = await S3Target.open(settings);
  return {
    target,
    cleanup: async () => {
      await removeAll(target);
      target.close();
    },
    withWrongSecret: async () => {
      const secret = `wrong-${randomBytes(16).toString('hex')}`;
      return { target: await S3Target.open({ ...settings, credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: secret } }), secret };
    },
    received: () => proxy.received(),
    // (queueSize + 1) parts in flight or being filled, the leftover of the last chunk, the
    // counting stream (2 MiB) and the kernel's send buffer (4 MiB).
    maxBuffered: (QUEUE + 2) * PART + 6 * MiB,
  };
});

describeTarget('supabase-storage (fake Storage API)', async () => {
  // Through the counting proxy, so the suite sees what the server has received.
  const settings = { url: `http://127.0.0.1:${fakeProxy.port}`, key: SERVICE_KEY, bucket: BUCKET, prefix: folder() };
  const target = await SupabaseTarget.open(settings, { name: 'supabase-test' });
  return {
    target,
    cleanup: () => removeAll(target),
    withWrongSecret: async () => {
      const secret = `wrong-service-role-${randomBytes(16).toString('hex')}`;
      return { target: await SupabaseTarget.open({ ...settings, key: secret }, { name: 'supabase-test' }), secret };
    },
    received: () => fakeProxy.received(),
    // The counting stream (2 MiB), the kernel's send buffer (4 MiB), the http request's.
    maxBuffered: 12 * MiB,
  };
});

describe('S3Target only', () => {
  it('the part loop itself, fed a stream that had ended before it began: every part once, in order, one multipart upload', async () => {
    // streamUpload without the counting stream S3Target puts in front (which mostly hides this):
    // a paused stream may still deliver its 'end' while a chunk crossing a part is being taken.
    const s3 = await import('@aws-sdk/client-s3');
    const { streamUpload } = await import('../../src/offsite/s3-multipart.js');
    const client = rawS3Client(rgw);
    const creates: string[] = [];
    client.middlewareStack.add((next, context) => async (args) => {
      if (context.commandName === 'CreateMultipartUploadCommand') creates.push(context.commandName);
      return next(args);
    }, { step: 'initialize', name: 'countCreates' });
    const prefix = folder();
    try {
      for (const sizes of [[6, 1, 8], [12], [1, 9, 0.5, 4.5], [5, 5], [0.25, 0.25, 11]]) {
        const data = randomBytes(sizes.reduce((a, b) => a + b, 0) * MiB);
        const body = new PassThrough({ highWaterMark: 64 * MiB });
        let off = 0;
        for (const n of sizes) {
          body.write(data.subarray(off, off + n * MiB));
          off += n * MiB;
        }
        body.end();
        creates.length = 0;
        const Key = `${prefix}${sizes.join('-')}.bin`;
        await streamUpload(s3, client, { Bucket: BUCKET, Key, ContentType: 'application/octet-stream', Metadata: {} }, body, { partSize: PART, queueSize: 2, stop: new AbortController(), checksums: false });
        const got = await client.send(new s3.GetObjectCommand({ Bucket: BUCKET, Key }));
        const bytes = Buffer.from(await got.Body!.transformToByteArray());
        expect(bytes.length, sizes.join(', ')).toBe(data.length);
        expect(bytes.equals(data), sizes.join(', ')).toBe(true);
        expect(creates, sizes.join(', ')).toHaveLength(1);
      }
      expect((await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads ?? []).toEqual([]);
    } finally {
      const t = await S3Target.open(s3Settings(prefix));
      await removeAll(t);
      t.close();
      client.destroy();
    }
  });

  it('sizes parts for a bounded memory: 8 MiB × 4 by default, larger parts fewer at a time past 9,000 parts', () => {
    expect(partPlan(undefined)).toEqual({ partSize: 8 * MiB, queueSize: 4 });
    expect(partPlan(1024 * MiB)).toEqual({ partSize: 8 * MiB, queueSize: 4 });
    expect(partPlan(70 * 1024 * MiB)).toEqual({ partSize: 8 * MiB, queueSize: 4 });
    expect(partPlan(100 * 1024 * MiB)).toEqual({ partSize: 12 * MiB, queueSize: 2 });
    expect(partPlan(400 * 1024 * MiB)).toEqual({ partSize: 46 * MiB, queueSize: 1 });
    expect(partPlan(undefined, 1)).toEqual({ partSize: 5 * MiB, queueSize: 4 });
    expect(partPlan(undefined, 5 * MiB, 8)).toEqual({ partSize: 5 * MiB, queueSize: 7 });
    for (const bytes of [1, 80 * 1024 * MiB, 200 * 1024 * MiB]) {
      const p = partPlan(bytes);
      expect(Math.ceil(bytes / p.partSize)).toBeLessThanOrEqual(9_000);
    }
  });

  it('stores metadata as x-amz-meta-* and says where as s3://bucket/prefix/key', async () => {
    const prefix = folder();
    const t = await S3Target.open(s3Settings(prefix));
    try {
      await t.put('m/x.sql', Readable.from([Buffer.from('select 1;\n')]), { contentType: 'application/sql', metadata: { sha256: 'ab'.repeat(32), bytes: '10' }, bytes: 10 });
      const head = await rawS3().send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}m/x.sql` }));
      expect(head.Metadata).toEqual({ sha256: 'ab'.repeat(32), bytes: '10' });
      expect(head.ContentType).toBe('application/sql');
      expect(t.location('m/x.sql')).toBe(`s3://${BUCKET}/${prefix}m/x.sql`);
    } finally {
      await removeAll(t);
      t.close();
    }
  });

  it('an aborted or failed multipart upload is aborted on the server: no parts are left', async () => {
    const prefix = folder();
    const t = await S3Target.open(s3Settings(prefix));
    const ac = new AbortController();
    let pulled = 0;
    const body = new Readable({
      read() {
        pulled += MiB;
        if (pulled === 17 * MiB) setImmediate(() => ac.abort());
        this.push(pulled > 40 * MiB ? null : randomBytes(MiB));
      },
    });
    const e = await rejection(t.put('mp/big.bin', body, { contentType: 'application/octet-stream', metadata: {}, signal: ac.signal }));
    expect(e.code).toBe('aborted');
    const s3 = rawS3();
    const open = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }));
    expect(open.Uploads ?? []).toEqual([]);
    t.close();
    // (left over from anything else: tidy)
    for (const u of open.Uploads ?? []) await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: u.Key, UploadId: u.UploadId }));
  });

  it('a missing bucket: refused with what to do, or created (private) with createBucket', async () => {
    const name = `hb-missing-${randomUUID().slice(0, 8)}`;
    const t = await S3Target.open(s3Settings('', { bucket: name }));
    const e = await rejection(t.ensureReady());
    expect(e.code).toBe('offsite-failed');
    expect(e.message).toBe(`S3 at 127.0.0.1:${proxy.port} has no bucket "${name}" (NoSuchBucket, 404)`);
    expect(e.hint).toMatch(/^create it \(private\), or check the bucket name of offsite target "s3-test" — or let hybrid-backup create it \(createBucket\)$/);
    expect((await rejection(t.put('x', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', metadata: {} }))).message).toMatch(/has no bucket/);
    const c = await S3Target.open(s3Settings('', { bucket: name, createBucket: true }));
    await c.ensureReady();
    await c.ensureReady();
    await t.ensureReady();
    t.close();
    c.close();
  });

  it('a public bucket is refused', async () => {
    const name = `hb-public-${randomUUID().slice(0, 8)}`;
    const s3 = rawS3();
    await s3.send(new CreateBucketCommand({ Bucket: name }));
    await s3.send(new PutBucketAclCommand({ Bucket: name, ACL: 'public-read' }));
    const t = await S3Target.open(s3Settings('', { bucket: name }));
    const e = await rejection(t.ensureReady());
    // Ceph counts the ACL in the policy status (AWS does not: there the ACL check finds it).
    expect(e.message).toMatch(new RegExp(`^the S3 bucket "${name}" at 127\\.0\\.0\\.1:\\d+ is public \\((its policy status says public|its ACL grants READ to everyone)\\): backups must not be$`));
    expect(e.hint).toMatch(/make it private/);
    t.close();
  });

  it('a key without permission: access denied, naming the permission', async () => {
    const other = await rgw.otherUser();
    const t = await S3Target.open(s3Settings(folder(), { credentials: other, credentialsFrom: undefined }));
    for (const [op, perm] of [
      [() => t.ensureReady(), 's3:ListBucket'],
      [() => t.put('x.bin', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', metadata: {}, bytes: 1 }), 's3:PutObject'],
      [() => t.stat('x.bin'), 's3:GetObject'],
      [() => t.get('x.bin'), 's3:GetObject'],
      [() => t.remove(['x.bin']), 's3:DeleteObject'],
    ] as const) {
      const e = await rejection(op());
      expect(e.message).toMatch(/refused to .*: access denied \((AccessDenied, )?403\)/);
      expect(e.hint).toContain(`lacks ${perm}`);
      expect(e.message + e.hint).not.toContain(other.secretAccessKey);
    }
    t.close();
  });

  it('an endpoint nothing answers on: cannot reach, check the endpoint', async () => {
    const port = await freePort();
    const t = await S3Target.open(s3Settings('', { endpoint: `http://127.0.0.1:${port}`, maxAttempts: 1 }));
    const e = await rejection(t.stat('x.bin'));
    expect(e.message).toMatch(new RegExp(`^cannot reach S3 at 127\\.0\\.0\\.1:${port} to read s3://${BUCKET}/x\\.bin: ECONNREFUSED`));
    expect(e.hint).toBe(`check the endpoint of offsite target "s3-test" (http://127.0.0.1:${port}) and the network`);
    t.close();
  });
});

describe('SupabaseTarget only', () => {
  it('escapes what Storage refuses in a name, and only that: today\'s names are unchanged', async () => {
    for (const name of ['20261124T031500Z_daily.sql', '20261124T031500Z_daily.sql.meta.json', "a-b_c.d (1) & $@=;:+,!'.gz"]) expect(toStorageName(name)).toBe(name);
    expect(toStorageName('ü *?#%')).toBe('*C3*BC *2A*3F*23*25');
    for (const key of ['ü ß 東京/x', 'a*b?c#d%e', 'emoji 🦀', '*41 literal']) expect(fromStorageName(toStorageName(key))).toBe(key);
    const settings = { url: fake.url, key: SERVICE_KEY, bucket: BUCKET, prefix: 'prod/' };
    const store = await OffsiteStore.open(settings);
    const t = await SupabaseTarget.open(settings);
    const file = '20261124T031500Z_daily.sql';
    expect(t.location(file)).toBe(store.location(store.objectPath(file)));
    expect(t.location()).toBe(`${BUCKET}/prod/`);
  });

  it('stores only names real Storage accepts', async () => {
    const t = await SupabaseTarget.open({ url: fake.url, key: SERVICE_KEY, bucket: BUCKET, prefix: folder() });
    await t.put('ünï/ä?.txt', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', metadata: {}, bytes: 1 });
    expect([...fake.objects.keys()].every((k) => /^[\w/!\-.*'() &$@=;:+,?]+$/.test(k))).toBe(true);
    await removeAll(t);
  });

  it('ensureReady creates a missing bucket private and refuses a public one', async () => {
    const made = `hb-new-${randomUUID().slice(0, 8)}`;
    await (await SupabaseTarget.open({ url: fake.url, key: SERVICE_KEY, bucket: made, prefix: '' })).ensureReady();
    expect(fake.buckets.get(made)).toEqual({ public: false });
    const open = `hb-open-${randomUUID().slice(0, 8)}`;
    fake.buckets.set(open, { public: true });
    const e = await rejection((await SupabaseTarget.open({ url: fake.url, key: SERVICE_KEY, bucket: open, prefix: '' })).ensureReady());
    expect(e.message).toMatch(/is public: backups must not be/);
  });
});
