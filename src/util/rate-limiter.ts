/**
 * A sliding-window rate limiter for one process: at most `limit` acquisitions in any `windowMs`.
 * `acquire()` waits (without busy looping) until a slot is free.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class RateLimiter {
  private readonly stamps: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async acquire(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const t = this.now();
      while (this.stamps.length && t - this.stamps[0]! >= this.windowMs) this.stamps.shift();
      if (this.stamps.length < this.limit) {
        this.stamps.push(t);
        return;
      }
      await sleep(this.stamps[0]! + this.windowMs - t, undefined, { signal });
    }
  }
}
