/**
 * Databases shaped like Supabase projects: the platform's roles and schemas (auth, storage,
 * extensions, graphql_public, realtime, vault, supabase_migrations) as a fresh project has them,
 * and — for the source — the user's roles and data on top. Two shapes:
 * - {@link supabaseShaped}: a small one, in a database of any server (its roles created if missing);
 * - {@link startSupabaseCluster}: the full fixture (test/fixtures/supabase/platform.sql, app.sql)
 *   in a throwaway cluster of its own, bootstrapped by supabase_admin, with postgres demoted to a
 *   non-superuser as on the platform — for restores that must run as that postgres.
 */
import path from 'node:path';
import { execa } from 'execa';
import { startThrowawayCluster, type ThrowawayCluster } from '../../src/pg/throwaway.js';
import { ROOT } from './cli.js';
import { createRolesSql } from './fixture.js';
import { psql } from './pg.js';
import { getServerMajor, realPgBin } from './pgbin.js';

export const PLATFORM_ROLES = ['anon', 'authenticated', 'service_role', 'authenticator', 'supabase_admin', 'supabase_auth_admin', 'supabase_storage_admin', 'dashboard_user'];

/** Cluster-wide roles every project has: the platform's. */
export const PLATFORM_ROLES_SQL = createRolesSql(PLATFORM_ROLES);

/**
 * The user's own roles (cluster-wide): a reader, and a writer with a connection limit a restore
 * that creates it must carry over. Created unless they exist; safe when test runs race.
 */
export const USER_ROLES_SQL = `${createRolesSql(['hb_app_reader'])}
DO $$ BEGIN CREATE ROLE hb_app_writer NOLOGIN CONNECTION LIMIT 7; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
`;

/** What every fresh project has before the user does anything. */
export const PLATFORM_SQL = `
CREATE SCHEMA extensions;
CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;

CREATE SCHEMA auth;
CREATE TABLE auth.users (
  id uuid PRIMARY KEY,
  email text UNIQUE,
  encrypted_password text,
  raw_user_meta_data jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE auth.identities (id text PRIMARY KEY, user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE, provider text NOT NULL, identity_data jsonb);
CREATE TABLE auth.schema_migrations (version text PRIMARY KEY);
INSERT INTO auth.schema_migrations VALUES ('20221208132122'), ('20230322519590'), ('20240115144230');
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
-- a trigger the platform keeps on its tables: replica mode must keep it quiet during the load
CREATE TABLE auth.audit (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION auth.audit_user() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO auth.audit (what) VALUES ('user ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER users_audit AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION auth.audit_user();

CREATE SCHEMA storage;
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean DEFAULT false);
CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT extensions.gen_random_uuid(),
  bucket_id text REFERENCES storage.buckets (id),
  name text,
  owner uuid,
  metadata jsonb
);
CREATE TABLE storage.migrations (id integer PRIMARY KEY, name text);
INSERT INTO storage.migrations VALUES (0, 'create-migrations-table'), (1, 'initialmigration');

CREATE SCHEMA graphql_public;
CREATE SCHEMA realtime;
CREATE TABLE realtime.subscription (id bigserial PRIMARY KEY, entity regclass, claims jsonb);
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY DEFAULT extensions.gen_random_uuid(), name text, secret text);
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY, name text);

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;
GRANT ALL ON SCHEMA public TO anon, authenticated, service_role;
`;

/** A user's project: their schema and data, rows in auth and storage, platform-internal rows. */
export const USER_SQL = `
INSERT INTO auth.schema_migrations VALUES ('20240601000000');
INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data, created_at) VALUES
  ('00000000-0000-0000-0000-0000000000a1', 'ada@example.com', extensions.crypt('pw', extensions.gen_salt('bf', 4)), '{"name": "Ada"}', '2025-01-01 10:00:00+00'),
  ('00000000-0000-0000-0000-0000000000a2', 'zoë@example.com', NULL, '{"emoji": "🐘"}', '2025-02-01 10:00:00+00');
INSERT INTO auth.identities VALUES ('ada-email', '00000000-0000-0000-0000-0000000000a1', 'email', '{"sub": "a1"}');
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true);
INSERT INTO storage.objects (id, bucket_id, name, owner, metadata) VALUES
  ('10000000-0000-0000-0000-000000000001', 'avatars', 'ada.png', '00000000-0000-0000-0000-0000000000a1', '{"size": 2048}');
INSERT INTO realtime.subscription (entity, claims) VALUES ('auth.users', '{"role": "authenticated"}');
INSERT INTO vault.secrets (name, secret) VALUES ('stripe', 'sk_live_do_not_copy');
INSERT INTO supabase_migrations.schema_migrations VALUES ('20250101000000', 'init');

CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  username text UNIQUE,
  bio text
);
CREATE TABLE public.todos (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  owner uuid REFERENCES auth.users (id),
  title text NOT NULL,
  done boolean DEFAULT false
);
ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
CREATE POLICY "owners see their todos" ON public.todos FOR SELECT TO authenticated USING (auth.uid() = owner);
GRANT SELECT ON public.profiles TO anon, authenticated;
GRANT ALL ON public.todos TO authenticated;
GRANT SELECT ON public.todos TO hb_app_reader;
GRANT INSERT ON public.todos TO hb_app_writer;
CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN INSERT INTO public.profiles (id, username) VALUES (NEW.id, split_part(NEW.email, '@', 1)); RETURN NEW; END $$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
ALTER FUNCTION public.handle_new_user() OWNER TO supabase_admin;
INSERT INTO public.profiles VALUES ('00000000-0000-0000-0000-0000000000a1', 'ada', E'likes\\tengines'), ('00000000-0000-0000-0000-0000000000a2', 'zoe', NULL);
INSERT INTO public.todos (owner, title) SELECT '00000000-0000-0000-0000-0000000000a1', 'todo ' || g FROM generate_series(1, 50) g;
UPDATE public.todos SET done = true WHERE id % 3 = 0;
`;

/** A fresh project (`withUserData` false: only what the platform creates) or a user's project. */
export async function supabaseShaped(url: string, withUserData: boolean): Promise<void> {
  await psql(url, PLATFORM_ROLES_SQL);
  if (withUserData) await psql(url, USER_ROLES_SQL);
  await psql(url, PLATFORM_SQL);
  if (withUserData) await psql(url, USER_SQL);
}

// ------------------------------------------------------------------------------------------------
// Whole Supabase-shaped clusters (test/fixtures/supabase/platform.sql, app.sql)
// ------------------------------------------------------------------------------------------------

/** The fixture files: a fresh project's platform (run as supabase_admin), and an app on it (run as postgres). */
export const PLATFORM_FIXTURE = path.join(ROOT, 'test/fixtures/supabase/platform.sql');
export const APP_FIXTURE = path.join(ROOT, 'test/fixtures/supabase/app.sql');

/**
 * A throwaway cluster shaped like a Supabase project: made with `initdb -U supabase_admin` (the
 * platform's bootstrap superuser), platform.sql applied — so `postgres` is the demoted,
 * non-superuser project owner — and, with `app`, app.sql applied as postgres. Roles are
 * cluster-wide: a source and a restore target must be two of these, never two databases of one.
 */
export interface SupabaseCluster {
  cluster: ThrowawayCluster;
  /** A libpq URL over the cluster's Unix socket. */
  url(user?: string, database?: string): string;
  /** Runs `psql -X -v ON_ERROR_STOP=1` with these arguments as `user`; never throws, returns what it said. */
  psql(user: string, args: string[], opts?: { database?: string; input?: string }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

export async function startSupabaseCluster(opts: { app: boolean }): Promise<SupabaseCluster> {
  const major = await getServerMajor();
  // wal_level=logical: publications are part of the fixture (minimal would only warn)
  const cluster = await startThrowawayCluster({ major, superuser: 'supabase_admin', settings: { wal_level: 'logical' } });
  const psqlBin = path.join(await realPgBin(), 'psql');
  const url = (user = 'postgres', database = 'postgres') => `postgresql://${encodeURIComponent(user)}@localhost/${encodeURIComponent(database)}?host=${encodeURIComponent(cluster.socketDir)}`;
  const run: SupabaseCluster['psql'] = async (user, args, o = {}) => {
    const r = await execa(psqlBin, ['-X', '-v', 'ON_ERROR_STOP=1', '-d', url(user, o.database), ...args], { reject: false, ...(o.input !== undefined ? { input: o.input } : {}) });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  try {
    const must = async (user: string, file: string, database?: string) => {
      const r = await run(user, ['-q', '-f', file], { database });
      if (r.exitCode !== 0) throw new Error(`${path.basename(file)} as ${user} failed: ${r.stderr}`);
    };
    await must('supabase_admin', PLATFORM_FIXTURE);
    if (opts.app) await must('postgres', APP_FIXTURE);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return { cluster, url, psql: run, stop: () => cluster.stop() };
}

/**
 * What supautils does on a real project when postgres runs `CREATE EXTENSION` of a privileged
 * extension: creates it as supabase_admin (then its after-create script). The emulated target has
 * no supautils, so the extensions a backup names are created beforehand, through the fixture's
 * stand-in `extensions.fixture_enable_extension`, in `database`.
 */
export async function precreateExtensions(target: SupabaseCluster, names: string[], database = 'postgres'): Promise<void> {
  const list = names.map((n) => `'${n.replace(/'/g, "''")}'`).join(', ');
  const r = await target.psql('supabase_admin', ['-q', '-c', `SELECT extensions.fixture_enable_extension(e) FROM unnest(ARRAY[${list}]::text[]) e WHERE NOT EXISTS (SELECT FROM pg_extension x WHERE x.extname = e)`], { database });
  if (r.exitCode !== 0) throw new Error(`could not create the extensions ${names.join(', ')}: ${r.stderr}`);
}
