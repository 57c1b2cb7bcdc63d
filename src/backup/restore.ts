/**
 * Restoring a backup into a database: verify the checksum first, then stream the file
 * (gunzipped when compressed) into `psql -v ON_ERROR_STOP=1 --single-transaction`, so a restore
 * either applies completely or not at all.
 *
 * Refuses a target that is the database the backup was taken from unless `yes` is given.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { loadExeca } from '../util/lazy.js';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup } from '../domain/types.js';
import { assertDumpableConnection, type ConnInfo, describeConn, effective, libpqArgs, parseConnInfo, safeUrl } from '../pg/connection.js';
import { probeServer, type ServerInfo, withClient } from '../pg/server.js';
import { chooseTool, toolSearch } from '../pg/tools.js';
import { formatBytes, formatDuration } from '../util/format.js';
import { redact } from '../util/redact.js';
import { resolveBackup, verifyOne } from './verify.js';
import { compareWithEvidence, type Fidelity } from '../fidelity/compare.js';
import { createDecryptStream } from '../crypto/age.js';
import { AGE_EXTENSION } from '../dump/naming.js';
import { RunScope } from '../jobs/runs.js';
import { adoptKit, type ExpectedCopy, fetchCopy, loadIdentities, newestKit, readKit, expectedFromKit } from '../offsite/fetch.js';
import { KIT_SUFFIX, type RecoveryKit } from '../offsite/kit.js';
import type { OffsiteTarget } from '../offsite/target.js';
import { configuredTarget, openTarget } from '../offsite/targets.js';

export interface RestoreRequest {
  /** A backup id or `latest`. */
  backup: string;
  /** Connection string of the target database. */
  target: string;
  /** Allow restoring into the database the backup came from. */
  yes?: boolean;
  /** Create the target database when it does not exist. */
  create?: boolean;
  /** Where the file comes from: the backup directory (default) or an offsite copy. */
  from?: 'local' | 'offsite';
  /** With `from: 'offsite'`: the target to restore from (default: the newest copy in any target). */
  offsiteTarget?: string;
}

export interface RestoreResult {
  backupId: number;
  from: 'local' | 'offsite';
  /** The offsite target the copy came from. */
  offsiteTarget?: string;
  /** The local file, or the offsite location. */
  file: string;
  target: string;
  database: string;
  createdDatabase: boolean;
  bytes: number;
  tables: number | null;
  rows: number | null;
  durationMs: number;
  /**
   * The restored database compared with what the backup recorded (as a drill compares): null for
   * backups that recorded nothing to compare (taken by an older version).
   */
  fidelity: Fidelity | null;
}

/**
 * After a restore: every table's data read back and compared with the dump's digests, and the
 * catalog fingerprint with the one taken at backup time. Differences are reported, not thrown: the
 * restore itself succeeded and is committed; what differs is for the operator to judge.
 */
async function checkRestored(ctx: RunContext, b: Backup, conn: ConnInfo, psqlPath: string): Promise<RestoreResult['fidelity']> {
  const evidence = ctx.ledger.evidence(b.id);
  if (!evidence?.session) return null;
  let out: Fidelity;
  try {
    out = await compareWithEvidence({ psqlPath, inspect: conn, evidence, profile: b.profile, connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds, signal: ctx.signal });
  } catch (e) {
    out = { objects: 0, tablesDigested: 0, differences: [`the restored database could not be compared: ${toHbError(e).message}`] };
  }
  if (out.differences.length) ctx.log.warn(`restore of backup ${b.id}: ${out.differences.length} difference(s) from what the backup recorded: ${out.differences.slice(0, 5).join('; ')}`, { backupId: b.id });
  return out;
}

/** Checks the backup can be restored at all (has a complete, uncorrupted file). */
export function assertRestorable(b: Backup): void {
  if (b.status === 'ok') return;
  const why: Record<string, string> = {
    corrupt: 'its file does not match the recorded checksum',
    failed: 'the backup failed and has no file',
    interrupted: 'the backup was interrupted and has no file',
    pruned: 'it was pruned by retention and its file deleted',
    missing: 'its file is gone from disk',
  };
  throw new HbError(
    b.status === 'corrupt' ? 'checksum-mismatch' : 'backup-not-restorable',
    `backup ${b.id} cannot be restored: ${why[b.status] ?? b.status}`,
    b.status === 'missing' ? 'restore its offsite copy (--from offsite), put the file back (then verify it), or pick an ok backup from `hybrid-backup list`' : 'pick an ok backup from `hybrid-backup list`',
  );
}

/** Probes the target, creating the database first when asked to. */
async function prepareTarget(ctx: RunContext, conn: ConnInfo, create: boolean): Promise<{ server: ServerInfo; created: boolean }> {
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  try {
    return { server: await probeServer(conn, timeout), created: false };
  } catch (e) {
    if (!(e instanceof HbError) || e.code !== 'db-not-found') throw e;
    if (!create) {
      throw new HbError('db-not-found', `the target ${describeConn(conn)} does not exist`, 'create it first (createdb), or pass --create to have restore create it');
    }
  }
  const name = conn.database!;
  await withClient(conn, { connectTimeoutSeconds: timeout, database: 'postgres' }, async (c) => {
    await c.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  });
  ctx.log.info(`created database "${name}" for the restore`);
  return { server: await probeServer(conn, timeout), created: true };
}

/**
 * How far a process has read a file: the position of its descriptor on that file, from
 * /proc/<pid>/fdinfo (Linux); null when it cannot be told.
 */
async function readPosition(pid: number, file: string): Promise<number | null> {
  try {
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) !== file) continue;
      const m = /^pos:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) return Number(m[1]);
    }
  } catch {
    // not Linux, or the process is gone
  }
  return null;
}

/**
 * Feeds a backup file to psql in one transaction. A plain file is handed to psql itself
 * (`-f <file>`, nothing copied through this process; progress read from /proc); a gzip file is
 * streamed through gunzip into psql's stdin.
 */
export async function runPsql(ctx: RunContext, b: { file: string; compression: Backup['compression']; identities?: readonly string[] }, conn: ConnInfo, psqlPath: string, onBytes: (n: number) => void): Promise<void> {
  const { dbname, env } = libpqArgs(conn);
  const { execa } = await loadExeca();
  const decrypt = !!b.identities?.length;
  const direct = b.compression === 'none' && !decrypt;
  const child = execa(psqlPath, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '--single-transaction', `--dbname=${dbname}`, '-f', direct ? b.file : '-'], {
    env: { ...env, PGAPPNAME: 'hybrid-backup-restore', PGOPTIONS: '-c client_min_messages=warning' },
    extendEnv: true,
    stdin: direct ? 'ignore' : 'pipe',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cancelSignal: ctx.signal,
    forceKillAfterDelay: 5000,
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-32 * 1024);
  });
  let flow: PromiseSettledResult<unknown>;
  let exit: PromiseSettledResult<Awaited<typeof child>>;
  if (direct) {
    const absolute = path.resolve(b.file);
    const timer = setInterval(() => {
      void readPosition(child.pid!, absolute).then((n) => n !== null && onBytes(n));
    }, 250);
    try {
      [exit] = await Promise.allSettled([child]);
    } finally {
      clearInterval(timer);
    }
    flow = { status: 'fulfilled', value: undefined };
  } else {
    let read = 0;
    const count = new Transform({
      transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback) {
        read += chunk.length;
        onBytes(read);
        cb(null, chunk);
      },
    });
    // psql must never see the end of its input unless all of it was sent: at end of input it
    // COMMITs. So the file's stream does not own psql's stdin; on a read or gunzip error psql is
    // killed first, and only then is its stdin closed.
    const stdin = child.stdin!;
    const forward = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _e, cb) {
        if (stdin.write(chunk)) return cb();
        const onDrain = () => (stdin.off('close', onClose), cb());
        const onClose = () => (stdin.off('drain', onDrain), cb(new Error('psql stopped reading')));
        stdin.once('drain', onDrain);
        stdin.once('close', onClose);
      },
      final(cb) {
        stdin.end(cb);
      },
    });
    stdin.on('error', () => {}); // EPIPE when psql exits early: its exit status tells why
    const stages = [...(decrypt ? [createDecryptStream(b.identities!)] : []), ...(b.compression === 'gzip' ? [createGunzip()] : [])];
    const feed = pipeline([createReadStream(b.file, { highWaterMark: 1 << 20 }), count, ...stages, forward]).catch((e: unknown) => {
      child.kill('SIGKILL');
      stdin.destroy();
      throw e;
    });
    [flow, exit] = await Promise.allSettled([feed, child]);
  }
  const r = exit.status === 'fulfilled' ? exit.value : undefined;
  if (ctx.signal.aborted || r?.isCanceled) throw new HbError('aborted', 'the restore was stopped before it finished; psql rolled it back');
  if (flow.status === 'rejected') {
    const why = toHbError(flow.reason);
    if (why.code === 'decrypt-failed') throw new HbError('decrypt-failed', `cannot decrypt ${b.file}: ${why.message}; psql was stopped before it could commit, nothing was restored`, why.hint);
    throw new HbError('restore-failed', `cannot read ${b.file}: ${redact((flow.reason as Error).message)}; psql was stopped before it could commit, nothing was restored`, 'the file is damaged; restore another backup');
  }
  if (!r || r.failed) throw restoreError(conn, redact(stderr.trim()), r ? `psql exited with code ${r.exitCode}` : 'psql could not start');
}

/** The target's own relations (tables, views, sequences… outside the system schemas): null when it cannot be asked. */
async function relationCount(ctx: RunContext, conn: ConnInfo): Promise<number | null> {
  try {
    return await withClient(conn, { connectTimeoutSeconds: ctx.config.dump.connectTimeoutSeconds }, async (c) => {
      const r = await c.query(`SELECT count(*)::int AS n FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_temp'`);
      return (r.rows[0] as { n: number }).n;
    });
  } catch {
    return null;
  }
}

/**
 * A failed restore is rolled back as one transaction — unless the dump ended it itself: pg_dump
 * wraps large objects in its own BEGIN/COMMIT, and that COMMIT ends psql's --single-transaction,
 * so what came before it stays. Compared with the target's relations before, the error says
 * which it was, never "nothing was restored" when something was.
 */
async function unlessRolledBack(ctx: RunContext, conn: ConnInfo, before: number | null, e: unknown): Promise<unknown> {
  if (!(e instanceof HbError) || e.code !== 'restore-failed' || !e.message.includes('failed and was rolled back')) return e;
  const after = await relationCount(ctx, conn);
  if (before === null || after === null) {
    return new HbError('restore-failed', e.message.replace('failed and was rolled back (nothing was restored)', 'failed (whether part of it was committed could not be checked: look at the target before using it)'), e.hint);
  }
  if (after === before) return e;
  return new HbError(
    'restore-failed',
    e.message.replace('failed and was rolled back (nothing was restored)', `failed part-way, and part of it was COMMITTED (${after - before} relations are now in the target): the dump's own transaction around its large objects ended the single transaction`),
    `the target holds a partial restore: drop it (or restore into a fresh database with --create), then fix the cause and restore again`,
  );
}

/**
 * What psql's first error means, in words: a permission error says it is one (and which object,
 * which privilege); "the target already holds …" only when objects really collide.
 */
export function restoreError(conn: ConnInfo, stderr: string, fallback: string): HbError {
  const lines = stderr.split('\n');
  const first = lines.find((l) => /\b(ERROR|FATAL):/.test(l)) ?? lines.find((l) => /error/i.test(l));
  const detail = (first ?? lines.slice(-3).join(' | ') ?? '').replace(/^psql:[^:]*:\d+: /, '').trim() || fallback;
  const where = `restore into ${describeConn(conn)} failed and was rolled back (nothing was restored)`;
  if (/already exists/.test(detail)) {
    return new HbError('restore-failed', `${where}: the target already holds one of the backup's objects: ${detail}`, 'restore into a fresh database (--create), or drop what the message names first');
  }
  const perm = /permission denied|must be (owner|superuser|a member)|insufficient privilege|only superusers?|not permitted|must have .* privilege/i.test(detail);
  if (perm) {
    return new HbError(
      'restore-failed',
      `${where}: a permission error: ${detail}`,
      `the restoring user ${effective(conn).user} lacks that privilege on the target: grant it, or restore as a role that has it; into a Supabase project restore a supabase-profile backup as postgres`,
    );
  }
  return new HbError('restore-failed', `${where}: ${detail}`, 'psql stopped at its first error, shown above; fix its cause on the target and restore again');
}

/**
 * A full-profile backup holds the platform's own schemas and event triggers: into a Supabase
 * project, as `postgres` (not a superuser there), it cannot restore. Said before anything is
 * created on the target.
 * @throws HbError `restore-profile-mismatch`
 */
async function refuseFullIntoSupabase(ctx: RunContext, b: Backup, conn: ConnInfo): Promise<void> {
  const timeout = ctx.config.dump.connectTimeoutSeconds;
  let shaped: boolean;
  try {
    shaped = await withClient(conn, { connectTimeoutSeconds: timeout }, (c) => supabaseShapedTarget(c));
  } catch (e) {
    if (!(e instanceof HbError) || e.code !== 'db-not-found') throw e;
    shaped = await withClient(conn, { connectTimeoutSeconds: timeout, database: 'postgres' }, (c) => supabaseShapedTarget(c));
  }
  if (!shaped) return;
  throw new HbError(
    'restore-profile-mismatch',
    `backup ${b.id} is a full-profile backup (the whole database, with the platform's own schemas and event triggers); it cannot restore into a Supabase project as ${effective(conn).user}, which is not a superuser there`,
    'restore a supabase-profile backup into a Supabase project (dump.profile: "supabase", the default for Supabase hosts); a full-profile backup restores into a plain PostgreSQL server',
  );
}

/**
 * Whether the target looks like a Supabase project as a non-superuser sees it: its auth or storage
 * schema belongs to the platform's superuser `supabase_admin`, and we are not a superuser.
 */
async function supabaseShapedTarget(c: { query: (sql: string) => Promise<{ rows: Array<{ platform: boolean; su: boolean }> }> }): Promise<boolean> {
  // The platform's mark: its schemas belong to supabase_admin (a project's, not a look-alike's).
  const r = await c.query(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN pg_roles o ON o.oid = n.nspowner WHERE n.nspname IN ('auth', 'storage') AND o.rolname = 'supabase_admin') AS platform,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su`,
  );
  return !!r.rows[0]?.platform && !r.rows[0]?.su;
}

/** Where an offsite restore takes its copy from: the target, the copy, the backup it is. */
export interface OffsiteSource {
  target: OffsiteTarget;
  expect: ExpectedCopy;
  backup: Backup;
  /** The copy's recovery kit (null for a copy uploaded before kits existed). */
  kit: RecoveryKit | null;
}

/**
 * Finds the copy to restore: for `latest`, the newest copy in the named target or — without a
 * name — in any configured target that answers (read from the targets alone, so it works on a
 * fresh install with an empty ledger: the backup is added to the ledger from its kit); for an id,
 * that backup's copy in the named target or the first that holds one.
 */
export async function offsiteSource(ctx: RunContext, which: string, targetName: string | undefined): Promise<OffsiteSource> {
  const names = targetName !== undefined ? [configuredTarget(ctx.config, targetName).name] : ctx.config.offsiteTargets.map((t) => t.name);
  if (names.length === 0) configuredTarget(ctx.config);
  const open = (name: string) => openTarget(configuredTarget(ctx.config, name));
  if (which === 'latest') {
    let best: { target: OffsiteTarget; kit: RecoveryKit } | null = null;
    let lastError: HbError | null = null;
    for (const name of names) {
      const target = await open(name);
      try {
        const kit = await newestKit(ctx, target);
        if (!best || kit.createdAt > best.kit.createdAt) {
          best?.target.close?.();
          best = { target, kit };
        } else target.close?.();
      } catch (e) {
        target.close?.();
        if (ctx.signal.aborted) throw e;
        lastError = toHbError(e);
        if (names.length > 1) ctx.log.warn(`offsite target "${name}": ${lastError.message}`, { target: name });
      }
    }
    if (!best) throw lastError!;
    const { backup } = await adoptKit(ctx, best.target, best.kit);
    return { target: best.target, expect: expectedFromKit(best.kit), backup, kit: best.kit };
  }
  const b = resolveBackup(ctx, which);
  const holder = names.find((n) => ctx.ledger.copy(b.id, n)?.status === 'uploaded');
  if (!holder) {
    const copies = b.offsiteCopies.map((c) => `"${c.target}": ${c.status}${c.error ? ` (${c.error})` : ''}`).join('; ');
    throw new HbError('backup-not-restorable', `backup ${b.id} has no offsite copy${targetName ? ` in "${targetName}"` : ''}${copies ? ` (${copies})` : ''}`, 'see the OFFSITE column of `hybrid-backup list`, or restore `latest --from offsite`');
  }
  const copy = ctx.ledger.copy(b.id, holder)!;
  const target = await open(holder);
  let kit: RecoveryKit | null = null;
  try {
    kit = await readKit(target, copy.key + KIT_SUFFIX, ctx.signal);
  } catch (e) {
    // Copies uploaded before recovery kits existed have none: the ledger says what they are.
    if (toHbError(e).code !== 'offsite-not-found' || copy.encrypted) throw e;
  }
  if (kit && copy.sha256 && kit.copy.sha256 !== copy.sha256) {
    throw new HbError('checksum-mismatch', `the recovery kit of ${copy.location} describes another object than the one uploaded for backup ${b.id}; nothing was restored`, 'the copy was replaced in the target: restore another backup or from another target');
  }
  const expect: ExpectedCopy = kit
    ? expectedFromKit(kit)
    : { key: copy.key, location: copy.location, bytes: copy.bytes ?? b.bytes, sha256: copy.sha256 ?? b.sha256!, encrypted: false, plainBytes: b.bytes, plainSha256: b.sha256! };
  return { target, expect, backup: b, kit };
}

/** Restores a backup; see the module comment for what is checked first. */
export async function restoreBackup(ctx: RunContext, req: RestoreRequest): Promise<RestoreResult> {
  if (!req.target) throw new HbError('restore-target-missing', 'restore needs a target database', 'pass --target postgresql://user@host:5432/dbname');
  // Through the service, the target gets only the credentials in its own URL: never the service's.
  const conn: ConnInfo = { ...parseConnInfo(req.target, '--target', ctx.config.environment.libpq), isolated: !!ctx.service };
  assertDumpableConnection(conn, '--target');
  const from = req.from ?? 'local';
  if (from === 'local' && req.offsiteTarget !== undefined) throw new HbError('usage', '--offsite-target goes with --from offsite', 'add --from offsite, or leave --offsite-target out');
  const offsite = from === 'offsite' ? await offsiteSource(ctx, req.backup, req.offsiteTarget) : null;
  const b = offsite ? offsite.backup : resolveBackup(ctx, req.backup);
  if (!offsite) assertRestorable(b);
  // The key is looked for before anything is recorded or created: without it nothing can be done.
  const encrypted = offsite ? offsite.expect.encrypted : b.file.endsWith(AGE_EXTENSION);
  const identities = encrypted ? await loadIdentities(ctx, `backup ${b.id} (${offsite ? offsite.expect.location : path.basename(b.file)})`) : undefined;
  const localIdentities = offsite ? undefined : identities;
  const run = RunScope.start(ctx, 'restore', { backupId: b.id, target: safeUrl(conn), from, ...(offsite ? { offsiteTarget: offsite.target.name } : {}) });
  const started = Date.now();
  let file = b.file;
  let download: string | null = null;
  try {
    if (offsite) {
      download = path.join(ctx.config.backupDir, `.offsite-${b.id}-${process.pid}.download`);
      await rm(download, { force: true });
      await fetchCopy(ctx, offsite.target, offsite.expect, download, `backup ${b.id}`, identities);
      file = download;
    } else {
      const check = await verifyOne(ctx, b, (e) => ctx.reporter.progress(e));
      if (!check.ok) {
        throw new HbError('checksum-mismatch', `backup ${b.id} (${b.file}) fails its checksum: ${check.error}; nothing was restored`, 'the file is damaged; restore another backup, or its offsite copy with --from offsite');
      }
    }
    if (b.profile === 'full') await refuseFullIntoSupabase(ctx, b, conn);
    const { server, created } = await prepareTarget(ctx, conn, !!req.create);
    const source = ctx.ledger.backupSource(b.id);
    // Same cluster by system identifier when both are known; otherwise a host alias could hide
    // the source, so an equal database name counts as the source (a just-created one never does).
    const sameCluster = source?.sourceSystemId && server.systemId ? source.sourceSystemId === server.systemId : true;
    if (!created && sameCluster && server.database === b.database && !req.yes) {
      throw new HbError(
        'restore-target-is-source',
        `refusing to restore backup ${b.id} into ${describeConn(conn)}: it is the database the backup was taken from`,
        'restore into another database, or pass --yes if you really mean to restore over the source',
      );
    }
    const psql = await chooseTool('psql', server.major, toolSearch(ctx.config));
    const size = (await stat(file)).size;
    const t0 = Date.now();
    ctx.log.info(`restoring backup ${b.id} (${formatBytes(size)}) into ${safeUrl(conn)}`, { runId: run.id, backupId: b.id });
    const before = await relationCount(ctx, conn);
    try {
      await runPsql(ctx, { file, compression: b.compression, ...(localIdentities ? { identities: localIdentities } : {}) }, conn, psql.tool.path, (n) => ctx.reporter.progress({ phase: 'restore', bytes: n, total: size, elapsedMs: Date.now() - t0 }));
    } catch (e) {
      throw await unlessRolledBack(ctx, conn, before, e);
    }
    const result: RestoreResult = {
      backupId: b.id,
      from,
      ...(offsite ? { offsiteTarget: offsite.target.name } : {}),
      file: offsite ? offsite.expect.location : b.file,
      target: safeUrl(conn),
      database: server.database,
      createdDatabase: created,
      bytes: size,
      tables: b.tableCount,
      rows: b.rowCount,
      durationMs: Date.now() - started,
      fidelity: await checkRestored(ctx, b, conn, psql.tool.path),
    };
    result.durationMs = Date.now() - started;
    run.ok({ durationMs: result.durationMs, differences: result.fidelity?.differences.length ?? null });
    ctx.log.info(`restored backup ${b.id} into ${safeUrl(conn)} in ${formatDuration(result.durationMs)}`, { runId: run.id, backupId: b.id });
    return result;
  } catch (e) {
    const err = run.fail(e);
    ctx.log.error(`restore of backup ${b.id} ${run.statusFor(err)}: ${err.message}`, { runId: run.id, code: err.code });
    throw err;
  } finally {
    if (download) await rm(download, { force: true });
    offsite?.target.close?.();
  }
}
