/**
 * Opening the ledger's file: never through a link, never silently over a lost ledger, WAL with
 * synchronous=FULL; or, when the disk is full, a read-only copy of it in memory.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { HbError } from '../domain/errors.js';
import { openError } from './errors.js';
import { MIGRATIONS } from './migrations.js';

export const LEDGER_FILE = 'ledger.db';

/** An open connection to the ledger in a directory, not yet migrated. */
export interface LedgerConnection {
  file: string;
  db: Database.Database;
  /** Where an unreadable ledger was moved (only with `recover`). */
  movedAside?: string;
}

/**
 * Opens (creating if needed) the ledger's database in `dir` (see `Ledger.open`).
 * @throws HbError `unsafe-path`, `ledger-lost`, `ledger-unreadable`, `ledger-unavailable`, `disk-full`
 */
export function openConnection(dir: string, opts: { recover?: boolean }): LedgerConnection {
  const file = path.join(dir, LEDGER_FILE);
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    // SQLite follows links: a ledger.db link would make it write into whatever file it names.
    if (lstatSync(f, { throwIfNoEntry: false })?.isSymbolicLink()) {
      throw new HbError('unsafe-path', `${f} is a symbolic link; refusing to open the ledger through it`, `remove the link (rm ${f})`);
    }
  }
  const existed = existsSync(file);
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (e) {
    throw openError(file, dir, e);
  }
  let fresh: boolean;
  try {
    // Reads only: nothing is written before we know the ledger is one to use. (Another process
    // may be creating it right now: wait for its lock rather than call it unreadable.)
    db.pragma('busy_timeout = 15000');
    fresh = (db.pragma('user_version', { simple: true }) as number) === 0 && (db.prepare('SELECT count(*) FROM sqlite_master').pluck().get() as number) === 0;
  } catch (e) {
    db.close();
    const code = (e as { code?: string }).code ?? '';
    if (code !== 'SQLITE_NOTADB' && code !== 'SQLITE_CORRUPT') throw openError(file, dir, e);
    if (!opts.recover) {
      throw new HbError(
        'ledger-unreadable',
        `the ledger ${file} cannot be read: ${(e as Error).message}`,
        'run `hybrid-backup ledger-rebuild`: it moves this file aside (never deleting it) and re-creates the backups from their .meta.json sidecars',
      );
    }
    const aside = `${file}.unreadable-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    renameSync(file, aside);
    for (const ext of ['-wal', '-shm']) if (existsSync(file + ext)) renameSync(file + ext, aside + ext);
    return { ...openConnection(dir, opts), movedAside: aside };
  }
  if (fresh && !opts.recover) {
    const sidecars = sidecarNames(dir);
    if (sidecars.length) {
      db.close();
      if (!existed) rmSync(file, { force: true });
      throw new HbError(
        'ledger-lost',
        `the ledger ${file} is ${existed ? 'empty' : 'missing'}, but ${dir} holds ${sidecars.length} backup${sidecars.length === 1 ? '' : 's'} (.meta.json sidecars, e.g. ${sidecars[0]})`,
        'run `hybrid-backup ledger-rebuild` to re-create the ledger from the sidecars (each file is re-hashed); nothing was changed',
      );
    }
  }
  try {
    db.pragma('journal_mode = WAL');
    // the write-ahead log is cut back after each checkpoint: on a small or full disk it must not
    // keep the space of a burst of writes
    db.pragma('journal_size_limit = 1048576');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 15000');
    db.pragma('foreign_keys = ON');
  } catch (e) {
    db.close();
    throw openError(file, dir, e);
  }
  return { file, db };
}

/**
 * A read-only, in-memory copy of the ledger's main file (see `Ledger.openReadOnlyCopy`), at this
 * program's schema version.
 * @throws HbError `ledger-unavailable` when even that cannot be read
 */
export function openReadOnlyConnection(dir: string): LedgerConnection {
  const file = path.join(dir, LEDGER_FILE);
  let db: Database.Database;
  try {
    const bytes = readFileSync(file);
    // The header says WAL (bytes 18-19 = 2); an in-memory copy has no log to read: say "rollback".
    if (bytes.length >= 100 && bytes[18] === 2) bytes[18] = bytes[19] = 1;
    db = new Database(bytes, { readonly: true });
    db.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch (e) {
    throw new HbError('ledger-unavailable', `cannot read even a copy of the ledger ${file}: ${(e as Error).message}`, 'check the disk and the file', { cause: e });
  }
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version !== MIGRATIONS.length) {
    db.close();
    throw new HbError('ledger-unavailable', `cannot use a read-only copy of the ledger ${file}: its schema (${version}) is not this program's (${MIGRATIONS.length})`, 'free disk space so the ledger can be opened and migrated');
  }
  return { file, db };
}

/** Names of backup sidecars in a directory (what `ledger-rebuild` reads). */
export function sidecarNames(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.meta.json') && !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}
