/**
 * The content-addressed store of Storage files: `BACKUP_DIR/storage/objects/ab/abcdef…`, each
 * file named by the SHA-256 of its bytes, so an object kept by many backups (or under many names)
 * is stored once, and a file's name is its own checksum.
 *
 * Writes are atomic, like every file of the product: bytes go to a temporary name
 * (`.put-<random>.<pid>.<time>.tmp`, the pattern removeStaleTempFiles knows) while they are
 * hashed, are fsynced, then renamed to their final name — never a half-written file under a
 * final name. The temporary file is in `objects/`, the shards' parent, not in the shard: the
 * shard is known only once the last byte is hashed, and the same filesystem is what makes the
 * rename atomic. The directory fsync that makes the rename durable is batched: {@link
 * StorageStore.sync} flushes every directory changed since the last call, and a manifest naming a
 * file is written only after it (captureStorage calls it before returning). Files are 0600,
 * directories 0700.
 *
 * Retention ({@link StorageStore.removeUnreferenced}) must not run while a capture is under way
 * (it would remove the files the capture is adding before a manifest names them): run both
 * under the backup lock.
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { constants, createReadStream, type Dirent, openSync, type ReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HbError } from '../domain/errors.js';
import { ensurePrivateDir, fsyncDir, removeStaleTempFiles } from '../util/fs.js';
import { FileHasher } from '../util/file-hasher.js';
import { Writeback } from '../util/writeback.js';
import { abortedError, STORAGE_CODES, writeError } from './errors.js';
import { DigestStream, VerifiedStream } from './streams.js';

const SHA256 = /^[0-9a-f]{64}$/;
const SHARD = /^[0-9a-f]{2}$/;
const READ_CHUNK = 1 << 20;
/** Bytes a file being stored is written between two background fdatasyncs. */
const EARLY_SYNC_EVERY = 8 << 20;
/** Bytes (or buffers, well under the system's IOV_MAX) gathered into one write. */
const WRITE_BATCH = 1 << 20;
const MAX_IOV = 256;
/** A file larger than this is hashed from disk on a worker thread, not as it comes. */
const READ_BACK_FROM = 4 << 20;

/** A sink that drops what it is given (re-hashing reads files only for their digest). */
const discard = () => new Writable({ write: (_c, _e, cb) => cb() });

/**
 * Hashes, counts and writes into an open file, and fsyncs it at the end (before 'finish').
 * Chunks go out together, in writes of about {@link WRITE_BATCH} bytes (a download's 64 KiB
 * chunks one by one were 16,384 writes a GiB, each a trip through the thread pool). Given the
 * size the bytes must have, it fails as soon as more arrive, so a wrong body is never written
 * whole.
 *
 * A file is hashed as it comes while it is small; past {@link READ_BACK_FROM} bytes it is hashed
 * from disk after the fsync instead, on a worker thread ({@link FileHasher}): {@link digest} is
 * then null.
 *
 * Not fh.createWriteStream: a stream made with autoClose false keeps a reference on the handle
 * that makes its close() wait forever, and with autoClose true the handle is gone before it can
 * be fsynced.
 */
class HashingFileSink extends Writable {
  bytes = 0;
  /** The disk's error, when writing failed (a source's error is not one). */
  failed: unknown = null;
  /** Null once the file is too large to be hashed here. */
  private hash: Hash | null = createHash('sha256');
  private batch: Buffer[] = [];
  private batchBytes = 0;

  /** A background fdatasync every 8 MiB: the disk writes while the body still downloads. */
  readonly writeback: Writeback;

  constructor(
    private readonly fh: fs.FileHandle,
    private readonly opts: { expectedBytes?: number | undefined; what: string; onBytes?: ((delta: number) => void) | undefined },
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.writeback = new Writeback(fh.fd, EARLY_SYNC_EVERY);
  }

  private take(chunk: Buffer): Error | null {
    this.bytes += chunk.length;
    const { expectedBytes } = this.opts;
    if (expectedBytes !== undefined && this.bytes > expectedBytes) {
      return new HbError('checksum-mismatch', `${this.opts.what} has more than the ${expectedBytes} bytes expected; it was not stored`);
    }
    if (this.hash) {
      if (this.bytes > READ_BACK_FROM) this.hash = null;
      else this.hash.update(chunk);
    }
    this.opts.onBytes?.(chunk.length);
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    return null;
  }

  override _write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error | null) => void): void {
    const bad = this.take(chunk);
    if (bad) return cb(bad);
    this.flush(cb, false);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    for (const c of chunks) {
      const bad = this.take(c.chunk);
      if (bad) return cb(bad);
    }
    this.flush(cb, false);
  }

  /** Writes the batch once it is large enough (or, at the end, whatever it holds). */
  private flush(cb: (e?: Error | null) => void, all: boolean): void {
    if (this.batch.length === 0 || (!all && this.batchBytes < WRITE_BATCH && this.batch.length < MAX_IOV)) return cb();
    const bufs = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.writeAll(bufs).then(
      () => {
        // A background sync's earlier failure fails the file.
        if (this.writeback.error) return cb((this.failed = this.writeback.error) as Error);
        // None just before the final fsync (nor, by Writeback's own rule, once it is settling).
        if (!all) this.writeback.wrote(this.bytes);
        cb();
      },
      (e: Error) => cb((this.failed = e) as Error),
    );
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.flush((e) => {
      if (e) return cb(e);
      this.writeback.sync().then(() => cb(), (f: Error) => cb((this.failed = f) as Error));
    }, true);
  }

  /** The SHA-256 of the bytes, when the file was small enough to be hashed as it came; else null. */
  digest(): string | null {
    return this.hash ? this.hash.digest('hex') : null;
  }

  private async writeAll(bufs: Buffer[]): Promise<void> {
    let rest = bufs;
    while (rest.length > 0) {
      let { bytesWritten } = await this.fh.writev(rest);
      // A short write: drop what went out, keep the rest.
      const left: Buffer[] = [];
      for (const b of rest) {
        if (bytesWritten >= b.length) bytesWritten -= b.length;
        else {
          left.push(bytesWritten > 0 ? b.subarray(bytesWritten) : b);
          bytesWritten = 0;
        }
      }
      rest = left;
    }
  }
}

export interface PutOptions {
  /** The SHA-256 the bytes must have: otherwise nothing is stored (`checksum-mismatch`). */
  expectedSha256?: string;
  /** The size the bytes must have: otherwise nothing is stored (`checksum-mismatch`). */
  expectedBytes?: number;
  /** For messages: what the bytes are (`bucket/path`). */
  what?: string;
  signal?: AbortSignal;
  /** Called with each chunk's size as it is written. */
  onBytes?: (delta: number) => void;
}

export interface PutResult {
  sha256: string;
  bytes: number;
  /** False when the store held the file already (the new copy was dropped). */
  added: boolean;
}

export interface VerifyResult {
  checked: number;
  bytes: number;
  /** Files asked for that are not in the store. */
  missing: string[];
  /** Files whose bytes no longer hash to their name. */
  corrupt: Array<{ sha256: string; actual: string; bytes: number }>;
}

export class StorageStore {
  /** Shard directories created by this instance (so each is made once). */
  private readonly shards = new Set<string>();
  /** Directories changed since the last {@link sync}. */
  private readonly dirty = new Set<string>();

  /** Hashes large files beside the event loop (its thread ends when idle). */
  private readonly hasher = new FileHasher();

  private constructor(
    /** `BACKUP_DIR/storage`. */
    readonly root: string,
  ) {}

  /** The store under `backupDir`, creating its directories (0700) when missing. */
  static async open(backupDir: string): Promise<StorageStore> {
    const store = new StorageStore(path.join(backupDir, 'storage'));
    await ensurePrivateDir(store.root, { noLink: true });
    await ensurePrivateDir(store.objectsDir, { noLink: true });
    return store;
  }

  get objectsDir(): string {
    return path.join(this.root, 'objects');
  }

  /** Where the file with this SHA-256 is (or would be). */
  pathOf(sha256: string): string {
    if (!SHA256.test(sha256)) throw new TypeError(`not a SHA-256: ${JSON.stringify(sha256)}`);
    return path.join(this.objectsDir, sha256.slice(0, 2), sha256);
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.size(sha256)) !== null;
  }

  /** The stored file's size, or null when the store does not hold it (a link is not a file). */
  async size(sha256: string): Promise<number | null> {
    try {
      const st = await fs.lstat(this.pathOf(sha256));
      return st.isFile() ? st.size : null;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * Marks a held file as just used (its mtime), so a concurrent {@link removeUnreferenced} with a
   * grace time keeps it until a manifest names it. False when the store does not hold it.
   */
  async touch(sha256: string): Promise<boolean> {
    const file = this.pathOf(sha256);
    try {
      const st = await fs.lstat(file);
      if (!st.isFile()) return false;
      const now = new Date();
      await fs.utimes(file, now, now);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * The file's bytes as a stream made now (synchronously, for a request body factory), checked on
   * the way against the size and SHA-256 given: a damaged file fails the stream before its last
   * chunk (see VerifiedStream), so an upload fed by it never completes.
   */
  verifiedReader(sha256: string, bytes: number, what: string, onBytes?: (delta: number) => void): Readable {
    const check = new VerifiedStream({ sha256, bytes, what }, onBytes);
    let fd: number;
    try {
      fd = openSync(this.pathOf(sha256), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      const gone = (e as NodeJS.ErrnoException).code === 'ENOENT';
      process.nextTick(() => check.destroy(gone ? new HbError('file-missing', `the storage file ${sha256} is not in ${this.objectsDir}`) : (e as Error)));
      return check;
    }
    const read = createReadStream('', { fd, highWaterMark: READ_CHUNK });
    pipeline(read, check).catch((e: unknown) => check.destroy(e as Error));
    return check;
  }

  /** The file's bytes, streamed. @throws HbError `file-missing` when the store does not hold it */
  async openRead(sha256: string): Promise<ReadStream> {
    const file = this.pathOf(sha256);
    try {
      const fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
      return fh.createReadStream({ highWaterMark: READ_CHUNK });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new HbError('file-missing', `the storage file ${sha256} is not in ${this.objectsDir}`, 'the store lost it (removed by hand?): take a new backup to capture it again');
      throw e;
    }
  }

  /**
   * Streams `body` into the store, hashing it as it is written, and returns its SHA-256. When the
   * store already holds that file the new copy is dropped. On any failure (a digest or size not
   * the expected one, the source failing, the signal) nothing is left behind.
   * @throws HbError `checksum-mismatch`, `aborted`, `disk-full`, or the source's error
   */
  async put(body: Readable | AsyncIterable<Uint8Array>, opts: PutOptions = {}): Promise<PutResult> {
    const what = opts.what ?? 'the file';
    const tmp = path.join(this.objectsDir, `.put-${randomBytes(6).toString('hex')}.${process.pid}.${Date.now()}.tmp`);
    try {
      const sink = await this.writeTemp(tmp, body, { expectedBytes: opts.expectedBytes, what, onBytes: opts.onBytes }, opts.signal);
      if (opts.expectedBytes !== undefined && sink.bytes !== opts.expectedBytes) {
        throw new HbError('checksum-mismatch', `${what} has ${sink.bytes} bytes, not the ${opts.expectedBytes} expected; it was not stored`);
      }
      const sha256 = sink.digest() ?? (await this.readBack(tmp, sink.bytes, opts.signal));
      if (opts.expectedSha256 !== undefined && sha256 !== opts.expectedSha256) {
        throw new HbError('checksum-mismatch', `${what} has sha256 ${sha256}, not the ${opts.expectedSha256} expected; it was not stored`);
      }
      const added = await this.commit(tmp, sha256);
      return { sha256, bytes: sink.bytes, added };
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => {});
      if (opts.signal?.aborted) throw abortedError(`storing ${what}`, opts.signal);
      throw e;
    }
  }

  /** The SHA-256 of a large file just written and fsynced, read back from disk on the hasher's thread. */
  private async readBack(tmp: string, bytes: number, signal: AbortSignal | undefined): Promise<string> {
    let r: { sha256: string; bytes: number };
    try {
      r = await this.hasher.hash(tmp);
    } catch (e) {
      throw writeError(tmp, e);
    }
    if (signal?.aborted) throw signal.reason;
    if (r.bytes !== bytes) throw new HbError(STORAGE_CODES.writeFailed, `${tmp} holds ${r.bytes} bytes after ${bytes} were written and synced`, 'check the disk and the file system of BACKUP_DIR');
    return r.sha256;
  }

  /** Writes the body into `tmp` (created new, 0600, never through a link), hashing it, and fsyncs it. */
  private async writeTemp(tmp: string, body: Readable | AsyncIterable<Uint8Array>, o: ConstructorParameters<typeof HashingFileSink>[1], signal: AbortSignal | undefined): Promise<HashingFileSink> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      throw writeError(tmp, e);
    }
    let sink: HashingFileSink | undefined;
    try {
      sink = new HashingFileSink(fh, o);
      // A write error is the disk's; a read error is the source's, passed on as it is.
      try {
        await pipeline(body, sink, signal ? { signal } : {});
      } catch (e) {
        throw sink.failed ? writeError(tmp, sink.failed) : e;
      }
      return sink;
    } finally {
      // Never closed under a sync, background or final (its descriptor could be reused meanwhile).
      await sink?.writeback.settled();
      await fh.close().catch(() => {});
    }
  }

  /** Moves a complete temporary file to its final name; false when the store held it already. */
  private async commit(tmp: string, sha256: string): Promise<boolean> {
    const final = this.pathOf(sha256);
    if (await this.touch(sha256)) {
      await fs.rm(tmp, { force: true });
      return false;
    }
    const shard = path.dirname(final);
    if (!this.shards.has(shard)) {
      await ensurePrivateDir(shard, { noLink: true });
      this.shards.add(shard);
      this.dirty.add(this.objectsDir);
    }
    try {
      await fs.rename(tmp, final);
    } catch (e) {
      throw writeError(final, e);
    }
    this.dirty.add(shard);
    return true;
  }

  /** Makes every rename since the last call durable (fsyncs the directories they changed). */
  async sync(): Promise<void> {
    const dirs = [...this.dirty];
    this.dirty.clear();
    // Shards before their parent: a shard created by this instance is reachable only once both are.
    dirs.sort((a, b) => b.length - a.length);
    for (const d of dirs) await fsyncDir(d);
  }

  /**
   * Every SHA-256 the store holds, as a set: one readdir per shard (at most 256), not one stat per
   * file, so that checking 10,000 unchanged objects costs no more than listing the store.
   */
  async held(): Promise<Set<string>> {
    const out = new Set<string>();
    const shards = (await this.readdir(this.objectsDir)).filter((n) => SHARD.test(n));
    await Promise.all(
      shards.map(async (shard) => {
        let entries: Dirent[];
        try {
          entries = await fs.readdir(path.join(this.objectsDir, shard), { withFileTypes: true });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
          throw e;
        }
        for (const d of entries) if (d.isFile() && SHA256.test(d.name) && d.name.startsWith(shard)) out.add(d.name);
      }),
    );
    return out;
  }

  /** Every SHA-256 the store holds, shard by shard. */
  async *list(): AsyncGenerator<string> {
    for (const shard of (await this.readdir(this.objectsDir)).filter((n) => SHARD.test(n)).sort()) {
      for (const name of (await this.readdir(path.join(this.objectsDir, shard))).sort()) {
        if (SHA256.test(name) && name.startsWith(shard)) yield name;
      }
    }
  }

  private async readdir(dir: string): Promise<string[]> {
    try {
      return await fs.readdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw e;
    }
  }

  /**
   * Removes every file no manifest in `referenced` needs (retention), and returns what it
   * removed. `graceMs`: files changed within that time are kept even so, for a capture that
   * another process runs without the backup lock. `dryRun`: only says what it would remove.
   */
  async removeUnreferenced(referenced: ReadonlySet<string>, opts: { graceMs?: number; dryRun?: boolean; signal?: AbortSignal } = {}): Promise<{ removed: Array<{ sha256: string; bytes: number }>; bytes: number }> {
    const removed: Array<{ sha256: string; bytes: number }> = [];
    const now = Date.now();
    for await (const sha of this.list()) {
      if (opts.signal?.aborted) throw abortedError('removing unreferenced storage files', opts.signal);
      if (referenced.has(sha)) continue;
      const file = this.pathOf(sha);
      const st = await fs.lstat(file).catch(() => null);
      if (!st?.isFile()) continue;
      if (opts.graceMs && now - st.mtimeMs < opts.graceMs) continue;
      if (!opts.dryRun) {
        await fs.rm(file, { force: true });
        this.dirty.add(path.dirname(file));
      }
      removed.push({ sha256: sha, bytes: st.size });
    }
    await this.sync();
    return { removed, bytes: removed.reduce((n, r) => n + r.bytes, 0) };
  }

  /**
   * Re-hashes files (all the store holds, or those given) and says which are missing or no
   * longer hash to their name. `onBytes` reports progress.
   */
  async verify(shas?: Iterable<string>, opts: { signal?: AbortSignal; onBytes?: (delta: number) => void } = {}): Promise<VerifyResult> {
    const out: VerifyResult = { checked: 0, bytes: 0, missing: [], corrupt: [] };
    const todo = shas ? [...new Set(shas)] : this.list();
    for await (const sha of todo) {
      if (opts.signal?.aborted) throw abortedError('verifying the storage files', opts.signal);
      let read: ReadStream;
      try {
        read = await this.openRead(sha);
      } catch (e) {
        if (e instanceof HbError && e.code === 'file-missing') {
          out.missing.push(sha);
          continue;
        }
        throw e;
      }
      const digest = new DigestStream({ onBytes: opts.onBytes });
      await pipeline(read, digest, discard(), opts.signal ? { signal: opts.signal } : {});
      const actual = digest.digest();
      out.checked++;
      out.bytes += digest.bytes;
      if (actual !== sha) out.corrupt.push({ sha256: sha, actual, bytes: digest.bytes });
    }
    return out;
  }

  /**
   * Removes temporary files that writers which died mid-write (a crash, kill -9) left in the
   * store; a live writer's are never touched (see removeStaleTempFiles). Returns their names.
   */
  removeStaleTemp(isAlive: (pid: number) => boolean, quietMs?: number): Promise<string[]> {
    return removeStaleTempFiles(this.objectsDir, isAlive, quietMs);
  }
}
