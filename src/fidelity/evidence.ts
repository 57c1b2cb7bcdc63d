/**
 * What a backup records, in its own snapshot, for a drill to prove the restore against: the
 * session settings that shape COPY's text (so the drill reads the data back the way pg_dump wrote
 * it), the cluster's roles (a drill server must have those a dump names), the database's
 * extensions (created first on a drill server), and the catalog fingerprint.
 */
import type { LibpqEnv } from '../config/environment.js';
import type { BackupEvidence, DigestSession, DumpProfile } from '../domain/types.js';
import { isReservedRole, PLATFORM_SCHEMAS } from '../dump/profiles.js';
import type { FingerprintOptions } from './fingerprint.js';

type Queryable = { query: (sql: string, params?: unknown[]) => Promise<{ rows: any[] }> };

/**
 * The settings pg_dump's COPY output depends on and does not fix itself (it fixes DateStyle,
 * IntervalStyle and extra_float_digits): the server's TimeZone and bytea_output, and the encoding
 * — as libpq would give them to pg_dump (PGTZ and PGCLIENTENCODING, when set, win).
 */
export async function readDigestSession(c: Queryable, env: LibpqEnv): Promise<DigestSession> {
  const r = await c.query(
    `SELECT current_setting('TimeZone') AS tz, current_setting('bytea_output') AS bo, pg_encoding_to_char(encoding) AS enc FROM pg_database WHERE datname = current_database()`,
  );
  const row = r.rows[0] as { tz: string; bo: string; enc: string };
  return { timeZone: env.PGTZ || row.tz, byteaOutput: row.bo, encoding: env.PGCLIENTENCODING || row.enc };
}

/**
 * What counts as the user's in a fingerprint: for a supabase-profile backup, everything outside
 * the platform's schemas (plus the user's policies, triggers and grants on auth, storage and
 * realtime tables), with the platform's roles reserved; for a full backup, every schema but
 * PostgreSQL's own.
 */
export function fingerprintOptions(profile: DumpProfile): FingerprintOptions {
  return profile === 'supabase'
    ? { platformSchemas: PLATFORM_SCHEMAS, keptPlatformSchemas: ['auth', 'storage', 'realtime'], isReservedRole }
    : { platformSchemas: ['pg_*', 'information_schema'], keptPlatformSchemas: [], isReservedRole: (r) => r.startsWith('pg_') };
}

/** The evidence a backup records besides what the dump stream gives (data digests, sequence positions). */
export async function readEvidence(c: Queryable, fingerprint: () => Promise<unknown>, env: LibpqEnv): Promise<Omit<BackupEvidence, 'digests' | 'sequences'>> {
  const session = await readDigestSession(c, env);
  const roles = (await c.query(`SELECT rolname AS r FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1`)).rows.map((x: { r: string }) => x.r);
  const extensions = (
    await c.query(`SELECT e.extname AS name, n.nspname AS schema FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1`)
  ).rows as Array<{ name: string; schema: string }>;
  return { session, roles, extensions, fingerprint: await fingerprint() };
}
