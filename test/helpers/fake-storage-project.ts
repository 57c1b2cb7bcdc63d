/**
 * A fake Supabase project's Storage, for the tests of src/storage: real HTTP on 127.0.0.1 (a random
 * port), the endpoints storage-js and src/storage/api.ts call, answering in storage-api's shapes:
 *
 *   GET    /storage/v1/bucket                          list buckets
 *   GET    /storage/v1/bucket/:id                      a bucket (404 in the body's statusCode too)
 *   POST   /storage/v1/bucket                          create ({id, name, public, file_size_limit, allowed_mime_types}); 409 when it exists
 *   PUT    /storage/v1/bucket/:id                      change its settings
 *   POST   /storage/v1/object/list/:bucket             list a folder ({prefix, limit, offset, sortBy, search}):
 *                                                      sub-folders first (id null, no metadata), then files,
 *                                                      each with storage-api's system metadata (eTag, size, mimetype…)
 *   GET    /storage/v1/object/info[/authenticated]/:bucket/*   the row: size, content_type, etag, metadata (user's)…
 *   HEAD   /storage/v1/object[/authenticated]/:bucket/*        the file's headers
 *   GET    /storage/v1/object[/authenticated]/:bucket/*        download (content-length, etag, content-type)
 *   POST   /storage/v1/object/:bucket/*                upload (raw body, x-upsert, x-metadata base64 JSON, content-type, cache-control)
 *
 * Every request must carry the service-role key (`apikey` and `Authorization: Bearer`). Path
 * segments are percent-decoded, so names with spaces, `?`, `#`, `%` or unicode work. ETags are
 * the MD5 of the bytes (as S3 gives for a single-part upload), quoted.
 *
 * Contents: small ones in memory, uploads in a temp directory, and generated ones
 * ({size, seed}) made on the fly from a 1 MiB random block, so 1 GB of files costs no memory.
 *
 * Faults ({@link inject}): a status (with Retry-After) for the next N matching requests; an object
 * deleted when a matching request arrives (between listing and fetching); a download cut after
 * some bytes; and `listCap`, a server-side cap on a list page's rows.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { closeNow, listenLocal } from './local-http.js';

export const PROJECT_KEY = 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIiwicmVmIjoiZmFrZSJ9.ZmFrZS1wcm9qZWN0LXNpZ25hdHVyZQ';

const BLOCK = 1 << 20;
/** Two copies of one random MiB: any MiB-long window of it is a slice. */
const BASE = (() => {
  const b = randomBytes(BLOCK);
  return Buffer.concat([b, b]);
})();

export type Content = { kind: 'buffer'; data: Buffer } | { kind: 'file'; file: string; size: number } | { kind: 'gen'; seed: number; size: number };

export interface FakeObject {
  id: string;
  content: Content;
  size: number;
  etag: string;
  contentType: string;
  cacheControl: string;
  userMetadata: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
}

export interface FakeBucket {
  id: string;
  name: string;
  public: boolean;
  file_size_limit: number | null;
  allowed_mime_types: string[] | null;
  created_at: string;
  updated_at: string;
}

export interface Injection {
  method?: string;
  /** Matched against `METHOD /storage/v1/…` with the path decoded, or a predicate. */
  match: RegExp;
  /** Answer this status… */
  status?: number;
  /** …with this Retry-After (seconds). */
  retryAfter?: number;
  /** Delete the object the request names, then answer it (404). */
  deleteObject?: boolean;
  /** A download: send the headers and this many bytes, then drop the connection. */
  cutAfter?: number;
  /** How many requests it applies to (1). */
  times?: number;
}

const md5 = (b: Buffer) => `"${createHash('md5').update(b).digest('hex')}"`;

/** The bytes of generated content, as a stream of slices (no copy). */
function genStream(seed: number, size: number): Readable {
  const off = Number((BigInt(seed) * 2_654_435_761n) % BigInt(BLOCK));
  let pos = 0;
  return new Readable({
    highWaterMark: BLOCK,
    read() {
      if (pos >= size) return void this.push(null);
      const start = (off + pos) % BLOCK;
      const n = Math.min(BLOCK, size - pos);
      pos += n;
      this.push(BASE.subarray(start, start + n));
    },
  });
}

export class FakeStorageProject {
  url = '';
  readonly buckets = new Map<string, FakeBucket>();
  /** `bucket\0name` → object. */
  readonly objects = new Map<string, FakeObject>();
  readonly requests: Array<{ method: string; path: string }> = [];
  /**
   * List as storage.search does: the folder matched with ILIKE, so `_` in a folder's name matches
   * any one character and case does not count (`a_b/` lists `aXb/`'s files too, as its own).
   */
  ilikeListing = false;
  /** A cap on the rows of a list page, whatever `limit` asks (as a server may have). */
  listCap: number | null = null;
  private readonly injections: Injection[] = [];
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'hb-fake-project-'));
  private server!: http.Server;
  private clock = Date.parse('2026-01-01T00:00:00Z');

  constructor(readonly key = PROJECT_KEY) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: Error) => {
        if (!res.headersSent) this.error(res, 500, 'InternalError', e.message);
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 30_000;
    this.url = await listenLocal(this.server);
    return this;
  }

  async stop(): Promise<void> {
    await closeNow(this.server);
    rmSync(this.dir, { recursive: true, force: true });
  }

  inject(i: Injection): void {
    this.injections.push({ times: 1, ...i });
  }

  clearInjections(): void {
    this.injections.length = 0;
  }

  /** Requests made so far matching `METHOD path` (path decoded). */
  count(match: RegExp): number {
    return this.requests.filter((r) => match.test(`${r.method} ${r.path}`)).length;
  }

  private tick(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString();
  }

  addBucket(id: string, o: { public?: boolean; fileSizeLimit?: number | null; allowedMimeTypes?: string[] | null } = {}): void {
    const t = this.tick();
    this.buckets.set(id, { id, name: id, public: o.public ?? false, file_size_limit: o.fileSizeLimit ?? null, allowed_mime_types: o.allowedMimeTypes ?? null, created_at: t, updated_at: t });
  }

  /** Puts an object directly (no HTTP): bytes, or generated content `{size, seed}`. */
  put(bucket: string, name: string, content: Buffer | string | { size: number; seed: number }, o: { contentType?: string; userMetadata?: Record<string, unknown>; cacheControl?: string } = {}): FakeObject {
    if (!this.buckets.has(bucket)) this.addBucket(bucket);
    const c: Content = Buffer.isBuffer(content) || typeof content === 'string' ? { kind: 'buffer', data: Buffer.from(content) } : { kind: 'gen', seed: content.seed, size: content.size };
    const size = c.kind === 'buffer' ? c.data.length : c.size;
    const etag = c.kind === 'buffer' ? md5(c.data) : `"gen-${(content as { seed: number }).seed}-${size}"`;
    return this.set(bucket, name, c, size, etag, o);
  }

  private set(bucket: string, name: string, content: Content, size: number, etag: string, o: { contentType?: string; userMetadata?: Record<string, unknown> | null; cacheControl?: string }): FakeObject {
    const key = `${bucket}\0${name}`;
    const before = this.objects.get(key);
    if (before?.content.kind === 'file') rmSync(before.content.file, { force: true });
    const t = this.tick();
    const obj: FakeObject = {
      id: before?.id ?? randomUUID(),
      content,
      size,
      etag,
      contentType: o.contentType ?? 'application/octet-stream',
      cacheControl: o.cacheControl ?? 'max-age=3600',
      userMetadata: o.userMetadata ?? null,
      createdAt: before?.createdAt ?? t,
      updatedAt: t,
    };
    this.objects.set(key, obj);
    return obj;
  }

  get(bucket: string, name: string): FakeObject | undefined {
    return this.objects.get(`${bucket}\0${name}`);
  }

  remove(bucket: string, name: string): boolean {
    const o = this.get(bucket, name);
    if (o?.content.kind === 'file') rmSync(o.content.file, { force: true });
    return this.objects.delete(`${bucket}\0${name}`);
  }

  /** Every object as `bucket/name`. */
  keys(): string[] {
    return [...this.objects.keys()].map((k) => k.replace('\0', '/'));
  }

  body(o: FakeObject): Readable {
    const c = o.content;
    if (c.kind === 'buffer') return Readable.from([c.data]);
    if (c.kind === 'file') return createReadStream(c.file, { highWaterMark: BLOCK });
    return genStream(c.seed, c.size);
  }

  /** The SHA-256 of an object's bytes. */
  async sha256(bucket: string, name: string): Promise<string> {
    const o = this.get(bucket, name);
    if (!o) throw new Error(`no object ${bucket}/${name}`);
    const h = createHash('sha256');
    for await (const c of this.body(o)) h.update(c as Buffer);
    return h.digest('hex');
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  /** storage-api's error shape (statusCode as a string in the body). */
  private error(res: http.ServerResponse, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
    const text = JSON.stringify({ statusCode: String(status), error, message });
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
  }

  /** storage-api's legacy answer for what is not there: HTTP 400, statusCode "404" in the body. */
  private notFound(res: http.ServerResponse, message: string): void {
    this.json(res, 400, { statusCode: '404', error: 'not_found', message });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const raw = new URL(req.url ?? '/', 'http://x').pathname;
    const segs = raw.split('/').slice(1).map((s) => decodeURIComponent(s));
    const p = `/${segs.join('/')}`;
    this.requests.push({ method, path: p });
    if (req.headers.apikey !== this.key || req.headers.authorization !== `Bearer ${this.key}`) {
      req.resume();
      return this.error(res, 403, 'Unauthorized', 'invalid signature');
    }
    if (segs[0] !== 'storage' || segs[1] !== 'v1') return this.error(res, 404, 'not_found', `no route ${method} ${p}`);
    const rest = segs.slice(2);

    const inj = this.injections.find((i) => (!i.method || i.method === method) && i.match.test(`${method} ${p}`));
    if (inj && --inj.times! <= 0) this.injections.splice(this.injections.indexOf(inj), 1);
    if (inj?.status) {
      req.resume();
      return this.error(res, inj.status, inj.status === 429 ? 'too_many_requests' : 'InternalError', `injected ${inj.status}`, inj.retryAfter !== undefined ? { 'retry-after': String(inj.retryAfter) } : {});
    }

    // buckets
    if (rest[0] === 'bucket') {
      if (method === 'GET' && rest.length === 1) return this.json(res, 200, [...this.buckets.values()]);
      if (method === 'GET' && rest.length === 2) {
        const b = this.buckets.get(rest[1]!);
        return b ? this.json(res, 200, b) : this.notFound(res, 'Bucket not found');
      }
      if ((method === 'POST' && rest.length === 1) || (method === 'PUT' && rest.length === 2)) {
        const body = JSON.parse(await text(req)) as { id?: string; name?: string; public?: boolean; file_size_limit?: number | null; allowed_mime_types?: string[] | null };
        const id = method === 'PUT' ? rest[1]! : (body.id ?? body.name ?? '');
        const b = this.buckets.get(id);
        if (method === 'POST') {
          if (b) return this.error(res, 409, 'Duplicate', 'The resource already exists');
          this.addBucket(id, { public: !!body.public, fileSizeLimit: body.file_size_limit ?? null, allowedMimeTypes: body.allowed_mime_types ?? null });
          return this.json(res, 200, { name: id });
        }
        if (!b) return this.error(res, 404, 'not_found', 'Bucket not found');
        if (body.public !== undefined) b.public = body.public;
        if (body.file_size_limit !== undefined) b.file_size_limit = body.file_size_limit;
        if (body.allowed_mime_types !== undefined) b.allowed_mime_types = body.allowed_mime_types;
        b.updated_at = this.tick();
        return this.json(res, 200, { message: 'Successfully updated' });
      }
    }
    if (rest[0] !== 'object') return this.error(res, 404, 'not_found', `no route ${method} ${p}`);

    if (method === 'POST' && rest[1] === 'list' && rest.length === 3) return this.list(rest[2]!, req, res);

    // info, head, download, upload: object[/info][/authenticated]/:bucket/*name
    let i = 1;
    const info = rest[i] === 'info' ? (i++, true) : false;
    if (rest[i] === 'authenticated') i++;
    const bucket = rest[i]!;
    const name = rest.slice(i + 1).join('/');
    if (!bucket || !name) return this.error(res, 400, 'InvalidRequest', 'no object named');
    const key = `${bucket}\0${name}`;
    if (inj?.deleteObject) this.remove(bucket, name);

    if (method === 'POST' && !info) return this.upload(bucket, name, req, res);
    const o = this.objects.get(key);
    if (!this.buckets.has(bucket)) return this.notFound(res, 'Bucket not found');
    if (!o) {
      if (method === 'HEAD') return void res.writeHead(400).end();
      return this.notFound(res, 'Object not found');
    }
    if (info && method === 'GET') {
      return this.json(res, 200, {
        id: o.id,
        name,
        version: randomUUID(),
        bucket_id: bucket,
        size: o.size,
        content_type: o.contentType,
        cache_control: o.cacheControl,
        etag: o.etag,
        metadata: o.userMetadata ?? {},
        last_modified: o.updatedAt,
        created_at: o.createdAt,
      });
    }
    if (method === 'GET' || method === 'HEAD') {
      res.writeHead(200, {
        'content-type': o.contentType,
        'content-length': String(o.size),
        etag: o.etag,
        'cache-control': o.cacheControl,
        'last-modified': new Date(o.updatedAt).toUTCString(),
      });
      if (method === 'HEAD') return void res.end();
      if (inj?.cutAfter !== undefined) {
        let sent = 0;
        for await (const c of this.body(o)) {
          const chunk = (c as Buffer).subarray(0, Math.max(0, inj.cutAfter - sent));
          if (chunk.length) res.write(chunk);
          sent += chunk.length;
          if (sent >= inj.cutAfter) break;
        }
        await new Promise((r) => setImmediate(r));
        res.destroy();
        return;
      }
      await pipeline(this.body(o), res);
      return;
    }
    return this.error(res, 404, 'not_found', `no route ${method} ${p}`);
  }

  private async upload(bucket: string, name: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const b = this.buckets.get(bucket);
    if (!b) {
      req.resume();
      return this.error(res, 404, 'Bucket not found', 'Bucket not found');
    }
    if (this.objects.has(`${bucket}\0${name}`) && req.headers['x-upsert'] !== 'true') {
      req.resume();
      return this.error(res, 409, 'Duplicate', 'The resource already exists');
    }
    const file = path.join(this.dir, randomUUID());
    const hash = createHash('md5');
    let size = 0;
    try {
      await pipeline(
        req,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            hash.update(c);
            size += c.length;
            yield c;
          }
        },
        createWriteStream(file),
      );
    } catch {
      rmSync(file, { force: true });
      return; // cut off: nothing kept
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) !== size) {
      rmSync(file, { force: true });
      return this.error(res, 400, 'InvalidRequest', 'body shorter than content-length');
    }
    if (b.file_size_limit !== null && size > b.file_size_limit) {
      rmSync(file, { force: true });
      return this.error(res, 413, 'Payload too large', 'The object exceeded the maximum allowed size');
    }
    const meta = req.headers['x-metadata'];
    const o = this.set(bucket, name, { kind: 'file', file, size }, size, `"${hash.digest('hex')}"`, {
      contentType: String(req.headers['content-type'] ?? 'application/octet-stream'),
      cacheControl: String(req.headers['cache-control'] ?? 'no-cache'),
      userMetadata: meta ? (JSON.parse(Buffer.from(String(meta), 'base64').toString('utf8')) as Record<string, unknown>) : null,
    });
    return this.json(res, 200, { Id: o.id, Key: `${bucket}/${name}` });
  }

  private async list(bucket: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = JSON.parse(await text(req)) as { prefix?: string; limit?: number; offset?: number; search?: string; sortBy?: { column?: string; order?: string } };
    if (!this.buckets.has(bucket)) return this.notFound(res, 'Bucket not found');
    let prefix = body.prefix ?? '';
    if (prefix && !prefix.endsWith('/')) prefix += '/';
    const search = body.search ?? '';
    const folders = new Set<string>();
    const files: Array<{ name: string; o: FakeObject }> = [];
    const head = `${bucket}\0${prefix}`;
    const like = new RegExp(`^${[...head].map((c) => (c === '_' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('')}`, 'is');
    for (const [k, o] of this.objects) {
      if (this.ilikeListing ? !like.test(k) : !k.startsWith(head)) continue;
      const restName = k.slice(head.length);
      if (!restName.startsWith(search)) continue;
      const slash = restName.indexOf('/');
      if (slash >= 0) folders.add(restName.slice(0, slash));
      else files.push({ name: restName, o });
    }
    const desc = body.sortBy?.order?.toLowerCase() === 'desc' ? -1 : 1;
    const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0) * desc;
    const rows = [
      ...[...folders].sort(byName).map((name) => ({ name, id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null })),
      ...files
        .sort((a, b) => byName(a.name, b.name))
        .map(({ name, o }) => ({
          name,
          id: o.id,
          updated_at: o.updatedAt,
          created_at: o.createdAt,
          last_accessed_at: o.updatedAt,
          metadata: { eTag: o.etag, size: o.size, mimetype: o.contentType, cacheControl: o.cacheControl, lastModified: o.updatedAt, contentLength: o.size, httpStatusCode: 200 },
        })),
    ];
    const offset = body.offset ?? 0;
    const limit = Math.min(body.limit ?? 100, this.listCap ?? Number.MAX_SAFE_INTEGER);
    return this.json(res, 200, rows.slice(offset, offset + limit));
  }
}

async function text(req: http.IncomingMessage): Promise<string> {
  let s = '';
  for await (const c of req) s += c;
  return s;
}
