/**
 * Taking a local backup, end to end: validate, record the run, take the backup lock, preflight
 * (server version, matching pg_dump, free space), dump to `<name>.partial`, fsync, rename, fsync
 * the directory, write the `.meta.json` sidecar, record the backup.
 *
 * Guarantees: on success the file is durable under its final name and recorded `ok`; on any
 * failure nothing is left under a final name, no `.partial` remains, and the attempt is recorded
 * `failed` (or `interrupted` when stopped) with the error, redacted.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import type { Backup, BackupEvidence, BackupKind } from '../domain/types.js';
import { fingerprintOptions, readEvidence } from '../fidelity/evidence.js';
import { readFingerprint } from '../fidelity/fingerprint.js';
import { AGE_FORMAT } from '../crypto/age.js';
import { RunScope } from '../jobs/runs.js';
import { backupFileName, PARTIAL_SUFFIX, SIDECAR_SUFFIX } from '../dump/naming.js';
import { dumpToPartial, isNoSpace } from '../dump/pipeline.js';
import { type Sidecar, SIDECAR_FORMAT } from '../dump/sidecar.js';
import type { NewBackup } from '../ledger/ledger.js';
import { effectiveProfile, type PlatformLayout, profileParts, readPlatformLayout, readSupabaseSnapshotSql, type SupabaseSnapshotSql, userEventTriggers } from '../dump/profiles.js';
import { assertDumpableConnection, type ConnInfo, libpqArgs, safeUrl, sourceConnInfo } from '../pg/connection.js';
import { probeServer, type ServerInfo, withSnapshot } from '../pg/server.js';
import { chooseTool, toolSearch } from '../pg/tools.js';
import { atomicWriteFile, ensurePrivateDir, exists, freeBytes, fsyncDir } from '../util/fs.js';
import { formatBytes, formatCount, formatDuration } from '../util/format.js';
import { acquireBackupLock } from './lock.js';
import { captureForBackup, readStorageRows, STORAGE_MANIFEST_SUFFIX } from './storage-files.js';
import type { RowKey } from '../storage/index.js';

export { emptyDumpWarning, MAX_DESCRIPTION, validateDescription } from './describe.js';
import { emptyDumpWarning, validateDescription } from './describe.js';

export interface BackupRequest {
  kind: BackupKind;
  description?: string | null;
}


async function uniqueFinalPath(dir: string, createdAt: string, kind: BackupKind, description: string | null, compression: 'none' | 'gzip', encrypted: boolean): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const p = path.join(dir, backupFileName(createdAt, kind, description, compression, attempt, encrypted));
    if (!(await exists(p)) && !(await exists(p + PARTIAL_SUFFIX))) return p;
  }
}

async function checkFreeSpace(ctx: RunContext): Promise<void> {
  const last = ctx.ledger.latestBackup(['ok']);
  if (!last) return;
  const need = Math.ceil(last.bytes * ctx.config.dump.freeSpaceFactor);
  const free = await freeBytes(ctx.config.backupDir);
  if (free < need) {
    throw new HbError(
      'disk-space-low',
      `only ${formatBytes(free)} free in ${ctx.config.backupDir}; the last backup took ${formatBytes(last.bytes)}, so the next needs about ${formatBytes(need)}`,
      'free disk space or move BACKUP_DIR to a larger disk; retention (prune) removes old backups',
    );
  }
}

/** A full-disk error that also says how much space is free and how much the next backup needs. */
async function withSpaceNeeded(ctx: RunContext, err: HbError): Promise<HbError> {
  const free = await freeBytes(ctx.config.backupDir).catch(() => null);
  let last: Backup | undefined;
  try {
    last = ctx.ledger.latestBackup(['ok']);
  } catch {
    last = undefined;
  }
  const need = last ? ` and the next backup needs about ${formatBytes(Math.ceil(last.bytes * ctx.config.dump.freeSpaceFactor))} (the last one took ${formatBytes(last.bytes)})` : '';
  const where = `the disk holding ${ctx.config.backupDir} is full (${free === null ? '?' : formatBytes(free)} free)${need}`;
  return new HbError(err.code, `${err.message}: ${where}`, 'free disk space (npm run backup:prune, or remove other files) or move BACKUP_DIR to a larger disk', { cause: err });
}


/** Takes a backup. Resolves with the recorded `ok` backup; throws the (recorded) failure. */
export async function takeBackup(ctx: RunContext, req: BackupRequest): Promise<Backup> {
  const description = validateDescription(req.description, req.kind === 'pre-change');
  const { config, ledger, log } = ctx;
  const { compression } = config.dump;
  const encryptTo = config.encryption.local ? config.encryption.ageRecipients : [];
  const encrypted = encryptTo.length > 0;
  const conn = sourceConnInfo(config.databaseUrl, config.environment.libpq);
  assertDumpableConnection(conn);
  const profile = effectiveProfile(config, conn);
  await ensurePrivateDir(config.backupDir);

  let createdAt = new Date().toISOString();
  // Provisional until the lock is held and the name is claimed; recorded for failed attempts.
  let finalPath = path.join(config.backupDir, backupFileName(createdAt, req.kind, description, compression, 0, encrypted));
  const run = RunScope.start(ctx, 'backup', { kind: req.kind, description, compression, profile, file: finalPath });
  log.info(`backup run ${run.id} requested`, { runId: run.id, kind: req.kind, trigger: ctx.trigger });

  let server: ServerInfo | null = null;
  let pgDumpVersion: string | null = null;
  /** Set once this run has claimed its file name (under the lock): only then are files ours to remove. */
  let owned = false;
  let renamed = false;
  let release: (() => void) | undefined;
  try {
    release = await acquireBackupLock(ctx, run.id);
    createdAt = new Date().toISOString();
    const started = Date.now();

    server = await probeServer(conn, config.dump.connectTimeoutSeconds);
    const choice = await chooseTool('pg_dump', server.major, toolSearch(config));
    const dumpAll = profile === 'supabase' ? await chooseTool('pg_dumpall', server.major, toolSearch(config)) : null;
    pgDumpVersion = choice.tool.version;
    if (choice.warning) {
      log.warn(choice.warning, { runId: run.id });
      ctx.reporter.notice(choice.warning);
    }
    await checkFreeSpace(ctx);

    finalPath = await uniqueFinalPath(config.backupDir, createdAt, req.kind, description, compression, encrypted);
    owned = true;
    const partialPath = finalPath + PARTIAL_SUFFIX;
    ledger.setRunFiles(run.id, { partialPath, finalPath });
    log.info(`dumping ${safeUrl(conn)} (profile ${profile}) with ${choice.tool.path} into ${path.basename(finalPath)}`, { runId: run.id, serverVersion: server.version });

    const { dbname, env } = libpqArgs(conn);
    const tools = { pgDump: choice.tool.path, pgDumpAll: dumpAll?.tool.path ?? null, pgDumpMajor: choice.tool.major };
    const dump = (snapshot: string | null, fromSnapshot: SupabaseSnapshotSql | string = '') =>
      dumpToPartial({
        parts: profileParts(profile, dbname, tools, snapshot, server!.database, fromSnapshot),
        env: { ...env, PGCONNECT_TIMEOUT: String(config.dump.connectTimeoutSeconds), PGAPPNAME: 'hybrid-backup' },
        partialPath,
        compression,
        gzipLevel: config.dump.gzipLevel,
        encryptTo,
        signal: ctx.signal,
        onProgress: (bytes) => ctx.reporter.progress({ phase: 'dump', bytes, elapsedMs: Date.now() - started }),
      });
    // Several pg_dump runs see one database state: a connection exports a snapshot and holds it.
    const major = server.major;
    let platform: PlatformLayout | null = null;
    let evidence: Omit<BackupEvidence, 'digests' | 'sequences'> | null = null;
    /** The dump's storage.objects rows (null: no such table), for the capture of the Storage files. */
    let storageRows: RowKey[] | null | undefined;
    // (the supabase profile's supautilsSql rides along in it)
    const out = await withSnapshot(conn, config.dump.connectTimeoutSeconds, async (snapshot, client) => {
      let fromSnapshot: SupabaseSnapshotSql | string = '';
      if (profile === 'supabase') {
        // What pg_dump leaves out (policies and triggers on platform tables, matview refreshes, event triggers).
        fromSnapshot = await readSupabaseSnapshotSql(client, major);
        // The platform as it is now, for restore drills of this backup (recorded in the sidecar).
        try {
          const layoutEnv = { ...env, PGCONNECT_TIMEOUT: String(config.dump.connectTimeoutSeconds) };
          platform = await readPlatformLayout(client, { pgDump: choice.tool.path, pgDumpMajor: choice.tool.major, dbname, env: layoutEnv, snapshot, signal: ctx.signal });
        } catch (e) {
          if (ctx.signal.aborted || toHbError(e).code === 'dump-aborted') throw e;
          const msg = `backup run ${run.id}: could not record the platform layout in the sidecar; a restore drill of this backup will read it from the source database: ${toHbError(e).message}`;
          log.warn(msg, { runId: run.id });
          ctx.reporter.notice(msg);
        }
      }
      // What a drill proves the restore against, read in the dump's own snapshot while pg_dump
      // runs. Not being able to read it never fails the backup: its drill then counts rows only.
      const warn = (what: string, e: unknown) => {
        const msg = `backup run ${run.id}: could not record ${what}: ${toHbError(e).message}`;
        log.warn(msg, { runId: run.id });
        ctx.reporter.notice(msg);
      };
      const fingerprint = () =>
        config.dump.fingerprint ? readFingerprint(client, fingerprintOptions(profile)).catch((e: unknown) => (warn('the catalog fingerprint (a drill of this backup compares rows and data only)', e), null)) : Promise.resolve(null);
      const reading = readEvidence(client, fingerprint, config.environment.libpq).then(
        async (e) => void (evidence = profile === 'supabase' ? { ...e, supautilsSql: await userEventTriggers(client) } : e),
        (e: unknown) => warn('what a drill compares (a drill of this backup counts rows only)', e),
      );
      // The Storage files' rows, in the same snapshot: what the capture is held against.
      const rowsRead =
        config.storageCapture === 'off'
          ? Promise.resolve()
          : readStorageRows(client).then(
              (r) => void (storageRows = r),
              (e: unknown) => warn('the storage.objects rows (the Storage files are captured without them)', e),
            );
      const [dumped] = await Promise.allSettled([dump(snapshot, fromSnapshot), reading, rowsRead]);
      if (dumped.status === 'rejected') throw dumped.reason;
      return dumped.value;
    });

    await fs.rename(partialPath, finalPath);
    renamed = true;
    await fsyncDir(config.backupDir);

    // The Storage files, right after the dump. Never fails the backup: an incomplete or failed
    // capture is recorded (and said) as such, and the backup is ok for its database.
    const files = await captureForBackup(ctx, { runId: run.id, finalPath, rows: storageRows });

    const finishedAt = new Date().toISOString();
    const durationMs = Date.now() - started;
    const sidecar: Sidecar = {
      format: SIDECAR_FORMAT,
      kind: req.kind,
      description,
      file: path.basename(finalPath),
      bytes: out.bytes,
      sha256: out.sha256,
      compression,
      profile,
      createdAt,
      finishedAt,
      durationMs,
      database: server.database,
      source: safeUrl(conn),
      sourceSystemId: server.systemId,
      serverVersion: server.version,
      pgDumpVersion,
      uncompressedBytes: out.rawBytes,
      tableCount: Object.keys(out.tables).length,
      rowCount: Object.values(out.tables).reduce((a, n) => a + n, 0),
      tables: out.tables,
      ...(profile === 'supabase' ? { platform } : {}),
      evidence: evidence ? { ...(evidence as Omit<BackupEvidence, 'digests' | 'sequences'>), digests: out.digests, sequences: out.sequences } : null,
      ...(out.plain ? { encryption: { format: AGE_FORMAT, recipients: [...encryptTo] }, plainBytes: out.plain.bytes, plainSha256: out.plain.sha256 } : {}),
      ...(files.sidecar ? { storage: files.sidecar } : {}),
    };
    await atomicWriteFile(finalPath + SIDECAR_SUFFIX, `${JSON.stringify(sidecar, null, 2)}\n`);

    const backup = ledger.recordBackup({
      ...baseRecord(run.id, req.kind, description, finalPath, compression, profile, createdAt, server, pgDumpVersion, conn),
      bytes: out.bytes,
      sha256: out.sha256,
      status: 'ok',
      finishedAt,
      durationMs,
      tables: out.tables,
      error: null,
      evidence: sidecar.evidence,
      storage: files.ledger,
    });
    run.recorded();
    if (sidecar.tableCount === 0) {
      const warning = emptyDumpWarning(server.database, safeUrl(conn));
      log.warn(`backup ${backup.id}: ${warning}`, { runId: run.id, backupId: backup.id });
      ctx.reporter.notice(`WARNING: backup ${backup.id}: ${warning}`);
    }
    log.info(
      `backup ${backup.id} ok: ${path.basename(finalPath)}, ${formatBytes(out.bytes)}, ${formatCount(sidecar.tableCount)} tables, ${formatCount(sidecar.rowCount)} rows in ${formatDuration(durationMs)}`,
      { runId: run.id, backupId: backup.id, bytes: out.bytes, sha256: out.sha256, durationMs },
    );
    return backup;
  } catch (e) {
    let err = toHbError(e);
    if (isNoSpace(err)) err = await withSpaceNeeded(ctx, err);
    // Whatever fails while cleaning up, the original error is the one reported.
    try {
      if (renamed) {
        // Renamed but not recorded: never leave an unconfirmed file under a final name.
        await fs.rm(finalPath, { force: true });
        await fs.rm(finalPath + SIDECAR_SUFFIX, { force: true });
        await fs.rm(finalPath + STORAGE_MANIFEST_SUFFIX, { force: true });
      }
      if (owned) await fs.rm(finalPath + PARTIAL_SUFFIX, { force: true });
    } catch (cleanup) {
      log.error(`backup run ${run.id}: could not remove its files (the next start recovers them): ${(cleanup as Error).message}`, { runId: run.id });
    }
    // Stopped (an abort, a service shutting down before it began) is not a failure of the backup itself.
    const status = run.statusFor(err);
    try {
      ledger.recordBackup({
        ...baseRecord(run.id, req.kind, description, finalPath, compression, profile, createdAt, server, pgDumpVersion, conn),
        bytes: 0,
        sha256: null,
        status,
        finishedAt: new Date().toISOString(),
        durationMs: null,
        tables: null,
        error: { code: err.code, message: err.message },
      });
      run.recorded(err);
    } catch (record) {
      log.error(`backup run ${run.id}: could not record the failure: ${(record as Error).message}`, { runId: run.id });
      try {
        run.fail(err);
      } catch {
        // the ledger itself is failing; the next open marks the run interrupted
      }
    }
    log.error(`backup run ${run.id} ${status}: ${err.message}`, { runId: run.id, code: err.code, ...(err.code === 'internal' ? { stack: (err.cause as Error)?.stack } : {}) });
    throw err;
  } finally {
    release?.();
  }
}

function baseRecord(
  runId: number,
  kind: BackupKind,
  description: string | null,
  file: string,
  compression: 'none' | 'gzip',
  profile: 'full' | 'supabase',
  createdAt: string,
  server: ServerInfo | null,
  pgDumpVersion: string | null,
  conn: ConnInfo,
): Omit<NewBackup, 'bytes' | 'sha256' | 'status' | 'finishedAt' | 'durationMs' | 'tables' | 'error'> {
  return {
    runId,
    kind,
    description,
    file,
    compression,
    profile,
    createdAt,
    database: server?.database ?? null,
    source: safeUrl(conn),
    sourceSystemId: server?.systemId ?? null,
    serverVersion: server?.version ?? null,
    pgDumpVersion,
  };
}
