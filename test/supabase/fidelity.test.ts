/**
 * Fidelity of the supabase profile. A Supabase-shaped project (test/fixtures/supabase/platform.sql
 * in a cluster made with `initdb -U supabase_admin`, then app.sql as the demoted `postgres`) is
 * backed up by the real CLI, and the file is restored with
 * `psql -X -v ON_ERROR_STOP=1 --single-transaction` as `postgres` — not a superuser — into a fresh
 * Supabase-shaped project in ANOTHER throwaway cluster (roles are cluster-wide: a second database
 * of the same cluster would hide every role the restore failed to create). Then the two are
 * compared: the catalog fingerprint as a whole, and item by item what a Supabase app relies on.
 *
 * The target has no supautils (a C hook this test cannot load). On a real project, postgres's
 * `CREATE EXTENSION postgres_fdw` is run by supautils as supabase_admin; here the extensions the
 * backup names are created beforehand as supabase_admin (precreateExtensions). supautils would
 * also let postgres create the user's event trigger; plain PostgreSQL does not, and the restore
 * says so in a WARNING instead of failing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReservedRole, PLATFORM_SCHEMAS, POLICY_SCHEMAS } from '../../src/dump/profiles.js';
import { compareFingerprints, readFingerprint } from '../../src/fidelity/fingerprint.js';
import { removeDir, runCli, tempDir } from '../helpers/cli.js';
import { precreateExtensions, type SupabaseCluster, startSupabaseCluster } from '../helpers/supabase-fixture.js';

let source: SupabaseCluster;
let target: SupabaseCluster;
let dir: string;
let file: string;
let sql: string;
let restore: { exitCode: number; stdout: string; stderr: string };

const USER_SCHEMAS = `n.nspname IN ('public', 'app')`;

/**
 * Rows of a catalog query, as the platform's superuser sees them (everything, passwords
 * included), with an empty search_path: every name schema-qualified, the same on both sides.
 */
async function rows(c: SupabaseCluster, text: string, database = 'postgres'): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({ connectionString: c.url('supabase_admin', database) });
  await client.connect();
  try {
    await client.query(`SELECT set_config('search_path', '', false)`);
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

/** The same query on both sides. */
async function both(text: string, database = 'postgres'): Promise<[Array<Record<string, unknown>>, Array<Record<string, unknown>>]> {
  return [await rows(source, text), await rows(target, text, database)];
}

beforeAll(async () => {
  [source, target] = await Promise.all([startSupabaseCluster({ app: true }), startSupabaseCluster({ app: false })]);
  // besides app.sql: materialized views that read one another (through a view), one never populated
  const extra = await source.psql('postgres', [
    '-q',
    '-c',
    `CREATE MATERIALIZED VIEW app.mv_base AS SELECT count(*) AS orders FROM app.orders;
     CREATE VIEW app.v_base AS SELECT orders FROM app.mv_base;
     CREATE MATERIALIZED VIEW app.mv_0_on_base AS SELECT orders * 2 AS twice FROM app.v_base;
     CREATE MATERIALIZED VIEW app.mv_never AS SELECT 1 AS one WITH NO DATA;`,
  ]);
  if (extra.exitCode !== 0) throw new Error(extra.stderr);
  dir = tempDir('hbfid');
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ dump: { profile: 'supabase' } }));
  const r = await runCli(['manual', 'fidelity', '--json'], { DATABASE_URL: source.url('postgres'), BACKUP_DIR: path.join(dir, 'b'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') });
  if (r.exitCode !== 0) throw new Error(`the backup failed: ${r.stderr}`);
  file = JSON.parse(r.stdout).file;
  sql = readFileSync(file, 'utf8');
  // what supautils would do when the restore's CREATE EXTENSION runs (see the file's comment)
  const extensions = (await rows(source, `SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`)).map((e) => String(e.extname));
  await precreateExtensions(target, extensions);
  restore = await target.psql('postgres', ['--single-transaction', '-f', file]);
});

afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
  if (dir) removeDir(dir);
});

describe('a supabase-profile backup restored as postgres into a new project', () => {
  it('restores in one transaction; its only warning is the event trigger plain PostgreSQL refuses a non-superuser', () => {
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(restore.stderr).not.toMatch(/ERROR/);
    // pg_dump's own BEGIN/COMMIT around the large objects would have ended psql's transaction early
    expect(restore.stderr).not.toMatch(/already a transaction in progress|no transaction in progress/);
    const warnings = restore.stderr.split('\n').filter((l) => /WARNING:/.test(l));
    expect(warnings).toEqual([
      expect.stringMatching(/WARNING: {2}hybrid-backup: event trigger "app_ddl_audit" \(ddl_command_end, app\.log_ddl\(\)\) not restored: permission denied to create event trigger "app_ddl_audit"$/),
    ]);
    expect(restore.stderr).toMatch(/HINT: {2}creating an event trigger takes a superuser \(on Supabase, supautils lets postgres create one\); create it as such a role: CREATE EVENT TRIGGER "app_ddl_audit" ON "ddl_command_end" WHEN TAG IN \('CREATE TABLE', 'ALTER TABLE', 'DROP TABLE'\) EXECUTE FUNCTION app\.log_ddl\(\);/);
  });

  it("the catalog fingerprints differ only by that event trigger and the user mapping's password", async () => {
    const opts = { platformSchemas: PLATFORM_SCHEMAS, keptPlatformSchemas: POLICY_SCHEMAS, isReservedRole };
    const read = async (c: SupabaseCluster) => {
      // as postgres, the role a backup and a drill use: what it cannot read is not compared
      const client = new pg.Client({ connectionString: c.url('postgres') });
      await client.connect();
      try {
        return await readFingerprint(client, opts);
      } finally {
        await client.end();
      }
    };
    const [src, dst] = [await read(source), await read(target)];
    expect(Object.keys(src.objects).length).toBeGreaterThan(100);
    const diffs = compareFingerprints(src, dst);
    expect(diffs, JSON.stringify(diffs, null, 2)).toEqual([
      // plain PostgreSQL refuses it to a non-superuser (supautils would not): said in a warning
      { key: 'event trigger app_ddl_audit', kind: 'missing', message: expect.any(String) },
      // the password is never written into a backup: said in the file, to be set again
      { key: 'user mapping for postgres on server app_loopback', kind: 'changed', message: expect.stringMatching(/is "OPTIONS \(user 'app_service'\)", was "OPTIONS \(password \*+, user 'app_service'\)"/) },
    ]);
  });

  it('comments: on objects, columns, policies (storage ones too), the cast, the server, the publication, the role; not the extensions', async () => {
    const text = `SELECT pg_describe_object(classoid, objoid, objsubid) AS obj, description FROM pg_description
                   WHERE objoid >= 16384 AND classoid <> 'pg_event_trigger'::regclass
                  UNION ALL SELECT 'role ' || r.rolname, d.description FROM pg_shdescription d JOIN pg_roles r ON r.oid = d.objoid
                  ORDER BY 1, 2`;
    const [src, dst] = await both(text);
    expect(dst).toEqual(src);
    expect(src.map((r) => r.obj)).toEqual(
      expect.arrayContaining([
        'schema app',
        'table public.profiles',
        'column username of table public.profiles',
        'column total_cents of table app.orders',
        'view app.open_orders',
        'sequence app.invoice_number_seq',
        'type public.email_address',
        'function public.custom_access_token_hook(jsonb)',
        'policy Users update their own profile on table public.profiles',
        'policy Owners manage private docs on table storage.objects',
        'cast from app.rgb to text',
        'server app_loopback',
        'foreign table app.remote_rooms',
        'publication app_orders_pub',
        'role app_reporter',
      ]),
    );
    expect(sql).toMatch(/^-- COMMENT ON EXTENSION "citext" IS /m);
  });

  it('privileges: every object of the user schemas has exactly the source ACL and owner, whatever the target\'s default privileges', async () => {
    const text = `SELECT 'rel ' || c.oid::regclass AS obj, c.relacl::text AS acl, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS}
                  UNION ALL SELECT 'col ' || a.attrelid::regclass || '.' || a.attname, a.attacl::text, '' FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS} AND a.attacl IS NOT NULL
                  UNION ALL SELECT 'fn ' || p.oid::regprocedure, p.proacl::text, pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER_SCHEMAS}
                  UNION ALL SELECT 'type ' || t.oid::regtype, t.typacl::text, pg_get_userbyid(t.typowner) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER_SCHEMAS} AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0
                  UNION ALL SELECT 'schema ' || n.nspname, n.nspacl::text, pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE ${USER_SCHEMAS}
                  UNION ALL SELECT 'server ' || s.srvname, s.srvacl::text, pg_get_userbyid(s.srvowner) FROM pg_foreign_server s
                  UNION ALL SELECT 'lo ' || l.oid, l.lomacl::text, pg_get_userbyid(l.lomowner) FROM pg_largeobject_metadata l
                  ORDER BY 1`;
    const [src, dst] = await both(text);
    expect(src.length).toBeGreaterThan(40);
    expect(dst).toEqual(src);
    // what a widened restore would have opened: the RBAC table and the SECURITY DEFINER hook
    const closed = `SELECT has_table_privilege('anon', 'public.user_roles', 'SELECT') AS anon_reads, has_table_privilege('anon', 'public.user_roles', 'INSERT,UPDATE,DELETE') AS anon_writes,
                           has_table_privilege('authenticated', 'public.user_roles', 'INSERT,UPDATE,DELETE') AS auth_writes,
                           has_table_privilege('anon', 'public.audit_log', 'SELECT') AS anon_audit,
                           has_function_privilege('anon', 'public.custom_access_token_hook(jsonb)', 'EXECUTE') AS anon_hook,
                           has_function_privilege('authenticated', 'public.custom_access_token_hook(jsonb)', 'EXECUTE') AS auth_hook,
                           has_function_privilege('authenticated', 'public.handle_new_user()', 'EXECUTE') AS auth_trigger_fn,
                           has_function_privilege('supabase_auth_admin', 'public.custom_access_token_hook(jsonb)', 'EXECUTE') AS auth_admin_hook`;
    expect((await rows(target, closed))[0]).toEqual({ anon_reads: false, anon_writes: false, auth_writes: false, anon_audit: false, anon_hook: false, auth_hook: false, auth_trigger_fn: false, auth_admin_hook: true });
  });

  it('default privileges: the source\'s, per schema and global; the target\'s own in platform schemas untouched', async () => {
    const [src, dst] = await both(`SELECT pg_get_userbyid(d.defaclrole) AS role, coalesce(n.nspname, '-') AS schema, d.defaclobjtype::text AS kind, d.defaclacl::text AS acl
                                     FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3`);
    expect(dst).toEqual(src);
    expect(dst).toEqual(expect.arrayContaining([{ role: 'postgres', schema: '-', kind: 'f', acl: '{postgres=X/postgres}' }, expect.objectContaining({ role: 'postgres', schema: 'app', kind: 'r' })]));
  });

  it('roles: created with their attributes (no superuser-only ones), settings, comments and memberships, also in platform roles', async () => {
    const text = `SELECT r.rolname, r.rolinherit, r.rolcanlogin, r.rolcreatedb, r.rolcreaterole, r.rolsuper, r.rolconnlimit, r.rolvaliduntil::text AS valid,
                          (SELECT array_agg(x ORDER BY x) FROM pg_db_role_setting s, unnest(s.setconfig) x WHERE s.setrole = r.oid) AS settings
                     FROM pg_roles r WHERE r.rolname LIKE 'app\\_%' OR r.rolname = 'authenticator' ORDER BY 1`;
    const [src, dst] = await both(text);
    expect(dst).toEqual(src);
    expect(src.map((r) => r.rolname)).toEqual(['app_admins', 'app_reporter', 'app_service', 'authenticator']);
    const members = `SELECT pg_get_userbyid(m.roleid) AS role, pg_get_userbyid(m.member) AS member, m.admin_option FROM pg_auth_members m
                      WHERE pg_get_userbyid(m.roleid) LIKE 'app\\_%' OR pg_get_userbyid(m.member) LIKE 'app\\_%' ORDER BY 1, 2`;
    const [sm, dm] = await both(members);
    expect(dm).toEqual(sm);
    expect(dm).toContainEqual({ role: 'app_reporter', member: 'authenticated', admin_option: false });
    expect(sql).toMatch(/^DO \$hb\$ BEGIN IF .* \? 'app_admins' THEN ALTER ROLE "app_admins" WITH INHERIT NOCREATEROLE CREATEDB NOLOGIN; END IF; END \$hb\$;$/m);
  });

  it('row-level security: flags and every policy, those on storage.objects and storage.buckets too', async () => {
    const [src, dst] = await both(`SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2, 3`);
    expect(dst).toEqual(src);
    expect(dst.filter((p) => p.schemaname === 'storage').map((p) => p.policyname)).toEqual([
      'Anyone can list public buckets',
      'Avatar images are publicly accessible',
      'Owners manage private docs',
      'Users upload their own avatar',
    ]);
    const [sf, df] = await both(`SELECT c.oid::regclass::text AS t, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE c.relkind IN ('r', 'p') AND (${USER_SCHEMAS} OR n.nspname IN ('auth', 'storage', 'realtime')) ORDER BY 1`);
    expect(df).toEqual(sf);
  });

  it('triggers: the user\'s on auth.users, and on their own tables', async () => {
    const [src, dst] = await both(`SELECT tgrelid::regclass::text AS t, tgname, tgfoid::regprocedure::text AS fn, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2`);
    expect(dst).toEqual(src);
    expect(dst).toContainEqual({ t: 'auth.users', tgname: 'on_auth_user_created', fn: 'public.handle_new_user()', tgenabled: 'O' });
  });

  it('publications: public.messages in supabase_realtime, and the user\'s own with its tables and options', async () => {
    const [src, dst] = await both(`SELECT p.pubname, pg_get_userbyid(p.pubowner) AS owner, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate,
                                          (SELECT array_agg(t.schemaname || '.' || t.tablename ORDER BY t.schemaname, t.tablename) FROM pg_publication_tables t WHERE t.pubname = p.pubname) AS tables
                                     FROM pg_publication p ORDER BY 1`);
    expect(dst).toEqual(src);
    expect(dst.find((p) => p.pubname === 'supabase_realtime')?.tables).toEqual(['public.messages']);
    expect(dst.find((p) => p.pubname === 'app_orders_pub')).toMatchObject({ tables: ['app.order_items', 'app.orders'], pubinsert: true, pubupdate: true, pubdelete: false });
  });

  it('foreign data: the server and both user mappings, without the password — said in the file', async () => {
    const [ss, ds] = await both(`SELECT srvname, (SELECT array_agg(o ORDER BY o) FROM unnest(srvoptions) o) AS options, pg_get_userbyid(srvowner) AS owner FROM pg_foreign_server`);
    expect(ds).toEqual(ss);
    const mappings = `SELECT srvname, usename, (SELECT array_agg(o ORDER BY o) FROM unnest(umoptions) o) AS options FROM pg_user_mappings ORDER BY 1, 2`;
    expect(await rows(source, mappings)).toEqual([
      { srvname: 'app_loopback', usename: 'app_reporter', options: ['password=fixture-only-password', 'user=app_service'] },
      { srvname: 'app_loopback', usename: 'postgres', options: ['password=fixture-only-password', 'user=app_service'] },
    ]);
    // postgres reads its own mapping's options, never another role's: app_reporter's are not in the backup
    expect(await rows(target, mappings)).toEqual([
      { srvname: 'app_loopback', usename: 'app_reporter', options: null },
      { srvname: 'app_loopback', usename: 'postgres', options: ['user=app_service'] },
    ]);
    expect(sql).toContain(`-- hybrid-backup: the "password" option of this user mapping is not in the backup (never written into one); set it again:\n--   ALTER USER MAPPING FOR "postgres" SERVER "app_loopback" OPTIONS (ADD password '...');`);
    expect(sql).toContain(`--   ALTER USER MAPPING FOR "app_reporter" SERVER "app_loopback" OPTIONS (ADD user '...', ADD password '...');`);
    expect((await rows(target, `SELECT count(*)::int AS n FROM app.remote_rooms WHERE false`))[0]).toEqual({ n: 0 }); // the foreign table is there, on its server
  });

  it('no password of a user mapping is ever written into the backup', () => {
    expect(sql).not.toContain('fixture-only-password');
    expect(sql).not.toMatch(/"password" '/);
  });

  it('the user\'s cast', async () => {
    const [src, dst] = await both(`SELECT castsource::regtype::text AS s, casttarget::regtype::text AS t, castfunc::regprocedure::text AS f, castcontext FROM pg_cast c
                                  WHERE c.oid >= 16384 AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2`);
    expect(dst).toEqual(src);
    expect(dst).toEqual([{ s: 'app.rgb', t: 'text', f: 'app.rgb_to_text(app.rgb)', castcontext: 'a' }]);
  });

  it('event triggers: the platform\'s stay the target\'s own; the user\'s is missing on plain PostgreSQL only (said above)', async () => {
    const text = `SELECT evtname, evtevent, evtfoid::regproc::text AS fn, pg_get_userbyid(evtowner) AS owner, evtenabled FROM pg_event_trigger ORDER BY 1`;
    const [src, dst] = await both(text);
    expect(dst).toEqual(src.filter((e) => e.evtname !== 'app_ddl_audit'));
    expect(src.find((e) => e.evtname === 'app_ddl_audit')).toMatchObject({ fn: 'app.log_ddl', owner: 'postgres' });
    // commented out where pg_dump wrote it, created at the end of the file
    expect(sql).toMatch(/^-- hybrid-backup: your event trigger "app_ddl_audit" is created at the end of this file, after the data\n-- CREATE EVENT TRIGGER "app_ddl_audit"/m);
    expect(sql).toMatch(/^-- hybrid-backup: the platform's own event trigger "pgrst_ddl_watch"\n-- CREATE EVENT TRIGGER "pgrst_ddl_watch"/m);
    expect(sql.lastIndexOf('CREATE EVENT TRIGGER "app_ddl_audit"')).toBeGreaterThan(sql.indexOf('SET session_replication_role = replica;'));
  });

  it('data: every row of the user schemas, auth and storage; sequences where they were; the matview populated; the large object', async () => {
    const tables = (
      await rows(
        source,
        `SELECT c.oid::regclass::text AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND (${USER_SCHEMAS} OR n.nspname IN ('auth', 'storage')) AND c.oid::regclass::text NOT IN ('auth.schema_migrations', 'storage.migrations') ORDER BY 1`,
      )
    ).map((r) => String(r.t));
    expect(tables).toContain('app.daily_order_totals');
    const count = `SELECT ${tables.map((t, i) => `(SELECT count(*) FROM ${t})::int AS c${i}`).join(', ')}`;
    const [sc, dc] = await both(count);
    expect(dc).toEqual(sc);
    const content = `SELECT (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM auth.users x) AS users, (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM public.user_roles x) AS roles,
                            (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM public.messages x) AS messages, (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM storage.objects x) AS objects,
                            (SELECT string_agg(x::text, '|' ORDER BY x::text) FROM app.daily_order_totals x) AS totals`;
    const [sv, dv] = await both(content);
    expect(dv).toEqual(sv);
    expect((await rows(target, `SELECT (SELECT count(*) FROM auth.users)::int AS u, (SELECT count(*) FROM public.profiles)::int AS p, (SELECT count(*) FROM public.user_roles)::int AS r`))[0]).toEqual({ u: 3, p: 3, r: 3 });
    // sequences, identities included
    const seqs = `SELECT schemaname || '.' || sequencename AS s, last_value FROM pg_sequences WHERE schemaname IN ('public', 'app') ORDER BY 1`;
    const [ss, ds] = await both(seqs);
    expect(ds).toEqual(ss);
    expect(ds).toContainEqual({ s: 'app.invoice_number_seq', last_value: '1035' });
    // materialized views: those the source had populated refreshed after the data, each after what it reads
    const [sm, dm] = await both(`SELECT oid::regclass::text AS mv, relispopulated FROM pg_class WHERE relkind = 'm' ORDER BY 1`);
    expect(dm).toEqual(sm);
    expect(dm).toEqual([
      { mv: 'app.daily_order_totals', relispopulated: true },
      { mv: 'app.mv_0_on_base', relispopulated: true },
      { mv: 'app.mv_base', relispopulated: true },
      { mv: 'app.mv_never', relispopulated: false },
    ]);
    expect(sql).toMatch(/^REFRESH MATERIALIZED VIEW app\.daily_order_totals;\nREFRESH MATERIALIZED VIEW app\.mv_base;\nREFRESH MATERIALIZED VIEW app\.mv_0_on_base;\n\n/m);
    expect(sql).not.toMatch(/REFRESH MATERIALIZED VIEW app\.mv_never/);
    // the large object, whose data pg_dump wraps in a BEGIN/COMMIT of its own
    const lo = `SELECT d.title, convert_from(lo_get(d.attachment), 'UTF8') AS body FROM app.documents d WHERE d.attachment IS NOT NULL`;
    const [sl, dl] = await both(lo);
    expect(dl).toEqual(sl);
    expect(dl).toEqual([{ title: 'Quarterly report', body: '%PDF-1.7 fixture ✓' }]);
    expect(sql).toMatch(/^-- BEGIN; -- hybrid-backup: pg_dump's own transaction around the large objects/m);
  });

  it('restored by a superuser (the Supabase CLI restores as supabase_admin locally): the event trigger too, and the restoring role\'s own default privileges put back', async () => {
    // another database of the target cluster, shaped like a fresh project (roles already there)
    expect((await target.psql('supabase_admin', ['-q', '-c', 'CREATE DATABASE second'])).exitCode).toBe(0);
    const shaped = await target.psql('supabase_admin', ['-q', '-f', path.resolve(import.meta.dirname, '../fixtures/supabase/platform.sql')], { database: 'second' });
    expect(shaped.exitCode, shaped.stderr).toBe(0);
    await precreateExtensions(target, ['citext', 'hstore', 'pg_trgm', 'postgres_fdw'], 'second');
    // a target whose postgres already has global default privileges of its own
    expect((await target.psql('postgres', ['-q', '-c', 'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO anon'], { database: 'second' })).exitCode).toBe(0);
    const adminDefaults = `SELECT coalesce(n.nspname, '-') AS schema, d.defaclobjtype::text AS kind, d.defaclacl::text AS acl FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
                            WHERE d.defaclrole = 'supabase_admin'::regrole ORDER BY 1, 2`;
    const before = await rows(target, adminDefaults, 'second');
    expect(before.length).toBeGreaterThan(3);

    const r = await target.psql('supabase_admin', ['--single-transaction', '-f', file], { database: 'second' });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr.split('\n').filter((l) => /WARNING:/.test(l))).toEqual([
      // plain PostgreSQL wants a superuser as an event trigger's owner: it stays the restoring one's
      expect.stringMatching(/WARNING: {2}hybrid-backup: event trigger "app_ddl_audit" stays owned by supabase_admin: permission denied to change owner of event trigger "app_ddl_audit"/),
    ]);
    expect(await rows(target, `SELECT evtname, evtfoid::regproc::text AS fn, evtenabled FROM pg_event_trigger WHERE evtname = 'app_ddl_audit'`, 'second')).toEqual([{ evtname: 'app_ddl_audit', fn: 'app.log_ddl', evtenabled: 'O' }]);
    expect(await rows(target, adminDefaults, 'second')).toEqual(before);
    const [src, dst] = await both(`SELECT pg_get_userbyid(d.defaclrole) AS role, coalesce(n.nspname, '-') AS schema, d.defaclobjtype::text AS kind, d.defaclacl::text AS acl
                                     FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3`, 'second');
    expect(dst).toEqual(src);
    const acl = `SELECT c.oid::regclass::text AS t, c.relacl::text AS acl, pg_get_userbyid(c.relowner) AS owner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER_SCHEMAS} ORDER BY 1`;
    const [sa, da] = await both(acl, 'second');
    expect(da).toEqual(sa);
  });
});
