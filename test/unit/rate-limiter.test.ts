import { describe, expect, it } from 'vitest';
import { retryAfterMs } from '../../src/supabase/management-api.js';
import { RateLimiter } from '../../src/util/rate-limiter.js';

describe('RateLimiter', () => {
  it('lets `limit` through at once and holds the next until the window has passed', async () => {
    let now = 0;
    const l = new RateLimiter(3, 300, () => now);
    // the clock does not move: the first three pass without it
    for (let i = 0; i < 3; i++) await l.acquire();
    let fourth = false;
    const p = l.acquire().then(() => (fourth = true));
    await new Promise((r) => setImmediate(r));
    expect(fourth).toBe(false);
    // once the window has passed on the limiter's clock, the fourth goes through
    now = 300;
    await p;
    expect(fourth).toBe(true);
  });

  it('at 60 a minute, the 61st request waits for the oldest to leave the window', async () => {
    let now = 0;
    const l = new RateLimiter(60, 60_000, () => now);
    for (let i = 0; i < 60; i++) {
      now = i * 100;
      await l.acquire();
    }
    now = 59_999;
    let granted = false;
    const p = l.acquire().then(() => (granted = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(granted).toBe(false);
    now = 60_000;
    await p;
    expect(granted).toBe(true);
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs('0.5')).toBe(500);
    expect(retryAfterMs(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(10_000);
    expect(retryAfterMs('soon')).toBeNull();
    expect(retryAfterMs(null)).toBeNull();
  });
});
