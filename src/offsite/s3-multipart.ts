/**
 * Streamed S3 uploads through a fixed set of part buffers: `queueSize + 1` buffers of `partSize`
 * bytes, allocated for the upload; each is sent as a part (UploadPart, a replayable Buffer, so the
 * SDK's retries resend it) and refilled as soon as its request has succeeded. A body that fits in
 * one part goes as one PutObject. A pulled body ({@link PullBody}) writes into the buffers itself;
 * a stream's chunks are copied into them, once.
 *
 * Why not `@aws-sdk/lib-storage`'s Upload: it joins the stream's chunks into a new buffer for
 * every part, which in a 1 GiB upload was 128 fresh 8 MiB buffers, a copy of every byte and the
 * garbage collector's work on them, and RSS that grew with the garbage rather than the parts
 * (bench/RESULTS.md, "offsite upload"). Here an upload's memory is its buffers, whatever the size.
 *
 * Contract: resolves once the object is complete under the key. On any failure (a part, the
 * body, the caller's `stop`) it stops every request and rejects with the first error — a failure
 * of the body itself as {@link BodyError} — and the caller aborts the multipart upload (its id came
 * through `onUploadId`) with a signal of its own, so nothing appears under the key.
 */
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { isPullBody, type PullBody, streamPullBody } from './target.js';

type S3Module = typeof import('@aws-sdk/client-s3');

/** S3's most parts per upload. */
export const MAX_PARTS = 10_000;

export interface StreamUploadParams {
  Bucket: string;
  Key: string;
  ContentType: string;
  Metadata: Record<string, string>;
}

export interface StreamUploadOptions {
  partSize: number;
  /** Parts sent at once; one more buffer is being filled meanwhile. */
  queueSize: number;
  /** Stops every request; fired by the caller, and here on the first failure. */
  stop: AbortController;
  /** The SDK's flexible checksums are on: ask for CRC32 parts, as lib-storage does. */
  checksums: boolean;
  /** The body's announced size, when known: a small body gets a buffer of its own size, not a part's. */
  sizeHint?: number;
  /** Called with the multipart upload's id once it exists (for the caller's own abort). */
  onUploadId?: (id: string) => void;
}

/** The body failed (its read rejected, or the stream errored): `cause` is its error. */
export class BodyError extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

const CHECKSUM_FIELDS = ['ChecksumCRC32', 'ChecksumCRC32C', 'ChecksumCRC64NVME', 'ChecksumSHA1', 'ChecksumSHA256'] as const;

/** The parts of one upload: buffers, requests in flight, the multipart upload itself. */
class Parts {
  private readonly free: Buffer[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly done: CompletedPart[] = [];
  private uploadId: string | undefined;
  /** The CreateMultipartUpload in flight or done, once asked for. */
  creating: Promise<void> | null = null;
  private count = 0;
  private failure: { error: unknown } | null = null;
  private readonly signal: AbortSignal;

  constructor(
    private readonly s3: S3Module,
    private readonly client: S3Client,
    private readonly params: StreamUploadParams,
    private readonly opts: StreamUploadOptions,
  ) {
    this.signal = opts.stop.signal;
  }

  /** A buffer to fill: a free one, or a new one while fewer than queueSize + 1 exist. */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.opts.partSize);
  }

  /** Throws the first failure, or the stop's reason. */
  check(): void {
    if (this.failure) throw this.failure.error;
    if (this.signal.aborted) throw this.signal.reason;
  }

  fail(e: unknown): void {
    this.failure ??= { error: e };
    this.opts.stop.abort(e);
  }

  /** Sends `buf[0, len)` as the next part; resolves once at most queueSize parts are in flight. */
  async send(buf: Buffer, len: number): Promise<void> {
    if (!this.uploadId) await (this.creating ??= this.create());
    this.check();
    const n = ++this.count;
    if (n > MAX_PARTS) throw new Error(`the body needs more than ${MAX_PARTS} parts of ${this.opts.partSize} bytes`);
    const p: Promise<void> = this.part(buf, len, n).then(
      // Only a part-sized buffer is filled again (a small body's own buffer is not one).
      () => void (buf.length === this.opts.partSize && this.free.push(buf)),
      (e: unknown) => this.fail(e),
    );
    const tracked = p.finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
    // queueSize parts in flight while the next buffer fills: queueSize + 1 buffers in all.
    while (this.inflight.size > this.opts.queueSize && !this.failure) await Promise.race(this.inflight);
    this.check();
  }

  /** The whole body in one request (it fits in a part). */
  async putWhole(data: Buffer): Promise<void> {
    await this.client.send(new this.s3.PutObjectCommand({ ...this.params, Body: data, ContentLength: data.length }), { abortSignal: this.signal });
  }

  /** Waits for every part, then completes the upload. */
  async complete(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
    this.check();
    this.done.sort((a, b) => a.PartNumber! - b.PartNumber!);
    const { Bucket, Key } = this.params;
    await this.client.send(new this.s3.CompleteMultipartUploadCommand({ Bucket, Key, UploadId: this.uploadId, MultipartUpload: { Parts: this.done } }), { abortSignal: this.signal });
  }

  private async create(): Promise<void> {
    const { s3, opts } = this;
    // Not stopped by the signal: a request cut after the service created the upload would leave
    // it unknown here, never aborted. It is one short request (the SDK's time limits bound it);
    // the stop is looked at once the id is known (send() checks it next).
    const out = await this.client.send(new s3.CreateMultipartUploadCommand({ ...this.params, ...(opts.checksums ? { ChecksumAlgorithm: s3.ChecksumAlgorithm.CRC32 } : {}) }));
    if (!out.UploadId) throw new Error('the service started a multipart upload without an UploadId');
    this.uploadId = out.UploadId;
    opts.onUploadId?.(out.UploadId);
  }

  private async part(buf: Buffer, len: number, n: number): Promise<void> {
    const { Bucket, Key } = this.params;
    const out = await this.client.send(new this.s3.UploadPartCommand({ Bucket, Key, UploadId: this.uploadId, PartNumber: n, Body: buf.subarray(0, len), ContentLength: len }), { abortSignal: this.signal });
    if (!out.ETag) throw new Error(`part ${n} was stored without an ETag in the answer`);
    const part: CompletedPart = { PartNumber: n, ETag: out.ETag };
    for (const f of CHECKSUM_FIELDS) if (out[f]) part[f] = out[f];
    this.done.push(part);
  }
}

/**
 * Uploads `body` to `params.Key`. See the module's contract.
 */
export async function streamUpload(s3: S3Module, client: S3Client, params: StreamUploadParams, body: Readable | PullBody, opts: StreamUploadOptions): Promise<void> {
  const parts = new Parts(s3, client, params, opts);
  try {
    await fromPull(parts, isPullBody(body) ? body : streamPullBody(body), opts);
  } catch (e) {
    // An upload being created when the rest failed is reported (onUploadId) before this rejects,
    // so the caller can abort it.
    await parts.creating?.catch(() => {});
    throw e;
  }
}

/**
 * A pulled body, straight into the part buffers. A full buffer is sent once the body has more:
 * the last part is never empty, and a body of at most one part is one PutObject.
 */
async function fromPull(parts: Parts, body: PullBody, opts: StreamUploadOptions): Promise<void> {
  const read = async (into: Buffer): Promise<number> => {
    try {
      return await body.read(into);
    } catch (e) {
      throw new BodyError(e);
    }
  };
  /** Fills `buf` from the body: how much, and whether the body ended. */
  const fill = async (buf: Buffer): Promise<{ used: number; ended: boolean }> => {
    let used = 0;
    while (used < buf.length) {
      parts.check();
      const n = await read(buf.subarray(used));
      if (n === 0) return { used, ended: true };
      used += n;
    }
    return { used, ended: false };
  };
  // The first buffer: of the body's own size (and one byte more, to see it end) when it is small.
  const hint = opts.sizeHint;
  const first = hint !== undefined && hint < opts.partSize ? Buffer.allocUnsafe(hint + 1) : parts.take();
  let f = await fill(first);
  if (f.ended) return parts.putWhole(first.subarray(0, f.used));
  let buf = first;
  for (;;) {
    // The next buffer is taken, and fills, once this part is on its way: queueSize + 1 buffers.
    await parts.send(buf, f.used);
    buf = parts.take();
    f = await fill(buf);
    if (f.ended) break;
  }
  if (f.used > 0) await parts.send(buf, f.used);
  await parts.complete();
}
