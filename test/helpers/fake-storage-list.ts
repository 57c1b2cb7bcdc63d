/**
 * {@link FakeStorage} with what the offsite target suite needs beyond it, added in front of it
 * (fake-storage.ts stays as it is): a proxy on its own port that answers
 *
 *   POST /storage/v1/object/list/:bucket   list ({prefix, limit, offset, sortBy, search})
 *
 * itself, from the fake's objects, as storage-api's `storage.search()` does: the folder
 * `prefix` (a "/" is added), its sub-folders first (`id: null`, no metadata) then its files,
 * each sorted by the sort column, filtered by `name ILIKE prefix || search || '%'` (so `_` and
 * `%` are wildcards and case does not count), with `limit`/`offset` over the whole. Every other
 * request is passed through to the fake, except uploads of a name real Storage refuses
 * (storage-api's isValidKey: ASCII letters, digits and `_/!-.*'() &$@=;:+,?`), which get its
 * 400 InvalidKey.
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import http from 'node:http';
import { FakeStorage, SERVICE_KEY } from './fake-storage.js';
import { closeNow, listenLocal } from './local-http.js';

const VALID_KEY = /^(\w|\/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$/;

/** `pattern` as SQL's ILIKE does it: `%` any run, `_` any one character, no case. */
function ilike(pattern: string): RegExp {
  const re = [...pattern].map((c) => (c === '%' ? '.*' : c === '_' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${re}$`, 'is');
}

export class FakeStorageWithList extends FakeStorage {
  private innerUrl = '';
  private proxy!: http.Server;

  constructor(private readonly listKey = SERVICE_KEY) {
    super(listKey);
  }

  override async start(): Promise<this> {
    await super.start();
    this.innerUrl = this.url;
    this.proxy = http.createServer((req, res) => {
      this.route(req, res).catch((e: Error) => {
        if (!res.headersSent) res.writeHead(500).end(JSON.stringify({ statusCode: '500', error: 'fake', message: e.message }));
        else res.destroy();
      });
    });
    this.url = await listenLocal(this.proxy);
    return this;
  }

  override async stop(): Promise<void> {
    await closeNow(this.proxy);
    await super.stop();
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let m: RegExpExecArray | null;
    if (req.method === 'POST' && (m = /^\/storage\/v1\/object\/list\/([^/]+)$/.exec(p))) return this.list(m[1]!, req, res);
    if ((req.method === 'POST' || req.method === 'PUT') && (m = /^\/storage\/v1\/object\/(?!list\/|info\/|sign\/|upload\/)([^/]+)\/(.+)$/.exec(p)) && !VALID_KEY.test(m[2]!)) {
      req.resume();
      return this.send(res, 400, { statusCode: '400', error: 'InvalidKey', message: `Invalid key: ${m[2]}` });
    }
    return this.forward(req, res);
  }

  private send(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      const up = http.request(`${this.innerUrl}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('end', resolve);
        answer.on('error', () => (res.destroy(), resolve()));
      });
      // Either side cut off: cut the other.
      up.on('error', () => (res.destroy(), resolve()));
      req.on('aborted', () => up.destroy());
      res.on('close', () => {
        if (!res.writableFinished) up.destroy();
      });
      req.pipe(up);
    });
  }

  private async list(bucket: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let raw = '';
    for await (const c of req) raw += c;
    const authorized = req.headers.apikey === this.listKey && req.headers.authorization === `Bearer ${this.listKey}`;
    this.requests.push({ method: 'POST', path: `/storage/v1/object/list/${bucket}`, authorized });
    if (!authorized) return this.send(res, 403, { statusCode: '403', error: 'Unauthorized', message: 'invalid signature' });
    const body = JSON.parse(raw) as { prefix?: string; limit?: number; offset?: number; search?: string; sortBy?: { column?: string; order?: string } };
    let prefix = body.prefix ?? '';
    if (prefix.length > 0 && !prefix.endsWith('/')) prefix += '/';
    const level = prefix.split('/').length;
    const match = ilike(`${prefix}${body.search ?? ''}%`);
    const desc = body.sortBy?.order?.toLowerCase() === 'desc';
    const column = body.sortBy?.column ?? 'name';
    const folders = new Set<string>();
    const files: Array<{ name: string; size: number; contentType: string; createdAt: string }> = [];
    for (const [full, o] of this.objects) {
      if (!full.startsWith(`${bucket}/`)) continue;
      const name = full.slice(bucket.length + 1);
      if (!match.test(name)) continue;
      const tokens = name.split('/');
      if (tokens.length === level) files.push({ name: tokens[level - 1]!, size: statSync(o.file).size, contentType: o.contentType, createdAt: o.createdAt });
      else folders.add(tokens[level - 1]!);
    }
    const order = <T>(xs: T[], key: (x: T) => string) => xs.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (desc ? -1 : 1));
    const rows = [
      ...order([...folders], (f) => f).map((name) => ({ name, id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null })),
      ...order(files, (f) => (column === 'name' ? f.name : f.createdAt)).map((f) => ({
        name: f.name,
        id: randomUUID(),
        updated_at: f.createdAt,
        created_at: f.createdAt,
        last_accessed_at: f.createdAt,
        metadata: { eTag: `"${f.size}"`, size: f.size, mimetype: f.contentType, cacheControl: 'max-age=3600', lastModified: f.createdAt, contentLength: f.size, httpStatusCode: 200 },
      })),
    ];
    const offset = body.offset ?? 0;
    return this.send(res, 200, rows.slice(offset, offset + (body.limit ?? 100)));
  }
}
