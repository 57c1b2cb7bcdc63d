/**
 * Capture, restore, verify and collect against fake Storage projects: several buckets, nested
 * folders, 1,000 small files and three of 20 MB, unicode and spaces in paths; incremental
 * capture; faults mid-capture (503, 429 with Retry-After, a download cut off, an object deleted
 * between listing and fetching); restore into an empty project, resumed; retention of the store.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  captureStorage,
  collectGarbage,
  type Manifest,
  parseManifest,
  readManifestFile,
  restoreStorage,
  type RestoreProgress,
  type RetryNotice,
  StorageApi,
  StorageStore,
  verifyManifest,
  writeManifestFile,
} from '../../src/storage/index.js';
import { FakeStorageProject, PROJECT_KEY } from '../helpers/fake-storage-project.js';

const MB = 1 << 20;
let source: FakeStorageProject;
let dir: string;
let store: StorageStore;
const apis: StorageApi[] = [];
const notices: RetryNotice[] = [];

function open(fake: FakeStorageProject, o: { maxRetries?: number } = {}): StorageApi {
  const api = StorageApi.open({ url: fake.url, serviceRoleKey: PROJECT_KEY, retryBaseMs: 5, maxRetries: o.maxRetries ?? 5, onRetry: (n) => notices.push(n) });
  apis.push(api);
  return api;
}

const SPECIAL = ['docs/été 2026/résumé final.pdf', 'media/日本語/写真 1.jpg', 'docs/a?b/c#d%e.txt', 'avatars/with space/ and leading.png'];
const LARGE = ['media/videos/big 1.mp4', 'media/videos/big 2.mp4', 'media/videos/big 3.mp4'];

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-'));
  store = await StorageStore.open(dir);
  source = await new FakeStorageProject().start();
  source.addBucket('avatars', { public: true, fileSizeLimit: 5 * MB, allowedMimeTypes: ['image/png', 'image/jpeg'] });
  source.addBucket('docs');
  source.addBucket('media', { fileSizeLimit: 50 * MB });
  source.addBucket('empty');
  for (let i = 0; i < 1000 - SPECIAL.length; i++) {
    const bytes = randomBytes(1 + ((i * 37) % 4096));
    if (i < 250) source.put('docs', `flat/file ${i}.txt`, bytes, { contentType: 'text/plain' });
    else {
      const bucket = ['avatars', 'docs', 'media'][i % 3]!;
      source.put(bucket, `folder ${i % 7}/sub-${i % 13}/deeper/file ${i}.${bucket === 'avatars' ? 'png' : 'bin'}`, bytes, {
        contentType: bucket === 'avatars' ? 'image/png' : 'application/octet-stream',
        ...(i % 5 === 0 ? { userMetadata: { original_name: `Fichier n°${i}.bin`, owner_ref: i } } : {}),
      });
    }
  }
  for (const k of SPECIAL) {
    const [bucket, ...rest] = k.split('/');
    source.put(bucket!, rest.join('/'), `content of ${k}`, { contentType: k.endsWith('.txt') ? 'text/plain' : 'image/jpeg', userMetadata: { label: `ünïcödé ${k}` } });
  }
  LARGE.forEach((k, n) => source.put('media', k.slice('media/'.length), { size: 20 * MB + n, seed: n + 1 }, { contentType: 'video/mp4' }));
  source.listCap = 100; // a page never holds more than 100 rows, whatever is asked
});

afterAll(async () => {
  for (const a of apis) a.close();
  await source?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const downloads = (f: FakeStorageProject) => f.count(/^GET \/storage\/v1\/object\/authenticated\//);
const uploads = (f: FakeStorageProject) => f.count(/^POST \/storage\/v1\/object\/(?!list\/)/);

async function expectDigests(m: Manifest, fake: FakeStorageProject): Promise<void> {
  for (const o of m.objects) expect(await fake.sha256(o.bucket, o.path), `${o.bucket}/${o.path}`).toBe(o.sha256);
}

let first: Manifest;
let second: Manifest;
let third: Manifest;

describe('captureStorage', () => {
  it('captures every object of every bucket into the store, named by SHA-256, with its settings and metadata', async () => {
    const before = downloads(source);
    const r = await captureStorage({ api: open(source), store, concurrency: 6 });
    first = r.manifest;
    expect(r.complete).toBe(true);
    expect(r.summary).toMatch(/^files complete: 1,003 objects, 6\d\.\d MB in 4 buckets$/);
    expect(first.objects).toHaveLength(1003);
    expect(first.objects.map((o) => `${o.bucket}/${o.path}`).sort()).toEqual(source.keys().sort());
    expect(downloads(source) - before).toBe(1003);
    expect(first.stats).toMatchObject({ listed: 1003, fetched: 1003, reused: 0, missing: 0 });
    expect(first.buckets).toEqual([
      { id: 'avatars', name: 'avatars', public: true, fileSizeLimit: 5 * MB, allowedMimeTypes: ['image/png', 'image/jpeg'] },
      { id: 'docs', name: 'docs', public: false, fileSizeLimit: null, allowedMimeTypes: null },
      { id: 'empty', name: 'empty', public: false, fileSizeLimit: null, allowedMimeTypes: null },
      { id: 'media', name: 'media', public: false, fileSizeLimit: 50 * MB, allowedMimeTypes: null },
    ]);
    await expectDigests(first, source);
    const special = first.objects.find((o) => o.path === 'été 2026/résumé final.pdf')!;
    expect(special).toMatchObject({ bucket: 'docs', contentType: 'image/jpeg', userMetadata: { label: 'ünïcödé docs/été 2026/résumé final.pdf' } });
    expect(special.etag).toBe(source.get('docs', 'été 2026/résumé final.pdf')!.etag);
    expect(first.objects.find((o) => o.path.endsWith('file 255.png'))?.userMetadata).toEqual({ original_name: 'Fichier n°255.bin', owner_ref: 255 });
    expect(first.objects.find((o) => o.path === 'videos/big 2.mp4')).toMatchObject({ bytes: 20 * MB + 1, contentType: 'video/mp4' });
    // the manifest holds no secret, and reads back
    expect(JSON.stringify(first)).not.toContain(PROJECT_KEY);
    await writeManifestFile(path.join(dir, 'first.storage.json'), first);
    expect(await readManifestFile(path.join(dir, 'first.storage.json'))).toEqual(first);
  });

  it('writes the store private: files 0600, directories 0700, no temporary file left', async () => {
    const objects = path.join(dir, 'storage', 'objects');
    expect(lstatSync(path.join(dir, 'storage')).mode & 0o777).toBe(0o700);
    expect(lstatSync(objects).mode & 0o777).toBe(0o700);
    const shards = readdirSync(objects);
    expect(shards.every((s) => /^[0-9a-f]{2}$/.test(s))).toBe(true);
    for (const s of shards) {
      expect(lstatSync(path.join(objects, s)).mode & 0o777).toBe(0o700);
      for (const f of readdirSync(path.join(objects, s))) {
        expect(f.startsWith(s)).toBe(true);
        expect(lstatSync(path.join(objects, s, f)).mode & 0o777).toBe(0o600);
      }
    }
    const held = new Set<string>();
    for await (const sha of store.list()) held.add(sha);
    expect(held).toEqual(new Set(first.objects.map((o) => o.sha256)));
  });

  it('fetches nothing again when nothing changed, and exactly the 3 files that changed', async () => {
    let before = downloads(source);
    const same = await captureStorage({ api: open(source), store, previous: first });
    expect(downloads(source) - before).toBe(0);
    expect(same.manifest.stats).toMatchObject({ listed: 1003, fetched: 0, reused: 1003, newFiles: 0 });
    expect(same.manifest.objects).toEqual(first.objects);

    source.put('docs', 'flat/file 7.txt', 'changed seven', { contentType: 'text/plain' });
    source.put('avatars', 'with space/ and leading.png', 'changed avatar', { contentType: 'image/png', userMetadata: { v: 2 } });
    source.put('media', 'videos/big 3.mp4', { size: 20 * MB + 2, seed: 99 }, { contentType: 'video/mp4' });
    before = downloads(source);
    const r = await captureStorage({ api: open(source), store, previous: same.manifest, concurrency: 4 });
    second = r.manifest;
    expect(downloads(source) - before).toBe(3);
    expect(second.stats).toMatchObject({ listed: 1003, fetched: 3, reused: 1000, newFiles: 3 });
    expect(r.added).toHaveLength(3);
    expect(second.objects.find((o) => o.path === 'with space/ and leading.png')).toMatchObject({ userMetadata: { v: 2 }, bytes: 14 });
    await expectDigests(second, source);
  });

  it('gets through a 503, a 429 with Retry-After and a cut download, and lists an object deleted after the listing as missing', async () => {
    for (const k of ['flat/file 1.txt', 'flat/file 2.txt', 'flat/file 3.txt', 'flat/file 4.txt']) source.put('docs', k, `new ${k}`);
    source.put('media', 'videos/big 1.mp4', { size: 20 * MB, seed: 1234 }, { contentType: 'video/mp4' });
    source.inject({ match: /^GET .*\/docs\/flat\/file 1\.txt$/, status: 503 });
    source.inject({ match: /^GET .*\/docs\/flat\/file 2\.txt$/, status: 429, retryAfter: 1 });
    source.inject({ match: /^GET \/storage\/v1\/object\/authenticated\/media\/videos\/big 1\.mp4$/, cutAfter: 3 * MB });
    source.inject({ match: /^GET \/storage\/v1\/object\/info\/docs\/flat\/file 4\.txt$/, deleteObject: true });
    notices.length = 0;
    const r = await captureStorage({ api: open(source), store, previous: second, concurrency: 4 });
    third = r.manifest;
    expect(r.complete).toBe(false);
    expect(third.missing).toEqual([{ bucket: 'docs', path: 'flat/file 4.txt', reason: 'gone', error: 'deleted after it was listed' }]);
    expect(r.summary).toMatch(/^files INCOMPLETE: 1 object or folder could not be captured \(gone 1\); captured 1,002 objects/);
    expect(third.objects).toHaveLength(1002);
    expect(third.stats).toMatchObject({ fetched: 4, missing: 1 });
    expect(notices.some((n) => n.status === 503)).toBe(true);
    expect(notices.find((n) => n.status === 429)?.waitMs).toBe(1000);
    expect(notices.some((n) => n.what === 'fetch media/videos/big 1.mp4' && /cut off/.test(n.reason))).toBe(true);
    await expectDigests(third, source);
    // and no temporary file of the cut download is left behind
    expect(readdirSync(path.join(dir, 'storage', 'objects')).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('holds the capture against the dump’s storage.objects rows', async () => {
    const rows = third.objects.filter((o) => o.path !== 'flat/file 9.txt').map((o) => ({ bucket: o.bucket, path: o.path }));
    rows.push({ bucket: 'docs', path: 'ghost.txt' }, { bucket: 'not-captured', path: 'x' });
    const r = await captureStorage({ api: open(source), store, previous: third, rows, buckets: ['docs', 'avatars', 'media', 'nope'] });
    expect(r.manifest.rows).toEqual({ rows: 1002, rowsWithoutFiles: [{ bucket: 'docs', path: 'ghost.txt' }], filesWithoutRows: [{ bucket: 'docs', path: 'flat/file 9.txt' }] });
    expect(r.manifest.missing).toEqual([{ bucket: 'nope', path: '', reason: 'listing', error: 'the project has no bucket "nope" (storage.buckets names it)' }]);
    expect(r.complete).toBe(false);
    expect(r.summary).toMatch(/1 row of the dump has no file/);
    expect(r.manifest.buckets.map((b) => b.id)).toEqual(['docs', 'avatars', 'media']);
  });

  it('stops before fetching when beforeFetch refuses (the free-space check)', async () => {
    source.put('docs', 'flat/file 5.txt', 'another change');
    const before = downloads(source);
    const e = await captureStorage({
      api: open(source),
      store,
      previous: third,
      beforeFetch: (p) => {
        expect(p).toMatchObject({ toFetch: 1, bytesToFetch: 14, reused: 1001 });
        throw new Error('no space');
      },
    }).catch((x: unknown) => x);
    expect((e as Error).message).toBe('no space');
    expect(downloads(source)).toBe(before);
  });
});

describe('captureStorage against storage.search’s ILIKE listing', () => {
  it('does not report the rows a folder’s `_` or case wrongly lists as missing', async () => {
    const fake = await new FakeStorageProject().start();
    const d = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-ilike-'));
    try {
      fake.ilikeListing = true;
      for (const k of ['a_b/one.txt', 'aXb/two.txt', 'Photos/p.png', 'photos/q.png', 'top.txt']) fake.put('x', k, `bytes of ${k}`);
      const listed = await open(fake).listFolder('x', 'a_b', 0, 100);
      expect(listed.map((e) => e.name).sort()).toEqual(['one.txt', 'two.txt']); // the quirk, as real Storage has it
      const r = await captureStorage({ api: open(fake), store: await StorageStore.open(d) });
      expect(r.complete).toBe(true);
      expect(r.manifest.missing).toEqual([]);
      expect(r.manifest.objects.map((o) => o.path).sort()).toEqual(['Photos/p.png', 'a_b/one.txt', 'aXb/two.txt', 'photos/q.png', 'top.txt'].sort());
      expect(r.manifest.stats).toMatchObject({ listed: 5, fetched: 5 });
    } finally {
      await fake.stop();
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('restoreStorage', () => {
  let target: FakeStorageProject;
  beforeAll(async () => {
    target = await new FakeStorageProject().start();
  });
  afterAll(async () => {
    await target.stop();
  });

  it('re-creates the buckets and uploads every file, with its digest, content type and metadata', async () => {
    const seen: RestoreProgress[] = [];
    const r = await restoreStorage({ api: open(target), store, manifest: second, concurrency: 6, onProgress: (p) => seen.push(p) });
    expect(r).toMatchObject({ objects: 1003, uploaded: 1003, skipped: 0, failed: [], complete: true, notInBackup: 0 });
    expect(r.buckets.created.sort()).toEqual(['avatars', 'docs', 'empty', 'media']);
    const b = target.buckets.get('avatars')!;
    expect([b.public, b.file_size_limit, b.allowed_mime_types]).toEqual([true, 5 * MB, ['image/png', 'image/jpeg']]);
    expect(target.keys().sort()).toEqual(second.objects.map((o) => `${o.bucket}/${o.path}`).sort());
    await expectDigests(second, target);
    for (const o of second.objects) {
      const t = target.get(o.bucket, o.path)!;
      expect(t.contentType).toBe(o.contentType);
      expect(t.userMetadata ?? undefined).toEqual(o.userMetadata);
    }
    expect(seen).toHaveLength(1003);
    expect(seen.at(-1)).toMatchObject({ done: 1003, total: 1003, uploaded: 1003, bytesDone: seen.at(-1)!.bytesTotal });
  });

  it('resumes: files already there with the same size and ETag (or the ETag it recorded) are skipped', async () => {
    const before = uploads(target);
    const r = await restoreStorage({ api: open(target), store, manifest: second });
    expect(r).toMatchObject({ uploaded: 0, skipped: 1003, complete: true });
    expect(r.buckets.unchanged.sort()).toEqual(['avatars', 'docs', 'empty', 'media']);
    expect(uploads(target)).toBe(before);
  });

  it('reports a file that fails, goes on with the others, and uploads only it when run again', async () => {
    const fresh = await new FakeStorageProject().start();
    try {
      const media = second.objects.filter((o) => o.bucket === 'media');
      const onlyMedia = { ...second, objects: media };
      fresh.inject({ match: /^POST \/storage\/v1\/object\/media\/videos\/big 2\.mp4$/, status: 500, times: 100 });
      const journal = path.join(dir, 'journal-fresh.jsonl');
      const r1 = await restoreStorage({ api: open(fresh, { maxRetries: 1 }), store, manifest: second, buckets: ['media'], journal });
      expect(r1.complete).toBe(false);
      expect(r1.failed).toEqual([{ bucket: 'media', path: 'videos/big 2.mp4', error: expect.stringMatching(/could not upload media\/videos\/big 2\.mp4: injected 500 \(500\)/) }]);
      expect(r1.uploaded).toBe(media.length - 1);
      expect(r1.buckets.created).toEqual(['media']);
      fresh.clearInjections();
      const before = uploads(fresh);
      const r2 = await restoreStorage({ api: open(fresh), store, manifest: second, buckets: ['media'], journal });
      expect(r2).toMatchObject({ uploaded: 1, skipped: media.length - 1, complete: true, failed: [] });
      expect(uploads(fresh) - before).toBe(1);
      // the generated files' ETags differ from the source's (not MD5s): skipped thanks to the journal
      expect(media.filter((o) => o.etag?.startsWith('"gen-'))).toHaveLength(3);
      await expectDigests(onlyMedia, fresh);
    } finally {
      await fresh.stop();
    }
  });

  it('never uploads a damaged store file', async () => {
    const victim = second.objects.find((o) => o.path === 'flat/file 8.txt')!;
    const file = store.pathOf(victim.sha256);
    const good = await import('node:fs/promises').then((f) => f.readFile(file));
    const bad = Buffer.from(good);
    bad[0] = bad[0]! ^ 0xff;
    writeFileSync(file, bad);
    const fresh = await new FakeStorageProject().start();
    try {
      const r = await restoreStorage({ api: open(fresh), store, manifest: second, journal: null, buckets: ['docs'] });
      expect(r.failed).toEqual([{ bucket: 'docs', path: 'flat/file 8.txt', error: expect.stringMatching(/does not match the manifest/) }]);
      expect(fresh.get('docs', 'flat/file 8.txt')).toBeUndefined();
      expect(r.buckets.created).toEqual(['docs']);
      const v = await verifyManifest(store, second);
      expect(v.ok).toBe(false);
      expect(v.corrupt).toEqual([{ sha256: victim.sha256, actual: expect.any(String), objects: ['docs/flat/file 8.txt'] }]);
    } finally {
      writeFileSync(file, good);
      await fresh.stop();
    }
  });
});

describe('verify and retention of the store', () => {
  it('verifies a manifest against the store, by re-hashing or by presence', async () => {
    const v = await verifyManifest(store, third);
    expect(v).toMatchObject({ ok: true, objects: 1002, missing: [], corrupt: [] });
    expect(v.checked).toBe(v.files);
    const quick = await verifyManifest(store, third, { rehash: false });
    expect(quick.ok).toBe(true);
  });

  it('removes the files no kept manifest references, and never a referenced one', async () => {
    const keep = [third];
    const referenced = new Set(third.objects.map((o) => o.sha256));
    const unreferenced = [...new Set([...first.objects, ...second.objects].map((o) => o.sha256))].filter((s) => !referenced.has(s));
    expect(unreferenced.length).toBeGreaterThanOrEqual(7);

    await expect(collectGarbage(store, [])).rejects.toMatchObject({ code: 'prune-refused' });
    const dry = await collectGarbage(store, keep, { dryRun: true, graceMs: 0 });
    expect(dry.removed.map((r) => r.sha256).sort()).toEqual(unreferenced.sort());
    for (const s of unreferenced) expect(await store.has(s)).toBe(true);

    // within the grace time, nothing is removed
    expect((await collectGarbage(store, keep)).removed).toEqual([]);

    const r = await collectGarbage(store, keep, { graceMs: 0 });
    expect(r.removed.map((x) => x.sha256).sort()).toEqual(unreferenced.sort());
    for (const s of unreferenced) expect(await store.has(s)).toBe(false);
    for (const s of referenced) expect(await store.has(s)).toBe(true);
    expect((await verifyManifest(store, third)).ok).toBe(true);
    // the first manifest now misses what was removed, and says which objects
    const v1 = await verifyManifest(store, first, { rehash: false });
    expect(v1.ok).toBe(false);
    expect(v1.missing.length).toBe(unreferenced.filter((s) => first.objects.some((o) => o.sha256 === s)).length);
  });

  it('refuses a manifest that was edited', () => {
    const bad = JSON.parse(JSON.stringify(third)) as Manifest;
    (bad.objects[0] as { sha256: string }).sha256 = 'xyz';
    expect(() => parseManifest(bad)).toThrow(/objects\.0\.sha256/);
  });
});

describe('StorageStore', () => {
  it('refuses to write through a symbolic link', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-link-'));
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-elsewhere-'));
    try {
      (await import('node:fs')).symlinkSync(elsewhere, path.join(d, 'storage'));
      await expect(StorageStore.open(d)).rejects.toMatchObject({ code: 'unsafe-path' });
    } finally {
      rmSync(d, { recursive: true, force: true });
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('stores nothing when the bytes are not the ones expected', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-put-'));
    try {
      const s = await StorageStore.open(d);
      const { Readable } = await import('node:stream');
      await expect(s.put(Readable.from([Buffer.from('abc')]), { expectedBytes: 4, what: 'x' })).rejects.toMatchObject({ code: 'checksum-mismatch' });
      await expect(s.put(Readable.from([Buffer.from('abcde')]), { expectedBytes: 4, what: 'x' })).rejects.toMatchObject({ code: 'checksum-mismatch' });
      await expect(s.put(Readable.from([Buffer.from('abc')]), { expectedSha256: '0'.repeat(64) })).rejects.toMatchObject({ code: 'checksum-mismatch' });
      expect(readdirSync(s.objectsDir)).toEqual([]);
      const ok = await s.put(Readable.from([Buffer.from('abc')]));
      expect(ok).toEqual({ sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', bytes: 3, added: true });
      expect((await s.put(Readable.from([Buffer.from('abc')]))).added).toBe(false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('a large file (hashed back from disk on the hasher thread) is named by its SHA-256 and checked like a small one', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'hb-storage-big-'));
    try {
      const s = await StorageStore.open(d);
      const { Readable } = await import('node:stream');
      const { createHash, randomBytes } = await import('node:crypto');
      // Sizes either side of where hashing moves off the event loop (4 MiB), in odd-sized chunks.
      for (const size of [4 * MB, 4 * MB + 1, 9 * MB + 333]) {
        const data = randomBytes(size);
        const sha = createHash('sha256').update(data).digest('hex');
        const chunks = () => Readable.from((function* () { for (let i = 0; i < data.length; i += 70_001) yield data.subarray(i, i + 70_001); })());
        await expect(s.put(chunks(), { expectedSha256: '0'.repeat(64), what: 'big' })).rejects.toMatchObject({ code: 'checksum-mismatch' });
        await expect(s.put(chunks(), { expectedBytes: size - 1, what: 'big' })).rejects.toMatchObject({ code: 'checksum-mismatch' });
        expect(await s.put(chunks(), { expectedSha256: sha, expectedBytes: size })).toEqual({ sha256: sha, bytes: size, added: true });
        expect(createHash('sha256').update(readFileSync(s.pathOf(sha))).digest('hex')).toBe(sha);
      }
      // Nothing but the three files: no temporary file left by the refused ones.
      expect(readdirSync(s.objectsDir).flatMap((shard) => readdirSync(path.join(s.objectsDir, shard)))).toHaveLength(3);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
