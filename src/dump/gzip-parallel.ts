/**
 * gzip on every core, the way pigz does it: the input is cut into fixed-size blocks and each block
 * is compressed on its own, as a complete gzip member, by zlib's asynchronous API — which runs in
 * libuv's thread pool, so several blocks compress at once on several cores while the main thread
 * goes on reading, counting and hashing. The members are written in input order, one after the
 * other.
 *
 * Concatenated members are one valid gzip file (RFC 1952, section 2.2): `gunzip`, `gunzip -c | psql`,
 * `zcat`, Python's gzip and Node's createGunzip all read them as one stream. What it costs is that
 * each block starts without the previous block's 32 KiB window: with 1 MiB blocks the file grows by
 * a fraction of a percent (measured in bench/RESULTS.md). pigz keeps one member and primes each
 * block with the previous block's window instead, which needs the CRC-32s of the blocks combined
 * (crc32_combine): node:zlib offers neither that nor a way to read a block's CRC back, so the
 * independent members are the simpler and checkable choice.
 *
 * Memory is bounded: at most `inFlight` blocks are being compressed or waiting for their turn to be
 * written, and no new block starts while the reader is behind (a push was refused, until the stream
 * asks for more); meanwhile the stream takes no more input, so backpressure reaches the writer (and
 * pg_dump's pipe). The input blocks are reused, not reallocated.
 */
import os from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { gzip, type ZlibOptions } from 'node:zlib';

/** Compresses one block into one complete member, asynchronously; must not keep `input` past `cb`. */
export type BlockCompressor = (input: Buffer, opts: ZlibOptions, cb: (err: Error | null, out: Buffer) => void) => void;

export interface ParallelGzipOptions {
  /** zlib level, 1-9. */
  level: number;
  /** Uncompressed bytes per member (default 1 MiB). */
  blockSize?: number;
  /**
   * Blocks compressing or awaiting their turn at most (default two per core, at least 2): enough
   * to keep every core busy while the finished ones wait to be written in order. libuv's pool has
   * 4 threads unless UV_THREADPOOL_SIZE says otherwise; blocks beyond that wait for a thread.
   */
  inFlight?: number;
  /** What compresses a block (default zlib's asynchronous `gzip`); tests slow it down or fail it. */
  compress?: BlockCompressor;
}

const DEFAULT_BLOCK = 1 << 20;

interface Slot {
  /** The compressed member, once done. */
  out: Buffer | null;
  /** The input block, returned to the free list once its member is done. */
  block: Buffer;
}

export class ParallelGzip extends Transform {
  private readonly blockSize: number;
  private readonly inFlight: number;
  private readonly zopts: ZlibOptions;
  private readonly compress: BlockCompressor;
  /** The block being filled, and how much of it is. */
  private block: Buffer | null = null;
  private filled = 0;
  /** Blocks in input order: compressing, or compressed and not yet pushed. */
  private readonly queue: Slot[] = [];
  /** Input blocks no longer in use. */
  private readonly free: Buffer[] = [];
  /** A write waiting for a free place in the queue; the flush waiting for the queue to empty. */
  private waiting: (() => void) | null = null;
  private failed = false;
  /** The last push was refused (the reader is behind): no new block until it asks (`_read`). */
  private blocked = false;
  /** Whether any member was written: an empty input still makes one (empty) member, a valid file. */
  private wrote = false;

  constructor(opts: ParallelGzipOptions) {
    super({ highWaterMark: 1 << 20 });
    this.blockSize = opts.blockSize ?? DEFAULT_BLOCK;
    this.inFlight = Math.max(2, opts.inFlight ?? 2 * os.availableParallelism());
    // Output grows in 64 KiB pieces instead of zlib's 16 KiB: fewer pieces to join per member.
    this.zopts = { level: opts.level, chunkSize: 64 * 1024 };
    this.compress = opts.compress ?? gzip;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let pos = 0;
    while (pos < chunk.length) {
      this.block ??= this.free.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
      const n = chunk.copy(this.block, this.filled, pos);
      this.filled += n;
      pos += n;
      if (this.filled === this.blockSize) this.dispatch();
    }
    this.whenRoom(cb);
  }

  override _flush(cb: TransformCallback): void {
    if (this.filled > 0 || !this.wrote) this.dispatch();
    // Called again on every finished member and every read until the queue is empty; then once.
    const done = () => {
      if (this.failed) return;
      if (this.queue.length > 0) {
        this.waiting = done;
        return;
      }
      this.waiting = null;
      cb();
    };
    done();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.failed = true;
    this.waiting = null;
    cb(err);
  }

  override _read(size: number): void {
    this.blocked = false;
    super._read(size);
    this.waiting?.();
  }

  /**
   * Room for another block: fewer than `inFlight` queued, and the reader not behind (Transform's
   * own check misses pushes made outside `_transform`, as these are). A refused push blocks until
   * the stream calls `_read` — which it does before taking what is buffered, so `readableLength`
   * itself must not be the test: the stream calls `_read` once and then waits for a push.
   */
  private room(): boolean {
    return this.queue.length < this.inFlight && !this.blocked;
  }

  /** Calls `cb` once there is {@link room} (at once when there is). */
  private whenRoom(cb: () => void): void {
    if (this.room()) return cb();
    this.waiting = () => {
      if (!this.room()) return;
      this.waiting = null;
      cb();
    };
  }

  /** Sends the current block to the thread pool. */
  private dispatch(): void {
    const block = this.block ?? Buffer.alloc(0);
    const slot: Slot = { out: null, block };
    this.queue.push(slot);
    this.wrote = true;
    const input = block.subarray(0, this.filled);
    this.block = null;
    this.filled = 0;
    this.compress(input, this.zopts, (err, out) => {
      if (this.failed) return;
      if (err) {
        this.failed = true;
        this.destroy(err);
        return;
      }
      slot.out = out;
      this.drainDone();
    });
  }

  /** Pushes the finished members at the head of the queue, in order, and wakes a waiting write. */
  private drainDone(): void {
    while (this.queue.length > 0 && this.queue[0]!.out) {
      const slot = this.queue.shift()!;
      if (!this.push(slot.out)) this.blocked = true;
      if (slot.block.length === this.blockSize) this.free.push(slot.block);
    }
    this.waiting?.();
  }
}
