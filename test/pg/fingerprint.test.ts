/**
 * The catalog fingerprint against a real, Supabase-shaped PostgreSQL: a throwaway cluster whose
 * bootstrap superuser is `supabase_admin` (platform.sql refuses any other), the platform applied
 * by it, the app applied by the demoted `postgres`. The fingerprint is deterministic and covers
 * what a faithful restore must bring back; a pg_dump copy fingerprints equal, and damage to the
 * copy is named difference by difference, nothing else; no user-mapping password is ever in it;
 * 2,000 tables fingerprint in about a second.
 *
 * startThrowawayCluster() runs `initdb -U postgres`; the test renames that bootstrap role (oid 10,
 * owner of the catalogs) to `supabase_admin` from a second superuser, which leaves the cluster as
 * `initdb -U supabase_admin` would have made it, and platform.sql creates `postgres` afresh.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isReservedRole, PLATFORM_SCHEMAS } from '../../src/dump/profiles.js';
import { compareFingerprints, compareNotes, type Fingerprint, type FingerprintOptions, readFingerprint, UNREADABLE } from '../../src/fidelity/fingerprint.js';
import { removeLeftoverClusters, startThrowawayCluster, type ThrowawayCluster } from '../../src/pg/throwaway.js';
import { ROOT } from '../helpers/cli.js';
import { uniqueName } from '../helpers/pg.js';
import { getServerMajor, realPgBin } from '../helpers/pgbin.js';

const FIXTURES = path.join(ROOT, 'test/fixtures/supabase');
const OPTS: FingerprintOptions = { platformSchemas: PLATFORM_SCHEMAS, keptPlatformSchemas: ['auth', 'storage', 'realtime'], isReservedRole };
const PASSWORD = 'fixture-only-password';

let parent: string;
let cluster: ThrowawayCluster;
let bin: string;

async function connect(user: string, database: string): Promise<pg.Client> {
  const c = new pg.Client({ host: cluster.socketDir, port: cluster.conn.port, user, database });
  c.on('error', () => {});
  await c.connect();
  return c;
}

async function run(user: string, database: string, sql: string, params: unknown[] = []): Promise<any[]> {
  const c = await connect(user, database);
  try {
    return (await c.query(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** psql, stopping at the first error, with a file or SQL on stdin. */
async function psql(user: string, database: string, input: { file: string } | { sql: string }): Promise<void> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster.socketDir, '-p', String(cluster.conn.port), '-U', user, '-d', database];
  await execa(path.join(bin, 'psql'), 'file' in input ? [...args, '-f', input.file] : [...args, '-f', '-'], {
    ...('sql' in input ? { input: input.sql } : {}),
    env: { PGOPTIONS: '-c client_min_messages=error' },
  });
}

/** The fingerprint as a backup takes it: inside a REPEATABLE READ snapshot transaction. */
async function fingerprint(database: string, user = 'postgres'): Promise<Fingerprint> {
  const c = await connect(user, database);
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const fp = await readFingerprint(c, OPTS);
    await c.query('ROLLBACK');
    return fp;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  const major = await getServerMajor();
  bin = await realPgBin();
  parent = mkdtempSync('/tmp/hbfp-');
  chmodSync(parent, 0o755); // the server's OS user (postgres, when we are root) must reach it
  cluster = await startThrowawayCluster({ major, parentDir: parent });
  // Make the bootstrap superuser supabase_admin, as the platform's image has it.
  await run('postgres', 'postgres', 'CREATE ROLE hb_fp_bootstrap SUPERUSER LOGIN');
  await run('hb_fp_bootstrap', 'postgres', 'ALTER ROLE postgres RENAME TO supabase_admin');
  await run('supabase_admin', 'postgres', 'DROP ROLE hb_fp_bootstrap');
  await psql('supabase_admin', 'postgres', { file: path.join(FIXTURES, 'platform.sql') });
  await psql('postgres', 'postgres', { file: path.join(FIXTURES, 'app.sql') });
});

afterAll(async () => {
  await cluster?.stop().catch(() => {});
  if (parent) {
    await removeLeftoverClusters(parent).catch(() => {});
    rmSync(parent, { recursive: true, force: true });
  }
});

describe('catalog fingerprint', () => {
  it('is deterministic and holds what a faithful restore must bring back', async () => {
    const a = await fingerprint('postgres');
    // outside a transaction readFingerprint opens (and rolls back) its own
    const c = await connect('postgres', 'postgres');
    let b: Fingerprint;
    try {
      b = await readFingerprint(c, OPTS);
    } finally {
      await c.end();
    }
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    expect(compareFingerprints(a, b)).toEqual([]);

    const o = a.objects;
    expect(o['policy "Owners manage private docs" on storage.objects']).toMatch(/^AS PERMISSIVE FOR ALL TO authenticated USING \(.*private-docs.*\) WITH CHECK \(/);
    expect(o['comment on policy "Owners manage private docs" on storage.objects']).toBe("owner_id is the uploader's auth uid");
    expect(o['policy "Anyone can list public buckets" on storage.buckets']).toBe('AS PERMISSIVE FOR SELECT TO public USING (public)');
    expect(o['comment on table app.orders']).toBe('Customer orders (cents; total includes tax)');
    expect(o['comment on column app.orders.total_cents']).toBe('Generated: subtotal × (1 + tax_rate)');
    expect(o['publication supabase_realtime table public.messages']).toBe('all columns, all rows');
    expect(o['publication app_orders_pub']).toBe("WITH (publish = 'insert, update', publish_via_partition_root = false)");
    expect(o['publication app_orders_pub table app.order_items']).toBeDefined();
    expect(o['role app_reporter']).toBe('NOLOGIN INHERIT NOCREATEROLE NOCREATEDB');
    expect(o['role app_reporter set statement_timeout']).toBe('5s');
    expect(o['role app_service']).toBe("LOGIN NOINHERIT NOCREATEROLE NOCREATEDB CONNECTION LIMIT 5 VALID UNTIL '2099-12-31 23:59:59+00'");
    expect(o['comment on role app_reporter']).toBe('Read-only reporting (dashboards, BI)');
    expect(o['member authenticated of app_reporter']).toBe('without admin option');
    expect(o['member app_admins of app_reporter']).toBe('WITH ADMIN OPTION');
    expect(o['role authenticator set pgrst.db_schemas']).toBe('public, graphql_public, app');
    expect(o['foreign server app_loopback']).toBe("FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'postgres', fetch_size '500', host '127.0.0.1', port '5432')");
    expect(o['foreign table app.remote_rooms']).toBe("server app_loopback OPTIONS (schema_name 'public', table_name 'rooms')");
    expect(o['cast (app.rgb AS text)']).toBe('WITH FUNCTION app.rgb_to_text(app.rgb) AS ASSIGNMENT');
    expect(o['comment on cast (app.rgb AS text)']).toBe('Colours print as #rrggbb');
    expect(o['event trigger app_ddl_audit']).toBe("ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'DROP TABLE') EXECUTE FUNCTION app.log_ddl()");
    expect(o['owner event trigger app_ddl_audit']).toBe('postgres');
    expect(o['default privileges for postgres on functions']).toBe('postgres=X');
    expect(o['default privileges for postgres on types']).toBe('PUBLIC=U,app_reporter=U,postgres=U');
    expect(o['default privileges for postgres in schema app on tables']).toBe('app_reporter=r,service_role=arwdDxt');
    expect(o['sequence app.countdown_seq value']).toBe('-7');
    expect(o['sequence app.invoice_number_seq value']).toMatch(/^\d+$/);
    expect(o['sequence app.ddl_log_id_seq value']).toBe('1 (not yet used)');
    expect(o['sequence app.invoice_number_seq']).toBe('AS integer START 1000 INCREMENT 7 MINVALUE 1000 MAXVALUE 999999 CACHE 1 CYCLE; owned by app.orders.invoice_number');
    expect(o['trigger on_auth_user_created on auth.users']).toBe('CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.handle_new_user()');
    expect(o['acl table public.user_roles']).toBe('service_role=arwdDxt,supabase_auth_admin=arwdDxt');
    expect(o['acl column public.audit_log.id']).toBe('app_reporter=r');
    expect(o['acl function public.handle_new_user()']).toBe('service_role=X');
    expect(o['table public.messages']).toBe('row level security enabled; replica identity full');
    expect(o['table app.orders']).toBe('row level security enabled, forced');
    expect(o['table app.events_other']).toBe('partition of app.events DEFAULT');
    expect(o['column app.orders.id']).toBe('#1 bigint NOT NULL GENERATED ALWAYS AS IDENTITY');
    expect(o['type app.order_state']).toBe("ENUM ('draft', 'placed', 'paid', 'shipped', 'cancelled')");
    expect(o['constraint positive_cents_check on domain app.positive_cents']).toBe('CHECK ((VALUE >= 0))');
    expect(o['materialized view app.daily_order_totals populated']).toBe('yes');
    expect(o['function public.handle_new_user()']).toContain('SECURITY DEFINER');
    expect(o['extension postgres_fdw']).toBe('schema extensions');
    // the platform's own things are not the user's
    for (const key of ['event trigger pgrst_ddl_watch', 'publication supabase_realtime', 'role anon', 'table storage.objects', 'trigger update_objects_updated_at on storage.objects', 'schema storage']) {
      expect(o[key], key).toBeUndefined();
    }
    expect(a.notes['owner schema public']).toBe('pg_database_owner');
    expect(a.notes['role app_service superuser attributes']).toBe('none');
    expect(a.notes['extension pg_trgm version']).toMatch(/^\d+\.\d+$/);
  });

  it('leaves the backup transaction as it found it: settings back, snapshot exportable, no sequence locks', async () => {
    const c = await connect('postgres', 'postgres');
    const other = await connect('postgres', 'postgres');
    try {
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const snapshot = (await c.query('SELECT pg_export_snapshot() AS id')).rows[0].id as string;
      const before = (await c.query(`SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz`)).rows[0];
      await readFingerprint(c, OPTS);
      // pg_dump --snapshot can still join it
      await other.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      await other.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
      expect((await other.query('SELECT count(*)::int AS n FROM app.orders')).rows[0].n).toBe(3);
      await other.query('ROLLBACK');
      const after = (await c.query(`SELECT current_setting('search_path') AS sp, current_setting('TimeZone') AS tz`)).rows[0];
      expect(after).toEqual(before);
      const locks = await c.query(
        `SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE l.pid = pg_backend_pid() AND c.relkind = 'S'`,
      );
      expect(locks.rows).toEqual([]);
      await c.query('ROLLBACK');
    } finally {
      await other.end();
      await c.end();
    }
  });

  it('a pg_dump copy is equal; damage to it is named, difference by difference, and nothing else', async () => {
    const copy = uniqueName('fp_copy');
    await run('supabase_admin', 'postgres', `CREATE DATABASE ${copy}`);
    try {
      const dump = await execa(path.join(bin, 'pg_dump'), ['-h', cluster.socketDir, '-p', String(cluster.conn.port), '-U', 'supabase_admin', '-d', 'postgres'], { maxBuffer: 64 * 1024 * 1024 });
      // an event trigger's owner must be a superuser when it is given one (supautils does the same dance)
      await run('supabase_admin', 'postgres', 'ALTER ROLE postgres SUPERUSER');
      try {
        await psql('supabase_admin', copy, { sql: dump.stdout });
      } finally {
        await run('supabase_admin', 'postgres', 'ALTER ROLE postgres NOSUPERUSER');
      }
      const source = await fingerprint('postgres');
      const restored = await fingerprint(copy);
      expect(compareFingerprints(source, restored)).toEqual([]);
      expect(compareNotes(source, restored)).toEqual([]);

      const was = Number(source.objects['sequence app.invoice_number_seq value']);
      const now = was - 7;
      await psql('postgres', copy, {
        sql: `
          DROP POLICY "Owners manage private docs" ON storage.objects;
          GRANT INSERT, UPDATE, DELETE ON public.user_roles TO anon;
          COMMENT ON TABLE app.orders IS NULL;
          SELECT setval('app.invoice_number_seq', ${now});
          CREATE OR REPLACE FUNCTION app.rgb_to_text(c app.rgb) RETURNS text LANGUAGE sql IMMUTABLE STRICT RETURN 'rgb';
        `,
      });
      const damaged = await fingerprint(copy);
      expect(compareFingerprints(source, damaged)).toEqual([
        { key: 'acl table public.user_roles', kind: 'changed', message: 'public.user_roles: anon gained INSERT, UPDATE, DELETE' },
        { key: 'comment on table app.orders', kind: 'missing', message: 'comment on table app.orders missing' },
        { key: 'function app.rgb_to_text(app.rgb)', kind: 'changed', message: 'function app.rgb_to_text(app.rgb): definition differs' },
        // its comment went with it, and is not listed again
        { key: 'policy "Owners manage private docs" on storage.objects', kind: 'missing', message: 'policy "Owners manage private docs" on storage.objects missing' },
        { key: 'sequence app.invoice_number_seq value', kind: 'changed', message: `sequence app.invoice_number_seq is at ${now}, was ${was}` },
      ]);
      expect(compareNotes(source, damaged)).toEqual([]);
      // and the other way round: what the restore has that the source had not
      expect(compareFingerprints(damaged, source).map((d) => d.message)).toEqual([
        'public.user_roles: anon lost INSERT, UPDATE, DELETE',
        'comment on table app.orders extra',
        'function app.rgb_to_text(app.rgb): definition differs',
        'policy "Owners manage private docs" on storage.objects extra',
        `sequence app.invoice_number_seq is at ${was}, was ${now}`,
      ]);
    } finally {
      await run('supabase_admin', 'postgres', `DROP DATABASE IF EXISTS ${copy} WITH (FORCE)`);
    }
  });

  it('never holds a user-mapping password, whoever reads it', async () => {
    const asPostgres = await fingerprint('postgres');
    const asSuperuser = await fingerprint('postgres', 'supabase_admin');
    for (const fp of [asPostgres, asSuperuser]) {
      expect(JSON.stringify(fp)).not.toContain(PASSWORD);
      expect(fp.objects['user mapping for postgres on server app_loopback']).toBe("OPTIONS (password ********, user 'app_service')");
    }
    // postgres may not see app_reporter's mapping options; the superuser may, masked
    expect(asPostgres.objects['user mapping for app_reporter on server app_loopback']).toBe(UNREADABLE);
    expect(asSuperuser.objects['user mapping for app_reporter on server app_loopback']).toBe("OPTIONS (password ********, user 'app_service')");
    // what one role could not read is not a difference
    expect(compareFingerprints(asPostgres, asSuperuser)).toEqual([]);
  });

  it('fingerprints 2,000 tables with one query per category, none per object', async () => {
    const db = uniqueName('fp_many');
    await run('supabase_admin', 'postgres', `CREATE DATABASE ${db} OWNER postgres`);
    try {
      // 100 tables per transaction: each takes five locks (table, sequence, index, TOAST and its index)
      for (let from = 1; from <= 2000; from += 100) {
        await run(
          'postgres',
          db,
          `DO $$ BEGIN FOR i IN ${from}..${from + 99} LOOP
             EXECUTE format('CREATE TABLE public.t_%s (id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())', i);
           END LOOP; END $$`,
        );
      }
      // a fresh connection (cold caches, as a backup has them), its queries counted
      const c = await connect('postgres', db);
      let queries = 0;
      const query = c.query.bind(c) as (...a: unknown[]) => unknown;
      (c as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
        queries++;
        return query(...a);
      };
      const started = performance.now();
      let fp: Fingerprint;
      try {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        fp = await readFingerprint(c, OPTS);
        await c.query('ROLLBACK');
      } finally {
        await c.end();
      }
      const ms = performance.now() - started;
      const tables = Object.keys(fp.objects).filter((k) => /^table public\.t_\d+$/.test(k));
      expect(tables).toHaveLength(2000);
      expect(fp.objects['sequence public.t_2000_id_seq value']).toBe('1 (not yet used)');
      expect(fp.objects['column public.t_7.created_at']).toBe('#3 timestamp with time zone NOT NULL DEFAULT now()');
      console.log(`fingerprint of 2,000 tables: ${Math.round(ms)} ms, ${queries} queries, ${Object.keys(fp.objects).length} keys, ${Math.round(JSON.stringify(fp).length / 1024)} KiB of JSON`);
      // what keeps it fast (0.6–0.9 s cold here; the time is the benchmark's to judge, not a test's):
      // the queries do not grow with the objects: ~110 here (a query and its savepoint per category),
      // where one per object would be over 2,000
      expect(queries).toBeLessThan(250);
    } finally {
      await run('supabase_admin', 'postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    }
  });
});
