/**
 * The HTTP layer under {@link StorageApi}: node:http(s) with a keep-alive agent whose socket count
 * bounds the requests in flight, a time limit, and retries.
 *
 * - Bodies stream both ways: a response body is the socket's own Readable (no Web-stream
 *   conversion, no buffering), and a request body given as a factory is piped with backpressure.
 * - Time limit: `timeoutMs` without a byte on the socket (waiting for the headers or between two
 *   chunks of a body) stops the request. A 50 GB download may take hours; a stalled one is stopped.
 * - Retries with backoff (jittered, doubling) on 408/429/5xx, honouring Retry-After, and on
 *   network errors and time limits, each said through `onRetry`. A streamed request body is
 *   retried only when it is given as a factory (a fresh stream per attempt).
 * - The service-role key goes into two headers and nowhere else: no message, URL or log line
 *   built here holds it.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { HbError } from '../domain/errors.js';
import { retryAfterMs } from '../supabase/management-api.js';

export interface RetryNotice {
  /** `GET object/authenticated/avatars/me.png`: method and path under /storage/v1 (never a secret). */
  what: string;
  /** The HTTP status that caused the retry, null for a network error or a time limit. */
  status: number | null;
  reason: string;
  /** The attempt about to be made (2 for the first retry) and how many there may be. */
  attempt: number;
  of: number;
  waitMs: number;
}

export interface RetrySettings {
  /** Retries after the first attempt (5). */
  maxRetries: number;
  /** The first backoff; it doubles each time (with jitter), up to 30 s (500 ms). */
  retryBaseMs: number;
  /** A Retry-After beyond this is cut to it (60 s). */
  maxRetryAfterMs: number;
  onRetry?: ((n: RetryNotice) => void) | undefined;
  signal?: AbortSignal | undefined;
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

export function isRetryableStatus(status: number): boolean {
  return RETRY_STATUS.has(status);
}

/** When to retry and how long to wait: one policy for requests and for whole operations. */
export class RetryPolicy {
  constructor(readonly s: RetrySettings) {}

  get attempts(): number {
    return this.s.maxRetries + 1;
  }

  /** How long before retry number `attempt` (1-based): Retry-After when given, else backoff with jitter. */
  delayMs(attempt: number, retryAfter: number | null): number {
    if (retryAfter !== null) return Math.min(retryAfter, this.s.maxRetryAfterMs);
    const base = Math.min(30_000, this.s.retryBaseMs * 2 ** (attempt - 1));
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  /** Says the retry, then waits. @throws HbError `aborted` when the signal fires meanwhile */
  async wait(what: string, attempt: number, status: number | null, reason: string, retryAfter: number | null): Promise<void> {
    const waitMs = this.delayMs(attempt, retryAfter);
    this.s.onRetry?.({ what, status, reason, attempt: attempt + 1, of: this.attempts, waitMs });
    try {
      await sleep(waitMs, undefined, this.s.signal ? { signal: this.s.signal } : {});
    } catch {
      throw new HbError('aborted', `stopped while waiting to retry ${what}`, undefined, { cause: this.s.signal?.reason });
    }
  }
}

/** Retry-After of a response, in ms (delta-seconds or an HTTP date), or null. */
export function retryAfterOf(headers: http.IncomingHttpHeaders): number | null {
  const v = headers['retry-after'];
  return retryAfterMs(typeof v === 'string' ? v : null);
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body, streamed; read it, or call {@link discard}. */
  body: http.IncomingMessage;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** A small body sent whole (JSON). */
  json?: unknown;
  /** A streamed body: a fresh stream per attempt. */
  body?: () => Readable;
  /** Retry on 408/429/5xx and network errors (true). */
  retry?: boolean;
  signal?: AbortSignal;
}

/** A network-level failure (no HTTP status): refused connection, reset, time limit. */
export class NetworkError extends Error {
  constructor(
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'NetworkError';
  }
}

export interface HttpOptions extends RetrySettings {
  /** https://<ref>.supabase.co (no trailing slash needed). */
  url: string;
  key: string;
  /** Sockets at most: the bound on requests in flight. */
  maxSockets: number;
  timeoutMs: number;
}

/** Drains a response body that is not wanted, so the socket goes back to the pool. */
export function discard(res: HttpResponse): void {
  res.body.resume();
}

/** Reads a (small) body as text; more than `limit` bytes is an error. */
export async function readText(res: HttpResponse, limit = 64 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.body.destroy();
      throw new NetworkError(`the answer is larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export class StorageHttp {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;
  readonly retry: RetryPolicy;

  constructor(private readonly o: HttpOptions) {
    this.base = new URL(`${o.url.replace(/\/+$/, '')}/storage/v1/`);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new HbError('config-invalid', `SUPABASE_URL must be an http(s) URL, not ${this.base.protocol}`);
    this.lib = this.base.protocol === 'https:' ? https : http;
    this.agent = new this.lib.Agent({ keepAlive: true, maxSockets: o.maxSockets, maxFreeSockets: o.maxSockets, scheduling: 'lifo' });
    this.retry = new RetryPolicy(o);
  }

  /** Closes the pooled sockets. */
  close(): void {
    this.agent.destroy();
  }

  /**
   * One request, retried per the policy. Resolves with any status once no retry is left (the
   * caller reads 4xx/5xx answers); rejects with {@link NetworkError} when the last attempt had none.
   * @throws HbError `aborted` when the signal fires
   */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse> {
    const what = `${method} ${safeDecode(path)}`;
    const retry = opts.retry ?? true;
    for (let attempt = 1; ; attempt++) {
      this.throwIfAborted(what, opts.signal);
      let res: HttpResponse;
      try {
        res = await this.once(method, path, opts);
      } catch (e) {
        this.throwIfAborted(what, opts.signal);
        if (!(e instanceof NetworkError) || !retry || attempt >= this.retry.attempts) throw e;
        await this.retry.wait(what, attempt, null, (e as Error).message, null);
        continue;
      }
      if (retry && isRetryableStatus(res.status) && attempt < this.retry.attempts) {
        discard(res);
        await this.retry.wait(what, attempt, res.status, `${res.status} ${res.body.statusMessage ?? ''}`.trim(), retryAfterOf(res.headers));
        continue;
      }
      return res;
    }
  }

  private throwIfAborted(what: string, signal?: AbortSignal): void {
    for (const s of [this.o.signal, signal]) {
      if (s?.aborted) throw new HbError('aborted', `${what} was stopped before it finished`, undefined, { cause: s.reason });
    }
  }

  private once(method: string, path: string, opts: RequestOptions): Promise<HttpResponse> {
    const url = new URL(path, this.base);
    const headers: Record<string, string> = { apikey: this.o.key, authorization: `Bearer ${this.o.key}`, ...opts.headers };
    let json: Buffer | null = null;
    if (opts.json !== undefined) {
      json = Buffer.from(JSON.stringify(opts.json));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(json.length);
    }
    const signals = [this.o.signal, opts.signal].filter((s): s is AbortSignal => !!s);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      const req = this.lib.request(url, { method, headers, agent: this.agent, ...(signal ? { signal } : {}) }, (res) => {
        settled = true;
        resolve({ status: res.statusCode ?? 500, headers: res.headers, body: res });
      });
      req.setTimeout(this.o.timeoutMs, () => {
        req.destroy(new NetworkError(`no answer within ${Math.round(this.o.timeoutMs / 1000)} s`, true));
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (settled) return; // the body's reader sees it
        reject(e instanceof NetworkError ? e : new NetworkError(e.code ? `${e.code}${e.message && !e.message.includes(e.code) ? ` ${e.message}` : ''}` : e.message));
      });
      if (json) req.end(json);
      else if (opts.body) {
        const body = opts.body();
        // A body that fails (a damaged store file) cuts the request: the server stores nothing.
        pipeline(body, req).catch((e: unknown) => {
          req.destroy(e as Error);
          if (!settled) {
            settled = true;
            reject(e);
          }
        });
      } else req.end();
    });
  }
}

function safeDecode(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}
