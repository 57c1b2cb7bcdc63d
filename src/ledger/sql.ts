/**
 * The one connection the ledger's parts share, and their statements: each is prepared the first
 * time it is used and kept for the life of the connection, never prepared again per call.
 *
 * Prepared on first use rather than at open: a command that opens the ledger to read one row does
 * not pay for the ~80 statements it will not run, and a read-only copy of the ledger (see
 * `Ledger.openReadOnlyCopy`) fails on a write where it always did, when the write is tried.
 */
import type Database from 'better-sqlite3';

export type Statement = Database.Statement<unknown[], unknown>;

/** A statement's SQL, or `{ pluck: sql }` for one that answers with its first column only. */
export type StatementText = string | { readonly pluck: string };

/** Named statements (see {@link Sql.prepared}). */
export type Prepared<T extends Record<string, StatementText>> = { readonly [K in keyof T]: Statement };

export class Sql {
  /** Statements whose SQL is built at run time (a filter's WHERE), by their text. */
  private readonly byText = new Map<string, Statement>();

  constructor(readonly db: Database.Database) {}

  /** `texts` as statements, each prepared the first time it is used, then kept. */
  prepared<T extends Record<string, StatementText>>(texts: T): Prepared<T> {
    const out = {} as Record<keyof T, Statement>;
    for (const name of Object.keys(texts) as Array<keyof T>) {
      let stmt: Statement | undefined;
      Object.defineProperty(out, name, { enumerable: true, get: () => (stmt ??= this.prepare(texts[name])) });
    }
    return out;
  }

  /**
   * The statement for SQL built at run time, prepared the first time this text is seen. The texts
   * are few (which filters are set, how many statuses or triggers), so they are all kept.
   */
  cached(text: StatementText): Statement {
    const key = typeof text === 'string' ? text : `pluck\0${text.pluck}`;
    let stmt = this.byText.get(key);
    if (!stmt) {
      stmt = this.prepare(text);
      this.byText.set(key, stmt);
    }
    return stmt;
  }

  private prepare(text: StatementText): Statement {
    return typeof text === 'string' ? this.db.prepare(text) : this.db.prepare(text.pluck).pluck();
  }
}

export const now = () => new Date().toISOString();
