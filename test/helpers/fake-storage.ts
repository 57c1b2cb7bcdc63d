/**
 * A fake Supabase Storage API: just the endpoints @supabase/supabase-js (storage-js) calls for
 * what hybrid-backup does — read the source under node_modules/@supabase/storage-js:
 *
 *   GET    /storage/v1/bucket                     listBuckets (what a Storage capture starts with)
 *   GET    /storage/v1/bucket/:id                 getBucket
 *   POST   /storage/v1/bucket                     createBucket
 *   POST   /storage/v1/object/:bucket/:path       upload (raw body, x-upsert, x-metadata base64 JSON)
 *   GET    /storage/v1/object/info/:bucket/:path  info
 *   GET    /storage/v1/object/:bucket/:path       download
 *   DELETE /storage/v1/object/:bucket             remove ({prefixes: [...]})
 *
 * Every request must carry the service-role key (`apikey` and `Authorization: Bearer`), as
 * supabase-js sends it. Objects are files in a temp directory, so big uploads stay on disk.
 * Failures can be injected: a status for the next matching request, or an upload cut off halfway.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { closeNow, listenLocal } from './local-http.js';

export const SERVICE_KEY = 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2VydmljZS1yb2xlLXNpZ25hdHVyZQ';

interface StoredObject {
  file: string;
  contentType: string;
  metadata: Record<string, unknown>;
  createdAt: string;
}

interface Injection {
  method: string;
  path: RegExp;
  status?: number;
  /** Upload only: read this many bytes, then drop the connection. */
  cutAfter?: number;
}

export class FakeStorage {
  url = '';
  readonly requests: Array<{ method: string; path: string; authorized: boolean }> = [];
  readonly buckets = new Map<string, { public: boolean }>();
  readonly objects = new Map<string, StoredObject>();
  private readonly dir = mkdtempSync('/tmp/hbfs-');
  private readonly injections: Injection[] = [];
  private server!: http.Server;

  constructor(private readonly key = SERVICE_KEY) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: Error) => {
        if (!res.headersSent) res.writeHead(500).end(JSON.stringify({ statusCode: '500', error: 'fake', message: e.message }));
      });
    });
    this.url = await listenLocal(this.server);
    return this;
  }

  async stop(): Promise<void> {
    await closeNow(this.server);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The next request matching `method` and `path` gets `status` (or, for an upload, is cut off after `cutAfter` bytes). */
  inject(i: Injection): void {
    this.injections.push(i);
  }

  /** Bytes stored for `bucket/path`, or null. */
  size(key: string): number | null {
    const o = this.objects.get(key);
    return o ? statSync(o.file).size : null;
  }

  /** Damages a stored object (keeps its metadata), to test verification. */
  truncate(key: string, bytes: number): void {
    truncateSync(this.objects.get(key)!.file, bytes);
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private error(res: http.ServerResponse, status: number, error: string, message: string): void {
    this.json(res, status, { statusCode: String(status), error, message });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = decodeURIComponent(url.pathname);
    const method = req.method ?? '';
    const authorized = req.headers.apikey === this.key && req.headers.authorization === `Bearer ${this.key}`;
    this.requests.push({ method, path: p, authorized });
    if (!authorized) {
      req.resume();
      return this.error(res, 403, 'Unauthorized', 'invalid signature');
    }
    const inj = this.injections.findIndex((i) => i.method === method && i.path.test(p));
    const injection = inj >= 0 ? this.injections.splice(inj, 1)[0] : undefined;
    if (injection?.status) {
      req.resume();
      return this.error(res, injection.status, 'Injected', `injected ${injection.status}`);
    }

    let m: RegExpExecArray | null;
    if (method === 'GET' && p === '/storage/v1/bucket') {
      return this.json(res, 200, [...this.buckets].map(([id, b]) => ({ id, name: id, public: b.public, file_size_limit: null, allowed_mime_types: null })));
    }
    if (method === 'GET' && (m = /^\/storage\/v1\/bucket\/([^/]+)$/.exec(p))) {
      const b = this.buckets.get(m[1]!);
      if (!b) return this.error(res, 404, 'not_found', 'Bucket not found');
      const now = new Date().toISOString();
      return this.json(res, 200, { id: m[1], name: m[1], owner: '', public: b.public, file_size_limit: null, allowed_mime_types: null, created_at: now, updated_at: now });
    }
    if (method === 'POST' && p === '/storage/v1/bucket') {
      let body = '';
      for await (const c of req) body += c;
      const b = JSON.parse(body) as { id: string; name?: string; public?: boolean };
      if (this.buckets.has(b.id)) return this.error(res, 409, 'Duplicate', 'The resource already exists');
      this.buckets.set(b.id, { public: !!b.public });
      return this.json(res, 200, { name: b.id });
    }
    if (method === 'GET' && (m = /^\/storage\/v1\/object\/info\/([^/]+)\/(.+)$/.exec(p))) {
      const key = `${m[1]}/${m[2]}`;
      const o = this.objects.get(key);
      if (!o) return this.error(res, 404, 'not_found', 'Object not found');
      const size = statSync(o.file).size;
      return this.json(res, 200, {
        id: randomUUID(),
        version: 'v1',
        name: m[2],
        bucket_id: m[1],
        created_at: o.createdAt,
        last_modified: o.createdAt,
        size,
        content_type: o.contentType,
        cache_control: 'max-age=3600',
        etag: `"${size}"`,
        metadata: o.metadata,
      });
    }
    if (method === 'POST' && (m = /^\/storage\/v1\/object\/([^/]+)\/(.+)$/.exec(p))) {
      const [bucket, name] = [m[1]!, m[2]!];
      if (!this.buckets.has(bucket)) {
        req.resume();
        return this.error(res, 404, 'not_found', 'Bucket not found');
      }
      const key = `${bucket}/${name}`;
      if (this.objects.has(key) && req.headers['x-upsert'] !== 'true') {
        req.resume();
        return this.error(res, 409, 'Duplicate', 'The resource already exists');
      }
      const file = path.join(this.dir, randomUUID());
      if (injection?.cutAfter !== undefined) {
        let seen = 0;
        req.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen >= injection.cutAfter!) req.socket.destroy();
        });
        return;
      }
      await pipeline(req, createWriteStream(file));
      const meta = req.headers['x-metadata'];
      this.objects.set(key, {
        file,
        contentType: String(req.headers['content-type'] ?? 'application/octet-stream'),
        metadata: meta ? (JSON.parse(Buffer.from(String(meta), 'base64').toString('utf8')) as Record<string, unknown>) : {},
        createdAt: new Date().toISOString(),
      });
      return this.json(res, 200, { Id: randomUUID(), Key: key });
    }
    if (method === 'GET' && (m = /^\/storage\/v1\/object\/([^/]+)\/(.+)$/.exec(p))) {
      const o = this.objects.get(`${m[1]}/${m[2]}`);
      if (!o) return this.error(res, 404, 'not_found', 'Object not found');
      res.writeHead(200, { 'content-type': o.contentType, 'content-length': String(statSync(o.file).size) });
      await pipeline(createReadStream(o.file), res);
      return;
    }
    if (method === 'DELETE' && (m = /^\/storage\/v1\/object\/([^/]+)$/.exec(p))) {
      let body = '';
      for await (const c of req) body += c;
      const { prefixes } = JSON.parse(body) as { prefixes: string[] };
      const deleted = [];
      for (const name of prefixes) {
        const key = `${m[1]}/${name}`;
        const o = this.objects.get(key);
        if (o) {
          rmSync(o.file, { force: true });
          this.objects.delete(key);
          deleted.push({ name, bucket_id: m[1], id: randomUUID() });
        }
      }
      return this.json(res, 200, deleted);
    }
    req.resume();
    return this.error(res, 404, 'not_found', `no route ${method} ${p}`);
  }
}
