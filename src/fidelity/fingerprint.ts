/**
 * A catalog fingerprint of the user-facing database, and a comparison that names each difference:
 * the restore drill's proof that a restore is faithful object by object, not only row by row.
 *
 * At backup time {@link readFingerprint} runs inside the backup's own snapshot transaction: plain
 * SELECTs only (the sequence reads each inside a savepoint rolled back at once, which only
 * releases their locks); the session settings it needs are set with `set_config(..., true)`, local
 * to that transaction, and put back afterwards. The drill reads the restored database the same way
 * and {@link compareFingerprints} says what differs, in words.
 *
 * What counts. "User schemas" are the schemas no `platformSchemas` pattern matches (pg_dump
 * patterns, `*` and `?`; `pg_*` and `information_schema` never count). Objects that belong to an
 * extension never count (the extension itself does: its name and schema). Covered:
 * - schemas, extensions (name, schema; the version only as a note);
 * - tables, partitioned tables, views, materialized views (and whether populated), foreign tables,
 *   sequences (options, OWNED BY, and their position: `last_value`/`is_called`, exactly): kind,
 *   persistence, RLS enabled/forced, replica identity, options, partition bounds and keys,
 *   inheritance, view definitions, foreign server and options; columns (position, type, NOT NULL,
 *   default, identity, generated, collation, storage, FDW options), constraints, indexes (not the
 *   ones backing a constraint), triggers (not internal, not partition clones), rules, policies;
 * - functions, procedures, aggregates; enums, domains (and their constraints), composite types,
 *   ranges, base types; collations, operators, operator classes and families, text search
 *   configurations and dictionaries, conversions, extended statistics (existence);
 * - publications (not the platform's `supabase_realtime` itself, but its user tables);
 * - roles for which `isReservedRole` is false: attributes, settings, comments; memberships where
 *   either side is such a role; the settings of reserved roles a project may set
 *   (`isAllowedReservedRoleSetting`: statement_timeout, pgrst.*, ...);
 * - default privileges of non-reserved roles and `postgres`, global and in user schemas;
 * - foreign data wrappers not from an extension, foreign servers, user mappings (options with
 *   every password/secret masked: a fingerprint never holds one), casts involving a user-defined
 *   type or function, event triggers whose function is in a user schema;
 * - comments on all of these, and ACLs.
 * On tables of `keptPlatformSchemas` (auth, storage, realtime) only the user's own things count:
 * every policy (a fresh project has none there but the platform's, which a faithful restore must
 * reproduce anyway), triggers whose function is not in a platform schema, and grants to
 * non-reserved roles.
 *
 * Rules a restore as a non-superuser (`postgres` on a Supabase project) imposes:
 * - ACLs are compared per grantee, with the grantor dropped (a restore may grant as another role)
 *   and the owner's own entry dropped; for an object a reserved role other than `postgres` owns,
 *   `postgres`'s entry is dropped too (restored by `postgres`, it becomes the owner, holding every
 *   privilege implicitly). A NULL ACL counts as the built-in default (`acldefault`), so an
 *   explicit ACL equal to it is no difference. Stored as sorted canonical text, `anon=r,authenticated=arwd`
 *   (`*` after a letter: with grant option; PUBLIC as `PUBLIC`).
 * - Owners are compared only when the SOURCE owner is `postgres` or a non-reserved role. An owner
 *   that is another reserved role (`supabase_admin`, `supabase_storage_admin`...) cannot be given
 *   back by a non-superuser restore: it is recorded in {@link Fingerprint.notes} instead, and the
 *   restored object's owner is then not compared (the expected side decides).
 * - SUPERUSER, REPLICATION and BYPASSRLS of non-reserved roles are notes, not differences: a
 *   non-superuser restore cannot set them (supautils refuses SUPERUSER outright).
 * - Extension versions are notes: a restore creates whatever version the target ships.
 * {@link compareNotes} compares the notes, for the operator's information only.
 *
 * Values a role cannot read (a sequence it may not SELECT, user-mapping options hidden from it)
 * are recorded as {@link UNREADABLE} and never compared.
 *
 * For a restore to fingerprint equal it must also: refresh the materialized views the source had
 * populated; give back every comment, every policy and user trigger on auth/storage/realtime
 * tables, the user tables of supabase_realtime, servers, user mappings (with their options),
 * casts, event triggers (owned by postgres) and global default privileges; re-assert the source's
 * exact ACLs (a target's default privileges widen what it creates); and set every sequence as
 * the dump did. Sequences are not transactional: on a database written to while the backup runs,
 * the value read here can differ from the one pg_dump wrote a moment later.
 *
 * Cost: one query per category, none per object (sequence positions: one UNION ALL per 100
 * sequences, each inside a savepoint rolled back at once, which releases the sequences' locks).
 */
import { HbError } from '../domain/errors.js';

export interface FingerprintOptions {
  /** Platform schemas, as pg_dump patterns (`pg_*` allowed). Every other schema is a user schema. */
  platformSchemas: readonly string[];
  /** Platform schemas whose tables' user-made policies, triggers and grants count (e.g. auth, storage, realtime). */
  keptPlatformSchemas: readonly string[];
  /** Roles the platform manages: their attributes are not compared, and they own nothing a restore can reproduce. */
  isReservedRole: (name: string) => boolean;
  /** Settings of reserved roles a project may change (default: statement_timeout, session_replication_role, track_io_timing, pgrst.*, pgaudit.*). */
  isAllowedReservedRoleSetting?: (name: string) => boolean;
  /** Publications the platform creates: their own definition is not compared, their user tables are (default `supabase_realtime`). */
  platformPublications?: readonly string[];
}

export interface Fingerprint {
  version: 1;
  /** Stable, readable key -> canonical definition. Compared by {@link compareFingerprints}. */
  objects: Record<string, string>;
  /** What a non-superuser restore cannot reproduce (platform owners, SUPERUSER/REPLICATION/BYPASSRLS, extension versions): informational. */
  notes: Record<string, string>;
}

export interface Difference {
  key: string;
  kind: 'missing' | 'extra' | 'changed';
  message: string;
}

/** Minimal client: one connection (a pg.Client or a checked-out pool client, never a Pool). */
export interface FingerprintClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>;
}

/** The value of something the fingerprinting role may not read; never compared. */
export const UNREADABLE = '(not readable by the role that took the fingerprint)';

/** Publications the platform creates (Supabase's realtime). */
export const PLATFORM_PUBLICATIONS: readonly string[] = ['supabase_realtime'];

const DEFAULT_ALLOWED_RESERVED_SETTING = /^(statement_timeout|session_replication_role|track_io_timing|pgrst\.[\w.]+|pgaudit\.[\w.]+)$/;

/** Session settings that shape catalog text; set transaction-locally and put back afterwards. */
const SESSION: ReadonlyArray<[string, string]> = [
  ['search_path', ''], // every name schema-qualified, identically on both sides
  ['TimeZone', 'UTC'], // timestamptz constants in defaults, partition bounds, VALID UNTIL
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'postgres'],
  ['extra_float_digits', '1'],
  ['bytea_output', 'hex'],
];

/** A transaction-local marker: set, it shows the session is inside a transaction block. */
const MARKER = 'hb.fingerprint';

const SEQUENCE_BATCH = 100;

/** A pg_dump pattern (`*`, `?`) as an anchored POSIX regular expression. */
export function patternToRegex(pattern: string): string {
  let out = '';
  for (const ch of pattern) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else if (/[\\^$.|+()[\]{}]/.test(ch)) out += `\\${ch}`;
    else out += ch;
  }
  return `^${out}$`;
}

// ------------------------------------------------------------------------------------------------
// ACLs
// ------------------------------------------------------------------------------------------------

/** Privilege letters in aclitem order, and their words. */
const PRIVILEGES: ReadonlyArray<[string, string]> = [
  ['a', 'INSERT'],
  ['r', 'SELECT'],
  ['w', 'UPDATE'],
  ['d', 'DELETE'],
  ['D', 'TRUNCATE'],
  ['x', 'REFERENCES'],
  ['t', 'TRIGGER'],
  ['X', 'EXECUTE'],
  ['U', 'USAGE'],
  ['C', 'CREATE'],
  ['T', 'TEMPORARY'],
  ['c', 'CONNECT'],
  ['s', 'SET'],
  ['A', 'ALTER SYSTEM'],
  ['m', 'MAINTAIN'],
];
const LETTER_ORDER = new Map(PRIVILEGES.map(([l], i) => [l, i]));
const WORDS = new Map(PRIVILEGES);

/** Reads a role name at `i` (double-quoted with `""` escapes, or bare up to one of `stops`). */
function readName(s: string, i: number, stops: string): [string, number] {
  if (s[i] === '"') {
    let out = '';
    i++;
    while (i < s.length) {
      if (s[i] === '"') {
        if (s[i + 1] === '"') {
          out += '"';
          i += 2;
          continue;
        }
        i++;
        break;
      }
      out += s[i++];
    }
    return [out, i];
  }
  let j = i;
  while (j < s.length && !stops.includes(s[j]!)) j++;
  return [s.slice(i, j), j];
}

/** A role name as canonical ACL text shows it. */
function roleText(name: string): string {
  if (name === '') return 'PUBLIC';
  return /^[a-z_][a-z0-9_$]*$/.test(name) && name !== 'PUBLIC' ? name : `"${name.replace(/"/g, '""')}"`;
}

/** grantee ('' = PUBLIC) -> letter -> grantable */
type AclMap = Map<string, Map<string, boolean>>;

function parseAclItems(items: readonly string[] | null): AclMap {
  const out: AclMap = new Map();
  for (const item of items ?? []) {
    const [grantee, i] = readName(item, 0, '=');
    if (item[i] !== '=') continue;
    let j = i + 1;
    const privs = out.get(grantee) ?? new Map<string, boolean>();
    while (j < item.length && item[j] !== '/') {
      const letter = item[j]!;
      const grantable = item[j + 1] === '*';
      privs.set(letter, (privs.get(letter) ?? false) || grantable);
      j += grantable ? 2 : 1;
    }
    if (privs.size > 0) out.set(grantee, privs);
  }
  return out;
}

function renderAcl(acl: AclMap): string {
  return [...acl.entries()]
    .filter(([, p]) => p.size > 0)
    .map(([g, p]): [string, string] => [
      roleText(g),
      [...p.entries()]
        .sort(([a], [b]) => (LETTER_ORDER.get(a) ?? 99) - (LETTER_ORDER.get(b) ?? 99) || (a < b ? -1 : 1))
        .map(([l, grantable]) => (grantable ? `${l}*` : l))
        .join(''),
    ])
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([g, p]) => `${g}=${p}`)
    .join(',');
}

/** Parses canonical ACL text back: grantee text -> letter -> grantable. */
function parseCanonicalAcl(text: string): Map<string, Map<string, boolean>> {
  const out = new Map<string, Map<string, boolean>>();
  let i = 0;
  while (i < text.length) {
    const start = i;
    const [, afterName] = readName(text, i, '=');
    const grantee = text.slice(start, afterName);
    let j = afterName + 1;
    const privs = new Map<string, boolean>();
    while (j < text.length && text[j] !== ',') {
      const grantable = text[j + 1] === '*';
      privs.set(text[j]!, grantable);
      j += grantable ? 2 : 1;
    }
    out.set(grantee, privs);
    i = j + 1;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------

const RELKIND_WORD: Record<string, string> = { r: 'table', p: 'partitioned table', v: 'view', m: 'materialized view', f: 'foreign table', S: 'sequence' };
const PROKIND_WORD: Record<string, string> = { f: 'function', w: 'function', p: 'procedure', a: 'aggregate' };
const DEFACL_WORD: Record<string, string> = { r: 'tables', S: 'sequences', f: 'functions', T: 'types', n: 'schemas', L: 'large objects' };
const POLCMD: Record<string, string> = { '*': 'ALL', r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE' };
/** Option names whose values are secrets (password, passwd, secret, token, api_key, private_key ...; not password_required). */
const SECRET_OPTION = /(^|_)(password|passwd|pass|pwd|secret|token|key)$/i;

/** `{a=b,c=d}` option lists as `a 'b', c 'd'`, sorted, secrets masked. */
function renderOptions(options: readonly string[] | null): string {
  if (!options || options.length === 0) return '';
  return options
    .map((o) => {
      const eq = o.indexOf('=');
      const name = eq < 0 ? o : o.slice(0, eq);
      const value = eq < 0 ? '' : o.slice(eq + 1);
      return `${name} ${SECRET_OPTION.test(name) ? '********' : `'${value.replace(/'/g, "''")}'`}`;
    })
    .sort()
    .join(', ');
}

/** SQL for the qualified name of the collation `oid` (regcollation needs PostgreSQL 13). */
const collName = (oid: string) =>
  `(SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = ${oid})`;

interface Recorder {
  objects: Record<string, string>;
  notes: Record<string, string>;
}

class Reader {
  readonly fp: Recorder = { objects: {}, notes: {} };
  private readonly reserved: (name: string) => boolean;
  private readonly allowedSetting: (name: string) => boolean;

  constructor(
    private readonly client: FingerprintClient,
    private readonly opts: FingerprintOptions,
    private readonly major: number,
    private readonly platformRegexes: string[],
    private readonly kept: string[],
  ) {
    this.reserved = opts.isReservedRole;
    this.allowedSetting = opts.isAllowedReservedRoleSetting ?? ((n) => DEFAULT_ALLOWED_RESERVED_SETTING.test(n));
  }

  private set(key: string, value: string): void {
    this.fp.objects[key] = value;
  }

  private async q<T>(category: string, sql: string, params: unknown[] = []): Promise<T[]> {
    try {
      return (await this.client.query(sql, params)).rows as T[];
    } catch (e) {
      throw new HbError('db-error', `reading the catalog fingerprint (${category}) failed: ${(e as Error).message}`, undefined, { cause: e });
    }
  }

  /** Whether `owner` is compared: postgres, or a role the platform does not manage. */
  private ownerCompared(owner: string): boolean {
    return owner === 'postgres' || !this.reserved(owner);
  }

  /** Records `owner <subject>` (compared or as a note) and `acl <subject>` (owner entry dropped). */
  private ownerAndAcl(subject: string, owner: string, acl: readonly string[] | null, withAcl = true): void {
    if (this.ownerCompared(owner)) this.set(`owner ${subject}`, owner);
    else this.fp.notes[`owner ${subject}`] = owner;
    if (!withAcl) return;
    const map = parseAclItems(acl);
    map.delete(owner);
    if (!this.ownerCompared(owner)) map.delete('postgres');
    this.set(`acl ${subject}`, renderAcl(map));
  }

  /** Records only the grants to non-reserved roles (on platform objects); nothing when there are none. */
  private userGrants(subject: string, acl: readonly string[] | null): void {
    const map = parseAclItems(acl);
    for (const g of [...map.keys()]) if (g === '' || this.reserved(g)) map.delete(g);
    const text = renderAcl(map);
    if (text !== '') this.set(`acl ${subject}`, text);
  }

  private comment(subject: string, text: string | null): void {
    if (text !== null && text !== undefined) this.set(`comment on ${subject}`, text);
  }

  /**
   * SQL: the object is not an extension's member, nor (`implicit`) made implicitly with another
   * object (a range type's constructors and cast, array and multirange types), which pg_dump
   * does not dump either. Not for relations: an identity sequence depends on its column that way.
   */
  private notMember(catalog: string, alias: string, implicit = false): string {
    const types = implicit ? `IN ('e', 'i')` : `= 'e'`;
    return `NOT EXISTS (SELECT 1 FROM pg_depend ext_dep WHERE ext_dep.classid = '${catalog}'::regclass AND ext_dep.objid = ${alias}.oid AND ext_dep.deptype ${types})`;
  }

  private get userNs(): string {
    return `SELECT n.oid, n.nspname FROM pg_namespace n WHERE NOT (n.nspname ~ ANY($1::text[]))`;
  }

  /** The relations the fingerprint looks at: user schemas (is_user) and kept platform schemas. */
  private get rels(): string {
    // Materialized: each schema's regular expressions are matched once, not once per joined row.
    return `ns AS MATERIALIZED (SELECT oid, nspname, NOT (nspname ~ ANY($1::text[])) AS is_user FROM pg_namespace),
      rels AS MATERIALIZED (
      SELECT c.oid, c.relkind::text AS relkind, n.nspname, n.is_user,
             quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
        FROM pg_class c JOIN ns n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
         AND (n.is_user OR n.nspname = ANY($2::text[]))
         AND ${this.notMember('pg_class', 'c')})`;
  }

  private get params(): unknown[] {
    return [this.platformRegexes, this.kept];
  }

  async schemasAndExtensions(): Promise<void> {
    const schemas = await this.q<{ name: string; owner: string; acl: string[] | null; comment: string | null }>(
      'schemas',
      `WITH us AS (${this.userNs})
       SELECT quote_ident(n.nspname) AS name, pg_get_userbyid(s.nspowner) AS owner,
              coalesce(s.nspacl, acldefault('n', s.nspowner))::text[] AS acl, d.description AS comment
         FROM us n JOIN pg_namespace s ON s.oid = n.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_namespace'::regclass AND d.objoid = n.oid AND d.objsubid = 0
        WHERE ${this.notMember('pg_namespace', 's')}`,
      [this.platformRegexes],
    );
    for (const s of schemas) {
      const subject = `schema ${s.name}`;
      this.set(subject, 'schema');
      this.ownerAndAcl(subject, s.owner, s.acl);
      this.comment(subject, s.comment);
    }
    const exts = await this.q<{ name: string; schema: string; version: string }>(
      'extensions',
      `SELECT quote_ident(e.extname) AS name, quote_ident(n.nspname) AS schema, e.extversion AS version
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace`,
    );
    for (const e of exts) {
      this.set(`extension ${e.name}`, `schema ${e.schema}`);
      this.fp.notes[`extension ${e.name} version`] = e.version;
    }
  }

  /** Relations; resolves with the sequences whose position is to be read. */
  async relations(): Promise<Array<{ oid: number; name: string }>> {
    interface Row {
      oid: number;
      relkind: string;
      is_user: boolean;
      name: string;
      persistence: string;
      owner: string;
      acl: string[] | null;
      rls: boolean;
      force_rls: boolean;
      replident: string;
      options: string[] | null;
      bound: string | null;
      partkey: string | null;
      parents: string | null;
      viewdef: string | null;
      populated: boolean;
      am: string | null;
      server: string | null;
      ftoptions: string[] | null;
      seqtype: string | null;
      seqstart: string | null;
      seqincrement: string | null;
      seqmin: string | null;
      seqmax: string | null;
      seqcache: string | null;
      seqcycle: boolean | null;
      owned_by: string | null;
      seq_readable: boolean | null;
      comment: string | null;
    }
    const rows = await this.q<Row>(
      'relations',
      `WITH ${this.rels}
       SELECT r.oid::int8 AS oid, r.relkind, r.is_user, r.name, c.relpersistence::text AS persistence,
              pg_get_userbyid(c.relowner) AS owner,
              coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char" END, c.relowner))::text[] AS acl,
              c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls, c.relreplident::text AS replident,
              c.reloptions::text[] AS options,
              CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
              CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
              inh.parents,
              CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef,
              c.relispopulated AS populated,
              CASE WHEN c.relkind IN ('r', 'm') AND am.amname <> 'heap' THEN am.amname::text END AS am,
              quote_ident(fs.srvname) AS server, ft.ftoptions::text[] AS ftoptions,
              format_type(s.seqtypid, NULL) AS seqtype, s.seqstart::text AS seqstart, s.seqincrement::text AS seqincrement,
              s.seqmin::text AS seqmin, s.seqmax::text AS seqmax, s.seqcache::text AS seqcache, s.seqcycle,
              ob.owned_by,
              CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') END AS seq_readable,
              d.description AS comment
         FROM rels r JOIN pg_class c ON c.oid = r.oid
         LEFT JOIN pg_am am ON am.oid = c.relam
         LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
         LEFT JOIN pg_foreign_server fs ON fs.oid = ft.ftserver
         LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
         LEFT JOIN (SELECT i.inhrelid, string_agg(quote_ident(pn.nspname) || '.' || quote_ident(pc.relname), ', ' ORDER BY i.inhseqno) AS parents
                      FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                     GROUP BY i.inhrelid) inh ON inh.inhrelid = c.oid
         LEFT JOIN (SELECT DISTINCT ON (dep.objid) dep.objid,
                           quote_ident(dn.nspname) || '.' || quote_ident(dc.relname) || '.' || quote_ident(da.attname)
                           || CASE WHEN dep.deptype = 'i' THEN ' (identity)' ELSE '' END AS owned_by
                      FROM pg_sequence sq
                      JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = sq.seqrelid
                      JOIN pg_class dc ON dc.oid = dep.refobjid JOIN pg_namespace dn ON dn.oid = dc.relnamespace
                      JOIN pg_attribute da ON da.attrelid = dep.refobjid AND da.attnum = dep.refobjsubid
                     WHERE dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i') AND dep.refobjsubid > 0
                     ORDER BY dep.objid, dep.refobjid, dep.refobjsubid) ob ON ob.objid = c.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = 0`,
      this.params,
    );
    const sequences: Array<{ oid: number; name: string }> = [];
    for (const r of rows) {
      const subject = `${RELKIND_WORD[r.relkind]} ${r.name}`;
      if (!r.is_user) {
        this.userGrants(subject, r.acl);
        continue;
      }
      const parts: string[] = [];
      if (r.persistence === 'u') parts.push('UNLOGGED');
      if (r.rls || r.force_rls) parts.push(`row level security ${r.rls ? 'enabled' : 'disabled'}${r.force_rls ? ', forced' : ''}`);
      if ((r.relkind === 'r' || r.relkind === 'p') && r.replident !== 'd') parts.push(`replica identity ${{ f: 'full', n: 'nothing', i: 'index' }[r.replident] ?? r.replident}`);
      if (r.partkey) parts.push(`PARTITION BY ${r.partkey}`);
      if (r.bound) parts.push(`partition of ${r.parents ?? '?'} ${r.bound}`);
      else if (r.parents) parts.push(`inherits ${r.parents}`);
      if (r.am) parts.push(`access method ${r.am}`);
      if (r.options?.length) parts.push(`WITH (${[...r.options].sort().join(', ')})`);
      if (r.server) parts.push(`server ${r.server}${r.ftoptions?.length ? ` OPTIONS (${renderOptions(r.ftoptions)})` : ''}`);
      if (r.relkind === 'S') {
        parts.push(
          `AS ${r.seqtype} START ${r.seqstart} INCREMENT ${r.seqincrement} MINVALUE ${r.seqmin} MAXVALUE ${r.seqmax} CACHE ${r.seqcache} ${r.seqcycle ? 'CYCLE' : 'NO CYCLE'}`,
        );
        if (r.owned_by) parts.push(`owned by ${r.owned_by}`);
        if (r.seq_readable) sequences.push({ oid: Number(r.oid), name: r.name });
        else this.set(`${subject} value`, UNREADABLE);
      }
      if (r.viewdef !== null) parts.push(`AS\n${r.viewdef}`);
      this.set(subject, parts.length ? parts.join('; ') : r.relkind === 'r' ? 'table' : RELKIND_WORD[r.relkind]!);
      if (r.relkind === 'm') this.set(`${subject} populated`, r.populated ? 'yes' : 'no');
      this.ownerAndAcl(subject, r.owner, r.acl);
      this.comment(subject, r.comment);
    }
    return sequences;
  }

  /**
   * Reading a sequence locks it (AccessShareLock) until the transaction ends: thousands of them
   * could fill the server's lock table next to pg_dump's own locks. Each read runs inside a
   * savepoint that is rolled back once its rows are in, which releases those locks and changes
   * nothing else.
   */
  private async unlocked<T>(category: string, sql: string, params: unknown[] = []): Promise<T[]> {
    await this.client.query('SAVEPOINT hb_fingerprint');
    try {
      return await this.q<T>(category, sql, params);
    } finally {
      await this.client.query('ROLLBACK TO SAVEPOINT hb_fingerprint').catch(() => {});
      await this.client.query('RELEASE SAVEPOINT hb_fingerprint').catch(() => {});
    }
  }

  /**
   * `last_value` and `is_called` of each sequence: `SELECT last_value, is_called FROM <seq>`,
   * UNION ALL in batches (planning grows fast with the branches). Not pg_sequence_last_value():
   * it keeps a RowExclusiveLock on every sequence until the transaction ends, and says nothing
   * of a sequence not used yet.
   */
  async sequenceValues(sequences: Array<{ oid: number; name: string }>): Promise<void> {
    for (let i = 0; i < sequences.length; i += SEQUENCE_BATCH) {
      const batch = sequences.slice(i, i + SEQUENCE_BATCH);
      const sql = batch.map((s, j) => `SELECT ${j}::int AS i, last_value::text AS last_value, is_called FROM ${s.name}`).join('\nUNION ALL\n');
      const rows = await this.unlocked<{ i: number; last_value: string; is_called: boolean }>('sequence values', sql);
      for (const r of rows) {
        const s = batch[r.i]!;
        this.set(`sequence ${s.name} value`, r.is_called ? r.last_value : `${r.last_value} (not yet used)`);
      }
    }
  }

  async columns(): Promise<void> {
    const rows = await this.q<{
      relkind: string;
      is_user: boolean;
      rel: string;
      col: string;
      type: string;
      notnull: boolean;
      identity: string;
      generated: string;
      def: string | null;
      coll: string | null;
      storage: string | null;
      acl: string[] | null;
      fdwoptions: string[] | null;
      comment: string | null;
    }>(
      'columns',
      `WITH ${this.rels}
       SELECT r.relkind, r.is_user, r.name AS rel, quote_ident(a.attname) AS col,
              format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
              a.attidentity::text AS identity, a.attgenerated::text AS generated,
              pg_get_expr(ad.adbin, ad.adrelid) AS def,
              CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS coll,
              CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage,
              a.attacl::text[] AS acl, a.attfdwoptions::text[] AS fdwoptions, d.description AS comment
         FROM rels r
         JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         LEFT JOIN pg_collation co ON co.oid = a.attcollation
         LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
         LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = a.attrelid AND d.objsubid = a.attnum
        WHERE r.relkind <> 'S' AND (r.is_user OR a.attacl IS NOT NULL)
        ORDER BY r.oid, a.attnum`,
      this.params,
    );
    let rel = '';
    let position = 0;
    for (const c of rows) {
      const subject = `column ${c.rel}.${c.col}`;
      if (!c.is_user) {
        this.userGrants(subject, c.acl);
        continue;
      }
      position = c.rel === rel ? position + 1 : 1;
      rel = c.rel;
      let def = `#${position} ${c.type}`;
      if (c.coll) def += ` COLLATE ${c.coll}`;
      if (c.notnull) def += ' NOT NULL';
      if (c.identity === 'a' || c.identity === 'd') def += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`;
      else if (c.generated === 's' && c.def !== null) def += ` GENERATED ALWAYS AS (${c.def}) STORED`;
      else if (c.generated === 'v' && c.def !== null) def += ` GENERATED ALWAYS AS (${c.def}) VIRTUAL`;
      else if (c.def !== null) def += ` DEFAULT ${c.def}`;
      if (c.storage) def += ` STORAGE ${{ p: 'plain', e: 'external', m: 'main', x: 'extended' }[c.storage] ?? c.storage}`;
      if (c.fdwoptions?.length) def += ` OPTIONS (${renderOptions(c.fdwoptions)})`;
      this.set(subject, def);
      if (c.acl) {
        const text = renderAcl(parseAclItems(c.acl));
        if (text !== '') this.set(`acl ${subject}`, text);
      }
      this.comment(subject, c.comment);
    }
  }

  async constraints(): Promise<void> {
    const parentFilter = 'k.conparentid = 0';
    const rows = await this.q<{ parent: string; name: string; def: string; comment: string | null }>(
      'constraints',
      `WITH ${this.rels}, us AS (${this.userNs})
       SELECT r.name AS parent, quote_ident(k.conname) AS name, pg_get_constraintdef(k.oid) AS def, d.description AS comment
         FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = k.oid AND d.objsubid = 0
        WHERE r.is_user AND k.contype <> 'n' AND ${parentFilter}
       UNION ALL
       SELECT 'domain ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname), quote_ident(k.conname), pg_get_constraintdef(k.oid), d.description
         FROM pg_constraint k JOIN pg_type t ON t.oid = k.contypid JOIN us n ON n.oid = t.typnamespace
         LEFT JOIN pg_description d ON d.classoid = 'pg_constraint'::regclass AND d.objoid = k.oid AND d.objsubid = 0
        WHERE k.contypid <> 0 AND k.contype <> 'n' AND ${this.notMember('pg_type', 't')}`,
      this.params,
    );
    for (const k of rows) {
      const subject = `constraint ${k.name} on ${k.parent}`;
      this.set(subject, k.def);
      this.comment(subject, k.comment);
    }
  }

  async indexes(): Promise<void> {
    const rows = await this.q<{ rel: string; name: string; def: string; clustered: boolean; valid: boolean; replident: boolean; comment: string | null }>(
      'indexes',
      `WITH ${this.rels}
       SELECT r.name AS rel, quote_ident(ic.relname) AS name, pg_get_indexdef(x.indexrelid) AS def,
              x.indisclustered AS clustered, x.indisvalid AS valid, x.indisreplident AS replident, d.description AS comment
         FROM rels r JOIN pg_index x ON x.indrelid = r.oid JOIN pg_class ic ON ic.oid = x.indexrelid
         LEFT JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = x.indexrelid AND d.objsubid = 0
        WHERE r.is_user
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x'))`,
      this.params,
    );
    for (const x of rows) {
      const subject = `index ${x.name} on ${x.rel}`;
      let def = x.def;
      if (x.clustered) def += ' (CLUSTER)';
      if (x.replident) def += ' (REPLICA IDENTITY)';
      if (!x.valid) def += ' (INVALID)';
      this.set(subject, def);
      this.comment(subject, x.comment);
    }
  }

  async triggersRulesPolicies(): Promise<void> {
    const notClone = this.major >= 13 ? 't.tgparentid = 0' : 'true';
    const triggers = await this.q<{ rel: string; name: string; def: string; enabled: string; comment: string | null }>(
      'triggers',
      `WITH ${this.rels}
       SELECT r.name AS rel, quote_ident(t.tgname) AS name, pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS enabled, d.description AS comment
         FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid
         JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
         LEFT JOIN pg_description d ON d.classoid = 'pg_trigger'::regclass AND d.objoid = t.oid AND d.objsubid = 0
        WHERE NOT t.tgisinternal AND ${notClone} AND (r.is_user OR NOT (pn.nspname ~ ANY($1::text[])))`,
      this.params,
    );
    const enabled: Record<string, string> = { D: 'DISABLED', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
    for (const t of triggers) {
      const subject = `trigger ${t.name} on ${t.rel}`;
      this.set(subject, t.enabled !== 'O' ? `${t.def} (${enabled[t.enabled] ?? t.enabled})` : t.def);
      this.comment(subject, t.comment);
    }
    const rules = await this.q<{ rel: string; name: string; def: string; enabled: string; comment: string | null }>(
      'rules',
      `WITH ${this.rels}
       SELECT r.name AS rel, quote_ident(w.rulename) AS name, pg_get_ruledef(w.oid) AS def, w.ev_enabled::text AS enabled, d.description AS comment
         FROM rels r JOIN pg_rewrite w ON w.ev_class = r.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_rewrite'::regclass AND d.objoid = w.oid AND d.objsubid = 0
        WHERE r.is_user AND w.rulename <> '_RETURN'`,
      this.params,
    );
    for (const w of rules) {
      const subject = `rule ${w.name} on ${w.rel}`;
      this.set(subject, w.enabled !== 'O' ? `${w.def} (${enabled[w.enabled] ?? w.enabled})` : w.def);
      this.comment(subject, w.comment);
    }
    const policies = await this.q<{ rel: string; name: string; permissive: boolean; cmd: string; roles: string; qual: string | null; withcheck: string | null; comment: string | null }>(
      'policies',
      `WITH ${this.rels}
       SELECT r.name AS rel, quote_ident(p.polname) AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
              (SELECT string_agg(x.n, ', ' ORDER BY x.n)
                 FROM (SELECT CASE WHEN o = 0 THEN 'public' ELSE quote_ident(pg_get_userbyid(o)) END AS n FROM unnest(p.polroles) o) x) AS roles,
              pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS withcheck,
              d.description AS comment
         FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_policy'::regclass AND d.objoid = p.oid AND d.objsubid = 0`,
      this.params,
    );
    for (const p of policies) {
      const subject = `policy ${p.name} on ${p.rel}`;
      let def = `AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${POLCMD[p.cmd] ?? p.cmd} TO ${p.roles}`;
      if (p.qual !== null) def += ` USING (${p.qual})`;
      if (p.withcheck !== null) def += ` WITH CHECK (${p.withcheck})`;
      this.set(subject, def);
      this.comment(subject, p.comment);
    }
  }

  async functions(): Promise<void> {
    const rows = await this.q<{ sig: string; kind: string; owner: string; acl: string[] | null; def: string | null; comment: string | null }>(
      'functions',
      `WITH us AS (${this.userNs})
       SELECT p.oid::regprocedure::text AS sig, p.prokind::text AS kind, pg_get_userbyid(p.proowner) AS owner,
              coalesce(p.proacl, acldefault('f', p.proowner))::text[] AS acl,
              CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid)
                   ELSE concat_ws(' ',
                     'AGGREGATE ' || p.oid::regprocedure::text, 'RETURNS ' || format_type(p.prorettype, NULL),
                     'SFUNC ' || a.aggtransfn::oid::regprocedure::text, 'STYPE ' || format_type(a.aggtranstype, NULL),
                     'KIND ' || a.aggkind::text,
                     CASE WHEN a.aggfinalfn <> 0 THEN 'FINALFUNC ' || a.aggfinalfn::oid::regprocedure::text || ' ' || a.aggfinalmodify::text END,
                     CASE WHEN a.aggcombinefn <> 0 THEN 'COMBINEFUNC ' || a.aggcombinefn::oid::regprocedure::text END,
                     CASE WHEN a.aggserialfn <> 0 THEN 'SERIALFUNC ' || a.aggserialfn::oid::regprocedure::text END,
                     CASE WHEN a.aggdeserialfn <> 0 THEN 'DESERIALFUNC ' || a.aggdeserialfn::oid::regprocedure::text END,
                     CASE WHEN a.aggmtransfn <> 0 THEN 'MSFUNC ' || a.aggmtransfn::oid::regprocedure::text || ' MINVFUNC ' || a.aggminvtransfn::oid::regprocedure::text || ' MSTYPE ' || format_type(a.aggmtranstype, NULL) END,
                     CASE WHEN a.aggmfinalfn <> 0 THEN 'MFINALFUNC ' || a.aggmfinalfn::oid::regprocedure::text END,
                     CASE WHEN a.agginitval IS NOT NULL THEN 'INITCOND ' || quote_literal(a.agginitval) END,
                     CASE WHEN a.aggminitval IS NOT NULL THEN 'MINITCOND ' || quote_literal(a.aggminitval) END,
                     CASE WHEN a.aggsortop <> 0 THEN 'SORTOP ' || a.aggsortop::regoperator::text END,
                     'PARALLEL ' || p.proparallel::text)
              END AS def,
              d.description AS comment
         FROM pg_proc p JOIN us n ON n.oid = p.pronamespace
         LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid
         LEFT JOIN pg_description d ON d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid AND d.objsubid = 0
        WHERE ${this.notMember('pg_proc', 'p', true)}`,
      [this.platformRegexes],
    );
    for (const f of rows) {
      const subject = `${PROKIND_WORD[f.kind] ?? 'function'} ${f.sig}`;
      this.set(subject, f.def ?? '');
      this.ownerAndAcl(subject, f.owner, f.acl);
      this.comment(subject, f.comment);
    }
  }

  async types(): Promise<void> {
    const rows = await this.q<{ name: string; kind: string; owner: string; acl: string[] | null; def: string | null; comment: string | null }>(
      'types',
      `WITH us AS (${this.userNs})
       SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname) AS name, t.typtype::text AS kind,
              pg_get_userbyid(t.typowner) AS owner, coalesce(t.typacl, acldefault('T', t.typowner))::text[] AS acl,
              CASE t.typtype
                WHEN 'e' THEN 'ENUM (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
                WHEN 'c' THEN 'COMPOSITE (' || coalesce((SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                                  || CASE WHEN a.attcollation <> at.typcollation THEN ' COLLATE ' || ${collName('a.attcollation')} ELSE '' END, ', ' ORDER BY a.attnum)
                                  FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
                WHEN 'd' THEN 'DOMAIN AS ' || format_type(t.typbasetype, t.typtypmod)
                              || CASE WHEN t.typcollation <> bt.typcollation THEN ' COLLATE ' || ${collName('t.typcollation')} ELSE '' END
                              || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                              || coalesce(' DEFAULT ' || pg_get_expr(t.typdefaultbin, 0), '')
                WHEN 'r' THEN (SELECT concat_ws(' ', 'RANGE (SUBTYPE ' || format_type(rg.rngsubtype, NULL),
                                  CASE WHEN rg.rngcollation <> 0 THEN 'COLLATION ' || ${collName('rg.rngcollation')} END,
                                  'SUBTYPE_OPCLASS ' || quote_ident(ocn.nspname) || '.' || quote_ident(oc.opcname),
                                  CASE WHEN rg.rngcanonical <> 0 THEN 'CANONICAL ' || rg.rngcanonical::oid::regprocedure::text END,
                                  CASE WHEN rg.rngsubdiff <> 0 THEN 'SUBTYPE_DIFF ' || rg.rngsubdiff::oid::regprocedure::text END) || ')'
                                 FROM pg_range rg JOIN pg_opclass oc ON oc.oid = rg.rngsubopc JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
                                WHERE rg.rngtypid = t.oid)
                ELSE concat_ws(' ', 'BASE (INPUT ' || t.typinput::oid::regprocedure::text, 'OUTPUT ' || t.typoutput::oid::regprocedure::text,
                               'INTERNALLENGTH ' || t.typlen, 'ALIGNMENT ' || t.typalign::text, 'STORAGE ' || t.typstorage::text,
                               'CATEGORY ' || quote_literal(t.typcategory::text)) || ')'
              END AS def,
              d.description AS comment
         FROM pg_type t JOIN us n ON n.oid = t.typnamespace
         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
         LEFT JOIN pg_description d ON d.classoid = 'pg_type'::regclass AND d.objoid = t.oid AND d.objsubid = 0
        WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r')
          AND (t.typtype <> 'c' OR EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
          AND NOT EXISTS (SELECT 1 FROM pg_type et WHERE et.typarray = t.oid)
          AND ${this.notMember('pg_type', 't', true)}`,
      [this.platformRegexes],
    );
    for (const t of rows) {
      const subject = `${t.kind === 'd' ? 'domain' : 'type'} ${t.name}`;
      this.set(subject, t.def ?? '');
      this.ownerAndAcl(subject, t.owner, t.acl);
      this.comment(subject, t.comment);
    }
  }

  /** Collations, operators, operator classes/families, text search objects, conversions, statistics: existence (and definition where PostgreSQL prints one). */
  async otherSchemaObjects(): Promise<void> {
    const catalogs: Array<[string, string]> = [
      ['pg_collation', 'collnamespace'],
      ['pg_operator', 'oprnamespace'],
      ['pg_opclass', 'opcnamespace'],
      ['pg_opfamily', 'opfnamespace'],
      ['pg_ts_config', 'cfgnamespace'],
      ['pg_ts_dict', 'dictnamespace'],
      ['pg_ts_parser', 'prsnamespace'],
      ['pg_ts_template', 'tmplnamespace'],
      ['pg_conversion', 'connamespace'],
      ['pg_statistic_ext', 'stxnamespace'],
    ];
    const union = catalogs
      .map(([cat, ns]) => `SELECT '${cat}'::regclass AS classid, x.oid FROM ${cat} x JOIN us n ON n.oid = x.${ns} WHERE ${this.notMember(cat, 'x')}`)
      .join('\nUNION ALL\n');
    const rows = await this.q<{ type: string; identity: string; def: string | null; comment: string | null }>(
      'other schema objects',
      `WITH us AS (${this.userNs}), objs AS (${union})
       SELECT i.type, i.identity,
              CASE WHEN o.classid = 'pg_statistic_ext'::regclass THEN pg_get_statisticsobjdef(o.oid) END AS def,
              d.description AS comment
         FROM objs o CROSS JOIN LATERAL pg_identify_object(o.classid, o.oid, 0) i
         LEFT JOIN pg_description d ON d.classoid = o.classid AND d.objoid = o.oid AND d.objsubid = 0`,
      [this.platformRegexes],
    );
    for (const o of rows) {
      const subject = `${o.type} ${o.identity}`;
      this.set(subject, o.def ?? 'present');
      this.comment(subject, o.comment);
    }
  }

  async publications(): Promise<void> {
    const platformPubs = [...(this.opts.platformPublications ?? PLATFORM_PUBLICATIONS)];
    const viaRoot = this.major >= 13 ? 'p.pubviaroot' : 'false';
    const pubs = await this.q<{ raw: string; name: string; owner: string; alltables: boolean; ins: boolean; upd: boolean; del: boolean; trunc: boolean; viaroot: boolean; comment: string | null }>(
      'publications',
      `SELECT p.pubname AS raw, quote_ident(p.pubname) AS name, pg_get_userbyid(p.pubowner) AS owner, p.puballtables AS alltables,
              p.pubinsert AS ins, p.pubupdate AS upd, p.pubdelete AS del, p.pubtruncate AS trunc, ${viaRoot} AS viaroot, d.description AS comment
         FROM pg_publication p
         LEFT JOIN pg_description d ON d.classoid = 'pg_publication'::regclass AND d.objoid = p.oid AND d.objsubid = 0`,
    );
    for (const p of pubs) {
      if (platformPubs.includes(p.raw)) continue;
      const subject = `publication ${p.name}`;
      const publish = [p.ins && 'insert', p.upd && 'update', p.del && 'delete', p.trunc && 'truncate'].filter(Boolean).join(', ');
      this.set(subject, `${p.alltables ? 'FOR ALL TABLES ' : ''}WITH (publish = '${publish}', publish_via_partition_root = ${p.viaroot})`);
      this.ownerAndAcl(subject, p.owner, null, false);
      this.comment(subject, p.comment);
    }
    const extra = this.major >= 15;
    const members = await this.q<{ pub: string; raw: string; kind: string; name: string; is_user: boolean; filter: string | null; cols: string | null }>(
      'publication members',
      `SELECT quote_ident(p.pubname) AS pub, p.pubname AS raw, 'table' AS kind,
              quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, NOT (n.nspname ~ ANY($1::text[])) AS is_user,
              ${extra ? 'pg_get_expr(pr.prqual, pr.prrelid)' : 'NULL::text'} AS filter,
              ${
                extra
                  ? `(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs))`
                  : 'NULL::text'
              } AS cols
         FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
         JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       ${
         extra
           ? `UNION ALL
       SELECT quote_ident(p.pubname), p.pubname, 'schema', quote_ident(n.nspname), NOT (n.nspname ~ ANY($1::text[])), NULL, NULL
         FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid`
           : ''
       }`,
      [this.platformRegexes],
    );
    for (const m of members) {
      if (platformPubs.includes(m.raw) && !m.is_user) continue;
      const parts = [m.cols ? `(${m.cols})` : 'all columns', m.filter ? `WHERE (${m.filter})` : 'all rows'];
      this.set(`publication ${m.pub} ${m.kind} ${m.name}`, m.kind === 'table' ? parts.join(', ') : 'all tables in schema');
    }
  }

  async roles(): Promise<void> {
    const roles = await this.q<{
      name: string;
      q: string;
      super: boolean;
      inherit: boolean;
      createrole: boolean;
      createdb: boolean;
      login: boolean;
      replication: boolean;
      bypassrls: boolean;
      connlimit: number;
      validuntil: string | null;
      comment: string | null;
    }>(
      'roles',
      `SELECT r.rolname AS name, quote_ident(r.rolname) AS q, r.rolsuper AS super, r.rolinherit AS inherit, r.rolcreaterole AS createrole,
              r.rolcreatedb AS createdb, r.rolcanlogin AS login, r.rolreplication AS replication, r.rolbypassrls AS bypassrls,
              r.rolconnlimit AS connlimit, r.rolvaliduntil::text AS validuntil, d.description AS comment
         FROM pg_roles r
         LEFT JOIN pg_shdescription d ON d.classoid = 'pg_authid'::regclass AND d.objoid = r.oid`,
    );
    const quoted = new Map<string, string>();
    for (const r of roles) {
      quoted.set(r.name, r.q);
      if (this.reserved(r.name)) continue;
      const subject = `role ${r.q}`;
      const attrs = [r.login ? 'LOGIN' : 'NOLOGIN', r.inherit ? 'INHERIT' : 'NOINHERIT', r.createrole ? 'CREATEROLE' : 'NOCREATEROLE', r.createdb ? 'CREATEDB' : 'NOCREATEDB'];
      if (r.connlimit !== -1) attrs.push(`CONNECTION LIMIT ${r.connlimit}`);
      if (r.validuntil !== null) attrs.push(`VALID UNTIL '${r.validuntil}'`);
      this.set(subject, attrs.join(' '));
      this.fp.notes[`${subject} superuser attributes`] = [r.super && 'SUPERUSER', r.replication && 'REPLICATION', r.bypassrls && 'BYPASSRLS'].filter(Boolean).join(' ') || 'none';
      this.comment(subject, r.comment);
    }
    const q = (name: string) => quoted.get(name) ?? name;

    const options = this.major >= 16 ? 'bool_or(m.inherit_option) AS inherit, bool_or(m.set_option) AS set' : 'NULL::boolean AS inherit, NULL::boolean AS set';
    const members = await this.q<{ role: string; member: string; admin: boolean; inherit: boolean | null; set: boolean | null }>(
      'role memberships',
      `SELECT pg_get_userbyid(m.roleid) AS role, pg_get_userbyid(m.member) AS member, bool_or(m.admin_option) AS admin, ${options}
         FROM pg_auth_members m GROUP BY m.roleid, m.member`,
    );
    for (const m of members) {
      if (this.reserved(m.role) && this.reserved(m.member)) continue;
      const opts = [m.admin ? 'WITH ADMIN OPTION' : 'without admin option'];
      if (m.inherit !== null) opts.push(`INHERIT ${m.inherit ? 'TRUE' : 'FALSE'}`);
      if (m.set !== null) opts.push(`SET ${m.set ? 'TRUE' : 'FALSE'}`);
      this.set(`member ${q(m.member)} of ${q(m.role)}`, opts.join(', '));
    }

    const settings = await this.q<{ role: string; here: boolean; config: string[] }>(
      'role settings',
      `SELECT pg_get_userbyid(s.setrole) AS role, s.setdatabase <> 0 AS here, s.setconfig AS config
         FROM pg_db_role_setting s
        WHERE s.setrole <> 0 AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))`,
    );
    for (const s of settings) {
      const reserved = this.reserved(s.role);
      for (const item of s.config ?? []) {
        const eq = item.indexOf('=');
        const name = eq < 0 ? item : item.slice(0, eq);
        if (reserved && !this.allowedSetting(name)) continue;
        this.set(`role ${q(s.role)} set ${name}${s.here ? ' in this database' : ''}`, eq < 0 ? '' : item.slice(eq + 1));
      }
    }

    const defacls = await this.q<{ role: string; schema: string | null; platform: boolean; type: string; acl: string[] }>(
      'default privileges',
      `SELECT pg_get_userbyid(a.defaclrole) AS role, quote_ident(n.nspname) AS schema, coalesce(n.nspname ~ ANY($1::text[]), false) AS platform,
              a.defaclobjtype::text AS type, a.defaclacl::text[] AS acl
         FROM pg_default_acl a LEFT JOIN pg_namespace n ON n.oid = a.defaclnamespace`,
      [this.platformRegexes],
    );
    for (const a of defacls) {
      if (a.platform || (this.reserved(a.role) && a.role !== 'postgres')) continue;
      const key = `default privileges for ${q(a.role)}${a.schema !== null ? ` in schema ${a.schema}` : ''} on ${DEFACL_WORD[a.type] ?? a.type}`;
      this.set(key, renderAcl(parseAclItems(a.acl)));
    }
  }

  async foreignData(): Promise<void> {
    const fdws = await this.q<{ name: string; handler: string | null; validator: string | null; options: string[] | null; owner: string; acl: string[] | null; comment: string | null }>(
      'foreign data wrappers',
      `SELECT quote_ident(w.fdwname) AS name,
              CASE WHEN w.fdwhandler <> 0 THEN w.fdwhandler::regprocedure::text END AS handler,
              CASE WHEN w.fdwvalidator <> 0 THEN w.fdwvalidator::regprocedure::text END AS validator,
              w.fdwoptions::text[] AS options, pg_get_userbyid(w.fdwowner) AS owner,
              coalesce(w.fdwacl, acldefault('F', w.fdwowner))::text[] AS acl, d.description AS comment
         FROM pg_foreign_data_wrapper w
         LEFT JOIN pg_description d ON d.classoid = 'pg_foreign_data_wrapper'::regclass AND d.objoid = w.oid AND d.objsubid = 0
        WHERE ${this.notMember('pg_foreign_data_wrapper', 'w')}`,
    );
    for (const w of fdws) {
      const subject = `foreign data wrapper ${w.name}`;
      this.set(subject, [w.handler ? `HANDLER ${w.handler}` : 'NO HANDLER', w.validator ? `VALIDATOR ${w.validator}` : 'NO VALIDATOR', w.options?.length ? `OPTIONS (${renderOptions(w.options)})` : ''].filter(Boolean).join(' '));
      this.ownerAndAcl(subject, w.owner, w.acl);
      this.comment(subject, w.comment);
    }
    const servers = await this.q<{ name: string; fdw: string; type: string | null; version: string | null; options: string[] | null; owner: string; acl: string[] | null; comment: string | null }>(
      'foreign servers',
      `SELECT quote_ident(s.srvname) AS name, quote_ident(w.fdwname) AS fdw, s.srvtype AS type, s.srvversion AS version,
              s.srvoptions::text[] AS options, pg_get_userbyid(s.srvowner) AS owner,
              coalesce(s.srvacl, acldefault('S', s.srvowner))::text[] AS acl, d.description AS comment
         FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
         LEFT JOIN pg_description d ON d.classoid = 'pg_foreign_server'::regclass AND d.objoid = s.oid AND d.objsubid = 0
        WHERE ${this.notMember('pg_foreign_server', 's')}`,
    );
    for (const s of servers) {
      const subject = `foreign server ${s.name}`;
      const parts = [s.type !== null ? `TYPE '${s.type}'` : '', s.version !== null ? `VERSION '${s.version}'` : '', `FOREIGN DATA WRAPPER ${s.fdw}`, s.options?.length ? `OPTIONS (${renderOptions(s.options)})` : ''];
      this.set(subject, parts.filter(Boolean).join(' '));
      this.ownerAndAcl(subject, s.owner, s.acl);
      this.comment(subject, s.comment);
    }
    // pg_user_mappings shows a mapping's options only to its user, the server's owner with
    // USAGE, or a superuser; hidden ones are UNREADABLE. Secret option values are never kept.
    const mappings = await this.q<{ usename: string; server: string; options: string[] | null; public: boolean }>(
      'user mappings',
      `SELECT CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(m.usename) END AS usename, m.umuser = 0 AS public,
              quote_ident(m.srvname) AS server, m.umoptions::text[] AS options
         FROM pg_user_mappings m`,
    );
    for (const m of mappings) {
      const visible = m.options !== null;
      this.set(`user mapping for ${m.usename} on server ${m.server}`, visible ? `OPTIONS (${renderOptions(m.options)})` : UNREADABLE);
    }
  }

  async castsAndEventTriggers(): Promise<void> {
    const casts = await this.q<{ src: string; tgt: string; fn: string | null; context: string; method: string; comment: string | null }>(
      'casts',
      `WITH us AS (${this.userNs})
       SELECT format_type(c.castsource, NULL) AS src, format_type(c.casttarget, NULL) AS tgt,
              CASE WHEN c.castfunc <> 0 THEN c.castfunc::regprocedure::text END AS fn,
              c.castcontext::text AS context, c.castmethod::text AS method, d.description AS comment
         FROM pg_cast c
         LEFT JOIN pg_description d ON d.classoid = 'pg_cast'::regclass AND d.objoid = c.oid AND d.objsubid = 0
        WHERE c.oid >= 16384 AND ${this.notMember('pg_cast', 'c', true)}
          AND (EXISTS (SELECT 1 FROM pg_type t JOIN us ON us.oid = t.typnamespace WHERE t.oid IN (c.castsource, c.casttarget) AND ${this.notMember('pg_type', 't')})
               OR EXISTS (SELECT 1 FROM pg_proc p JOIN us ON us.oid = p.pronamespace WHERE p.oid = c.castfunc AND ${this.notMember('pg_proc', 'p')}))`,
      [this.platformRegexes],
    );
    for (const c of casts) {
      const subject = `cast (${c.src} AS ${c.tgt})`;
      const how = c.method === 'f' ? `WITH FUNCTION ${c.fn}` : c.method === 'i' ? 'WITH INOUT' : 'WITHOUT FUNCTION';
      this.set(subject, `${how}${c.context === 'a' ? ' AS ASSIGNMENT' : c.context === 'i' ? ' AS IMPLICIT' : ''}`);
      this.comment(subject, c.comment);
    }
    const evts = await this.q<{ name: string; event: string; owner: string; fn: string; enabled: string; tags: string[] | null; comment: string | null }>(
      'event triggers',
      `WITH us AS (${this.userNs})
       SELECT quote_ident(e.evtname) AS name, e.evtevent AS event, pg_get_userbyid(e.evtowner) AS owner,
              e.evtfoid::regprocedure::text AS fn, e.evtenabled::text AS enabled, e.evttags AS tags, d.description AS comment
         FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid JOIN us n ON n.oid = p.pronamespace
         LEFT JOIN pg_description d ON d.classoid = 'pg_event_trigger'::regclass AND d.objoid = e.oid AND d.objsubid = 0
        WHERE ${this.notMember('pg_event_trigger', 'e')}`,
      [this.platformRegexes],
    );
    const enabled: Record<string, string> = { D: 'DISABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS' };
    for (const e of evts) {
      const subject = `event trigger ${e.name}`;
      const tags = e.tags?.length ? ` WHEN TAG IN (${e.tags.map((t) => `'${t.replace(/'/g, "''")}'`).join(', ')})` : '';
      this.set(subject, `ON ${e.event}${tags} EXECUTE FUNCTION ${e.fn}${e.enabled !== 'O' ? ` (${enabled[e.enabled] ?? e.enabled})` : ''}`);
      this.ownerAndAcl(subject, e.owner, null, false);
      this.comment(subject, e.comment);
    }
  }
}

/** Sorts a record's keys (a stable JSON form). */
function sorted(r: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(r).sort(byCodeUnits)) out[k] = r[k]!;
  return out;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Reads the fingerprint of the database `client` is connected to. Meant to run inside the
 * backup's snapshot transaction (REPEATABLE READ): it then issues only SELECTs, sets its session
 * settings with `set_config(..., true)` and puts them back at the end. Outside a transaction it
 * opens its own (`REPEATABLE READ, READ ONLY`) and rolls it back.
 * @throws HbError `db-error` naming the category whose query failed (the caller's transaction is then aborted)
 */
export async function readFingerprint(client: FingerprintClient, opts: FingerprintOptions): Promise<Fingerprint> {
  const names = [...SESSION.map(([n]) => n), MARKER];
  const values = [...SESSION.map(([, v]) => v), 'on'];
  const before = (await client.query(`SELECT ${names.map((n, i) => `coalesce(current_setting('${n}', true), '') AS s${i}`).join(', ')}, current_setting('server_version_num')::int AS v`)).rows[0] as Record<string, string | number>;
  const apply = (vals: readonly string[]) => client.query(`SELECT ${names.map((n, i) => `set_config('${n}', $${i + 1}, true)`).join(', ')}`, [...vals]);
  await apply(values);
  // set_config(..., true) outside a transaction block lasts one statement: then we open our own.
  const inTransaction = ((await client.query(`SELECT current_setting('${MARKER}', true) AS m`)).rows[0] as { m: string | null }).m === 'on';
  if (!inTransaction) {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    await apply(values);
  }
  const major = Math.floor(Number(before.v) / 10000);
  try {
    if (major < 12) throw new HbError('db-error', `a catalog fingerprint needs PostgreSQL 12 or later; the server is ${major}`);
    const platformRegexes = [...new Set(['^pg_.*$', '^information_schema$', ...opts.platformSchemas.map(patternToRegex)])];
    const r = new Reader(client, opts, major, platformRegexes, [...opts.keptPlatformSchemas]);
    await r.schemasAndExtensions();
    const sequences = await r.relations();
    await r.sequenceValues(sequences);
    await r.columns();
    await r.constraints();
    await r.indexes();
    await r.triggersRulesPolicies();
    await r.functions();
    await r.types();
    await r.otherSchemaObjects();
    await r.publications();
    await r.roles();
    await r.foreignData();
    await r.castsAndEventTriggers();
    return { version: 1, objects: sorted(r.fp.objects), notes: sorted(r.fp.notes) };
  } finally {
    if (inTransaction) await apply(names.map((_, i) => String(before[`s${i}`]))).catch(() => {});
    else await client.query('ROLLBACK').catch(() => {});
  }
}

/** True when `x` has the shape of a Fingerprint (a ledger or sidecar is a file anyone can edit). */
export function isFingerprint(x: unknown): x is Fingerprint {
  const f = x as Fingerprint | null;
  const strings = (r: unknown) => !!r && typeof r === 'object' && Object.values(r as object).every((v) => typeof v === 'string');
  return !!f && typeof f === 'object' && f.version === 1 && strings(f.objects) && strings(f.notes);
}

// ------------------------------------------------------------------------------------------------
// Comparing
// ------------------------------------------------------------------------------------------------

const IDENT = '(?:"(?:[^"]|"")*"|[^\\s".]+)';
const QNAME = `${IDENT}\\.${IDENT}`;
const RELATION_KEY = new RegExp(`^(?:table|partitioned table|view|materialized view|foreign table|sequence) (${QNAME})$`);
const CHILD_PATTERNS: ReadonlyArray<[RegExp, (m: RegExpExecArray, rel: (name: string) => string | undefined) => Array<string | undefined>]> = [
  [/^(?:acl|owner|comment on) (.+)$/, (m) => [m[1]]],
  [new RegExp(`^column (${QNAME})\\.${IDENT}$`), (m, rel) => [rel(m[1]!)]],
  [new RegExp(`^(?:constraint|index|trigger|rule|policy) ${IDENT} on (${QNAME})$`), (m, rel) => [rel(m[1]!)]],
  [new RegExp(`^constraint ${IDENT} on (domain ${QNAME})$`), (m) => [m[1]]],
  [new RegExp(`^((?:sequence|materialized view) ${QNAME}) (?:value|populated)$`), (m) => [m[1]]],
  [new RegExp(`^member (${IDENT}) of (${IDENT})$`), (m) => [`role ${m[1]}`, `role ${m[2]}`]],
  [new RegExp(`^(role ${IDENT}) (?:set |superuser attributes$)`), (m) => [m[1]]],
  [new RegExp(`^(extension ${IDENT}) version$`), (m) => [m[1]]],
  [new RegExp(`^(publication ${IDENT}) (?:table|schema) `), (m) => [m[1]]],
  [new RegExp(`^user mapping for ${IDENT} on server (${IDENT})$`), (m) => [`foreign server ${m[1]}`]],
];

/** The keys a key belongs to (a column to its table, an ACL to its object ...). */
function parentsOf(key: string, relations: Map<string, string>): string[] {
  for (const [re, f] of CHILD_PATTERNS) {
    const m = re.exec(key);
    if (m) return f(m, (name) => relations.get(name)).filter((p): p is string => p !== undefined && p !== key);
  }
  return [];
}

/** ACL keys and per-schema default privileges: absent means no grants. */
function absentMeansEmpty(key: string): boolean {
  return key.startsWith('acl ') || (key.startsWith('default privileges ') && key.includes(' in schema '));
}

const RELATION_WORDS = /^(?:table|partitioned table|view|materialized view|foreign table|sequence|column) /;

function aclMessage(key: string, expected: string, actual: string): string {
  const subject = key.startsWith('acl ') ? key.slice(4).replace(RELATION_WORDS, '') : key;
  const e = parseCanonicalAcl(expected);
  const a = parseCanonicalAcl(actual);
  const grantees = [...new Set([...e.keys(), ...a.keys()])].sort(byCodeUnits);
  const parts: string[] = [];
  const words = (letters: string[]) => letters.map((l) => WORDS.get(l) ?? l).join(', ');
  for (const g of grantees) {
    const before = e.get(g) ?? new Map<string, boolean>();
    const after = a.get(g) ?? new Map<string, boolean>();
    const letters = [...new Set([...before.keys(), ...after.keys()])].sort((x, y) => (LETTER_ORDER.get(x) ?? 99) - (LETTER_ORDER.get(y) ?? 99));
    const gained = letters.filter((l) => !before.has(l) && after.has(l));
    const lost = letters.filter((l) => before.has(l) && !after.has(l));
    const optGained = letters.filter((l) => before.has(l) && after.has(l) && !before.get(l) && after.get(l));
    const optLost = letters.filter((l) => before.has(l) && after.has(l) && before.get(l) && !after.get(l));
    const phrases: string[] = [];
    const gainedPlain = gained.filter((l) => !after.get(l));
    const gainedGrantable = gained.filter((l) => after.get(l));
    if (gainedPlain.length) phrases.push(`gained ${words(gainedPlain)}`);
    if (gainedGrantable.length) phrases.push(`gained ${words(gainedGrantable)} WITH GRANT OPTION`);
    if (lost.length) phrases.push(`lost ${words(lost)}`);
    if (optGained.length) phrases.push(`gained the grant option on ${words(optGained)}`);
    if (optLost.length) phrases.push(`lost the grant option on ${words(optLost)}`);
    if (phrases.length) parts.push(`${g} ${phrases.join(' and ')}`);
  }
  return `${subject}: ${parts.join('; ')}`;
}

const isShort = (v: string) => v.length <= 100 && !v.includes('\n');
const show = (v: string) => (/^[\w.$#-]+$/.test(v) ? v : JSON.stringify(v));

function changedMessage(key: string, expected: string, actual: string): string {
  if (absentMeansEmpty(key) || key.startsWith('default privileges ')) return aclMessage(key, expected, actual);
  const seq = /^(sequence .+) value$/.exec(key);
  if (seq) return `${seq[1]} is at ${actual}, was ${expected}`;
  if (isShort(expected) && isShort(actual)) return `${key} is ${show(actual)}, was ${show(expected)}`;
  if (key.startsWith('comment on ')) return `${key} changed`;
  return `${key}: definition differs`;
}

function diff(expected: Record<string, string | undefined>, actual: Record<string, string | undefined>, skip: (key: string) => boolean): Difference[] {
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(actual)])].sort(byCodeUnits);
  const out: Difference[] = [];
  for (const key of keys) {
    if (skip(key)) continue;
    let e = expected[key];
    let a = actual[key];
    if (e === a) continue;
    if (e === UNREADABLE || a === UNREADABLE) continue;
    if (absentMeansEmpty(key)) {
      e ??= '';
      a ??= '';
      if (e === a) continue;
      out.push({ key, kind: 'changed', message: aclMessage(key, e, a) });
    } else if (a === undefined) out.push({ key, kind: 'missing', message: `${key} missing` });
    else if (e === undefined) out.push({ key, kind: 'extra', message: `${key} extra` });
    else out.push({ key, kind: 'changed', message: changedMessage(key, e, a) });
  }
  return out;
}

/** Drops the differences of things whose parent object is itself missing or extra (a missing table's columns). */
function withoutChildren(diffs: Difference[], allKeys: Iterable<string>): Difference[] {
  const relations = new Map<string, string>();
  for (const k of allKeys) {
    const m = RELATION_KEY.exec(k);
    if (m) relations.set(m[1]!, k);
  }
  const gone = new Set(diffs.filter((d) => d.kind !== 'changed').map((d) => d.key));
  const covered = (key: string, depth = 0): boolean => depth < 5 && parentsOf(key, relations).some((p) => gone.has(p) || covered(p, depth + 1));
  return diffs.filter((d) => !covered(d.key));
}

/**
 * What differs between the source's fingerprint (`expected`) and the restored database's
 * (`actual`), sorted by key, one difference per key, in words: `policy "x" on storage.objects
 * missing`, `public.user_roles: anon gained INSERT, UPDATE, DELETE`, `comment on table
 * public.orders missing`, `sequence public.orders_id_seq is at 41, was 42`, `function
 * public.f(integer): definition differs`. What a missing or extra object contains (its columns,
 * ACL, comment ...) is not listed again. Keys the expected fingerprint holds as notes (owners the
 * platform has) are not compared here: see {@link compareNotes}.
 */
export function compareFingerprints(expected: Fingerprint, actual: Fingerprint): Difference[] {
  const act: Record<string, string | undefined> = { ...actual.objects };
  // An owner the source had compared but the restore gave to a platform role is a difference too.
  for (const k of Object.keys(expected.objects)) if (act[k] === undefined && actual.notes[k] !== undefined) act[k] = actual.notes[k];
  const diffs = diff(expected.objects, act, (key) => expected.notes[key] !== undefined);
  return withoutChildren(diffs, [...Object.keys(expected.objects), ...Object.keys(actual.objects)]);
}

/**
 * The informational differences: notes the source recorded (platform owners, SUPERUSER/
 * REPLICATION/BYPASSRLS of user roles, extension versions) that the restored database does not
 * match. A non-superuser restore cannot make them equal; they never fail a drill.
 */
export function compareNotes(expected: Fingerprint, actual: Fingerprint): Difference[] {
  const act: Record<string, string | undefined> = {};
  for (const k of Object.keys(expected.notes)) act[k] = actual.notes[k] ?? actual.objects[k];
  const diffs = diff(expected.notes, act, () => false);
  return withoutChildren(diffs, [...Object.keys(expected.objects), ...Object.keys(actual.objects), ...Object.keys(expected.notes)]).filter(
    // a note of an object that is missing altogether is said by compareFingerprints already
    (d) => !(d.kind === 'missing' && parentsOf(d.key, new Map()).some((p) => expected.objects[p] !== undefined && actual.objects[p] === undefined)),
  );
}

/** How many objects a fingerprint covers (keys naming an object, not an ACL, owner, comment or sequence position). */
export function fingerprintObjectCount(f: Fingerprint): number {
  return Object.keys(f.objects).filter((k) => !/^(?:acl|owner|comment on) /.test(k) && !/ (?:value|populated)$/.test(k)).length;
}
