/**
 * An offsite target on any S3-compatible service — AWS S3, Cloudflare R2, Backblaze B2, MinIO,
 * Ceph RGW, Supabase's S3 endpoint — through the AWS SDK v3. Uploads stream in parts through a
 * fixed set of part buffers ({@link ./s3-multipart.ts}), so memory stays bounded whatever the size; metadata travels
 * as `x-amz-meta-*`; requests are retried by the SDK's standard retry strategy; every request
 * stops with the caller's signal; a multipart upload that fails or is stopped is aborted, so no
 * part lingers and nothing appears under the key.
 *
 * The SDK (about 30 ms and 10 MB to load) is loaded on first use, like supabase-js.
 */
import type {
  GetObjectCommandOutput,
  ListObjectsV2CommandOutput,
  S3Client as S3ClientType,
  S3ClientConfig,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HbError } from '../domain/errors.js';
import { redact } from '../util/redact.js';
import {
  abortedError,
  checkKey,
  checkMetadata,
  CountedPull,
  CountingStream,
  isPullBody,
  type OffsiteListEntry,
  type OffsiteObjectInfo,
  OffsiteNotFoundError,
  type OffsiteTarget,
  type PutOptions,
  type PullBody,
  throwIfAborted,
} from './target.js';
import { plural } from '../util/format.js';
import { BodyError, MAX_PARTS, streamUpload } from './s3-multipart.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last) and its most parts per upload. */
const MIN_PART = 5 * MiB;
/**
 * What the part buffers of one upload may hold: (queueSize + 1) × partSize stays under it when
 * it can. The buffers are allocated once per upload and reused. Four parts in flight hide a
 * remote service's latency between parts; against the local Ceph RGW of the bench, 1 to 4 made no
 * difference in time (bench/RESULTS.md, 2026-12-08).
 */
const BUFFER_BUDGET = 40 * MiB;

export interface S3TargetSettings {
  /** The configured name of the target, e.g. "b2-eu" (messages, the ledger). */
  name: string;
  /**
   * The service's URL for anything but AWS: `https://<account>.r2.cloudflarestorage.com`,
   * `https://s3.eu-central-003.backblazeb2.com`, `https://<ref>.supabase.co/storage/v1/s3`,
   * `http://127.0.0.1:9000`. Unset: AWS S3 in `region`.
   */
  endpoint?: string;
  /** Default `us-east-1`; `auto` for R2; the project's region for Supabase. */
  region?: string;
  bucket: string;
  /** A folder inside the bucket, "" or ending in "/". */
  prefix?: string;
  /** Path-style URLs (`endpoint/bucket/key`): default true with an endpoint (MinIO, Ceph, Supabase need it), false for AWS. */
  forcePathStyle?: boolean;
  /** Passed in: the caller reads them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the target's own variables. */
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Names where the credentials came from, for hints, e.g. "B2_KEY_ID and B2_APPLICATION_KEY". */
  credentialsFrom?: string;
  /** Create the bucket (private) when it is missing. Default false: a missing bucket is an error. */
  createBucket?: boolean;
  /**
   * Bytes per part; default 8 MiB (at least 5 MiB). Raised for a body whose announced size needs
   * more than 9,000 parts (over about 70 GiB); a body of unknown size can have at most 10,000
   * parts (78 GiB at 8 MiB).
   */
  partSize?: number;
  /**
   * Parts uploaded at once; default 4; lowered (to 1 at least) so that (queueSize + 1) × partSize
   * stays under 40 MiB: the part buffers, allocated once per upload, are what an upload holds.
   * Larger parts (bodies over 70 GiB) take 2 × partSize.
   */
  queueSize?: number;
  /** Attempts per request (the SDK's standard retry: 5xx, throttling, network errors); default 3. */
  maxAttempts?: number;
  /**
   * The SDK's flexible checksums. `when-supported` (a CRC32 with every upload, checked by the
   * service) needs a service that understands aws-chunked trailers: AWS does; many others
   * (Ceph before Reef, older MinIO, B2 and R2 until 2025) store the framing or refuse it.
   * Default: `when-supported` for AWS, `when-required` with an endpoint.
   */
  checksums?: 'when-supported' | 'when-required';
  /** Milliseconds a connection may take to open (default 10 s) and a socket may stay idle (default 120 s); either is retried. */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
}

/** Part size and concurrency for a body of `bytes` (undefined: unknown). */
export function partPlan(bytes: number | undefined, partSize = 8 * MiB, queueSize = 4): { partSize: number; queueSize: number } {
  let size = Math.max(MIN_PART, Math.ceil(partSize / MiB) * MiB);
  // Leave headroom under S3's 10,000 parts.
  if (bytes !== undefined) size = Math.max(size, Math.ceil(bytes / (MAX_PARTS * 0.9) / MiB) * MiB);
  const queue = Math.max(1, Math.min(queueSize, Math.floor(BUFFER_BUDGET / size) - 1));
  return { partSize: size, queueSize: queue };
}

type S3Module = typeof import('@aws-sdk/client-s3');
type Op = 'check' | 'create' | 'upload' | 'read' | 'download' | 'list' | 'delete';

const VERB: Record<Op, string> = {
  check: 'check the bucket of',
  create: 'create the bucket of',
  upload: 'upload',
  read: 'read',
  download: 'download',
  list: 'list',
  delete: 'delete',
};
const PERMISSION: Record<Op, string> = {
  check: 's3:ListBucket',
  create: 's3:CreateBucket',
  upload: 's3:PutObject (and s3:AbortMultipartUpload)',
  read: 's3:GetObject (and s3:ListBucket, without which an absent object is a 403)',
  download: 's3:GetObject',
  list: 's3:ListBucket',
  delete: 's3:DeleteObject',
};
const CREDENTIAL_CODES: Record<string, string> = {
  InvalidAccessKeyId: 'the access key id is not known to the service',
  SignatureDoesNotMatch: 'the secret access key does not match the access key id',
  InvalidToken: 'the session token is not valid',
  ExpiredToken: 'the session token has expired',
  InvalidSecurity: 'the credentials are not valid',
  InvalidClientTokenId: 'the access key id is not known to the service',
};
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID']);
const PUBLIC_GROUPS = /\/groups\/global\/(AllUsers|AuthenticatedUsers)$/;

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $fault?: 'client' | 'server';
}

/** The SDK's (or a socket's) error code: `NoSuchBucket`, `AccessDenied`, `ECONNREFUSED`… */
function codeOf(e: unknown): string {
  const err = e as SdkError | undefined;
  return String(err?.Code ?? err?.name ?? err?.code ?? 'Error');
}
const statusOf = (e: unknown): number | undefined => (e as SdkError | undefined)?.$metadata?.httpStatusCode;

export class S3Target implements OffsiteTarget {
  readonly type = 's3' as const;
  readonly name: string;
  private readonly prefix: string;
  private readonly host: string;

  private constructor(
    private readonly s3: S3Module,
    private readonly settings: S3TargetSettings,
    private readonly config: S3ClientConfig,
    private readonly client: S3ClientType,
  ) {
    this.name = settings.name;
    this.prefix = settings.prefix ?? '';
    this.host = settings.endpoint ? new URL(settings.endpoint).host : `s3.${settings.region ?? 'us-east-1'}.amazonaws.com`;
  }

  /** A target with these settings (loads the SDK; sends nothing). Bad settings are a TypeError. */
  static async open(settings: S3TargetSettings): Promise<S3Target> {
    const prefix = settings.prefix ?? '';
    if (prefix !== '' && (!prefix.endsWith('/') || prefix.startsWith('/'))) throw new TypeError('the S3 prefix must be empty or end in "/" (and not start with one)');
    if (!settings.bucket) throw new TypeError('the S3 bucket is missing');
    if (settings.endpoint && !/^https?:\/\//.test(settings.endpoint)) throw new TypeError('the S3 endpoint must be an http(s) URL');
    const s3 = await import('@aws-sdk/client-s3');
    const checksums = settings.checksums ?? (settings.endpoint ? 'when-required' : 'when-supported');
    const mode = checksums === 'when-supported' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED';
    const config: S3ClientConfig = {
      region: settings.region ?? 'us-east-1',
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.forcePathStyle ?? !!settings.endpoint,
      credentials: { ...settings.credentials },
      maxAttempts: settings.maxAttempts ?? 3,
      retryMode: 'standard',
      requestChecksumCalculation: mode,
      responseChecksumValidation: mode,
      requestHandler: { connectionTimeout: settings.connectTimeoutMs ?? 10_000, socketTimeout: settings.idleTimeoutMs ?? 120_000 },
    };
    const client = new s3.S3Client(config);
    // Over TLS (which protects the body in transit) or with the SDK's checksums (a CRC32 the service
    // checks), the signature need not cover the body too; over plain http it does.
    const unsigned = !settings.endpoint || settings.endpoint.startsWith('https:') || mode === 'WHEN_SUPPORTED';
    if (unsigned) unsignedPayload(client);
    return new S3Target(s3, settings, config, client);
  }

  /** Closes the target's connections: call it when done with the target. */
  close(): void {
    this.client.destroy();
  }

  location(key?: string): string {
    return `s3://${this.settings.bucket}/${this.prefix}${key ?? ''}`;
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.prefix + key;
  }

  async ensureReady(signal?: AbortSignal): Promise<void> {
    const { ListObjectsV2Command, CreateBucketCommand } = this.s3;
    const Bucket = this.settings.bucket;
    try {
      // Not HeadBucket: a HEAD answer has no error code to tell a wrong key from a missing permission.
      await this.client.send(new ListObjectsV2Command({ Bucket, Prefix: this.prefix, MaxKeys: 1 }), { abortSignal: signal });
    } catch (e) {
      if (codeOf(e) !== 'NoSuchBucket' || !this.settings.createBucket) throw this.fail('check', undefined, e, signal);
      const region = this.config.region as string;
      try {
        await this.client.send(
          new CreateBucketCommand({
            Bucket,
            ...(!this.settings.endpoint && region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as never } } : {}),
          }),
          { abortSignal: signal },
        );
      } catch (c) {
        if (codeOf(c) !== 'BucketAlreadyOwnedByYou') throw this.fail('create', undefined, c, signal);
      }
    }
    await this.refusePublic(signal);
  }

  /**
   * S3 has no one "public" flag: asks the policy status (AWS) and the ACL (everyone) and refuses
   * a bucket either shows public. A service or key that cannot answer (no permission, not
   * implemented) is not refused for it.
   */
  private async refusePublic(signal?: AbortSignal): Promise<void> {
    const { GetBucketPolicyStatusCommand, GetBucketAclCommand } = this.s3;
    const Bucket = this.settings.bucket;
    let why: string | null = null;
    try {
      const r = await this.client.send(new GetBucketPolicyStatusCommand({ Bucket }), { abortSignal: signal });
      if (r.PolicyStatus?.IsPublic) why = 'its policy status says public';
    } catch {
      throwIfAborted(`checking ${this.location()}`, signal);
    }
    if (!why) {
      try {
        const r = await this.client.send(new GetBucketAclCommand({ Bucket }), { abortSignal: signal });
        const open = (r.Grants ?? []).find((g) => PUBLIC_GROUPS.test(g.Grantee?.URI ?? ''));
        if (open) why = `its ACL grants ${open.Permission ?? 'access'} to ${/AllUsers/.test(open.Grantee!.URI!) ? 'everyone' : 'every AWS account'}`;
      } catch {
        throwIfAborted(`checking ${this.location()}`, signal);
      }
    }
    if (why) {
      throw new HbError('offsite-failed', `the S3 bucket "${Bucket}" at ${this.host} is public (${why}): backups must not be`, `make it private, or give offsite target "${this.name}" another bucket`);
    }
  }

  async put(key: string, body: NodeJS.ReadableStream | PullBody, opts: PutOptions): Promise<{ bytes: number }> {
    const Key = this.objectKey(key);
    checkMetadata(opts.metadata);
    const location = this.location(key);
    const what = `the upload of ${location}`;
    const { signal } = opts;
    const expected = opts.bytes === undefined ? undefined : { bytes: opts.bytes, location };
    // What the upload reads: the body counted (and its size checked); a stream's read error (a
    // file deleted meanwhile, EIO) fails the upload, not the process.
    let source: CountingStream | CountedPull;
    let release = () => {};
    if (isPullBody(body)) {
      source = new CountedPull(body, opts.onBytes, expected);
    } else {
      const counter = new CountingStream(opts.onBytes, expected);
      pipeline(body, counter).catch(() => {});
      source = counter;
      release = () => counter.destroy();
    }
    if (signal?.aborted) {
      release();
      throw abortedError(what, signal);
    }
    // One controller for this upload: the caller's signal, or the first failed request, stops every request.
    const stop = new AbortController();
    const onAbort = () => stop.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let uploadId: string | undefined;
    const plan = partPlan(opts.bytes, this.settings.partSize, this.settings.queueSize);
    stop.signal.addEventListener('abort', release, { once: true });
    try {
      await streamUpload(this.s3, this.client, { Bucket: this.settings.bucket, Key, ContentType: opts.contentType, Metadata: opts.metadata }, source, {
        ...plan,
        stop,
        checksums: this.config.requestChecksumCalculation === 'WHEN_SUPPORTED',
        ...(opts.bytes !== undefined ? { sizeHint: opts.bytes } : {}),
        onUploadId: (id) => (uploadId = id),
      });
    } catch (e) {
      stop.abort(e);
      release();
      if (uploadId) await this.abortMultipart(Key, uploadId);
      if (signal?.aborted) throw abortedError(what, signal);
      if (e instanceof BodyError) {
        if (e.cause instanceof HbError) throw e.cause;
        throw new HbError('offsite-failed', `cannot read what was to be uploaded to ${location}: ${e.message}`, undefined, { cause: e.cause });
      }
      throw this.fail('upload', key, e, signal);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const sent = source.bytes;
    const stored = await this.stat(key, signal);
    if (!stored) throw new HbError('offsite-mismatch', `${what} reported success but the object is not there`, 'it is retried at the next run');
    if (stored.bytes !== sent) {
      await this.remove([key]).catch(() => {});
      throw new HbError('offsite-mismatch', `${location} holds ${stored.bytes} bytes, ${sent} were sent; the copy was removed`, 'it is retried at the next run');
    }
    return { bytes: stored.bytes };
  }

  /** Aborts a multipart upload (its parts are deleted), with its own time limit: the caller's signal may have fired. */
  private async abortMultipart(Key: string, UploadId: string): Promise<void> {
    const { AbortMultipartUploadCommand } = this.s3;
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.settings.bucket, Key, UploadId }), { abortSignal: AbortSignal.timeout(30_000) }).catch(() => {
      // Left for the bucket's lifecycle rule (AbortIncompleteMultipartUpload); nothing is visible under the key.
    });
  }

  async stat(key: string, signal?: AbortSignal): Promise<OffsiteObjectInfo | null> {
    const Key = this.objectKey(key);
    const { HeadObjectCommand } = this.s3;
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key }), { abortSignal: signal });
      return { bytes: Number(h.ContentLength ?? 0), metadata: lowerKeys(h.Metadata ?? {}), lastModified: h.LastModified ? h.LastModified.toISOString() : null };
    } catch (e) {
      if (statusOf(e) === 404 || codeOf(e) === 'NotFound' || codeOf(e) === 'NoSuchKey') return null;
      // A HEAD answer has no body, so no error code: ask again with a request that has one.
      if (statusOf(e) === 403 || statusOf(e) === 400 || statusOf(e) === 401) throw this.fail('read', key, await this.diagnose(Key, signal, e), signal);
      throw this.fail('read', key, e, signal);
    }
  }

  /** The error a listing of `Key` gets, for a HEAD that failed without a code (or `e` itself). */
  private async diagnose(Key: string, signal: AbortSignal | undefined, e: unknown): Promise<unknown> {
    const { ListObjectsV2Command } = this.s3;
    try {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: Key, MaxKeys: 1 }), { abortSignal: signal });
      return e;
    } catch (l) {
      return codeOf(l) in CREDENTIAL_CODES || codeOf(l) === 'NoSuchBucket' ? l : e;
    }
  }

  async get(key: string, signal?: AbortSignal): Promise<Readable> {
    const Key = this.objectKey(key);
    const { GetObjectCommand } = this.s3;
    let r: GetObjectCommandOutput;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key }), { abortSignal: signal });
    } catch (e) {
      if (codeOf(e) === 'NoSuchKey' || statusOf(e) === 404 && codeOf(e) !== 'NoSuchBucket') throw new OffsiteNotFoundError(this.location(key));
      throw this.fail('download', key, e, signal);
    }
    const stream = r.Body as Readable;
    if (signal) {
      const onAbort = () => stream.destroy(abortedError(`the download of ${this.location(key)}`, signal));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<OffsiteListEntry> {
    const { ListObjectsV2Command } = this.s3;
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }), { abortSignal: signal });
      } catch (e) {
        throw this.fail('list', prefix, e, signal);
      }
      for (const o of page.Contents ?? []) {
        if (!o.Key?.startsWith(this.prefix)) continue;
        yield { key: o.Key.slice(this.prefix.length), bytes: Number(o.Size ?? 0), lastModified: o.LastModified ? o.LastModified.toISOString() : null };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async remove(keys: string[], signal?: AbortSignal): Promise<void> {
    const { DeleteObjectsCommand, DeleteObjectCommand } = this.s3;
    const all = keys.map((k) => this.objectKey(k));
    for (let i = 0; i < all.length; i += 1000) {
      const batch = all.slice(i, i + 1000);
      let errors: Array<{ Key?: string; Code?: string; Message?: string }>;
      try {
        const r = await this.client.send(new DeleteObjectsCommand({ Bucket: this.settings.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), { abortSignal: signal });
        errors = (r.Errors ?? []).filter((x) => x.Code !== 'NoSuchKey');
      } catch (e) {
        if (codeOf(e) !== 'NotImplemented') throw this.fail('delete', batch.length === 1 ? batch[0]!.slice(this.prefix.length) : undefined, e, signal);
        // A service without the batch call: one at a time.
        for (const Key of batch) {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key }), { abortSignal: signal }).catch((d: unknown) => {
            if (statusOf(d) !== 404) throw this.fail('delete', Key.slice(this.prefix.length), d, signal);
          });
        }
        errors = [];
      }
      if (errors.length > 0) {
        const first = errors[0]!;
        const forbidden = first.Code === 'AccessDenied';
        throw new HbError(
          'offsite-failed',
          `S3 at ${this.host} could not delete ${errors.length} of ${plural(batch.length, 'object')} under ${this.location()}: ${first.Code ?? 'error'} for ${JSON.stringify((first.Key ?? '').slice(this.prefix.length))}${first.Message && !forbidden ? ` (${this.scrub(first.Message)})` : ''}`,
          forbidden ? `the access key of offsite target "${this.name}" lacks ${PERMISSION.delete} on ${this.settings.bucket}/${this.prefix}*` : 'it is retried at the next prune',
        );
      }
    }
  }

  /** Masks the secret (and anything the redactor knows) in text from the service. */
  private scrub(text: string): string {
    const { secretAccessKey, sessionToken } = this.settings.credentials;
    let out = text;
    for (const s of [secretAccessKey, sessionToken]) if (s && s.length >= 4) out = out.split(s).join('***');
    return redact(out);
  }

  /** The HbError for a failed request: what failed, why, and what to do — never a credential. */
  private fail(op: Op, key: string | undefined, e: unknown, signal?: AbortSignal): HbError {
    const where = key === undefined ? this.location() : this.location(key);
    const action = `${VERB[op]} ${where}`;
    if (signal?.aborted) return abortedError(`the request to ${action}`, signal);
    if (e instanceof HbError) return e;
    const code = codeOf(e);
    const status = statusOf(e);
    const raw = (e as SdkError | undefined)?.message ?? '';
    const message = raw && raw !== 'UnknownError' && raw !== code ? this.scrub(raw) : '';
    // A HEAD answer has no code: the SDK calls it "Unknown", "Forbidden" or "NotFound".
    const tag = /^(Unknown|UnknownError|Error)$/.test(code) ? String(status ?? code) : `${code}${status ? `, ${status}` : ''}`;
    const target = `offsite target "${this.name}"`;
    const creds = this.settings.credentialsFrom ? ` (${this.settings.credentialsFrom})` : '';
    if (code in CREDENTIAL_CODES) {
      return new HbError('offsite-failed', `S3 at ${this.host} refused to ${action}: ${CREDENTIAL_CODES[code]} (${tag})`, `check the access key id and secret of ${target}${creds}`);
    }
    if (code === 'RequestTimeTooSkewed') {
      return new HbError('offsite-failed', `S3 at ${this.host} refused to ${action}: this machine's clock is too far off (${tag})`, 'set the clock right (NTP)');
    }
    if (code === 'NoSuchBucket') {
      return new HbError(
        'offsite-failed',
        `S3 at ${this.host} has no bucket "${this.settings.bucket}" (${tag})`,
        `create it (private), or check the bucket name of ${target}${this.settings.createBucket ? '' : ' — or let hybrid-backup create it (createBucket)'}`,
      );
    }
    if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || code === 'IllegalLocationConstraintException' || status === 301) {
      return new HbError('offsite-failed', `S3 at ${this.host} refused to ${action}: the bucket is in another region than "${String(this.config.region)}" (${tag})`, `set the region of ${target} to the bucket's`);
    }
    if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
      return new HbError('offsite-failed', `S3 at ${this.host} refused to ${action}: access denied (${tag})`, `the access key of ${target} lacks ${PERMISSION[op]} on ${this.settings.bucket}/${this.prefix}*`);
    }
    const errno = String((e as SdkError | undefined)?.code ?? code);
    if (status === undefined && (NETWORK_CODES.has(errno) || code === 'TimeoutError' || /socket|network|connect|timed? ?out/i.test(raw))) {
      return new HbError('offsite-failed', `cannot reach S3 at ${this.host} to ${action}: ${errno}${message && message !== errno ? ` (${message})` : ''}`, `check the endpoint of ${target} (${this.settings.endpoint ?? `AWS, region ${String(this.config.region)}`}) and the network`);
    }
    if (status !== undefined && status >= 500) {
      const attempts = (e as SdkError).$metadata?.attempts;
      return new HbError('offsite-failed', `S3 at ${this.host} failed to ${action}: ${message || code} (${tag})`, `the service failed${attempts ? ` ${attempts} times` : ''}; it is retried at the next run`);
    }
    return new HbError('offsite-failed', `S3 at ${this.host} could not ${action}: ${message || code} (${tag})`);
  }
}

function lowerKeys(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k.toLowerCase(), v]));
}

/**
 * Object bodies (PutObject, UploadPart) are signed as `UNSIGNED-PAYLOAD`, as `curl --aws-sigv4`
 * does: otherwise the signer reads every part once more for its
 * SHA-256 before sending it. Used only where the body's integrity in transit is kept otherwise —
 * TLS, or the SDK's CRC32 checksums — never over plain http without them.
 */
function unsignedPayload(client: S3ClientType): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string>; body?: unknown };
      if ((context.commandName === 'PutObjectCommand' || context.commandName === 'UploadPartCommand') && req?.headers && req.body != null) {
        req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      }
      return next(args);
    },
    { step: 'build', name: 'hybridBackupUnsignedPayload' },
  );
}
