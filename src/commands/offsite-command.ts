/**
 * `offsite-sync`: upload now every backup that lacks a good copy in a target.
 * `offsite-list`: what a target holds, read from the target alone (its recovery kits).
 */
import { z } from 'zod';
import { HbError, toHbError } from '../domain/errors.js';
import type { BackupKind } from '../domain/types.js';
import type { SyncOutcome } from '../offsite/sync.js';
import type { OffsiteTarget } from '../offsite/target.js';
import { formatBytes, formatTime, table } from '../util/format.js';
import { defineCommand } from './command.js';

export const offsiteSyncCommand = defineCommand({
  name: 'offsite-sync',
  grace: true,
  summary: 'upload now, to every offsite target, every ok backup that lacks a good copy there (normally done after each backup); exit 1 if any upload fails',
  args: z.object({}),
  async run(ctx): Promise<SyncOutcome> {
    const { syncOffsite } = await import('../offsite/sync.js');
    const { NO_TARGET_HINT } = await import('../offsite/targets.js');
    const out = await syncOffsite(ctx);
    if (!out) throw new HbError('offsite-off', 'offsite copies are not configured', NO_TARGET_HINT);
    return out;
  },
  render(o) {
    if (o.uploaded.length === 0 && o.failed.length === 0) return 'every ok backup already has its offsite copies';
    const lines = Object.entries(o.targets).map(([name, t]) => `"${name}": ${t.uploaded.length} uploaded${t.uploaded.length ? ` (${t.uploaded.join(', ')})` : ''}${t.failed.length ? `, ${t.failed.length} FAILED` : ''}`);
    for (const f of o.failed) lines.push(`FAILED backup ${f.id} to "${f.target}": ${f.error} (retried at the next run)`);
    return lines.join('\n');
  },
  exitCode: (o) => (o.failed.length ? 1 : 0),
});

export interface OffsiteListEntry {
  target: string;
  key: string;
  location: string;
  createdAt: string;
  kind: BackupKind;
  description: string | null;
  /** The stored object's size and SHA-256. */
  bytes: number;
  sha256: string;
  encrypted: boolean;
  recipients: string[];
  /** The file inside: what `age -d` gives. */
  plainBytes: number;
  plainSha256: string;
  compression: string;
  profile: string;
  database: string | null;
  serverVersion: string | null;
  tableCount: number | null;
  rowCount: number | null;
}

export interface OffsiteListDoc {
  backups: OffsiteListEntry[];
  /** Kits that could not be read, with why. */
  unreadable: Array<{ target: string; key: string; error: string }>;
}

export const offsiteListCommand = defineCommand({
  name: 'offsite-list',
  worksOnFullDisk: true,
  summary: 'what the offsite targets hold, newest first, read from the targets alone (each copy\'s recovery kit): no ledger needed; exit 1 when a kit cannot be read',
  cli: {
    options: [{ flags: '--target <name>', description: 'only this target (default: every configured one)' }],
    toArgs: (_, o) => (o.target !== undefined ? { target: o.target } : {}),
  },
  args: z.object({ target: z.string().min(1).optional() }),
  async run(ctx, args): Promise<OffsiteListDoc> {
    const { configuredTarget, openTarget } = await import('../offsite/targets.js');
    const names = args.target !== undefined ? [configuredTarget(ctx.config, args.target).name] : ctx.config.offsiteTargets.map((t) => t.name);
    if (names.length === 0) configuredTarget(ctx.config);
    const doc: OffsiteListDoc = { backups: [], unreadable: [] };
    for (const name of names) {
      const target = await openTarget(configuredTarget(ctx.config, name));
      try {
        await listInto(doc, name, target, ctx.signal);
      } finally {
        target.close?.();
      }
    }
    doc.backups.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.target.localeCompare(b.target));
    return doc;
  },
  render(doc, view) {
    const lines: string[] = [];
    if (doc.backups.length === 0) lines.push('the offsite target holds no backup copy');
    else {
      lines.push(
        table(
          ['TARGET', 'CREATED', 'KIND', 'SIZE', 'ENCRYPTED', 'KEY / DESCRIPTION'],
          doc.backups.map((b) => [b.target, formatTime(b.createdAt, view.timeZone), b.kind, formatBytes(b.bytes), b.encrypted ? 'age' : 'no', b.description ? `${b.key}  ${b.description}` : b.key]),
        ),
        '',
        `${doc.backups.length} cop${doc.backups.length === 1 ? 'y' : 'ies'}; restore one with: hybrid-backup restore latest --from offsite --offsite-target <name> --target <url> --create`,
      );
    }
    for (const u of doc.unreadable) lines.push(`not readable: "${u.target}" ${u.key}: ${u.error}`);
    return lines.join('\n');
  },
  exitCode: (doc) => (doc.unreadable.length ? 1 : 0),
});

/** Adds what one target's kits say to the document. */
async function listInto(doc: OffsiteListDoc, name: string, target: OffsiteTarget, signal: AbortSignal): Promise<void> {
  const { kitKeys, readKit } = await import('../offsite/fetch.js');
  for (const key of await kitKeys(target, signal)) {
    try {
      const kit = await readKit(target, key, signal);
      const c = kit.copy;
      doc.backups.push({
        target: name,
        key: c.key,
        location: target.location(c.key),
        createdAt: kit.createdAt,
        kind: kit.kind,
        description: kit.description ?? null,
        bytes: c.bytes,
        sha256: c.sha256,
        encrypted: !!c.encryption,
        recipients: c.encryption?.recipients ?? [],
        plainBytes: c.plainBytes,
        plainSha256: c.plainSha256,
        compression: kit.compression,
        profile: kit.profile,
        database: kit.database ?? null,
        serverVersion: kit.serverVersion ?? null,
        tableCount: kit.tableCount ?? null,
        rowCount: kit.rowCount ?? null,
      });
    } catch (e) {
      if (signal.aborted) throw e;
      doc.unreadable.push({ target: name, key, error: toHbError(e).message });
    }
  }
}
