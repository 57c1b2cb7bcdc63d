/**
 * Reads a plain-format pg_dump stream as it passes and learns, without holding it, how many
 * rows each table's COPY block carries (how the stream ended is ./stream-tail.ts's job).
 *
 * In COPY text format every row is exactly one line (newlines inside values are escaped as
 * `\n`), and a block ends with a line holding only `\.`, which no data row can be (a backslash
 * in data is written `\\`). So counting rows is counting line ends inside a block.
 */

import { crc32 } from 'node:zlib';
import type { TableDigest } from '../domain/types.js';

export type { TableDigest };

const NL = 0x0a;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
/** pg_dump's line setting a sequence's position. */
const SETVAL = /^SELECT pg_catalog\.setval\('((?:[^']|'')+)', (-?\d+), (true|false)\);$/;
/** Longest statement line we keep to look for a COPY header; longer ones are not COPY headers we can parse. */
const MAX_LINE = 4 * 1024 * 1024;

/**
 * Parses the qualified table name at the start of a COPY header's remainder
 * (`public.t (a, b) FROM stdin;`, `"my schema"."Odd ""name""" FROM stdin;`).
 * Returns the name exactly as pg_dump quoted it, usable in SQL as is.
 */
export function parseCopyTarget(rest: string): string | null {
  let i = 0;
  const parts: string[] = [];
  for (;;) {
    if (rest[i] === '"') {
      let j = i + 1;
      for (;;) {
        const q = rest.indexOf('"', j);
        if (q < 0) return null;
        if (rest[q + 1] === '"') {
          j = q + 2;
          continue;
        }
        parts.push(rest.slice(i, q + 1));
        i = q + 1;
        break;
      }
    } else {
      const m = /^[^\s."(]+/.exec(rest.slice(i));
      if (!m) return null;
      parts.push(m[0]);
      i += m[0].length;
    }
    if (rest[i] === '.') {
      i++;
      continue;
    }
    break;
  }
  return parts.join('.');
}

export class CopyScanner {
  /** Rows per table, in the order the tables appeared. */
  readonly tables: Record<string, number> = Object.create(null) as Record<string, number>;
  /** Each table's data digest (see {@link TableDigest}). */
  readonly digests: Record<string, TableDigest> = Object.create(null) as Record<string, TableDigest>;
  /**
   * Each sequence's position as the dump sets it (`SELECT pg_catalog.setval('<name>', <n>, <called>);`),
   * keyed by the name as pg_dump wrote it: sequences are not transactional, so the value the dump
   * holds is the one a restore gives, whatever another reading saw a moment before.
   */
  readonly sequences: Record<string, { value: string; called: boolean }> = Object.create(null) as Record<string, { value: string; called: boolean }>;
  /** Uncompressed bytes seen. */
  bytes = 0;

  private inCopy = false;
  private current = '';
  private rows = 0;
  private digest: TableDigest = { crc32: 0, bytes: 0, columns: '' };
  /**
   * The start of a line a chunk ended in that may still turn out to be the `\.` line (at most two
   * bytes): hashed only once the next chunk shows it is a row.
   */
  private held: Buffer | null = null;
  /** Inside a block: length of the current line so far, and its first two bytes. */
  private lineLen = 0;
  private b0 = -1;
  private b1 = -1;
  /** Outside a block: the pieces of the current statement line. */
  private pending: Buffer[] = [];
  private pendingLen = 0;

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.inCopy) {
        pos = this.scanCopy(chunk, pos);
      } else {
        const nl = chunk.indexOf(NL, pos);
        if (nl < 0) {
          this.addPending(chunk.subarray(pos));
          return;
        }
        this.addPending(chunk.subarray(pos, nl));
        this.endStatementLine();
        pos = nl + 1;
      }
    }
  }

  /** Adds row bytes to the current table's digest. */
  private feed(b: Buffer): void {
    if (b.length === 0) return;
    this.digest.crc32 = crc32(b, this.digest.crc32);
    this.digest.bytes += b.length;
  }

  /** Consumes COPY data lines from `pos`; returns where scanning stopped. */
  private scanCopy(chunk: Buffer, pos: number): number {
    const n = chunk.length;
    /** Where this chunk's row bytes not yet digested begin. */
    let from = pos;
    while (pos < n) {
      const lineStart = pos;
      if (this.lineLen === 0) {
        this.b0 = chunk[pos]!;
        this.b1 = pos + 1 < n ? chunk[pos + 1]! : -1;
      } else if (this.lineLen === 1) {
        this.b1 = chunk[pos]!;
      }
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        this.lineLen += n - pos;
        if (this.lineLen <= 2 && this.b0 === BACKSLASH && (this.lineLen === 1 || this.b1 === DOT)) {
          // perhaps the start of `\.`: hold it until the next chunk tells
          this.feed(chunk.subarray(from, lineStart));
          this.held = this.held ? Buffer.concat([this.held, chunk.subarray(lineStart, n)]) : Buffer.from(chunk.subarray(lineStart, n));
          return n;
        }
        this.releaseHeld();
        this.feed(chunk.subarray(from, n));
        return n;
      }
      const len = this.lineLen + (nl - pos);
      if (len === 2 && this.b0 === BACKSLASH && this.b1 === DOT) {
        this.feed(chunk.subarray(from, lineStart));
        this.held = null;
        this.tables[this.current] = (this.tables[this.current] ?? 0) + this.rows;
        this.digests[this.current] = this.digest;
        this.inCopy = false;
        this.lineLen = 0;
        return nl + 1;
      }
      this.releaseHeld();
      this.rows++;
      this.lineLen = 0;
      pos = nl + 1;
    }
    this.feed(chunk.subarray(from, n));
    return pos;
  }

  /** Held bytes that turned out to start a row: digested, in order, before what follows. */
  private releaseHeld(): void {
    if (!this.held) return;
    this.feed(this.held);
    this.held = null;
  }

  private addPending(b: Buffer): void {
    if (this.pendingLen > MAX_LINE) return;
    if (b.length) {
      this.pending.push(Buffer.from(b)); // copy: the chunk's memory is reused downstream
      this.pendingLen += b.length;
    }
  }

  private endStatementLine(): void {
    if (this.pendingLen <= MAX_LINE && this.pendingLen > 5) {
      if (this.pending[0]![0] === 0x53 /* S */) {
        const line = Buffer.concat(this.pending, this.pendingLen).toString('utf8');
        const m = SETVAL.exec(line);
        if (m) this.sequences[m[1]!.replace(/''/g, "'")] = { value: m[2]!, called: m[3] === 'true' };
      }
      if (this.pending[0]![0] === 0x43 /* C */) {
        const line = Buffer.concat(this.pending, this.pendingLen).toString('utf8');
        if (line.startsWith('COPY ') && line.endsWith(' FROM stdin;')) {
          const name = parseCopyTarget(line.slice(5));
          if (name) {
            this.current = name;
            this.rows = 0;
            this.lineLen = 0;
            this.inCopy = true;
            this.held = null;
            if (!(name in this.tables)) this.tables[name] = 0;
            // a table whose data comes in more than one block: one digest over all of them, in order
            const earlier = this.digests[name];
            const columns = line.slice(5 + name.length, -' FROM stdin;'.length).trim();
            this.digest = { crc32: earlier?.crc32 ?? 0, bytes: earlier?.bytes ?? 0, columns };
            if (earlier) delete this.digests[name];
          }
        }
      }
    }
    this.pending = [];
    this.pendingLen = 0;
  }

  /** True while a COPY block is open (the stream stopped inside table data). */
  get insideCopy(): boolean {
    return this.inCopy;
  }

  get totalRows(): number {
    let n = 0;
    for (const v of Object.values(this.tables)) n += v;
    return n;
  }
}
