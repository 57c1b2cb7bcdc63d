/**
 * Restore drills: proof that a backup restores. Verify the checksum; create a scratch database
 * (`hb_drill_<backup>_<time>_<random>`) on the server of RESTORE_TEST_DATABASE_URL; restore through
 * the same code path as `restore`; compare every table's row count with the counts the dump
 * recorded from its own COPY blocks; optionally run pg_amcheck; drop the scratch database — on
 * success, failure and timeout, and at the next drill for any a killed process left behind.
 *
 * A supabase-profile backup's scratch database first gets the platform (roles, schemas,
 * extensions, empty tables) as the backup's sidecar recorded it at backup time.
 *
 * A passing drill sets the backup's `verifiedAt`. Every drill is recorded (`restore_drills`); the
 * result document also says whether the scratch database was dropped (`scratchDropped`).
 */
import { randomBytes } from 'node:crypto';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup, DrillResult } from '../domain/types.js';
import { compactUtc, SIDECAR_SUFFIX } from '../dump/naming.js';
import { isPlatformLayout, isReservedRole, type PlatformLayout, readPlatformLayout, RESERVED_ROLES } from '../dump/profiles.js';
import { readSidecar } from '../dump/sidecar.js';
import { type ConnInfo, describeConn, libpqArgs, parseConnInfo, sourceConnInfo } from '../pg/connection.js';
import { probeServer, withClient } from '../pg/server.js';
import { chooseTool } from '../pg/tools.js';
import { formatCount, formatDuration } from '../util/format.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { assertRestorable, runPsql } from './restore.js';
import { resolveBackup, verifyOne } from './verify.js';

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
}

/** The restore-test server, or an error saying drills are off. */
export function drillServer(ctx: RunContext): ConnInfo {
  const url = ctx.config.restoreTest.databaseUrl;
  if (!url) {
    throw new HbError('restore-test-off', 'restore drills are off: RESTORE_TEST_DATABASE_URL is not set', 'set RESTORE_TEST_DATABASE_URL to a server where scratch databases may be created and dropped (never the production server)');
  }
  return parseConnInfo(url, 'RESTORE_TEST_DATABASE_URL');
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
  const source = sourceConnInfo(ctx.config.databaseUrl);
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  try {
    const major = (await probeServer(source, timeout)).major;
    const pgDump = await chooseTool('pg_dump', major, ctx.config.dump.pgBinDir);
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

/**
 * Gives a scratch database what a fresh Supabase project has before any restore: the platform's
 * roles, schemas, extensions and (empty) tables, as the source had them when the backup was taken.
 */
async function prepareSupabaseScratch(ctx: RunContext, b: Backup, scratch: ConnInfo, psqlPath: string): Promise<void> {
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  const shape = await platformLayoutOf(ctx, b);
  // Roles are cluster-wide: create the platform's that the drill server lacks.
  await withClient(scratch, { connectTimeoutSeconds: timeout }, async (c) => {
    for (const role of new Set([...shape.roles.filter(isReservedRole), ...RESERVED_ROLES.filter((r) => ['anon', 'authenticated', 'service_role', 'authenticator'].includes(r))])) {
      if (role.startsWith('pg_')) continue;
      await c.query(`DO $hb$ BEGIN CREATE ROLE ${qi(role)} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $hb$`);
    }
    for (const s of shape.schemas) await c.query(`CREATE SCHEMA IF NOT EXISTS ${qi(s)}`);
    for (const x of shape.extensions) await c.query(`CREATE EXTENSION IF NOT EXISTS ${qi(x.name)} WITH SCHEMA ${qi(x.schema)}`);
  });
  if (shape.schemas.length === 0 || shape.ddl === '') return;
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

/** Counts every table the dump recorded; returns mismatches. */
async function compareCounts(ctx: RunContext, scratch: ConnInfo, expected: Record<string, number>): Promise<{ rowsChecked: number; mismatches: DrillResult['mismatches'] }> {
  const mismatches: DrillResult['mismatches'] = [];
  let rowsChecked = 0;
  await withClient(scratch, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
    for (const [table, want] of Object.entries(expected)) {
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
  const tool = await chooseTool('pg_amcheck', major, ctx.config.dump.pgBinDir);
  const { dbname, env } = libpqArgs(scratch);
  const { execa } = await loadExeca();
  const r = await execa(tool.tool.path, ['--install-missing', '--heapallindexed', '--no-password', dbname], { env, extendEnv: true, reject: false, cancelSignal: ctx.signal });
  if (r.exitCode !== 0) ctx.log.error(`pg_amcheck found problems: ${redact(String(r.stdout || r.stderr)).slice(0, 2000)}`);
  return r.exitCode === 0 ? 'ok' : 'failed';
}

/** Runs a restore drill of a backup (`latest`: the newest ok one). Resolves with the (recorded) result, passing or not. */
export async function restoreDrill(ctx: RunContext, which: string): Promise<DrillOutcome> {
  const server = drillServer(ctx);
  const b: Backup = resolveBackup(ctx, which);
  assertRestorable(b);
  const startedAt = new Date().toISOString();
  const started = Date.now();
  const run = ctx.ledger.startRun('restore-drill', ctx.trigger, { backupId: b.id });
  const log = ctx.log;
  const scratchName = `hb_drill_${b.id}_${compactUtc(startedAt).toLowerCase()}_${randomBytes(3).toString('hex')}`;
  const scratch: ConnInfo = { ...server, database: scratchName };
  const result: DrillOutcome = { backupId: b.id, ok: false, tables: 0, rowsChecked: 0, durationMs: 0, mismatches: [], scratchDatabase: scratchName, amcheck: 'off', scratchDropped: null };
  const timeoutMs = ctx.config.restoreTest.timeoutMinutes * 60_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const dctx: RunContext = { ...ctx, signal: AbortSignal.any([ctx.signal, timeout]) };
  let created = false;
  try {
    await dropLeftovers(ctx, server);
    const check = await verifyOne(ctx, b, (e) => ctx.reporter.progress(e));
    if (!check.ok) throw new HbError('checksum-mismatch', `backup ${b.id} fails its checksum (${check.error}); it was not restored`, 'the file is damaged; drill another backup');
    const info = await probeServer(server, ctx.config.dump.connectTimeoutSeconds);
    const psql = await chooseTool('psql', info.major, ctx.config.dump.pgBinDir);
    // Recorded before it exists, so a killed drill's database is found and dropped later.
    ctx.ledger.mergeRunDetails(run.id, { scratchDb: scratchName });
    await withClient(server, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, (c) => c.query(`CREATE DATABASE ${qi(scratchName)}`));
    created = true;
    log.info(`drill of backup ${b.id}: restoring into scratch database ${scratchName} on ${describeConn(server)}`, { runId: run.id, backupId: b.id });
    if (b.profile === 'supabase') await prepareSupabaseScratch(dctx, b, scratch, psql.tool.path);
    const t0 = Date.now();
    await runPsql(dctx, b, scratch, psql.tool.path, (n) => ctx.reporter.progress({ phase: 'drill', bytes: n, total: b.bytes, elapsedMs: Date.now() - t0 }));
    const expected = ctx.ledger.tableCounts(b.id);
    result.tables = Object.keys(expected).length;
    const cmp = await compareCounts(dctx, scratch, expected);
    result.rowsChecked = cmp.rowsChecked;
    result.mismatches = cmp.mismatches;
    if (ctx.config.restoreTest.amcheck) result.amcheck = await amcheck(dctx, scratch, info.major);
    result.ok = result.mismatches.length === 0 && result.amcheck !== 'failed';
  } catch (e) {
    let err = toHbError(e);
    if (timeout.aborted && !ctx.signal.aborted) err = new HbError('restore-test-failed', `the drill of backup ${b.id} took longer than ${ctx.config.restoreTest.timeoutMinutes} minutes and was stopped`, 'raise restoreTest.timeoutMinutes for big databases');
    result.error = { code: err.code, message: err.message };
  } finally {
    if (created || ctx.ledger.getRun(run.id)?.details?.scratchDb) {
      try {
        await dropScratch(ctx, server, scratchName);
        ctx.ledger.mergeRunDetails(run.id, { scratchDropped: true });
        result.scratchDropped = true;
      } catch (e) {
        result.scratchDropped = false;
        result.scratchDropError = redact(toHbError(e).message);
        log.error(`could not drop scratch database ${scratchName} (the next drill retries): ${result.scratchDropError}`, { runId: run.id });
      }
    }
  }
  result.durationMs = Date.now() - started;
  ctx.ledger.recordDrill(run.id, startedAt, result);
  if (result.ok) {
    ctx.ledger.markVerified(b.id);
    ctx.ledger.finishRun(run.id, 'ok', null, { ok: true, rowsChecked: result.rowsChecked, tables: result.tables });
    log.info(`drill of backup ${b.id} passed: ${formatCount(result.tables)} tables, ${formatCount(result.rowsChecked)} rows as recorded, in ${formatDuration(result.durationMs)}`, { runId: run.id, backupId: b.id });
  } else {
    const why = result.error
      ? result.error.message
      : [
          ...result.mismatches.map((m) => (m.actual === null ? `${m.table}: ${m.error}` : `${m.table} has ${m.actual} rows, the dump recorded ${m.expected}`)),
          ...(result.amcheck === 'failed' ? ['pg_amcheck found corruption'] : []),
        ].join('; ');
    const status = result.error?.code === 'dump-aborted' || ctx.signal.aborted ? 'interrupted' : 'failed';
    ctx.ledger.finishRun(run.id, status, { code: result.error?.code ?? 'restore-test-failed', message: `drill of backup ${b.id} failed: ${why}` });
    log.error(`drill of backup ${b.id} FAILED: ${why}`, { runId: run.id, backupId: b.id });
  }
  return result;
}
