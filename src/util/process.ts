/**
 * Process identity for crash recovery: a pid alone can be reused, so a holder is identified by
 * its pid, its start time (from /proc) and its host.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22), or null off Linux. */
  start: string | null;
  host: string;
}

export function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

let self: ProcessIdentity | undefined;

export function selfIdentity(): ProcessIdentity {
  self ??= { pid: process.pid, start: startTimeOf(process.pid), host: os.hostname() };
  return self;
}

/**
 * Whether the process that recorded this identity is still running. A holder on another host
 * is assumed alive (we cannot tell).
 */
export function isAlive(id: { pid: number | null; start: string | null; host: string | null }): boolean {
  if (id.pid === null) return false;
  if (id.host && id.host !== os.hostname()) return true;
  try {
    process.kill(id.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPERM') return true;
    return false;
  }
  if (id.start) {
    const now = startTimeOf(id.pid);
    if (now !== null && now !== id.start) return false; // pid reused
  }
  return true;
}
