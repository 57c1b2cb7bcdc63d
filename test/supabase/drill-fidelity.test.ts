/**
 * The drill proves fidelity object by object: a supabase-profile backup of a Supabase-shaped
 * project (the platform's public migrations, emulated; an app using every feature) is drilled on
 * the drill's own throwaway server, shaped like a fresh project, restored as the non-superuser
 * `postgres` — and passes with no difference. The same backup damaged on purpose (a policy
 * dropped, a grant added, a row changed, a comment removed) fails, naming each damage.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runCli, tempDir } from '../helpers/cli.js';
import { precreateExtensions, startSupabaseCluster, type SupabaseCluster } from '../helpers/supabase-fixture.js';
import { getServerMajor } from '../helpers/pgbin.js';
import { withClient } from '../../src/pg/server.js';
import { startThrowawayCluster } from '../../src/pg/throwaway.js';

let source: SupabaseCluster;
const dirs: string[] = [];
beforeAll(async () => {
  source = await startSupabaseCluster({ app: true });
});
afterAll(async () => {
  await source?.stop();
  dirs.forEach(removeDir);
});

function setup() {
  const dir = tempDir('hbdf');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ dump: { profile: 'supabase' }, supabase: { enabled: false } }));
  return { dir, backupDir: path.join(dir, 'b'), env: { DATABASE_URL: source.url('postgres'), BACKUP_DIR: path.join(dir, 'b'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') } };
}

/** Rewrites a backup file and records its new checksum, as if it had been written so. */
function damage(backupDir: string, b: { id: number; file: string }, edit: (sql: string) => string): void {
  const before = readFileSync(b.file, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  writeFileSync(b.file, after);
  const l = new Database(path.join(backupDir, 'ledger.db'));
  l.prepare('update backups set sha256 = ?, bytes = ? where id = ?').run(createHash('sha256').update(after).digest('hex'), Buffer.byteLength(after), b.id);
  l.close();
}

describe('a drill of a supabase-profile backup', () => {
  it('on its own throwaway server shaped like a fresh project, restored as postgres: every object, privilege and row as recorded', async () => {
    const s = setup();
    const b = await runCli(['manual', '--json'], s.env);
    expect(b.exitCode, b.stderr).toBe(0);
    const r = await runCli(['restore-test', '--json'], s.env);
    const doc = JSON.parse(r.stdout);
    expect(doc.error).toBeUndefined();
    expect(doc.fidelity.differences, r.stdout).toEqual([]);
    expect(doc).toMatchObject({ ok: true, server: 'throwaway', mismatches: [] });
    expect(doc.fidelity.objects).toBeGreaterThan(100);
    expect(doc.fidelity.tablesDigested).toBeGreaterThan(5);
    expect(r.exitCode).toBe(0);
  });

  it('damaged on purpose — a storage policy dropped, a grant to anon added, a row changed, a comment removed — fails naming each', async () => {
    const s = setup();
    const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
    const text = readFileSync(b.file, 'utf8');
    const policy = /^CREATE POLICY ("[^"]+"|\w+) ON storage\.objects .*;$/m.exec(text);
    expect(policy, 'the backup carries a policy on storage.objects').not.toBeNull();
    const comment = /^COMMENT ON TABLE "public"\."(\w+)" IS .*;$/m.exec(text);
    expect(comment, 'the backup carries a table comment').not.toBeNull();
    damage(s.backupDir, b, (sql) =>
      sql
        // the policy's statement, whole (it may span lines)
        .replace(`${policy![0]}\n`, '')
        .replace(comment![0], '')
        // full_name (the third column) of the first profile
        .replace(/^(COPY "public"\."profiles" .*\n[^\t\n]*\t[^\t\n]*\t)([^\t\n]*)/m, (_m, head: string, name: string) => `${head}${name === '\\N' ? 'Someone Else' : `${name} Jr.`}`)
        .replace(/\n-- data: /, `\nGRANT INSERT, UPDATE, DELETE ON TABLE "public"."user_roles" TO "anon";\n-- data: `),
    );
    const r = await runCli(['restore-test', String(b.id), '--json'], s.env);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.error).toBeUndefined();
    const diffs: string[] = doc.fidelity.differences;
    expect(diffs).toEqual(
      expect.arrayContaining([
        `policy ${policy![1]} on storage.objects missing`,
        'public.user_roles: anon gained INSERT, UPDATE, DELETE',
        expect.stringMatching(/^"public"\."profiles": data differs/),
        `comment on table public.${comment![1]} missing`,
      ]),
    );
  });
  it('on a server named by RESTORE_TEST_DATABASE_URL: the drill leaves its roles, role settings, memberships and databases exactly as it found them', async () => {
    const major = await getServerMajor();
    const shared = await startThrowawayCluster({ major });
    try {
      const url = `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(shared.socketDir)}`;
      const state = () =>
        withClient(shared.conn, { connectTimeoutSeconds: 10 }, async (c) => ({
          roles: (await c.query('select rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit from pg_roles order by 1')).rows,
          settings: (await c.query('select setdatabase, setrole::regrole::text as r, setconfig from pg_db_role_setting order by 1, 2')).rows,
          members: (await c.query('select roleid::regrole::text as r, member::regrole::text as m, admin_option from pg_auth_members order by 1, 2')).rows,
          databases: (await c.query('select datname from pg_database order by 1')).rows,
        }));
      // a role the drill will meet already there, with a setting of its own: kept as it is
      await withClient(shared.conn, { connectTimeoutSeconds: 10 }, (c) => c.query(`create role anon nologin; alter role anon set statement_timeout = '42s'`));
      const before = await state();
      const s = setup();
      const env = { ...s.env, RESTORE_TEST_DATABASE_URL: url };
      expect((await runCli(['manual'], env)).exitCode).toBe(0);
      const r = await runCli(['restore-test', '--json'], env);
      const doc = JSON.parse(r.stdout);
      expect(doc.error).toBeUndefined();
      expect(doc.server).toBe('shared');
      expect(await state()).toEqual(before);
    } finally {
      await shared.stop();
    }
  });
});

describe('restore into a new project', () => {
  it('`restore --target` as postgres reports the fidelity comparison: only what the target refused (no supautils here) differs; a full-profile backup is refused up front', async () => {
    const target = await startSupabaseCluster({ app: false });
    try {
      const s = setup();
      const b = JSON.parse((await runCli(['manual', '--json'], s.env)).stdout);
      // on a real project supautils creates the extensions postgres asks for; here they are made first
      await precreateExtensions(target, b.profile === 'supabase' ? ['citext', 'hstore', 'pg_trgm', 'postgres_fdw'] : []);
      const r = await runCli(['restore', String(b.id), '--target', target.url('postgres'), '--json'], s.env);
      const doc = JSON.parse(r.stdout);
      expect(doc.error).toBeUndefined();
      expect(doc.fidelity.tablesDigested).toBeGreaterThan(5);
      expect(doc.fidelity.objects).toBeGreaterThan(100);
      // plain PostgreSQL lets no non-superuser create an event trigger: said, and counted
      expect(doc.fidelity.differences).toEqual([expect.stringMatching(/^event trigger .*app_ddl_audit.* missing$/)]);
      expect(r.exitCode).toBe(1);

      // the same project backed up with the full profile cannot restore into a Supabase project as postgres
      writeFileSync(path.join(s.dir, 'full.json'), JSON.stringify({ dump: { profile: 'full' }, supabase: { enabled: false } }));
      const fullEnv = { ...s.env, HYBRID_BACKUP_CONFIG: path.join(s.dir, 'full.json') };
      const full = JSON.parse((await runCli(['manual', '--json'], fullEnv)).stdout);
      const refused = await runCli(['restore', String(full.id), '--target', target.url('postgres', 'third'), '--create'], fullEnv);
      expect(refused.exitCode).toBe(2);
      expect(refused.stderr).toMatch(/backup \d+ is a full-profile backup .* cannot restore into a Supabase project as postgres.*hint: restore a supabase-profile backup/);
      expect((await target.psql('supabase_admin', ['-Atc', "select count(*) from pg_database where datname = 'third'"])).stdout.trim()).toBe('0'); // nothing was created
    } finally {
      await target.stop();
    }
  });
});
