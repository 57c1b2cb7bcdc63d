import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CopyScanner, parseCopyTarget } from '../../src/dump/copy-scanner.js';
import { DUMP_COMPLETE, StreamTail } from '../../src/dump/stream-tail.js';

const DUMP = [
  '--',
  '-- PostgreSQL database dump',
  '--',
  '',
  'CREATE TABLE public.t (a integer, b text);',
  '',
  'COPY public.t (a, b) FROM stdin;',
  '1\tone',
  '2\ttwo\\nlines',
  '3\t\\N',
  '\\.',
  '',
  'COPY "my schema"."Odd ""name""" (x) FROM stdin;',
  '\\\\.',
  '',
  '\\.',
  '',
  'COPY public.empty (a) FROM stdin;',
  '\\.',
  '',
  '--',
  '-- PostgreSQL database dump complete',
  '--',
  '',
  '\\unrestrict abc123',
  '',
].join('\n');

/** Feeds the text in chunks to a scanner and a tail; `complete` says whether it ended like a dump. */
function scan(text: string, chunk: number): CopyScanner & { complete: boolean } {
  const s = new CopyScanner();
  const t = new StreamTail();
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; i += chunk) {
    s.push(buf.subarray(i, i + chunk));
    t.push(buf.subarray(i, i + chunk));
  }
  return Object.assign(s, { complete: t.endsWith(DUMP_COMPLETE) });
}

describe('CopyScanner', () => {
  it.each([1, 2, 3, 7, 64, 100000])('counts rows per table and sees the closing line with %i-byte chunks', (size) => {
    const s = scan(DUMP, size);
    expect(s.tables).toEqual({ 'public.t': 3, '"my schema"."Odd ""name"""': 2, 'public.empty': 0 });
    expect(s.totalRows).toBe(5);
    expect(s.complete).toBe(true);
    expect(s.insideCopy).toBe(false);
    expect(s.bytes).toBe(Buffer.byteLength(DUMP));
  });

  it('reports a stream cut inside table data as incomplete', () => {
    const cut = DUMP.slice(0, DUMP.indexOf('3\t\\N'));
    const s = scan(cut, 5);
    expect(s.complete).toBe(false);
    expect(s.insideCopy).toBe(true);
  });

  it('reports a stream cut before the closing line as incomplete', () => {
    const s = scan(DUMP.slice(0, DUMP.indexOf('-- PostgreSQL database dump complete')), 4096);
    expect(s.complete).toBe(false);
    expect(s.insideCopy).toBe(false);
  });

  it('does not take a closing line followed by more SQL as complete', () => {
    const s = scan(`${DUMP}CREATE TABLE x ();\n`, 4096);
    expect(s.complete).toBe(false);
  });

  it('counts an empty line inside a block as a row (one empty text value)', () => {
    const s = scan('COPY public.one (v) FROM stdin;\n\n\n\\.\n--\n-- PostgreSQL database dump complete\n--\n\n', 3);
    expect(s.tables).toEqual({ 'public.one': 2 });
  });

  it('adds rows of a table whose data comes in more than one block', () => {
    const s = scan('COPY public.a (v) FROM stdin;\n1\n\\.\nCOPY public.a (v) FROM stdin;\n2\n3\n\\.\n', 2);
    expect(s.tables).toEqual({ 'public.a': 3 });
  });
});

describe('parseCopyTarget', () => {
  it('keeps the identifier quoting pg_dump used', () => {
    expect(parseCopyTarget('public.t (a) FROM stdin;')).toBe('public.t');
    expect(parseCopyTarget('"a b"."c.d" (x) FROM stdin;')).toBe('"a b"."c.d"');
    expect(parseCopyTarget('"q""uote".plain FROM stdin;')).toBe('"q""uote".plain');
    expect(parseCopyTarget('"unterminated (x)')).toBeNull();
  });
});

describe('LineMap', () => {
  it('keeps multi-byte characters whole across chunk boundaries', async () => {
    const { LineMap } = await import('../../src/dump/pipeline.js');
    const text = 'CREATE TYPE "public"."städte" AS ENUM (\'München\', \'Zürich\', \'日本\', \'🐘\');\n-- ok\nlast line without newline ✓';
    const bytes = Buffer.from(text);
    for (const size of [1, 2, 3, 5, 7]) {
      const m = new LineMap((l) => l);
      const out: Buffer[] = [];
      m.on('data', (c: Buffer) => out.push(c));
      const done = new Promise((r) => m.on('end', r));
      for (let i = 0; i < bytes.length; i += size) m.write(bytes.subarray(i, i + size));
      m.end();
      await done;
      expect(Buffer.concat(out).toString('utf8'), `${size}-byte chunks`).toBe(text);
    }
  });
});

describe('table data digests', () => {
  /** What a restored table's `COPY … TO STDOUT` would send: its rows, each with its newline. */
  const rowsOf = (lines: string[]) => Buffer.from(lines.map((l) => `${l}\n`).join(''));

  it.each([1, 2, 3, 5, 64, 100000])('digests each table\'s rows exactly as written, whatever the chunks (%i bytes)', (size) => {
    const s = scan(DUMP, size);
    expect(s.digests['public.t']).toEqual({ crc32: crc32(rowsOf(['1\tone', '2\ttwo\\nlines', '3\t\\N'])), bytes: rowsOf(['1\tone', '2\ttwo\\nlines', '3\t\\N']).length, columns: '(a, b)' });
    // rows that begin like the end marker (`\\.` escaped, a lone backslash) are rows, and digested
    expect(s.digests['"my schema"."Odd ""name"""']).toEqual({ crc32: crc32(rowsOf(['\\\\.', ''])), bytes: rowsOf(['\\\\.', '']).length, columns: '(x)' });
    expect(s.digests['public.empty']).toEqual({ crc32: 0, bytes: 0, columns: '(a)' });
  });

  it('one digest over every block of a table, in order; a changed row changes it', () => {
    const two = 'COPY public.a (v) FROM stdin;\n1\n\\.\nCOPY public.a (v) FROM stdin;\n2\n\\\n\\.\n';
    for (const size of [1, 2, 4, 1000]) expect(scan(two, size).digests['public.a']!.crc32).toBe(crc32(rowsOf(['1', '2', '\\'])));
    expect(scan(two.replace('\n2\n', '\n3\n'), 7).digests['public.a']!.crc32).not.toBe(crc32(rowsOf(['1', '2', '\\'])));
  });
});
