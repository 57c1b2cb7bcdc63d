/**
 * A local backup file as the body of its offsite copy, pulled by the target ({@link PullBody}):
 * read in 1 MiB blocks into one buffer that is reused, checked against the size and SHA-256 the
 * ledger recorded for it, encrypted to the configured recipients (age, one 64 KiB chunk at a time,
 * written straight into the target's part buffer), and hashed as stored.
 *
 * Guarantees: the block that ends the file is handed out only after the whole file was found to
 * match its record, so a damaged or changed file never completes as a copy (the read rejects with
 * `checksum-mismatch`); the stored bytes are an age v1 file that `age -d` decrypts, of exactly
 * {@link encryptedSize} bytes. Memory: the block and one sealed chunk, whatever the file's size.
 *
 * Why not a chain of streams (file, hash, encrypt, hash): each stage allocated a buffer per chunk
 * that the upload's backpressure kept alive past the young generation; in a 1 GiB upload that was
 * about a second of garbage collection and two more copies (bench/RESULTS.md, "offsite upload").
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { AGE_CHUNK_SIZE, AGE_TAG_SIZE, type AgeSealer, createSealer } from '../crypto/age.js';
import { HbError } from '../domain/errors.js';
import type { PullBody } from './target.js';

/** Bytes read from the file at a time: a whole number of age chunks. */
const BLOCK = 16 * AGE_CHUNK_SIZE;

export class FileCopyBody implements PullBody {
  private readonly block = Buffer.allocUnsafe(BLOCK);
  private blockLen = 0;
  private blockPos = 0;
  private readBytes = 0;
  private eof = false;
  private readonly plainHash = createHash('sha256');
  private readonly storedHash = createHash('sha256');
  private readonly sealer: AgeSealer | null;
  /** The header, then whatever of a sealed chunk did not fit in the last `into`. */
  private pending: Buffer | null;
  private readonly stage: Buffer | null;
  private sealedLast = false;
  private closed = false;
  /** The file, opened by the first read. */
  private opening: Promise<FileHandle> | null = null;
  /** The first failure: every read after it fails with it too (nothing unchecked goes out). */
  private failed: unknown = null;
  /** Bytes handed out so far. */
  bytes = 0;

  /**
   * @param recipients `age1…` keys to encrypt to; null or empty: the file's own bytes.
   * @throws HbError `config-invalid` for a recipient that is not a usable key.
   */
  constructor(
    private readonly file: string,
    private readonly expect: { sha256: string; bytes: number },
    recipients: readonly string[] | null,
  ) {
    this.sealer = recipients && recipients.length > 0 ? createSealer(recipients) : null;
    this.pending = this.sealer ? this.sealer.header : null;
    this.stage = this.sealer ? Buffer.allocUnsafe(AGE_CHUNK_SIZE + AGE_TAG_SIZE) : null;
  }

  /** SHA-256 (hex) of the bytes handed out: the stored object's, once read to the end. */
  digest(): string {
    return this.storedHash.copy().digest('hex');
  }

  /** Closes the file, also one still being opened (safe to call twice; a read after it rejects). */
  async close(): Promise<void> {
    this.closed = true;
    const fh = await this.opening?.catch(() => null);
    await fh?.close().catch(() => {});
  }

  async read(into: Buffer): Promise<number> {
    if (this.failed) throw this.failed;
    if (this.closed) throw new Error(`the copy body of ${this.file} was closed`);
    try {
      const fh = await (this.opening ??= open(this.file, 'r'));
      if (this.closed) throw new Error(`the copy body of ${this.file} was closed`);
      return await this.fill(into, fh);
    } catch (e) {
      this.failed ??= e;
      throw e;
    }
  }

  private async fill(into: Buffer, fh: FileHandle): Promise<number> {
    let w = 0;
    while (w < into.length) {
      if (this.pending) {
        const n = this.pending.copy(into, w);
        w += n;
        this.pending = n < this.pending.length ? this.pending.subarray(n) : null;
        continue;
      }
      if (this.blockPos === this.blockLen && !this.eof) await this.refill(fh);
      const left = this.blockLen - this.blockPos;
      if (!this.sealer) {
        if (left === 0) break;
        const n = this.block.copy(into, w, this.blockPos, this.blockLen);
        w += n;
        this.blockPos += n;
        continue;
      }
      if (this.sealedLast) break;
      // A chunk is the last only at the end of the file, which refill() has checked by then.
      const size = Math.min(AGE_CHUNK_SIZE, left);
      const last = this.eof && size === left;
      const plain = this.block.subarray(this.blockPos, this.blockPos + size);
      if (into.length - w >= size + AGE_TAG_SIZE) {
        w += this.sealer.seal(plain, last, into, w);
      } else {
        const n = this.sealer.seal(plain, last, this.stage!, 0);
        this.pending = this.stage!.subarray(0, n);
      }
      this.blockPos += size;
      this.sealedLast = last;
    }
    if (w > 0) this.storedHash.update(into.subarray(0, w));
    this.bytes += w;
    return w;
  }

  /** Reads the next block; at the end of the file, checks it whole against its record first. */
  private async refill(fh: FileHandle): Promise<void> {
    let n = 0;
    while (n < BLOCK) {
      const r = await fh.read(this.block, n, BLOCK - n, null);
      if (r.bytesRead === 0) {
        this.eof = true;
        break;
      }
      n += r.bytesRead;
    }
    this.readBytes += n;
    if (n > 0) this.plainHash.update(this.block.subarray(0, n));
    if (this.readBytes > this.expect.bytes) throw this.mismatch();
    // The record's size reached: make sure the file ends here before any of this block goes out.
    if (!this.eof && this.readBytes === this.expect.bytes) {
      const probe = await fh.read(Buffer.alloc(1), 0, 1, null);
      if (probe.bytesRead > 0) {
        this.readBytes += probe.bytesRead;
        throw this.mismatch();
      }
      this.eof = true;
    }
    if (this.eof && (this.readBytes !== this.expect.bytes || this.plainHash.copy().digest('hex') !== this.expect.sha256)) throw this.mismatch();
    // Only a block that passed the checks is handed out.
    this.blockLen = n;
    this.blockPos = 0;
  }

  private mismatch(): HbError {
    return new HbError(
      'checksum-mismatch',
      `${this.file} no longer matches its recorded SHA-256 (${this.readBytes}${this.eof ? '' : '+'} bytes read); it was not kept offsite`,
      'the local file is damaged: run `hybrid-backup verify all`; take a new backup',
    );
  }
}
