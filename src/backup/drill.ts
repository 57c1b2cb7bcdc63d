/**
 * Restore drills: proof that a backup restores, and restores faithfully. Verify the checksum;
 * restore into a scratch database through the same code path as `restore`; then compare, against
 * what the backup recorded when it was taken: every table's row count (from the dump's own COPY
 * blocks), every table's data digest (its rows byte for byte, read back with COPY in a session set
 * like pg_dump's), and the catalog fingerprint (objects, definitions, privileges, policies, RLS,
 * comments, publications, roles, sequence values); optionally pg_amcheck.
 *
 * Where: by default a throwaway PostgreSQL of the source's major version that the drill starts
 * itself (initdb into a temporary directory, a Unix socket inside it, removed afterwards — and at
 * the next drill after a kill -9), so a drill touches nothing outside itself. A supabase-profile
 * backup's throwaway server is shaped like a fresh Supabase project (the platform's roles with
 * `postgres` a non-superuser, its schemas, extensions and default privileges, as the backup's
 * sidecar recorded them) and the restore runs as `postgres`, as it would into a new project. With
 * RESTORE_TEST_DATABASE_URL, that server is used instead, and left with its roles, role settings
 * and memberships exactly as the drill found them.
 *
 * The scratch database (`hb_drill_<backup>_<time>_<random>`) is dropped on success, failure and
 * timeout, and at the next drill for one a killed process left. A passing drill sets the backup's
 * `verifiedAt`; every drill is recorded (`restore_drills`).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup, BackupEvidence, DrillResult } from '../domain/types.js';
import { RunScope } from '../jobs/runs.js';
import { compactUtc, SIDECAR_SUFFIX } from '../dump/naming.js';
import { isPlatformLayout, isReservedRole, type PlatformLayout, readPlatformLayout } from '../dump/profiles.js';
import { readSidecar } from '../dump/sidecar.js';
import { type ConnInfo, describeConn, libpqArgs, parseConnInfo, sourceConnInfo } from '../pg/connection.js';
import { probeServer, withClient } from '../pg/server.js';
import { removeLeftoverClusters, startThrowawayCluster } from '../pg/throwaway.js';
import { compareWithEvidence } from '../fidelity/compare.js';
import { chooseTool, toolSearch } from '../pg/tools.js';
import { formatCount, formatDuration } from '../util/format.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { assertRestorable, offsiteSource, type OffsiteSource, runPsql } from './restore.js';
import { AGE_EXTENSION } from '../dump/naming.js';
import { fetchCopy, loadIdentities } from '../offsite/fetch.js';
import { rm } from 'node:fs/promises';
import { listTargetStoreFiles, offsiteFilesMissing, resolveBackup, type VerifyResult, verifyOne, verifyStorageFiles } from './verify.js';

const qi = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** A drill's result document: the recorded result, and what became of the scratch database. */
export interface DrillOutcome extends DrillResult {
  /**
   * true: the scratch database was dropped; false: the drop failed and it may be left on the
   * drill server (the next drill tries again); null: none was created (the drill stopped before).
   */
  scratchDropped: boolean | null;
  /** Why the drop failed. */
  scratchDropError?: string;
  /** The backup's Storage manifest checked against BACKUP_DIR/storage (presence and size; absent: no files, or an offsite drill). */
  storageFiles?: NonNullable<VerifyResult['storage']>;
}

/** The configured shared drill server, or null: drills then start their own throwaway PostgreSQL. */
export function sharedDrillServer(ctx: RunContext): ConnInfo | null {
  const url = ctx.config.restoreTest.databaseUrl;
  return url ? parseConnInfo(url, 'RESTORE_TEST_DATABASE_URL', ctx.config.environment.libpq) : null;
}

/**
 * Where a drill restores: a server, who restores there, and who looks afterwards.
 * `release` stops a throwaway server (removing it) or, on a shared server, puts back the roles,
 * role settings and memberships the drill changed.
 */
interface DrillTarget {
  kind: 'throwaway' | 'shared';
  /** A connection able to create and drop databases (and, throwaway, a superuser). */
  admin: ConnInfo;
  major: number;
  /** Who runs the restore into the scratch database. */
  restorer(scratch: string): ConnInfo;
  release(): Promise<void>;
}

/** Drops scratch databases that earlier drills left (a killed process); never touches others. */
export async function dropLeftovers(ctx: RunContext, server: ConnInfo): Promise<string[]> {
  const left = ctx.ledger.scratchDatabasesToDrop();
  const dropped: string[] = [];
  for (const l of left) {
    try {
      await dropScratch(ctx, server, l.database);
      ctx.ledger.mergeRunDetails(l.runId, { scratchDropped: true });
      dropped.push(l.database);
      ctx.log.info(`dropped scratch database ${l.database} left by drill run ${l.runId}`);
    } catch (e) {
      ctx.log.warn(`could not drop scratch database ${l.database} left by drill run ${l.runId}: ${toHbError(e).message}`);
    }
  }
  return dropped;
}

async function dropScratch(ctx: RunContext, server: ConnInfo, name: string): Promise<void> {
  await withClient(server, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    const v = Number((await c.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0]!.v);
    if (v >= 130000) await c.query(`DROP DATABASE IF EXISTS ${qi(name)} WITH (FORCE)`);
    else {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
      await c.query(`DROP DATABASE IF EXISTS ${qi(name)}`);
    }
  });
}

/**
 * The platform layout a supabase-profile backup recorded in its sidecar at backup time. Backups
 * taken before hybrid-backup recorded it (or whose sidecar is gone or could not record it) fall
 * back, with a note, to reading the source database as it is now.
 */
async function platformLayoutOf(ctx: RunContext, b: Backup): Promise<PlatformLayout> {
  const file = b.file + SIDECAR_SUFFIX;
  let why: string;
  try {
    const sidecar = await readSidecar(file);
    if (isPlatformLayout(sidecar.platform)) return sidecar.platform;
    why = sidecar.platform === null ? 'could not record the platform layout when it was taken' : 'has no platform layout (taken by an older version)';
  } catch (e) {
    why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'has no sidecar' : `has an unreadable sidecar (${redact((e as Error).message)})`;
  }
  const note = `backup ${b.id} ${why}: reading the platform schemas from the source database (DATABASE_URL) as it is now, not as it was at backup time`;
  ctx.log.warn(note, { backupId: b.id });
  ctx.reporter.notice(note);
  const source = sourceConnInfo(ctx.config.databaseUrl, ctx.config.environment.libpq);
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  try {
    const major = (await probeServer(source, timeout)).major;
    const pgDump = await chooseTool('pg_dump', major, toolSearch(ctx.config));
    const { dbname, env } = libpqArgs(source);
    return await withClient(source, { connectTimeoutSeconds: timeout }, (c) =>
      readPlatformLayout(c, { pgDump: pgDump.tool.path, pgDumpMajor: pgDump.tool.major, dbname, env: { ...env, PGCONNECT_TIMEOUT: String(timeout) }, snapshot: null, signal: ctx.signal }),
    );
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    throw new HbError(
      'restore-test-failed',
      `cannot read the platform schemas of the source database: ${toHbError(e).message}`,
      `backup ${b.id} ${why}, so its drill needs DATABASE_URL reachable; backups taken from now on record the platform layout in their sidecar`,
    );
  }
}

/** The platform's API roles, which every project has and every dump's grants name. */
const API_ROLES = ['anon', 'authenticated', 'service_role'];

/**
 * Gives a scratch database what a fresh Supabase project has before any restore: the platform's
 * roles, schemas, extensions and (empty) tables, as the source had them when the backup was taken.
 * On a throwaway server (whose bootstrap superuser is `supabase_admin`, as on the platform) it
 * also gets the platform's own shape around them: `postgres` a member of the API roles but not a
 * superuser, the database owned by `postgres`, and the default privileges in `public` that grant
 * to `anon`, `authenticated` and `service_role` whatever `postgres` or `supabase_admin` creates —
 * the ones that would widen a naive restore's privileges — and the extensions the source had,
 * created by the superuser as the platform's supautils does for `postgres`.
 */
async function prepareSupabaseScratch(ctx: RunContext, b: Backup, target: DrillTarget, scratchName: string, psqlPath: string, evidence: BackupEvidence | null): Promise<void> {
  const sourceExtensions = evidence?.extensions ?? [];
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  const shape = await platformLayoutOf(ctx, b);
  const scratch: ConnInfo = { ...target.admin, database: scratchName };
  const throwaway = target.kind === 'throwaway';
  // Roles are cluster-wide: create the platform's that the drill server lacks.
  await withClient(scratch, { connectTimeoutSeconds: timeout }, async (c) => {
    for (const role of new Set([...shape.roles.filter(isReservedRole), ...API_ROLES, 'authenticator'])) {
      if (role.startsWith('pg_') || role === 'postgres' || (throwaway && role === target.admin.user)) continue;
      await c.query(`DO $hb$ BEGIN CREATE ROLE ${qi(role)} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $hb$`);
    }
    if (throwaway) {
      await c.query(`CREATE ROLE postgres LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS`);
      await c.query(`ALTER ROLE service_role BYPASSRLS`);
      await c.query(`GRANT ${API_ROLES.map(qi).join(', ')} TO postgres`);
      await c.query(`GRANT ${API_ROLES.map(qi).join(', ')} TO authenticator`);
      await c.query(`ALTER DATABASE ${qi(scratchName)} OWNER TO postgres`);
      await c.query(`GRANT USAGE ON SCHEMA public TO ${API_ROLES.map(qi).join(', ')}`);
      await c.query(`GRANT ALL ON SCHEMA public TO postgres`);
      for (const owner of ['postgres', target.admin.user!]) {
        for (const what of ['TABLES', 'SEQUENCES', 'FUNCTIONS']) {
          await c.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${qi(owner)} IN SCHEMA public GRANT ALL ON ${what} TO postgres, ${API_ROLES.map(qi).join(', ')}`);
        }
      }
    }
    for (const s of shape.schemas) await c.query(`CREATE SCHEMA IF NOT EXISTS ${qi(s)}`);
    for (const x of shape.extensions) await c.query(`CREATE EXTENSION IF NOT EXISTS ${qi(x.name)} WITH SCHEMA ${qi(x.schema)}`);
    // every project has the Realtime publication (a backup adds its tables to it)
    await c.query(`DO $hb$ BEGIN IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'supabase_realtime') THEN CREATE PUBLICATION supabase_realtime; END IF; END $hb$`);
  });
  if (shape.schemas.length && shape.ddl !== '') {
    // The platform tables, empty; triggers calling the user's functions come with the backup itself.
    const dst = libpqArgs(scratch);
    const { execa } = await loadExeca();
    const userFn = new RegExp(`EXECUTE (FUNCTION|PROCEDURE) (?!(${shape.schemas.map((s) => s.replace(/[^\w]/g, '')).join('|')})\\.)`);
    const sql = shape.ddl
      .split('\n')
      .map((l) => (/^CREATE SCHEMA /.test(l) ? l.replace(/^CREATE SCHEMA /, 'CREATE SCHEMA IF NOT EXISTS ') : /^CREATE TRIGGER /.test(l) && userFn.test(l) ? `-- ${l}` : l))
      .join('\n');
    const apply = await execa(psqlPath, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '--single-transaction', `--dbname=${dst.dbname}`, '-f', '-'], {
      env: dst.env,
      extendEnv: true,
      input: sql,
      reject: false,
      cancelSignal: ctx.signal,
    });
    if (apply.exitCode !== 0) throw new HbError('restore-test-failed', `cannot give the scratch database the platform schemas: ${redact(String(apply.stderr)).trim().split('\n').slice(0, 3).join(' | ')}`);
  }
  if (throwaway) {
    // What supautils lets `postgres` do on the platform, given here as plain grants: set the
    // superuser-only settings a restore sets (session_replication_role for the data, the
    // PostgREST settings of the API roles), and manage policies and triggers on the platform's
    // auth and storage tables (as the platform itself did by membership until 2024).
    await withClient(scratch, { connectTimeoutSeconds: timeout }, async (c) => {
      const params = new Set(['session_replication_role', 'track_io_timing']);
      const fp = evidence?.fingerprint as { objects?: Record<string, string> } | null | undefined;
      for (const key of Object.keys(fp?.objects ?? {})) {
        const m = /^role \S+ set (\S+)/.exec(key);
        if (m && /^(pgrst|pgaudit)\./.test(m[1]!.replace(/^"|"$/g, ''))) params.add(m[1]!.replace(/^"|"$/g, ''));
      }
      if (target.major >= 15) await c.query(`GRANT SET ON PARAMETER ${[...params].map(qi).join(', ')} TO postgres`);
      await c.query(`ALTER PUBLICATION supabase_realtime OWNER TO postgres`);
      for (const owner of ['supabase_auth_admin', 'supabase_storage_admin']) {
        await c.query(`DO $hb$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = ${`'${owner}'`}) THEN GRANT ${qi(owner)} TO postgres; END IF; END $hb$`);
      }
    });
    // On the platform, supautils creates the extensions `postgres` asks for as the superuser; here
    // the drill does it first. One this machine does not have is named by the restore's error.
    await withClient(scratch, { connectTimeoutSeconds: timeout }, async (c) => {
      for (const x of sourceExtensions) {
        await c.query(`CREATE SCHEMA IF NOT EXISTS ${qi(x.schema)}`);
        try {
          await c.query(`CREATE EXTENSION IF NOT EXISTS ${qi(x.name)} WITH SCHEMA ${qi(x.schema)}`);
        } catch (e) {
          ctx.log.warn(`drill of backup ${b.id}: extension ${x.name} cannot be created on the drill server: ${toHbError(e).message}`);
        }
      }
      // the platform's after-create scripts let postgres use the foreign-data wrappers (it owns
      // them there, which plain PostgreSQL allows only a superuser): it may create servers
      await c.query(`DO $hb$ DECLARE w text; BEGIN FOR w IN SELECT fdwname FROM pg_foreign_data_wrapper LOOP EXECUTE format('GRANT USAGE ON FOREIGN DATA WRAPPER %I TO postgres WITH GRANT OPTION', w); END LOOP; END $hb$`);
    });
  }
}

/** Compares every table's rows with what the dump recorded — those in `known` (already read back) by that reading, the rest by counting; returns mismatches. */
async function compareCounts(ctx: RunContext, scratch: ConnInfo, expected: Record<string, number>, known: ReadonlyMap<string, number>): Promise<{ rowsChecked: number; mismatches: DrillResult['mismatches'] }> {
  const mismatches: DrillResult['mismatches'] = [];
  let rowsChecked = 0;
  const toCount: Array<[string, number]> = [];
  for (const [table, want] of Object.entries(expected)) {
    const got = known.get(table);
    if (got === undefined) {
      toCount.push([table, want]);
      continue;
    }
    rowsChecked += got;
    if (got !== want) mismatches.push({ table, expected: want, actual: got });
  }
  if (toCount.length === 0) return { rowsChecked, mismatches };
  await withClient(scratch, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    for (const [table, want] of toCount) {
      try {
        // The name is as pg_dump wrote it in COPY: a valid, quoted-where-needed SQL identifier.
        const got = Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ONLY ${table}`)).rows[0]!.n);
        rowsChecked += got;
        if (got !== want) mismatches.push({ table, expected: want, actual: got });
      } catch (e) {
        mismatches.push({ table, expected: want, actual: null, error: redact((e as Error).message) });
      }
    }
  });
  return { rowsChecked, mismatches };
}

async function amcheck(ctx: RunContext, scratch: ConnInfo, major: number): Promise<'ok' | 'failed'> {
  const tool = await chooseTool('pg_amcheck', major, toolSearch(ctx.config));
  const { dbname, env } = libpqArgs(scratch);
  const { execa } = await loadExeca();
  const r = await execa(tool.tool.path, ['--install-missing', '--heapallindexed', '--no-password', dbname], { env, extendEnv: true, reject: false, cancelSignal: ctx.signal });
  if (r.exitCode !== 0) ctx.log.error(`pg_amcheck found problems: ${redact(String(r.stdout || r.stderr)).slice(0, 2000)}`);
  return r.exitCode === 0 ? 'ok' : 'failed';
}

/** The role state a drill may change on a shared server, to put back afterwards. */
interface RoleState {
  roles: Set<string>;
  settings: Map<string, string[] | null>;
  members: Set<string>;
}

async function readRoleState(ctx: RunContext, server: ConnInfo): Promise<RoleState> {
  return withClient(server, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    const roles = (await c.query<{ r: string }>(`SELECT rolname AS r FROM pg_roles`)).rows.map((x) => x.r);
    const settings = (await c.query<{ r: string; s: string[] | null }>(`SELECT r.rolname AS r, s.setconfig AS s FROM pg_roles r LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0`)).rows;
    const members = (await c.query<{ m: string }>(`SELECT r.rolname || ' ' || m.rolname || ' ' || a.admin_option AS m FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member`)).rows.map((x) => x.m);
    return { roles: new Set(roles), settings: new Map(settings.map((x) => [x.r, x.s ? [...x.s].sort() : null])), members: new Set(members) };
  });
}

/**
 * Puts a shared server's roles back as the drill found them: memberships it added are revoked, role
 * settings it changed restored, roles it created dropped (their objects went with the scratch
 * database). Returns what it could not put back.
 */
async function restoreRoleState(ctx: RunContext, server: ConnInfo, before: RoleState): Promise<string[]> {
  const problems: string[] = [];
  const now = await readRoleState(ctx, server);
  await withClient(server, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    const run = async (sql: string) => {
      try {
        await c.query(sql);
      } catch (e) {
        problems.push(`${sql}: ${redact((e as Error).message)}`);
      }
    };
    for (const m of now.members) {
      if (before.members.has(m)) continue;
      const [role, member] = m.split(' ');
      if (before.roles.has(role!) && before.roles.has(member!)) await run(`REVOKE ${qi(role!)} FROM ${qi(member!)}`);
    }
    for (const [role, was] of before.settings) {
      const is = now.settings.get(role);
      if (is === undefined || JSON.stringify(is) === JSON.stringify(was)) continue;
      await run(`ALTER ROLE ${qi(role)} RESET ALL`);
      for (const kv of was ?? []) {
        const eq = kv.indexOf('=');
        await run(`ALTER ROLE ${qi(role)} SET ${qi(kv.slice(0, eq))} = ${`'${kv.slice(eq + 1).replace(/'/g, "''")}'`}`);
      }
    }
    for (const role of now.roles) if (!before.roles.has(role)) await run(`DROP ROLE IF EXISTS ${qi(role)}`);
  });
  return problems;
}

/** The major version a backup's server ran, from its recorded version ("15.20 (Debian …)"). */
function sourceMajor(b: Backup): number | null {
  const m = /^(\d+)(?:\.(\d+))?/.exec(b.serverVersion ?? '');
  if (!m) return null;
  const first = Number(m[1]);
  return first >= 10 ? first : Number(`${first}.${m[2] ?? 0}`);
}

/** Opens where the drill restores: the shared server when configured, else a throwaway one. */
async function openDrillTarget(ctx: RunContext, b: Backup, runId: number, signal: AbortSignal): Promise<DrillTarget> {
  const shared = sharedDrillServer(ctx);
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  if (shared) {
    await dropLeftovers(ctx, shared);
    const info = await probeServer(shared, timeout);
    const before = await readRoleState(ctx, shared);
    return {
      kind: 'shared',
      admin: shared,
      major: info.major,
      restorer: (scratch) => ({ ...shared, database: scratch }),
      release: async () => {
        const problems = await restoreRoleState(ctx, shared, before);
        if (problems.length) ctx.log.error(`drill run ${runId}: could not put every role back as it was on the drill server: ${problems.join('; ')}`, { runId });
      },
    };
  }
  const removed = await removeLeftoverClusters(undefined, { log: (m) => ctx.log.info(m) });
  if (removed.length) ctx.log.info(`removed ${removed.length} throwaway drill server(s) left by a drill that was killed: ${removed.join(', ')}`);
  const major = sourceMajor(b);
  if (major === null) throw new HbError('restore-test-failed', `backup ${b.id} does not say which PostgreSQL version it came from`, 'set RESTORE_TEST_DATABASE_URL to drill it on a server of your choice');
  const supabase = b.profile === 'supabase';
  const t0 = Date.now();
  // dump.pgBinDir names client tools; it is used for the server only when it holds initdb too.
  const bin = ctx.config.dump.pgBinDir;
  const cluster = await startThrowawayCluster({
    major,
    pgBinDir: bin && existsSync(path.join(bin, 'initdb')) ? bin : undefined,
    path: ctx.config.environment.path,
    signal,
    // a one-transaction restore of thousands of tables holds a lock on each
    settings: { max_locks_per_transaction: '4096' }, superuser: supabase ? 'supabase_admin' : 'postgres', log: (m) => ctx.log.debug(m) });
  ctx.log.info(`drill run ${runId}: started a throwaway PostgreSQL ${cluster.version} in ${cluster.dir} (${Date.now() - t0} ms)`, { runId, startMs: Date.now() - t0 });
  ctx.ledger.mergeRunDetails(runId, { throwaway: cluster.dir, startMs: Date.now() - t0 });
  return {
    kind: 'throwaway',
    admin: cluster.conn,
    major: cluster.major,
    // A Supabase project is restored into as `postgres`, which is not a superuser there.
    restorer: (scratch) => ({ ...cluster.conn, database: scratch, user: supabase ? 'postgres' : cluster.conn.user }),
    release: () => cluster.stop(),
  };
}

/**
 * Runs, as the drill server's superuser, what supautils would have let `postgres` do during the
 * restore (the user's event triggers, which a plain server refuses a non-superuser). What the
 * restore already did is left as it is.
 */
async function runAsSuperuser(ctx: RunContext, scratch: ConnInfo, psqlPath: string, sql: string): Promise<void> {
  const { dbname, env } = libpqArgs(scratch);
  const { execa } = await loadExeca();
  const r = await execa(psqlPath, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=0', `--dbname=${dbname}`, '-f', '-'], { env, extendEnv: true, input: sql, reject: false, cancelSignal: ctx.signal });
  const errors = redact(String(r.stderr)).split('\n').filter((l) => /ERROR/.test(l) && !/already exists/.test(l));
  if (errors.length) ctx.log.warn(`drill: what supautils allows postgres could not all be given as the superuser: ${errors.slice(0, 3).join(' | ')}`);
}

/** Creates, NOLOGIN, every role a full dump names that a throwaway server lacks (roles are not in a database dump). */
async function createReferencedRoles(ctx: RunContext, scratch: ConnInfo, roles: readonly string[]): Promise<void> {
  await withClient(scratch, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    for (const role of roles) {
      if (role.startsWith('pg_') || role === scratch.user) continue;
      await c.query(`DO $hb$ BEGIN CREATE ROLE ${qi(role)} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $hb$`);
    }
  });
}

/**
 * An offsite drill's Storage files: what the copy's kit names must be in the target — the manifest
 * (brought back here when the ledger lacks it, checked against the kit) and every file under the
 * key and of the size a restore fetches. Null when the backup has none to check (it captured none,
 * or its capture failed as a whole: the files are INCOMPLETE, said elsewhere). A copy without a kit
 * (made before kits) names no files: with a manifest here, that is a finding.
 */
async function offsiteFiles(ctx: RunContext, source: OffsiteSource, identities: string[] | undefined): Promise<NonNullable<VerifyResult['storage']> | null> {
  const { kit, target } = source;
  const local = source.backup.storage;
  const s = kit?.copy.storage;
  if (!kit || !s) {
    if (!local?.manifestFile) return null;
    return { ok: false, objects: local.objects, files: local.files, checked: 0, bytes: local.bytes, missing: local.files, corrupt: 0, error: `the copy in "${target.name}" names none of the backup's Storage files: a restore from it would bring none back` };
  }
  const { filesFromOffsite, backupManifest } = await import('./storage-files.js');
  const { summarize } = await import('../storage/index.js');
  const b = (await filesFromOffsite(ctx, target, source.backup, kit, { fetchFiles: false, ...(identities ? { identities } : {}) })).backup;
  const manifest = await backupManifest(b);
  const sum = summarize(manifest);
  const lacking = await offsiteFilesMissing(target, kit, { manifest, held: () => listTargetStoreFiles(target, ctx.signal) }, ctx.signal);
  return { ok: !lacking, objects: sum.objects, files: sum.files, checked: sum.files, bytes: sum.bytes, missing: lacking?.files ?? 0, corrupt: 0, ...(lacking ? { error: lacking.message } : {}) };
}

/** Where a drill takes its file: the local one, or a copy in an offsite target (the named one, or any). */
export type DrillFrom = { offsite: false } | { offsite: true; target?: string };

/**
 * Runs a restore drill of a backup (`latest`: the newest ok one; from offsite, the newest copy in
 * the target). Resolves with the (recorded) result, passing or not.
 */
export async function restoreDrill(ctx: RunContext, which: string, from: DrillFrom = { offsite: false }): Promise<DrillOutcome> {
  const source = from.offsite ? await offsiteSource(ctx, which, from.target) : null;
  const b: Backup = source ? source.backup : resolveBackup(ctx, which);
  if (!source) assertRestorable(b);
  const encrypted = source ? source.expect.encrypted : b.file.endsWith(AGE_EXTENSION);
  const keys = encrypted ? await loadIdentities(ctx, `backup ${b.id} (${source ? source.expect.location : path.basename(b.file)})`) : undefined;
  const identities = source ? undefined : keys;
  const startedAt = new Date().toISOString();
  const started = Date.now();
  const sourceName = source ? `offsite:${source.target.name}` : 'local';
  const run = RunScope.start(ctx, 'restore-drill', { backupId: b.id, source: sourceName });
  const log = ctx.log;
  const scratchName = `hb_drill_${b.id}_${compactUtc(startedAt).toLowerCase()}_${randomBytes(3).toString('hex')}`;
  const result: DrillOutcome = {
    backupId: b.id,
    ok: false,
    tables: 0,
    rowsChecked: 0,
    durationMs: 0,
    mismatches: [],
    scratchDatabase: scratchName,
    amcheck: 'off',
    fidelity: { objects: 0, tablesDigested: 0, differences: [] },
    scratchDropped: null,
    source: sourceName,
  };
  const timeoutMs = ctx.config.restoreTest.timeoutMinutes * 60_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const dctx: RunContext = { ...ctx, signal: AbortSignal.any([ctx.signal, timeout]) };
  let target: DrillTarget | undefined;
  let created = false;
  let download: string | null = null;
  let file: { file: string; compression: Backup['compression']; identities?: readonly string[] } = { file: b.file, compression: b.compression, ...(identities ? { identities } : {}) };
  try {
    // The drill's server starts while the file is checked (nothing is restored before the check passes).
    const opening = openDrillTarget(ctx, b, run.id, dctx.signal);
    opening.catch(() => {}); // awaited below, on every path
    try {
      if (source) {
        // The copy that would save the operator is the one proven: downloaded, decrypted, both digests checked.
        download = path.join(ctx.config.backupDir, `.offsite-${b.id}-${process.pid}.download`);
        await rm(download, { force: true });
        await fetchCopy(dctx, source.target, source.expect, download, `backup ${b.id}`, keys);
        file = { file: download, compression: b.compression };
      } else {
        const check = await verifyOne(ctx, b, (e) => ctx.reporter.progress(e));
        if (!check.ok) throw new HbError('checksum-mismatch', `backup ${b.id} fails its checksum (${check.error}); it was not restored`, 'the file is damaged; drill another backup');
      }
    } catch (e) {
      // released in the finally below
      target = await opening.catch(() => undefined);
      throw e;
    }
    target = await opening;
    result.server = target.kind;
    const psql = await chooseTool('psql', target.major, toolSearch(ctx.config));
    // Recorded before it exists, so a killed drill's database is found and dropped later.
    ctx.ledger.mergeRunDetails(run.id, { scratchDb: scratchName });
    await withClient(target.admin, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, (c) => c.query(`CREATE DATABASE ${qi(scratchName)}`));
    created = true;
    const inspect: ConnInfo = { ...target.admin, database: scratchName };
    log.info(`drill of backup ${b.id}: restoring into scratch database ${scratchName} on ${target.kind === 'throwaway' ? 'a throwaway server' : describeConn(target.admin)}`, { runId: run.id, backupId: b.id });
    const evidence = ctx.ledger.evidence(b.id);
    if (b.profile === 'supabase') await prepareSupabaseScratch(dctx, b, target, scratchName, psql.tool.path, evidence);
    else if (target.kind === 'throwaway') await createReferencedRoles(dctx, inspect, evidence?.roles ?? []);
    const t0 = Date.now();
    await runPsql(dctx, file, target.restorer(scratchName), psql.tool.path, (n) => ctx.reporter.progress({ phase: 'drill', bytes: n, total: b.bytes, elapsedMs: Date.now() - t0 }));
    if (target.kind === 'throwaway' && evidence?.supautilsSql) await runAsSuperuser(dctx, inspect, psql.tool.path, evidence.supautilsSql);
    const expected = ctx.ledger.tableCounts(b.id);
    result.tables = Object.keys(expected).length;
    // Reading every table back for its digest counts its rows too: only the tables it did not
    // read are counted apart (one scan of the data, not two).
    const rowsRead = new Map<string, number>();
    result.fidelity = await compareWithEvidence({
      psqlPath: psql.tool.path,
      inspect,
      evidence,
      profile: b.profile,
      connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds,
      signal: dctx.signal,
      plainServer: target.kind === 'throwaway',
      rowsRead,
    });
    const cmp = await compareCounts(dctx, inspect, expected, rowsRead);
    result.rowsChecked = cmp.rowsChecked;
    result.mismatches = cmp.mismatches;
    if (ctx.config.restoreTest.amcheck) result.amcheck = await amcheck(dctx, inspect, target.major);
    const files = source ? await offsiteFiles(ctx, source, keys) : await verifyStorageFiles(ctx, b, false);
    if (files) result.storageFiles = files;
    result.ok = result.mismatches.length === 0 && result.amcheck !== 'failed' && result.fidelity.differences.length === 0 && (files?.ok ?? true);
  } catch (e) {
    let err = toHbError(e);
    if (timeout.aborted && !ctx.signal.aborted) err = new HbError('restore-test-failed', `the drill of backup ${b.id} took longer than ${ctx.config.restoreTest.timeoutMinutes} minutes and was stopped`, 'raise restoreTest.timeoutMinutes for big databases');
    result.error = { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  } finally {
    if (download) await rm(download, { force: true });
    source?.target.close?.();
    if (target?.kind === 'shared' && (created || ctx.ledger.getRun(run.id)?.details?.scratchDb)) {
      try {
        await dropScratch(ctx, target.admin, scratchName);
        ctx.ledger.mergeRunDetails(run.id, { scratchDropped: true });
        result.scratchDropped = true;
      } catch (e) {
        result.scratchDropped = false;
        result.scratchDropError = redact(toHbError(e).message);
        log.error(`could not drop scratch database ${scratchName} (the next drill retries): ${result.scratchDropError}`, { runId: run.id });
      }
    }
    if (target) {
      try {
        await target.release();
        if (target.kind === 'throwaway') {
          ctx.ledger.mergeRunDetails(run.id, { scratchDropped: true });
          if (created) result.scratchDropped = true;
        }
      } catch (e) {
        log.error(`drill run ${run.id}: could not release the drill server: ${toHbError(e).message}`, { runId: run.id });
        if (target.kind === 'throwaway' && created) {
          result.scratchDropped = false;
          result.scratchDropError = redact(toHbError(e).message);
        }
      }
    }
  }
  result.durationMs = Date.now() - started;
  ctx.ledger.recordDrill(run.id, startedAt, result);
  if (result.ok) {
    ctx.ledger.markVerified(b.id);
    run.ok({ ok: true, rowsChecked: result.rowsChecked, tables: result.tables });
    log.info(`drill of backup ${b.id}${source ? ` (its copy in "${source.target.name}")` : ''} passed: ${formatCount(result.tables)} tables, ${formatCount(result.rowsChecked)} rows as recorded, in ${formatDuration(result.durationMs)}`, { runId: run.id, backupId: b.id });
  } else {
    const why = result.error
      ? result.error.message
      : [
          ...result.mismatches.map((m) => (m.actual === null ? `${m.table}: ${m.error}` : `${m.table} has ${m.actual} rows, the dump recorded ${m.expected}`)),
          ...result.fidelity.differences,
          ...(result.amcheck === 'failed' ? ['pg_amcheck found corruption'] : []),
          ...(result.storageFiles && !result.storageFiles.ok ? [`Storage files: ${result.storageFiles.error}`] : []),
        ].join('; ');
    run.failed({ code: result.error?.code ?? 'restore-test-failed', message: `drill of backup ${b.id} failed: ${why}` });
    log.error(`drill of backup ${b.id} FAILED: ${why}`, { runId: run.id, backupId: b.id });
  }
  return result;
}
