/** The Storage REST client against the fake project: names, answers, retries, errors without the key. */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeName, StorageApi, StorageRequestError } from '../../src/storage/index.js';
import type { RetryNotice } from '../../src/storage/index.js';
import { FakeStorageProject, PROJECT_KEY } from '../helpers/fake-storage-project.js';

let fake: FakeStorageProject;
const notices: RetryNotice[] = [];
let api: StorageApi;

beforeAll(async () => {
  fake = await new FakeStorageProject().start();
  fake.addBucket('docs', { public: true, fileSizeLimit: 1000, allowedMimeTypes: ['text/plain'] });
  api = StorageApi.open({ url: fake.url, serviceRoleKey: PROJECT_KEY, retryBaseMs: 5, onRetry: (n) => notices.push(n) });
});
afterAll(async () => {
  api.close();
  await fake.stop();
});

describe('StorageApi', () => {
  it('encodes names segment by segment', () => {
    expect(encodeName('a b/c?.png')).toBe('a%20b/c%3F.png');
    expect(encodeName('ünï/%#.txt')).toBe('%C3%BCn%C3%AF/%25%23.txt');
  });

  it('reads buckets with their settings', async () => {
    const buckets = await api.listBuckets();
    expect(buckets).toEqual([{ id: 'docs', name: 'docs', public: true, fileSizeLimit: 1000, allowedMimeTypes: ['text/plain'], type: null }]);
    expect(await api.getBucket('nope')).toBeNull();
  });

  it('round-trips names with spaces, unicode, ? # and %, with content type and user metadata', async () => {
    const names = ['dossier été/rapport final.txt', 'q?/a#b%20c.txt', '日本/ファイル.txt'];
    for (const name of names) {
      await api.upload('docs', name, () => Readable.from([Buffer.from(`hello ${name}`)]), { bytes: Buffer.byteLength(`hello ${name}`), contentType: 'text/plain', userMetadata: { original_name: name, n: 1 } });
    }
    expect(fake.keys().sort()).toEqual(names.map((n) => `docs/${n}`).sort());
    for (const name of names) {
      const info = await api.info('docs', name);
      expect(info).toMatchObject({ size: Buffer.byteLength(`hello ${name}`), contentType: 'text/plain', userMetadata: { original_name: name, n: 1 } });
      const dl = await api.download('docs', name);
      let text = '';
      for await (const c of dl.body) text += c;
      expect(text).toBe(`hello ${name}`);
      expect(dl.etag).toBe(info!.etag);
      expect((await api.head('docs', name))?.size).toBe(Buffer.byteLength(text));
    }
    const top = await api.listFolder('docs', '', 0, 100);
    expect(top.map((e) => [e.name, e.id === null])).toEqual([
      ['dossier été', true],
      ['q?', true],
      ['日本', true],
    ]);
    const inner = await api.listFolder('docs', 'q?', 0, 100);
    expect(inner).toMatchObject([{ name: 'a#b%20c.txt', size: 'hello q?/a#b%20c.txt'.length, mimetype: 'text/plain' }]);
    expect(await api.info('docs', 'no such/file')).toBeNull();
    await expect(api.download('docs', 'no such/file')).rejects.toMatchObject({ kind: 'not-found' });
  });

  it('retries a 503 with backoff and a 429 after its Retry-After', async () => {
    notices.length = 0;
    fake.inject({ match: /^POST \/storage\/v1\/object\/list\/docs$/, status: 503 });
    fake.inject({ match: /^POST \/storage\/v1\/object\/list\/docs$/, status: 429, retryAfter: 1 });
    const t0 = Date.now();
    const rows = await api.listFolder('docs', '', 0, 100);
    expect(rows).toHaveLength(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(notices.map((n) => [n.status, n.attempt])).toEqual([
      [503, 2],
      [429, 3],
    ]);
    expect(notices[1]!.waitMs).toBe(1000);
    expect(notices[0]!.what).toBe('POST object/list/docs');
  });

  it('gives up after the retries with a retryable error', async () => {
    const quick = StorageApi.open({ url: fake.url, serviceRoleKey: PROJECT_KEY, retryBaseMs: 1, maxRetries: 2 });
    fake.inject({ match: /^GET \/storage\/v1\/bucket$/, status: 502, times: 3 });
    const e = await quick.listBuckets().catch((x: unknown) => x);
    quick.close();
    expect(e).toBeInstanceOf(StorageRequestError);
    expect(e).toMatchObject({ kind: 'retryable', status: 502, code: 'storage-failed' });
  });

  it('says a refused key plainly, never with the key', async () => {
    const wrong = `${PROJECT_KEY.slice(0, -4)}AAAA`;
    const bad = StorageApi.open({ url: fake.url, serviceRoleKey: wrong });
    const e = (await bad.listBuckets().catch((x: unknown) => x)) as StorageRequestError;
    bad.close();
    expect(e.kind).toBe('auth');
    expect(e.hint).toMatch(/SUPABASE_SERVICE_ROLE_KEY/);
    expect(JSON.stringify({ m: e.message, h: e.hint, s: e.stack })).not.toContain(wrong.slice(20, 40));
  });

  it('says an unreachable server as a network error after retries', async () => {
    const gone = StorageApi.open({ url: 'http://127.0.0.1:9', serviceRoleKey: PROJECT_KEY, retryBaseMs: 1, maxRetries: 1 });
    const e = (await gone.listBuckets().catch((x: unknown) => x)) as StorageRequestError;
    gone.close();
    expect(e.kind).toBe('network');
    expect(e.message).toMatch(/cannot reach Supabase Storage to list the buckets: ECONNREFUSED/);
  });
});
