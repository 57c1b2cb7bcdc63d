/**
 * Reads a file while another process appends to it (`tail -f`, in-process): what pg_dump writes
 * straight into the backup file is read back a few milliseconds later, in large chunks, for the COPY
 * scanner and the SHA-256 — so the hash is taken over the very bytes stored, and the data never
 * crosses a pipe.
 *
 * Linux makes this safe: a read returns only bytes below the file's size, and the size grows only
 * once a write's bytes are in the page cache. When the reader has caught up it waits `pollMs` and
 * looks again, doubling the wait up to `maxPollMs` while the file does not grow (a pg_dump waiting
 * on a lock costs ~20 wake-ups a second, not hundreds): Node has no way to sleep until a file grows
 * (fs.watch would wake on every one of pg_dump's 4 KiB writes), and the lag costs nothing, as the
 * writer's end is told with {@link FileFollower.finish}, after which the rest is read without
 * waiting. It cannot spin (every empty read before the end is followed by a wait) nor hang (a read
 * at the end told by `finish` that finds the file shorter rejects {@link FileFollower.done}).
 *
 * Reads are asynchronous (the thread pool), two buffers in turn: the next chunk is read while the
 * current one is consumed. The consumer must be done with a chunk when `onChunk` returns (the buffer
 * is reused).
 */
import fs from 'node:fs';

export interface FollowOptions {
  /** Bytes per read (default 1 MiB). */
  chunkSize?: number;
  /** How long to wait when caught up with the writer (default 5 ms)… */
  pollMs?: number;
  /** …doubling while the file does not grow, up to this (default 50 ms). */
  maxPollMs?: number;
}

export class FileFollower {
  /** Bytes read (and consumed) so far. */
  position = 0;
  /** Resolves when reading stopped: the end was reached, or {@link stop}. Rejects with a read error. */
  readonly done: Promise<void>;
  /** The file's final size, once the writer is done. */
  private end: number | null = null;
  private stopped = false;
  /** Ends the current wait early. */
  private wake: (() => void) | null = null;
  private readonly bufs: [Buffer, Buffer];
  private readonly pollMs: number;
  private readonly maxPollMs: number;

  constructor(
    private readonly fd: number,
    private readonly onChunk: (chunk: Buffer) => void,
    opts: FollowOptions = {},
  ) {
    const size = opts.chunkSize ?? 1 << 20;
    this.bufs = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
    this.pollMs = opts.pollMs ?? 5;
    this.maxPollMs = Math.max(this.pollMs, opts.maxPollMs ?? 50);
    this.done = this.loop();
  }

  /** The writer is done and the file holds `size` bytes: read up to there, then stop. */
  finish(size: number): void {
    this.end = size;
    this.wake?.();
  }

  /** Stop reading (a failure, an abort); {@link done} resolves once no read is in flight. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  /** Reads at the current position; `final`: the read was asked knowing the writer's end. */
  private read(buf: Buffer): Promise<{ n: number; final: boolean }> {
    const final = this.end !== null;
    const len = final ? Math.min(buf.length, this.end! - this.position) : buf.length;
    if (len <= 0) return Promise.resolve({ n: 0, final });
    return new Promise((resolve, reject) => fs.read(this.fd, buf, 0, len, this.position, (e, n) => (e ? reject(e) : resolve({ n, final }))));
  }

  private async loop(): Promise<void> {
    let which = 0;
    let wait = this.pollMs;
    let next = this.read(this.bufs[0]);
    try {
      while (!this.stopped) {
        const { n, final } = await next;
        if (this.stopped) break;
        if (n > 0) {
          const chunk = this.bufs[which]!.subarray(0, n);
          this.position += n;
          wait = this.pollMs;
          which ^= 1;
          // read ahead into the other buffer while this one is consumed
          next = this.read(this.bufs[which]!);
          this.onChunk(chunk);
          continue;
        }
        if (this.end !== null && this.position >= this.end) break;
        if (final) throw new Error(`the file ends after ${this.position} bytes, but ${this.end} were written`);
        // caught up with the writer (when it has just finished, read again at once)
        if (this.end === null) {
          await this.idle(wait);
          wait = Math.min(2 * wait, this.maxPollMs);
        }
        next = this.read(this.bufs[which]!);
      }
    } finally {
      // never leave a read writing into a buffer (or using the descriptor) after `done`
      await next.catch(() => null);
    }
  }

  /** Waits `ms`, or less when told the end or to stop. */
  private idle(ms: number): Promise<void> {
    if (this.stopped || this.end !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => ((this.wake = null), resolve()), ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
}
