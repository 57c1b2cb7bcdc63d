/**
 * Dump profiles: which commands make one backup file.
 *
 * `full`: one `pg_dump --format=plain` of the whole database.
 *
 * `supabase`: one file that restores into a fresh Supabase project the way the Supabase CLI's
 * documented backup recipe does, from one consistent snapshot:
 *   1. roles (`pg_dumpall --roles-only --no-role-passwords`), the platform's reserved roles
 *      commented out (every project has them, and supautils blocks changing them), the others
 *      created only when missing — a role the target already has is kept as it is (its
 *      attributes and settings untouched);
 *   2. the schema without the platform-managed schemas;
 *   3. the data of the user schemas plus `auth` and `storage` (without their migration tables),
 *      under `session_replication_role = replica` so triggers and foreign keys do not fire.
 */
import type { Config } from '../config/schema.js';
import { HbError } from '../domain/errors.js';
import type { DumpProfile } from '../domain/types.js';
import { type ConnInfo, effective, isSupabaseHost } from '../pg/connection.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import type { DumpPart } from './pipeline.js';
import { CLUSTER_DUMP_COMPLETE, DUMP_COMPLETE } from './stream-tail.js';

/** Roles every Supabase project has, managed by the platform (and the extensions it ships). */
export const RESERVED_ROLES: readonly string[] = [
  'anon',
  'authenticated',
  'authenticator',
  'dashboard_user',
  'pgbouncer',
  'postgres',
  'service_role',
  'supabase_admin',
  'supabase_auth_admin',
  'supabase_functions_admin',
  'supabase_read_only_user',
  'supabase_realtime_admin',
  'supabase_replication_admin',
  'supabase_storage_admin',
  'supabase_etl_admin',
  'pgsodium_keyholder',
  'pgsodium_keyiduser',
  'pgsodium_keymaker',
  'pgtle_admin',
];

export function isReservedRole(name: string): boolean {
  return RESERVED_ROLES.includes(name) || name.startsWith('supabase_') || name.startsWith('pg_');
}

/** Schemas the platform creates and manages (pg_dump patterns). Left out of the schema part. */
export const PLATFORM_SCHEMAS: readonly string[] = [
  'information_schema',
  'pg_*',
  '_analytics',
  '_realtime',
  '_supavisor',
  'auth',
  'cron',
  'dbdev',
  'etl',
  'extensions',
  'graphql',
  'graphql_public',
  'net',
  'pgbouncer',
  'pgmq',
  'pgsodium',
  'pgsodium_masks',
  'pgtle',
  'realtime',
  'repack',
  'storage',
  'supabase_functions',
  'supabase_migrations',
  'tiger',
  'tiger_data',
  'timescaledb_*',
  '_timescaledb_*',
  'topology',
  'vault',
];

/** The platform schemas whose rows are the project's own data and travel with the backup. */
export const DATA_SCHEMAS_KEPT: readonly string[] = ['auth', 'storage'];

/** Migration-history tables of kept schemas: the target project has its own. */
export const DATA_TABLES_EXCLUDED: readonly string[] = ['auth.schema_migrations', 'storage.migrations'];

/** Configuration parameters supautils lets a project set on reserved roles. */
const ALLOWED_ROLE_SETTINGS = /^"?(statement_timeout|session_replication_role|track_io_timing|pgrst\.[\w.]+|pgaudit\.[\w.]+)"?$/;

/** The profile a backup uses: configured, else `supabase` for Supabase hosts or when a project ref is set. */
export function effectiveProfile(config: Config, conn: ConnInfo): DumpProfile {
  if (config.dump.profile) return config.dump.profile;
  return isSupabaseHost(effective(conn).host) || config.supabase.projectRef ? 'supabase' : 'full';
}

const quoted = /^"((?:[^"]|"")+)"/;
const roleOf = (rest: string) => quoted.exec(rest)?.[1]?.replace(/""/g, '"') ?? null;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** A dollar-quote tag that does not occur in `body`. */
function dollarTag(body: string): string {
  for (let i = 0; ; i++) {
    const tag = i === 0 ? '$hb$' : `$hb${i}$`;
    if (!body.includes(tag)) return tag;
  }
}

/**
 * The roles this restore created, a JSON array in a session setting: the role part runs before
 * anything else, and `RESET ALL` after it clears the setting.
 */
const CREATED_ROLES = "coalesce(nullif(current_setting('hb.created_roles', true), ''), '[]')::jsonb";

/**
 * Rewrites one line of `pg_dumpall --roles-only --quote-all-identifiers` output for a Supabase
 * project: reserved roles are neither created nor altered (except the settings supautils allows),
 * membership grants to them are dropped, other roles are created only when missing — and only a
 * role created here gets the backup's attributes and settings; one the target already has is
 * kept as it is.
 */
export function supabaseRoleLine(line: string): string {
  let m = /^CREATE ROLE (.+);$/.exec(line);
  if (m) {
    const role = roleOf(m[1]!);
    if (role === null) return line;
    if (isReservedRole(role)) return `-- ${line} -- platform role`;
    const tag = dollarTag(line);
    return `DO ${tag} BEGIN ${line} PERFORM set_config('hb.created_roles', (${CREATED_ROLES} || to_jsonb(${literal(role)}::text))::text, false); EXCEPTION WHEN duplicate_object THEN RAISE NOTICE 'role exists, kept as it is'; END ${tag};`;
  }
  m = /^ALTER ROLE (.+)$/.exec(line);
  if (m) {
    const role = roleOf(m[1]!);
    if (role === null) return line;
    if (!isReservedRole(role)) {
      if (!line.endsWith(';')) return line;
      const tag = dollarTag(line);
      return `DO ${tag} BEGIN IF ${CREATED_ROLES} ? ${literal(role)} THEN ${line} END IF; END ${tag};`;
    }
    const setting = / SET (\S+) (TO|=) /.exec(line)?.[1];
    return setting && ALLOWED_ROLE_SETTINGS.test(setting) ? line : `-- ${line}`;
  }
  m = /^GRANT .+ TO (.+?)( WITH .*| GRANTED BY .*)?;$/.exec(line);
  if (m) {
    const grantee = roleOf(m[1]!);
    if (grantee !== null && isReservedRole(grantee)) return `-- ${line}`;
    return line.replace(/ GRANTED BY "supabase_admin"/, '');
  }
  return line;
}

const platformSchemaNames = new Set(PLATFORM_SCHEMAS.filter((s) => !s.includes('*')));

/**
 * Rewrites one line of the schema part: statements only the platform's superuser may run are
 * commented out (default privileges of supabase_admin, ownership by it, grants on platform
 * schemas, pg_cron's own policies).
 */
export function supabaseSchemaLine(line: string): string {
  if (/^ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_admin"/.test(line)) return `-- ${line}`;
  if (/ OWNER TO "supabase_admin";$/.test(line)) return `-- ${line}`;
  const onSchema = /^(GRANT|REVOKE) .+ ON SCHEMA "([^"]+)" /.exec(line);
  if (onSchema && platformSchemaNames.has(onSchema[2]!)) return `-- ${line}`;
  if (/^CREATE POLICY "cron_job_/.test(line) || /^ALTER TABLE "cron"\./.test(line)) return `-- ${line}`;
  return line;
}

/**
 * `CREATE TRIGGER` statements for the user's triggers on platform tables (the classic
 * `on_auth_user_created` on auth.users calling a function in public): pg_dump leaves them out
 * with the excluded schema, so they are read from the snapshot and appended to the schema part.
 */
export async function platformTableTriggers(client: { query: (sql: string, params?: unknown[]) => Promise<{ rows: Array<{ def: string }> }> }, serverMajor: number): Promise<string> {
  const kept = DATA_SCHEMAS_KEPT;
  const platform = PLATFORM_SCHEMAS.filter((s) => !s.includes('*'));
  // An empty search_path makes pg_get_triggerdef qualify every name, as the restore needs.
  await client.query(`SELECT set_config('search_path', '', true)`);
  const r = await client.query(
    `SELECT pg_get_triggerdef(t.oid) AS def
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_proc p ON p.oid = t.tgfoid
       JOIN pg_namespace pn ON pn.oid = p.pronamespace
      WHERE NOT t.tgisinternal AND n.nspname = ANY($1) AND NOT (pn.nspname = ANY($2)) AND pn.nspname NOT LIKE 'pg\\_%'
      ORDER BY n.nspname, c.relname, t.tgname`,
    [kept, platform],
  );
  if (r.rows.length === 0) return '';
  const create = serverMajor >= 14 ? 'CREATE OR REPLACE TRIGGER' : 'CREATE TRIGGER';
  return `-- your triggers on platform tables (pg_dump leaves them out with the platform schemas)\n${r.rows.map((x) => `${x.def.replace(/^CREATE TRIGGER/, create)};`).join('\n')}\n\n`;
}

/**
 * What a fresh Supabase project has before anything is restored into it, as the source had it:
 * the platform schemas present, the extensions installed in them, the reserved roles, and the
 * schema-only DDL of those schemas. A supabase-profile backup records it in its sidecar, so a
 * restore drill can give its scratch database the platform without the source database.
 */
export interface PlatformLayout {
  schemas: string[];
  extensions: Array<{ name: string; schema: string }>;
  /** The reserved roles the source's server has. */
  roles: string[];
  /** `pg_dump --schema-only` of `schemas` ("" when there are none). */
  ddl: string;
  /** Major version of the pg_dump that wrote `ddl`. */
  pgDumpMajor: number;
}

/** The platform schemas a layout covers: the named ones (no patterns), not information_schema. */
const LAYOUT_SCHEMAS = PLATFORM_SCHEMAS.filter((s) => !s.includes('*') && s !== 'information_schema');

/** True when `x` has the shape of a PlatformLayout (a sidecar is a file anyone can edit). */
export function isPlatformLayout(x: unknown): x is PlatformLayout {
  const l = x as PlatformLayout | null;
  const strings = (a: unknown) => Array.isArray(a) && a.every((v) => typeof v === 'string');
  return (
    !!l &&
    typeof l === 'object' &&
    strings(l.schemas) &&
    strings(l.roles) &&
    typeof l.ddl === 'string' &&
    Array.isArray(l.extensions) &&
    l.extensions.every((e) => !!e && typeof e.name === 'string' && typeof e.schema === 'string')
  );
}

/**
 * Reads the platform layout of the database `client` is connected to; `pg_dump` (with `snapshot`
 * when given: the backup's own) writes the DDL.
 * @throws HbError `dump-failed` when pg_dump fails, `dump-aborted` when stopped
 */
export async function readPlatformLayout(
  client: { query: (sql: string, params?: unknown[]) => Promise<{ rows: Array<Record<string, string>> }> },
  opts: { pgDump: string; pgDumpMajor: number; dbname: string; env: Record<string, string>; snapshot: string | null; signal?: AbortSignal },
): Promise<PlatformLayout> {
  const schemas = (await client.query('SELECT nspname AS n FROM pg_catalog.pg_namespace WHERE nspname = ANY($1) ORDER BY 1', [LAYOUT_SCHEMAS])).rows.map((r) => r.n!);
  const extensions = (
    await client.query(
      'SELECT e.extname AS name, n.nspname AS schema FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = ANY($1) ORDER BY 1',
      [LAYOUT_SCHEMAS],
    )
  ).rows.map((r) => ({ name: r.name!, schema: r.schema! }));
  const roles = (await client.query('SELECT rolname AS r FROM pg_catalog.pg_roles ORDER BY 1')).rows.map((r) => r.r!).filter(isReservedRole);
  if (schemas.length === 0) return { schemas, extensions, roles, ddl: '', pgDumpMajor: opts.pgDumpMajor };
  const { execa } = await loadExeca();
  const snap = opts.snapshot ? [`--snapshot=${opts.snapshot}`] : [];
  const r = await execa(opts.pgDump, ['--schema-only', '--no-password', `--dbname=${opts.dbname}`, ...snap, ...schemas.map((s) => `--schema=${s}`)], {
    env: { ...opts.env, PGAPPNAME: 'hybrid-backup' },
    extendEnv: true,
    reject: false,
    maxBuffer: 256 * 1024 * 1024,
    cancelSignal: opts.signal,
  });
  if (opts.signal?.aborted || r.isCanceled) throw new HbError('dump-aborted', 'stopped before pg_dump of the platform schemas finished');
  if (r.exitCode !== 0) throw new HbError('dump-failed', `pg_dump of the platform schemas failed: ${redact(String(r.stderr || `exit code ${r.exitCode}`)).trim().split('\n').slice(0, 3).join(' | ')}`);
  return { schemas, extensions, roles, ddl: String(r.stdout), pgDumpMajor: opts.pgDumpMajor };
}

export interface ProfileTools {
  pgDump: string;
  pgDumpAll: string | null;
  /** Major version of pg_dump (the `--extension` option needs 14+). */
  pgDumpMajor: number;
}

/**
 * The parts of a backup file for a profile. `snapshot` is an exported snapshot id and
 * `afterSchema` SQL appended to the schema part (supabase profile).
 */
export function profileParts(profile: DumpProfile, dbname: string, tools: ProfileTools, snapshot: string | null, database: string, afterSchema = ''): DumpPart[] {
  const common = ['--format=plain', '--no-password', `--dbname=${dbname}`];
  if (profile === 'full') {
    return [{ kind: 'command', label: 'pg_dump', path: tools.pgDump, args: common, marker: DUMP_COMPLETE }];
  }
  if (!tools.pgDumpAll) throw new Error('the supabase profile needs pg_dumpall');
  const snap = snapshot ? [`--snapshot=${snapshot}`] : [];
  const excludeSchemas = (list: readonly string[]) => list.map((s) => `--exclude-schema=${s}`);
  return [
    {
      kind: 'text',
      text: `--\n-- hybrid-backup: Supabase-profile backup of database "${database}": roles, schema, data${snapshot ? ' (one snapshot)' : ''}\n--\n\n`,
    },
    {
      kind: 'command',
      label: 'pg_dumpall (roles)',
      path: tools.pgDumpAll,
      args: ['--roles-only', '--quote-all-identifiers', '--no-role-passwords', '--no-comments', '--no-password', `--dbname=${dbname}`],
      marker: CLUSTER_DUMP_COMPLETE,
      transformLine: supabaseRoleLine,
    },
    { kind: 'text', text: 'RESET ALL;\n\n' },
    {
      kind: 'command',
      label: 'pg_dump (schema)',
      path: tools.pgDump,
      args: [
        ...common,
        '--schema-only',
        '--quote-all-identifiers',
        '--no-comments',
        ...snap,
        ...excludeSchemas(PLATFORM_SCHEMAS),
        // With an extension pattern pg_dump leaves out event triggers (the platform's own).
        ...(tools.pgDumpMajor >= 14 ? ['--extension=*'] : []),
      ],
      marker: DUMP_COMPLETE,
      transformLine: supabaseSchemaLine,
    },
    { kind: 'text', text: `RESET ALL;\n\n${afterSchema}-- data: triggers and foreign keys stay quiet while rows are loaded\nSET session_replication_role = replica;\n\n` },
    {
      kind: 'command',
      label: 'pg_dump (data)',
      path: tools.pgDump,
      args: [
        ...common,
        '--data-only',
        '--quote-all-identifiers',
        ...snap,
        ...excludeSchemas(PLATFORM_SCHEMAS.filter((s) => !DATA_SCHEMAS_KEPT.includes(s))),
        ...DATA_TABLES_EXCLUDED.map((t) => `--exclude-table=${t}`),
      ],
      marker: DUMP_COMPLETE,
    },
    { kind: 'text', text: 'RESET ALL;\n\n--\n-- hybrid-backup: end of Supabase-profile backup\n--\n' },
  ];
}
