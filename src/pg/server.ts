/**
 * Talking to a PostgreSQL server with `pg`: probing its identity and version, and turning
 * connection failures into operator errors (wrong password, missing database, unreachable).
 */
import type pg from 'pg';
import { HbError } from '../domain/errors.js';
import { loadPg } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { type ConnInfo, describeConn, effective, pgClientConfig } from './connection.js';

/** The major version from `server_version_num`: 150004 is 15; before 10 the major had two parts, 90624 is 9.6. */
export function serverMajor(versionNum: number): number {
  return versionNum >= 100000 ? Math.floor(versionNum / 10000) : Math.floor(versionNum / 10000) + (Math.floor(versionNum / 100) % 100) / 10;
}

export interface ServerInfo {
  /** e.g. 150020 */
  versionNum: number;
  major: number;
  /** e.g. "15.20 (Debian 15.20-0+deb12u1)" */
  version: string;
  database: string;
  user: string;
  /** pg_control_system().system_identifier: the same for every database of one cluster. */
  systemId: string | null;
  databaseBytes: number;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNRESET', 'EADDRNOTAVAIL', 'ENOENT']);

/** Maps a connection or query error to an operator error naming the database. */
export function classifyPgError(err: unknown, conn: ConnInfo): HbError {
  const e = err as { code?: string; message?: string };
  const where = describeConn(conn);
  const msg = redact(e?.message ?? String(err));
  const host = effective(conn).host;
  const supabaseDirect = /^db\.[a-z0-9]+\.supabase\.co$/i.test(host);
  switch (e?.code) {
    case '28P01':
    case '28000':
      return new HbError('db-auth-failed', `authentication failed for ${where}: ${msg}`, 'check the user and password in DATABASE_URL');
    case '3D000':
      return new HbError('db-not-found', `${where} does not exist`, 'check the database name in the connection string, or create the database');
    case '57P03':
      return new HbError('db-unreachable', `${where} is starting up or shutting down: ${msg}`, 'try again in a moment');
    case '53300':
      return new HbError('db-unreachable', `${where} refuses more connections: ${msg}`, 'free a connection slot or raise max_connections');
  }
  if ((e?.code && NETWORK_CODES.has(e.code)) || /timeout|terminated unexpectedly|connect/i.test(msg)) {
    const hint = supabaseDirect
      ? 'the direct host db.<ref>.supabase.co is IPv6-only; use the session pooler instead (port 5432 on <region>.pooler.supabase.com, user postgres.<ref>)'
      : 'check that the server is running and the host and port are right';
    return new HbError('db-unreachable', `cannot reach ${where}: ${msg}`, hint);
  }
  return new HbError('db-error', `${where}: ${msg}`);
}

/** Runs `fn` with a connected client and always closes it. Connection errors are classified. */
export async function withClient<T>(conn: ConnInfo, opts: { connectTimeoutSeconds: number; database?: string }, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const { Client } = await loadPg();
  const client = new Client(pgClientConfig(conn, opts));
  // A connection that dies later must not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => {});
    throw classifyPgError(e, opts.database ? { ...conn, database: opts.database } : conn);
  }
  try {
    return await fn(client);
  } catch (e) {
    if (e instanceof HbError) throw e;
    throw classifyPgError(e, conn);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Runs `fn` with the id of a snapshot exported by a connection that stays open (in a
 * REPEATABLE READ, READ ONLY transaction) until `fn` settles, so several pg_dump runs given
 * `--snapshot=<id>` see one database state.
 */
export async function withSnapshot<T>(conn: ConnInfo, connectTimeoutSeconds: number, fn: (snapshot: string, client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(conn, { connectTimeoutSeconds }, async (c) => {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const r = await c.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
    try {
      return await fn(r.rows[0]!.id, c);
    } finally {
      await c.query('ROLLBACK').catch(() => {});
    }
  });
}

/** Reads the server's version and identity. */
export async function probeServer(conn: ConnInfo, connectTimeoutSeconds: number): Promise<ServerInfo> {
  return withClient(conn, { connectTimeoutSeconds }, async (c) => {
    const r = await c.query<{ num: string; version: string; db: string; usr: string; bytes: string }>(
      `select current_setting('server_version_num') as num, current_setting('server_version') as version,
              current_database() as db, current_user as usr, pg_database_size(current_database())::text as bytes`,
    );
    let systemId: string | null = null;
    try {
      const s = await c.query<{ id: string }>('select system_identifier::text as id from pg_control_system()');
      systemId = s.rows[0]?.id ?? null;
    } catch {
      systemId = null; // not permitted on some managed servers; identity falls back to host/port
    }
    const row = r.rows[0]!;
    const versionNum = Number(row.num);
    return {
      versionNum,
      major: serverMajor(versionNum),
      version: row.version,
      database: row.db,
      user: row.usr,
      systemId,
      databaseBytes: Number(row.bytes),
    };
  });
}
