/**
 * The supabase profile's rewriting of pg_dump/pg_dumpall output, statement by statement: what is
 * commented out, what is wrapped so a refusal only warns, what is left as it is — and that lines
 * inside a statement (function bodies, literals, COPY rows) are never taken for statements.
 */
import { Readable } from 'node:stream';
import { text as readText } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { aclTarget, platformTableTriggers, SqlStatementLexer, supabaseDataTransform, supabaseRoleLine, supabaseRoleTransform, supabaseSchemaLine, supabaseSchemaTransform, withoutSecretOptions } from '../../src/dump/profiles.js';
import { CopyAwareLineMap, LineMap } from '../../src/dump/pipeline.js';

/** Runs lines through a line transform as the pipeline does (LineMap), in one chunk. */
async function through(fn: (line: string) => string | null, input: string): Promise<string> {
  return readText(Readable.from([Buffer.from(input)]).pipe(new LineMap(fn)));
}

describe('the roles part', () => {
  it('a role created here gets its attributes without the superuser-only NO… ones; positive ones stay and fail loudly', () => {
    expect(supabaseRoleLine('ALTER ROLE "app_admins" WITH NOSUPERUSER INHERIT NOCREATEROLE CREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;')).toMatch(
      /^DO \$hb\$ BEGIN IF .* \? 'app_admins' THEN ALTER ROLE "app_admins" WITH INHERIT NOCREATEROLE CREATEDB NOLOGIN; END IF; END \$hb\$;$/,
    );
    expect(supabaseRoleLine('ALTER ROLE "ops" WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN REPLICATION BYPASSRLS CONNECTION LIMIT 2;')).toMatch(
      /THEN ALTER ROLE "ops" WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN REPLICATION BYPASSRLS CONNECTION LIMIT 2; END IF;/,
    );
    // a role named like an attribute is not touched
    expect(supabaseRoleLine('ALTER ROLE "x NOSUPERUSER" WITH NOSUPERUSER LOGIN;')).toContain('ALTER ROLE "x NOSUPERUSER" WITH LOGIN;');
  });

  it('comments: the platform roles\' are the platform\'s; a user role\'s only when this restore created it', () => {
    expect(supabaseRoleLine(`COMMENT ON ROLE "anon" IS 'x';`)).toBe(`-- COMMENT ON ROLE "anon" IS 'x';`);
    expect(supabaseRoleLine(`COMMENT ON ROLE "app_reporter" IS 'Read-only';`)).toMatch(/^DO \$hb\$ BEGIN IF .* \? 'app_reporter' THEN COMMENT ON ROLE "app_reporter" IS 'Read-only'; END IF; END \$hb\$;$/);
  });

  it('settings of platform roles: only those supautils lets postgres change, on the roles it lets it', () => {
    expect(supabaseRoleLine(`ALTER ROLE "authenticator" SET "pgrst.db_schemas" TO 'public, app';`)).toBe(`ALTER ROLE "authenticator" SET "pgrst.db_schemas" TO 'public, app';`);
    expect(supabaseRoleLine(`ALTER ROLE "authenticator" SET "lock_timeout" TO '8s';`)).toBe(`-- ALTER ROLE "authenticator" SET "lock_timeout" TO '8s';`);
    expect(supabaseRoleLine(`ALTER ROLE "supabase_admin" SET "statement_timeout" TO '1min';`)).toBe(`-- ALTER ROLE "supabase_admin" SET "statement_timeout" TO '1min';`);
  });

  it('memberships: the platform\'s own out; the user\'s kept, into and out of platform roles, except reserved memberships', () => {
    expect(supabaseRoleLine('GRANT "anon" TO "authenticator" GRANTED BY "postgres";')).toBe('-- GRANT "anon" TO "authenticator" GRANTED BY "postgres";');
    expect(supabaseRoleLine('GRANT "pg_monitor" TO "postgres" GRANTED BY "supabase_admin";')).toBe('-- GRANT "pg_monitor" TO "postgres" GRANTED BY "supabase_admin";');
    const tried = (grant: string) => new RegExp(`^DO \\$hb\\$ BEGIN ${grant.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN RAISE WARNING 'hybrid-backup: % not restored: %', 'membership of `);
    expect(supabaseRoleLine('GRANT "app_reporter" TO "authenticated" GRANTED BY "postgres";')).toMatch(tried('GRANT "app_reporter" TO "authenticated" GRANTED BY "postgres";'));
    expect(supabaseRoleLine('GRANT "authenticated" TO "app_reporter" GRANTED BY "supabase_admin";')).toMatch(tried('GRANT "authenticated" TO "app_reporter";'));
    expect(supabaseRoleLine('GRANT "app_reporter" TO "app_admins" WITH ADMIN OPTION GRANTED BY "app_owner";')).toBe('GRANT "app_reporter" TO "app_admins" WITH ADMIN OPTION;');
    expect(supabaseRoleLine('GRANT "app_reporter" TO "app_admins" GRANTED BY "postgres";')).toBe('GRANT "app_reporter" TO "app_admins" GRANTED BY "postgres";');
    expect(supabaseRoleLine('GRANT "pg_read_all_data" TO "app_reporter" GRANTED BY "postgres";')).toMatch(tried('GRANT "pg_read_all_data" TO "app_reporter" GRANTED BY "postgres";'));
    expect(supabaseRoleLine('GRANT "authenticator" TO "app_service" GRANTED BY "postgres";')).toMatch(/^-- GRANT "authenticator" TO "app_service" GRANTED BY "postgres"; -- supautils lets no one but the platform grant this role$/);
    expect(supabaseRoleLine('GRANT "pg_execute_server_program" TO "app_service";')).toMatch(/^-- GRANT/);
    expect(supabaseRoleLine('GRANT "app_reporter" TO "supabase_admin";')).toBe('-- GRANT "app_reporter" TO "supabase_admin";');
  });

  it('parameter privileges: the platform\'s out, a user role\'s tried', () => {
    expect(supabaseRoleLine('GRANT SET ON PARAMETER "session_replication_role" TO "postgres";')).toBe('-- GRANT SET ON PARAMETER "session_replication_role" TO "postgres";');
    expect(supabaseRoleLine('GRANT SET ON PARAMETER "work_mem" TO "app_service";')).toMatch(/^DO \$hb\$ BEGIN GRANT SET ON PARAMETER "work_mem" TO "app_service"; EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING/);
  });

  it('a comment spanning lines is rewritten whole', async () => {
    const out = await through(supabaseRoleTransform(), `COMMENT ON ROLE "anon" IS 'one\ntwo;\nthree';\nCREATE ROLE "anon";\n`);
    expect(out).toBe(`-- COMMENT ON ROLE "anon" IS 'one\n-- two;\n-- three';\n-- CREATE ROLE "anon"; -- platform role\n`);
  });
});

describe('the schema part', () => {
  it('ACLs on any object of a platform schema are the platform\'s; the user schemas\' stay', () => {
    for (const l of [
      'GRANT ALL ON FUNCTION "extensions"."citextin"("cstring") TO "postgres" WITH GRANT OPTION;',
      'REVOKE ALL ON FUNCTION "extensions"."armor"("bytea") FROM "postgres";',
      'GRANT ALL ON TABLE "extensions"."pg_stat_statements" TO "postgres" WITH GRANT OPTION;',
      'GRANT USAGE ON SCHEMA "storage" TO "app_reporter";',
      'GRANT SELECT ON TABLE "pg_temp_3"."t" TO "x";',
      'GRANT SELECT ON TABLE "timescaledb_information"."jobs" TO "x";',
    ]) {
      expect(supabaseSchemaLine(l)).toBe(`-- ${l}`);
    }
    for (const l of ['GRANT SELECT,REFERENCES,TRIGGER ON TABLE "public"."audit_log" TO "authenticated";', 'GRANT USAGE ON SCHEMA "public" TO "anon";', 'GRANT SELECT("on x ON TABLE "auth"."users" y") ON TABLE "public"."t" TO "app_reporter";']) {
      expect(supabaseSchemaLine(l)).toBe(l);
    }
    expect(aclTarget('GRANT SELECT("a ON TABLE ""auth"".x") ON TABLE "public"."t" TO "r";')).toEqual({ kind: 'TABLE', schema: 'public', name: 'public' });
    expect(supabaseSchemaLine('GRANT ALL ON FOREIGN DATA WRAPPER "postgres_fdw" TO "postgres" WITH GRANT OPTION;')).toMatch(/^-- GRANT/);
    expect(supabaseSchemaLine('GRANT USAGE ON FOREIGN DATA WRAPPER "postgres_fdw" TO "app_admins";')).toMatch(/^DO \$hb\$ BEGIN GRANT USAGE ON FOREIGN DATA WRAPPER "postgres_fdw" TO "app_admins"; EXCEPTION WHEN insufficient_privilege/);
  });

  it('owners: never supabase_admin, FDWs the platform\'s, postgres as is, another role where the target allows it', () => {
    expect(supabaseSchemaLine('ALTER FUNCTION "public"."f"() OWNER TO "supabase_admin";')).toBe('-- ALTER FUNCTION "public"."f"() OWNER TO "supabase_admin";');
    expect(supabaseSchemaLine('ALTER FOREIGN DATA WRAPPER "postgres_fdw" OWNER TO "postgres";')).toBe('-- ALTER FOREIGN DATA WRAPPER "postgres_fdw" OWNER TO "postgres";');
    expect(supabaseSchemaLine('ALTER TABLE "public"."t" OWNER TO "postgres";')).toBe('ALTER TABLE "public"."t" OWNER TO "postgres";');
    expect(supabaseSchemaLine('ALTER TABLE "app"."t" OWNER TO "app_admins";')).toMatch(
      /^DO \$hb\$ BEGIN ALTER TABLE "app"\."t" OWNER TO "app_admins"; EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING 'hybrid-backup: % not restored: %', 'the owner of TABLE "app"\."t" \(app_admins\)', SQLERRM/,
    );
  });

  it('default privileges: of postgres and the user\'s roles kept, of platform roles or in platform schemas not', () => {
    expect(supabaseSchemaLine('ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_admin" IN SCHEMA "public" GRANT ALL ON TABLES  TO "anon";')).toMatch(/^-- /);
    expect(supabaseSchemaLine('ALTER DEFAULT PRIVILEGES FOR ROLE "supabase_auth_admin" IN SCHEMA "public" GRANT ALL ON TABLES  TO "anon";')).toMatch(/^-- /);
    expect(supabaseSchemaLine('ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "extensions" GRANT ALL ON TABLES  TO "anon";')).toMatch(/^-- /);
    for (const l of ['ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" GRANT ALL ON TABLES  TO "anon";', 'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" REVOKE ALL ON FUNCTIONS  FROM PUBLIC;', 'ALTER DEFAULT PRIVILEGES FOR ROLE "app_admins" GRANT USAGE ON TYPES  TO "app_reporter";']) {
      expect(supabaseSchemaLine(l)).toBe(l);
    }
  });

  it('publications: the platform\'s own definition out, its memberships and the user\'s kept', () => {
    expect(supabaseSchemaLine(`CREATE PUBLICATION "supabase_realtime" WITH (publish = 'insert, update, delete, truncate');`)).toMatch(/^-- CREATE/);
    expect(supabaseSchemaLine('ALTER PUBLICATION "supabase_realtime" OWNER TO "postgres";')).toMatch(/^-- ALTER/);
    expect(supabaseSchemaLine('ALTER PUBLICATION "supabase_realtime" ADD TABLE ONLY "public"."messages";')).toBe('ALTER PUBLICATION "supabase_realtime" ADD TABLE ONLY "public"."messages";');
    expect(supabaseSchemaLine('ALTER PUBLICATION "supabase_realtime_messages_publication" ADD TABLE ONLY "realtime"."messages";')).toMatch(/^-- /);
    expect(supabaseSchemaLine(`CREATE PUBLICATION "app_orders_pub" WITH (publish = 'insert, update');`)).toBe(`CREATE PUBLICATION "app_orders_pub" WITH (publish = 'insert, update');`);
    expect(supabaseSchemaLine(`CREATE PUBLICATION "everything" FOR ALL TABLES WITH (publish = 'insert');`)).toMatch(/^DO \$hb\$ BEGIN CREATE PUBLICATION "everything" FOR ALL TABLES/);
  });

  it('extensions: their comments are theirs; those with a schema of their own are created without WITH SCHEMA', () => {
    expect(supabaseSchemaLine(`COMMENT ON EXTENSION "citext" IS 'data type';`)).toBe(`-- COMMENT ON EXTENSION "citext" IS 'data type';`);
    expect(supabaseSchemaLine('CREATE EXTENSION IF NOT EXISTS "pgsodium" WITH SCHEMA "pgsodium";')).toBe('CREATE EXTENSION IF NOT EXISTS "pgsodium";');
    expect(supabaseSchemaLine('CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "extensions";')).toBe('CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "extensions";');
  });

  it('event triggers, over several lines: the platform\'s and the user\'s commented out, saying which', async () => {
    const input = [
      'CREATE EVENT TRIGGER "app_ddl_audit" ON "ddl_command_end"',
      "         WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')",
      '   EXECUTE FUNCTION "app"."log_ddl"();',
      '',
      'ALTER EVENT TRIGGER "app_ddl_audit" OWNER TO "postgres";',
      `COMMENT ON EVENT TRIGGER "app_ddl_audit" IS 'Logs';`,
      'CREATE EVENT TRIGGER "pgrst_ddl_watch" ON "ddl_command_end"',
      '   EXECUTE FUNCTION "extensions"."pgrst_ddl_watch"();',
      'ALTER EVENT TRIGGER "pgrst_ddl_watch" OWNER TO "supabase_admin";',
      '',
    ].join('\n');
    expect(await through(supabaseSchemaTransform(), input)).toBe(
      [
        '-- hybrid-backup: your event trigger "app_ddl_audit" is created at the end of this file, after the data',
        '-- CREATE EVENT TRIGGER "app_ddl_audit" ON "ddl_command_end"',
        "--          WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')",
        '--    EXECUTE FUNCTION "app"."log_ddl"();',
        '',
        '-- ALTER EVENT TRIGGER "app_ddl_audit" OWNER TO "postgres";',
        `-- COMMENT ON EVENT TRIGGER "app_ddl_audit" IS 'Logs';`,
        `-- hybrid-backup: the platform's own event trigger "pgrst_ddl_watch"`,
        '-- CREATE EVENT TRIGGER "pgrst_ddl_watch" ON "ddl_command_end"',
        '--    EXECUTE FUNCTION "extensions"."pgrst_ddl_watch"();',
        '-- ALTER EVENT TRIGGER "pgrst_ddl_watch" OWNER TO "supabase_admin";',
        '',
      ].join('\n'),
    );
  });

  it('secrets in user-mapping and server options are never written, wherever they are in the list', async () => {
    const input = [
      'CREATE USER MAPPING FOR "app_reporter" SERVER "s" OPTIONS (',
      `    "password" 'pw, with ''quotes'' and );',`,
      `    "user" 'app_service'`,
      ');',
      'CREATE USER MAPPING FOR "postgres" SERVER "s" OPTIONS (',
      `    "user" 'u',`,
      `    "password" E'back\\\\slash\nnew line'`,
      ');',
      'CREATE SERVER "w" FOREIGN DATA WRAPPER "stripe_wrapper" OPTIONS (',
      `    "api_key" 'sk_live_123'`,
      ');',
      'CREATE USER MAPPING FOR "app_x" SERVER "s";',
      '',
    ].join('\n');
    const out = await through(supabaseSchemaTransform(), input);
    expect(out).not.toMatch(/pw, with|slash|new line|sk_live/);
    expect(out).toBe(
      [
        `CREATE USER MAPPING FOR "app_reporter" SERVER "s" OPTIONS (\n    "user" 'app_service'\n);`,
        `-- hybrid-backup: the "password" option of this user mapping is not in the backup (never written into one); set it again:`,
        `--   ALTER USER MAPPING FOR "app_reporter" SERVER "s" OPTIONS (ADD password '...');`,
        `CREATE USER MAPPING FOR "postgres" SERVER "s" OPTIONS (\n    "user" 'u'\n);`,
        `-- hybrid-backup: the "password" option of this user mapping is not in the backup (never written into one); set it again:`,
        `--   ALTER USER MAPPING FOR "postgres" SERVER "s" OPTIONS (ADD password '...');`,
        `CREATE SERVER "w" FOREIGN DATA WRAPPER "stripe_wrapper";`,
        `-- hybrid-backup: the "api_key" option of this server is not in the backup (never written into one); set it again:`,
        `--   ALTER SERVER "w" OPTIONS (ADD api_key '...');`,
        'CREATE USER MAPPING FOR "app_x" SERVER "s";',
        `-- hybrid-backup: another role's user-mapping options are readable only by that role and superusers; if this one had options (user, password), set them again:`,
        `--   ALTER USER MAPPING FOR "app_x" SERVER "s" OPTIONS (ADD user '...', ADD password '...');`,
        '',
      ].join('\n'),
    );
    // a shape pg_dump does not write: nothing of it, when it may hold a secret
    expect(withoutSecretOptions(`CREATE USER MAPPING FOR "a" SERVER "s" OPTIONS (password 'x' user 'y');`)).toEqual({ stmt: 'CREATE USER MAPPING FOR "a" SERVER "s";', removed: ['(all options)'] });
    expect(withoutSecretOptions(`CREATE SERVER "s" FOREIGN DATA WRAPPER "w" OPTIONS (host 'x' port '1');`)).toEqual({ stmt: `CREATE SERVER "s" FOREIGN DATA WRAPPER "w" OPTIONS (host 'x' port '1');`, removed: [] });
    expect(withoutSecretOptions(`CREATE USER MAPPING FOR "a" SERVER "s" OPTIONS (\n    "password_required" 'false',\n    "sslpassword" 'x'\n);`)).toEqual({
      stmt: `CREATE USER MAPPING FOR "a" SERVER "s" OPTIONS (\n    "password_required" 'false'\n);`,
      removed: ['sslpassword'],
    });
  });

  it('lines inside a function body or a literal are never taken for statements', async () => {
    const input = [
      'CREATE FUNCTION "public"."setup"() RETURNS "void"',
      '    LANGUAGE "plpgsql"',
      '    AS $_$',
      'BEGIN',
      "GRANT SELECT ON TABLE storage.objects TO anon; -- a ' quote",
      'ALTER TABLE public.x OWNER TO "supabase_admin";',
      'COMMENT ON EXTENSION "citext" IS \'x\';',
      'END',
      '$_$;',
      `COMMENT ON FUNCTION "public"."setup"() IS 'A comment with a line`,
      `GRANT ALL ON FUNCTION "extensions"."armor"("bytea") TO "postgres";`,
      `in it';`,
      'GRANT ALL ON FUNCTION "extensions"."armor"("bytea") TO "postgres";',
      '',
    ].join('\n');
    const out = await through(supabaseSchemaTransform(), input);
    const lines = out.split('\n');
    expect(lines.slice(0, 12)).toEqual(input.split('\n').slice(0, 12));
    expect(lines[12]).toBe('-- GRANT ALL ON FUNCTION "extensions"."armor"("bytea") TO "postgres";');
  });

  it('the lexer follows literals, E-strings, identifiers, dollar quotes and comments across lines', () => {
    const lx = new SqlStatementLexer();
    expect(lx.feed(`SELECT 'a;`)).toBe(false);
    expect(lx.feed(`b';`)).toBe(true);
    expect(lx.feed(`SELECT E'\\';`)).toBe(false);
    expect(lx.feed(`';`)).toBe(true);
    expect(lx.feed('SELECT $x$ ; $y$')).toBe(false);
    expect(lx.feed('$x$, "a;""b" /* ; /* nested */ ; */ ;')).toBe(true);
    expect(lx.feed('\\restrict abc')).toBe(true);
    expect(lx.feed('SELECT $1, a$b;')).toBe(true);
    expect(lx.feed('-- a comment;')).toBe(true);
  });
});

describe('the data part', () => {
  const data = [
    'SET row_security = off;',
    'COPY "public"."t" ("a") FROM stdin;',
    'BEGIN;',
    '\\\\.',
    'COMMIT;',
    '\\.',
    'COPY "public"."empty" ("a") FROM stdin;',
    '\\.',
    '',
    'BEGIN;',
    '',
    "SELECT pg_catalog.lowrite(0, '\\x00');",
    '',
    'COMMIT;',
    'ALTER LARGE OBJECT 123 OWNER TO "supabase_admin";',
    '',
  ].join('\n');
  const expected = [
    'SET row_security = off;',
    'COPY "public"."t" ("a") FROM stdin;',
    'BEGIN;',
    '\\\\.',
    'COMMIT;',
    '\\.',
    'COPY "public"."empty" ("a") FROM stdin;',
    '\\.',
    '',
    "-- BEGIN; -- hybrid-backup: pg_dump's own transaction around the large objects would end psql's --single-transaction early; the whole file is one transaction",
    '',
    "SELECT pg_catalog.lowrite(0, '\\x00');",
    '',
    "-- COMMIT; -- hybrid-backup: pg_dump's own transaction around the large objects would end psql's --single-transaction early; the whole file is one transaction",
    '-- ALTER LARGE OBJECT 123 OWNER TO "supabase_admin";',
    '',
  ].join('\n');

  it("pg_dump's BEGIN/COMMIT around large objects go, rows that read the same stay: at every chunk boundary", async () => {
    const bytes = Buffer.from(data);
    for (let size = 1; size <= bytes.length; size++) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      const out = await readText(Readable.from(chunks).pipe(new CopyAwareLineMap(supabaseDataTransform())));
      expect(out, `chunks of ${size}`).toBe(expected);
    }
  });

  it('rows pass byte for byte, however large', async () => {
    const rows = Array.from({ length: 20000 }, (_, i) => `${i}\tBEGIN;\t\\\\.\tdonnée ${'x'.repeat(i % 50)}`).join('\n');
    const input = `COPY "public"."big" ("a", "b", "c", "d") FROM stdin;\n${rows}\n\\.\nBEGIN;\n`;
    const chunks: Buffer[] = [];
    const bytes = Buffer.from(input);
    for (let i = 0; i < bytes.length; i += 4093) chunks.push(bytes.subarray(i, i + 4093));
    const out = await readText(Readable.from(chunks).pipe(new CopyAwareLineMap(supabaseDataTransform())));
    expect(out).toBe(`COPY "public"."big" ("a", "b", "c", "d") FROM stdin;\n${rows}\n\\.\n-- BEGIN; -- hybrid-backup: pg_dump's own transaction around the large objects would end psql's --single-transaction early; the whole file is one transaction\n`);
  });
});

describe('read from the snapshot', () => {
  it('a comment on your trigger on a platform table is tried: commenting takes owning the table, which postgres does not on the platform', async () => {
    const client = {
      query: async (text: string) =>
        /pg_get_triggerdef/.test(text)
          ? { rows: [{ def: 'CREATE TRIGGER on_signup AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.f()', comment: `COMMENT ON TRIGGER on_signup ON auth.users IS 'it''s mine';` }] }
          : { rows: [] },
    };
    expect(await platformTableTriggers(client, 15)).toBe(
      [
        '-- your triggers on platform tables (pg_dump leaves them out with the platform schemas)',
        'CREATE OR REPLACE TRIGGER on_signup AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.f();',
        `DO $hb$ BEGIN COMMENT ON TRIGGER on_signup ON auth.users IS 'it''s mine'; EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING 'hybrid-backup: % not restored: %', 'a comment on your trigger on a platform table', SQLERRM USING HINT = 'commenting on a trigger takes owning its table'; END $hb$;`,
        '',
        '',
      ].join('\n'),
    );
  });
});
