/**
 * Connection strings: parsed once into a {@link ConnInfo} that can produce what each consumer
 * needs — a `pg` client config, the environment and `--dbname` for libpq tools (pg_dump, psql)
 * with the password moved out of the command line, and a display form without secrets.
 *
 * Accepts `postgres://` / `postgresql://` URLs and libpq `key=value` strings. An absent string
 * means libpq's own defaults (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD).
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClientConfig } from 'pg';
import type { LibpqEnv } from '../config/environment.js';
import { HbError } from '../domain/errors.js';
import { redactor } from '../util/redact.js';

export interface ConnInfo {
  host: string | undefined;
  port: number | undefined;
  user: string | undefined;
  database: string | undefined;
  password: string | undefined;
  /** Every other parameter (sslmode, application_name, options, …), libpq names. */
  params: Record<string, string>;
  /** Whether the values came from a connection string (false: libpq environment defaults). */
  explicit: boolean;
  /**
   * Only the credentials in the string itself may be used: none from this process's environment
   * (PGPASSWORD), password file or service file. For restore targets the service is given by a
   * client: the service's own secrets must never reach an address it was not configured with.
   */
  isolated?: boolean;
  /** libpq's environment when the string was parsed: the defaults of what it leaves out. */
  env: LibpqEnv;
}

const KV_RE = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('((?:[^'\\]|\\.)*)'|(?!')[^\s]*)/y;

function parseKeyValue(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < s.length) {
    if (/^\s*$/.test(s.slice(pos))) break;
    KV_RE.lastIndex = pos;
    const m = KV_RE.exec(s);
    if (!m) throw new Error(`cannot parse the key=value pair at character ${pos + 1}`);
    const [, key, raw, quoted] = m;
    out[key!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : raw!;
    pos = KV_RE.lastIndex;
  }
  return out;
}

function parseUrl(s: string): Record<string, string> {
  const u = new URL(s);
  const out: Record<string, string> = {};
  if (u.hostname) out.host = decodeURIComponent(u.hostname.replace(/^\[(.*)\]$/, '$1'));
  if (u.port) out.port = u.port;
  if (u.username) out.user = decodeURIComponent(u.username);
  if (u.password) out.password = decodeURIComponent(u.password);
  const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (db) out.dbname = db;
  for (const [k, v] of u.searchParams) out[k === 'database' ? 'dbname' : k] = v;
  return out;
}

/**
 * The entries of a connection service in libpq's service file: `PGSERVICEFILE` or
 * `~/.pg_service.conf`, then `PGSYSCONFDIR/pg_service.conf` (Debian: /etc/postgresql-common).
 * @throws HbError `database-url-invalid` when no file defines the service
 */
export function serviceEntries(name: string, env: LibpqEnv): Record<string, string> {
  const files = [env.PGSERVICEFILE ?? path.join(env.HOME ?? os.homedir(), '.pg_service.conf'), path.join(env.PGSYSCONFDIR ?? '/etc/postgresql-common', 'pg_service.conf')];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    let current: string | null = null;
    const out: Record<string, string> = {};
    let found = false;
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#')) continue;
      const section = /^\[(.+)\]$/.exec(line);
      if (section) {
        current = section[1]!.trim();
        found ||= current === name;
        continue;
      }
      const eq = line.indexOf('=');
      if (current === name && eq > 0) out[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim();
    }
    if (found) return out;
  }
  throw new HbError('database-url-invalid', `the connection service "${name}" is not defined in ${files.join(' or ')}`, 'define it in the service file (PGSERVICEFILE), or set DATABASE_URL instead');
}

/**
 * Parses a connection string. Registers the password as a secret so no later output shows it.
 * Without a string, libpq's environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
 * PGPASSWORD, PGSERVICE) are read; a `service` names an entry of the service file.
 * @throws HbError `database-url-invalid` naming the variable, never the string itself.
 */
export function parseConnInfo(str: string | undefined, what: string, env: LibpqEnv): ConnInfo {
  let kv: Record<string, string>;
  let explicit = true;
  if (!str) {
    explicit = false;
    kv = {};
    if (env.PGSERVICE) kv.service = env.PGSERVICE;
    if (env.PGHOST) kv.host = env.PGHOST;
    if (env.PGPORT) kv.port = env.PGPORT;
    if (env.PGUSER) kv.user = env.PGUSER;
    if (env.PGDATABASE) kv.dbname = env.PGDATABASE;
    if (env.PGPASSWORD) kv.password = env.PGPASSWORD;
  } else {
    try {
      kv = /^postgres(ql)?:\/\//i.test(str) ? parseUrl(str) : parseKeyValue(str);
    } catch (e) {
      throw new HbError(
        'database-url-invalid',
        `${what} is not a valid connection string (${e instanceof TypeError ? 'not a valid URL' : (e as Error).message})`,
        'use the form postgresql://user:password@host:5432/dbname, or libpq key=value pairs',
      );
    }
  }
  if (kv.service) {
    // libpq's order: what a string says, then the service file, then the environment.
    const { service, ...given } = kv;
    kv = explicit ? { ...serviceEntries(service, env), ...given } : { ...given, ...serviceEntries(service, env) };
  }
  const { host, port, user, dbname, password, ...params } = kv;
  redactor.addSecret(password);
  redactor.addSecret(params.sslpassword);
  let portNum: number | undefined;
  if (port !== undefined && port !== '') {
    portNum = Number(port);
    if (!Number.isInteger(portNum) || portNum <= 0 || portNum > 65535) {
      throw new HbError('database-url-invalid', `${what} has an invalid port "${port}"`, 'the port is a number such as 5432');
    }
  }
  return { host: host || undefined, port: portNum, user: user || undefined, database: dbname || undefined, password, params, explicit, env };
}

/**
 * The database to back up: `DATABASE_URL`, or libpq's variables when PGHOST, PGDATABASE or
 * PGSERVICE names it. Nothing falls back to a local default: a backup of whatever database
 * happens to answer on the local socket is not a backup of anything the operator meant.
 * @throws HbError `database-not-configured` (exit 2) when nothing names the database;
 *   `database-url-invalid` when the string cannot be parsed
 */
export function sourceConnInfo(databaseUrl: string | undefined, env: LibpqEnv): ConnInfo {
  const example = 'e.g. DATABASE_URL=postgresql://postgres:<password>@db.example.com:5432/postgres (for Supabase, the session pooler URL)';
  if (!databaseUrl) {
    if (!env.PGHOST && !env.PGDATABASE && !env.PGSERVICE) {
      throw new HbError('database-not-configured', 'no database to back up: DATABASE_URL is not set (nor PGHOST, PGDATABASE or PGSERVICE)', `set DATABASE_URL, ${example}`);
    }
    return parseConnInfo(undefined, 'DATABASE_URL', env);
  }
  const c = parseConnInfo(databaseUrl, 'DATABASE_URL', env);
  if (!c.host && !c.database) {
    throw new HbError('database-not-configured', 'DATABASE_URL names no database (neither a host nor a database name)', `give the host and the database, ${example}`);
  }
  return c;
}

/** Which database a command means: enough to tell two databases apart, and never a password. */
export interface DatabaseIdentity {
  host: string;
  port: number;
  database: string;
  user: string;
}

export function databaseIdentity(c: ConnInfo): DatabaseIdentity {
  const e = effective(c);
  return { host: e.host, port: e.port, database: e.database, user: e.user };
}

/** Loopback addresses and local socket directories all reach this machine's server on that port. */
function hostKey(host: string): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h.startsWith('/') || h === 'localhost' || h === '::1' || /^127\./.test(h) ? 'local' : h;
}

/**
 * The project a Supabase pooler (Supavisor) connection reaches: on `*.pooler.supabase.com` every
 * project shares the host, port and database name, and the user's `.<ref>` suffix picks the
 * project (`postgres.abcdefghijklmnopqrst`). Null for any other host.
 */
function poolerProject(d: DatabaseIdentity): string | null {
  if (!/\.pooler\.supabase\.com$/i.test(d.host)) return null;
  const dot = d.user.lastIndexOf('.');
  return dot < 0 ? '' : d.user.slice(dot + 1).toLowerCase();
}

/**
 * Whether two identities name the same database: the same server (loopback and local sockets
 * count as one) and port, and the same database name — and, through a Supabase pooler, the same
 * project (the user's `.<ref>` suffix). Otherwise the user is not part of it: another role on the
 * same database still means that database.
 */
export function sameDatabase(a: DatabaseIdentity, b: DatabaseIdentity): boolean {
  return hostKey(a.host) === hostKey(b.host) && a.port === b.port && a.database === b.database && poolerProject(a) === poolerProject(b);
}

export function describeIdentity(d: DatabaseIdentity): string {
  return `database "${d.database}" on ${d.host}:${d.port} as ${d.user}`;
}

function defaultSocketDir(): string {
  return existsSync('/var/run/postgresql') ? '/var/run/postgresql' : '/tmp';
}

/** The effective host, port, user and database, filling libpq's defaults. */
export function effective(c: ConnInfo): { host: string; port: number; user: string; database: string } {
  const user = c.user ?? c.env.PGUSER ?? c.env.USER ?? 'postgres';
  return {
    host: c.host ?? c.env.PGHOST ?? defaultSocketDir(),
    port: c.port ?? (c.env.PGPORT ? Number(c.env.PGPORT) : 5432),
    user,
    database: c.database ?? c.env.PGDATABASE ?? user,
  };
}

/** A safe description: `database "app" on db.example.com:5432 as postgres`. */
export function describeConn(c: ConnInfo): string {
  const e = effective(c);
  return `database "${e.database}" on ${e.host}:${e.port} as ${e.user}`;
}

/** A URL without the password, for showing and recording. */
export function safeUrl(c: ConnInfo): string {
  const e = effective(c);
  const host = e.host.startsWith('/') ? '' : e.host.includes(':') ? `[${e.host}]` : e.host;
  const q = new URLSearchParams();
  if (e.host.startsWith('/')) q.set('host', e.host);
  for (const [k, v] of Object.entries(c.params)) if (k !== 'password' && k !== 'sslpassword') q.set(k, v);
  const qs = q.toString();
  return `postgresql://${encodeURIComponent(e.user)}@${host}:${e.port}/${encodeURIComponent(e.database)}${qs ? `?${qs}` : ''}`;
}

function quoteKv(v: string): string {
  return /^[^\s'\\]+$/.test(v) && v !== '' ? v : `'${v.replace(/(['\\])/g, '\\$1')}'`;
}

/**
 * What a libpq tool needs: `--dbname` as a key=value string without the password, and the
 * password in PGPASSWORD (so it never shows in `ps`).
 */
export function libpqArgs(c: ConnInfo, overrideDatabase?: string): { dbname: string; env: Record<string, string> } {
  const e = effective(c);
  const parts: string[] = [`host=${quoteKv(e.host)}`, `port=${e.port}`, `user=${quoteKv(e.user)}`, `dbname=${quoteKv(overrideDatabase ?? e.database)}`];
  for (const [k, v] of Object.entries(c.params)) if (k !== 'password') parts.push(`${k}=${quoteKv(v)}`);
  const env: Record<string, string> = {};
  if (c.password !== undefined) env.PGPASSWORD = c.password;
  if (c.isolated) {
    // Whatever this process's environment holds, the tool sees only the string's password (or none).
    env.PGPASSWORD = c.password ?? '';
    env.PGPASSFILE = '/dev/null';
    env.PGSERVICEFILE = '/dev/null';
    env.PGSYSCONFDIR = '/nonexistent';
  }
  return { dbname: parts.join(' '), env };
}

/** A node-postgres client config equivalent to the connection string (libpq's sslmode semantics). */
export function pgClientConfig(c: ConnInfo, opts: { connectTimeoutSeconds: number; database?: string; applicationName?: string }): ClientConfig {
  const e = effective(c);
  const sslmode = c.params.sslmode ?? c.env.PGSSLMODE;
  let ssl: ClientConfig['ssl'] = false;
  if (sslmode === 'require') ssl = { rejectUnauthorized: false };
  else if (sslmode === 'verify-ca' || sslmode === 'verify-full') ssl = { rejectUnauthorized: true };
  return {
    host: e.host,
    port: e.port,
    user: e.user,
    database: opts.database ?? e.database,
    // The source's PGPASSWORD was read into `password` by parseConnInfo; an isolated connection
    // answers a password request with its own (or an empty) one, never the environment's.
    password: c.isolated ? async () => c.password ?? '' : c.password,
    ssl,
    connectionTimeoutMillis: opts.connectTimeoutSeconds * 1000,
    application_name: opts.applicationName ?? 'hybrid-backup',
  };
}

/**
 * Refuses, before connecting, a connection pg_dump cannot use: Supabase's transaction pooler
 * (port 6543 on *.pooler.supabase.com) hands each statement to whichever server connection is free.
 * @throws HbError `transaction-pooler`
 */
export function assertDumpableConnection(c: ConnInfo, what = 'DATABASE_URL'): void {
  const e = effective(c);
  if (/\.pooler\.supabase\.com$/i.test(e.host) && e.port === 6543) {
    throw new HbError(
      'transaction-pooler',
      `${what} points at Supabase's transaction pooler (${e.host}:6543), which pg_dump and psql cannot use`,
      `use the session pooler instead: the same host on port 5432 (user postgres.<ref>), e.g. postgresql://${e.user}@${e.host}:5432/${e.database}`,
    );
  }
}

/** Whether a host is one of Supabase's (direct `db.<ref>.supabase.co` or the poolers). */
export function isSupabaseHost(host: string | undefined): boolean {
  return !!host && /(^|\.)supabase\.(co|com)$/i.test(host);
}
