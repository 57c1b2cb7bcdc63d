/**
 * Re-creating the ledger's backups from what is on disk: every `.meta.json` sidecar describes
 * its backup (kind, description, checksum, size, versions, per-table row counts), so a lost or
 * damaged ledger costs the run history, never the knowledge of which backups exist and whether
 * they are intact.
 *
 * Each file a sidecar names is re-hashed: matching → `ok`, not matching → `corrupt`, gone →
 * `missing`. A backup the ledger already knows (same file) is left as it is.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { RunContext } from '../context.js';
import { HbError, toHbError } from '../domain/errors.js';
import { BACKUP_KINDS, type Backup } from '../domain/types.js';
import { RunScope } from '../jobs/runs.js';
import { SIDECAR_SUFFIX } from '../dump/naming.js';
import { readSidecar, type Sidecar } from '../dump/sidecar.js';
import { sidecarNames } from '../ledger/ledger.js';
import { hashFile } from './verify.js';
import { adoptKit, kitKeys, readKit } from '../offsite/fetch.js';
import { configuredTarget, openTarget } from '../offsite/targets.js';

export interface RebuildOutcome {
  /** Backups added to the ledger, newest first. */
  added: Backup[];
  /** Sidecars whose backup the ledger already had. */
  alreadyKnown: number;
  /** Sidecars that could not be used, and why. */
  unreadable: Array<{ sidecar: string; error: string }>;
  /** Backup files with no sidecar: not added (nothing says what they are). */
  withoutSidecar: string[];
  /** Where an unreadable ledger was moved, when it was. */
  movedAside: string | null;
  /** The offsite target the rows were re-created from (`--from-offsite`), or null for the sidecars on disk. */
  fromOffsite: string | null;
}

const BACKUP_FILE = /^\d{8}T\d{6}Z(-\d+)?_[a-z-]+(_[a-z0-9-]+)?\.sql(\.gz)?(\.age)?$/;

/** Checks a parsed sidecar has what a ledger row needs (a sidecar is a file anyone can edit). */
function validSidecar(x: unknown): x is Sidecar {
  const s = x as Sidecar;
  return (
    !!s &&
    typeof s === 'object' &&
    typeof s.file === 'string' &&
    path.basename(s.file) === s.file &&
    (BACKUP_KINDS as readonly string[]).includes(s.kind) &&
    typeof s.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(s.sha256) &&
    Number.isSafeInteger(s.bytes) &&
    typeof s.createdAt === 'string' &&
    !Number.isNaN(Date.parse(s.createdAt)) &&
    (s.compression === 'none' || s.compression === 'gzip')
  );
}

/** Re-creates the ledger's rows for every backup the directory's sidecars describe. */
export async function rebuildFromSidecars(ctx: RunContext, movedAside: string | null): Promise<RebuildOutcome> {
  const dir = ctx.config.backupDir;
  const run = RunScope.start(ctx, 'ledger-rebuild', { movedAside });
  const out: RebuildOutcome = { added: [], alreadyKnown: 0, unreadable: [], withoutSidecar: [], movedAside, fromOffsite: null };
  try {
    const names = sidecarNames(dir);
    const started = Date.now();
    for (const [i, name] of names.entries()) {
      let sc: Sidecar;
      try {
        const parsed: unknown = await readSidecar(path.join(dir, name));
        if (!validSidecar(parsed)) throw new Error('it lacks the fields of a backup sidecar (file, kind, sha256, bytes, createdAt, compression)');
        sc = parsed;
      } catch (e) {
        out.unreadable.push({ sidecar: name, error: toHbError(e).message });
        continue;
      }
      const file = path.join(dir, sc.file);
      if (ctx.ledger.hasBackupFile(file)) {
        out.alreadyKnown++;
        continue;
      }
      let status: Backup['status'] = 'missing';
      try {
        const got = await hashFile(file, (n) => ctx.reporter.progress({ phase: 'verify', bytes: n, total: sc.bytes, elapsedMs: Date.now() - started }), ctx.signal);
        status = got.sha256 === sc.sha256 && got.bytes === sc.bytes ? 'ok' : 'corrupt';
      } catch (e) {
        if (ctx.signal.aborted) throw new HbError('aborted', 'ledger-rebuild was stopped; the backups found so far are recorded');
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      const b = ctx.ledger.addRebuiltBackup({
        kind: sc.kind,
        description: sc.description ?? null,
        file,
        bytes: sc.bytes,
        sha256: sc.sha256,
        compression: sc.compression,
        profile: sc.profile === 'supabase' ? 'supabase' : 'full',
        status,
        createdAt: sc.createdAt,
        finishedAt: sc.finishedAt ?? null,
        durationMs: sc.durationMs ?? null,
        database: sc.database ?? null,
        source: sc.source ?? null,
        sourceSystemId: sc.sourceSystemId ?? null,
        serverVersion: sc.serverVersion ?? null,
        pgDumpVersion: sc.pgDumpVersion ?? null,
        tables: sc.tables && typeof sc.tables === 'object' ? sc.tables : null,
        evidence: sc.evidence && typeof sc.evidence === 'object' && sc.evidence.digests ? sc.evidence : null,
        error: status === 'ok' ? null : { code: status === 'missing' ? 'file-missing' : 'checksum-mismatch', message: status === 'missing' ? `found by ledger-rebuild: ${sc.file} is gone` : `found by ledger-rebuild: ${sc.file} does not match its sidecar's SHA-256` },
      });
      if (sc.storage && typeof sc.storage === 'object') {
        const { storageFromSidecar } = await import('./storage-files.js');
        await storageFromSidecar(ctx, b, sc.storage, dir);
      }
      out.added.push(ctx.ledger.getBackup(b.id)!);
      ctx.log.info(`ledger-rebuild: backup ${b.id} (${sc.file}) added as ${status}`, { backupId: b.id, step: i + 1, of: names.length });
    }
    const sidecarFiles = new Set(names.map((n) => n.slice(0, -SIDECAR_SUFFIX.length)));
    out.withoutSidecar = (await readdir(dir)).filter((n) => BACKUP_FILE.test(n) && !sidecarFiles.has(n) && !ctx.ledger.hasBackupFile(path.join(dir, n))).sort();
    out.added.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    run.ok({ added: out.added.length, alreadyKnown: out.alreadyKnown, unreadable: out.unreadable.length });
    return out;
  } catch (e) {
    throw run.fail(e);
  }
}

/**
 * Re-creates the ledger's rows from the recovery kits in an offsite target (a new server: the
 * target is all there is). Each backup the ledger lacks is added — `missing` when its file is not
 * in BACKUP_DIR, `ok` or `corrupt` when it is (re-hashed) — with its copy in the target recorded.
 */
export async function rebuildFromOffsite(ctx: RunContext, targetName: string, movedAside: string | null): Promise<RebuildOutcome> {
  const target = await openTarget(configuredTarget(ctx.config, targetName));
  const run = RunScope.start(ctx, 'ledger-rebuild', { movedAside, fromOffsite: target.name });
  const out: RebuildOutcome = { added: [], alreadyKnown: 0, unreadable: [], withoutSidecar: [], movedAside, fromOffsite: target.name };
  try {
    const keys = await kitKeys(target, ctx.signal);
    for (const [i, key] of keys.entries()) {
      let kit;
      try {
        kit = await readKit(target, key, ctx.signal);
      } catch (e) {
        if (ctx.signal.aborted) throw new HbError('aborted', 'ledger-rebuild was stopped; the backups found so far are recorded');
        out.unreadable.push({ sidecar: target.location(key), error: toHbError(e).message });
        continue;
      }
      let { backup, added } = await adoptKit(ctx, target, kit);
      // Its Storage files as the kit tells them: their manifest when it can be read here (an
      // encrypted one needs the identity), else incomplete here, saying why. The files themselves
      // stay in the target until a restore asks for them. A backup adopted before without its
      // manifest gets it now, when it can be read (a second run, with the identity).
      const unread = !added && backup.storage !== null && !backup.storage.manifestFile && kit.copy.storage;
      if (added || unread) {
        const { storageFromKit } = await import('./storage-files.js');
        try {
          backup = await storageFromKit(ctx, target, backup, kit);
        } catch (e) {
          if (ctx.signal.aborted) throw new HbError('aborted', 'ledger-rebuild was stopped; the backups found so far are recorded');
          throw e;
        }
      }
      if (!added) {
        out.alreadyKnown++;
        continue;
      }
      out.added.push(backup);
      ctx.log.info(`ledger-rebuild: backup ${backup.id} (${kit.file}) added from "${target.name}" as ${backup.status}`, { backupId: backup.id, step: i + 1, of: keys.length });
    }
    out.added.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    run.ok({ added: out.added.length, alreadyKnown: out.alreadyKnown, unreadable: out.unreadable.length, fromOffsite: target.name });
    return out;
  } catch (e) {
    throw run.fail(e);
  } finally {
    target.close?.();
  }
}
