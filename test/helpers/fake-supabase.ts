/**
 * A fake Supabase Management API: a local HTTP server that answers the endpoints hybrid-backup
 * uses. Every JSON body it sends is validated against Supabase's published OpenAPI schema
 * (test/contracts) first, so the fake cannot drift from what Supabase really returns; a
 * body that does not validate is recorded in `violations` (tests assert it stays empty).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import AjvModule from 'ajv';
import { closeNow, listenLocal } from './local-http.js';

/** Supabase's published schema, vendored unchanged (see test/contracts/README.md). */
export const CONTRACT = path.resolve(import.meta.dirname, '../contracts/supabase-management-api.openapi.json');
export const CONTRACT_SHA256 = 'f68dc5692c1b1923299e25241847724d277d759b2b4bba1ea7fd27754a45e7c3';

// ajv is CommonJS: its class is the default export's default under NodeNext.
const Ajv = AjvModule.default;
const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
const spec = JSON.parse(readFileSync(CONTRACT, 'utf8'));
ajv.addSchema(spec, 'mgmt');
// Older responses omitted backups[].id (the contract's README says so): the same schema with
// only that requirement dropped, for the test that serves such a body.
const legacy = structuredClone(spec.components.schemas.V1BackupsResponse);
legacy.properties.backups.items.required = legacy.properties.backups.items.required.filter((r: string) => r !== 'id');
ajv.addSchema(legacy, 'legacy-V1BackupsResponse');

/**
 * Validates a body against a component schema of the contract (or `legacy-V1BackupsResponse`);
 * returns the errors, empty when valid.
 */
export function contractErrors(schemaName: string, body: unknown): string[] {
  const v = schemaName.startsWith('legacy-') ? ajv.getSchema(schemaName) : ajv.getSchema(`mgmt#/components/schemas/${schemaName}`);
  if (!v) throw new Error(`no schema ${schemaName} in the contract`);
  return v(body) ? [] : (v.errors ?? []).map((e: { instancePath: string; message?: string }) => `${e.instancePath || '/'} ${e.message}`);
}

export type Reply =
  | { status: number; json?: unknown; schema?: string; headers?: Record<string, string> }
  | { status: number; raw: string; headers?: Record<string, string> }
  | { hang: true };

export interface Recorded {
  method: string;
  path: string;
  authorization: string | undefined;
  body: string;
  at: number;
}

const SCHEMA_FOR: Array<[RegExp, string, string]> = [
  [/^\/v1\/projects\/[^/]+\/database\/backups$/, 'GET', 'V1BackupsResponse'],
  [/^\/v1\/projects\/[^/]+$/, 'GET', 'V1ProjectWithDatabaseResponse'],
  [/^\/v1\/projects\/[^/]+\/billing\/addons$/, 'GET', 'ListProjectAddonsResponse'],
  [/^\/v1\/projects\/[^/]+\/database\/backups\/schedule$/, 'GET', 'V1BackupScheduleResponse'],
  [/^\/v1\/projects\/[^/]+\/database\/backups\/schedule$/, 'PATCH', 'V1BackupScheduleResponse'],
];

export const REF = 'abcdefghijklmnopqrst';
export const TOKEN = 'sbp_0123456789abcdef0123456789abcdef01234567';

const unix = (ms: number) => Math.floor(ms / 1000);
const HOUR = 3_600_000;
const price = { description: '$0', type: 'fixed', interval: 'monthly', amount: 0 };

/** A project as the fake serves it; tests change it between calls. */
export interface ProjectState {
  status: string;
  pitr: boolean;
  pitrVariant: 'pitr_7' | 'pitr_14' | 'pitr_28';
  compute: string;
  backups: Array<{ id?: number; status: string; inserted_at: string; is_physical_backup: boolean }>;
  physical: Record<string, number>;
  scheduleFor: string;
}

export function dailyProject(now = Date.now()): ProjectState {
  const day = 24 * HOUR;
  return {
    status: 'ACTIVE_HEALTHY',
    pitr: false,
    pitrVariant: 'pitr_7',
    compute: 'ci_micro',
    backups: Array.from({ length: 7 }, (_, i) => ({ id: 100 + i, status: 'COMPLETED', inserted_at: new Date(now - (i + 0.5) * day).toISOString(), is_physical_backup: false })),
    physical: {},
    scheduleFor: '04:00:00',
  };
}

export function pitrProject(now = Date.now()): ProjectState {
  return {
    ...dailyProject(now),
    pitr: true,
    compute: 'ci_small',
    backups: Array.from({ length: 3 }, (_, i) => ({ id: 200 + i, status: 'COMPLETED', inserted_at: new Date(now - (i + 1) * 24 * HOUR).toISOString(), is_physical_backup: true })),
    physical: { earliest_physical_backup_date_unix: unix(now - 7 * 24 * HOUR), latest_physical_backup_date_unix: unix(now - 120_000) },
  };
}

export class FakeManagementApi {
  readonly requests: Recorded[] = [];
  readonly violations: string[] = [];
  /** Replies to serve before the normal ones, per "METHOD path" (path without the ref). */
  private readonly queued = new Map<string, Reply[]>();
  private server!: http.Server;
  url = '';
  state: ProjectState = dailyProject();

  constructor(private readonly token = TOKEN) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) =>
      this.handle(req, res).catch((e: Error) => {
        this.violations.push(`the fake failed: ${e.message}`);
        if (!res.headersSent) res.writeHead(500).end();
      }),
    );
    this.url = await listenLocal(this.server);
    return this;
  }

  async stop(): Promise<void> {
    await closeNow(this.server);
  }

  /** Serves these replies, in order, to the next requests for `METHOD /suffix` (e.g. `GET /database/backups`). */
  queue(key: string, ...replies: Reply[]): void {
    this.queued.set(key, [...(this.queued.get(key) ?? []), ...replies]);
  }

  count(method: string, suffix: string): number {
    return this.requests.filter((r) => r.method === method && r.path === `/v1/projects/${REF}${suffix}`).length;
  }

  private normal(method: string, suffix: string, body: string): Reply {
    const s = this.state;
    if (method === 'GET' && suffix === '/database/backups') {
      return { status: 200, json: { region: 'eu-central-1', walg_enabled: true, pitr_enabled: s.pitr, backups: s.backups, physical_backup_data: s.physical } };
    }
    if (method === 'GET' && suffix === '') {
      return {
        status: 200,
        json: {
          id: REF,
          ref: REF,
          organization_id: 'org-id',
          organization_slug: 'acme',
          name: 'acme-prod',
          region: 'eu-central-1',
          created_at: '2024-01-01T00:00:00Z',
          status: s.status,
          database: { host: `db.${REF}.supabase.co`, version: '15.8.1.085', postgres_engine: '15', release_channel: 'ga' },
        },
      };
    }
    if (method === 'GET' && suffix === '/billing/addons') {
      const selected = [{ type: 'compute_instance', variant: { id: s.compute, name: s.compute, price } }];
      if (s.pitr) selected.push({ type: 'pitr', variant: { id: s.pitrVariant, name: s.pitrVariant, price } });
      return { status: 200, json: { selected_addons: selected, available_addons: [] } };
    }
    if (suffix === '/database/backups/schedule' && method === 'GET') {
      return { status: 200, json: { schedule_for: s.scheduleFor, updated_at: '2026-01-01T00:00:00+00:00' } };
    }
    if (suffix === '/database/backups/schedule' && method === 'PATCH') {
      const b = JSON.parse(body) as { schedule_for: string };
      s.scheduleFor = b.schedule_for;
      return { status: 200, json: { schedule_for: s.scheduleFor, updated_at: new Date().toISOString() } };
    }
    if (suffix === '/database/backups/restore-pitr' && method === 'POST') {
      const errs = contractErrors('V1RestorePitrBody', JSON.parse(body));
      if (errs.length) return { status: 400, raw: errs.join('; ') };
      return { status: 201, raw: '' };
    }
    return { status: 404, raw: '{"message":"not found"}' };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let body = '';
    for await (const c of req) body += c;
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ method: req.method ?? '', path: url.pathname, authorization: req.headers.authorization, body, at: Date.now() });
    const m = /^\/v1\/projects\/([^/]+)(.*)$/.exec(url.pathname);
    if (!m) return void res.writeHead(404).end();
    if (req.headers.authorization !== `Bearer ${this.token}`) return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"Unauthorized"}');
    if (m[1] !== REF) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"Project not found"}');
    const key = `${req.method} ${m[2]}`;
    const reply = this.queued.get(key)?.shift() ?? this.normal(req.method ?? '', m[2]!, body);
    if ('hang' in reply) return; // never answers
    if ('raw' in reply) return void res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end(reply.raw);
    if (reply.status >= 200 && reply.status < 300 && reply.json !== undefined) {
      const schema = reply.schema ?? SCHEMA_FOR.find(([re, meth]) => re.test(url.pathname) && meth === req.method)?.[2];
      if (!schema) this.violations.push(`${key}: no contract schema known for this reply`);
      else for (const e of contractErrors(schema, reply.json)) this.violations.push(`${key} (${schema}): ${e}`);
    }
    res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end(reply.json === undefined ? '' : JSON.stringify(reply.json));
  }
}
