/**
 * One interface for every offsite destination (like restic's backends): Supabase Storage today
 * ({@link ./supabase-target.ts}), any S3-compatible service ({@link ./s3-target.ts}) — AWS S3,
 * Cloudflare R2, Backblaze B2, MinIO, Ceph, Supabase's own S3 endpoint.
 *
 * The contract every implementation keeps, and test/offsite/target-suite.ts checks:
 *
 * - Keys are relative to the target's configured prefix and follow {@link checkKey}: what a
 *   caller puts under a key it lists, stats, gets and removes under the same key, whatever the
 *   service's own naming rules (a target that cannot store a character escapes it).
 * - Bodies are streamed both ways: a body is never held whole in memory, whatever its size.
 * - Failures are HbErrors: `offsite-failed` with what to do in the hint, `offsite-not-found` for
 *   a get of an absent key, `offsite-mismatch` when the stored size is not what was sent, and
 *   `aborted` when the caller's signal stopped the operation (its `cause` is the signal's reason,
 *   a `TimeoutError` for `AbortSignal.timeout`). No message or hint ever holds a credential.
 * - Nothing is kept between calls but the connection settings: no module-level state.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { HbError } from '../domain/errors.js';

export type OffsiteTargetType = 'supabase-storage' | 's3';

/** What {@link OffsiteTarget.stat} knows about a stored object. */
export interface OffsiteObjectInfo {
  /** The stored size in bytes. */
  bytes: number;
  /** The metadata given to {@link OffsiteTarget.put} (keys lowercase). */
  metadata: Record<string, string>;
  /** ISO 8601, or null when the service does not say. */
  lastModified: string | null;
}

/** One entry of {@link OffsiteTarget.list}. */
export interface OffsiteListEntry {
  key: string;
  bytes: number;
  lastModified: string | null;
}

export interface PutOptions {
  contentType: string;
  /**
   * A small map stored with the object and returned by stat (e.g. `sha256`, `bytes`). Keys are
   * lowercase letters, digits and hyphens; values printable ASCII; at most 1 KiB in all (S3's
   * user-metadata limit is 2 KiB including the `x-amz-meta-` names).
   */
  metadata: Record<string, string>;
  /**
   * The size the body will have, when known. The body must then deliver exactly this many
   * bytes, or the put fails with `offsite-mismatch` (and removes what it stored). It also sizes
   * multipart uploads, so bodies beyond a target's unknown-size limit must give it.
   */
  bytes?: number;
  /** Stops the upload: put rejects with `aborted` and no new object is left under the key. */
  signal?: AbortSignal;
  /** Called as bytes are read from the body, with the running total. */
  onBytes?: (n: number) => void;
}

/**
 * A body the target pulls into buffers of its own, instead of a stream: `read(into)` writes the
 * next bytes at the start of `into` and resolves with how many (at least one while there are more;
 * 0 at the end, and on every call after it). A failure rejects the read, and the put with it.
 * Where a target keeps part buffers (S3), the bytes go straight into them: no stream between,
 * no buffer allocated per chunk.
 */
export interface PullBody {
  read(into: Buffer): Promise<number>;
}

export function isPullBody(body: NodeJS.ReadableStream | PullBody): body is PullBody {
  return typeof (body as PullBody).read === 'function' && typeof (body as NodeJS.ReadableStream).pipe !== 'function';
}

/**
 * A stream as a pulled body: each read copies what it can of the stream's next chunk into the
 * buffer given (a chunk larger than the buffer goes in several reads), in order; 0 once the
 * stream has ended. The stream's error, or its destruction before the end, rejects the read.
 */
export function streamPullBody(body: NodeJS.ReadableStream): PullBody {
  const chunks = body[Symbol.asyncIterator]();
  let rest: Buffer = Buffer.alloc(0);
  let ended = false;
  return {
    read: async (into) => {
      while (rest.length === 0) {
        if (ended) return 0;
        const next = await chunks.next();
        if (next.done) {
          ended = true;
          return 0;
        }
        rest = next.value as Buffer;
      }
      const n = rest.copy(into);
      rest = rest.subarray(n);
      return n;
    },
  };
}

/** A pulled body as a stream, for targets that send streams (1 MiB buffers). */
export function pullBodyStream(body: PullBody): Readable {
  return Readable.from(
    (async function* () {
      for (;;) {
        const buf = Buffer.allocUnsafe(1 << 20);
        const n = await body.read(buf);
        if (n === 0) return;
        yield buf.subarray(0, n);
      }
    })(),
    { objectMode: false },
  );
}

export interface OffsiteTarget {
  /** The configured name, e.g. "supabase", "b2-eu": for messages, the ledger and the CLI. */
  readonly name: string;
  readonly type: OffsiteTargetType;

  /**
   * Where an object (or, without a key, the target's folder) is, for messages and the ledger,
   * never with a secret: `s3://bucket/prefix/key` for S3, `bucket/prefix/key` for Supabase
   * Storage (the form the ledger has always recorded).
   */
  location(key?: string): string;

  /**
   * Makes sure the bucket exists and is not public: creates it (private) where the target is
   * allowed to, and refuses (`offsite-failed`) a public one or a missing one it may not create.
   */
  ensureReady(signal?: AbortSignal): Promise<void>;

  /**
   * Streams `body` (a stream, or a {@link PullBody}) to `key`, replacing what was there, and
   * resolves with the stored size once the object is complete and visible (confirmed by reading
   * it back). Memory stays bounded whatever the size: large bodies go in parts (S3 multipart). On
   * any failure no new object is left under the key (an older one under the same key stays); a
   * stream body is destroyed, a pulled one is not read further. A pulled body's own failure is
   * the put's: an HbError as it is, another error as `offsite-failed` saying the body could not
   * be read.
   */
  put(key: string, body: NodeJS.ReadableStream | PullBody, opts: PutOptions): Promise<{ bytes: number }>;

  /** Size, metadata and time of the object, or null when there is none. */
  stat(key: string, signal?: AbortSignal): Promise<OffsiteObjectInfo | null>;

  /**
   * The object's bytes, streamed. Rejects with `offsite-not-found` when there is no such
   * object; a failure later, while reading, errors the stream.
   */
  get(key: string, signal?: AbortSignal): Promise<Readable>;

  /**
   * Every object whose key starts with `prefix` (a plain string prefix, not a folder: "a/b"
   * matches "a/b.txt" and "a/bc/d"), at any depth, in no guaranteed order, read page by page.
   */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<OffsiteListEntry>;

  /** Deletes the objects; absent keys are not an error, and an empty list does nothing. */
  remove(keys: string[], signal?: AbortSignal): Promise<void>;

  /** Releases idle connections (the target stays usable); optional. */
  close?(): void;
}

/**
 * The rules every key follows, so that it means the same on every target: non-empty, relative
 * (no leading "/"), no empty, "." or ".." segment, no trailing "/", no control character, and
 * at most 768 bytes of UTF-8 (S3 allows 1024 with the prefix). Any other character — spaces,
 * non-ASCII — is allowed. A key that breaks them is a bug in the caller: a TypeError.
 */
export function checkKey(key: string): void {
  const bad =
    key.length === 0 ||
    Buffer.byteLength(key, 'utf8') > 768 ||
    /[\u0000-\u001f\u007f]/.test(key) ||
    key.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new TypeError(`not a valid offsite key: ${JSON.stringify(key)}`);
}

/** Checks put's metadata (see {@link PutOptions.metadata}); a bad map is a bug in the caller. */
export function checkMetadata(metadata: Record<string, string>): void {
  let size = 0;
  for (const [k, v] of Object.entries(metadata)) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(k) || typeof v !== 'string' || !/^[\x20-\x7e]*$/.test(v)) {
      throw new TypeError(`not valid offsite metadata: ${JSON.stringify(k)}`);
    }
    size += k.length + v.length;
  }
  if (size > 1024) throw new TypeError('offsite metadata over 1 KiB');
}

/** `offsite-not-found`: a get of a key the target does not hold. */
export class OffsiteNotFoundError extends HbError {
  constructor(location: string, hint?: string) {
    super('offsite-not-found', `no offsite copy at ${location}`, hint);
  }
}

/** The HbError for an operation stopped by the caller's signal (its reason as the cause). */
export function abortedError(what: string, signal: AbortSignal): HbError {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  return new HbError('aborted', `${what} was stopped before it finished${timedOut ? ' (time limit)' : ''}`, undefined, { cause: reason });
}

/** Throws {@link abortedError} when the signal has fired. */
export function throwIfAborted(what: string, signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(what, signal);
}

/** `offsite-mismatch`: a body of `bytes` where `expected.bytes` were announced. */
function sizeMismatch(bytes: number, expected: { bytes: number; location: string }): HbError {
  const n = (x: number) => `${x} byte${x === 1 ? '' : 's'}`;
  return new HbError('offsite-mismatch', `the body for ${expected.location} has ${bytes < expected.bytes ? 'only' : 'more than'} ${n(bytes)}, not the ${n(expected.bytes)} announced`, 'the local file changed while it was read: it is retried at the next run');
}

/**
 * Counts what passes through, reporting the running total (the body of a put). Given the size
 * the body must have, it fails the stream (with `offsite-mismatch`) as soon as the body is
 * longer, or ends shorter — so a request announcing that length never waits for bytes that do
 * not come, and a wrong body is never completed as an object.
 */
export class CountingStream extends Transform {
  bytes = 0;
  constructor(
    private readonly onBytes?: (n: number) => void,
    private readonly expected?: { bytes: number; location: string },
  ) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected && this.bytes > this.expected.bytes) return cb(sizeMismatch(this.bytes, this.expected));
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    cb(this.expected && this.bytes !== this.expected.bytes ? sizeMismatch(this.bytes, this.expected) : null);
  }
}

/** {@link CountingStream} for a pulled body: the same counts, reports and `offsite-mismatch`. */
export class CountedPull implements PullBody {
  bytes = 0;
  constructor(
    private readonly body: PullBody,
    private readonly onBytes?: (n: number) => void,
    private readonly expected?: { bytes: number; location: string },
  ) {}
  async read(into: Buffer): Promise<number> {
    const n = await this.body.read(into);
    this.bytes += n;
    const e = this.expected;
    if (e && (this.bytes > e.bytes || (n === 0 && this.bytes !== e.bytes))) throw sizeMismatch(this.bytes, e);
    if (n > 0) this.onBytes?.(this.bytes);
    return n;
  }
}
