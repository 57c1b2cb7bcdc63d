/**
 * A first-in-first-out mutex for one process: waiters are served in the order they asked.
 * Used to run backups one at a time, in order, whatever started them.
 */
export interface AcquireOptions {
  signal?: AbortSignal;
  /** Give up after this long (ms). */
  timeoutMs?: number;
  /** Called once when the caller has to wait, with how many are ahead of it. */
  onWait?: (ahead: number) => void;
}

export class MutexTimeout extends Error {}
export class MutexAborted extends Error {}

interface Waiter {
  grant: () => void;
  fail: (e: Error) => void;
}

export class FifoMutex {
  private held = false;
  private readonly waiters: Waiter[] = [];

  /** Holders and waiters together. */
  get load(): number {
    return (this.held ? 1 : 0) + this.waiters.length;
  }

  /** Resolves with a release function once the caller holds the mutex. */
  acquire(opts: AcquireOptions = {}): Promise<() => void> {
    if (opts.signal?.aborted) return Promise.reject(new MutexAborted('aborted before it started'));
    if (!this.held) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    opts.onWait?.(this.load);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => done(new MutexAborted('aborted while waiting'));
      const done = (err?: Error) => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        if (err) reject(err);
      };
      const w: Waiter = {
        grant: () => {
          done();
          resolve(this.releaser());
        },
        fail: (e) => done(e),
      };
      this.waiters.push(w);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined) timer = setTimeout(() => done(new MutexTimeout(`waited ${opts.timeoutMs} ms`)), opts.timeoutMs);
    });
  }

  /** Fails every waiter (not the holder) with `err`. */
  rejectWaiting(err: Error): void {
    for (const w of [...this.waiters]) w.fail(err);
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters[0];
      if (next) next.grant(); // hand over: `held` stays true
      else this.held = false;
    };
  }
}
