/** Real-PostgreSQL helpers: throwaway databases with unique names, so runs can share a server. */
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import pg from 'pg';

export const ADMIN_URL = process.env.HB_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

export function dbUrl(name: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

export function uniqueName(prefix: string): string {
  return `hbt_${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
}

export async function query<T extends pg.QueryResultRow = any>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

export async function createDatabase(prefix: string): Promise<{ name: string; url: string }> {
  const name = uniqueName(prefix);
  await query(ADMIN_URL, `CREATE DATABASE "${name}"`);
  return { name, url: dbUrl(name) };
}

export async function dropDatabase(name: string): Promise<void> {
  await query(ADMIN_URL, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}

export async function databaseExists(name: string): Promise<boolean> {
  return (await query(ADMIN_URL, 'select 1 from pg_database where datname = $1', [name])).length > 0;
}

/** Runs SQL through the real psql (stops at the first error). */
export async function psql(url: string, sql: string): Promise<string> {
  const r = await execa('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', '-'], { input: sql });
  return r.stdout;
}

/** A plain pg_dump of a database with the per-run \restrict keys removed, for comparing two databases. */
export async function dumpForCompare(url: string, extra: string[] = []): Promise<string> {
  const r = await execa('pg_dump', ['--no-owner', ...extra, '-d', url], { maxBuffer: 512 * 1024 * 1024 });
  return r.stdout
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join('\n');
}
