/**
 * Named locks across processes (the backup lock), and the queue that serves them first come,
 * first served. A lock or a place in line held by a dead process is free.
 */
import { isAlive, selfIdentity, type ProcessIdentity } from '../util/process.js';
import { isStorageFailure } from './errors.js';
import { now, type Prepared, type Sql } from './sql.js';

export interface LockHolder {
  runId: number | null;
  pid: number;
  host: string;
  acquiredAt: string;
  purpose: string | null;
  /** The lock is free, but this one asked earlier and is served first. */
  queued?: boolean;
}

interface LockRow {
  name: string;
  run_id: number | null;
  pid: number;
  pid_start: string | null;
  host: string;
  acquired_at: string;
  purpose: string | null;
}

interface WaiterRow {
  id: number;
  name: string;
  run_id: number | null;
  pid: number;
  pid_start: string | null;
  host: string;
  since: string;
  purpose: string | null;
}

const SQL = {
  holder: 'SELECT * FROM locks WHERE name=?',
  take: 'INSERT OR REPLACE INTO locks (name, run_id, pid, pid_start, host, acquired_at, purpose) VALUES (?, ?, ?, ?, ?, ?, ?)',
  release: 'DELETE FROM locks WHERE name=? AND pid=? AND host=?',
  locks: 'SELECT * FROM locks',
  dropLock: 'DELETE FROM locks WHERE name=? AND pid=?',
  queue: 'INSERT INTO lock_waiters (name, run_id, pid, pid_start, host, since, purpose) VALUES (?, ?, ?, ?, ?, ?, ?)',
  ahead: 'SELECT * FROM lock_waiters WHERE name=? AND id<? ORDER BY id',
  waiters: 'SELECT * FROM lock_waiters',
  dropWaiter: 'DELETE FROM lock_waiters WHERE id=?',
};

export class Locks {
  private readonly q: Prepared<typeof SQL>;
  private readonly take: (me: ProcessIdentity, name: string, runId: number | null, purpose: string, ticket: number | undefined) => LockHolder | null;

  constructor(sql: Sql) {
    this.q = sql.prepared(SQL);
    // IMMEDIATE: the read and the write are one step across processes.
    this.take = sql.db.transaction((me: ProcessIdentity, name: string, runId: number | null, purpose: string, ticket: number | undefined): LockHolder | null => {
      if (ticket !== undefined) {
        // First come, first served across processes: a live waiter that asked earlier goes first.
        for (const w of this.q.ahead.all(name, ticket) as WaiterRow[]) {
          if (isAlive({ pid: w.pid, start: w.pid_start, host: w.host })) return { runId: w.run_id, pid: w.pid, host: w.host, acquiredAt: w.since, purpose: `${w.purpose ?? 'another backup'}, which asked earlier`, queued: true };
          this.q.dropWaiter.run(w.id);
        }
      }
      const cur = this.q.holder.get(name) as LockRow | undefined;
      if (cur && !(cur.pid === me.pid && cur.host === me.host) && isAlive({ pid: cur.pid, start: cur.pid_start, host: cur.host })) {
        return { runId: cur.run_id, pid: cur.pid, host: cur.host, acquiredAt: cur.acquired_at, purpose: cur.purpose };
      }
      this.q.take.run(name, runId, me.pid, me.start, me.host, now(), purpose);
      if (ticket !== undefined) this.q.dropWaiter.run(ticket);
      return null;
    }).immediate;
  }

  /**
   * Takes the named lock for this process if it is free or its holder is dead. Atomic across
   * processes (an IMMEDIATE transaction). Returns null on success, else the live holder.
   */
  tryLock(name: string, runId: number | null, purpose: string, ticket?: number): LockHolder | null {
    return this.take(selfIdentity(), name, runId, purpose, ticket);
  }

  /** Takes a place in the queue for a lock; the ticket orders {@link tryLock} across processes. */
  queue(name: string, runId: number | null, purpose: string): number {
    const me = selfIdentity();
    return Number(this.q.queue.run(name, runId, me.pid, me.start, me.host, now(), purpose).lastInsertRowid);
  }

  /** Leaves the queue (the wait was given up). Never throws. */
  leaveQueue(ticket: number): void {
    try {
      this.q.dropWaiter.run(ticket);
    } catch {
      // the next waiter finds this process gone, or the ticket dropped at its next open
    }
  }

  /**
   * Releases this process's lock. Never throws for a full disk: the row then stays, naming this
   * live process, which takes it again at its next backup (and another process once it is gone).
   */
  unlock(name: string): void {
    const me = selfIdentity();
    try {
      this.q.release.run(name, me.pid, me.host);
    } catch (e) {
      if (!isStorageFailure(e)) throw e;
    }
  }

  /** Releases the locks held, and the places in line taken, by dead processes (at open). */
  releaseDead(): void {
    for (const l of this.q.locks.all() as LockRow[]) {
      if (!isAlive({ pid: l.pid, start: l.pid_start, host: l.host })) this.q.dropLock.run(l.name, l.pid);
    }
    for (const w of this.q.waiters.all() as WaiterRow[]) {
      if (!isAlive({ pid: w.pid, start: w.pid_start, host: w.host })) this.q.dropWaiter.run(w.id);
    }
  }
}
