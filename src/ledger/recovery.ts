/**
 * Crash recovery, at every open: runs left `running` by a process that no longer exists become
 * `interrupted`, their partial files (and a final file never recorded) are deleted, a backup run
 * gets its interrupted backup row, and locks and places in line held by dead processes are freed.
 */
import { rmSync } from 'node:fs';
import type { BackupKind, Compression, DumpProfile } from '../domain/types.js';
import { isAlive } from '../util/process.js';
import type { Backups } from './backups.js';
import type { Locks } from './locks.js';
import type { RunRow, Runs } from './runs.js';
import { now, type Sql } from './sql.js';

export interface RecoveredRun {
  runId: number;
  job: string;
  pid: number | null;
  removed: string[];
}

/** Closes runs whose process died; deletes their partial files and unrecorded outputs. */
export function recoverAbandoned(sql: Sql, runs: Runs, backups: Backups, locks: Locks): RecoveredRun[] {
  const interrupt = sql.db.transaction((r: RunRow, message: string) => {
    if (!runs.interrupt(r.id, message)) return; // another process recovered it first
    const d = r.details ? (JSON.parse(r.details) as Record<string, unknown>) : {};
    if (r.job === 'backup' && r.backup_id === null && typeof d.kind === 'string') {
      const id = backups.insert({
        runId: r.id,
        kind: d.kind as BackupKind,
        description: (d.description as string | null) ?? null,
        file: r.final_path ?? (d.file as string) ?? '',
        bytes: 0,
        sha256: null,
        compression: (d.compression as Compression) ?? 'none',
        profile: (d.profile as DumpProfile) ?? 'full',
        status: 'interrupted',
        createdAt: r.started_at,
        finishedAt: now(),
        durationMs: null,
        database: null,
        source: null,
        sourceSystemId: null,
        serverVersion: null,
        pgDumpVersion: null,
        tables: null,
        error: { code: 'interrupted', message },
      });
      runs.setBackup(r.id, id);
    }
  });

  const out: RecoveredRun[] = [];
  for (const r of runs.running()) {
    if (isAlive({ pid: r.pid, start: r.pid_start, host: r.host })) continue;
    const removed: string[] = [];
    for (const f of [r.partial_path]) {
      if (!f) continue;
      try {
        rmSync(f, { force: false });
        removed.push(f);
      } catch {
        // already gone
      }
    }
    // A final file renamed into place but never recorded was never confirmed to anyone.
    if (r.final_path && r.backup_id === null) {
      for (const f of [r.final_path, `${r.final_path}.meta.json`]) {
        try {
          rmSync(f, { force: false });
          removed.push(f);
        } catch {
          // not there
        }
      }
    }
    interrupt(r, `process ${r.pid ?? '?'} stopped before the ${r.job} run finished`);
    out.push({ runId: r.id, job: r.job, pid: r.pid, removed });
  }
  // Locks held, and places in line taken, by dead processes are released too.
  locks.releaseDead();
  return out;
}
