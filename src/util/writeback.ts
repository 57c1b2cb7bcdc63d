/**
 * Early writeback of a file being written, and its final fsync: a background fdatasync every so
 * many bytes, so the disk writes while the writer goes on and the final fsync has little left to
 * do. Used by the dump's file sink (and when pg_dump writes the file itself) and by the Storage
 * file store.
 *
 * A writeback error from a background fdatasync is kept: Linux reports such an error once per
 * descriptor, so the final fsync could succeed after it, and it must fail the file instead.
 */
import fs from 'node:fs';

export class Writeback {
  private syncedAt = 0;
  /** The background fdatasync in flight, if any. */
  private syncing: Promise<void> | null = null;
  /** The first writeback error, if any. */
  error: Error | null = null;
  /** The final fsync, once asked for. */
  private final: Promise<void> | null = null;
  /** The descriptor is about to be closed: no background sync starts any more. */
  private closing = false;

  constructor(
    private readonly fd: number,
    /** Bytes between two background syncs. */
    private readonly every = 64 * 1024 * 1024,
  ) {}

  /** The file now holds `bytes`: every `every` bytes more, a background fdatasync starts (none once the file is being closed). */
  wrote(bytes: number): void {
    if (this.closing || bytes - this.syncedAt < this.every || this.syncing) return;
    this.syncedAt = bytes;
    this.syncing = new Promise<void>((resolve) =>
      fs.fdatasync(this.fd, (e) => {
        if (e) this.error ??= e;
        resolve();
      }),
    ).then(() => {
      this.syncing = null;
    });
  }

  /**
   * Resolves when no sync is in flight, background or final, and starts no more: call it before
   * closing the descriptor (never close it under a sync: its number could be reused meanwhile).
   */
  async settled(): Promise<void> {
    this.closing = true;
    await this.syncing;
    await this.final?.catch(() => {});
  }

  /** fsync, after any background sync; rejects with the first writeback error. */
  sync(): Promise<void> {
    this.final = (async () => {
      await this.syncing;
      await new Promise<void>((resolve, reject) => fs.fsync(this.fd, (e) => (e ? reject(e) : resolve())));
      if (this.error) throw this.error;
    })();
    return this.final;
  }
}
