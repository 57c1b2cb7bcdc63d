/**
 * The two ways a dump reaches its file, on a real PostgreSQL with the real pg_dump, gunzip and psql:
 * - plain: pg_dump writes the partial file itself and the service reads it back (hash, counts);
 * - gzip: the output streams through the service and is compressed on every core, as independent
 *   gzip members that a plain `gunzip` reads as one stream.
 * Either way the recorded SHA-256 is the stored file's, the row counts come from the stream, and a
 * dump that fails or is stopped leaves no partial file and no pg_dump behind.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DumpPart, type DumpSpec, dumpToPartial } from '../../src/dump/pipeline.js';
import { DUMP_COMPLETE } from '../../src/dump/stream-tail.js';
import { readLedger, removeDir, runCli, startCli, tempDir } from '../helpers/cli.js';
import { createDatabase, dbUrl, dropDatabase, dumpForCompare, psql, uniqueName } from '../helpers/pg.js';
import { realPgBin } from '../helpers/pgbin.js';
import { until } from '../helpers/wait.js';

let small: { name: string; url: string };
let big: { name: string; url: string };
let pgDump: string;
const dirs: string[] = [];
const dbs: string[] = [];

beforeAll(async () => {
  pgDump = path.join(await realPgBin(), 'pg_dump');
  small = await createDatabase('dp');
  big = await createDatabase('dpbig');
  dbs.push(small.name, big.name);
  // ~14 MB of dump: many 1 MiB gzip members
  await psql(
    small.url,
    `create table t (id int primary key, h text, pad text);
     insert into t select g, md5(g::text), repeat(chr(97 + g % 26), g % 200) from generate_series(1, 100000) g;
     create table "Odd name" (id serial primary key, v jsonb);
     insert into "Odd name" (v) select jsonb_build_object('n', g) from generate_series(1, 3000) g;
     create table empty_one (x int);`,
  );
  // ~110 MB of dump: long enough to be caught in the middle
  await psql(big.url, `create unlogged table big as select g as id, repeat(md5(g::text), 3) as payload from generate_series(1, 1000000) g;`);
}, 120_000);
afterAll(async () => {
  for (const d of dbs) await dropDatabase(d);
  dirs.forEach(removeDir);
});

function setup(compression: 'none' | 'gzip', url = small.url) {
  const dir = tempDir('hbdp');
  dirs.push(dir);
  const backupDir = path.join(dir, 'backups');
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ dump: { compression } }));
  return { dir, backupDir, env: { DATABASE_URL: url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json') } };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A dump's text without its per-run `\restrict` keys. */
const unkeyed = (b: Buffer | string) =>
  b
    .toString()
    .split('\n')
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join('\n');

/** What the service writes for `sql` at level 6: each 1 MiB block gzipped on its own, in order. */
function members(sql: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < sql.length; i += 1 << 20) out.push(gzipSync(sql.subarray(i, i + (1 << 20)), { level: 6 }));
  return Buffer.concat(out);
}

/** pg_dump processes (live, not zombies) dumping database `db`. */
function pgDumpsOf(db: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (comm !== 'pg_dump' || state === 'Z') continue;
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(db)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

const partialIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.partial')) : undefined);

describe('gzip: independent members on every core', () => {
  it('writes a multi-member file whose hash is recorded, that gunzip reads as the plain dump, and that restores', async () => {
    const p = setup('none');
    const plain = await runCli(['manual', '--json'], p.env);
    expect(plain.exitCode, plain.stderr).toBe(0);
    const pb = JSON.parse(plain.stdout);
    const g = setup('gzip');
    const gz = await runCli(['manual', '--json'], g.env);
    expect(gz.exitCode, gz.stderr).toBe(0);
    const gb = JSON.parse(gz.stdout);
    expect(gb.file).toMatch(/\.sql\.gz$/);

    // the recorded hash and size are the stored (compressed) file's
    const stored = readFileSync(gb.file);
    expect(sha256(stored)).toBe(gb.sha256);
    expect(stored.length).toBe(gb.bytes);
    expect((await execa('sha256sum', [gb.file])).stdout.split(' ')[0]).toBe(gb.sha256);

    // many members, one per MiB of SQL; the real gunzip tests and reads them as one stream
    await execa('gunzip', ['-t', gb.file]);
    const sql = Buffer.from((await execa('gunzip', ['-c', gb.file], { encoding: 'buffer', stripFinalNewline: false, maxBuffer: 1 << 30 })).stdout);
    expect(sql.length).toBeGreaterThan(5 * 1024 * 1024);
    expect(stored.equals(members(sql))).toBe(true); // one member per MiB of SQL, in order
    // the same SQL as the plain dump of the same database
    expect(unkeyed(sql)).toBe(unkeyed(readFileSync(pb.file)));

    // counts from the stream, the same either way
    const sidecar = (b: { file: string }) => JSON.parse(readFileSync(`${b.file}.meta.json`, 'utf8'));
    expect(sidecar(gb).tables).toEqual({ 'public.t': 100000, 'public."Odd name"': 3000, 'public.empty_one': 0 });
    expect(sidecar(gb).tables).toEqual(sidecar(pb).tables);
    expect(sidecar(gb).uncompressedBytes).toBe(sql.length);
    expect((await runCli(['verify', String(gb.id)], g.env)).exitCode).toBe(0);

    // restored through the product…
    const target = uniqueName('dprs');
    dbs.push(target);
    const r = await runCli(['restore', String(gb.id), '--target', dbUrl(target), '--create'], g.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await dumpForCompare(dbUrl(target))).toBe(await dumpForCompare(small.url));
    // …and the operator's way, `gunzip -c | psql`
    const byHand = await createDatabase('dphand');
    dbs.push(byHand.name);
    await execa('bash', ['-c', `set -o pipefail; gunzip -c '${gb.file}' | psql -X -q -v ON_ERROR_STOP=1 -d '${byHand.url}' > /dev/null`]);
    expect(await dumpForCompare(byHand.url)).toBe(await dumpForCompare(small.url));
  });
});

describe('plain: pg_dump writes the file itself', () => {
  it('pg_dump\'s output is the partial file; the hash and counts read back match the file', async () => {
    const s = setup('none', big.url);
    const cli = startCli(['manual', '--json'], s.env);
    let seen: string | undefined;
    await until(
      () => {
        const partial = partialIn(s.backupDir);
        for (const pid of pgDumpsOf(big.name)) {
          try {
            if (partial && readlinkSync(`/proc/${pid}/fd/1`) === path.join(s.backupDir, partial)) seen = partial;
          } catch {
            // exited meanwhile
          }
        }
        return !!seen || cli.exitCode !== null;
      },
      'pg_dump writing the partial file',
      60_000,
      5,
    );
    expect(seen, 'pg_dump\'s stdout should be the partial file').toBeDefined();
    const r = await cli;
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const b = JSON.parse(String(r.stdout));
    expect(path.basename(b.file) + '.partial').toBe(seen);
    expect(sha256(readFileSync(b.file))).toBe(b.sha256);
    expect(b.rowCount).toBe(1_000_000);
    expect(readdirSync(s.backupDir).filter((f) => f.endsWith('.partial'))).toEqual([]);
  });

  it('kill -9 of the service mid-dump: pg_dump dies with it (parent-death signal)', async () => {
    const s = setup('none', big.url);
    const cli = startCli(['manual', 'killed'], s.env);
    await until(() => (partialIn(s.backupDir) ? statSync(path.join(s.backupDir, partialIn(s.backupDir)!)).size > 1 << 20 : false) || cli.exitCode !== null, 'the dump to be under way', 60_000, 5);
    const dumps = pgDumpsOf(big.name);
    expect(dumps).toHaveLength(1);
    cli.kill('SIGKILL');
    await cli;
    await until(() => pgDumpsOf(big.name).length === 0, 'pg_dump to die with its parent', 10_000, 20);
    expect(readdirSync(s.backupDir).filter((f) => /\.sql(\.gz)?$/.test(f))).toEqual([]);
    // the next command cleans up the partial
    expect((await runCli(['list'], s.env)).exitCode).toBe(0);
    expect(partialIn(s.backupDir)).toBeUndefined();
    expect(readLedger(s.backupDir, 'select status from runs')).toEqual([{ status: 'interrupted' }]);
  });
});

describe.each(['none', 'gzip'] as const)('dumpToPartial (compression %s)', (compression) => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('hbdq');
    dirs.push(dir);
  });
  let n = 0;
  const spec = (parts: DumpPart[], extra: Partial<DumpSpec> = {}): DumpSpec => ({
    parts,
    env: {},
    partialPath: path.join(dir, `d${++n}.sql${compression === 'gzip' ? '.gz' : ''}.partial`),
    compression,
    gzipLevel: 6,
    ...extra,
  });
  const dump = (url: string, label = 'pg_dump', args: string[] = []): DumpPart => ({ kind: 'command', label, path: pgDump, args: ['--format=plain', '--no-password', ...args, `--dbname=${url}`], marker: DUMP_COMPLETE });
  const read = async (file: string) => (compression === 'gzip' ? Buffer.from((await execa('gunzip', ['-c', file], { encoding: 'buffer', stripFinalNewline: false, maxBuffer: 1 << 30 })).stdout) : readFileSync(file));

  it('keeps the parts in order, text and commands, and hashes and counts the whole', async () => {
    const s = spec([
      { kind: 'text', text: '-- first\n' },
      dump(small.url, 'pg_dump (schema)', ['--schema-only']),
      { kind: 'text', text: '-- between\n' },
      dump(small.url, 'pg_dump (data)', ['--data-only']),
      { kind: 'text', text: '-- last\n' },
    ]);
    const out = await dumpToPartial(s);
    const stored = readFileSync(s.partialPath);
    expect(out.sha256).toBe(sha256(stored));
    expect(out.bytes).toBe(stored.length);
    const schema = (await execa(pgDump, ['--format=plain', '--schema-only', `--dbname=${small.url}`])).stdout;
    const data = (await execa(pgDump, ['--format=plain', '--data-only', `--dbname=${small.url}`], { maxBuffer: 1 << 30 })).stdout;
    const sqlText = await read(s.partialPath);
    expect(out.rawBytes).toBe(sqlText.length);
    expect(unkeyed(sqlText)).toBe(unkeyed(`-- first\n${schema}\n-- between\n${data}\n-- last\n`));
    expect(out.tables).toEqual({ 'public.t': 100000, 'public."Odd name"': 3000, 'public.empty_one': 0 });
  });

  it('a part that lacks its closing line fails the dump even when a later part has one; the partial is removed', async () => {
    const s = spec([{ kind: 'command', label: 'first part', path: '/bin/sh', args: ['-c', 'echo "-- not the end"'], marker: DUMP_COMPLETE }, dump(small.url)]);
    await expect(dumpToPartial(s)).rejects.toMatchObject({ code: 'dump-incomplete', message: expect.stringMatching(/the first part output ends without its closing/) });
    expect(existsSync(s.partialPath)).toBe(false);
  });

  it('a command that exits non-zero: dump-failed with its stderr; the partial is removed', async () => {
    const s = spec([{ kind: 'text', text: '-- x\n' }, { kind: 'command', label: 'pg_dump', path: '/bin/sh', args: ['-c', 'echo "COPY public.t (id) FROM stdin;"; echo "pg_dump: error: lost the server" >&2; exit 3'], marker: DUMP_COMPLETE }]);
    await expect(dumpToPartial(s)).rejects.toMatchObject({ code: 'dump-failed', message: expect.stringMatching(/pg_dump exited with code 3: pg_dump: error: lost the server/) });
    expect(existsSync(s.partialPath)).toBe(false);
  });

  it('pg_dump killed mid-dump: dump-failed, the partial removed', async () => {
    const s = spec([dump(big.url)]);
    const running = dumpToPartial(s);
    const caught = running.catch((e: unknown) => e);
    await until(() => existsSync(s.partialPath) && statSync(s.partialPath).size > 1 << 20 && pgDumpsOf(big.name).length === 1, 'the dump to be under way', 60_000, 2);
    process.kill(pgDumpsOf(big.name)[0]!, 'SIGKILL');
    expect(await caught).toMatchObject({ code: 'dump-failed', message: expect.stringMatching(/pg_dump was killed by SIGKILL/) });
    expect(existsSync(s.partialPath)).toBe(false);
  });

  it('an abort mid-dump stops pg_dump and removes the partial', async () => {
    const ac = new AbortController();
    const s = spec([dump(big.url)], { signal: ac.signal });
    const running = dumpToPartial(s);
    const caught = running.catch((e: unknown) => e);
    await until(() => existsSync(s.partialPath) && statSync(s.partialPath).size > 1 << 20, 'the dump to be under way', 60_000, 2);
    expect(pgDumpsOf(big.name)).toHaveLength(1);
    ac.abort();
    expect(await caught).toMatchObject({ code: 'dump-aborted' });
    expect(existsSync(s.partialPath)).toBe(false);
    await until(() => pgDumpsOf(big.name).length === 0, 'no pg_dump left', 10_000, 20);
  });

  it('an abort before anything ran: dump-aborted, no partial, no pg_dump', async () => {
    const ac = new AbortController();
    ac.abort();
    const s = spec([{ kind: 'text', text: '-- x\n' }, dump(big.url)], { signal: ac.signal });
    await expect(dumpToPartial(s)).rejects.toMatchObject({ code: 'dump-aborted' });
    expect(existsSync(s.partialPath)).toBe(false);
    expect(pgDumpsOf(big.name)).toEqual([]);
  });

  it('a full disk: dump-write-failed naming ENOSPC, the partial removed', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a 1 MB tmpfs and needs root (CI runs as root)');
    const mnt = path.join(dir, `full-${compression}`);
    mkdirSync(mnt);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
    try {
      const s = { ...spec([dump(small.url)]), partialPath: path.join(mnt, 'x.partial') };
      await expect(dumpToPartial(s)).rejects.toMatchObject({ code: 'dump-write-failed', message: expect.stringMatching(/ENOSPC/), hint: expect.stringMatching(/free disk space/) });
      expect(readdirSync(mnt)).toEqual([]);
    } finally {
      await execa('umount', [mnt]);
    }
  });

  it('an existing file under the partial name is never overwritten', async () => {
    const s = spec([dump(small.url)]);
    mkdirSync(path.dirname(s.partialPath), { recursive: true });
    writeFileSync(s.partialPath, 'someone else\'s');
    await expect(dumpToPartial(s)).rejects.toMatchObject({ code: 'dump-write-failed', message: expect.stringMatching(/EEXIST/) });
    expect(readFileSync(s.partialPath, 'utf8')).toBe('someone else\'s');
  });
});
