/**
 * A database shaped like a Supabase project, with the features that break naive dump/restore:
 * roles, RLS policies, extensions in their own schema, enums and domains, identity and
 * generated columns, partitions, a materialized view, triggers, jsonb, bytea, arrays, unicode,
 * NULLs, tabs and newlines in text, identifiers with spaces and quotes.
 */
import { psql } from './pg.js';

/** SQL creating cluster-wide NOLOGIN roles unless they exist; safe when test runs race. */
export function createRolesSql(roles: readonly string[]): string {
  return `
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY[${roles.map((r) => `'${r}'`).join(', ')}] LOOP
    BEGIN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END LOOP;
END $$;
`;
}

/** Cluster-wide roles a Supabase project has. */
export const ROLES_SQL = createRolesSql(['anon', 'authenticated', 'service_role']);

export const FIXTURE_SQL = `
CREATE SCHEMA extensions;
CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION citext WITH SCHEMA extensions;
CREATE EXTENSION pg_trgm WITH SCHEMA extensions;

CREATE SCHEMA auth;
CREATE TABLE auth.users (
  id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
  email extensions.citext UNIQUE NOT NULL,
  encrypted_password text,
  raw_user_meta_data jsonb,
  created_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00'
);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $fn$;

CREATE SCHEMA storage;
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean DEFAULT false);
CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT extensions.gen_random_uuid(),
  bucket_id text REFERENCES storage.buckets (id),
  name text,
  owner uuid REFERENCES auth.users (id),
  metadata jsonb
);

CREATE TYPE public.order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');
CREATE DOMAIN public.positive_money AS numeric(12, 2) CHECK (VALUE >= 0);

CREATE TABLE public.profiles (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  username text UNIQUE,
  bio text,
  avatar bytea,
  tags text[],
  settings jsonb DEFAULT '{}'::jsonb,
  search_name text GENERATED ALWAYS AS (lower(username)) STORED
);
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY "profiles are public" ON public.profiles FOR SELECT TO anon, authenticated USING (true);
CREATE POLICY "owners update" ON public.profiles FOR UPDATE TO authenticated USING (auth.uid() = id);
GRANT SELECT ON public.profiles TO anon, authenticated;
GRANT ALL ON public.profiles TO service_role;
CREATE INDEX profiles_username_trgm ON public.profiles USING gin (username extensions.gin_trgm_ops);

CREATE TABLE public.orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer uuid REFERENCES auth.users (id),
  status public.order_status NOT NULL DEFAULT 'new',
  total public.positive_money NOT NULL,
  note text,
  updated_at timestamptz
);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN NEW.updated_at := '2024-06-01 12:00:00+00'; RETURN NEW; END $fn$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.touch();

CREATE TABLE public.events (id bigserial, happened date NOT NULL, payload jsonb, PRIMARY KEY (id, happened)) PARTITION BY RANGE (happened);
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');

CREATE TABLE public."Odd ""Quoted"" Table" ("a column" int, "another ""one""" text);
CREATE SEQUENCE public.invoice_no START 1000;

INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data) VALUES
  ('00000000-0000-0000-0000-000000000001', 'Alice@Example.com', extensions.crypt('pw', '$2a$06$abcdefghijklmnopqrstuv'), '{"name": "Alice", "langs": ["en", "fr"]}'),
  ('00000000-0000-0000-0000-000000000002', 'bob@example.com', NULL, NULL),
  ('00000000-0000-0000-0000-000000000003', 'zoë@exämple.com', NULL, '{"emoji": "🐘", "nested": {"a": [1, 2, {"b": null}]}}');
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true);
INSERT INTO storage.objects (id, bucket_id, name, owner, metadata) VALUES
  ('10000000-0000-0000-0000-000000000001', 'avatars', 'alice/me.png', '00000000-0000-0000-0000-000000000001', '{"size": 1234}');
INSERT INTO public.profiles (id, username, bio, avatar, tags, settings) VALUES
  ('00000000-0000-0000-0000-000000000001', 'Alice', E'line one\\nline two\\ttabbed\\\\backslash', '\\x89504e470d0a1a0a00ff'::bytea, ARRAY['a', 'b c', NULL, 'd"e'], '{"theme": "dark"}'),
  ('00000000-0000-0000-0000-000000000002', 'bob', NULL, NULL, '{}', NULL),
  ('00000000-0000-0000-0000-000000000003', 'Zoë', 'Ünïcödé ✓ 日本語 \\. not an end marker', '\\x'::bytea, ARRAY['ß'], '[]');
INSERT INTO public.orders (customer, status, total, note) VALUES
  ('00000000-0000-0000-0000-000000000001', 'paid', 19.99, 'first'),
  ('00000000-0000-0000-0000-000000000001', 'new', 0, E'has\\ttab'),
  ('00000000-0000-0000-0000-000000000002', 'shipped', 1234567.89, NULL);
UPDATE public.orders SET note = note || '!' WHERE id = 1;
DELETE FROM public.orders WHERE id = 2;
INSERT INTO public.orders (customer, status, total) VALUES ('00000000-0000-0000-0000-000000000003', 'cancelled', 5);
INSERT INTO public.events (happened, payload) SELECT d::date, jsonb_build_object('n', i)
  FROM generate_series(1, 200) i, LATERAL (SELECT date '2024-03-01' + (i * 3)) AS x(d);
INSERT INTO public."Odd ""Quoted"" Table" VALUES (1, E'x\\ty'), (NULL, NULL), (3, '\\.');
SELECT nextval('public.invoice_no') FROM generate_series(1, 7);

CREATE MATERIALIZED VIEW public.order_totals AS SELECT status, count(*) AS n, sum(total) AS total FROM public.orders GROUP BY status;
CREATE VIEW public.user_emails AS SELECT u.email, p.username FROM auth.users u LEFT JOIN public.profiles p ON p.id = u.id;
`;

/** Tables whose data the dump carries, with their expected row counts. */
export const FIXTURE_COUNTS: Record<string, number> = {
  'auth.users': 3,
  'storage.buckets': 1,
  'storage.objects': 1,
  'public.profiles': 3,
  'public.orders': 3,
  'public.events_2024': 101,
  'public.events_2025': 99,
  'public."Odd ""Quoted"" Table"': 3,
};

export async function createFixture(url: string): Promise<void> {
  await psql(url, ROLES_SQL);
  await psql(url, FIXTURE_SQL);
}
