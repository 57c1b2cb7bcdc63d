/**
 * The calls capture and restore make to a project's Storage REST API (what storage-js calls,
 * without supabase-js: streamed bodies, the headers supabase-js drops, names encoded):
 *
 *   GET  /storage/v1/bucket                               listBuckets
 *   GET  /storage/v1/bucket/:id                           getBucket
 *   POST /storage/v1/bucket                               createBucket
 *   PUT  /storage/v1/bucket/:id                           updateBucket
 *   POST /storage/v1/object/list/:bucket                  listFolder ({prefix, limit, offset, sortBy})
 *   GET  /storage/v1/object/info/:bucket/*                info (user metadata kept as it is)
 *   HEAD /storage/v1/object/authenticated/:bucket/*       head (the stored file, not the row)
 *   GET  /storage/v1/object/authenticated/:bucket/*       download
 *   POST /storage/v1/object/:bucket/*                     upload (x-upsert, x-metadata)
 *
 * Names go into URLs percent-encoded segment by segment (a `?`, `#`, `%`, a space or "é" in a
 * name stays in it); Storage decodes the path. Answers are checked (zod). Failures become
 * {@link StorageRequestError}s whose `kind` says what a caller may do; no message holds the key.
 */
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { HbError } from '../domain/errors.js';
import { redact } from '../util/redact.js';
import { STORAGE_CODES } from './errors.js';
import { discard, type HttpResponse, isRetryableStatus, NetworkError, readText, type RetryNotice, RetryPolicy, retryAfterOf, StorageHttp } from './http.js';

export interface StorageApiOptions {
  /** The project URL, https://<ref>.supabase.co. */
  url: string;
  /** The project's service-role key. Never written anywhere. */
  serviceRoleKey: string;
  signal?: AbortSignal;
  /** Requests in flight at most (sockets of the pool) (8). */
  maxSockets?: number;
  /** Time without a byte, waiting for the headers or between two chunks of a body (60 s). */
  requestTimeoutMs?: number;
  /** Retries of a request after a 429, a 5xx, a network error or a time limit (5). */
  maxRetries?: number;
  /** The first backoff between retries, doubling each time (500 ms). */
  retryBaseMs?: number;
  /** The longest Retry-After honoured as given (60 s). */
  maxRetryAfterMs?: number;
  /** Each retry as it happens, e.g. for `…: 503; retrying in 2 s (attempt 2 of 6)`. */
  onRetry?: (n: RetryNotice) => void;
}

const bucketAnswer = z.looseObject({
  id: z.string(),
  name: z.string(),
  public: z.boolean().nullish(),
  file_size_limit: z.number().nullish(),
  allowed_mime_types: z.array(z.string()).nullish(),
  type: z.string().nullish(),
});

/** One row of POST /object/list/:bucket (storage.search): a folder (id null) or an object. */
const listRow = z.looseObject({
  name: z.string(),
  id: z.string().nullable(),
  updated_at: z.string().nullish(),
  created_at: z.string().nullish(),
  last_accessed_at: z.string().nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
});

/** GET /object/info/:bucket/:path (storage-api's InfoRenderer). */
const infoAnswer = z.looseObject({
  id: z.string().nullish(),
  name: z.string().nullish(),
  size: z.number().nullish(),
  content_type: z.string().nullish(),
  cache_control: z.string().nullish(),
  etag: z.string().nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish(),
  last_modified: z.string().nullish(),
  created_at: z.string().nullish(),
});

const errorBody = z.looseObject({ statusCode: z.union([z.string(), z.number()]).optional(), error: z.string().optional(), message: z.string().optional() });

export interface BucketSettings {
  id: string;
  name: string;
  public: boolean;
  fileSizeLimit: number | null;
  allowedMimeTypes: string[] | null;
}

export interface StorageBucket extends BucketSettings {
  /** STANDARD, ANALYTICS, … (absent from older Storage versions). */
  type: string | null;
}

/** A row of a folder listing. */
export interface ListEntry {
  name: string;
  /** null for a folder. */
  id: string | null;
  updatedAt: string | null;
  createdAt: string | null;
  /** Storage's system metadata of an object (size, mimetype, eTag, cacheControl, lastModified…). */
  size: number | null;
  mimetype: string | null;
  etag: string | null;
  cacheControl: string | null;
  lastModified: string | null;
}

export interface ObjectInfo {
  id: string | null;
  size: number;
  contentType: string | null;
  cacheControl: string | null;
  etag: string | null;
  userMetadata: Record<string, unknown> | null;
  lastModified: string | null;
  createdAt: string | null;
}

export interface Download {
  body: Readable;
  etag: string | null;
  /** Content-Length, when the server said it. */
  bytes: number | null;
}

export type RequestKind = 'auth' | 'not-found' | 'refused' | 'retryable' | 'network';

/** A Storage request that failed: the kind says what the caller may do about it. */
export class StorageRequestError extends HbError {
  constructor(
    readonly kind: RequestKind,
    readonly status: number | null,
    message: string,
    hint?: string,
    readonly retryAfterMs: number | null = null,
  ) {
    super(STORAGE_CODES.failed, message, hint);
  }
}

/** `a b/c?.png` → `a%20b/c%3F.png`: a name as a URL path (see the module comment). */
export function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

interface StorageErrorLike {
  message?: string;
  status?: number;
  statusCode?: string | number | undefined;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : null);

export class StorageApi {
  private readonly http: StorageHttp;

  private constructor(private readonly o: StorageApiOptions) {
    this.http = new StorageHttp({
      url: o.url,
      key: o.serviceRoleKey,
      maxSockets: o.maxSockets ?? 8,
      timeoutMs: o.requestTimeoutMs ?? 60_000,
      maxRetries: o.maxRetries ?? 5,
      retryBaseMs: o.retryBaseMs ?? 500,
      maxRetryAfterMs: o.maxRetryAfterMs ?? 60_000,
      onRetry: o.onRetry,
      signal: o.signal,
    });
  }

  /** A client for the project at `url`; sends nothing yet. Call {@link close} when done. */
  static open(o: StorageApiOptions): StorageApi {
    return new StorageApi(o);
  }

  /** Closes the pooled connections. */
  close(): void {
    this.http.close();
  }

  /** The retry policy of requests, for operations that retry as a whole (a download cut midway). */
  get retry(): RetryPolicy {
    return this.http.retry;
  }

  /** The project URL, as manifests record it (no key). */
  get source(): string {
    return this.o.url.replace(/\/+$/, '');
  }

  /** The HbError for a failed request: what kind of failure, in words, without the key. */
  fail(what: string, e: unknown, res?: { status: number; headers?: HttpResponse['headers'] }): HbError {
    if (e instanceof HbError) return e;
    const err = e as StorageErrorLike & Error;
    const httpStatus = res?.status ?? (typeof err?.status === 'number' ? err.status : null);
    const bodyStatus = num(err?.statusCode);
    // storage-api answers some client errors with HTTP 400 and the real status in the body.
    const status = bodyStatus && httpStatus === 400 ? bodyStatus : (httpStatus ?? bodyStatus);
    const msg = this.clean(err?.message ?? String(e));
    if (status === 401 || status === 403 || (status !== null && /invalid signature|jwt|unauthori[sz]ed/i.test(msg))) {
      return new StorageRequestError('auth', status, `Supabase Storage refused to ${what}: ${msg}${status ? ` (${status})` : ''}`, 'check SUPABASE_SERVICE_ROLE_KEY: it must be the service-role key of the project at SUPABASE_URL');
    }
    if (status === 404 || (status !== null && /not.?found/i.test(msg))) return new StorageRequestError('not-found', status, `Supabase Storage has no ${what.replace(/^\w+ /, '')}: ${msg}`);
    if (status === null) {
      return new StorageRequestError('network', null, `cannot reach Supabase Storage to ${what}: ${msg}`, 'check SUPABASE_URL (https://<ref>.supabase.co) and the network');
    }
    if (isRetryableStatus(status)) return new StorageRequestError('retryable', status, `Supabase Storage could not ${what}: ${msg} (${status})`, undefined, res?.headers ? retryAfterOf(res.headers) : null);
    return new StorageRequestError('refused', status, `Supabase Storage refused to ${what}: ${msg} (${status})`, refusalHint(status, msg));
  }

  private clean(text: string): string {
    return redact(text).split(this.o.serviceRoleKey).join('***');
  }

  /** Sends a request; a network failure becomes a StorageRequestError of kind `network`. */
  private async send(what: string, method: string, path: string, opts: Parameters<StorageHttp['request']>[2] = {}): Promise<HttpResponse> {
    try {
      return await this.http.request(method, path, opts);
    } catch (e) {
      throw this.fail(what, e);
    }
  }

  /** Reads a JSON answer; a non-2xx answer is thrown as a StorageRequestError. */
  private async json(what: string, res: HttpResponse): Promise<unknown> {
    let text: string;
    try {
      text = await readText(res);
    } catch (e) {
      throw this.fail(what, e instanceof NetworkError ? e : new NetworkError((e as Error).message));
    }
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // said below
    }
    if (res.status < 200 || res.status > 299) {
      const b = errorBody.safeParse(body);
      const message = (b.success && (b.data.message ?? b.data.error)) || res.body.statusMessage || `HTTP ${res.status}`;
      throw this.fail(what, { message, statusCode: b.success ? b.data.statusCode : undefined }, res);
    }
    if (body === null && text) throw new HbError(STORAGE_CODES.failed, `Supabase Storage answered ${what} with something that is not JSON`);
    return body;
  }

  private parse<T>(what: string, schema: z.ZodType<T>, value: unknown): T {
    const r = schema.safeParse(value);
    if (!r.success) throw new HbError(STORAGE_CODES.failed, `Supabase Storage answered ${what} with something unexpected: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`.trim());
    return r.data;
  }

  async listBuckets(): Promise<StorageBucket[]> {
    const what = 'list the buckets';
    const body = await this.json(what, await this.send(what, 'GET', 'bucket'));
    return this.parse(what, z.array(bucketAnswer), body).map(toBucket);
  }

  /** The bucket, or null when there is none. */
  async getBucket(id: string): Promise<StorageBucket | null> {
    const what = `read bucket "${id}"`;
    try {
      return toBucket(this.parse(what, bucketAnswer, await this.json(what, await this.send(what, 'GET', `bucket/${encodeURIComponent(id)}`))));
    } catch (e) {
      if (e instanceof StorageRequestError && e.kind === 'not-found') return null;
      throw e;
    }
  }

  /** Creates a bucket with these settings; false when it exists already. */
  async createBucket(b: BucketSettings): Promise<boolean> {
    const what = `create bucket "${b.id}"`;
    try {
      await this.json(what, await this.send(what, 'POST', 'bucket', { json: { id: b.id, name: b.name, public: b.public, file_size_limit: b.fileSizeLimit, allowed_mime_types: b.allowedMimeTypes } }));
      return true;
    } catch (e) {
      if (e instanceof StorageRequestError && (e.status === 409 || /already exists|duplicate/i.test(e.message))) return false;
      throw e;
    }
  }

  /** Changes a bucket's settings to these. */
  async updateBucket(b: BucketSettings): Promise<void> {
    const what = `change the settings of bucket "${b.id}"`;
    await this.json(what, await this.send(what, 'PUT', `bucket/${encodeURIComponent(b.id)}`, { json: { id: b.id, public: b.public, file_size_limit: b.fileSizeLimit, allowed_mime_types: b.allowedMimeTypes } }));
  }

  /** One page of a folder: `prefix` is the folder without its trailing "/" ("" for the bucket's top). */
  async listFolder(bucket: string, prefix: string, offset: number, limit: number): Promise<ListEntry[]> {
    const what = `list ${bucket}/${prefix ? `${prefix}/` : ''}`;
    const res = await this.send(what, 'POST', `object/list/${encodeURIComponent(bucket)}`, { json: { prefix, limit, offset, sortBy: { column: 'name', order: 'asc' } } });
    return this.parse(what, z.array(listRow), await this.json(what, res)).map(toListEntry);
  }

  /** Size, content type, ETag, user metadata… of an object (from its row), or null when there is none. */
  async info(bucket: string, name: string): Promise<ObjectInfo | null> {
    const what = `read ${bucket}/${name}`;
    let d: z.infer<typeof infoAnswer>;
    try {
      d = this.parse(what, infoAnswer, await this.json(what, await this.send(what, 'GET', `object/info/${objectPath(bucket, name)}`)));
    } catch (e) {
      if (e instanceof StorageRequestError && e.kind === 'not-found') return null;
      throw e;
    }
    if (typeof d.size !== 'number') throw new HbError(STORAGE_CODES.failed, `Supabase Storage answered the info of ${bucket}/${name} without a size`);
    return {
      id: d.id ?? null,
      size: d.size,
      contentType: d.content_type ?? null,
      cacheControl: d.cache_control ?? null,
      etag: d.etag ?? null,
      userMetadata: d.metadata ?? null,
      lastModified: d.last_modified ?? null,
      createdAt: d.created_at ?? null,
    };
  }

  /** The stored file's size and ETag (HEAD reads the file, not only its row), or null when there is none. */
  async head(bucket: string, name: string): Promise<{ size: number; etag: string | null; contentType: string | null } | null> {
    const what = `read ${bucket}/${name}`;
    const res = await this.send(what, 'HEAD', `object/authenticated/${objectPath(bucket, name)}`);
    discard(res);
    if (res.status === 404 || res.status === 400) return null;
    if (res.status < 200 || res.status > 299) throw this.fail(what, { message: res.body.statusMessage ?? `HTTP ${res.status}` }, res);
    const len = res.headers['content-length'];
    return { size: len && /^\d+$/.test(len) ? Number(len) : -1, etag: str(res.headers.etag), contentType: str(res.headers['content-type']) };
  }

  /**
   * An object's bytes, streamed, with the ETag and length the response gave.
   * @throws StorageRequestError (`not-found` when it is gone)
   */
  async download(bucket: string, name: string, signal?: AbortSignal): Promise<Download> {
    const what = `download ${bucket}/${name}`;
    const res = await this.send(what, 'GET', `object/authenticated/${objectPath(bucket, name)}`, signal ? { signal } : {});
    if (res.status < 200 || res.status > 299) {
      await this.json(what, res);
      throw this.fail(what, { message: `HTTP ${res.status}` }, res);
    }
    const len = res.headers['content-length'];
    return { body: res.body, etag: str(res.headers.etag), bytes: len && /^\d+$/.test(len) ? Number(len) : null };
  }

  /**
   * Uploads the stream `body()` makes (exactly `bytes` bytes) to `bucket/name`, replacing what is
   * there, with the content type, cache control and user metadata given. Retried (with a fresh
   * stream) on a 429, a 5xx or a network error; a body that fails (a damaged store file) is not.
   */
  async upload(bucket: string, name: string, body: () => Readable, o: { bytes: number; contentType: string; cacheControl?: string | undefined; userMetadata?: Record<string, unknown> | undefined; signal?: AbortSignal }): Promise<void> {
    const what = `upload ${bucket}/${name}`;
    const headers: Record<string, string> = { 'content-type': o.contentType, 'content-length': String(o.bytes), 'x-upsert': 'true' };
    if (o.cacheControl) headers['cache-control'] = o.cacheControl;
    if (o.userMetadata) headers['x-metadata'] = Buffer.from(JSON.stringify(o.userMetadata)).toString('base64');
    await this.json(what, await this.send(what, 'POST', `object/${objectPath(bucket, name)}`, { headers, body, ...(o.signal ? { signal: o.signal } : {}) }));
  }
}

/** `bucket/a b/c?.png` → `bucket/a%20b/c%3F.png`. */
function objectPath(bucket: string, name: string): string {
  return `${encodeURIComponent(bucket)}/${encodeName(name)}`;
}

function refusalHint(status: number, msg: string): string | undefined {
  if (/invalid ?key/i.test(msg)) return 'Supabase Storage accepts only ASCII letters, digits and _/!-.*\'() &$@=;:+,? in a name; an object with another name cannot be uploaded through its API';
  if (status === 413) return "the object is larger than the bucket's file size limit or the project's upload limit (Dashboard → Storage → Settings)";
  if (status === 415) return "the bucket's allowed MIME types do not include this object's content type";
  return undefined;
}

function toBucket(b: z.infer<typeof bucketAnswer>): StorageBucket {
  return {
    id: b.id,
    name: b.name,
    public: !!b.public,
    fileSizeLimit: b.file_size_limit ?? null,
    allowedMimeTypes: b.allowed_mime_types ?? null,
    type: b.type ?? null,
  };
}

function toListEntry(r: z.infer<typeof listRow>): ListEntry {
  const m = r.metadata ?? {};
  return {
    name: r.name,
    id: r.id,
    updatedAt: r.updated_at ?? null,
    createdAt: r.created_at ?? null,
    size: num(m.size) ?? num(m.contentLength),
    mimetype: str(m.mimetype),
    etag: str(m.eTag),
    cacheControl: str(m.cacheControl),
    lastModified: str(m.lastModified),
  };
}
