/**
 * The supabase dump profile: a Supabase-shaped database backed up and restored into a fresh one
 * on another server — every user table and the auth and storage rows identical, platform-internal
 * rows not copied, the user's roles created only where missing — and all parts from one snapshot.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, psql, query, uniqueName } from '../helpers/pg.js';
import { fakePgBin, realPgBin } from '../helpers/pgbin.js';
import { type PrivateCluster, startPrivateCluster } from '../helpers/private-cluster.js';
import { supabaseShaped } from '../helpers/supabase-fixture.js';

const dbs: string[] = [];
const dirs: string[] = [];
let source: { name: string; url: string };
/** Another server, as a new Supabase project is: roles are cluster-wide, so only there can one be missing. */
let cluster: PrivateCluster;

beforeAll(async () => {
  source = await createDatabase('sbsrc');
  dbs.push(source.name);
  await supabaseShaped(source.url, true);
  cluster = await startPrivateCluster();
});
afterAll(async () => {
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
  await cluster?.stop();
});

/** A fresh Supabase-shaped project on the other server: the platform's roles and schemas, nothing of the user's. */
async function freshProject(): Promise<{ url: string }> {
  const name = uniqueName('sbdst');
  await query(cluster.url('postgres', cluster.password), `CREATE DATABASE "${name}"`);
  const url = cluster.url('postgres', cluster.password, name);
  await supabaseShaped(url, false);
  return { url };
}

async function rows(url: string, table: string): Promise<string> {
  const r = await query<{ t: string }>(url, `select coalesce(string_agg(x::text, E'\\n' order by x::text), '') as t from ${table} x`);
  return r[0]!.t;
}

function setup(config: object = {}) {
  const dir = tempDir('hbsf');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify(config));
  return { dir, backupDir: path.join(dir, 'b'), env: { DATABASE_URL: source.url, BACKUP_DIR: path.join(dir, 'b'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') } };
}

describe('the supabase profile', () => {
  it('is the default when SUPABASE_PROJECT_REF is set, and restores into a fresh Supabase project on another server', async () => {
    const s = setup();
    const target = await freshProject();
    // The new project already has one of the user's roles, set up its own way; the other it lacks.
    await psql(target.url, 'CREATE ROLE hb_app_reader LOGIN CONNECTION LIMIT 3;');
    const userRoles = `select rolname, rolcanlogin, rolconnlimit from pg_roles where rolname in ('hb_app_reader', 'hb_app_writer') order by 1`;
    expect(await query(target.url, userRoles)).toEqual([{ rolname: 'hb_app_reader', rolcanlogin: true, rolconnlimit: 3 }]);
    // A platform row the source has and the target does not: copying it would show.
    await query(source.url, `insert into storage.migrations values (2, 'only in the source: never copied') on conflict do nothing`);

    const r = await runCli(['manual', 'supabase profile', '--json'], { ...s.env, SUPABASE_PROJECT_REF: 'abcdefghijklmnopqrst' });
    expect(r.exitCode, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    expect(b.profile).toBe('supabase');

    const sql = readFileSync(b.file, 'utf8');
    expect(sql).toMatch(/^--\n-- hybrid-backup: Supabase-profile backup of database "hbt_sbsrc_.*": roles, schema, data \(one snapshot\)/);
    expect(sql).toMatch(/^-- CREATE ROLE "anon"; -- platform role$/m);
    expect(sql).toMatch(/^-- ALTER ROLE "supabase_admin" WITH /m);
    expect(sql).toMatch(/^DO \$hb\$ BEGIN CREATE ROLE "hb_app_reader"; PERFORM set_config\('hb\.created_roles', .* EXCEPTION WHEN duplicate_object/m);
    // a user's role gets the backup's attributes only when this restore created it
    expect(sql).toMatch(/^DO \$hb\$ BEGIN IF .* \? 'hb_app_writer' THEN ALTER ROLE "hb_app_writer" WITH .*NOLOGIN.* CONNECTION LIMIT 7; END IF; END \$hb\$;$/m);
    expect(sql).toMatch(/^-- ALTER FUNCTION "public"."handle_new_user"\(\) OWNER TO "supabase_admin";$/m);
    expect(sql).not.toMatch(/^CREATE SCHEMA "(auth|storage|extensions|realtime|vault|supabase_migrations)"/m);
    expect(sql).toMatch(/^SET session_replication_role = replica;$/m);
    expect(sql).toMatch(/^CREATE OR REPLACE TRIGGER on_auth_user_created AFTER INSERT ON auth\.users FOR EACH ROW EXECUTE FUNCTION public\.handle_new_user\(\);$/m);
    expect(sql).not.toMatch(/sk_live_do_not_copy/);
    expect(sql).not.toMatch(/^COPY "(auth"\."schema_migrations|storage"\."migrations|realtime|vault|supabase_migrations)/m);

    // the platform as the source has it, for restore drills: in the sidecar, schema only
    const sidecar = JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8'));
    expect(sidecar).toMatchObject({ kind: 'manual', description: 'supabase profile', profile: 'supabase', sha256: b.sha256, bytes: b.bytes });
    expect(sidecar.platform.schemas).toEqual(['auth', 'extensions', 'graphql_public', 'realtime', 'storage', 'supabase_migrations', 'vault']);
    expect(sidecar.platform.extensions).toEqual(expect.arrayContaining([{ name: 'pgcrypto', schema: 'extensions' }, { name: 'uuid-ossp', schema: 'extensions' }]));
    expect(sidecar.platform.roles).toEqual(expect.arrayContaining(['anon', 'authenticated', 'service_role', 'supabase_admin']));
    expect(sidecar.platform.roles).not.toContain('hb_app_reader');
    expect(sidecar.platform.ddl).toMatch(/^CREATE TABLE auth\.users \(/m);
    expect(sidecar.platform.ddl).toMatch(/^CREATE TABLE vault\.secrets \(/m);
    expect(sidecar.platform.ddl).not.toMatch(/sk_live_do_not_copy|only in the source/);

    // counts from the dump's own COPY blocks: user schemas plus auth and storage
    expect(b.tableCount).toBeGreaterThan(0);
    const counts = Object.fromEntries(readLedger<{ table_name: string; rows: number }>(s.backupDir, 'select table_name, rows from backup_tables').map((t) => [t.table_name, t.rows]));
    expect(counts).toMatchObject({ '"public"."todos"': 50, '"public"."profiles"': 2, '"auth"."users"': 2, '"auth"."identities"': 1, '"storage"."objects"': 1, '"storage"."buckets"': 1 });
    expect(Object.keys(counts).some((t) => /migrations|vault|realtime/.test(t))).toBe(false);

    // the target's platform-internal rows before the restore, which differ from the source's
    const platformTables = ['auth.schema_migrations', 'storage.migrations'];
    const before: Record<string, string> = {};
    for (const t of platformTables) {
      before[t] = await rows(target.url, t);
      expect(before[t], t).not.toBe('');
      expect(before[t], t).not.toBe(await rows(source.url, t));
    }
    const restored = await runCli(['restore', String(b.id), '--target', target.url], s.env);
    // the restore is committed; the role the target already had was kept as it was — and the
    // check after the restore says how it differs from the source's (exit 1: not identical)
    expect(restored.stdout, restored.stderr).toMatch(/DIFFERS from what the backup recorded \(1\):\n {4}role hb_app_reader is "LOGIN INHERIT NOCREATEROLE NOCREATEDB CONNECTION LIMIT 3", was "NOLOGIN INHERIT NOCREATEROLE NOCREATEDB"$/);
    expect(restored.exitCode).toBe(1);
    expect(restored.stderr).not.toContain(cluster.password);

    for (const t of ['public.todos', 'public.profiles', 'auth.users', 'auth.identities', 'auth.audit', 'storage.buckets', 'storage.objects']) {
      expect(await rows(target.url, t), t).toBe(await rows(source.url, t));
    }
    // platform-internal rows stay the target's own
    for (const t of platformTables) expect(await rows(target.url, t), t).toBe(before[t]);
    expect(await rows(target.url, 'vault.secrets')).toBe('');
    expect(await rows(target.url, 'realtime.subscription')).toBe('');
    expect(await rows(target.url, 'supabase_migrations.schema_migrations')).toBe('');
    // the schema came along: policies, grants, triggers, the identity's position
    const policies = await query(target.url, `select policyname from pg_policies where schemaname = 'public'`);
    expect(policies.map((p) => p.policyname)).toEqual(['owners see their todos']);
    const grants = await query(target.url, `select grantee from information_schema.role_table_grants where table_schema = 'public' and table_name = 'todos' and privilege_type = 'SELECT' order by grantee`);
    expect(grants.map((g) => g.grantee)).toEqual(expect.arrayContaining(['authenticated', 'hb_app_reader']));
    const inserts = await query(target.url, `select grantee from information_schema.role_table_grants where table_schema = 'public' and table_name = 'todos' and privilege_type = 'INSERT' order by grantee`);
    expect(inserts.map((g) => g.grantee)).toContain('hb_app_writer');
    // roles: the missing one created as the source has it, the existing one kept as it was
    expect(await query(target.url, userRoles)).toEqual([
      { rolname: 'hb_app_reader', rolcanlogin: true, rolconnlimit: 3 },
      { rolname: 'hb_app_writer', rolcanlogin: false, rolconnlimit: 7 },
    ]);
    const [trigger] = await query(target.url, `select tgname from pg_trigger where tgname = 'on_auth_user_created'`);
    expect(trigger).toBeDefined();
    const [next] = await query(target.url, `insert into public.todos (title) values ('after restore') returning id`);
    expect(Number(next!.id)).toBe(51);
  });

  it('takes every part, and the platform layout for drills, from one snapshot: a row committed during the backup is not in it', async () => {
    const s = setup({ dump: { profile: 'supabase' } });
    const log = path.join(s.dir, 'args.log');
    // after the schema part, something writes to the database before the data part starts
    const bin = await fakePgBin(
      s.dir,
      `echo "$@" >> ${log}
"$REAL" "$@"; rc=$?
case "$*" in *--schema-only*--exclude-schema=*) ${await realPgBin()}/psql -X -q -d "${source.url}" -c "insert into public.todos (title) values ('written during the backup')" >/dev/null;; esac
exit $rc`,
    );
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { profile: 'supabase', pgBinDir: bin } }));
    const r = await runCli(['manual', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    const args = readFileSync(log, 'utf8').trim().split('\n');
    // the platform layout (schema-only, the platform schemas), the schema part, the data part
    expect(args).toHaveLength(3);
    expect(args[0]).toMatch(/--schema-only .*--schema=auth .*--schema=storage/);
    const snaps = args.map((a) => /--snapshot=(\S+)/.exec(a)?.[1]);
    expect(snaps[0]).toBeTruthy();
    expect(snaps).toEqual([snaps[0], snaps[0], snaps[0]]);
    expect(readFileSync(b.file, 'utf8')).not.toContain('written during the backup');
    const [{ n }] = await query(source.url, `select count(*)::int as n from public.todos where title = 'written during the backup'`);
    expect(n).toBe(1);
    expect(readLedger(s.backupDir, `select rows from backup_tables where table_name = '"public"."todos"'`)[0].rows).toBe(50);
    await query(source.url, `delete from public.todos where title = 'written during the backup'`);
  });

  it('a platform layout that cannot be read does not fail the backup: it is said, and the sidecar records null', async () => {
    const s = setup();
    // pg_dump refuses only the platform schemas' DDL (as a server hiding a platform schema would)
    const bin = await fakePgBin(
      s.dir,
      `case "$*" in *--schema-only*--schema=auth*) echo 'pg_dump: error: query failed: ERROR:  permission denied for schema vault' >&2; exit 1;; esac
exec "$REAL" "$@"`,
    );
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { profile: 'supabase', pgBinDir: bin } }));
    const r = await runCli(['manual', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    const warning = /could not record the platform layout in the sidecar; a restore drill of this backup will read it from the source database: pg_dump of the platform schemas failed: pg_dump: error: query failed: ERROR: {2}permission denied for schema vault/;
    expect(r.stderr).toMatch(warning);
    expect(readFileSync(path.join(s.backupDir, 'backup.log'), 'utf8')).toMatch(warning);
    const sidecar = JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8'));
    expect(sidecar).toMatchObject({ profile: 'supabase', platform: null, sha256: b.sha256 });
    expect(readLedger(s.backupDir, 'select status from backups where id = ?', b.id)).toEqual([{ status: 'ok' }]);
  });

  it('the full profile is the default otherwise; dump.profile overrides', async () => {
    const s = setup();
    const full = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    expect(full.profile).toBe('full');
    expect(JSON.parse(readFileSync(`${full.file}.meta.json`, 'utf8'))).not.toHaveProperty('platform');
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { profile: 'full' } }));
    expect(JSON.parse((await runCli(['manual', '--json'], { ...s.env, SUPABASE_PROJECT_REF: 'abcdefghijklmnopqrst' })).stdout).profile).toBe('full');
  });
});

describe('connection preflight', () => {
  it('refuses Supabase\'s transaction pooler before connecting, pointing at the session pooler', async () => {
    const s = setup();
    const url = 'postgresql://postgres.abcdefghijklmnopqrst:secret-pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres';
    const r = await runCli(['manual'], { ...s.env, DATABASE_URL: url });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/DATABASE_URL points at Supabase's transaction pooler \(aws-0-eu-central-1\.pooler\.supabase\.com:6543\).*hint: use the session pooler instead: the same host on port 5432/);
    expect(r.stderr).not.toContain('secret-pw');
    expect(readLedger(s.backupDir, 'select count(*) as n from runs')[0].n).toBe(0); // nothing was done
    const restore = await runCli(['restore', '1', '--target', url], s.env);
    expect(restore.exitCode).toBe(2);
  });

  it('an unreachable direct host gets the IPv6 hint', async () => {
    const s = setup({ dump: { connectTimeoutSeconds: 2 } });
    const r = await runCli(['manual'], { ...s.env, DATABASE_URL: 'postgresql://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres' });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot reach database "postgres" on db\.abcdefghijklmnopqrst\.supabase\.co:5432.*hint: the direct host db\.<ref>\.supabase\.co is IPv6-only; use the session pooler/);
  });
});
