/**
 * A client for the parts of Supabase's Management API (v1) this program uses.
 *
 * Every request: `Authorization: Bearer <token>`, a per-attempt timeout, at most 60 requests a
 * minute (the shared limiter), retries with exponential backoff and jitter on 429 (honouring
 * `Retry-After`), 5xx, timeouts and network errors; never on 401/403/404 or other 4xx. Replies
 * are validated (./schemas.ts). Errors carry codes and hints (a 403 names the permission that
 * endpoint needs, as the contract states it); the token never appears in them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { z } from 'zod';
import { HbError } from '../domain/errors.js';
import type { RateLimiter } from '../util/rate-limiter.js';
import { redact } from '../util/redact.js';
import {
  type AddonsResponse,
  addonsResponse,
  type BackupsResponse,
  backupsResponse,
  type ProjectResponse,
  projectResponse,
  type ScheduleResponse,
  scheduleResponse,
} from './schemas.js';

export interface ManagementApiOptions {
  baseUrl: string;
  token: string;
  projectRef: string;
  timeoutMs: number;
  maxRetries: number;
  limiter: RateLimiter;
  signal?: AbortSignal;
  /** Called before each retry, for logs. */
  onRetry?: (info: { path: string; attempt: number; waitMs: number; reason: string }) => void;
}

/**
 * One endpoint this client calls, and what a token needs for it — as Supabase's contract
 * (test/contracts) states it in each operation's `security` (`fga_permissions`: what a
 * fine-grained, scoped access token must carry) and `x-oauth-scope` (an OAuth app's token).
 */
interface Call {
  /** What is asked for, in messages: "the backups list". */
  what: string;
  /** What a 403 refuses: "the access token may not <verb> <what>". */
  verb: 'read' | 'change' | 'start';
  /** In words, for the 403 hint. */
  access: string;
  permission: string;
  /** null where the contract states none (the add-ons). */
  oauthScope: string | null;
}

const CALLS = {
  listBackups: { what: 'the backups list', verb: 'read', access: "read access to the project's database backups", permission: 'backups_read', oauthScope: 'database:read' },
  getProject: { what: 'the project', verb: 'read', access: 'read access to the project', permission: 'project_admin_read', oauthScope: 'projects:read' },
  listAddons: { what: 'the add-ons', verb: 'read', access: "read access to the project's add-ons", permission: 'infra_add_ons_read', oauthScope: null },
  getBackupSchedule: { what: 'the backup schedule', verb: 'read', access: "read access to the project's database backups", permission: 'backups_read', oauthScope: 'database:read' },
  updateBackupSchedule: { what: 'the backup schedule', verb: 'change', access: "write access to the project's database backups", permission: 'backups_write', oauthScope: 'database:write' },
  restorePitr: { what: 'a point-in-time restore', verb: 'start', access: "write access to the project's database backups", permission: 'backups_write', oauthScope: 'database:write' },
} as const satisfies Record<string, Call>;

const MAX_RETRY_AFTER_MS = 60_000;

/** Parses Retry-After: delta-seconds or an HTTP date. */
export function retryAfterMs(header: string | null, now = Date.now()): number | null {
  if (!header) return null;
  if (/^\d+(\.\d+)?$/.test(header.trim())) return Math.round(Number(header) * 1000);
  const t = Date.parse(header);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

function backoffMs(attempt: number): number {
  const base = Math.min(10_000, 500 * 2 ** attempt);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/**
 * What a failed fetch means, in words: Node's fetch says only "bad port" for a port the Fetch
 * standard blocks (25, 6000, 10080, …), and "fetch failed" with the cause underneath.
 */
export function explainFetchError(e: Error, url: string): string {
  const cause = (e as Error & { cause?: NodeJS.ErrnoException }).cause;
  const text = String(cause?.message ?? e.message);
  if (/bad port/i.test(text) || /bad port/i.test(e.message)) {
    let port = '';
    try {
      port = new URL(url).port;
    } catch {
      // not a URL: said below without the port
    }
    return `the port${port ? ` ${port}` : ''} in SUPABASE_API_URL is one that HTTP clients refuse to use (the Fetch standard blocks ports such as 25, 6000 and 10080); the Management API is https://api.supabase.com (port 443)`;
  }
  if (cause?.code === 'ENOTFOUND' || cause?.code === 'EAI_AGAIN') return `the host of ${redact(url.replace(/\/v1\/.*$/, ''))} cannot be resolved (${cause.code}): check SUPABASE_API_URL and DNS`;
  if (cause?.code === 'ECONNREFUSED') return `nothing accepts connections at ${redact(url.replace(/\/v1\/.*$/, ''))} (ECONNREFUSED)`;
  return redact(text);
}

export class ManagementApi {
  constructor(private readonly o: ManagementApiOptions) {}

  get projectRef(): string {
    return this.o.projectRef;
  }

  listBackups(): Promise<BackupsResponse> {
    return this.request('GET', `/v1/projects/${this.o.projectRef}/database/backups`, backupsResponse, CALLS.listBackups);
  }

  getProject(): Promise<ProjectResponse> {
    return this.request('GET', `/v1/projects/${this.o.projectRef}`, projectResponse, CALLS.getProject);
  }

  listAddons(): Promise<AddonsResponse> {
    return this.request('GET', `/v1/projects/${this.o.projectRef}/billing/addons`, addonsResponse, CALLS.listAddons);
  }

  getBackupSchedule(): Promise<ScheduleResponse> {
    return this.request('GET', `/v1/projects/${this.o.projectRef}/database/backups/schedule`, scheduleResponse, CALLS.getBackupSchedule);
  }

  /** `HH:MM:SS` in UTC. */
  updateBackupSchedule(scheduleFor: string): Promise<ScheduleResponse> {
    return this.request('PATCH', `/v1/projects/${this.o.projectRef}/database/backups/schedule`, scheduleResponse, CALLS.updateBackupSchedule, { schedule_for: scheduleFor });
  }

  /** Starts a point-in-time restore of the whole project. */
  async restorePitr(unixSeconds: number): Promise<void> {
    await this.request('POST', `/v1/projects/${this.o.projectRef}/database/backups/restore-pitr`, null, CALLS.restorePitr, {
      recovery_time_target_unix: unixSeconds,
    });
  }

  private async request<S extends z.ZodType>(method: string, path: string, schema: S | null, call: Call, body?: unknown): Promise<z.output<S>> {
    const { what } = call;
    const url = `${this.o.baseUrl.replace(/\/+$/, '')}${path}`;
    // A PATCH or POST that timed out or got a 5xx may have been applied: it is not sent again
    // (a second point-in-time restore, or one of the 3 schedule changes a day used up). Only a
    // refused connection or a 429 prove it was not.
    const idempotent = method === 'GET';
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= this.o.maxRetries;
      await this.o.limiter.acquire(this.o.signal);
      let res: Response;
      try {
        const signals = [AbortSignal.timeout(this.o.timeoutMs), ...(this.o.signal ? [this.o.signal] : [])];
        res = await fetch(url, {
          method,
          headers: {
            authorization: `Bearer ${this.o.token}`,
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal: AbortSignal.any(signals),
        });
      } catch (e) {
        if (this.o.signal?.aborted) throw new HbError('aborted', `the request for ${what} was stopped`);
        const timedOut = (e as Error).name === 'TimeoutError';
        const cause = (e as Error & { cause?: NodeJS.ErrnoException }).cause;
        const reason = timedOut ? `no answer within ${this.o.timeoutMs / 1000}s` : explainFetchError(e as Error, url);
        // A blocked port is refused before anything is sent, every time: no point in retrying.
        if (!timedOut && /bad port/i.test(String(cause?.message ?? ''))) throw new HbError('supabase-unavailable', `cannot call the Management API: ${reason}`, 'fix SUPABASE_API_URL (or supabase.apiUrl)');
        const neverArrived = !timedOut && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN'].includes(cause?.code ?? '');
        if (!idempotent && !neverArrived) {
          throw new HbError('supabase-unavailable', `${method} ${path} got no answer (${reason}); it may or may not have been applied`, 'check the project in the dashboard before trying again');
        }
        if (last) {
          throw timedOut
            ? new HbError('supabase-timeout', `the Management API did not answer ${method} ${path} within ${this.o.timeoutMs / 1000}s (${attempt + 1} attempts)`, 'check status.supabase.com; raise supabase.requestTimeoutSeconds if the network is slow')
            : new HbError('supabase-unavailable', `cannot reach the Management API at ${this.o.baseUrl}: ${reason}`, 'check the network and SUPABASE_API_URL');
        }
        await this.retryWait(path, attempt, backoffMs(attempt), reason);
        continue;
      }
      if (res.ok) {
        if (schema === null) {
          await res.body?.cancel();
          return undefined as z.output<S>;
        }
        const text = await res.text();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          throw new HbError('supabase-bad-response', `the Management API answered ${method} ${path} with something that is not JSON`, 'check SUPABASE_API_URL; it should be https://api.supabase.com');
        }
        const parsed = schema.safeParse(json);
        if (!parsed.success) {
          const i = parsed.error.issues[0]!;
          throw new HbError('supabase-bad-response', `unexpected reply for ${what}: ${i.path.join('.') || '(top)'} ${i.message}`, 'the Management API may have changed; upgrade hybrid-backup');
        }
        return parsed.data;
      }
      await res.body?.cancel();
      const status = res.status;
      if (status === 401) {
        throw new HbError('supabase-unauthorized', 'the Supabase access token is invalid or expired (401)', 'create a new access token at supabase.com/dashboard/account/tokens and set SUPABASE_ACCESS_TOKEN');
      }
      if (status === 403) {
        throw new HbError(
          'supabase-forbidden',
          `the access token may not ${call.verb} ${what} (project ${this.o.projectRef}, 403; it needs the ${call.permission} permission)`,
          `this needs ${call.access}: give a fine-grained (scoped) access token the ${call.permission} permission${call.oauthScope ? ` (an OAuth app's token: the ${call.oauthScope} scope)` : ''}; with a personal access token, use an account whose role in the project's organization allows it`,
        );
      }
      if (status === 404) {
        throw new HbError('supabase-not-found', `no project ${this.o.projectRef} is visible to this token (404)`, 'check SUPABASE_PROJECT_REF (the 20 letters in the dashboard URL) and that the token\'s account belongs to the project\'s organization');
      }
      if (status === 402) {
        throw new HbError('supabase-plan', `${what} needs a higher Supabase plan (402)`, 'managed backups start with the Pro plan: Dashboard → Organization → Billing');
      }
      if (status >= 500 && !idempotent) {
        throw new HbError('supabase-unavailable', `the Management API answered ${method} ${path} with ${status} ${res.statusText}; it may or may not have been applied`.trim(), 'check the project in the dashboard before trying again');
      }
      if (status === 429 || status >= 500) {
        const reason = `${status} ${res.statusText}`.trim();
        if (last) {
          throw status === 429
            ? new HbError('supabase-rate-limited', `the Management API still refused ${method} ${path} with 429 after ${attempt + 1} attempts`, 'another tool may be using the same token heavily; try again later')
            : new HbError('supabase-unavailable', `the Management API failed ${method} ${path} with ${reason} after ${attempt + 1} attempts`, 'check status.supabase.com and try again later');
        }
        const after = status === 429 ? retryAfterMs(res.headers.get('retry-after')) : null;
        if (after !== null && after > MAX_RETRY_AFTER_MS) {
          throw new HbError('supabase-rate-limited', `the Management API asks to wait ${Math.round(after / 1000)}s before ${method} ${path}`, 'try again later');
        }
        await this.retryWait(path, attempt, after ?? backoffMs(attempt), reason);
        continue;
      }
      throw new HbError('supabase-bad-response', `the Management API answered ${method} ${path} with ${status} ${res.statusText}`.trim());
    }
  }

  private async retryWait(path: string, attempt: number, waitMs: number, reason: string): Promise<void> {
    this.o.onRetry?.({ path, attempt: attempt + 1, waitMs, reason });
    try {
      await sleep(waitMs, undefined, { signal: this.o.signal });
    } catch {
      throw new HbError('aborted', 'stopped while waiting to retry a Management API request');
    }
  }
}
