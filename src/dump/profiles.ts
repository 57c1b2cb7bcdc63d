/**
 * Dump profiles: which commands make one backup file.
 *
 * `full`: one `pg_dump --format=plain` of the whole database.
 *
 * `supabase`: one file that restores, with `psql -v ON_ERROR_STOP=1 --single-transaction` as the
 * project's own `postgres` (not a superuser), into a fresh Supabase project everything the user
 * defined — all read from one consistent snapshot:
 *   1. roles (`pg_dumpall --roles-only --no-role-passwords`): the platform's reserved roles and
 *      their memberships commented out (every project has them, and supautils blocks changing
 *      them), the others created only when missing — a role the target already has is kept as it
 *      is; attributes only a superuser may state are left out;
 *   2. the schema without the platform-managed schemas, born with the built-in default privileges
 *      (the target's are set aside for the restore, see {@link neutralizeDefaultPrivileges}), so
 *      pg_dump's GRANT/REVOKE lines give every object exactly the source's privileges; what only
 *      the platform may run commented out line by line or statement by statement (as the Supabase
 *      CLI's dump scripts do); then the user's triggers and policies on the platform's tables, read
 *      from the snapshot;
 *   3. the data of the user schemas plus `auth` and `storage` (without their migration tables),
 *      under `session_replication_role = replica` so triggers and foreign keys do not fire;
 *   4. after the data: the materialized views the source had populated, refreshed in dependency
 *      order, and last the user's event triggers (so none fires during the restore).
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

/**
 * The role a project's owner works as, and restores as. Its default privileges, ownerships and
 * grants are the user's own and travel with the backup, although it is a reserved role.
 */
const PROJECT_ROLE = 'postgres';

/** Whether the backup carries a role's default privileges, ownerships and memberships: the user's roles and postgres. */
function isCarriedRole(name: string): boolean {
  return name === PROJECT_ROLE || !isReservedRole(name);
}

/**
 * Roles no one but the platform may grant (supautils.reserved_memberships: the server-file roles,
 * authenticator, and — in newer configurations — every service role, dashboard_user, pgbouncer).
 */
function isReservedMembership(role: string): boolean {
  return ['pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'authenticator', 'dashboard_user', 'pgbouncer'].includes(role) || role.startsWith('supabase_');
}

/**
 * Reserved roles whose settings postgres may change on the platform: the ones marked `*` in
 * supautils.reserved_roles (the API roles and authenticator), and postgres itself. The others'
 * settings are the platform's (supautils refuses ALTER ROLE on them).
 */
const SETTABLE_RESERVED_ROLES: readonly string[] = ['anon', 'authenticated', 'authenticator', 'service_role', PROJECT_ROLE];

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

/** Whether a schema is one of {@link PLATFORM_SCHEMAS} (whose patterns all end in `*`). */
export function isPlatformSchema(name: string): boolean {
  return PLATFORM_SCHEMAS.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

/** The platform schemas whose rows are the project's own data and travel with the backup. */
export const DATA_SCHEMAS_KEPT: readonly string[] = ['auth', 'storage'];

/**
 * Tables of kept schemas whose rows are not copied: the migration histories (the target project
 * has its own) and, as the Supabase CLI's documented recipe leaves them out, the storage
 * service's vector-bucket tables.
 */
export const DATA_TABLES_EXCLUDED: readonly string[] = ['auth.schema_migrations', 'storage.migrations', 'storage.buckets_vectors', 'storage.vector_indexes'];

/**
 * Platform schemas whose tables carry the user's row-level security policies: supautils lets
 * postgres create and drop policies on them (policy_grants) without owning the tables.
 */
export const POLICY_SCHEMAS: readonly string[] = ['auth', 'storage', 'realtime'];

/** Configuration parameters supautils lets a project set on reserved roles. */
const ALLOWED_ROLE_SETTINGS = /^"?(statement_timeout|session_replication_role|track_io_timing|pgrst\.[\w.]+|pgaudit\.[\w.]+)"?$/;

/**
 * Foreign-server and user-mapping options that hold a secret (password, sslpassword, API keys and
 * secrets of Supabase wrappers, tokens): never written into a backup. `password_required` is a
 * flag, not a secret.
 */
const SECRET_OPTION = /^(?!password_required$).*(passw(?:or)?d|secret|token|api_?key|private_?key)/i;

/** Extensions that create their own schema: `WITH SCHEMA` would name one the schema part leaves out. */
const OWN_SCHEMA_EXTENSIONS = /^CREATE EXTENSION IF NOT EXISTS "(pg_tle|pgsodium|pgmq)" WITH SCHEMA "[^"]+";$/;

/** The profile a backup uses: configured, else `supabase` for Supabase hosts or when a project ref is set. */
export function effectiveProfile(config: Config, conn: ConnInfo): DumpProfile {
  if (config.dump.profile) return config.dump.profile;
  return isSupabaseHost(effective(conn).host) || config.supabase.projectRef ? 'supabase' : 'full';
}

const IDENT = '"(?:[^"]|"")+"';
const quoted = /^"((?:[^"]|"")+)"/;
const roleOf = (rest: string) => quoted.exec(rest)?.[1]?.replace(/""/g, '"') ?? null;
/** `"a""b"` → `a"b`. */
const unquote = (q: string) => (q.startsWith('"') ? q.slice(1, -1).replace(/""/g, '"') : q);
const qi = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
const sqlArray = (names: readonly string[]) => `ARRAY[${names.map(literal).join(', ')}]::text[]`;

/** A dollar-quote tag that does not occur in `body`. */
function dollarTag(body: string): string {
  for (let i = 0; ; i++) {
    const tag = i === 0 ? '$hb$' : `$hb${i}$`;
    if (!body.includes(tag)) return tag;
  }
}

/** Comments a statement out, every line of it (a literal may span lines). */
function commentOut(stmt: string, note?: string): string {
  const body = stmt
    .split('\n')
    .map((l) => `-- ${l}`)
    .join('\n');
  return note ? `-- hybrid-backup: ${note}\n${body}` : body;
}

/**
 * A statement the target may or may not allow (ownership by another role, a superuser-only form
 * supautils allows on the platform): run in a DO block that, when refused for want of privilege,
 * says so in a WARNING naming it and goes on — the restore does not fail for it.
 */
function tryOrWarn(stmt: string, what: string, hint: string, conditions = 'insufficient_privilege'): string {
  const tag = dollarTag(stmt + what + hint);
  return `DO ${tag} BEGIN ${stmt} EXCEPTION WHEN ${conditions} THEN RAISE WARNING 'hybrid-backup: % not restored: %', ${literal(what)}, SQLERRM USING HINT = ${literal(hint)}; END ${tag};`;
}

/**
 * Follows plain-dump SQL line by line far enough to tell where statements begin and end: string
 * literals (E'' too), quoted identifiers, dollar quotes, comments. A line that begins inside a
 * statement (a function body, a multi-line literal) is never taken for a statement of its own.
 * Inside literals it jumps with indexOf, so long data lines cost little.
 */
export class SqlStatementLexer {
  /** Inside: `'` literal, `E` literal with backslash escapes, `"` identifier, `$tag$` dollar quote, `/*` comment. */
  private mode: string | null = null;
  private commentDepth = 0;
  /** A statement has begun and not yet ended with `;`. */
  private open = false;

  /** Whether the next line begins between statements. */
  get atStatementStart(): boolean {
    return !this.open && this.mode === null;
  }

  /** Feeds one line (without its newline); returns whether the text after it is between statements. */
  feed(line: string): boolean {
    // a psql meta-command (\connect, \restrict) between statements is not SQL
    if (this.atStatementStart && line.startsWith('\\')) return true;
    let i = 0;
    const n = line.length;
    while (i < n) {
      const m = this.mode;
      if (m === "'" || m === 'E') {
        const q = line.indexOf("'", i);
        if (m === 'E') {
          const b = line.indexOf('\\', i);
          if (b >= 0 && (q < 0 || b < q)) {
            i = b + 2;
            continue;
          }
        }
        if (q < 0) return false;
        if (line[q + 1] === "'") {
          i = q + 2;
          continue;
        }
        this.mode = null;
        i = q + 1;
      } else if (m === '"') {
        const q = line.indexOf('"', i);
        if (q < 0) return false;
        this.mode = null;
        i = q + 1;
      } else if (m === '/*') {
        const close = line.indexOf('*/', i);
        const nest = line.indexOf('/*', i);
        if (nest >= 0 && (close < 0 || nest < close)) {
          this.commentDepth++;
          i = nest + 2;
        } else if (close >= 0) {
          i = close + 2;
          if (--this.commentDepth === 0) this.mode = null;
        } else {
          return false;
        }
      } else if (m !== null) {
        const end = line.indexOf(m, i);
        if (end < 0) return false;
        this.mode = null;
        i = end + m.length;
      } else {
        const c = line[i]!;
        if (c === ';') {
          this.open = false;
          i++;
        } else if (c === '-' && line[i + 1] === '-') {
          break;
        } else if (c === '/' && line[i + 1] === '*') {
          this.mode = '/*';
          this.commentDepth = 1;
          i += 2;
        } else if (c === "'") {
          const e = line[i - 1];
          this.mode = (e === 'E' || e === 'e') && !/[\w$]/.test(line[i - 2] ?? '') ? 'E' : "'";
          this.open = true;
          i++;
        } else if (c === '"') {
          this.mode = '"';
          this.open = true;
          i++;
        } else if (c === '$' && !/[\w$]/.test(line[i - 1] ?? '')) {
          const tag = /^\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$/.exec(line.slice(i, i + 64))?.[0];
          this.open = true;
          if (tag) {
            this.mode = tag;
            i += tag.length;
          } else {
            i++;
          }
        } else {
          if (c !== ' ' && c !== '\t' && c !== '\r') this.open = true;
          i++;
        }
      }
    }
    return this.atStatementStart;
  }
}

/**
 * A line transform for a plain dump that hands `rewrite` whole statements: a statement that
 * begins with one of `multiLine`'s forms and spans lines is held until its last line and rewritten
 * whole; other lines that begin a statement are rewritten one by one; lines inside a statement
 * (function bodies, literals) pass untouched.
 */
function statementTransform(multiLine: RegExp, rewrite: (stmt: string) => string): (line: string) => string | null {
  const lexer = new SqlStatementLexer();
  let held: string[] | null = null;
  return (line) => {
    if (held) {
      held.push(line);
      if (!lexer.feed(line)) return null;
      const stmt = held.join('\n');
      held = null;
      return rewrite(stmt);
    }
    const starts = lexer.atStatementStart;
    const ends = lexer.feed(line);
    if (!starts) return line;
    if (!ends) {
      if (!multiLine.test(line)) return line;
      held = [line];
      return null;
    }
    return rewrite(line);
  };
}

// ---------------------------------------------------------------------------------------------
// 1. roles
// ---------------------------------------------------------------------------------------------

/**
 * The roles this restore created, a JSON array in a session setting: the role part runs before
 * anything else, and `RESET ALL` after it clears the setting.
 */
const CREATED_ROLES = "coalesce(nullif(current_setting('hb.created_roles', true), ''), '[]')::jsonb";

/** Runs `stmt` only when this restore created `role`: a role the target already has is kept as it is. */
function ifCreated(role: string, stmt: string): string {
  const tag = dollarTag(stmt);
  return `DO ${tag} BEGIN IF ${CREATED_ROLES} ? ${literal(role)} THEN ${stmt} END IF; END ${tag};`;
}

/**
 * Attributes that need a superuser to state, left out of a role's `ALTER ROLE ... WITH`: a new
 * role has NOSUPERUSER, NOREPLICATION and NOBYPASSRLS already (and supautils refuses any
 * SUPERUSER/NOSUPERUSER from postgres). The positive ones stay: a role that had them is not
 * restored as if it had not, and the error names the attribute.
 */
function withoutSuperuserDefaults(alter: string): string {
  return alter.replace(/ (NOSUPERUSER|NOREPLICATION|NOBYPASSRLS)(?= |;)/g, '');
}

/**
 * Rewrites one statement of `pg_dumpall --roles-only --quote-all-identifiers` output for a
 * Supabase project:
 * - reserved roles are neither created nor altered, except the settings supautils lets postgres
 *   change on the API roles and authenticator; their comments are the platform's;
 * - other roles are created only when missing, and only a role created here gets the backup's
 *   attributes (without the superuser-only NO… ones), settings and comment;
 * - memberships: the platform's among its own roles are left out; a user role granted to a
 *   platform role (`GRANT "app_reporter" TO "authenticated"`) and a platform role granted to a
 *   user role are kept — postgres may do both on the platform — except membership in the roles
 *   supautils reserves, and each is tried so that a target refusing one only warns; `GRANTED BY`
 *   is kept only for postgres (a non-superuser can name only itself);
 * - parameter privileges (`GRANT SET ON PARAMETER`) to platform roles are the platform's.
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
  m = /^ALTER ROLE (.+)$/s.exec(line);
  if (m) {
    const role = roleOf(m[1]!);
    if (role === null) return line;
    if (!isReservedRole(role)) {
      if (!line.endsWith(';')) return line;
      return ifCreated(role, line.startsWith(`ALTER ROLE ${qi(role)} WITH `) ? withoutSuperuserDefaults(line) : line);
    }
    const setting = / SET (\S+) (TO|=) /.exec(line)?.[1];
    return setting && ALLOWED_ROLE_SETTINGS.test(setting) && SETTABLE_RESERVED_ROLES.includes(role) ? line : commentOut(line);
  }
  m = /^COMMENT ON ROLE (.+)$/s.exec(line);
  if (m) {
    const role = roleOf(m[1]!);
    if (role === null || !line.endsWith(';')) return line;
    return isReservedRole(role) ? commentOut(line) : ifCreated(role, line);
  }
  m = new RegExp(`^GRANT (${IDENT}) TO (${IDENT})(.*?)(?: GRANTED BY (${IDENT}))?;$`, 's').exec(line);
  if (m) {
    const [granted, grantee, grantor] = [unquote(m[1]!), unquote(m[2]!), m[4] ? unquote(m[4]) : null];
    if (isReservedRole(granted) && isReservedRole(grantee)) return commentOut(line);
    if (grantee === 'supabase_admin') return commentOut(line);
    if (isReservedRole(granted) && isReservedMembership(granted)) return `${commentOut(line)} -- supautils lets no one but the platform grant this role`;
    const grant = `GRANT ${m[1]} TO ${m[2]}${m[3]}${grantor === PROJECT_ROLE ? ` GRANTED BY ${qi(PROJECT_ROLE)}` : ''};`;
    if (!isReservedRole(granted) && !isReservedRole(grantee)) return grant;
    // Into or out of a platform role: postgres may on the platform (supautils; WITH ADMIN on the
    // API roles from PostgreSQL 16), a target may still refuse one — said, not fatal.
    return tryOrWarn(grant, `membership of ${grantee} in ${granted}`, 'the restoring role needs the ADMIN option on the granted role (or CREATEROLE on PostgreSQL 15 and older)', 'insufficient_privilege OR invalid_grant_operation');
  }
  m = new RegExp(`^(?:GRANT|REVOKE) .+ ON PARAMETER .+ (?:TO|FROM) (${IDENT})(?: WITH GRANT OPTION)?;$`, 's').exec(line);
  if (m) {
    const grantee = unquote(m[1]!);
    if (isReservedRole(grantee)) return commentOut(line);
    return tryOrWarn(line, 'a parameter privilege', 'setting privileges on parameters takes a superuser (or the grant option)');
  }
  return line;
}

/** The roles part's transform: {@link supabaseRoleLine} on whole statements. */
export function supabaseRoleTransform(): (line: string) => string | null {
  return statementTransform(/^(CREATE ROLE|ALTER ROLE|COMMENT ON ROLE|GRANT|REVOKE) /, supabaseRoleLine);
}

// ---------------------------------------------------------------------------------------------
// 2. schema (and the statements of the data part outside its COPY blocks)
// ---------------------------------------------------------------------------------------------

/**
 * What an ACL statement (`GRANT|REVOKE <privileges> ON <kind> <object> TO|FROM ...`) is about: the
 * kind (`TABLE`, `FUNCTION`, `SCHEMA`, `FOREIGN DATA WRAPPER`, ...) and, for an object in a
 * schema, the schema. Column lists and quoted names may hold anything, so the ` ON ` is looked
 * for outside double quotes.
 */
export function aclTarget(stmt: string): { kind: string; schema: string | null; name: string } | null {
  if (!/^(GRANT|REVOKE) /.test(stmt)) return null;
  let i = 0;
  let on = -1;
  while (i < stmt.length) {
    const c = stmt[i]!;
    if (c === '"') {
      const q = stmt.indexOf('"', i + 1);
      if (q < 0) return null;
      i = q + 1;
    } else if (c === ' ' && stmt.startsWith(' ON ', i)) {
      on = i + 4;
      break;
    } else {
      i++;
    }
  }
  if (on < 0) return null;
  const m = /^(TABLE|SEQUENCE|FUNCTION|PROCEDURE|TYPE|DOMAIN|SCHEMA|FOREIGN DATA WRAPPER|FOREIGN SERVER|LANGUAGE|LARGE OBJECT|TABLESPACE|DATABASE|PARAMETER) /.exec(stmt.slice(on));
  if (!m) return null;
  const rest = stmt.slice(on + m[0].length);
  const first = new RegExp(`^(${IDENT}|[\\w$]+)`).exec(rest)?.[1] ?? '';
  const schemaBound = !['SCHEMA', 'FOREIGN DATA WRAPPER', 'FOREIGN SERVER', 'LANGUAGE', 'LARGE OBJECT', 'TABLESPACE', 'DATABASE', 'PARAMETER'].includes(m[1]!);
  return { kind: m[1]!, schema: schemaBound && rest[first.length] === '.' ? unquote(first) : null, name: unquote(first) };
}

/**
 * `ALTER ... OWNER TO` by the rules of the target: never to supabase_admin (the platform's
 * superuser), FDW owners are the platform's (after-create scripts), postgres's ownership stays as
 * is; another owner is kept where the target lets the restoring role give it (a superuser, or
 * postgres as a member of that role) and otherwise said in a warning.
 */
function rewriteOwner(stmt: string): string | null {
  const m = new RegExp(`^ALTER (.+) OWNER TO (${IDENT});$`).exec(stmt);
  if (!m) return null;
  const owner = unquote(m[2]!);
  if (owner === 'supabase_admin') return commentOut(stmt);
  if (/^FOREIGN DATA WRAPPER /.test(m[1]!)) return commentOut(stmt);
  if (owner === PROJECT_ROLE) return stmt;
  return tryOrWarn(stmt, `the owner of ${m[1]} (${owner})`, `the restoring role must be a member of ${qi(owner)} to give it the object; it stays owned by the restoring role`);
}

/** Statements of the data part, outside COPY: pg_dump's transaction around large objects, their owners. */
export function supabaseDataLine(stmt: string): string {
  if (stmt === 'BEGIN;' || stmt === 'COMMIT;') {
    return `-- ${stmt} -- hybrid-backup: pg_dump's own transaction around the large objects would end psql's --single-transaction early; the whole file is one transaction`;
  }
  if (/^SET SESSION AUTHORIZATION /.test(stmt)) return tryOrWarn(stmt, 'the grantor of the next privileges', 'they are granted by the restoring role instead');
  return rewriteOwner(stmt) ?? stmt;
}

/** The data part's transform (lines outside COPY blocks only). */
export function supabaseDataTransform(): (line: string) => string | null {
  return statementTransform(/^COMMENT ON /, supabaseDataLine);
}

/**
 * The `OPTIONS (...)` of a `CREATE SERVER` / `CREATE USER MAPPING` statement without its secrets
 * (passwords, API keys, tokens), and the names of those left out.
 */
export function withoutSecretOptions(stmt: string): { stmt: string; removed: string[] } {
  const at = stmt.indexOf(' OPTIONS (');
  if (at < 0 || !stmt.endsWith(');')) return { stmt, removed: [] };
  const body = stmt.slice(at + ' OPTIONS ('.length, -2);
  const options: Array<{ name: string; text: string }> = [];
  const re = new RegExp(`\\s*(${IDENT}|[\\w$]+) (E?'(?:[^'\\\\]|''|\\\\.)*')\\s*(,|$)`, 'sy');
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const m = re.exec(body);
    if (!m) {
      // not the shape pg_dump writes: left as it is unless it may hold a secret, then all go
      return SECRET_OPTION.test(body.replace(/'(?:[^']|'')*'/g, "''").replace(/[^\w]+/g, ' ').trim().split(' ').find((w) => SECRET_OPTION.test(w)) ?? '')
        ? { stmt: `${stmt.slice(0, at)};`, removed: ['(all options)'] }
        : { stmt, removed: [] };
    }
    options.push({ name: unquote(m[1]!), text: `${m[1]} ${m[2]}` });
    pos = re.lastIndex;
  }
  const kept = options.filter((o) => !SECRET_OPTION.test(o.name));
  const removed = options.filter((o) => SECRET_OPTION.test(o.name)).map((o) => o.name);
  if (removed.length === 0) return { stmt, removed };
  const head = stmt.slice(0, at);
  return { stmt: kept.length ? `${head} OPTIONS (\n    ${kept.map((o) => o.text).join(',\n    ')}\n);` : `${head};`, removed };
}

/**
 * Rewrites one statement of the schema part (`pg_dump --schema-only --quote-all-identifiers`
 * without the platform schemas) for a Supabase project; `eventTriggers` collects which event
 * triggers are the platform's (true) and the user's (false). What it comments out, and why:
 * - GRANT/REVOKE on any object in a platform schema (the extension members' ACLs pg_dump writes
 *   even with the schema left out; "grant options cannot be granted back to your own grantor"),
 *   and on foreign-data wrappers to platform roles (the after-create scripts give them);
 * - ALTER DEFAULT PRIVILEGES for platform roles (supabase_admin's; a role postgres is not) or in a
 *   platform schema;
 * - OWNER TO supabase_admin, FDW owner changes ({@link rewriteOwner});
 * - COMMENT ON EXTENSION (the extension's, owned by the platform);
 * - the platform's publication `supabase_realtime` (CREATE and OWNER: every project has it; its
 *   `ADD TABLE` lines are the user's and stay) and the realtime service's `supabase_realtime_*`;
 * - every event trigger: the platform's (their function in a platform schema) are the target's
 *   already; the user's are created at the end of the file, after the data, from the snapshot;
 * - pg_cron's own policies.
 * Secrets in foreign-server and user-mapping options are left out, and said.
 */
export function supabaseSchemaLine(stmt: string, eventTriggers: Map<string, boolean> = new Map()): string {
  const adp = new RegExp(`^ALTER DEFAULT PRIVILEGES FOR ROLE (${IDENT})(?: IN SCHEMA (${IDENT}))? `).exec(stmt);
  if (adp) {
    if (!isCarriedRole(unquote(adp[1]!))) return commentOut(stmt);
    if (adp[2] && isPlatformSchema(unquote(adp[2]))) return commentOut(stmt);
    return stmt;
  }
  const acl = aclTarget(stmt);
  if (acl) {
    if (acl.schema !== null && isPlatformSchema(acl.schema)) return commentOut(stmt);
    if (acl.kind === 'SCHEMA' && isPlatformSchema(acl.name)) return commentOut(stmt);
    if (acl.kind === 'FOREIGN DATA WRAPPER' || acl.kind === 'LANGUAGE') {
      const grantee = new RegExp(`(?:TO|FROM) (${IDENT}|PUBLIC)(?: WITH GRANT OPTION)?;$`).exec(stmt)?.[1];
      if (grantee && grantee !== 'PUBLIC' && isReservedRole(unquote(grantee))) return commentOut(stmt);
      return tryOrWarn(stmt, `a privilege on ${acl.kind.toLowerCase()} ${acl.name}`, `the restoring role needs the grant option on ${acl.name}`);
    }
    return stmt;
  }
  if (/^SET SESSION AUTHORIZATION /.test(stmt)) return supabaseDataLine(stmt);
  if (/^COMMENT ON EXTENSION /.test(stmt)) return commentOut(stmt);
  if (OWN_SCHEMA_EXTENSIONS.test(stmt)) return stmt.replace(/ WITH SCHEMA "[^"]+";$/, ';');

  const pub = new RegExp(`^(?:CREATE|ALTER|COMMENT ON) PUBLICATION (${IDENT})`).exec(stmt);
  if (pub) {
    const name = unquote(pub[1]!);
    if (name.startsWith('supabase_realtime_')) return commentOut(stmt);
    if (name === 'supabase_realtime' && !/ ADD TABLE /.test(stmt)) return commentOut(stmt);
    if (/^CREATE PUBLICATION .* FOR ALL TABLES/.test(stmt) || /^ALTER PUBLICATION .* ADD TABLES IN SCHEMA /.test(stmt)) {
      return tryOrWarn(stmt, `publication ${name}`, 'a publication FOR ALL TABLES or TABLES IN SCHEMA takes a superuser (supautils lets postgres create one on the platform)');
    }
    return rewriteOwner(stmt) ?? stmt;
  }

  const evt = new RegExp(`^(?:CREATE|ALTER|COMMENT ON) EVENT TRIGGER (${IDENT})`).exec(stmt);
  if (evt) {
    const name = unquote(evt[1]!);
    if (stmt.startsWith('CREATE ')) {
      const fnSchema = new RegExp(`EXECUTE (?:FUNCTION|PROCEDURE) (${IDENT})\\.`).exec(stmt)?.[1];
      eventTriggers.set(name, fnSchema !== undefined && isPlatformSchema(unquote(fnSchema)));
    }
    return eventTriggers.get(name) === false
      ? commentOut(stmt, stmt.startsWith('CREATE ') ? `your event trigger ${qi(name)} is created at the end of this file, after the data` : undefined)
      : commentOut(stmt, stmt.startsWith('CREATE ') ? `the platform's own event trigger ${qi(name)}` : undefined);
  }

  if (/^CREATE (SERVER|USER MAPPING) /.test(stmt)) {
    const { stmt: safe, removed } = withoutSecretOptions(stmt);
    const mapping = new RegExp(`^CREATE USER MAPPING FOR (${IDENT}|PUBLIC) SERVER (${IDENT})`).exec(stmt);
    const what = mapping ? `USER MAPPING FOR ${mapping[1]} SERVER ${mapping[2]}` : `SERVER ${/^CREATE SERVER (\S+)/.exec(stmt)?.[1]}`;
    if (removed[0] === '(all options)') {
      return `${safe}\n-- hybrid-backup: the options of this ${mapping ? 'user mapping' : 'server'} are not in the backup (they could not be told apart from a secret, never written into one); set them again:\n--   ALTER ${what} OPTIONS (ADD ... '...');`;
    }
    if (removed.length > 0) {
      return `${safe}\n-- hybrid-backup: the ${removed.map((r) => `"${r}"`).join(', ')} option${removed.length > 1 ? 's' : ''} of this ${mapping ? 'user mapping' : 'server'} ${removed.length > 1 ? 'are' : 'is'} not in the backup (never written into one); set ${removed.length > 1 ? 'them' : 'it'} again:\n--   ALTER ${what} OPTIONS (${removed.map((r) => `ADD ${r} '...'`).join(', ')});`;
    }
    // pg_user_mappings shows another role's options only to that role and superusers
    if (mapping && !/ OPTIONS \(/.test(stmt) && mapping[1] !== 'PUBLIC' && unquote(mapping[1]!) !== PROJECT_ROLE) {
      return `${stmt}\n-- hybrid-backup: another role's user-mapping options are readable only by that role and superusers; if this one had options (user, password), set them again:\n--   ALTER ${what} OPTIONS (ADD user '...', ADD password '...');`;
    }
    return stmt;
  }

  if (/^CREATE POLICY "cron_job_/.test(stmt) || /^ALTER TABLE "cron"\./.test(stmt)) return commentOut(stmt);
  return rewriteOwner(stmt) ?? stmt;
}

/** The schema part's transform: {@link supabaseSchemaLine} on whole statements. */
export function supabaseSchemaTransform(): (line: string) => string | null {
  const eventTriggers = new Map<string, boolean>();
  return statementTransform(/^(CREATE (EVENT TRIGGER|USER MAPPING|SERVER|PUBLICATION|EXTENSION)|ALTER (EVENT TRIGGER|PUBLICATION|DEFAULT PRIVILEGES)|COMMENT ON|GRANT|REVOKE) /, (stmt) =>
    supabaseSchemaLine(stmt, eventTriggers),
  );
}

/**
 * The start of the schema part. A Supabase project's default privileges (`FOR ROLE postgres IN
 * SCHEMA public GRANT ALL ON TABLES|FUNCTIONS|SEQUENCES TO anon, authenticated, service_role`)
 * would give every table, sequence and function this restore creates ALL for the API roles —
 * and pg_dump's GRANT/REVOKE lines are written against the built-in defaults, so they never take
 * that back: a table the source had closed to anon would come back open. So, inside the
 * restore's transaction, before anything is created:
 * - the restoring role's default privileges in the schemas this backup fills (`userSchemas`, the
 *   source's; when unknown, every schema that is not the platform's) and its global ones are
 *   emptied — objects are born with the built-in defaults, and pg_dump's lines give exactly the
 *   source's privileges;
 * - so are those of every role whose default privileges the backup carries (postgres, the user's
 *   roles) that the restoring role may change: the backup's own ALTER DEFAULT PRIVILEGES lines at
 *   the end of the schema then set them as the source had them, not added to the target's;
 * - when the restoring role's own are not carried by the backup (restoring as supabase_admin,
 *   whose lines are the platform's), they are put back after the schema
 *   ({@link restoreSetAsideDefaultPrivileges}).
 * Default privileges elsewhere (platform schemas, schemas the backup does not fill) are not touched.
 */
export function neutralizeDefaultPrivileges(userSchemas: readonly string[] | null): string {
  const inSchemas = userSchemas
    ? `n.nspname = ANY (${sqlArray(userSchemas)})`
    : `NOT (n.nspname = ANY (${sqlArray(PLATFORM_SCHEMAS.filter((p) => !p.endsWith('*')))}) OR ${PLATFORM_SCHEMAS.filter((p) => p.endsWith('*'))
        .map((p) => `n.nspname LIKE ${literal(`${p.slice(0, -1).replace(/_/g, '\\_')}%`)}`)
        .join(' OR ')})`;
  const carried = `(r.rolname = ${literal(PROJECT_ROLE)} OR NOT (r.rolname = ANY (${sqlArray(RESERVED_ROLES)}) OR r.rolname LIKE 'supabase\\_%' OR r.rolname LIKE 'pg\\_%'))`;
  return `-- hybrid-backup: the objects below are born with the built-in default privileges, not the
-- target's (a Supabase project grants ALL on every new table, sequence and function in public to
-- anon, authenticated and service_role): pg_dump's GRANT/REVOKE lines then give each exactly the
-- source's privileges. The default privileges of the schemas restored here are set as the source
-- had them by the ALTER DEFAULT PRIVILEGES lines at the end of the schema.
DO $hb$
DECLARE
  d record;
  g record;
  kind text;
  head text;
  undo text[] := '{}';
BEGIN
  FOR d IN
    SELECT a.defaclnamespace AS ns, n.nspname AS schema, r.rolname AS role, a.defaclobjtype AS t, a.defaclacl AS acl
      FROM pg_catalog.pg_default_acl a
      JOIN pg_catalog.pg_roles r ON r.oid = a.defaclrole
      LEFT JOIN pg_catalog.pg_namespace n ON n.oid = a.defaclnamespace
     WHERE (a.defaclnamespace = 0 OR ${inSchemas})
       AND (r.rolname = current_user OR (${carried} AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')))
  LOOP
    kind := CASE d.t WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END;
    CONTINUE WHEN kind IS NULL;
    head := pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I', d.role) || CASE WHEN d.ns = 0 THEN '' ELSE pg_catalog.format(' IN SCHEMA %I', d.schema) END;
    IF d.role = current_user THEN
      -- how to put it back: from the built-in defaults (global) or nothing (in a schema)
      IF d.ns = 0 THEN
        undo := undo || pg_catalog.format('%s REVOKE ALL ON %s FROM %I, PUBLIC', head, kind, d.role);
      END IF;
      FOR g IN SELECT e.grantee, e.privilege_type, e.is_grantable FROM pg_catalog.aclexplode(d.acl) e LOOP
        undo := undo || pg_catalog.format('%s GRANT %s ON %s TO %s%s', head, g.privilege_type, kind,
          CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
          CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
      END LOOP;
    END IF;
    FOR g IN SELECT DISTINCT e.grantee FROM pg_catalog.aclexplode(d.acl) e LOOP
      EXECUTE pg_catalog.format('%s REVOKE ALL ON %s FROM %s', head, kind,
        CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END);
    END LOOP;
    IF d.ns = 0 THEN
      -- a global entry goes back to the built-in defaults
      EXECUTE pg_catalog.format('%s GRANT ALL ON %s TO %I', head, kind, d.role);
      IF d.t = 'f' THEN EXECUTE pg_catalog.format('%s GRANT EXECUTE ON FUNCTIONS TO PUBLIC', head); END IF;
      IF d.t = 'T' THEN EXECUTE pg_catalog.format('%s GRANT USAGE ON TYPES TO PUBLIC', head); END IF;
    END IF;
  END LOOP;
  -- the restoring role's are put back after the schema when the backup does not carry them
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = current_user AND ${carried}) THEN
    PERFORM pg_catalog.set_config('hb.default_privileges_undo', pg_catalog.array_to_json(undo)::text, false);
  END IF;
END $hb$;

`;
}

/** After the schema: the restoring role's default privileges set aside by {@link neutralizeDefaultPrivileges}, when the backup does not carry them. */
export function restoreSetAsideDefaultPrivileges(): string {
  return `DO $hb$
DECLARE s text;
BEGIN
  FOR s IN SELECT pg_catalog.json_array_elements_text(coalesce(nullif(pg_catalog.current_setting('hb.default_privileges_undo', true), ''), '[]')::json) LOOP
    EXECUTE s;
  END LOOP;
END $hb$;
`;
}

// ---------------------------------------------------------------------------------------------
// 3. what pg_dump leaves out, read from the snapshot
// ---------------------------------------------------------------------------------------------

type Queryable = { query: (sql: string, params?: unknown[]) => Promise<{ rows: Array<Record<string, any>> }> };

/**
 * `CREATE TRIGGER` statements for the user's triggers on platform tables (the classic
 * `on_auth_user_created` on auth.users calling a function in public), and their comments: pg_dump
 * leaves them out with the excluded schema, so they are read from the snapshot and appended to
 * the schema part.
 */
export async function platformTableTriggers(client: Queryable, serverMajor: number): Promise<string> {
  const kept = DATA_SCHEMAS_KEPT;
  const platform = PLATFORM_SCHEMAS.filter((s) => !s.includes('*'));
  // An empty search_path makes pg_get_triggerdef qualify every name, as the restore needs.
  await client.query(`SELECT set_config('search_path', '', true)`);
  const r = await client.query(
    `SELECT pg_get_triggerdef(t.oid) AS def,
            CASE WHEN d.description IS NOT NULL THEN format('COMMENT ON TRIGGER %I ON %I.%I IS %L;', t.tgname, n.nspname, c.relname, d.description) END AS comment
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_proc p ON p.oid = t.tgfoid
       JOIN pg_namespace pn ON pn.oid = p.pronamespace
       LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_trigger'::regclass AND d.objsubid = 0
      WHERE NOT t.tgisinternal AND n.nspname = ANY($1) AND NOT (pn.nspname = ANY($2)) AND pn.nspname NOT LIKE 'pg\\_%'
      ORDER BY n.nspname, c.relname, t.tgname`,
    [kept, platform],
  );
  if (r.rows.length === 0) return '';
  const create = serverMajor >= 14 ? 'CREATE OR REPLACE TRIGGER' : 'CREATE TRIGGER';
  // COMMENT ON TRIGGER takes owning the table, which postgres does not on the platform (supautils
  // grants policies and dropping triggers there, not comments): tried, and said when refused.
  const comment = (c: string) => `\n${tryOrWarn(c, 'a comment on your trigger on a platform table', 'commenting on a trigger takes owning its table')}`;
  const lines = r.rows.map((x) => `${String(x.def).replace(/^CREATE TRIGGER/, create)};${x.comment ? comment(x.comment) : ''}`);
  return `-- your triggers on platform tables (pg_dump leaves them out with the platform schemas)\n${lines.join('\n')}\n\n`;
}

/**
 * The user's row-level security policies on the platform's tables (storage.objects,
 * storage.buckets, auth.*, realtime.*), with their comments: pg_dump leaves them out with the
 * platform schemas (the Supabase CLI too: its docs say to diff them by hand). Each is dropped
 * first if the target has one of that name (a restore drill's platform layout carries them), then
 * created as pg_dump would write it.
 */
export async function platformTablePolicies(client: Queryable): Promise<string> {
  await client.query(`SELECT set_config('search_path', '', true)`);
  const r = await client.query(
    `SELECT format('%I', p.polname) AS name, format('%I.%I', n.nspname, c.relname) AS tbl, p.polpermissive AS permissive, p.polcmd AS cmd,
            CASE WHEN p.polroles = '{0}' THEN NULL
                 ELSE (SELECT string_agg(CASE WHEN u.r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(u.r)) END, ', ' ORDER BY u.r = 0 DESC, pg_get_userbyid(u.r))
                         FROM unnest(p.polroles) AS u(r)) END AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS chk,
            d.description AS comment
       FROM pg_policy p
       JOIN pg_class c ON c.oid = p.polrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass AND d.objsubid = 0
      WHERE n.nspname = ANY($1)
      ORDER BY n.nspname, c.relname, p.polname`,
    [POLICY_SCHEMAS],
  );
  if (r.rows.length === 0) return '';
  const cmd: Record<string, string> = { r: ' FOR SELECT', a: ' FOR INSERT', w: ' FOR UPDATE', d: ' FOR DELETE', '*': '' };
  const out = r.rows.map((p) => {
    const create = `CREATE POLICY ${p.name} ON ${p.tbl}${p.permissive ? '' : ' AS RESTRICTIVE'}${cmd[p.cmd] ?? ''}${p.roles ? ` TO ${p.roles}` : ''}${p.qual ? ` USING (${p.qual})` : ''}${p.chk ? ` WITH CHECK (${p.chk})` : ''};`;
    const comment = p.comment === null ? '' : `\nCOMMENT ON POLICY ${p.name} ON ${p.tbl} IS ${literal(p.comment)};`;
    return `DROP POLICY IF EXISTS ${p.name} ON ${p.tbl};\n${create}${comment}`;
  });
  return `-- your policies on platform tables (pg_dump leaves them out with the platform schemas; supautils lets postgres manage them)\n${out.join('\n')}\n\n`;
}

/**
 * `REFRESH MATERIALIZED VIEW` for each materialized view of the user's schemas the source had
 * populated, each after those it reads (through views too): the schema part creates them `WITH NO
 * DATA`, and the refresh belongs to neither `--schema-only` nor `--data-only`. One that reads an
 * unpopulated one could not be refreshed (the source could not have either): said, not run.
 */
export async function materializedViewRefreshes(client: Queryable): Promise<string> {
  const views = (
    await client.query(
      `SELECT c.oid::text AS oid, n.nspname AS schema, format('%I.%I', n.nspname, c.relname) AS name, c.relispopulated AS populated
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' ORDER BY n.nspname, c.relname`,
    )
  ).rows.filter((v) => !isPlatformSchema(v.schema));
  if (views.length === 0) return '';
  const deps = (
    await client.query(
      `WITH RECURSIVE reads(mv, rel) AS (
         SELECT r.ev_class, d.refobjid
           FROM pg_rewrite r
           JOIN pg_class m ON m.oid = r.ev_class AND m.relkind = 'm'
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
          WHERE d.refobjid <> r.ev_class
         UNION
         SELECT reads.mv, d.refobjid
           FROM reads
           JOIN pg_class v ON v.oid = reads.rel AND v.relkind = 'v'
           JOIN pg_rewrite r ON r.ev_class = v.oid
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
          WHERE d.refobjid <> v.oid
       )
       SELECT DISTINCT reads.mv::text AS mv, reads.rel::text AS dep FROM reads JOIN pg_class c ON c.oid = reads.rel AND c.relkind = 'm'`,
    )
  ).rows;
  const byOid = new Map(views.map((v) => [String(v.oid), v]));
  const needs = new Map<string, string[]>();
  for (const d of deps) if (byOid.has(d.mv) && byOid.has(d.dep)) needs.set(d.mv, [...(needs.get(d.mv) ?? []), d.dep]);
  // depth-first, in name order: each view after what it reads
  const order: Array<{ name: string; populated: boolean; blockedBy?: string }> = [];
  const done = new Map<string, boolean>(); // oid → refreshable
  const visit = (oid: string): boolean => {
    const seen = done.get(oid);
    if (seen !== undefined) return seen;
    done.set(oid, false); // no cycles among views, but never loop
    const v = byOid.get(oid)!;
    let blockedBy: string | undefined;
    for (const dep of needs.get(oid) ?? []) if (!visit(dep) && blockedBy === undefined) blockedBy = byOid.get(dep)!.name;
    const ok = v.populated && blockedBy === undefined;
    done.set(oid, ok);
    if (v.populated) order.push({ name: v.name, populated: true, ...(blockedBy ? { blockedBy } : {}) });
    return ok;
  };
  for (const v of views) visit(String(v.oid));
  if (order.length === 0) return '';
  const lines = order.map((v) => (v.blockedBy ? `-- REFRESH MATERIALIZED VIEW ${v.name}; -- it reads ${v.blockedBy}, which the source had not populated` : `REFRESH MATERIALIZED VIEW ${v.name};`));
  return `-- materialized views the source had populated, each after those it reads\n${lines.join('\n')}\n\n`;
}

/**
 * The user's event triggers (their function in a user schema; the platform's are the target
 * project's own), created last so none fires during the restore. Creating one takes a superuser;
 * on Supabase, supautils lets postgres — elsewhere each is tried and, when refused, said in a
 * WARNING naming it, without failing the restore.
 */
export async function userEventTriggers(client: Queryable): Promise<string> {
  const r = await client.query(
    `SELECT e.evtname AS name, e.evtevent AS event, e.evtenabled AS enabled, e.evttags AS tags, pg_get_userbyid(e.evtowner) AS owner,
            pn.nspname AS fn_schema, format('%I.%I', pn.nspname, p.proname) AS fn, d.description AS comment
       FROM pg_event_trigger e
       JOIN pg_proc p ON p.oid = e.evtfoid
       JOIN pg_namespace pn ON pn.oid = p.pronamespace
       LEFT JOIN pg_description d ON d.objoid = e.oid AND d.classoid = 'pg_event_trigger'::regclass AND d.objsubid = 0
      ORDER BY e.evtname`,
  );
  const mine = r.rows.filter((e) => !isPlatformSchema(e.fn_schema));
  if (mine.length === 0) return '';
  const enable: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
  const out = mine.map((e) => {
    const tags = Array.isArray(e.tags) && e.tags.length > 0 ? ` WHEN TAG IN (${(e.tags as string[]).map(literal).join(', ')})` : '';
    const create = `CREATE EVENT TRIGGER ${qi(e.name)} ON ${qi(e.event)}${tags} EXECUTE FUNCTION ${e.fn}();`;
    const body = [
      create,
      ...(enable[e.enabled] ? [`ALTER EVENT TRIGGER ${qi(e.name)} ${enable[e.enabled]};`] : []),
      ...(e.comment !== null ? [`COMMENT ON EVENT TRIGGER ${qi(e.name)} IS ${literal(e.comment)};`] : []),
      // the owner must be a superuser, or (supautils) the privileged role postgres
      `IF current_user <> ${literal(e.owner)} THEN BEGIN ALTER EVENT TRIGGER ${qi(e.name)} OWNER TO ${qi(e.owner)}; EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING 'hybrid-backup: event trigger % stays owned by %: %', ${literal(qi(e.name))}, current_user, SQLERRM; END; END IF;`,
    ].join('\n  ');
    const what = `event trigger ${qi(e.name)} (${e.event}, ${e.fn}())`;
    const tag = dollarTag(body + what);
    return `DO ${tag}
BEGIN
  ${body}
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'hybrid-backup: % not restored: %', ${literal(what)}, SQLERRM
    USING HINT = ${literal(`creating an event trigger takes a superuser (on Supabase, supautils lets postgres create one); create it as such a role: ${create}`)};
END ${tag};`;
  });
  return `-- your event triggers, last: none fires during the restore\n${out.join('\n')}\n\n`;
}

/** What one Supabase-profile backup reads from its snapshot besides what pg_dump writes. */
export interface SupabaseSnapshotSql {
  /** The source's schemas the backup fills: all but the platform's. */
  userSchemas: string[];
  /** After the schema part, before the data: triggers and policies on platform tables. */
  afterSchema: string;
  /** After the data: materialized-view refreshes, then event triggers. */
  afterData: string;
}

/**
 * Reads, in the backup's snapshot (`client` holds it), what the Supabase profile adds to pg_dump's
 * output.
 */
export async function readSupabaseSnapshotSql(client: Queryable, serverMajor: number): Promise<SupabaseSnapshotSql> {
  const triggers = await platformTableTriggers(client, serverMajor);
  const policies = await platformTablePolicies(client);
  const userSchemas = (await client.query('SELECT nspname AS n FROM pg_catalog.pg_namespace ORDER BY 1')).rows.map((r) => String(r.n)).filter((n) => !isPlatformSchema(n));
  const refreshes = await materializedViewRefreshes(client);
  const eventTriggers = await userEventTriggers(client);
  return { userSchemas, afterSchema: triggers + policies, afterData: refreshes + eventTriggers };
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
  /** Major version of pg_dump. */
  pgDumpMajor: number;
}

/**
 * The parts of a backup file for a profile. `snapshot` is an exported snapshot id; `fromSnapshot`
 * (supabase profile) what {@link readSupabaseSnapshotSql} read in it — or, as before, only SQL
 * to append to the schema part.
 */
export function profileParts(profile: DumpProfile, dbname: string, tools: ProfileTools, snapshot: string | null, database: string, fromSnapshot: string | SupabaseSnapshotSql = ''): DumpPart[] {
  const common = ['--format=plain', '--no-password', `--dbname=${dbname}`];
  if (profile === 'full') {
    // In the backup's exported snapshot: the fingerprint and the dump see one database state.
    return [{ kind: 'command', label: 'pg_dump', path: tools.pgDump, args: [...common, ...(snapshot ? [`--snapshot=${snapshot}`] : [])], marker: DUMP_COMPLETE }];
  }
  if (!tools.pgDumpAll) throw new Error('the supabase profile needs pg_dumpall');
  const extra: SupabaseSnapshotSql = typeof fromSnapshot === 'string' ? { userSchemas: [], afterSchema: fromSnapshot, afterData: '' } : fromSnapshot;
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
      args: ['--roles-only', '--quote-all-identifiers', '--no-role-passwords', '--no-password', `--dbname=${dbname}`],
      marker: CLUSTER_DUMP_COMPLETE,
      transformLine: supabaseRoleTransform(),
    },
    { kind: 'text', text: `RESET ALL;\n\n${neutralizeDefaultPrivileges(typeof fromSnapshot === 'string' ? null : extra.userSchemas)}` },
    {
      kind: 'command',
      label: 'pg_dump (schema)',
      path: tools.pgDump,
      // No --extension pattern (it would also drop servers, user mappings, casts, publications,
      // the user's event triggers and global default privileges): what only the platform may run
      // is commented out statement by statement instead, as the Supabase CLI does. Comments stay.
      args: [...common, '--schema-only', '--quote-all-identifiers', ...snap, ...excludeSchemas(PLATFORM_SCHEMAS)],
      marker: DUMP_COMPLETE,
      transformLine: supabaseSchemaTransform(),
    },
    {
      kind: 'text',
      text: `${restoreSetAsideDefaultPrivileges()}RESET ALL;\n\n${extra.afterSchema}-- data: triggers and foreign keys stay quiet while rows are loaded\nSET session_replication_role = replica;\n\n`,
    },
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
      transformLine: supabaseDataTransform(),
      copyData: true,
    },
    { kind: 'text', text: `RESET ALL;\n\n${extra.afterData}--\n-- hybrid-backup: end of Supabase-profile backup\n--\n` },
  ];
}
