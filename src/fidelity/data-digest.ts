/**
 * Each table's data, read back from a restored database the way pg_dump wrote it, and digested
 * the way the dump's stream was ({@link CopyScanner}): the drill's proof that every row came back
 * byte for byte, not only that the row counts match.
 *
 * One psql session runs `COPY <table> <columns> TO STDOUT` for every table (no transaction around
 * them: the scratch database is the drill's alone, and one table that fails must not stop the rest), in a session set like the backup's pg_dump (DateStyle ISO, IntervalStyle postgres,
 * extra_float_digits 3, the source's TimeZone, bytea_output and encoding), with synchronized
 * sequential scans off so each table is read from its first page: rows come back in the order the
 * restore loaded them, which is the dump's order. Its output is framed as COPY blocks and fed to the
 * same scanner that digested the dump.
 */
import type { DigestSession, TableDigest } from '../domain/types.js';
import { CopyScanner } from '../dump/copy-scanner.js';
import { type ConnInfo, libpqArgs } from '../pg/connection.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';

export interface DigestDifference {
  table: string;
  message: string;
}

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The psql script reading every table; tables are named `hb_<n>` in the framing (their names stay out of psql's quoting). */
export function digestScript(tables: ReadonlyArray<[string, TableDigest]>, session: DigestSession): string {
  const lines = [
    `SET client_encoding = ${literal(session.encoding)};`,
    `SET TimeZone = ${literal(session.timeZone)};`,
    `SET bytea_output = ${literal(session.byteaOutput)};`,
    'SET DateStyle = ISO;',
    'SET IntervalStyle = postgres;',
    'SET extra_float_digits = 3;',
    'SET synchronize_seqscans = off;',
    'SET row_security = off;',
    'SET statement_timeout = 0;',
  ];
  tables.forEach(([name, d], i) => {
    lines.push(`\\echo 'COPY hb_${i} FROM stdin;'`, `COPY ${name} ${d.columns} TO STDOUT;`, `\\echo '\\\\.'`);
  });
  return `${lines.join('\n')}\n`;
}

/**
 * Reads and digests every table of `expected` in the database `conn` names, and says which differ.
 * A table that cannot be read is a difference too (with psql's error).
 */
export async function compareTableData(
  psqlPath: string,
  conn: ConnInfo,
  expected: Record<string, TableDigest>,
  session: DigestSession,
  signal?: AbortSignal,
): Promise<{ digested: number; differences: DigestDifference[]; rows: Record<string, number> }> {
  const tables = Object.entries(expected);
  if (tables.length === 0) return { digested: 0, differences: [], rows: {} };
  const { dbname, env } = libpqArgs(conn);
  const { execa } = await loadExeca();
  const scanner = new CopyScanner();
  const child = execa(psqlPath, ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=0', `--dbname=${dbname}`, '-f', '-'], {
    env: { ...env, PGAPPNAME: 'hybrid-backup-drill' },
    extendEnv: true,
    input: digestScript(tables, session),
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
    cancelSignal: signal,
    encoding: 'buffer',
  });
  child.stdout!.on('data', (c: Buffer) => scanner.push(c));
  const r = await child;
  if (signal?.aborted || r.isCanceled) throw new Error('stopped while reading the restored tables');
  const errors = redact(Buffer.isBuffer(r.stderr) ? r.stderr.toString('utf8') : String(r.stderr ?? ''))
    .split('\n')
    .filter((l) => /ERROR/.test(l));
  const differences: DigestDifference[] = [];
  // The rows each table gave back (what `count(*) FROM ONLY` would say: COPY reads no child table).
  const rows: Record<string, number> = {};
  tables.forEach(([name, want], i) => {
    const got = scanner.digests[`hb_${i}`];
    if (got) rows[name] = scanner.tables[`hb_${i}`] ?? 0;
    if (!got) differences.push({ table: name, message: `${name}: its data could not be read back${errors.length ? ` (${errors[0]})` : ''}` });
    else if (got.crc32 !== want.crc32 || got.bytes !== want.bytes) {
      differences.push({ table: name, message: `${name}: data differs (${got.bytes} bytes restored, ${want.bytes} in the dump)` });
    }
  });
  if (r.exitCode !== 0 && differences.length === 0) differences.push({ table: '', message: `reading the restored tables failed: ${errors[0] ?? `psql exited with code ${r.exitCode}`}` });
  return { digested: tables.length - differences.filter((d) => d.table).length, differences, rows };
}
