/** Streams that hash what passes: into the store (capture), and out of it (restore). */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { HbError } from '../domain/errors.js';

const CHUNK = 1 << 20;

/**
 * Hashes and counts what passes, reporting the running total. Given the size the stream must
 * have, it fails as soon as more arrives, so a wrong body is never written whole.
 */
export class DigestStream extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');

  constructor(
    private readonly opts: { expectedBytes?: number; what?: string; onBytes?: (delta: number) => void } = {},
  ) {
    super({ highWaterMark: CHUNK });
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    const { expectedBytes } = this.opts;
    if (expectedBytes !== undefined && this.bytes > expectedBytes) {
      return cb(new HbError('checksum-mismatch', `${this.opts.what ?? 'the stream'} has more than the ${expectedBytes} bytes expected`));
    }
    this.hash.update(chunk);
    this.opts.onBytes?.(chunk.length);
    cb(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Passes a file's bytes on only if they are what the manifest says: it hashes them and holds the
 * last chunk back until the end, releasing it when size and SHA-256 match and failing the stream
 * otherwise. An upload fed through it therefore never completes with damaged bytes: the request
 * body ends short, so the server stores nothing.
 */
export class VerifiedStream extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private held: Buffer | null = null;

  constructor(
    private readonly expect: { sha256: string; bytes: number; what: string },
    private readonly onBytes?: (delta: number) => void,
  ) {
    super({ highWaterMark: CHUNK });
  }

  private mismatch(sha: string | null): HbError {
    const { what, bytes, sha256 } = this.expect;
    const found = sha ? `${this.bytes} bytes, sha256 ${sha}` : `more than ${bytes} bytes`;
    return new HbError('checksum-mismatch', `${what} does not match the manifest (${found}; expected ${bytes} bytes, sha256 ${sha256})`, 'the store file is damaged: run hybrid-backup verify; the object was not uploaded');
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.expect.bytes) return cb(this.mismatch(null));
    this.hash.update(chunk);
    const out = this.held;
    this.held = chunk;
    if (out) this.onBytes?.(out.length);
    cb(null, out ?? undefined);
  }

  override _flush(cb: TransformCallback): void {
    const sha = this.hash.digest('hex');
    if (this.bytes !== this.expect.bytes || sha !== this.expect.sha256) return cb(this.mismatch(sha));
    if (this.held) {
      this.onBytes?.(this.held.length);
      this.push(this.held);
    }
    this.held = null;
    cb();
  }
}
