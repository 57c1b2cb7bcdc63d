/**
 * The supabase dump profile: a Supabase-shaped database backed up and restored into a second,
 * fresh one — every user table and the auth and storage rows identical, platform-internal rows
 * not copied — and all parts from one snapshot.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dropDatabase, query } from '../helpers/pg.js';
import { fakePgBin, realPgBin } from '../helpers/pgbin.js';
import { supabaseShaped } from '../helpers/supabase-fixture.js';

const dbs: string[] = [];
const dirs: string[] = [];
let source: { name: string; url: string };

beforeAll(async () => {
  source = await createDatabase('sbsrc');
  dbs.push(source.name);
  await supabaseShaped(source.url, true);
});
afterAll(async () => {
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

async function fresh(): Promise<{ name: string; url: string }> {
  const db = await createDatabase('sbdst');
  dbs.push(db.name);
  await supabaseShaped(db.url, false);
  return db;
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
  it('is the default when SUPABASE_PROJECT_REF is set, and restores into a fresh Supabase-shaped database', async () => {
    const s = setup();
    const r = await runCli(['manual', 'supabase profile', '--json'], { ...s.env, SUPABASE_PROJECT_REF: 'abcdefghijklmnopqrst' });
    expect(r.exitCode, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    expect(b.profile).toBe('supabase');

    const sql = readFileSync(b.file, 'utf8');
    expect(sql).toMatch(/^--\n-- hybrid-backup: Supabase-profile backup of database "hbt_sbsrc_.*": roles, schema, data \(one snapshot\)/);
    expect(sql).toMatch(/^-- CREATE ROLE "anon"; -- platform role$/m);
    expect(sql).toMatch(/^-- ALTER ROLE "supabase_admin" WITH /m);
    expect(sql).toMatch(/^DO \$hb\$ BEGIN CREATE ROLE "hb_app_reader"; EXCEPTION WHEN duplicate_object/m);
    expect(sql).toMatch(/^-- ALTER FUNCTION "public"."handle_new_user"\(\) OWNER TO "supabase_admin";$/m);
    expect(sql).not.toMatch(/^CREATE SCHEMA "(auth|storage|extensions|realtime|vault|supabase_migrations)"/m);
    expect(sql).toMatch(/^SET session_replication_role = replica;$/m);
    expect(sql).toMatch(/^CREATE OR REPLACE TRIGGER on_auth_user_created AFTER INSERT ON auth\.users FOR EACH ROW EXECUTE FUNCTION public\.handle_new_user\(\);$/m);
    expect(sql).not.toMatch(/sk_live_do_not_copy/);
    expect(sql).not.toMatch(/^COPY "(auth"\."schema_migrations|storage"\."migrations|realtime|vault|supabase_migrations)/m);

    // counts from the dump's own COPY blocks: user schemas plus auth and storage
    expect(b.tableCount).toBeGreaterThan(0);
    const counts = Object.fromEntries(readLedger<{ table_name: string; rows: number }>(s.backupDir, 'select table_name, rows from backup_tables').map((t) => [t.table_name, t.rows]));
    expect(counts).toMatchObject({ '"public"."todos"': 50, '"public"."profiles"': 2, '"auth"."users"': 2, '"auth"."identities"': 1, '"storage"."objects"': 1, '"storage"."buckets"': 1 });
    expect(Object.keys(counts).some((t) => /migrations|vault|realtime/.test(t))).toBe(false);

    const target = await fresh();
    const before = await rows(target.url, 'auth.schema_migrations');
    const restored = await runCli(['restore', String(b.id), '--target', target.url], s.env);
    expect(restored.exitCode, restored.stderr).toBe(0);

    for (const t of ['public.todos', 'public.profiles', 'auth.users', 'auth.identities', 'auth.audit', 'storage.buckets', 'storage.objects']) {
      expect(await rows(target.url, t), t).toBe(await rows(source.url, t));
    }
    // platform-internal rows stay the target's own
    expect(await rows(target.url, 'auth.schema_migrations')).toBe(before);
    expect(await rows(target.url, 'storage.migrations')).toBe(await rows(target.url, 'storage.migrations'));
    expect(await rows(target.url, 'vault.secrets')).toBe('');
    expect(await rows(target.url, 'realtime.subscription')).toBe('');
    expect(await rows(target.url, 'supabase_migrations.schema_migrations')).toBe('');
    // the schema came along: policies, grants, triggers, the identity's position
    const policies = await query(target.url, `select policyname from pg_policies where schemaname = 'public'`);
    expect(policies.map((p) => p.policyname)).toEqual(['owners see their todos']);
    const grants = await query(target.url, `select grantee from information_schema.role_table_grants where table_schema = 'public' and table_name = 'todos' and privilege_type = 'SELECT' order by grantee`);
    expect(grants.map((g) => g.grantee)).toEqual(expect.arrayContaining(['authenticated', 'hb_app_reader']));
    const [trigger] = await query(target.url, `select tgname from pg_trigger where tgname = 'on_auth_user_created'`);
    expect(trigger).toBeDefined();
    const [next] = await query(target.url, `insert into public.todos (title) values ('after restore') returning id`);
    expect(Number(next!.id)).toBe(51);
  });

  it('takes every part from one snapshot: a row committed during the backup is not in it', async () => {
    const s = setup({ dump: { profile: 'supabase' } });
    const log = path.join(s.dir, 'args.log');
    // after the schema part, something writes to the database before the data part starts
    const bin = await fakePgBin(
      s.dir,
      `echo "$@" >> ${log}
"$REAL" "$@"; rc=$?
case "$*" in *--schema-only*) ${await realPgBin()}/psql -X -q -d "${source.url}" -c "insert into public.todos (title) values ('written during the backup')" >/dev/null;; esac
exit $rc`,
    );
    writeFileSync(path.join(s.dir, 'c.json'), JSON.stringify({ dump: { profile: 'supabase', pgBinDir: bin } }));
    const r = await runCli(['manual', '--json'], s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout);
    const args = readFileSync(log, 'utf8').trim().split('\n');
    const snaps = args.map((a) => /--snapshot=(\S+)/.exec(a)?.[1]);
    expect(snaps).toHaveLength(2);
    expect(snaps[0]).toBeTruthy();
    expect(snaps[1]).toBe(snaps[0]);
    expect(readFileSync(b.file, 'utf8')).not.toContain('written during the backup');
    const [{ n }] = await query(source.url, `select count(*)::int as n from public.todos where title = 'written during the backup'`);
    expect(n).toBe(1);
    expect(readLedger(s.backupDir, `select rows from backup_tables where table_name = '"public"."todos"'`)[0].rows).toBe(50);
    await query(source.url, `delete from public.todos where title = 'written during the backup'`);
  });

  it('the full profile is the default otherwise; dump.profile overrides', async () => {
    const s = setup();
    expect(JSON.parse((await runCli(['manual', '--json'], s.env)).stdout).profile).toBe('full');
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
