/**
 * SHA-256 of files, computed on a worker thread: the file is read back (from the page cache, as
 * a rule: it was just written) and hashed beside the event loop instead of on it. A Storage
 * capture downloads several large files at once on one thread; hashing them there was a third of
 * that thread's work (bench/RESULTS.md, "storage capture").
 *
 * The worker starts at the first request and ends once it has been idle for a few seconds, so an
 * idle service holds no thread for it; it never keeps the process alive. Its code is a string
 * (node:fs and node:crypto only), so it runs the same from the compiled modules, the bundled CLI
 * and the tests' sources.
 */
import { Worker } from 'node:worker_threads';

const WORKER = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const buf = Buffer.allocUnsafe(1 << 20);
parentPort.on('message', ({ id, file }) => {
  let fd = null;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const h = createHash('sha256');
    let bytes = 0;
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) {
      h.update(buf.subarray(0, n));
      bytes += n;
    }
    parentPort.postMessage({ id, sha256: h.digest('hex'), bytes });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: e.message, code: e.code } });
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
});
`;

/** How long an idle worker waits for more work before it ends. */
const IDLE_MS = 5_000;

export class FileHasher {
  private worker: Worker | null = null;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: { sha256: string; bytes: number }) => void; reject: (e: Error) => void }>();
  private idle: NodeJS.Timeout | null = null;

  /**
   * The SHA-256 (hex) and size of `file` as it is on disk now.
   * @throws the read's error (ENOENT, EIO…, with its `code`), or an Error when the worker failed
   */
  hash(file: string): Promise<{ sha256: string; bytes: number }> {
    const w = this.start();
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, file });
    });
  }

  /** Ends the worker now (pending hashes reject); the next hash starts another. */
  async close(): Promise<void> {
    const w = this.worker;
    this.stop(new Error('the file hasher was closed'));
    await w?.terminate();
  }

  private start(): Worker {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    if (this.worker) {
      this.worker.ref();
      return this.worker;
    }
    // No flags of this process: under --input-type=module the code would be read as an ES module.
    const w = new Worker(WORKER, { eval: true, execArgv: [] });
    this.worker = w;
    w.on('message', (m: { id: number; sha256?: string; bytes?: number; error?: { message: string; code?: string } }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(Object.assign(new Error(m.error.message), m.error.code ? { code: m.error.code } : {}));
      else p?.resolve({ sha256: m.sha256!, bytes: m.bytes! });
      if (this.pending.size === 0 && this.worker === w) this.rest(w);
    });
    w.on('error', (e) => this.worker === w && this.stop(e));
    w.on('exit', () => this.worker === w && this.stop(new Error('the file hasher stopped')));
    return w;
  }

  /** Nothing to do: let the process exit, and end the worker unless work comes soon. */
  private rest(w: Worker): void {
    w.unref();
    this.idle = setTimeout(() => {
      if (this.worker !== w || this.pending.size > 0) return;
      this.worker = null;
      void w.terminate();
    }, IDLE_MS);
    this.idle.unref();
  }

  private stop(e: Error): void {
    if (this.idle) clearTimeout(this.idle);
    this.idle = null;
    this.worker = null;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
